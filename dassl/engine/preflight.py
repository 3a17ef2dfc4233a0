"""Checks of the files a run will read, made before the data and the models are built.

A truncated CLIP file or a ``--resume`` folder with nothing in it otherwise surfaces after the dataset
is scanned and CLIP is built (minutes on ImageNet), or not at all: resuming from an empty folder used
to train from scratch without a word.
"""

from __future__ import annotations

import os
import os.path as osp

from yacs.config import CfgNode

from dassl.engine.resume_state import RESUME_FILE
from dassl.errors import UserError
from dassl.user_files import check_torch_file

__all__ = ["check_input_files", "check_resume_dir", "nothing_to_resume"]

CLIP_FIX = "pass OpenAI's file (e.g. ViT-B-16.pt) or a CLIP state dict saved with torch.save"
WEIGHTS_FIX = "pass a checkpoint or state dict saved with torch.save (e.g. <output-dir>/<model>/model.pth.tar-<N>)"


def nothing_to_resume(directory: str, missing: list[str] | None = None) -> str:
    what = f"no {RESUME_FILE}" + (f", no checkpoint of {', '.join(missing)}" if missing else ", no <model>/checkpoint")
    return (f"--resume {directory}: nothing to resume there ({what}): give the --output-dir of an interrupted run, "
            "or drop --resume to train from scratch")  # fmt: skip


def check_resume_dir(directory: str) -> None:
    """``--resume DIR`` (RESUME) must be a folder holding a resume state or a model checkpoint."""
    if not osp.isdir(directory):
        raise UserError(f"--resume {directory}: no such folder: give the --output-dir of the run to continue")
    if osp.isfile(osp.join(directory, RESUME_FILE)):
        return
    subfolders = [d for d in os.listdir(directory) if osp.isdir(osp.join(directory, d))]
    if not any(osp.isfile(osp.join(directory, d, "checkpoint")) for d in subfolders):
        raise UserError(nothing_to_resume(directory))


def check_input_files(cfg: CfgNode) -> None:
    """CLIP weights (MODEL.BACKBONE.PATH), MODEL.INIT_WEIGHTS and RESUME: present, readable, not truncated."""
    if cfg.MODEL.BACKBONE.get("PATH"):
        check_torch_file(cfg.MODEL.BACKBONE.PATH, CLIP_FIX, source="MODEL.BACKBONE.PATH")
    if cfg.MODEL.INIT_WEIGHTS:
        check_torch_file(cfg.MODEL.INIT_WEIGHTS, WEIGHTS_FIX, source="MODEL.INIT_WEIGHTS")
    if cfg.RESUME:
        check_resume_dir(cfg.RESUME)
