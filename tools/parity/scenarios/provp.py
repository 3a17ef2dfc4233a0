"""ProVP against MCG-NJU/ProVP (its trainer on its own forked Dassl, ``Dassl/`` of the same repository).

Our sides add ``TRAINER.COOP.SELECT_ON_TEST True``: the fork tests after every epoch and reports the best,
which ours does only when asked (docs/methods/provp.md). The world has ViT-B/16's image tower (the official
code hard-codes its 12 blocks and width 768) and a tiny text tower.
"""

from __future__ import annotations

from ..scenario import Pin, Run, Scenario
from ..worlds import PROVP, SEEDED_PROVP
from .coop import BASE, NEW

OURS = ("TRAINER.COOP.SELECT_ON_TEST", "True")
FP32 = ("TRAINER.COOP.PREC", "fp32")
# The official scripts' options (LOSS.LAMBDA, CSC and the class token position are passed by every one).
SCRIPT = ("LOSS.LAMBDA", "1.0", "TRAINER.COOP.CSC", "False", "TRAINER.COOP.CLASS_TOKEN_POSITION", "end")
B2N = ("DATASET.NUM_SHOTS", "4", "DATALOADER.TRAIN_X.BATCH_SIZE", "4", "DATALOADER.TEST.BATCH_SIZE", "5",
       "OPTIM.MAX_EPOCH", "3", "TRAINER.COOP.N_CTX", "16", *SCRIPT)  # fmt: skip

SCENARIOS = [
    Scenario(
        "ProVP", "seeded", "provp", SEEDED_PROVP, driver="steps",
        driver_args={
            "trainer": "ProVP", "dataset": "DescribableTextures", "config_file":
            "configs/trainers/ProVP/vit_b16_b2n_ep100.yaml", "classnames": ["red_apple", "dog", "cat", "house", "tree"],
            "opts": ["OPTIM.MAX_EPOCH", 2, "OPTIM.USE_REF", True], "node": "COOP",
            "values": {"N_CTX": 16, "PREC": "fp32"}, "steps": 4, "num_batches": 2, "schedule": "epochs", "eval": 6,
            "inference": True, "summaries": True, "next_draw": True,
        },
        pins=(Pin("tests/test_provp.py", "OFFICIAL", "provp"),),
        note="tests/test_provp.py's recipe: ProVP-Ref, four steps over two epochs (warmup, then cosine)",
    ),
    Scenario(
        "ProVP", "base_to_new", "provp", PROVP, "ProVP/vit_b16_b2n_ep100",
        (Run("base", "dtd", BASE), Run("new", "dtd", NEW, model_dir="base", load_epoch=3, eval_only=True),
         Run("official_new", "dtd", NEW, model_dir="base", load_epoch=3, eval_only=True, official_model=True),
         Run("official_best", "dtd", BASE, model_dir="base", eval_only=True, official_model=True)),
        (*B2N, *FP32), seed=1, ours_opts=OURS,
        note="the published base-to-novel file (ProVP-Ref), 16 prompts, a test after every epoch, the best deployed; "
             "the official checkpoints (epoch 3 and model-best) evaluated by ours",
    ),  # fmt: skip
    Scenario(
        "ProVP", "few_shot_no_ref_3_prompts", "provp", PROVP, "ProVP/vit_b16_ep100",
        (Run("train", "eurosat"),),
        ("DATASET.NUM_SHOTS", "2", "DATALOADER.TRAIN_X.BATCH_SIZE", "4", "DATALOADER.TEST.BATCH_SIZE", "7",
         "OPTIM.MAX_EPOCH", "3", "OPTIM.LR", "0.5", "TRAINER.COOP.N_CTX", "3", *SCRIPT, *FP32),
        seed=2, ours_opts=OURS,
        note="without the re-formation loss; 3 prompts (<= 4: none inserted, blended into patch rows); the file "
             "without PIXEL_MEAN",
    ),  # fmt: skip
    Scenario(
        "ProVP", "few_shot_ref_pets", "provp", PROVP, "ProVP/vit_b16_ref_ep50",
        (Run("train", "oxford_pets"),),
        ("DATASET.NUM_SHOTS", "3", "DATALOADER.TRAIN_X.BATCH_SIZE", "3", "DATALOADER.TEST.BATCH_SIZE", "4",
         "OPTIM.MAX_EPOCH", "2", "TRAINER.COOP.N_CTX", "8", *SCRIPT, *FP32),
        seed=3, ours_opts=OURS, note="ProVP-Ref with Pets' own template, 8 prompts, batches of 3",
    ),  # fmt: skip
]
