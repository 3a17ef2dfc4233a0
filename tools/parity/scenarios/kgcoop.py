"""KgCoOp against htyao89/KgCoOp (its KgCoOp/ folder, on upstream Dassl)."""

from __future__ import annotations

from ..scenario import Pin, Run, Scenario
from ..worlds import CARS, DTD20, SEEDED
from .coop import BASE, NEW

CLASSNAMES = ["banded", "blotchy", "braided", "bubbly", "chequered"]
TEST = "tests/test_kgcoop.py"


def seeded(name: str, ctx_init: str, n_ctx: int) -> Scenario:
    """tests/test_kgcoop.py's recipe: built on five names after seed 7, three steps of two-batch epochs."""
    return Scenario(
        "KgCoOp", f"seeded_{name}", "kgcoop", SEEDED, driver="steps",
        driver_args={
            "trainer": "KgCoOp", "dataset": "DescribableTextures", "classnames": CLASSNAMES,
            "opts": ["OPTIM.NAME", "sgd", "OPTIM.LR", 0.01, "OPTIM.LR_SCHEDULER", "cosine", "OPTIM.MAX_EPOCH", 2],
            "node": "COOP", "values": {"PREC": "fp32", "W": 8.0, "CTX_INIT": ctx_init, "N_CTX": n_ctx},
            "images": "global", "steps": 3, "num_batches": 2, "eval": 2, "inference": True,
        },
        pins=(Pin(TEST, f"OFFICIAL[{name!r}]", "kgcoop"),),
    )  # fmt: skip


B2N = ("DATASET.NUM_SHOTS", "4", "TRAINER.COOP.N_CTX", "4", "TRAINER.COOP.W", "8.0", "OPTIM.LR", "0.02",
       "DATALOADER.TRAIN_X.BATCH_SIZE", "16", "OPTIM.MAX_EPOCH", "4", "TRAINER.COOP.PREC", "fp32")  # fmt: skip

SCENARIOS = [
    Scenario(
        "KgCoOp", "base_to_new_dtd20", "kgcoop", DTD20, "KgCoOp/vit_b16_ep100_ctxv1",
        (Run("base", opts=BASE), Run("new", opts=NEW, model_dir="base", load_epoch=4, eval_only=True),
         Run("official_new", opts=NEW, model_dir="base", load_epoch=4, eval_only=True, official_model=True)),
        B2N, note="the issue's setting: 20 classes, W 8, lr 0.02, batch 16, augmentation on",
    ),  # fmt: skip
    Scenario(
        "KgCoOp", "cars_seed2", "kgcoop", CARS, "KgCoOp/vit_b16_ep100_ctxv1", (Run("train", "stanford_cars"),),
        ("DATASET.NUM_SHOTS", "4", "TRAINER.COOP.W", "2.0", "DATALOADER.TRAIN_X.BATCH_SIZE", "8",
         "OPTIM.MAX_EPOCH", "2", "TRAINER.COOP.PREC", "fp32"), seed=2,
        note="long class names, widths 128, all classes, seed 2",
    ),  # fmt: skip
    seeded("init_words", "an image of", 16),
    seeded("random", "", 4),
]
