"""MMRL and MMRL++ against yunncheng/MMRL."""

from __future__ import annotations

from ..scenario import Pin, Run, Scenario
from ..worlds import CROSS, PETS, SEEDED_MMRL, VIT_B16
from .coop import BASE, NEW

CLASSNAMES = ["red_apple", "dog", "cat", "house", "tree"]


def seeded(trainer: str) -> Scenario:
    """tests/test_mmrl_trainer.py's recipe: five names, seed 7, three AdamW steps, then 6 images."""
    values = {"N_REP_TOKENS": 5, "REP_DIM": 48, "REP_LAYERS": [6, 7, 8, 9, 10, 11, 12], "ALPHA": 0.7, "PREC": "fp32",
              "REG_WEIGHT": 2.0}
    if trainer == "MMRLpp":
        values.update({"BETA": 0.6, "PROJ_LORA_DIM": 8, "RES_LORA_DIM": 4})
    return Scenario(
        trainer, "seeded", "mmrl", SEEDED_MMRL, driver="steps",
        driver_args={
            "trainer": trainer, "dataset": "OxfordPets", "classnames": CLASSNAMES,
            "opts": ["OPTIM.NAME", "adamw", "OPTIM.LR", 1e-3], "node": trainer, "values": values,
            "steps": 3, "eval": 6, "form": "mmrl",
        },
        pins=(Pin("tests/test_mmrl_trainer.py", f"OFFICIAL[{trainer!r}]", "mmrl"),),
    )  # fmt: skip


def scenarios(trainer: str) -> list[Scenario]:
    node = f"TRAINER.{trainer}"
    common = (f"{node}.PREC", "fp32", f"{node}.REP_DIM", "48", "DATALOADER.TRAIN_X.BATCH_SIZE", "4")
    return [
        Scenario(
            trainer, "base_to_new", "mmrl", PETS, f"{trainer}/vit_b16",
            (Run("base", "oxford_pets", BASE), Run("new", "oxford_pets", NEW, "base", 2, True),
             Run("official_new", "oxford_pets", NEW, "base", 2, True, official_model=True)),
            ("DATASET.NUM_SHOTS", "4", "OPTIM.MAX_EPOCH", "2", "TASK", "B2N", *common),
            note="widths 128/64/32, base then new classes, the official checkpoint in ours",
        ),  # fmt: skip
        Scenario(
            trainer, "few_shot_seed2", "mmrl", PETS, f"{trainer}/vit_b16_few_shot", (Run("train", "oxford_pets"),),
            ("DATASET.NUM_SHOTS", "2", "OPTIM.MAX_EPOCH", "2", "TASK", "FS", *common), seed=2, note="seed 2",
        ),  # fmt: skip
        Scenario(
            trainer, "cross_dataset", "mmrl", CROSS, f"{trainer}/vit_b16_cross_datasets",
            (Run("imagenet", "imagenet"), Run("dtd", "dtd", (), "imagenet", 1, True),
             Run("eurosat", "eurosat", (), "imagenet", 1, True)),
            ("DATASET.NUM_SHOTS", "2", "OPTIM.MAX_EPOCH", "1", "TASK", "CD", *common),
            note="ImageNet to DTD and EuroSAT",
        ),  # fmt: skip
        Scenario(
            trainer, "base_to_new_vitb16", "mmrl", VIT_B16, f"{trainer}/vit_b16", (Run("base", opts=BASE),),
            ("DATASET.NUM_SHOTS", "4", "OPTIM.MAX_EPOCH", "1", "OPTIM.LR", "0.01", "TASK", "B2N", f"{node}.PREC",
             "fp32", "DATALOADER.TRAIN_X.BATCH_SIZE", "16"),
            note="the deep-prompt gap's world: ViT-B/16 widths and heads, 12 layers",
        ),  # fmt: skip
        seeded(trainer),
    ]


SCENARIOS = [*scenarios("MMRL"), *scenarios("MMRLpp")]
