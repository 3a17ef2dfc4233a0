"""Prompt templates per dataset are data: ``templates.yaml`` files in ``configs/``, read here (and nowhere else).

- ``configs/templates.yaml``: CoOp's table, the one every method that prompts with a template uses unless it
  has its own (also the prompts of the MMRL paper's Table 7).
- ``configs/trainers/<TRAINER>/templates.yaml``: a method's own tables, where its official code holds them
  (KgCoOp's teacher, TCP's two, ProVP's, MetaPrompt's, ZeroshotCLIP2's ensemble).

A file maps names to tables or lists. A table maps ``DATASET.NAME`` to a template with ``{}`` for the class
name, or to a list of them (an ensemble); ``default`` is the entry of any other dataset. A list is a list of
templates (``template_list``) or of dataset names (``dataset_list``).
"""

from __future__ import annotations

import functools
import os.path as osp
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from dassl.user_files import describe, read_yaml, schema_error

CONFIGS = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), "configs")
DEFAULT = "default"  # the key of a table's entry for any dataset it does not name
PROMPTS = "prompts"  # the usual name of the table of a method's class prompts
FIX = 'templates hold "{}" once for the class name; see docs/configuration.md'

Entry = str | tuple[str, ...]


@dataclass(frozen=True)
class Templates:
    """One table: the template (or templates) of each ``DATASET.NAME`` and the ``default`` for any other dataset."""

    file: str  # relative to the repository, for messages
    default: Entry
    datasets: Mapping[str, Entry]

    def template(self, dataset: str) -> str:
        """The dataset's one template (a table of single templates)."""
        entry = self.datasets.get(dataset, self.default)
        if not isinstance(entry, str):
            raise TypeError(f"{self.file}: {dataset} has several templates where one is read")
        return entry

    def ensemble(self, dataset: str) -> list[str]:
        """The dataset's templates (one or several)."""
        entry = self.datasets.get(dataset, self.default)
        return [entry] if isinstance(entry, str) else list(entry)


def template_file(trainer: str | None) -> tuple[dict[str, Any], str]:
    """(contents, path for messages) of ``configs/templates.yaml`` or ``configs/trainers/<trainer>/templates.yaml``."""
    parts = ("trainers", trainer, "templates.yaml") if trainer else ("templates.yaml",)
    shown = osp.join("configs", *parts)
    data = read_yaml(osp.join(CONFIGS, *parts))
    if not isinstance(data, dict):
        raise schema_error(shown, "a mapping of names to template tables or lists", describe(data), FIX)
    return data, shown


def entry(shown: str, key: str, value: Any) -> Entry:
    """``value`` if it is a template with ``{}`` once, or a non-empty list of them (a tuple); else the error."""
    if isinstance(value, list) and value:
        return tuple(entry(shown, f"{key}[{i}]", v) for i, v in enumerate(value))
    if not isinstance(value, str) or value.count("{}") != 1:
        raise schema_error(shown, f'a template with "{{}}" once (or a list of them) for {key}', describe(value), FIX)
    return value


def section(trainer: str | None, name: str, kind: type) -> tuple[Any, str]:
    data, shown = template_file(trainer)
    if not isinstance(data.get(name), kind):
        what = "a mapping of DATASET.NAME to templates" if kind is dict else "a list"
        raise schema_error(shown, f"{what} under {name!r}", describe(data.get(name)), FIX)
    return data[name], shown


@functools.cache
def templates(trainer: str | None = None, table: str = PROMPTS) -> Templates:
    """The table ``table`` of ``configs/templates.yaml`` (CoOp's) or of ``trainer``'s own file."""
    data, shown = section(trainer, table, dict)
    if DEFAULT not in data:
        raise schema_error(shown, f"a table with a {DEFAULT!r} entry under {table!r}", describe(data), FIX)
    entries = {str(key): entry(shown, f"{table}.{key}", value) for key, value in data.items()}
    default = entries.pop(DEFAULT)
    return Templates(shown, default, MappingProxyType(entries))


@functools.cache
def template_list(trainer: str, name: str) -> tuple[str, ...]:
    """The templates listed under ``name`` in ``trainer``'s file, in order (the order fixes a mean's rounding)."""
    data, shown = section(trainer, name, list)
    return tuple(entry(shown, f"{name}[{i}]", t) for i, t in enumerate(data))  # type: ignore[misc]


@functools.cache
def dataset_list(trainer: str, name: str) -> frozenset[str]:
    """The ``DATASET.NAME``s listed under ``name`` in ``trainer``'s file."""
    data, shown = section(trainer, name, list)
    if not all(isinstance(d, str) for d in data):
        raise schema_error(shown, f"a list of DATASET.NAMEs under {name!r}", describe(data), FIX)
    return frozenset(data)
