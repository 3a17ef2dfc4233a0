"""The protocols' datasets and run-folder layout: every protocol path is built and read back here.

The layout is the official one (MMRL's and CoOp's scripts), relative to an output root::

    base2new/train_base/<dataset>/shots_16/<TRAINER>/<CFG>/seed<S>   base-to-novel training on the base
                                                                      classes; the ImageNet model of
                                                                      the cross-dataset protocol
    base2new/test_new/<dataset>/shots_16/<TRAINER>/<CFG>/seed<S>     novel-class test of that model; the
                                                                      cross-dataset targets
    few_shot/<dataset>/shots_<K>/<TRAINER>/<CFG>/seed<S>             few-shot (trains, then tests)
    dg/<held-out domain>/<dataset>/shots_<K>/<TRAINER>/<CFG>/seed<S> multi-source domain generalisation
                                                                      (MetaPrompt's): trains on the other
                                                                      domains, tests on the held-out one
    ablation/<name>/<value>/base2new/...                             an ablation (tools/protocols/ablation.py):
                                                                      the base2new tree of one value

A ``<CFG>`` folder holds one run per seed (``parse_test_res.py`` summarises it into ``parse.txt``).
"""

from __future__ import annotations

import os
import os.path as osp
import re
from dataclasses import dataclass

PROTOCOLS = ("base2new", "cross_datasets", "few_shot", "dg")
SOURCE = "imagenet"  # the cross-dataset source
# The 11 datasets of base-to-novel and few-shot, in the official scripts' order (quick ones first).
DATASETS = (
    "eurosat", "dtd", "ucf101", "oxford_flowers", "oxford_pets", "fgvc_aircraft", "caltech101", "food101",
    "stanford_cars", "sun397", "imagenet",
)  # fmt: skip
TRANSFER_TARGETS = tuple(d for d in DATASETS if d != SOURCE)  # cross-dataset evaluation: the other 10
DG_TARGETS = ("imagenet_a", "imagenet_r", "imagenet_sketch", "imagenetv2")  # domain generalisation
BASE2NEW_SHOTS = 16  # base-to-novel and cross-dataset train on 16 shots per class
SHOTS = (1, 2, 4, 8, 16)  # the few-shot settings
# Multi-source domain generalisation, leave one domain out (MetaPrompt's scripts/Meta/dg.sh): its datasets,
# whose loaders hold out one of their ``domains`` (DATASET.ID), and the shots per class and source domain.
MULTI_SOURCE_DATASETS = ("pacs", "vlcs", "office_home", "domainnet")
DG_SHOTS = (1, 5)
SEEDS = (1, 2, 3)
SEED_FOLDER = re.compile(r"seed(-?\d+)")
ABLATION_TREE = "ablation"  # <output>/ablation/<name>/<value>/: each value's own base2new tree


def default_datasets(protocol: str) -> tuple[str, ...]:
    """The datasets a protocol runs on: the 11, for cross-dataset the 14 targets of the ImageNet model, for
    ``dg`` the four multi-source ones."""
    if protocol == "dg":
        return MULTI_SOURCE_DATASETS
    return TRANSFER_TARGETS + DG_TARGETS if protocol == "cross_datasets" else DATASETS


def default_shots(protocol: str) -> tuple[int, ...]:
    """The shot counts a protocol runs when none are given (few-shot's five, ``dg``'s two)."""
    return DG_SHOTS if protocol == "dg" else SHOTS


def config_dir(output: str, tree: str, stage: str, dataset: str, shots: int, trainer: str, cfg: str) -> str:
    """``<output>/<tree>[/<stage>]/<dataset>/shots_<K>/<trainer>/<cfg>``: the folder of one config's seeds."""
    return osp.join(output, tree, *([stage] if stage else []), dataset, f"shots_{shots}", trainer, cfg)


def seed_dir(folder: str, seed: int) -> str:
    return osp.join(folder, f"seed{seed}")


def ablation_dir(output: str, name: str, label: str) -> str:
    """``<output>/ablation/<name>/<value>``: the output root of one value of an ablation (its base2new tree)."""
    return osp.join(output, ABLATION_TREE, name, label)


def find_ablation_dirs(output: str) -> list[tuple[str, str, str]]:
    """(name, value label, folder) of every ablation value folder under ``output``, sorted by name."""
    tree = osp.join(output, ABLATION_TREE)
    names = sorted(os.listdir(tree)) if osp.isdir(tree) else []
    return [(n, v, osp.join(tree, n, v)) for n in names if osp.isdir(osp.join(tree, n))
            for v in sorted(os.listdir(osp.join(tree, n))) if osp.isdir(osp.join(tree, n, v))]  # fmt: skip


@dataclass(frozen=True)
class RunPath:
    """What a seed folder's path says: its tree (``base2new`` / ``few_shot`` / ``dg``), stage (``train_base``,
    ``test_new``, ...; the held-out domain in ``dg``; empty in ``few_shot``), dataset, shots, trainer, config
    and seed."""

    tree: str
    stage: str
    dataset: str
    shots: int
    trainer: str
    cfg: str
    seed: int


def parse_run_dir(path: str) -> RunPath | None:
    """The layout's reading of a seed folder, or None when the path is not in the layout."""
    parts = osp.abspath(path).split(os.sep)
    seed = SEED_FOLDER.fullmatch(parts[-1])
    if seed is None or len(parts) < 6 or not re.fullmatch(r"shots_\d+", parts[-4]):
        return None
    if parts[-6] == "few_shot":
        tree, stage = "few_shot", ""
    elif len(parts) >= 7 and parts[-7] == "base2new" and re.fullmatch(r"train_base|test_\w+", parts[-6]):
        tree, stage = "base2new", parts[-6]
    elif len(parts) >= 7 and parts[-7] == "dg":
        tree, stage = "dg", parts[-6]
    else:
        return None
    return RunPath(tree, stage, parts[-5], int(parts[-4][len("shots_") :]), parts[-3], parts[-2], int(seed.group(1)))


def find_seed_dirs(root: str) -> list[str]:
    """Every ``seed<S>`` folder under ``root`` (not descending into one), sorted; not those of ``root``'s
    ablations (``root/ablation/``: each value is a tree of its own, read by ``find_ablation_dirs``)."""
    found = []
    for dirpath, dirnames, _ in os.walk(root):
        dirnames.sort()
        if dirpath == root and ABLATION_TREE in dirnames:
            dirnames.remove(ABLATION_TREE)
        if SEED_FOLDER.fullmatch(osp.basename(dirpath)):
            dirnames[:] = []
            found.append(dirpath)
    return found
