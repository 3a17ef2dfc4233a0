"""Published numbers the report prints beside ours, with where each one was read.

Source: Yuncheng Guo, Xiaodong Gu, "MMRL: Multi-Modal Representation Learning for Vision-Language
Models", CVPR 2025, arXiv:2503.08497 — Table 1 (base-to-novel, per dataset and average, for CLIP,
CoOp, CoCoOp, KgCoOp, MaPLe, PromptSRC, MMA, MMRL), Table 2 (cross-dataset), Table 3 (domain
generalisation), Tables 10/11 (few-shot).

Only numbers that could be read from a stored copy of a source are entered; nothing is typed
from memory. When this module was written, the stored copies available to us did not include
the paper's tables (the official repository's README holds no numbers; only the first part of the
arXiv HTML page was readable), so most entries are still empty. The one row found is MMRL on
EuroSAT from Table 1, as quoted by a user in the official repository's issue tracker
(github.com/yunncheng/MMRL/issues/14, "reported 95.60 / 80.17 / 87.21"). Fill the rest from the
paper's PDF, keeping ``SOURCES`` in step; the report shows a dash for any number not entered. The
averages of Tables 1-3 for MMRL and MMA come from the project's method reference (SPEC.md, section 7).
The baselines' base-to-novel averages are the published ones that MMRL's Table 1 reprints, read from
the official repositories' READMEs (MaPLe's, PromptSRC's, MMA's and KgCoOp's), where each is
given with the same three numbers by every repository that lists it.

Keys: method names as in the paper (``CLIP`` is zero-shot CLIP; ``METHOD_ALIASES`` maps trainer
names to them), datasets by their config stems (``configs/datasets/<stem>.yaml``), ``average``
for the paper's average rows.
"""
from __future__ import annotations

PAPER = "MMRL (Guo & Gu, CVPR 2025, arXiv:2503.08497)"

# Trainer names (TRAINER.NAME / output folders) whose paper row has another name.
METHOD_ALIASES: dict[str, str] = {
    "ZeroshotCLIP": "CLIP",
    "ZeroShotCLIP": "CLIP",
    "ZSCLIP": "CLIP",
    "LinearProbeCLIP": "Linear probe CLIP",
    "LinearProbe": "Linear probe CLIP",
    "MultiModalAdapter": "MMA",
    "MMRLpp": "MMRL++",
}

# Table 1: method -> dataset -> (base, novel, HM) as printed in the paper.
BASE_TO_NOVEL: dict[str, dict[str, tuple[float, float, float]]] = {
    "MMRL": {"eurosat": (95.60, 80.17, 87.21), "average": (85.68, 77.16, 81.20)},
    "MMA": {"average": (83.20, 76.80, 79.87)},
    "CLIP": {"average": (69.34, 74.22, 71.70)},
    "CoOp": {"average": (82.69, 63.22, 71.66)},
    "CoCoOp": {"average": (80.47, 71.69, 75.83)},
    "KgCoOp": {"average": (80.73, 73.60, 77.00)},
    "MaPLe": {"average": (82.28, 75.14, 78.55)},
    "PromptSRC": {"average": (84.26, 76.10, 79.97)},
}

# Table 2: method -> dataset -> accuracy (imagenet is the source; "average" over the 10 targets).
CROSS_DATASET: dict[str, dict[str, float]] = {"MMRL": {"imagenet": 72.03, "average": 67.25}}

# Table 3: method -> dataset -> accuracy (imagenet source, imagenetv2 / _sketch / _a / _r; "average").
DOMAIN_GENERALIZATION: dict[str, dict[str, float]] = {
    "MMRL": {
        "imagenet": 72.03, "imagenetv2": 64.47, "imagenet_sketch": 49.17, "imagenet_a": 51.20, "imagenet_r": 77.53,
    },  # fmt: skip
}

# Tables 10/11: method -> dataset (or "average") -> shots -> accuracy.
FEW_SHOT: dict[str, dict[str, dict[int, float]]] = {}

# Where each entered number was read: (table, method, dataset) -> source.
SOURCES: dict[tuple[str, str, str], str] = {
    ("base_to_novel", "MMRL", "eurosat"): "Table 1 as quoted in github.com/yunncheng/MMRL/issues/14",
    # The project's method reference (shared/docs/SPEC.md section 7, "Paper figures to compare with").
    ("base_to_novel", "MMRL", "average"): "Table 1 average, as given in the project's SPEC.md",
    ("base_to_novel", "MMA", "average"): "Table 1 average, as given in the project's SPEC.md",
    ("base_to_novel", "CLIP", "average"): "README of github.com/muzairkhattak/multimodal-prompt-learning",
    ("base_to_novel", "CoOp", "average"): "README of github.com/muzairkhattak/multimodal-prompt-learning",
    ("base_to_novel", "CoCoOp", "average"): "README of github.com/muzairkhattak/multimodal-prompt-learning",
    ("base_to_novel", "MaPLe", "average"): "README of github.com/muzairkhattak/multimodal-prompt-learning",
    ("base_to_novel", "PromptSRC", "average"): "README of github.com/muzairkhattak/PromptSRC",
    ("base_to_novel", "KgCoOp", "average"): (
        "README of github.com/ZjjConan/Multi-Modal-Adapter (KgCoOp's own README: 80.73 / 73.6 / 77.0)"
    ),
    ("cross_dataset", "MMRL", "imagenet"): "Table 2, as given in the project's SPEC.md",
    ("cross_dataset", "MMRL", "average"): "Table 2 target average, as given in the project's SPEC.md",
    **{("domain_generalization", "MMRL", d): "Table 3, as given in the project's SPEC.md"
       for d in ("imagenet", "imagenetv2", "imagenet_sketch", "imagenet_a", "imagenet_r")},
}


def paper_method(method: str) -> str:
    """The paper's name for a trainer (``ZeroshotCLIP`` -> ``CLIP``); others unchanged."""
    return METHOD_ALIASES.get(method, method)


def base_to_novel(method: str, dataset: str) -> tuple[float, float, float] | None:
    return BASE_TO_NOVEL.get(paper_method(method), {}).get(dataset)


def cross_dataset(method: str, dataset: str) -> float | None:
    return CROSS_DATASET.get(paper_method(method), {}).get(dataset)


def domain_generalization(method: str, dataset: str) -> float | None:
    return DOMAIN_GENERALIZATION.get(paper_method(method), {}).get(dataset)


def few_shot(method: str, dataset: str, shots: int) -> float | None:
    return FEW_SHOT.get(paper_method(method), {}).get(dataset, {}).get(shots)
