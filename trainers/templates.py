"""Prompt templates per dataset are data: YAML files in ``configs/``, read here (and nowhere else).

- ``configs/templates.yaml``: CoOp's table, the one every method that prompts with a template uses unless it
  has its own (also the prompts of the MMRL paper's Table 7).
- ``configs/trainers/<TRAINER>/<name>.yaml``: a method's own table, where its official code holds one
  (KgCoOp's teacher, TCP's two).

A table file maps ``DATASET.NAME`` to a template with ``{}`` for the class name; ``default`` is the template
of any other dataset. ``ensemble_templates`` reads a method's list of templates (ZeroshotCLIP2's).
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
DEFAULT = "default"  # the key of a table's template for any dataset it does not name
FIX = "each value is a template with {} once for the class name; see docs/configuration.md"


@dataclass(frozen=True)
class Templates:
    """One table: a template per ``DATASET.NAME`` and the ``default`` for any other dataset."""

    file: str  # relative to the repository, for messages
    default: str
    datasets: Mapping[str, str]

    def template(self, dataset: str) -> str:
        """The dataset's template in this table, or the default."""
        return self.datasets.get(dataset, self.default)


def config_file(trainer: str | None, name: str) -> tuple[str, str]:
    """(path, path for messages) of ``configs/<name>.yaml``, or ``configs/trainers/<trainer>/<name>.yaml``."""
    parts = ("trainers", trainer, f"{name}.yaml") if trainer else (f"{name}.yaml",)
    return osp.join(CONFIGS, *parts), osp.join("configs", *parts)


def check_template(shown: str, key: str, value: Any) -> str:
    """``value`` if it is a template with ``{}`` once; else the error naming the file and key."""
    if not isinstance(value, str) or value.count("{}") != 1:
        raise schema_error(shown, f'a template with "{{}}" once for {key}', describe(value), FIX)
    return value


@functools.cache
def templates(trainer: str | None = None, name: str = "templates") -> Templates:
    """CoOp's table (``configs/templates.yaml``), or ``trainer``'s own (``configs/trainers/<trainer>/<name>.yaml``)."""
    path, shown = config_file(trainer, name)
    data = read_yaml(path)
    if not isinstance(data, dict) or DEFAULT not in data:
        expected = f"a mapping of DATASET.NAME to templates with a {DEFAULT!r} entry"
        raise schema_error(shown, expected, describe(data), FIX)
    table = {str(key): check_template(shown, str(key), value) for key, value in data.items()}
    default = table.pop(DEFAULT)
    return Templates(shown, default, MappingProxyType(table))


@functools.cache
def ensemble_templates(trainer: str, name: str = "ensemble") -> tuple[tuple[str, ...], frozenset[str]]:
    """(templates, datasets whose own template is left out) of ``configs/trainers/<trainer>/<name>.yaml``."""
    path, shown = config_file(trainer, name)
    data = read_yaml(path)
    if not isinstance(data, dict) or not isinstance(data.get("templates"), list):
        raise schema_error(shown, "a mapping with a list of templates under 'templates'", describe(data), FIX)
    chosen = tuple(check_template(shown, f"templates[{i}]", t) for i, t in enumerate(data["templates"]))
    without = data.get("without_own_template") or []
    if not isinstance(without, list) or not all(isinstance(d, str) for d in without):
        raise schema_error(shown, "a list of DATASET.NAMEs under 'without_own_template'", describe(without), FIX)
    return chosen, frozenset(without)
