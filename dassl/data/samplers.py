"""Batch-composition samplers, named as in ``DATALOADER.*.SAMPLER``.

The domain/class samplers draw from Python's ``random`` (and NumPy for short classes) in
upstream's order, including the full pass each constructor makes to learn its length, so a
seeded run sees the same batches and leaves the generators in the same state.
"""
from __future__ import annotations

import copy
import random
from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from torch.utils.data.sampler import RandomSampler, Sampler, SequentialSampler
from yacs.config import CfgNode

__all__ = ["RandomDomainSampler", "SeqDomainSampler", "RandomClassSampler", "build_sampler"]


def _indices_by(data_source: Sequence[Any], attr: str) -> defaultdict[Any, list[int]]:
    """Index lists keyed by ``item.<attr>``, keys in order of first appearance."""
    groups: defaultdict[Any, list[int]] = defaultdict(list)
    for i, item in enumerate(data_source):
        groups[getattr(item, attr)].append(i)
    return groups


def _draw_per_domain(domain_dict: dict, domains: list, n_per_domain: int, out: list[int]) -> bool:
    """Move ``n_per_domain`` random indices of each of ``domains`` to ``out``; True once one runs short."""
    exhausted = False
    for domain in domains:
        picked = random.sample(domain_dict[domain], n_per_domain)
        out.extend(picked)
        for idx in picked:
            domain_dict[domain].remove(idx)
        exhausted |= len(domain_dict[domain]) < n_per_domain
    return exhausted


class _DomainBatchSampler(Sampler):
    """Batches of ``n_domain`` domains with ``batch_size // n_domain`` random images each."""

    def __init__(self, data_source: Sequence[Any], batch_size: int, n_domain: int, domains: list) -> None:
        if batch_size % n_domain != 0:
            raise ValueError(f"batch_size={batch_size} must be divisible by the domains per batch ({n_domain})")
        self.data_source = data_source
        self.domain_dict = _indices_by(data_source, "domain")
        self.domains = domains
        self.n_img_per_domain = batch_size // n_domain
        self.batch_size = batch_size
        self.n_domain = n_domain
        self.length = len(list(self.__iter__()))

    def batch_domains(self) -> list:
        """The domains of the next batch."""
        raise NotImplementedError

    def __iter__(self) -> Iterator[int]:
        domain_dict = copy.deepcopy(self.domain_dict)
        final_idxs: list[int] = []
        done = False
        while not done:
            done = _draw_per_domain(domain_dict, self.batch_domains(), self.n_img_per_domain, final_idxs)
        return iter(final_idxs)

    def __len__(self) -> int:
        return self.length


class RandomDomainSampler(_DomainBatchSampler):
    """Each batch: ``n_domain`` random domains (all when ``n_domain`` <= 0 or None)."""

    def __init__(self, data_source: Sequence[Any], batch_size: int, n_domain: int | None) -> None:
        domains = list(_indices_by(data_source, "domain").keys())
        if n_domain is None or n_domain <= 0:
            n_domain = len(domains)
        super().__init__(data_source, batch_size, n_domain, domains)

    def batch_domains(self) -> list:
        return random.sample(self.domains, self.n_domain)


class SeqDomainSampler(_DomainBatchSampler):
    """Each batch: every domain, in sorted order."""

    def __init__(self, data_source: Sequence[Any], batch_size: int) -> None:
        domains = sorted(_indices_by(data_source, "domain").keys())
        super().__init__(data_source, batch_size, len(domains), domains)

    def batch_domains(self) -> list:
        return self.domains


class RandomClassSampler(Sampler):
    """Each batch: ``batch_size // n_ins`` random classes with ``n_ins`` images each."""

    def __init__(self, data_source: Sequence[Any], batch_size: int, n_ins: int) -> None:
        if batch_size < n_ins:
            raise ValueError(f"batch_size={batch_size} must be no less than n_ins={n_ins}")
        self.data_source = data_source
        self.batch_size = batch_size
        self.n_ins = n_ins
        self.ncls_per_batch = batch_size // n_ins
        self.index_dic = _indices_by(data_source, "label")
        self.labels = list(self.index_dic.keys())
        if len(self.labels) < self.ncls_per_batch:
            raise ValueError(f"{len(self.labels)} classes cannot fill batches of {self.ncls_per_batch} classes")
        self.length = len(list(self.__iter__()))

    def __iter__(self) -> Iterator[int]:
        chunks: defaultdict[Any, list[list[int]]] = defaultdict(list)
        for label in self.labels:
            idxs: Any = list(self.index_dic[label])
            if len(idxs) < self.n_ins:  # short classes are padded by drawing with replacement
                idxs = np.random.choice(idxs, size=self.n_ins, replace=True)
            random.shuffle(idxs)
            usable = len(idxs) - len(idxs) % self.n_ins
            chunks[label] = [list(idxs[i : i + self.n_ins]) for i in range(0, usable, self.n_ins)]

        avai_labels = list(self.labels)
        final_idxs: list[int] = []
        while len(avai_labels) >= self.ncls_per_batch:
            for label in random.sample(avai_labels, self.ncls_per_batch):
                final_idxs.extend(chunks[label].pop(0))
                if not chunks[label]:
                    avai_labels.remove(label)
        return iter(final_idxs)

    def __len__(self) -> int:
        return self.length


def build_sampler(
    sampler_type: str,
    cfg: CfgNode | None = None,
    data_source: Sequence[Any] | None = None,
    batch_size: int = 32,
    n_domain: int = 0,
    n_ins: int = 16,
) -> Sampler:
    if sampler_type == "RandomSampler":
        return RandomSampler(data_source)
    if sampler_type == "SequentialSampler":
        return SequentialSampler(data_source)
    if sampler_type == "RandomDomainSampler":
        return RandomDomainSampler(data_source, batch_size, n_domain)
    if sampler_type == "SeqDomainSampler":
        return SeqDomainSampler(data_source, batch_size)
    if sampler_type == "RandomClassSampler":
        return RandomClassSampler(data_source, batch_size, n_ins)
    raise ValueError(f"Unknown sampler type: {sampler_type}")
