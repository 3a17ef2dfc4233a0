"""The config layers of a run that belong to the methods (docs/configuration.md has the whole order).

- ``extend_cfg`` adds TASK, DATASET.SUBSAMPLE_CLASSES, EXACT, FEATURE_CACHE and every registered method's
  node with its ``DEFAULTS``, so that any method's YAML file merges (ZeroshotCLIP reads CoOp's files, as upstream).
- ``dataset_layer`` reads a method's published per-dataset values, ``configs/trainers/<TRAINER>/datasets.yaml``;
  ``apply_dataset_layer`` merges them and says what each one replaced (or why it was not applied).
- ``keep_trainer_node`` then drops every node (and every ``EXTRA_KEYS`` key) the selected method does not
  declare, so a run's config (and its ``config_sha256``) holds its own settings only.
"""

from __future__ import annotations

import copy
import os.path as osp
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from yacs.config import CfgNode

import trainers  # noqa: F401  (imports, and so registers, every method)
from dassl.engine import TRAINER_REGISTRY
from dassl.user_files import describe, read_yaml, schema_error

from .base import TASKS, CLIPTrainer, ConfigError

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
ALL_TASKS = "all"  # the section of a datasets.yaml that applies whatever the task


def clip_trainers() -> dict[str, type[CLIPTrainer]]:
    """Every registered trainer built on ``CLIPTrainer``, by name."""
    found = {}
    for name in TRAINER_REGISTRY.registered_names():
        cls = TRAINER_REGISTRY.get(name)
        if isinstance(cls, type) and issubclass(cls, CLIPTrainer):
            found[name] = cls
    return found


def method_nodes(methods: Iterable[type[CLIPTrainer]]) -> dict[str, dict[str, Any]]:
    """``{node: defaults}`` over ``methods``; a node several methods declare gets the union of their keys.

    Two methods that give one key of a shared node different defaults are a programming error.
    """
    nodes: dict[str, dict[str, Any]] = {}
    for cls in methods:
        if not cls.NODE:
            continue
        node = nodes.setdefault(cls.NODE, {})
        for key, value in cls.DEFAULTS.items():
            if key in node and node[key] != value:
                raise ValueError(f"TRAINER.{cls.NODE}.{key}: {cls.__name__} has {value!r}, another has {node[key]!r}")
            node[key] = value
    return nodes


def extend_cfg(cfg: CfgNode) -> None:
    """Add TASK, DATASET.SUBSAMPLE_CLASSES, EXACT, FEATURE_CACHE and every method's node and extra keys with
    their defaults."""
    cfg.DATASET.SUBSAMPLE_CLASSES = "all"  # all, base or new
    cfg.TASK = "B2N"  # B2N, FS or CD; selects the per-dataset settings and, for MMRL, the scored logits
    # False (default): methods skip work whose result is never read, which moves logits by float
    # rounding only. True: the official code's exact op order, bit for bit (docs/configuration.md).
    cfg.EXACT = False
    # What a method declares frozen (CLIPTrainer.FROZEN_IMAGE_FEATURES) is computed once per image of each
    # split with a deterministic transform and kept on the device, within MAX_MB for all splits together.
    cfg.FEATURE_CACHE = CfgNode({"ENABLED": True, "MAX_MB": 1024})
    methods = clip_trainers().values()
    for name, defaults in method_nodes(methods).items():
        cfg.TRAINER[name] = CfgNode(copy.deepcopy(defaults))  # the class's lists stay untouched
    for key, value in extra_keys(methods).items():
        *parents, leaf = key.split(".")
        node = cfg
        for part in parents:
            if part not in node:
                node[part] = CfgNode()
            node = node[part]
        if leaf in node:  # another layer's key: dropping it from other methods' runs would break them
            raise ValueError(f"EXTRA_KEYS: {key} is already a config key")
        node[leaf] = copy.deepcopy(value)


def extra_keys(methods: Iterable[type[CLIPTrainer]]) -> dict[str, Any]:
    """``{full key: default}`` of the keys outside their nodes that ``methods`` declare (``EXTRA_KEYS``)."""
    keys: dict[str, Any] = {}
    for cls in methods:
        for key, value in cls.EXTRA_KEYS.items():
            if key in keys and keys[key] != value:
                raise ValueError(f"{key}: {cls.__name__} has {value!r}, another method has {keys[key]!r}")
            keys[key] = value
    return keys


def drop_key(cfg: CfgNode, key: str) -> None:
    """Delete ``key`` from ``cfg``, and the nodes it leaves empty."""
    *parents, leaf = key.split(".")
    nodes = [cfg]
    for part in parents:
        nodes.append(nodes[-1][part])
    del nodes[-1][leaf]
    for parent, part, node in reversed(list(zip(nodes, parents, nodes[1:]))):
        if node:
            break
        del parent[part]


def keep_trainer_node(cfg: CfgNode) -> None:
    """Keep in ``cfg.TRAINER`` only NAME and the keys the selected method declares, and of the methods'
    ``EXTRA_KEYS`` only its own.

    A trainer not built on ``CLIPTrainer`` (an upstream one) keeps every node: its keys are not known here.
    """
    cls = clip_trainers().get(cfg.TRAINER.NAME)
    if cls is None:
        return
    own = CfgNode({k: cfg.TRAINER[cls.NODE][k] for k in cls.DEFAULTS}) if cls.NODE else None
    for key in list(cfg.TRAINER):
        if key != "NAME":
            del cfg.TRAINER[key]
    if own is not None:
        cfg.TRAINER[cls.NODE] = own
    for key in extra_keys(clip_trainers().values()):
        if key not in cls.EXTRA_KEYS:
            drop_key(cfg, key)


