"""Which checkpoint of a model folder a run loads: the one rule of every loader here.

``model.pth.tar-<epoch>`` when an epoch is given (``--load-epoch``); else ``model-best.pth.tar`` when
there is one (upstream Dassl's default, written by ``TEST.FINAL_MODEL best_val``); else the last epoch
saved (what a default run leaves). ``selection_of`` tells metrics.json which of the three it was.
"""
from __future__ import annotations

import os
import os.path as osp
import re

import torch

from dassl.evaluation import ModelSelection
from dassl.utils import load_checkpoint
from dassl.utils.torchtools import CheckpointNotFound

BEST = "model-best.pth.tar"
_EPOCH_FILE = re.compile(r"model\.pth\.tar-(\d+)")


def checkpoint_path(folder: str, epoch: int | None = None) -> str:
    """The file of ``folder`` to load (see the module docstring)."""
    if not osp.isdir(folder):
        raise CheckpointNotFound(
            f'No checkpoint folder "{folder}": --model-dir must be the output folder of a training run '
            f"(which holds {osp.basename(folder)}/)"
        )
    files = sorted(os.listdir(folder))
    if epoch is not None:
        path = osp.join(folder, f"model.pth.tar-{epoch}")
        if not osp.isfile(path):
            raise CheckpointNotFound(f'No checkpoint "{path}" (--load-epoch {epoch}); {folder} holds {files}')
        return path
    if BEST in files:
        return osp.join(folder, BEST)
    epochs = [int(m.group(1)) for f in files if (m := _EPOCH_FILE.fullmatch(f))]
    if not epochs:
        raise CheckpointNotFound(f"No model.pth.tar-<epoch> or {BEST} in {folder} (it holds {files})")
    return osp.join(folder, f"model.pth.tar-{max(epochs)}")


def checkpoint_epoch(path: str) -> int | None:
    """The ``epoch`` stored in a checkpoint (completed epochs), or None if it cannot be read.

    Memory-mapped first, so only the small pickled header is read, not the tensors.
    """
    try:
        return int(torch.load(path, map_location="cpu", weights_only=True, mmap=True)["epoch"])
    except Exception:
        try:
            return int(load_checkpoint(path)["epoch"])
        except Exception:
            return None


def selection_of(path: str, epoch: int | None, model_dir: str) -> ModelSelection:
    """What metrics.json records for a model loaded from ``path`` (``epoch``: the one asked for)."""
    model_dir = osp.abspath(model_dir)
    if epoch is not None:
        return ModelSelection("epoch", int(epoch), model_dir)
    if osp.basename(path) == BEST:
        return ModelSelection("best_val", checkpoint_epoch(path), model_dir)
    match = _EPOCH_FILE.fullmatch(osp.basename(path))
    return ModelSelection("last", int(match.group(1)) if match else None, model_dir)
