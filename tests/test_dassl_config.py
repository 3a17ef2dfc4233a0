"""dassl.config: upstream's keys and default values, so upstream YAML merges and numbers agree."""
from __future__ import annotations

import ast
import json
import os.path as osp
import re
import subprocess

import pytest
from yacs.config import CfgNode

from dassl.config import clean_cfg, get_cfg_default

# Keys read by CoOp/MMRL code or set in their YAML files, with upstream Dassl's defaults.
EXPECTED = {
    "OUTPUT_DIR": "./output",
    "RESUME": "",
    "SEED": -1,
    "USE_CUDA": True,
    "VERBOSE": True,
    "INPUT.SIZE": (224, 224),
    "INPUT.INTERPOLATION": "bilinear",
    "INPUT.TRANSFORMS": (),
    "INPUT.NO_TRANSFORM": False,
    "INPUT.PIXEL_MEAN": [0.485, 0.456, 0.406],
    "INPUT.PIXEL_STD": [0.229, 0.224, 0.225],
    "INPUT.RRCROP_SCALE": (0.08, 1.0),
    "DATASET.ROOT": "",
    "DATASET.NAME": "",
    "DATASET.SOURCE_DOMAINS": (),
    "DATASET.TARGET_DOMAINS": (),
    "DATASET.NUM_LABELED": -1,
    "DATASET.NUM_SHOTS": -1,
    "DATASET.VAL_PERCENT": 0.1,
    "DATASET.STL10_FOLD": -1,
    "DATASET.CIFAR_C_TYPE": "",
    "DATASET.CIFAR_C_LEVEL": 1,
    "DATASET.ALL_AS_UNLABELED": False,
    "DATALOADER.NUM_WORKERS": 4,
    "DATALOADER.K_TRANSFORMS": 1,
    "DATALOADER.RETURN_IMG0": False,
    "DATALOADER.TRAIN_X.SAMPLER": "RandomSampler",
    "DATALOADER.TRAIN_X.BATCH_SIZE": 32,
    "DATALOADER.TRAIN_X.N_DOMAIN": 0,
    "DATALOADER.TRAIN_X.N_INS": 16,
    "DATALOADER.TRAIN_U.SAME_AS_X": True,
    "DATALOADER.TRAIN_U.SAMPLER": "RandomSampler",
    "DATALOADER.TRAIN_U.BATCH_SIZE": 32,
    "DATALOADER.TEST.SAMPLER": "SequentialSampler",
    "DATALOADER.TEST.BATCH_SIZE": 32,
    "MODEL.INIT_WEIGHTS": "",
    "MODEL.BACKBONE.NAME": "",
    "MODEL.BACKBONE.PRETRAINED": True,
    "MODEL.BACKBONE.PATH": "",
    "MODEL.HEAD.NAME": "",
    "OPTIM.NAME": "adam",
    "OPTIM.LR": 0.0003,
    "OPTIM.WEIGHT_DECAY": 5e-4,
    "OPTIM.MOMENTUM": 0.9,
    "OPTIM.SGD_DAMPNING": 0,
    "OPTIM.SGD_NESTEROV": False,
    "OPTIM.RMSPROP_ALPHA": 0.99,
    "OPTIM.ADAM_BETA1": 0.9,
    "OPTIM.ADAM_BETA2": 0.999,
    "OPTIM.STAGED_LR": False,
    "OPTIM.NEW_LAYERS": (),
    "OPTIM.BASE_LR_MULT": 0.1,
    "OPTIM.LR_SCHEDULER": "single_step",
    "OPTIM.STEPSIZE": (-1,),
    "OPTIM.GAMMA": 0.1,
    "OPTIM.MAX_EPOCH": 10,
    "OPTIM.WARMUP_EPOCH": -1,
    "OPTIM.WARMUP_TYPE": "linear",
    "OPTIM.WARMUP_CONS_LR": 1e-5,
    "OPTIM.WARMUP_MIN_LR": 1e-5,
    "OPTIM.WARMUP_RECOUNT": True,
    "TRAIN.CHECKPOINT_FREQ": 0,
    "TRAIN.PRINT_FREQ": 10,
    "TRAIN.COUNT_ITER": "train_x",
    "TEST.EVALUATOR": "Classification",
    "TEST.PER_CLASS_RESULT": False,
    "TEST.COMPUTE_CMAT": False,
    "TEST.NO_TEST": False,
    "TEST.SPLIT": "test",
    "TEST.FINAL_MODEL": "last_step",
    "TRAINER.NAME": "",
}

MMRL_YAML = """
DATALOADER:
  TRAIN_X:
    BATCH_SIZE: 4
  TEST:
    BATCH_SIZE: 250
  NUM_WORKERS: 8
INPUT:
  SIZE: (224, 224)
  RRCROP_SCALE: (0.5, 1)
  INTERPOLATION: "bicubic"
  PIXEL_MEAN: [0.48145466, 0.4578275, 0.40821073]
  PIXEL_STD: [0.26862954, 0.26130258, 0.27577711]
  TRANSFORMS: ["random_resized_crop", "random_flip", "normalize"]
OPTIM:
  NAME: "adamw"
  LR: 0.001
  MAX_EPOCH: 10
  LR_SCHEDULER: "cosine"
  WARMUP_EPOCH: 1
  WARMUP_TYPE: "constant"
  WARMUP_CONS_LR: 1e-5
TRAIN:
  PRINT_FREQ: 20
MODEL:
  BACKBONE:
    NAME: "ViT-B/16"
"""


