"""A dataset's own prompt template (ImageFolder's DATASET.FOLDER.TEMPLATE) reaches every method's prompts.

For every registered trainer, built on an ImageFolder dataset with a template: every class prompt the
method writes from a template is the dataset's (an ensemble may add its own templates to it); a method whose
prompts are learned context + class name says it does not use the template; a method without a text side
writes no prompt at all. The prompts are caught where every method turns text into tokens.
"""

from __future__ import annotations

import os
import os.path as osp
import sys

import pytest
import yaml
from PIL import Image

import datasets  # noqa: F401  (registers the datasets)
from clip import clip
from dassl.config import get_cfg_default
from dassl.engine import build_trainer
from trainers.config import clip_trainers, extend_cfg
from trainers.prompts import ClassPrompts

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
FOLDERS = ["sparrow", "blue_jay", "owl", "heron"]
NAMES = ["blue jay", "heron", "owl", "sparrow"]  # labels follow the sorted class folders
TEMPLATE = "a blurry photo of a {}, a type of bird."
NO_TEXT = {"LinearProbeCLIP"}  # classifies image features: no prompts


@pytest.fixture(scope="module")
def setup(tiny_clip, tmp_path_factory) -> tuple[str, str]:
    root = tmp_path_factory.mktemp("folder")
    for c, name in enumerate(FOLDERS):
        os.makedirs(root / "birds" / name)
        for i in range(6):
            Image.new("RGB", (32, 32), (60 * c, 20 * i, 100)).save(root / "birds" / name / f"{i}.jpg")
    return tiny_clip, str(root)


def config_file(trainer: str) -> str:
    with open(osp.join(REPO, "configs", "trainers", trainer, "protocols.yaml")) as f:
        entry = (lambda p: p.get("base2new") or p.get("few_shot") or p["dg"])(yaml.safe_load(f))
    config = entry["config"] if isinstance(entry["config"], str) else entry["config"][max(entry["config"])]
    return osp.join(REPO, "configs", "trainers", trainer, f"{config}.yaml")


def tokenized_during_build(trainer: str, setup: tuple[str, str], monkeypatch) -> tuple[set[str], set[str]]:
    """(prompts a learned context fills in, every other prompt) tokenized while ``trainer`` is built."""
    learned, written = set(), set()
    tokenize = clip.tokenize

    def recording(texts, *args, **kwargs):
        caller = sys._getframe(1).f_locals.get("self")
        target = learned if isinstance(caller, ClassPrompts) else written
        target.update([texts] if isinstance(texts, str) else texts)
        return tokenize(texts, *args, **kwargs)

    monkeypatch.setattr(clip, "tokenize", recording)
    tiny, root = setup
    cfg = get_cfg_default()
    extend_cfg(cfg)
    cfg.merge_from_file(osp.join(REPO, "configs", "datasets", "folder.yaml"))
    cfg.merge_from_file(config_file(trainer))
    cfg.merge_from_list([
        "TRAINER.NAME", trainer, "DATASET.ROOT", root, "DATASET.FOLDER.PATH", "birds",
        "DATASET.FOLDER.TEMPLATE", TEMPLATE, "MODEL.BACKBONE.PATH", tiny, "INPUT.SIZE", "(32, 32)",
        "DATALOADER.NUM_WORKERS", "0", "OUTPUT_DIR", osp.join(root, "out", trainer),
    ])  # fmt: skip
    cfg.freeze()
    build_trainer(cfg)
    return learned, written


@pytest.mark.parametrize("trainer", sorted(clip_trainers()))
def test_the_dataset_template_reaches_the_prompts(trainer, setup, monkeypatch, capsys):
    learned, written = tokenized_during_build(trainer, setup, monkeypatch)
    class_prompts = {p for p in written if any(name in p for name in NAMES)}
    expected = {TEMPLATE.format(name) for name in NAMES}
    if class_prompts:
        assert expected <= class_prompts, f"{trainer} prompts its classes without the dataset's template"
    elif learned:
        assert "learns its prompt context; the dataset's template" in capsys.readouterr().out
        assert not any(p in expected for p in learned)
    else:
        assert trainer in NO_TEXT, f"{trainer} builds no class prompt at all"
