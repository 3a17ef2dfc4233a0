"""Several seeds started at once share the split json and few-shot caches without ever reading half a file."""
from __future__ import annotations

import contextlib
import io
import multiprocessing as mp
import os
import pickle
import random
import time

from yacs.config import CfgNode as CN

import datasets  # noqa: F401  (registers the datasets)
from dassl.data.datasets import build_dataset
from datasets.synthetic import make_dataset
from datasets.utils import read_split


def _build(root: str, shots: int, seed: int) -> tuple[list, list]:
    """One training job's dataset step: seed, then build (train items, test items)."""
    cfg = CN()
    cfg.SEED, cfg.VERBOSE = seed, False
    cfg.DATASET = CN({"ROOT": root, "NAME": "DescribableTextures", "NUM_SHOTS": shots, "SUBSAMPLE_CLASSES": "all"})
    random.seed(seed)
    with contextlib.redirect_stdout(io.StringIO()):
        ds = build_dataset(cfg)
    return [(d.impath, d.label) for d in ds.train_x], [(d.impath, d.label) for d in ds.test]


def _poll(path: str, timeout: float) -> int:
    """Read ``path`` whenever it exists until ``timeout``; return how many reads failed."""
    failures, end = 0, time.time() + timeout
    while time.time() < end:
        if os.path.exists(path):
            try:
                with open(path, "rb") as f:
                    pickle.load(f)
            except Exception:
                failures += 1
        time.sleep(0.001)
    return failures


def _leftovers(folder: str) -> list[str]:
    return [f for f in os.listdir(folder) if f.endswith((".tmp", ".lock"))]


def test_same_seed_jobs_share_one_fewshot_cache(tmp_path):
    ddir = make_dataset("dtd", tmp_path, n_classes=12, n_train=20, size=8)
    cache = os.path.join(ddir, "split_fewshot", "shot_4-seed_1.pkl")
    with mp.get_context("fork").Pool(4) as pool:
        poller = pool.apply_async(_poll, (cache, 3.0))
        results = pool.starmap(_build, [(str(tmp_path), 4, 1)] * 3)
        assert poller.get() == 0
    assert results[0] == results[1] == results[2]
    assert results[0][0] == [(d.impath, d.label) for d in pickle.load(open(cache, "rb"))["train"]]
    assert _leftovers(os.path.dirname(cache)) == []


def test_seeds_started_together_agree_on_the_built_split(tmp_path):
    ddir = make_dataset("dtd", tmp_path, n_classes=6, size=8, with_split=False)
    with mp.get_context("fork").Pool(3) as pool:
        results = pool.starmap(_build, [(str(tmp_path), 2, seed) for seed in (1, 2, 3)])
    _, _, test = read_split(os.path.join(ddir, "split_zhou_DescribableTextures.json"), os.path.join(ddir, "images"))
    # one job built the split, the others waited and read it: everyone tests on the saved split
    assert all(r[1] == [(d.impath, d.label) for d in test] for r in results)
    assert sorted(os.listdir(os.path.join(ddir, "split_fewshot"))) == [f"shot_2-seed_{s}.pkl" for s in (1, 2, 3)]
    assert _leftovers(ddir) == []
