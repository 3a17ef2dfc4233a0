"""TCP against htyao89/Textual-based_Class-aware_prompt_tuning (its trainer on upstream Dassl).

The official side gets one shim of its own, ``adam_eps``: the edit of Dassl's Adam (eps 1e-3) its README
asks for. Its fp16 meta-network and fp16 second CLIP run as they are (ours: ``META_NET_PREC fp16``, the
default). Its text towers are 512 wide: the official code reshapes the meta-network's output to 512.
"""

from __future__ import annotations

from ..scenario import Pin, Run, Scenario
from ..worlds import SEEDED_TCP, SEEDED_TCP_RESNET, TCP_CARS, TCP_DTD, World
from .coop import BASE, NEW

CLASSNAMES = ["banded", "blotchy", "braided", "bubbly", "chequered"]
TEST = "tests/test_tcp.py"
SHIMS = ("adam_eps",)
# The official base-to-novel script's options (its W is KgCoOp's key, which TCP's run ignores).
SCRIPT = ("TRAINER.COOP.CSC", "False", "TRAINER.COOP.W", "1.0", "TRAINER.COOP.CLASS_TOKEN_POSITION", "end",
          "TRAINER.COOP.PREC", "fp32")  # fmt: skip


def seeded(name: str, world: World, ctx_init: str, n_ctx: int, pinned: bool = True) -> Scenario:
    """tests/test_tcp.py's recipe: built on five names after seed 7, four Adam steps of two-batch epochs on
    images the global generator draws after the build, then model_inference on two more."""
    return Scenario(
        "TCP", f"seeded_{name}", "tcp", world, driver="steps",
        driver_args={
            "trainer": "TCP", "dataset": "DescribableTextures", "classnames": CLASSNAMES,
            "opts": ["OPTIM.NAME", "adam", "OPTIM.LR", 0.01, "OPTIM.LR_SCHEDULER", "cosine", "OPTIM.MAX_EPOCH", 2],
            "node": "COOP", "values": {"PREC": "fp32", "CTX_INIT": ctx_init, "N_CTX": n_ctx},
            "images": "global", "steps": 4, "num_batches": 2, "schedule": "epochs", "eval": 2, "inference": True,
        },
        pins=(Pin(TEST, f"OFFICIAL[{name!r}]", "tcp"),) if pinned else (), shims=SHIMS,
    )  # fmt: skip


SCENARIOS = [
    seeded("random", SEEDED_TCP, "", 4),
    seeded("init_words", SEEDED_TCP, "an image of", 16),
    seeded("resnet", SEEDED_TCP_RESNET, "", 4, pinned=False),
    Scenario(
        "TCP", "base_to_new", "tcp", TCP_DTD, "TCP/vit_b16_ep100_ctxv1",
        (Run("base", opts=BASE), Run("new", opts=NEW, model_dir="base", load_epoch=3, eval_only=True),
         Run("official_new", opts=NEW, model_dir="base", load_epoch=3, eval_only=True, official_model=True)),
        ("DATASET.NUM_SHOTS", "4", "DATALOADER.TRAIN_X.BATCH_SIZE", "4", "OPTIM.MAX_EPOCH", "3",
         "TRAINER.COOP.N_CTX", "4", *SCRIPT),
        shims=SHIMS, note="the official script's command line, base then new classes, the official checkpoint in ours",
    ),  # fmt: skip
    Scenario(
        "TCP", "cars_seed2", "tcp", TCP_CARS, "TCP/vit_b16_ep100_ctxv1", (Run("train", "stanford_cars"),),
        ("DATASET.NUM_SHOTS", "2", "DATALOADER.TRAIN_X.BATCH_SIZE", "8", "OPTIM.MAX_EPOCH", "2", "OPTIM.LR", "0.01",
         "TRAINER.COOP.N_CTX", "4", *SCRIPT),
        seed=2, shims=SHIMS, note="long class names, 10 classes, image width 128, embedding 32, lr 0.01, seed 2",
    ),  # fmt: skip
]
