"""Suite-wide settings and the shared world of the end-to-end tests: a tiny random CLIP and synthetic datasets."""
from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import pytest
import torch
from tiny import tiny_clip_config

from clip.model import CLIP
from datasets.synthetic import make_dataset


@pytest.fixture(autouse=True, scope="session")
def one_thread() -> Iterator[None]:
    """The suite runs tiny tensors: extra threads only add synchronisation, slow on a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A weights file of the random tiny CLIP of ``tiny_clip_config()``, drawn right after ``torch.manual_seed(0)``
    (the world the seeded pins of test_coop.py were recorded in), for train.py's ``MODEL.BACKBONE.PATH``."""
    path = tmp_path_factory.mktemp("tiny_clip") / "tiny.pt"
    torch.manual_seed(0)
    torch.save(CLIP(tiny_clip_config()).state_dict(), path)
    return str(path)


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., str]:
    """``make(names, **sizes)``: a data root (train.py's ``--root``) holding the synthetic datasets ``names`` (one
    name or several) made by ``datasets.synthetic.make_dataset(name, root, **sizes)``.

    Each distinct request is made once and shared by the session; runs write only caches there (few-shot
    splits), so a test that changes the data itself makes its own copy.
    """
    made: dict[tuple, str] = {}

    def make(names: str | Sequence[str], **sizes: int) -> str:
        names = (names,) if isinstance(names, str) else tuple(names)
        key = (names, tuple(sorted(sizes.items())))
        if key not in made:
            root = tmp_path_factory.mktemp("data")
            for name in names:
                make_dataset(name, str(root), **sizes)
            made[key] = str(root)
        return made[key]

    return make
