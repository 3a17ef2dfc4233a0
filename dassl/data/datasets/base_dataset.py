"""The data record and the dataset container every dataset builds on.

``Datum`` keeps upstream Dassl's module path and attribute names so that few-shot pickles written by
upstream CoOp/MMRL load here and ours load there.
"""
from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence

__all__ = ["Datum", "DatasetBase"]


class Datum:
    """One image: path, class label, domain label and class name.

    Unlike upstream, creating a Datum does not stat the file: datasets check all their images at
    once after building (one error listing what is missing instead of a bare assertion).
    """

    def __init__(self, impath: str = "", label: int = 0, domain: int = 0, classname: str = "") -> None:
        if not isinstance(impath, str):
            raise TypeError(f"impath must be a str, got {type(impath).__name__}")
        self._impath = impath
        self._label = label
        self._domain = domain
        self._classname = classname

    @property
    def impath(self) -> str:
        return self._impath

    @property
    def label(self) -> int:
        return self._label

    @property
    def domain(self) -> int:
        return self._domain

    @property
    def classname(self) -> str:
        return self._classname

    def __repr__(self) -> str:
        return f"Datum({self._impath!r}, label={self._label}, domain={self._domain}, classname={self._classname!r})"


class DatasetBase:
    """Holds the labelled train set, optional unlabelled/val sets and the test set.

    Subclasses set ``dataset_dir`` (folder name under DATASET.ROOT, replaced by the full path on the
    instance) and, for multi-domain data, ``domains``.
    """

    dataset_dir: str = ""
    domains: list[str] = []

    def __init__(
        self,
        train_x: list[Datum] | None = None,
        train_u: list[Datum] | None = None,
        val: list[Datum] | None = None,
        test: list[Datum] | None = None,
    ) -> None:
        self._train_x = train_x
        self._train_u = train_u
        self._val = val
        self._test = test
        self._num_classes = self.get_num_classes(train_x)
        self._lab2cname, self._classnames = self.get_lab2cname(train_x)

    @property
    def train_x(self) -> list[Datum] | None:
        return self._train_x

    @property
    def train_u(self) -> list[Datum] | None:
        return self._train_u

    @property
    def val(self) -> list[Datum] | None:
        return self._val

    @property
    def test(self) -> list[Datum] | None:
        return self._test

    @property
    def lab2cname(self) -> dict[int, str]:
        return self._lab2cname

    @property
    def classnames(self) -> list[str]:
        return self._classnames

    @property
    def num_classes(self) -> int:
        return self._num_classes

    @staticmethod
    def get_num_classes(data_source: Sequence[Datum]) -> int:
        """Largest label + 1, so a subset that misses some classes still sizes the classifier right."""
        return max(item.label for item in data_source) + 1

    @staticmethod
    def get_lab2cname(data_source: Sequence[Datum]) -> tuple[dict[int, str], list[str]]:
        """Label -> class name, and the names listed in label order."""
        mapping = {item.label: item.classname for item in data_source}
        return mapping, [mapping[label] for label in sorted(mapping)]

    def check_input_domains(self, source_domains: Sequence[str], target_domains: Sequence[str]) -> None:
        if not source_domains:
            raise ValueError("source_domains (list) is empty")
        if not target_domains:
            raise ValueError("target_domains (list) is empty")
        self.is_input_domain_valid(source_domains)
        self.is_input_domain_valid(target_domains)

    def is_input_domain_valid(self, input_domains: Sequence[str]) -> None:
        for domain in input_domains:
            if domain not in self.domains:
                raise ValueError(f"Input domain must belong to {self.domains}, but got [{domain}]")

    def download_data(self, url: str, dst: str, from_gdrive: bool = True) -> None:
        """Kept for API compatibility; this project never downloads data on its own."""
        raise NotImplementedError(
            f"Automatic downloads are disabled. Download {url} by hand, extract it next to {dst} "
            "and lay it out as described in README.md#data."
        )

    def generate_fewshot_dataset(
        self, *data_sources: list[Datum], num_shots: int = -1, repeat: bool = False
    ) -> list[Datum] | list[list[Datum]] | tuple[list[Datum], ...]:
        """Keep ``num_shots`` items per class of each source.

        Python's ``random`` is consumed exactly as upstream (classes in first-appearance order,
        ``random.sample`` when a class has enough items, ``random.choices`` only with ``repeat``),
        so the same seed picks the same images as CoOp/MMRL.
        """
        if num_shots < 1:
            return data_sources[0] if len(data_sources) == 1 else data_sources

        print(f"Creating a {num_shots}-shot dataset")
        output = []
        for data_source in data_sources:
            dataset: list[Datum] = []
            for items in self.split_dataset_by_label(data_source).values():
                if len(items) >= num_shots:
                    dataset.extend(random.sample(items, num_shots))
                elif repeat:
                    dataset.extend(random.choices(items, k=num_shots))
                else:
                    dataset.extend(items)
            output.append(dataset)
        return output[0] if len(output) == 1 else output

    def split_dataset_by_label(self, data_source: Sequence[Datum]) -> dict[int, list[Datum]]:
        """Group items by label; keys keep the order in which labels first appear."""
        output: dict[int, list[Datum]] = defaultdict(list)
        for item in data_source:
            output[item.label].append(item)
        return output

    def split_dataset_by_domain(self, data_source: Sequence[Datum]) -> dict[int, list[Datum]]:
        """Group items by domain label, in first-appearance order."""
        output: dict[int, list[Datum]] = defaultdict(list)
        for item in data_source:
            output[item.domain].append(item)
        return output
