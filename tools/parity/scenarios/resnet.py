"""The CoOp family on tiny ResNet CLIPs: CoOp, CoCoOp and zero-shot CLIP against KaiyangZhou/CoOp, KgCoOp
against htyao89/KgCoOp, with their official ``rn50*`` / ``rn101`` config files (CoCoOp publishes none: its
ViT file with ``MODEL.BACKBONE.NAME RN50``, the only key in which they would differ).

The ``*_tests`` scenarios run on tests/test_resnet_clip.py's world and print its pins; the others vary the
weights, the ResNet's shape, the class counts and the class-name lengths. Every training config file here
has the published augmentation (``random_resized_crop``, ``random_flip``).
"""

from __future__ import annotations

from ..scenario import Pin, Run, Scenario
from ..worlds import RN_CARS, RN_DTD20, RN_IMAGENET, RN_TESTS
from .coop import BASE, NEW, base_to_new

TEST = "tests/test_resnet_clip.py"
TEST_BATCH = ("DATALOADER.TEST.BATCH_SIZE", "8")
# tests/test_resnet_clip.py's options (its COOP, B2N, COCOOP).
SHOTS = ("DATASET.NUM_SHOTS", "2", "DATALOADER.TRAIN_X.BATCH_SIZE", "4", "OPTIM.MAX_EPOCH", "2",
         "TRAINER.COOP.PREC", "fp32", "OPTIM.LR", "0.05")  # fmt: skip
B2N = ("DATASET.NUM_SHOTS", "4", "DATALOADER.TRAIN_X.BATCH_SIZE", "4", "OPTIM.MAX_EPOCH", "2",
       "TRAINER.COOP.PREC", "fp32", "OPTIM.LR", "0.05")  # fmt: skip
COCOOP = ("DATASET.NUM_SHOTS", "2", "OPTIM.MAX_EPOCH", "2", "TRAINER.COCOOP.PREC", "fp32",
          "MODEL.BACKBONE.NAME", "RN50", "OPTIM.LR", "0.05")  # fmt: skip
KGCOOP = ("DATASET.NUM_SHOTS", "4", "DATALOADER.TRAIN_X.BATCH_SIZE", "4", "OPTIM.MAX_EPOCH", "2",
          "TRAINER.COOP.PREC", "fp32", "TRAINER.COOP.W", "8.0", "OPTIM.LR", "0.02")  # fmt: skip


def pins(*names: str) -> tuple[Pin, ...]:
    """tests/test_resnet_clip.py's ``OFFICIAL[name]`` from the run of the same name (base/new: ``<x>_base``)."""
    return tuple(Pin(TEST, f"OFFICIAL[{n!r}]", "seeded_run", n.rsplit("_", 1)[-1]) for n in names)


def coop(name: str, config: str, opts: tuple[str, ...], pin: str, note: str) -> Scenario:
    """A CoOp few-shot run on the tests' world, pinned as ``OFFICIAL[pin]``."""
    return Scenario("CoOp", name, "coop", RN_TESTS, config, (Run("train", opts=opts),), TEST_BATCH + SHOTS,
                    pins=(Pin(TEST, f"OFFICIAL[{pin!r}]", "seeded_run", "train"),), note=note)  # fmt: skip


def zero_shot(trainer: str, name: str, world, dataset: str, config: str, pin: str = "") -> Scenario:
    """Zero-shot evaluation: ours reads ``<trainer>/<config>``, the official code CoOp's ``CoOp/<config>``
    (its scripts/coop/zeroshot.sh)."""
    return Scenario(
        trainer, name, "coop", world, f"{trainer}/{config}", (Run("test", dataset, TEST_BATCH, eval_only=True),),
        official_config=f"CoOp/{config}", pins=(Pin(TEST, f"OFFICIAL[{pin!r}]", "seeded_run", "test"),) if pin else (),
    )  # fmt: skip


