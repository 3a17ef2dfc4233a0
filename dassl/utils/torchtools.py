"""Checkpoint files in upstream Dassl's layout, written atomically and read weights-only."""
from __future__ import annotations

import os.path as osp
import pickle
import shutil
import warnings
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.nn as nn

from .tools import UserError, atomic_write, mkdir_if_missing

__all__ = [
    "save_atomic",
    "CheckpointError",
    "CheckpointNotFound",
    "state_dict_of",
    "save_checkpoint",
    "load_checkpoint",
    "resume_from_checkpoint",
    "load_pretrained_weights",
    "count_num_param",
    "PickledObject",
]


def save_atomic(obj: Any, fpath: str) -> None:
    """``torch.save`` to a temp file renamed into place; a full disk is an ``OSError(ENOSPC)`` naming the file.

    torch reports a failed write as a RuntimeError about stream positions; the OSError it hit is its context.
    """
    try:
        with atomic_write(fpath, "wb") as f:
            torch.save(obj, f)
    except RuntimeError as e:
        cause = e.__context__
        if isinstance(cause, OSError) and cause.errno is not None:
            raise OSError(cause.errno, cause.strerror, fpath) from e
        raise


def save_checkpoint(
    state: dict[str, Any],
    save_dir: str,
    is_best: bool = False,
    remove_module_from_keys: bool = True,
    model_name: str = "",
) -> None:
    """Write ``state`` to ``<save_dir>/<model_name or model.pth.tar-<epoch>>`` and point ``checkpoint`` at it.

    Every file is written to a temp name and renamed, so an interrupted job never leaves a
    truncated checkpoint that a later resume would choke on.
    """
    mkdir_if_missing(save_dir)
    if remove_module_from_keys:  # weights saved from nn.DataParallel load into a bare model
        state["state_dict"] = OrderedDict((k.removeprefix("module."), v) for k, v in state["state_dict"].items())

    fpath = osp.join(save_dir, model_name or f"model.pth.tar-{state['epoch']}")
    save_atomic(state, fpath)
    print(f"Checkpoint saved to {fpath}")

    with atomic_write(osp.join(save_dir, "checkpoint")) as f:
        f.write(osp.basename(fpath) + "\n")

    if is_best:
        best_fpath = osp.join(save_dir, "model-best.pth.tar")
        with open(fpath, "rb") as src, atomic_write(best_fpath, "wb") as dst:
            shutil.copyfileobj(src, dst)
        print(f'Best checkpoint saved to "{best_fpath}"')


class PickledObject:
    """Inert stand-in for an object pickled inside an upstream checkpoint; keeps only its attributes.

    Upstream's warmup schedulers put the successor scheduler (and through it the optimizer)
    into ``state_dict()``; unpickling those as real classes would run their code.
    """


def _plain_dict(*_: Any) -> dict:
    """Rebuilds a pickled ``defaultdict`` as a dict: weights-only loading can fill dicts only."""
    return {}


# Exactly the globals an upstream checkpoint of a warmup run contains (successor scheduler,
# its optimizer and the optimizer's defaultdict state), each mapped to something inert.
_UPSTREAM_GLOBALS: list[tuple[Any, str]] = [
    (PickledObject, f"torch.optim.lr_scheduler.{name}") for name in ("CosineAnnealingLR", "StepLR", "MultiStepLR")
] + [
    (PickledObject, path)
    for path in (
        "torch.optim.adamw.AdamW",
        "torch.optim.adam.Adam",
        "torch.optim.sgd.SGD",
        "torch.optim.rmsprop.RMSprop",
        "dassl.optim.radam.RAdam",
    )
] + [(_plain_dict, "collections.defaultdict"), (dict, "builtins.dict")]


def first_sentence(e: BaseException) -> str:
    """The gist of a library's error message (torch's run to a paragraph)."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return text.split(". ")[0]


def _unpickler_reason(e: BaseException) -> str:
    """torch's weights-only error is a page of advice; the line after "WeightsUnpickler error:" is the reason."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    for i, line in enumerate(lines):
        if line.endswith("WeightsUnpickler error:") and i + 1 < len(lines):
            return lines[i + 1]
    return first_sentence(e)


