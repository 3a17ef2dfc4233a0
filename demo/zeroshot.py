"""Zero-shot accuracy of the tiny CLIP on the base and new test splits, the table's reference row.

To compare like with like, everything but the learnable tokens is what the MMRL runs use: the
config comes from train.py's own ``setup_cfg`` on the same arguments, the test images from dassl's
``DataManager`` (same split, base/new subsampling and test transform), the prompts from the
trainer's template, and CLIP is built from the weights file the way the trainer builds it.
"""

from __future__ import annotations

import contextlib
import io

import torch
from tqdm import tqdm

import train
from clip import clip
from clip.model import build_model
from dassl.data import DataManager
from trainers.prompts import class_prompts

from . import dataset  # noqa: F401  (registers DemoShapes)


@torch.no_grad()
def zero_shot_accuracy(train_argv: list[str], subsample: str) -> float:
    """Top-1 accuracy (%) of zero-shot CLIP on the ``subsample`` classes' test split.

    ``train_argv`` is a train.py command line (without SUBSAMPLE_CLASSES); few-shot sampling is
    switched off, so no few-shot cache file is written that the real runs would then read.
    """
    argv = [*train_argv, "DATASET.SUBSAMPLE_CLASSES", subsample, "DATASET.NUM_SHOTS", "-1"]
    cfg = train.setup_cfg(train.build_parser().parse_args(argv))
    with contextlib.redirect_stdout(io.StringIO()):  # the dataset summary belongs to the runs' logs
        dm = DataManager(cfg)
    model = build_model(clip.load_clip_state_dict(cfg.MODEL.BACKBONE.NAME, cfg.MODEL.BACKBONE.PATH)).float()
    text = model.encode_text(clip.tokenize(class_prompts(cfg.DATASET.NAME, dm.dataset.classnames)))
    text = text / text.norm(dim=-1, keepdim=True)
    correct = total = 0
    for batch in tqdm(dm.test_loader, desc=f"zero-shot CLIP, {subsample} classes", unit="batch", leave=False):
        image = model.encode_image(batch["img"])
        image = image / image.norm(dim=-1, keepdim=True)
        correct += int(((image @ text.t()).argmax(dim=-1) == batch["label"]).sum())
        total += len(batch["label"])
    return 100.0 * correct / total
