"""Multi-source domain generalisation, leave one domain out: what PACS, OfficeHome, VLCS and DomainNet share.

These are MetaPrompt's few-shot DG datasets (``PACSFS``, ``OfficeHomeFS``, ``VLCSFS``, ``DomainNetFS``).
One domain is held out as the target (its images are the test set); the others are the sources
(train and val). Which one is held out:

- ``DATASET.ID N`` (MetaPrompt's key): the N-th of ``domains`` (the official order); the sources are
  the other domains in that order. ``DATASET.SOURCE_DOMAINS`` / ``TARGET_DOMAINS`` are then not used,
  as in the official loader (MetaPrompt's own YAML files set them inconsistently with the ID).
- otherwise ``--target-domains D`` (``DATASET.TARGET_DOMAINS``): exactly one domain; the sources are
  ``--source-domains`` (``DATASET.SOURCE_DOMAINS``) or, when that is empty, all the other domains.
  Sources are always taken in the official order, so the same run gives the same draws however the
  flag lists them; a subset of sources is allowed (not part of the published protocol).

Every random draw is MetaPrompt's: with ``DATASET.NUM_SHOTS K >= 1``, K images per (domain, class) of
train and min(K, 4) of val, groups in first-appearance order, ``random.sample`` as upstream; cached in
``split_fewshot/{ID}_shot_{K}-seed_{SEED}.pkl`` (the official file name, interchangeable with the
official cache) or, for a subset of sources, ``{ID}_{src+src}_shot_...``. The test set is never sampled.
"""
from __future__ import annotations

import os
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from dassl.data.datasets import DatasetBase, Datum
from dassl.utils.tools import write_pickle

from .data_files import read_cache
from .utils import DatasetError, check_images_exist, load_or_create

__all__ = ["DG_DOC", "DGDataset", "DomainChoice", "Record", "dg_error", "fewshot_per_domain", "resolve_domains"]

DG_DOC = "docs/data.md#multi-source-domain-generalisation"
Record = tuple[str, int, str]  # (image path, label, class name) as a domain's reader returns them


@dataclass(frozen=True)
class DomainChoice:
    """The resolved split of the domains: the sources (official order), the target and its index."""

    sources: tuple[str, ...]
    target: str
    target_id: int

    def cache_stem(self, domains: Sequence[str]) -> str:
        """``{ID}`` for leave-one-out (MetaPrompt's cache name); ``{ID}_{sources}`` for a subset of sources."""
        if len(self.sources) == len(domains) - 1:
            return str(self.target_id)
        return f"{self.target_id}_{'+'.join(self.sources)}"


def dg_error(dataset: str, msg: str) -> DatasetError:
    """A DatasetError naming the dataset, the problem and the fix, pointing to the DG docs."""
    return DatasetError(f"{dataset}: {msg}. See {DG_DOC}.")


def resolve_domains(dataset: str, domains: Sequence[str], cfg: Any) -> tuple[DomainChoice, str]:
    """The held-out domain and the sources from DATASET.ID or the domain lists; (choice, note or "").

    The note says which lists were not used (an ID wins over them, as in MetaPrompt's loader).
    """
    choices = ", ".join(f"{i} = {d}" for i, d in enumerate(domains))
    sources = [str(d) for d in cfg.DATASET.SOURCE_DOMAINS]
    targets = [str(d) for d in cfg.DATASET.TARGET_DOMAINS]
    for flag, names in (("--source-domains (DATASET.SOURCE_DOMAINS)", sources),
                        ("--target-domains (DATASET.TARGET_DOMAINS)", targets)):  # fmt: skip
        unknown = [d for d in names if d not in domains]
        if unknown:
            raise dg_error(dataset, f"unknown domain '{unknown[0]}' in {flag}; the domains are {', '.join(domains)}")
    index = cfg.DATASET.get("ID", -1)
    if not isinstance(index, int) or isinstance(index, bool):
        raise dg_error(dataset, f"DATASET.ID must be an integer (the held-out domain: {choices}), got {index!r}")
    if index >= 0:
        if index >= len(domains):
            raise dg_error(dataset, f"DATASET.ID {index} is out of range: the held-out domain is one of {choices}")
        target = domains[index]
        choice = DomainChoice(tuple(d for d in domains if d != target), target, index)
        note = ""
        if (targets and targets != [target]) or (sources and sorted(sources) != sorted(choice.sources)):
            note = (
                f"DATASET.ID {index} holds out {target} (sources: {', '.join(choice.sources)}); "
                f"the domain lists (source {sources}, target {targets}) are not used, as in MetaPrompt's loader"
            )
        return choice, note
    if not targets:
        raise dg_error(
            dataset,
            f"no held-out domain: pass --target-domains DOMAIN (e.g. --target-domains {domains[-1]}) "
            f"or DATASET.ID N ({choices})",
        )
    if len(targets) > 1:
        raise dg_error(
            dataset,
            f"--target-domains names {len(targets)} domains ({', '.join(targets)}); leave-one-domain-out holds out "
            "one domain per run: run once per target",
        )
    target = targets[0]
    if target in sources:
        raise dg_error(dataset, f"'{target}' is both a source (--source-domains) and the target (--target-domains)")
    if len(set(sources)) != len(sources):
        raise dg_error(dataset, f"--source-domains lists a domain twice: {' '.join(sources)}")
    chosen = set(sources) if sources else set(domains) - {target}
    return DomainChoice(tuple(d for d in domains if d in chosen), target, list(domains).index(target)), ""


