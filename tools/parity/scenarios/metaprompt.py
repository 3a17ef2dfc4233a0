"""MetaPrompt (Meta_B2N, Meta_DG) against Vill-Lab/2024-TIP-MetaPrompt (its trainers on upstream Dassl).

Two torch behaviours, one scenario each: ``torch2`` runs the official code as it runs on today's torch (ours
with ``STEP_FROZEN_PROMPT False``); ``torch1`` adds the ``zero_grad_keeps_grads`` shim, torch 1.10's
``zero_grad`` that its published numbers come from (ours: ``STEP_FROZEN_PROMPT True``, the default). The
official dataset config files sit in ``configs/datasets/b2n/`` and ``dg/``.
"""

from __future__ import annotations

from ..scenario import Pin, Run, Scenario
from ..worlds import METAPROMPT, METAPROMPT_NOISE
from .coop import BASE, NEW

TEST = "tests/test_metaprompt.py"
FP32 = ("TRAINER.META.PREC", "fp32")
B2N = ("DATASET.NUM_SHOTS", "4", "DATALOADER.TRAIN_X.BATCH_SIZE", "4", "OPTIM.MAX_EPOCH", "2", "OPTIM.LR", "0.05")
DG = ("DATASET.NUM_SHOTS", "2", "DATALOADER.TRAIN_X.BATCH_SIZE", "8", "OPTIM.MAX_EPOCH", "2", "OPTIM.LR", "0.05",
      "DATASET.ID", "1")  # fmt: skip
TORCH = {  # torch behaviour: (the official side's shims, our options)
    "torch2": ((), ("TRAINER.META.STEP_FROZEN_PROMPT", "False")),
    "torch1": (("zero_grad_keeps_grads",), ("TRAINER.META.STEP_FROZEN_PROMPT", "True")),
}


def b2n(torch_version: str) -> Scenario:
    shims, ours = TORCH[torch_version]
    return Scenario(
        "Meta_B2N", f"base_to_new_{torch_version}", "metaprompt", METAPROMPT, "Meta_B2N/vit_b16",
        (Run("base", opts=BASE), Run("new", opts=NEW, model_dir="base", load_epoch=2, eval_only=True),
         Run("official_new", opts=NEW, model_dir="base", load_epoch=2, eval_only=True, official_model=True)),
        (*B2N, *FP32), official_datasets="b2n/", shims=shims, ours_opts=ours,
        pins=(Pin(TEST, f"OFFICIAL[{torch_version!r}]['b2n_base']", "metaprompt", "base"),
              Pin(TEST, f"OFFICIAL[{torch_version!r}]['b2n_new']", "metaprompt", "new")),
        note=f"tests/test_metaprompt.py's world, {torch_version}'s zero_grad; the official checkpoint in ours",
    )  # fmt: skip


def dg(torch_version: str) -> Scenario:
    shims, ours = TORCH[torch_version]
    return Scenario(
        "Meta_DG", f"pacs_cartoon_{torch_version}", "metaprompt", METAPROMPT, "Meta_DG/vit_b16",
        (Run("train", "pacs"),), (*DG, *FP32), official_datasets="dg/", shims=shims, ours_opts=ours,
        pins=(Pin(TEST, f"OFFICIAL[{torch_version!r}]['dg']", "metaprompt", "train"),),
        note=f"tests/test_metaprompt.py's world, PACS, target cartoon (DATASET.ID 1), {torch_version}'s zero_grad",
    )  # fmt: skip


SCENARIOS = [
    b2n("torch2"), b2n("torch1"), dg("torch2"), dg("torch1"),
    Scenario(
        "Meta_B2N", "eurosat_seed2", "metaprompt", METAPROMPT_NOISE, "Meta_B2N/vit_b16",
        (Run("base", "eurosat", BASE), Run("new", "eurosat", NEW, model_dir="base", load_epoch=1, eval_only=True)),
        ("DATASET.NUM_SHOTS", "2", "DATALOADER.TRAIN_X.BATCH_SIZE", "4", "OPTIM.MAX_EPOCH", "1", *FP32), seed=2,
        official_datasets="b2n/", shims=TORCH["torch1"][0], ours_opts=TORCH["torch1"][1],
        note="text width 128 (2 heads) + noise, EuroSAT 10 classes, the config's lr, seed 2, torch1",
    ),  # fmt: skip
    Scenario(
        "Meta_DG", "pacs_photo_seed3", "metaprompt", METAPROMPT_NOISE, "Meta_DG/vit_b16", (Run("train", "pacs"),),
        ("DATASET.NUM_SHOTS", "2", "DATALOADER.TRAIN_X.BATCH_SIZE", "6", "OPTIM.MAX_EPOCH", "1", "DATASET.ID", "2",
         *FP32), seed=3, official_datasets="dg/", shims=TORCH["torch2"][0], ours_opts=TORCH["torch2"][1],
        note="PACS 7 classes, target photo (DATASET.ID 2), batch 6, seed 3, torch2",
    ),  # fmt: skip
]
