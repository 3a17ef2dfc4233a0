"""CoOp, CoCoOp and zero-shot CLIP against KaiyangZhou/CoOp."""

from __future__ import annotations

from ..scenario import Pin, Run, Scenario
from ..worlds import CARS, DTD20, TESTS, TESTS_CLIP, TESTS_IMAGENET

# The runs of tests/test_coop.py: two epochs, test batches of 8.
SHORT = ("OPTIM.MAX_EPOCH", "2", "DATALOADER.TEST.BATCH_SIZE", "8")
COOP_SHOTS = ("TRAINER.COOP.N_CTX", "16", "DATASET.NUM_SHOTS", "2", "TRAINER.COOP.PREC", "fp32",
              "DATALOADER.TRAIN_X.BATCH_SIZE", "4")  # fmt: skip
BASE = ("DATASET.SUBSAMPLE_CLASSES", "base")
NEW = ("DATASET.SUBSAMPLE_CLASSES", "new")
DTD_NAMES = ["banded", "blotchy", "braided", "bubbly", "bumpy", "chequered", "cobwebbed", "cracked"]
IMAGENET_NAMES = ["tench", "goldfish", "great white shark", "tiger shark", "hammerhead shark", "electric ray",
                  "stingray", "rooster"]  # fmt: skip
TEST_COOP = "tests/test_coop.py"


def base_to_new(epoch: int, dataset: str = "dtd") -> tuple[Run, ...]:
    """Train on base classes; test new classes from the saved epoch, with our checkpoint and the official one."""
    return (
        Run("base", dataset, BASE),
        Run("new", dataset, NEW, model_dir="base", load_epoch=epoch, eval_only=True),
        Run("official_new", dataset, NEW, model_dir="base", load_epoch=epoch, eval_only=True, official_model=True),
    )


def zero_shot_features(trainer: str, dataset: str, names: list[str]) -> Scenario:
    """The class features zero-shot CLIP builds for ``names`` (the tests' tiny CLIP, no data read)."""
    return Scenario(
        trainer, f"features_{dataset.lower()}", "coop", TESTS_CLIP, driver="features",
        driver_args={"trainer": trainer, "dataset": dataset, "classnames": names},
        pins=(Pin("tests/test_zsclip.py", f"OFFICIAL_FEATURES[{trainer!r}, {dataset!r}]", "zs_features"),),
    )  # fmt: skip


SCENARIOS = [
    Scenario(
        "CoOp", "middle", "coop", TESTS, "CoOp/vit_b16",
        (Run("train", opts=("TRAINER.COOP.CLASS_TOKEN_POSITION", "middle")),), SHORT + COOP_SHOTS,
        pins=(Pin(TEST_COOP, "OFFICIAL['coop_middle']", "train_steps", "train"),),
        note="random context, class token in the middle, warmup",
    ),
    Scenario(
        "CoOp", "csc", "coop", TESTS, "CoOp/vit_b16", (Run("train", opts=("TRAINER.COOP.CSC", "True")),),
        SHORT + COOP_SHOTS, pins=(Pin(TEST_COOP, "OFFICIAL['coop_csc']", "train_steps", "train"),),
        note="class-specific contexts",
    ),
    Scenario(
        "CoOp", "ctxv1_base_to_new", "coop", TESTS, "CoOp/vit_b16_ctxv1", base_to_new(2),
        SHORT + ("DATASET.NUM_SHOTS", "4", "TRAINER.COOP.PREC", "fp32", "DATALOADER.TRAIN_X.BATCH_SIZE", "4"),
        pins=(Pin(TEST_COOP, "OFFICIAL['coop_ctxv1_base']", "train_steps", "base"),
              Pin(TEST_COOP, "OFFICIAL['coop_ctxv1_new']", "train_steps", "new")),
        note="init words, base then new classes from --load-epoch, the official checkpoint in ours",
    ),  # fmt: skip
    Scenario(
        "CoOp", "cars_front_seed2", "coop", CARS, "CoOp/vit_b16_ep50",
        (Run("train", "stanford_cars", ("TRAINER.COOP.CLASS_TOKEN_POSITION", "front")),),
        ("TRAINER.COOP.N_CTX", "4", "DATASET.NUM_SHOTS", "4", "TRAINER.COOP.PREC", "fp32", "OPTIM.MAX_EPOCH", "3",
         "DATALOADER.TRAIN_X.BATCH_SIZE", "8", "OPTIM.LR", "0.01"),
        seed=2, note="long class names, widths 128, two text heads, class token at the front, seed 2",
    ),  # fmt: skip
    Scenario(
        "CoCoOp", "batch1_base_to_new", "coop", TESTS, "CoCoOp/vit_b16_c4_ep10_batch1_ctxv1", base_to_new(2),
        SHORT + ("DATASET.NUM_SHOTS", "2", "TRAINER.COCOOP.PREC", "fp32"),
        pins=(Pin(TEST_COOP, "OFFICIAL['cocoop_base']", "train_steps", "base"),
              Pin(TEST_COOP, "OFFICIAL['cocoop_new']", "train_steps", "new")),
        note="batch 1, base then new classes, the official checkpoint in ours",
    ),  # fmt: skip
    Scenario(
        "CoCoOp", "dtd20_seed3", "coop", DTD20, "CoCoOp/vit_b16_c4_ep10_batch1_ctxv1", base_to_new(1),
        ("DATASET.NUM_SHOTS", "1", "TRAINER.COCOOP.PREC", "fp32", "OPTIM.MAX_EPOCH", "1"), seed=3,
        note="20 classes, 1 shot, seed 3",
    ),
    Scenario(
        "ZeroshotCLIP", "imagenet", "coop", TESTS_IMAGENET, "ZeroshotCLIP/vit_b16",
        (Run("test", "imagenet", ("DATALOADER.TEST.BATCH_SIZE", "8"), eval_only=True),),
        official_config="CoOp/vit_b16",
        pins=(Pin("tests/test_zsclip.py", "OFFICIAL_CORRECT['ZeroshotCLIP']", "correct", "test"),),
    ),
    Scenario(
        "ZeroshotCLIP2", "imagenet", "coop", TESTS_IMAGENET, "ZeroshotCLIP2/vit_b16",
        (Run("test", "imagenet", ("DATALOADER.TEST.BATCH_SIZE", "8"), eval_only=True),),
        official_config="CoOp/vit_b16",
        pins=(Pin("tests/test_zsclip.py", "OFFICIAL_CORRECT['ZeroshotCLIP2']", "correct", "test"),),
    ),
    Scenario(
        "ZeroshotCLIP", "cars", "coop", CARS, "ZeroshotCLIP/vit_b16", (Run("test", "stanford_cars", eval_only=True),),
        official_config="CoOp/vit_b16", note="long class names, widths 128",
    ),
    *(
        zero_shot_features(t, d, DTD_NAMES if d == "DescribableTextures" else IMAGENET_NAMES)
        for t in ("ZeroshotCLIP", "ZeroshotCLIP2")
        for d in ("DescribableTextures", "ImageNet")
    ),
]
