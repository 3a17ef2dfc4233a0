"""Each method's published settings per protocol: ``configs/trainers/<TRAINER>/protocols.yaml``.

    name: MMRL++                                             # the paper's name (tables), optional
    base2new: {config: vit_b16_ctxv1, imagenet: vit_b16_ep50_ctxv1}
    cross_datasets: {config: vit_b16_ep50_ctxv1}
    few_shot:
      config: {1: vit_b16_ep50, 2: vit_b16_ep100, 16: vit_b16}   # by number of shots, or one name
      imagenet: vit_b16_ep50                                     # ImageNet's own config, if any
      opts: [TRAINER.COOP.N_CTX, 16]                             # extra KEY VALUE pairs
    eval_only: true                                              # nothing to train (zero-shot)
    backbones:                                                   # other backbones' files for the same settings
      rn50: {vit_b16: rn50, vit_b16_ep50: rn50_ep50}             # chosen with BACKBONE=rn50 (docs/backbones.md)

A protocol a method does not declare is one it has no published setting for.
"""

from __future__ import annotations

import os
import os.path as osp
import re
from dataclasses import dataclass
from typing import Any

from dassl.errors import UserError

from .layout import PROTOCOLS, SOURCE
from .protocols_file import FileError, read_protocols

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TRAINER_CONFIGS = osp.join(REPO, "configs", "trainers")


class ProtocolError(UserError):
    """A method without protocols.yaml, or without the asked protocol; printed as one ``error:`` line."""


@dataclass(frozen=True)
class Setting:
    """One method's run settings in one protocol on one dataset (and shot count)."""

    config: str  # the config file's stem in configs/trainers/<TRAINER>/
    folder: str  # the <CFG> level of its run folders (see run_folder)
    eval_only: bool  # nothing to train: every run evaluates the method as built
    opts: tuple[str, ...]  # KEY VALUE options after the config file's


def methods_with_protocols() -> list[str]:
    """The trainers that declare published protocol settings."""
    return sorted(d for d in os.listdir(TRAINER_CONFIGS) if osp.isfile(osp.join(TRAINER_CONFIGS, d, "protocols.yaml")))


def load_protocols(trainer: str) -> dict[str, Any]:
    """The parsed ``protocols.yaml`` of ``trainer``."""
    path = osp.join(TRAINER_CONFIGS, trainer, "protocols.yaml")
    if not osp.isfile(path):
        raise ProtocolError(
            f"'{trainer}' has no configs/trainers/{trainer}/protocols.yaml; methods: "
            + " ".join(methods_with_protocols())
        )
    try:
        return read_protocols(path)
    except FileError as e:
        raise ProtocolError(str(e)) from None


def display_name(trainer: str) -> str:
    """The paper's name of a method (``name:`` in its protocols.yaml; MMRLpp -> MMRL++), else the trainer's."""
    try:
        return str(load_protocols(trainer).get("name", trainer))
    except ProtocolError:
        return trainer


def _config(entry: dict[str, Any], dataset: str) -> Any:
    return entry["imagenet"] if dataset == SOURCE and entry.get("imagenet") else entry["config"]


def setting(
    trainer: str, protocol: str, dataset: str, shots: int | None = None, backbone: str | None = None
) -> Setting:
    """The config, run folder, eval-only flag and options of ``trainer`` in ``protocol`` on ``dataset``.

    ``backbone`` (default: the ``BACKBONE`` environment variable, which the scripts and the grid pass on;
    empty for the published default): the method's file of that backbone for the same settings, from its
    ``backbones`` table.
    """
    backbone = os.environ.get("BACKBONE", "") if backbone is None else backbone
    if protocol not in PROTOCOLS:
        raise ProtocolError(f"unknown protocol '{protocol}' (protocols: {', '.join(PROTOCOLS)})")
    data = load_protocols(trainer)
    where = f"configs/trainers/{trainer}/protocols.yaml"
    if protocol not in data:
        declared = [p for p in PROTOCOLS if p in data]
        raise ProtocolError(f"{trainer} has no '{protocol}' setting in {where} (it declares: {', '.join(declared)})")
    entry = data[protocol]
    config = _config(entry, dataset)
    if isinstance(config, dict):
        if shots not in config:
            raise ProtocolError(f"{trainer} {protocol}: no config for {shots} shots in {where} (has: {sorted(config)})")
        config = config[shots]
    if backbone:
        config = _backbone_config(trainer, data, backbone, str(config))
    if not osp.isfile(osp.join(TRAINER_CONFIGS, trainer, f"{config}.yaml")):
        raise ProtocolError(f"{trainer} {protocol}: configs/trainers/{trainer}/{config}.yaml does not exist ({where})")
    opts = tuple(str(v) for v in entry.get("opts", []))
    if len(opts) % 2 or any(not v or re.search(r"\s", v) for v in opts):
        raise ProtocolError(f"{trainer} {protocol}: opts in {where} must be KEY VALUE pairs without spaces: {opts}")
    folder = run_folder(trainer, protocol, dataset, str(config), backbone)
    return Setting(str(config), folder, bool(data.get("eval_only")), opts)


def _backbone_config(trainer: str, data: dict[str, Any], backbone: str, config: str) -> str:
    """The ``backbone`` file standing for ``config`` in the method's ``backbones`` table."""
    table = (data.get("backbones") or {}).get(backbone)
    if table is None:
        raise ProtocolError(
            f"{trainer} has no {backbone} files in configs/trainers/{trainer}/protocols.yaml (backbones: "
            f"{', '.join(data.get('backbones') or {}) or 'none, the published default only'}); unset BACKBONE"
        )
    if config not in table:
        raise ProtocolError(f"{trainer} has no {backbone} file for the setting of {config}.yaml (its {backbone} files: "
                            f"{', '.join(sorted(set(table.values())))})")  # fmt: skip
    return str(table[config])


def run_folder(trainer: str, protocol: str, dataset: str, config: str, backbone: str = "") -> str:
    """The ``<CFG>`` folder of a run: the config's name, as in the official trees, except for a cross-dataset
    run whose config is also the method's base-to-novel config for that dataset (at the same backbone): both
    protocols write under ``base2new/``, so such a run gets ``<config>_cross_datasets`` instead of sharing the
    base-to-novel folder."""
    if protocol != "cross_datasets" or "base2new" not in load_protocols(trainer):
        return config
    try:
        shared = setting(trainer, "base2new", dataset, backbone=backbone).config == config
    except ProtocolError:  # no base-to-novel file at this backbone: no folder to share
        shared = False
    return f"{config}_cross_datasets" if shared else config
