"""Config keys of the MMRL / MMRL++ trainers and their per-dataset settings.

``extend_cfg`` adds the trainer nodes with the official defaults (the YAML files under
``configs/trainers/`` then set the values actually used, e.g. ``PREC: amp``).
``get_dataset_specified_config`` returns the official per-dataset settings as a flat
``[KEY, VALUE, ...]`` list; ``train.py`` merges it after the YAML files and before the
command-line ``KEY VALUE`` options, so the command line still wins.
"""

from __future__ import annotations

from yacs.config import CfgNode

TASKS = ("B2N", "FS", "CD")  # base-to-novel, few-shot, cross-dataset (and domain generalisation)


def _common_node() -> CfgNode:
    node = CfgNode()
    node.ALPHA = 0.7  # weight of the class-token branch, in the loss and in the fused logits
    node.REG_WEIGHT = 1.0  # lambda of the two cosine regularisers towards zero-shot CLIP
    node.REP_LAYERS = []  # 1-based layers that receive representation tokens, e.g. [6, ..., 12]
    node.REP_DIM = 512  # d_r, width of the representation space R
    node.N_REP_TOKENS = 5  # K, number of representation tokens
    node.PREC = "fp16"  # fp16, fp32 or amp
    # Ours, not the official code's: drop prompt positions after the longest EOT. Causal attention makes
    # them irrelevant, so results change only by float rounding (~1e-5 in the logits), for a 1.3-1.8x
    # faster step on CPU (benchmarks/README.md). Off: bit-for-bit agreement with the official code.
    node.CUT_PROMPTS = False
    return node


def extend_cfg(cfg: CfgNode) -> None:
    """Add TRAINER.MMRL, TRAINER.MMRLpp, TASK and DATASET.SUBSAMPLE_CLASSES (official defaults)."""
    cfg.TRAINER.MMRL = _common_node()

    cfg.TRAINER.MMRLpp = _common_node()
    cfg.TRAINER.MMRLpp.BETA = 0.9  # weight of the new tokens when blended with the previous layer's
    cfg.TRAINER.MMRLpp.PROJ_LORA_DIM = 64  # rank of the low-rank update of the representation projection
    cfg.TRAINER.MMRLpp.RES_LORA_DIM = 4  # rank of the per-layer residual of the shared maps

    cfg.DATASET.SUBSAMPLE_CLASSES = "all"  # all, base or new
    cfg.TASK = "B2N"  # B2N, FS or CD; selects the per-dataset settings and the scored logits


# REG_WEIGHT of MMRL per dataset, the same for every task.
_MMRL = {
    "StanfordCars": {"REG_WEIGHT": 7.0},
    "FGVCAircraft": {"REG_WEIGHT": 6.0},
    "SUN397": {"REG_WEIGHT": 6.0},
    "DescribableTextures": {"REG_WEIGHT": 6.0},
    "Food101": {"REG_WEIGHT": 5.0},
    "OxfordFlowers": {"REG_WEIGHT": 4.0},
    "UCF101": {"REG_WEIGHT": 3.0},
    "ImageNet": {"REG_WEIGHT": 0.5},
    "Caltech101": {"REG_WEIGHT": 0.5},
    "OxfordPets": {"REG_WEIGHT": 0.2},
    "EuroSAT": {"REP_DIM": 2048, "REG_WEIGHT": 0.01},
}

# (BETA, REG_WEIGHT) of MMRL++ for base-to-novel and few-shot.
_MMRLPP_B2N_FS = {
    "ImageNet": (0.9, 0.2),
    "FGVCAircraft": (0.9, 2.0),
    "UCF101": (0.9, 3.0),
    "DescribableTextures": (0.9, 7.0),
    "OxfordPets": (0.7, 0.01),
    "StanfordCars": (0.7, 6.0),
    "Caltech101": (0.6, 3.0),
    "SUN397": (0.5, 3.0),
    "OxfordFlowers": (0.4, 7.0),
    "EuroSAT": (0.2, 0.01),
    "Food101": (0.1, 1.0),
}

# BETA of MMRL++ for cross-dataset transfer and domain generalisation (ImageNet also sets REG_WEIGHT).
_MMRLPP_CD = {
    "ImageNet": 0.9,
    "ImageNetV2": 0.9,
    "ImageNetR": 0.9,
    "ImageNetA": 0.8,
    "ImageNetSketch": 0.7,
    "FGVCAircraft": 0.9,
    "UCF101": 0.9,
    "SUN397": 0.7,
    "OxfordPets": 0.6,
    "Caltech101": 0.6,
    "DescribableTextures": 0.5,
    "OxfordFlowers": 0.4,
    "StanfordCars": 0.3,
    "EuroSAT": 0.3,
    "Food101": 0.3,
}


def _settings(dataset: str, trainer: str, task: str) -> dict:
    if trainer == "MMRL":
        return _MMRL.get(dataset, {})
    if task in ("B2N", "FS"):
        if dataset not in _MMRLPP_B2N_FS:
            return {}
        beta, reg_weight = _MMRLPP_B2N_FS[dataset]
        return {"BETA": beta, "REG_WEIGHT": reg_weight}
    if dataset not in _MMRLPP_CD:
        return {}
    settings = {"BETA": _MMRLPP_CD[dataset]}
    if dataset == "ImageNet":
        settings["REG_WEIGHT"] = 0.1
    return settings


def get_dataset_specified_config(dataset: str, trainer: str, task: str) -> list:
    """The official per-dataset settings as ``[KEY, VALUE, ...]``; ``[]`` for other trainers."""
    if trainer not in ("MMRL", "MMRLpp"):
        return []
    if task not in TASKS:
        raise ValueError(f"TASK must be one of {', '.join(TASKS)}, got {task!r}")
    flat = []
    for key, value in _settings(dataset, trainer, task).items():
        flat += [f"TRAINER.{trainer}.{key}", value]
    return flat