def lookup(cfg, key):
    for part in key.split("."):
        cfg = cfg[part]
    return cfg


def flatten(node, prefix=""):
    out = {}
    for k, v in node.items():
        out.update(flatten(v, f"{prefix}{k}.") if isinstance(v, CfgNode) else {prefix + k: v})
    return out


@pytest.mark.parametrize("key", sorted(EXPECTED))
def test_default_values(key):
    value = lookup(get_cfg_default(), key)
    assert value == EXPECTED[key] and type(value) is type(EXPECTED[key])


def test_defaults_are_a_fresh_copy():
    cfg = get_cfg_default()
    cfg.OPTIM.LR = 1.0
    assert get_cfg_default().OPTIM.LR == 0.0003


def test_upstream_style_yaml_and_opts_merge(tmp_path):
    (tmp_path / "t.yaml").write_text(MMRL_YAML)
    cfg = get_cfg_default()
    cfg.merge_from_file(str(tmp_path / "t.yaml"))
    cfg.merge_from_list(["DATASET.NUM_SHOTS", "16", "TRAINER.FIXMATCH.CONF_THRE", "0.9", "MODEL.BACKBONE.PATH", "x.pt"])
    assert (cfg.OPTIM.NAME, cfg.INPUT.RRCROP_SCALE, cfg.DATASET.NUM_SHOTS) == ("adamw", (0.5, 1), 16)
    (tmp_path / "bad.yaml").write_text("OPTIM:\n  NOT_A_KEY: 1\n")
    with pytest.raises(KeyError, match="Non-existent config key"):  # the check above is not vacuous
        cfg.merge_from_file(str(tmp_path / "bad.yaml"))


def test_clean_cfg_keeps_only_the_chosen_trainer():
    cfg = get_cfg_default()
    clean_cfg(cfg, "fixmatch")
    assert sorted(cfg.TRAINER.keys()) == ["FIXMATCH", "NAME"]


# Upstream Dassl's defaults as data: every ``_C.KEY = value`` line of its dassl/config/defaults.py at one
# commit, frozen in tests/data/upstream_dassl_defaults.json; regenerate (after reviewing upstream's change) with
#   git clone https://github.com/KaiyangZhou/Dassl.pytorch && python -m tests.test_dassl_config Dassl.pytorch
SNAPSHOT = osp.join(osp.dirname(osp.abspath(__file__)), "data", "upstream_dassl_defaults.json")
UPSTREAM_COMMIT = "c61a1b570ac6333bd50fb5ae06aea59002fb20bb"  # 2022-10-06, the latest upstream commit


def upstream_defaults(clone: str, commit: str = UPSTREAM_COMMIT) -> dict[str, str]:
    """Every default of upstream's dassl/config/defaults.py at ``commit`` of a clone, as Python literals."""
    source = subprocess.run(
        ["git", "-C", clone, "show", f"{commit}:dassl/config/defaults.py"], capture_output=True, text=True, check=True
    ).stdout
    found = re.finditer(r"^_C\.([A-Z0-9_.]+) = (.+?)(?:\s+#.*)?$", source, re.M)
    return {m.group(1): repr(ast.literal_eval(m.group(2))) for m in found if m.group(2) != "CN()"}


def test_every_upstream_key_exists_with_the_same_value():
    with open(SNAPSHOT) as f:
        snapshot = json.load(f)
    assert snapshot["commit"] == UPSTREAM_COMMIT
    upstream = {k: ast.literal_eval(v) for k, v in snapshot["defaults"].items()}
    assert len(upstream) == 135  # all of the snapshot; a change upstream should be reviewed here
    ours = flatten(get_cfg_default())
    assert set(ours) - set(upstream) == {
        "MODEL.BACKBONE.PATH", "DATASET.FOLDER.PATH", "DATASET.FOLDER.SPLIT_FILE", "DATASET.FOLDER.CLASSNAMES",
        "DATASET.FOLDER.TEMPLATE", "DATASET.ID",
    }
    assert {k: v for k, v in upstream.items() if ours.get(k, object()) != v} == {}
    assert {k: v for k, v in upstream.items() if type(ours[k]) is not type(v)} == {}  # tuples stay tuples


if __name__ == "__main__":  # python -m tests.test_dassl_config CLONE: rewrite the snapshot from a clone
    import sys

    from dassl.utils import atomic_write

    source = {"repository": "KaiyangZhou/Dassl.pytorch", "commit": UPSTREAM_COMMIT, "file": "dassl/config/defaults.py"}
    with atomic_write(SNAPSHOT) as f:
        json.dump({**source, "defaults": upstream_defaults(sys.argv[1])}, f, indent=1)
        f.write("\n")
