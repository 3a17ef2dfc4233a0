"""CLIP-Adapter against gaopengcuhk/CLIP-Adapter: one trainer file, run inside KaiyangZhou/CoOp (its README's
way: the file in CoOp's ``trainers/``, imported by its train.py) on upstream Dassl, with CoOp's config files.

The launcher imports the release's ``clip_adapter.py`` as ``trainers.clip_adapter`` after CoOp's
``trainers`` package (``--module``), and keeps its ``.to("cuda")`` on the CPU (``to_cuda``). The release
writes its adapter for 1024-d features (``Adapter(1024, 4)``): the worlds' CLIPs have them, but one, where
the ``adapter_width`` shim sizes it by the world's features.
"""

from __future__ import annotations

from typing import Any

from ..scenario import Pin, Run, Scenario
from ..worlds import ADAPTER_CARS, ADAPTER_RN, ADAPTER_VIT, TESTS, World
from .coop import BASE, NEW

TEST = "tests/test_clip_adapter.py"
SHIMS = ("to_cuda",)
TEST_BATCH = ("DATALOADER.TEST.BATCH_SIZE", "8")
# A large learning rate: on a random CLIP the adapter then moves the predictions within a few epochs.
TRAIN = ("DATASET.NUM_SHOTS", "4", "DATALOADER.TRAIN_X.BATCH_SIZE", "4", "OPTIM.MAX_EPOCH", "3", "OPTIM.LR", "5.0",
         *TEST_BATCH)  # fmt: skip
B2N = ("DATASET.NUM_SHOTS", "4", "DATALOADER.TRAIN_X.BATCH_SIZE", "4", "OPTIM.MAX_EPOCH", "2", "OPTIM.LR", "5.0",
       *TEST_BATCH)  # fmt: skip


def adapter(name: str, world: World, config: str, runs: tuple[Run, ...], opts: tuple[str, ...],
            **kw: Any) -> Scenario:  # fmt: skip
    """A scenario of the release on CoOp's config file ``config`` (ours: CLIP_Adapter's copy of it)."""
    return Scenario("CLIP_Adapter", name, "clip-adapter", world, f"CLIP_Adapter/{config}", runs, opts,
                    official_config=f"CoOp/{config}", **{"shims": SHIMS, **kw})  # fmt: skip


SCENARIOS = [
    adapter("rn_train", ADAPTER_RN, "rn50_ep50", (Run("train"),), TRAIN,
            pins=(Pin(TEST, "OFFICIAL['rn_train']", "clip_adapter", "train"),),
            note="tests/test_clip_adapter.py's ResNet (1024-d features), CoOp's rn50_ep50, warmup"),
    adapter("rn_base_to_new", ADAPTER_RN, "rn50",
            (Run("base", opts=BASE), Run("new", opts=NEW, model_dir="base", load_epoch=2, eval_only=True),
             Run("official_new", opts=NEW, model_dir="base", load_epoch=2, eval_only=True, official_model=True)),
            B2N, pins=(Pin(TEST, "OFFICIAL['rn_base']", "clip_adapter", "base"),
                       Pin(TEST, "OFFICIAL['rn_new']", "clip_adapter", "new")),
            note="base then new classes from --load-epoch, the official checkpoint in ours"),
    adapter("vit_train", ADAPTER_VIT, "vit_b16_ep50", (Run("train"),), TRAIN,
            pins=(Pin(TEST, "OFFICIAL['vit_train']", "clip_adapter", "train"),),
            note="tests/test_clip_adapter.py's ViT (1024-d features)"),
    adapter("vit64_adapter_width", TESTS, "vit_b16", (Run("train"),), TRAIN,
            pins=(Pin(TEST, "OFFICIAL['vit64_patched']", "clip_adapter", "train"),), shims=(*SHIMS, "adapter_width"),
            note="64-d features: the release's Adapter(1024, 4) sized 64 by the adapter_width shim"),
    adapter("cars_seed3", ADAPTER_CARS, "vit_b16", (Run("train", "stanford_cars"),),
            ("DATASET.NUM_SHOTS", "2", "DATALOADER.TRAIN_X.BATCH_SIZE", "6", "OPTIM.MAX_EPOCH", "2", "OPTIM.LR", "1.0",
             *TEST_BATCH), seed=3, note="long class names, 12 classes, text width 128 + noise, seed 3"),
]  # fmt: skip