def yaml_keys(path: str) -> set[str]:
    """The full keys a YAML config file sets ("OPTIM.LR", "TRAINER.MMRL.REG_WEIGHT", ...)."""
    data = read_yaml(path) or {}
    keys: set[str] = set()

    def walk(node: Mapping[str, Any], prefix: str) -> None:
        for key, value in node.items():
            if isinstance(value, Mapping):
                walk(value, f"{prefix}{key}.")
            else:
                keys.add(f"{prefix}{key}")

    walk(data, "")
    return keys


def datasets_file(trainer: str) -> str:
    """Where a method's published per-dataset values are: ``configs/trainers/<TRAINER>/datasets.yaml``."""
    return osp.join(REPO, "configs", "trainers", trainer, "datasets.yaml")


@dataclass
class DatasetLayer:
    """A method's per-dataset values for one dataset and task, as full config keys."""

    file: str  # the datasets.yaml, relative to the repository
    dataset: str
    task: str
    values: dict[str, Any] = field(default_factory=dict)


def dataset_layer(trainer: str, dataset: str, task: str) -> DatasetLayer | None:
    """The values ``datasets.yaml`` of ``trainer`` gives ``dataset`` under ``task`` (None: the method has no file).

    The file maps a section (a TASK, or ``all`` for every task) to datasets (``DATASET.NAME``), each to
    ``{key: value}``; a key without a dot is one of the method's own, ``TRAINER.<NODE>.<key>``, a dotted key
    is a full key (``OPTIM.MAX_EPOCH``). The task's section wins over ``all``.
    """
    if task not in TASKS:
        raise ConfigError(f"TASK must be one of {', '.join(TASKS)}, got {task!r}")
    path = datasets_file(trainer)
    if not osp.isfile(path):
        return None
    shown = osp.relpath(path, REPO)
    sections = read_yaml(path) or {}
    fix = "see docs/configuration.md for its format"
    if not isinstance(sections, dict) or not all(isinstance(v, dict) for v in sections.values()):
        raise schema_error(shown, "a mapping of sections to datasets", describe(sections), fix)
    unknown = [s for s in sections if s not in (ALL_TASKS, *TASKS)]
    if unknown:
        raise ConfigError(f"{shown}: sections must be {ALL_TASKS} or a TASK ({', '.join(TASKS)}), got {unknown}")
    cls = clip_trainers().get(trainer)
    node = f"TRAINER.{cls.NODE}." if cls is not None and cls.NODE else ""
    layer = DatasetLayer(shown, dataset, task)
    for section in (ALL_TASKS, task):
        values = (sections.get(section) or {}).get(dataset) or {}
        if not isinstance(values, dict):
            raise schema_error(shown, f"{{key: value}} for {section}/{dataset}", describe(values), fix)
        for key, value in values.items():
            if "." not in key and not node:
                raise ConfigError(f"{shown}: {key} names no node ({trainer} has none): write the full key")
            layer.values[key if "." in key else node + key] = value
    return layer


def flat_config(cfg: CfgNode, prefix: str = "") -> dict[str, Any]:
    """Every leaf of ``cfg`` by its full key."""
    flat: dict[str, Any] = {}
    for key, value in cfg.items():
        if isinstance(value, CfgNode):
            flat.update(flat_config(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def config_value(cfg: CfgNode, key: str) -> Any:
    node: Any = cfg
    for part in key.split("."):
        node = node[part]
    return node


def apply_dataset_layer(
    cfg: CfgNode, layer: DatasetLayer, set_by: Mapping[str, str], command_line: Sequence[str]
) -> list[str]:
    """Merge ``layer`` into ``cfg`` except the keys ``command_line`` sets (they win); returns the report lines.

    ``set_by`` maps a key to the file or flag that set it before this layer (a key missing there kept its
    default). Each line names a key, its new value and what it replaced, or the command-line value that wins.
    """
    lines = [f"Per-dataset settings: {layer.file} ({layer.dataset}, TASK {layer.task})"]
    if not layer.values:
        lines.append(f"  none for {layer.dataset} under TASK {layer.task}")
    opts = dict(zip(command_line[0::2], command_line[1::2]))
    for key, value in layer.values.items():
        try:
            old = config_value(cfg, key)
        except KeyError:
            raise ConfigError(f"{layer.file}: {layer.dataset}: {key} is not a config key") from None
        if isinstance(old, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if key in opts:
            lines.append(f"  {key}: not applied, the command line's {opts[key]} wins over {value}")
            continue
        try:
            cfg.merge_from_list([key, value])
        except (KeyError, ValueError, AssertionError) as e:
            raise ConfigError(f"{layer.file}: {layer.dataset}: {key}: {e}") from e
        origin = f"set in {set_by[key]}" if key in set_by else "the default"
        lines.append(f"  {key} = {value}  (replaces {old}, {origin})")
    return lines
