"""MMA (ZjjConan/Multi-Modal-Adapter) and the masked-MHA adapter (the public module of dqmis/clip-mma)."""

from __future__ import annotations

from ..scenario import Pin, Run, Scenario
from ..worlds import CARS, SEEDED, SEEDED_EMBED512, TESTS
from .coop import BASE, NEW

CLASSNAMES = ["red_apple", "dog", "cat", "house", "tree"]
# The masked-MHA adapter's prompts on OxfordPets (CoOp's template), given to the release's model as text.
PET_PROMPTS = [f"a photo of a {name.replace('_', ' ')}, a type of pet." for name in CLASSNAMES]
MMA = ("TRAINER.MMADAPTER.PREC", "fp32")

SCENARIOS = [
    Scenario(
        "MultiModalAdapter", "base_to_new", "mma", TESTS, "MultiModalAdapter/vit_b16_ep5",
        (Run("base", opts=BASE), Run("new", opts=NEW, model_dir="base", load_epoch=2, eval_only=True),
         Run("official_new", opts=NEW, model_dir="base", load_epoch=2, eval_only=True, official_model=True)),
        ("DATASET.NUM_SHOTS", "2", "DATALOADER.TRAIN_X.BATCH_SIZE", "2", "OPTIM.MAX_EPOCH", "2", *MMA),
        note="base then new classes, the official checkpoint in ours",
    ),  # fmt: skip
    Scenario(
        "MultiModalAdapter", "cars_seed3", "mma", CARS, "MultiModalAdapter/vit_b16_ep5",
        (Run("train", "stanford_cars"),),
        ("DATASET.NUM_SHOTS", "4", "DATALOADER.TRAIN_X.BATCH_SIZE", "8", "OPTIM.MAX_EPOCH", "2",
         "TRAINER.MMADAPTER.ADAPTER_START", "3", *MMA), seed=3,
        note="long class names, widths 128, adapters from layer 3, seed 3",
    ),  # fmt: skip
    Scenario(
        "MultiModalAdapter", "seeded", "mma", SEEDED, driver="steps",
        driver_args={
            "trainer": "MultiModalAdapter", "dataset": "DescribableTextures", "classnames": CLASSNAMES,
            "opts": ["OPTIM.NAME", "sgd", "OPTIM.LR", 0.05, "OPTIM.MAX_EPOCH", 5, "OPTIM.LR_SCHEDULER", "cosine"],
            "node": "MMADAPTER", "values": {"TEXT_CTX_INIT": "a photo of a", "ADAPTER_START": 5, "ADAPTER_END": 12,
                                            "ADAPTER_DIM": 32, "ADAPTER_SCALE": 0.001, "PREC": "fp32"},
            "steps": 3, "eval": 6,
            "state": {"shared12_w00": ["shared_adapter.12.0.weight", 0, 0],
                      "text5_up_b0": ["text_adapter.5.up.bias", 0]},
        },
        pins=(Pin("tests/test_mma.py", "OFFICIAL", "mma"),),
    ),  # fmt: skip
    Scenario(
        "MaskedMHAAdapter", "seeded", "clip-mma", SEEDED_EMBED512, driver="release_steps",
        driver_args={
            "trainer": "MaskedMHAAdapter", "dataset": "OxfordPets", "classnames": CLASSNAMES,
            "config_file": "configs/trainers/MaskedMHAAdapter/vit_b16.yaml",
            "opts": ["DATALOADER.TRAIN_X.BATCH_SIZE", 4], "node": "MASKED_MHA_ADAPTER", "values": {"PREC": "fp32"},
            "steps": 3, "eval": 6, "prompts": PET_PROMPTS, "lr": 5e-3, "weight_decay": 1e-4,
        },
        pins=(Pin("tests/test_masked_mha_adapter.py", "RELEASE", "release"),),
        note="the release has no train.py for Dassl: its model and its Adam step against our trainer",
    ),  # fmt: skip
]
