"""IVLP, VPT, MaPLe (muzairkhattak/multimodal-prompt-learning) and PromptSRC (muzairkhattak/PromptSRC)."""

from __future__ import annotations

from ..scenario import Pin, Run, Scenario
from ..worlds import DTD20, SEEDED, SEEDED_MAPLE, VIT_B16, VIT_B16_CROSS, World
from .coop import BASE, NEW

CLASSNAMES = ["red_apple", "dog", "cat", "house", "tree"]
TEST = "tests/test_deep_prompts.py"
# tests/test_deep_prompts.py's settings per method: (repo, node, values)
SEEDED_SETTINGS = {
    "MaPLe": ("mpl", "MAPLE", {"N_CTX": 2, "CTX_INIT": "a photo of a", "PROMPT_DEPTH": 3}),
    "IVLP": ("mpl", "IVLP", {"N_CTX_VISION": 2, "N_CTX_TEXT": 3, "CTX_INIT": "a photo of a",
                             "PROMPT_DEPTH_VISION": 12, "PROMPT_DEPTH_TEXT": 9}),
    "VPT": ("mpl", "VPT", {"N_CTX_VISION": 8, "PROMPT_DEPTH_VISION": 12}),
    "PromptSRC": ("promptsrc", "PROMPTSRC", {"N_CTX_VISION": 4, "N_CTX_TEXT": 4, "CTX_INIT": "a photo of a",
                                             "PROMPT_DEPTH_VISION": 9, "PROMPT_DEPTH_TEXT": 9, "GPA_MEAN": 1.5,
                                             "GPA_STD": 1.0}),
}  # fmt: skip
# Each method's base-to-novel config and its precision key.
CONFIGS = {
    "IVLP": ("mpl", "IVLP/vit_b16_c2_ep5_batch4_2+2ctx", "TRAINER.IVLP.PREC"),
    "VPT": ("mpl", "VPT/vit_b16_c2_ep5_batch4_4", "TRAINER.VPT.PREC"),
    "MaPLe": ("mpl", "MaPLe/vit_b16_c2_ep5_batch4_2ctx", "TRAINER.MAPLE.PREC"),
    "PromptSRC": ("promptsrc", "PromptSRC/vit_b16_c2_ep20_batch4_4+4ctx", "TRAINER.PROMPTSRC.PREC"),
}


def seeded(method: str) -> Scenario:
    """tests/test_deep_prompts.py's recipe: five names, seed 7, two epochs of two batches, then 6 images."""
    repo, node, values = SEEDED_SETTINGS[method]
    return Scenario(
        method, "seeded", repo, SEEDED_MAPLE if method == "MaPLe" else SEEDED, driver="steps",
        driver_args={
            "trainer": method, "dataset": "DescribableTextures", "classnames": CLASSNAMES,
            "opts": ["OPTIM.NAME", "sgd", "OPTIM.LR", 0.05, "OPTIM.MAX_EPOCH", 2, "OPTIM.LR_SCHEDULER", "cosine"],
            "node": node, "values": {**values, "PREC": "fp32"}, "steps": 4, "num_batches": 2,
            "schedule": "epochs", "eval": 6,
        },
        pins=(Pin(TEST, f"OFFICIAL[{method!r}]", "deep"),),
        note="MaPLe's official code needs ViT-B/16's widths: 3 layers of them" if method == "MaPLe" else "",
    )  # fmt: skip


def base_to_new(method: str, world: World, name: str, opts: tuple[str, ...], epochs: int, note: str) -> Scenario:
    repo, config, prec = CONFIGS[method]
    return Scenario(
        method, name, repo, world, config,
        (Run("base", opts=BASE), Run("new", opts=NEW, model_dir="base", load_epoch=epochs, eval_only=True),
         Run("official_new", opts=NEW, model_dir="base", load_epoch=epochs, eval_only=True, official_model=True)),
        (*opts, "OPTIM.MAX_EPOCH", str(epochs), prec, "fp32"), note=note,
    )  # fmt: skip


VIT_B16_B2N = ("DATASET.NUM_SHOTS", "4", "OPTIM.LR", "0.01", "DATALOADER.TRAIN_X.BATCH_SIZE", "16")
TINY_B2N = ("DATASET.NUM_SHOTS", "2", "OPTIM.LR", "0.02", "DATALOADER.TRAIN_X.BATCH_SIZE", "4")

SCENARIOS = [
    *(seeded(m) for m in ("MaPLe", "IVLP", "VPT", "PromptSRC")),
    *(base_to_new(m, VIT_B16, "base_to_new_vitb16", VIT_B16_B2N, 1,
                  "the issue's setting: ViT-B/16 widths and heads, 12 layers, 20 classes, lr 0.01, batch 16")
      for m in ("IVLP", "VPT", "MaPLe", "PromptSRC")),
    *(base_to_new(m, DTD20, "base_to_new_dtd20", TINY_B2N, 2, "tiny CLIP, 20 classes, batch 4")
      for m in ("IVLP", "VPT", "PromptSRC")),
    Scenario(
        "MaPLe", "cross_dataset_vitb16", "mpl", VIT_B16_CROSS, "MaPLe/vit_b16_c2_ep5_batch4_2ctx_cross_datasets",
        (Run("imagenet", "imagenet"), Run("dtd", "dtd", model_dir="imagenet", load_epoch=1, eval_only=True)),
        ("DATASET.NUM_SHOTS", "4", "OPTIM.LR", "0.01", "DATALOADER.TRAIN_X.BATCH_SIZE", "16", "OPTIM.MAX_EPOCH", "1",
         "TRAINER.MAPLE.PREC", "fp32"), seed=2,
        note="the issue's cross-dataset config: ImageNet to DTD at ViT-B/16 widths, seed 2",
    ),  # fmt: skip
]