class CheckpointError(UserError):
    """A checkpoint file that cannot be read (truncated by a full disk, corrupt, not a checkpoint)."""


class CheckpointNotFound(CheckpointError, FileNotFoundError):
    """No file at a checkpoint's path."""


def load_checkpoint(fpath: str, keys: tuple[str, ...] = ()) -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``; upstream files of warmup runs are read via an allow-list.

    Their pickled scheduler/optimizer objects come back as :class:`PickledObject` holding
    only their attributes; nothing else outside torch's weights-only set is accepted. A file that
    cannot be read, or (with ``keys``) is not a dict holding those keys, raises ``CheckpointError`` naming it.
    """
    if fpath is None:
        raise ValueError("File path is None")
    if not osp.exists(fpath):
        raise CheckpointNotFound(f'File is not found at "{fpath}"')
    checkpoint = _load(fpath)
    absent = [k for k in keys if not isinstance(checkpoint, dict) or k not in checkpoint]
    if absent:
        held = f"keys {sorted(map(str, checkpoint))[:6]}" if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise CheckpointError(
            f"{fpath} is not a checkpoint this code can use: it lacks {absent} (it holds {held}); give a file "
            "written by train.py or by the method's official code"
        )
    return checkpoint


def state_dict_of(checkpoint: Any, fpath: str) -> dict[str, torch.Tensor]:
    """The weights in a loaded file: its ``state_dict`` entry, or the file itself when it is a bare state dict."""
    state_dict = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else checkpoint
    if not isinstance(state_dict, dict) or not state_dict or not all(
        isinstance(v, torch.Tensor) for v in state_dict.values()
    ):
        raise CheckpointError(
            f"{fpath} holds no weights (expected a state dict of tensors, or a checkpoint with a 'state_dict' "
            "entry): give a file saved with torch.save(model.state_dict()) or written by train.py"
        )
    return state_dict


def _load(fpath: str) -> Any:
    map_location = None if torch.cuda.is_available() else "cpu"
    try:
        try:
            return torch.load(fpath, map_location=map_location, weights_only=True)
        except pickle.UnpicklingError:
            if not hasattr(torch.serialization, "safe_globals"):
                raise RuntimeError(
                    f"{fpath} pickles Python objects (an upstream Dassl scheduler); reading it weights-only "
                    "needs torch>=2.5 (torch.serialization.safe_globals)"
                ) from None
        with torch.serialization.safe_globals(_UPSTREAM_GLOBALS):
            return torch.load(fpath, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        if "GLOBAL" not in str(e):  # not a refused object (torch names it "GLOBAL ..."): the bytes are wrong
            raise CheckpointError(
                f"cannot read the checkpoint {fpath} (not a checkpoint: {_unpickler_reason(e)}): it is truncated or "
                "corrupt. Delete it (a rerun continues from the checkpoint before) or point --model-dir / --resume "
                "elsewhere"
            ) from e
        raise CheckpointError(
            f"refusing to read {fpath}: it pickles Python objects that are not weights ({first_sentence(e)}), "
            "which this loader never runs; it is not a checkpoint of this code, upstream Dassl or the official repos"
        ) from e
    except (RuntimeError, EOFError, ValueError, zipfile.BadZipFile) as e:
        raise CheckpointError(
            f"cannot read the checkpoint {fpath} ({first_sentence(e)}): "
            "it is truncated or corrupt. Delete it (a rerun continues from the checkpoint before) "
            "or point --model-dir / --resume elsewhere"
        ) from e


# What a scheduler's state_dict holds besides its settings: how far it has stepped (names across torch versions).
_SCHEDULER_PROGRESS = ("last_epoch", "_step_count", "_last_lr", "_get_lr_called_within_step", "_is_initial", "verbose")


def _schedule(state: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """The settings of a scheduler state (T_max, step size, warmup, base lrs; a successor's as ``successor.KEY``),
    not its progress."""
    settings = {}
    for key, value in state.items():
        if key in _SCHEDULER_PROGRESS or key == "optimizer":
            continue
        if key == "successor":  # ours stores its state_dict, upstream's Dassl the object itself
            settings.update(_schedule(value if isinstance(value, dict) else vars(value), f"{prefix}successor."))
        else:
            settings[prefix + key] = value
    return settings


def load_scheduler_state(scheduler: Any, saved: dict[str, Any], path: str) -> None:
    """Load a resumed run's scheduler state, refusing one built from other settings.

    torch's ``load_state_dict`` replaces the settings with the saved ones along with the progress, so a run
    resumed with another ``OPTIM.MAX_EPOCH`` (or LR, or scheduler keys) would silently follow the old
    schedule: a cosine restarts upwards past its old end. Keys only one torch version writes are not compared.
    """
    old, new = _schedule(saved), _schedule(scheduler.state_dict())
    changed = [f"{k} {old[k]} -> {new[k]}" for k in sorted(old.keys() & new.keys()) if old[k] != new[k]]
    if changed:
        raise CheckpointError(
            f"{path} was written with another learning-rate schedule ({'; '.join(changed)}), which resuming "
            "would keep: resume with that run's OPTIM settings (MAX_EPOCH, LR, LR_SCHEDULER, STEPSIZE, WARMUP_*), "
            "or train in a new --output-dir"
        )
    scheduler.load_state_dict(saved)


def resume_from_checkpoint(
    fdir: str,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    adapt: Callable[[dict[str, Any], str], dict[str, Any]] | None = None,
) -> int:
    """Restore the file named in ``<fdir>/checkpoint``; returns the epoch to continue from.

    ``adapt(checkpoint, path)``, if given, may rewrite the checkpoint before anything is loaded
    (e.g. one written by another implementation of the model).
    """
    pointer = osp.join(fdir, "checkpoint")
    try:
        with open(pointer) as f:
            fpath = osp.join(fdir, f.readline().strip("\n"))
    except (OSError, UnicodeDecodeError) as e:
        raise CheckpointError(f"cannot read {pointer} ({e}): it names the checkpoint to resume from; delete "
                              f"{fdir} to train from scratch") from e  # fmt: skip
    if not osp.isfile(fpath):
        raise CheckpointError(f"{pointer} names {fpath}, which does not exist: write the name of a model.pth.tar-<N> "
                              f"of that folder into it, or delete {fdir} to train from scratch")  # fmt: skip
    print(f'Loading checkpoint from "{fpath}"')
    checkpoint = load_checkpoint(fpath, keys=("state_dict", "epoch"))
    if adapt is not None:
        checkpoint = adapt(checkpoint, fpath)
    model.load_state_dict(checkpoint["state_dict"])
    print("Loaded model weights")
    if optimizer is not None and "optimizer" in checkpoint:
        optimizer.load_state_dict(checkpoint["optimizer"])
        print("Loaded optimizer")
    if scheduler is not None and "scheduler" in checkpoint:
        load_scheduler_state(scheduler, checkpoint["scheduler"], fpath)
        print("Loaded scheduler")
    start_epoch = checkpoint["epoch"]
    print(f"Previous epoch: {start_epoch}")
    return start_epoch


def count_num_param(model: nn.Module | None = None, params: Iterable[Any] | None = None) -> int:
    if model is not None:
        return sum(p.numel() for p in model.parameters())
    if params is not None:
        return sum(p["params"].numel() if isinstance(p, dict) else p.numel() for p in params)
    raise ValueError("model and params must provide at least one.")


def load_pretrained_weights(model: nn.Module, weight_path: str) -> None:
    """Copy every tensor whose name (without ``module.``) and shape match ``model``; report the rest."""
    state_dict = state_dict_of(load_checkpoint(weight_path), weight_path)
    model_dict = model.state_dict()
    matched, discarded = [], []
    for k, v in state_dict.items():
        k = k.removeprefix("module.")
        if k in model_dict and model_dict[k].size() == v.size():
            model_dict[k] = v
            matched.append(k)
        else:
            discarded.append(k)
    model.load_state_dict(model_dict)
    if not matched:
        warnings.warn(f"Cannot load {weight_path} (check the key names manually)", stacklevel=2)
        return
    print(f"Successfully loaded pretrained weights from {weight_path}")
    if discarded:
        print(f"Layers discarded due to unmatched keys or size: {discarded}")
