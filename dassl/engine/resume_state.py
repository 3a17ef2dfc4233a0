"""What a run needs to continue after a crash exactly as if it had never stopped.

At the end of every epoch the trainer writes ``<output_dir>/resume.pth.tar`` (atomically, replacing the
previous one): every registered model with its optimizer and scheduler, the trainer's own extra state
and the state of every random generator the loop draws from (Python, NumPy, torch CPU and CUDA). The
data order and augmentation of the next epoch are drawn from these generators (the sampler and the
loader workers are seeded from torch's), so restoring them at the start of the next epoch replays that
epoch as the uninterrupted run drew it. Everything is stored as tensors and plain containers, so the
file loads with ``weights_only=True``.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

RESUME_FILE = "resume.pth.tar"
RESUME_KEYS = ("epoch", "models", "best_result", "extra", "rng")


def rng_state() -> dict[str, Any]:
    """The state of every random generator, as tensors and plain values."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": [version, torch.tensor(internal, dtype=torch.int64), gauss],
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(int(v) for v in internal.tolist()), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