def fewshot_per_domain(data: list[Datum], num_shots: int) -> list[Datum]:
    """K items per (domain, class): MetaPrompt's rule, which differs from CoOp's per-class rule.

    Domains in first-appearance order, classes in first-appearance order within a domain;
    ``random.sample`` when a group has at least K items, else the whole group (no random numbers).
    """
    print(f"Creating a {num_shots}-shot dataset")
    groups: dict[int, dict[int, list[Datum]]] = {}
    for item in data:
        groups.setdefault(item.domain, {}).setdefault(item.label, []).append(item)
    out: list[Datum] = []
    for by_label in groups.values():
        for items in by_label.values():
            out.extend(random.sample(items, num_shots) if len(items) >= num_shots else items)
    return out


class DGDataset(DatasetBase):
    """A leave-one-domain-out dataset: sources' train/val parts, the target's test part.

    Subclasses declare ``dataset_dir`` (folder under DATASET.ROOT), ``domains`` (the official order:
    DATASET.ID indexes it), the part names ``train_part``/``val_part``/``test_part``, ``all_parts``
    (what the part "all" concatenates), ``other_names`` (folder names of other releases, for the
    error hint) and ``read_part`` (one domain's part as records, labels as the official loader gives).
    """

    train_part = "train"
    val_part = "val"
    test_part = "all"
    all_parts: tuple[str, ...] = ()
    other_names: tuple[str, ...] = ()

    def __init__(self, cfg: Any) -> None:
        name = type(self).__name__
        self.check_cfg(cfg)
        choice, note = resolve_domains(name, self.domains, cfg)
        if note:
            print(f"Note: {note}")
        self.source_domains, self.target_domains = list(choice.sources), [choice.target]
        self.target_id = choice.target_id
        self.dataset_dir = self.find_dir(cfg.DATASET.ROOT)
        print(f"{name}: target (held-out) domain {choice.target}; sources {', '.join(choice.sources)}")
        train = self.read(self.dataset_dir, self.source_domains, self.train_part)
        val = self.read(self.dataset_dir, self.source_domains, self.val_part)
        test = self.read(self.dataset_dir, self.target_domains, self.test_part)
        num_shots = cfg.DATASET.NUM_SHOTS
        if num_shots >= 1:
            stem = choice.cache_stem(self.domains)
            path = os.path.join(self.dataset_dir, "split_fewshot", f"{stem}_shot_{num_shots}-seed_{cfg.SEED}.pkl")

            def create() -> dict[str, list[Datum]]:
                data = {
                    "train": fewshot_per_domain(train, num_shots),
                    "val": fewshot_per_domain(val, min(num_shots, 4)),
                }
                print(f"Saving few-shot split to {path}")
                return data

            def load(p: str) -> dict[str, list[Datum]]:
                data = read_cache(p, ("train", "val"))
                print(f"Loading few-shot split from {p}")
                return data

            data = load_or_create(path, create, load, write_pickle)
            train, val = data["train"], data["val"]
        check_images_exist(name, self.dataset_dir, train, val, test, doc=DG_DOC)
        super().__init__(train_x=train, val=val, test=test)

    @classmethod
    def check_cfg(cls, cfg: Any) -> None:
        """Config errors before any file is read (train.py calls this while checking the command line)."""
        resolve_domains(cls.__name__, cls.domains, cfg)
        subsample = cfg.DATASET.get("SUBSAMPLE_CLASSES", "all")
        if subsample != "all":
            raise dg_error(
                cls.__name__,
                f"DATASET.SUBSAMPLE_CLASSES {subsample}: domain generalisation has no base/new split of the "
                "classes (MetaPrompt's loader ignores the key); leave it at all",
            )

    @classmethod
    def find_dir(cls, root: str) -> str:
        """``DATASET.ROOT/<dataset_dir>``; a Dassl-named copy beside it (office_home_dg/, VLCS/) gets a hint."""
        root = os.path.abspath(os.path.expanduser(root))
        if not os.path.isdir(root):
            raise dg_error(cls.__name__, f"dataset root (DATASET.ROOT, --root) not found: {root}")
        path = os.path.join(root, cls.dataset_dir)
        if not os.path.isdir(path):
            hint = ""
            for other in cls.other_names:
                if os.path.isdir(os.path.join(root, other)):
                    hint = f" ({other}/ is there: MetaPrompt's loader reads {cls.dataset_dir}/, rename or symlink it)"
            raise dg_error(
                cls.__name__,
                f"dataset folder not found: {path}{hint}; run `python -m datasets.prepare --root {root} "
                f"{cls.dataset_dir}`",
            )
        return path

    @classmethod
    def read(cls, dataset_dir: str, domains: Sequence[str], part: str) -> list[Datum]:
        """The records of ``part`` of each domain, with the domain's position in ``domains`` as its label."""
        items = []
        for index, domain in enumerate(domains):
            parts = cls.all_parts if part == "all" else (part,)
            for p in parts:
                records = cls.read_part(dataset_dir, domain, p)
                items += [Datum(path, label, index, cname) for path, label, cname in records]
        return items

    @classmethod
    def read_part(cls, dataset_dir: str, domain: str, part: str) -> list[Record]:
        """One part of one domain (split list or class folders) as the official loader reads it."""
        raise NotImplementedError

    @classmethod
    def missing(cls, dataset_dir: str, path: str, what: str) -> DatasetError:
        """The error for a file or folder of one domain that is not on disk."""
        return dg_error(
            cls.__name__,
            f"{what} not found: {path}; run `python -m datasets.prepare --root {os.path.dirname(dataset_dir)} "
            f"{cls.dataset_dir}` (or `--check` to see what else is missing)",
        )