SCENARIOS = [
    coop("rn50_end", "CoOp/rn50_ep50", ("TRAINER.COOP.N_CTX", "16"), "coop_end",
         "CoOp's first command at RN50: 16 random context vectors, class token at the end, warmup"),
    coop("rn50_csc", "CoOp/rn50_ep50", ("TRAINER.COOP.N_CTX", "4", "TRAINER.COOP.CSC", "True"), "coop_csc",
         "class-specific contexts"),
    coop("rn50_middle", "CoOp/rn50_ep100", ("TRAINER.COOP.N_CTX", "4", "TRAINER.COOP.CLASS_TOKEN_POSITION", "middle"),
         "coop_middle", "class token in the middle"),
    coop("rn101_front", "CoOp/rn101", ("TRAINER.COOP.N_CTX", "4", "TRAINER.COOP.CLASS_TOKEN_POSITION", "front"),
         "coop_front", "the rn101 file, class token at the front"),
    Scenario(
        "CoOp", "rn50_ctxv1_base_to_new", "coop", RN_TESTS, "CoOp/rn50_ctxv1", base_to_new(2), TEST_BATCH + B2N,
        pins=pins("coop_ctxv1_base", "coop_ctxv1_new"),
        note="init words, base then new classes from --load-epoch, the official checkpoint in ours",
    ),
    Scenario(
        "CoOp", "rn50_cars_seed2", "coop", RN_CARS, "CoOp/rn50_ep50", (Run("train", "stanford_cars"),),
        ("TRAINER.COOP.N_CTX", "8", "DATASET.NUM_SHOTS", "4", "TRAINER.COOP.PREC", "fp32", "OPTIM.MAX_EPOCH", "3",
         "DATALOADER.TRAIN_X.BATCH_SIZE", "8", "OPTIM.LR", "0.01"), seed=2,
        note="long class names, another ResNet shape (width 16, 1-2-1-1 blocks), text 128 wide, seed 2",
    ),  # fmt: skip
    Scenario(
        "CoCoOp", "rn50_base_to_new", "coop", RN_TESTS, "CoCoOp/vit_b16_c4_ep10_batch1_ctxv1", base_to_new(2),
        TEST_BATCH + COCOOP, pins=pins("cocoop_base", "cocoop_new"),
        note="batch 1 at RN50 (MODEL.BACKBONE.NAME RN50), base then new classes, the official checkpoint in ours",
    ),
    Scenario(
        "CoCoOp", "rn50_dtd20_seed3", "coop", RN_DTD20, "CoCoOp/vit_b16_c4_ep10_batch1_ctxv1", base_to_new(1),
        ("DATASET.NUM_SHOTS", "1", "TRAINER.COCOOP.PREC", "fp32", "OPTIM.MAX_EPOCH", "1", "MODEL.BACKBONE.NAME",
         "RN50"), seed=3, note="20 classes, 1 shot, seed 3",
    ),  # fmt: skip
    zero_shot("ZeroshotCLIP", "rn50_tests", RN_TESTS, "dtd", "rn50", "zs"),
    zero_shot("ZeroshotCLIP2", "rn101_tests", RN_TESTS, "dtd", "rn101", "zs2"),
    zero_shot("ZeroshotCLIP", "rn101_cars", RN_CARS, "stanford_cars", "rn101"),
    zero_shot("ZeroshotCLIP2", "rn50_imagenet", RN_IMAGENET, "imagenet", "rn50"),
    Scenario(
        "KgCoOp", "rn50_base_to_new_tests", "kgcoop", RN_TESTS, "KgCoOp/rn50_ep100", base_to_new(2),
        TEST_BATCH + KGCOOP, pins=pins("kgcoop_base", "kgcoop_new"),
        note="the rn50_ep100 file (CTX_INIT True: 'a photo of a'), W 8, base then new classes",
    ),
    Scenario(
        "KgCoOp", "rn50_base_to_new_dtd20", "kgcoop", RN_DTD20, "KgCoOp/rn50_ep100",
        (Run("base", opts=BASE), Run("new", opts=NEW, model_dir="base", load_epoch=3, eval_only=True),
         Run("official_new", opts=NEW, model_dir="base", load_epoch=3, eval_only=True, official_model=True)),
        ("DATASET.NUM_SHOTS", "4", "TRAINER.COOP.W", "8.0", "OPTIM.LR", "0.02", "DATALOADER.TRAIN_X.BATCH_SIZE",
         "16", "OPTIM.MAX_EPOCH", "3", "TRAINER.COOP.PREC", "fp32"),
        note="20 classes, W 8, lr 0.02, batch 16, seed 1",
    ),  # fmt: skip
    Scenario(
        "KgCoOp", "rn50_cars_seed2", "kgcoop", RN_CARS, "KgCoOp/rn50_ep100", (Run("train", "stanford_cars"),),
        ("DATASET.NUM_SHOTS", "4", "TRAINER.COOP.W", "2.0", "DATALOADER.TRAIN_X.BATCH_SIZE", "8",
         "OPTIM.MAX_EPOCH", "2", "TRAINER.COOP.PREC", "fp32"), seed=2,
        note="long class names, another ResNet shape, text 128 wide, all classes, seed 2",
    ),  # fmt: skip
]
