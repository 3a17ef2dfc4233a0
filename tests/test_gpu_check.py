"""benchmarks/gpu_check.py: its CPU smoke run covers every section with sane values, so the GPU check cannot
rot before a GPU runs it; sections fail soft and respect the time budget."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from benchmarks import gpu_check

REPO = Path(__file__).resolve().parents[1]
METHODS = ("mmrl", "mmrlpp")
PRECS = ("fp32", "amp", "fp16")


def run_check(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "benchmarks.gpu_check", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)  # fmt: skip


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess, dict]:
    path = tmp_path_factory.mktemp("gpu_check") / "check.json"
    done = run_check("--smoke", "--device", "cpu", "--json", str(path))
    assert done.returncode == 0, done.stderr[-3000:]
    return done, json.loads(path.read_text())


def test_smoke_runs_every_section(smoke: tuple[subprocess.CompletedProcess, dict]) -> None:
    done, report = smoke
    sections = report["sections"]
    assert list(sections) == list(gpu_check.SECTIONS)
    assert {name: entry["status"] for name, entry in sections.items()} == dict.fromkeys(gpu_check.SECTIONS, "ok")
    for title in ("Environment", "Numerics", "Peak memory", "Inference", "Training step"):
        assert f"**{title}" in report["markdown"] and f"**{title}" in done.stdout
    env = sections["env"]["rows"][0]
    assert env["torch"] == torch.__version__ and env["device"] == "cpu" and env["gpu"] is None


def numerics(report: dict, method: str, prec: str) -> dict[tuple[str, str], dict]:
    (row,) = [r for r in report["sections"]["numerics"]["rows"] if (r["method"], r["prec"]) == (method, prec)]
    return {(p["stage"], p["path"]): p for p in row["paths"]}


@pytest.mark.parametrize("method", METHODS)
def test_numerics_in_fp32_match_the_reference(smoke: tuple, method: str) -> None:
    paths = numerics(smoke[1], method, "fp32")
    assert set(paths) == {(s, p) for s in ("train", "eval") for p in gpu_check.PATHS}
    for (_, path), p in paths.items():
        assert p["dtype"] == "float32" and p["argmax_agreement"] == 1.0 and p["verdict"] == "ok"
        # EXACT True is the official op order: bit for bit; the default differs by rounding only.
        if path == "default":
            assert 0.0 < p["max_abs_dlogit"] <= 1e-3
        else:
            assert p["max_abs_dlogit"] == 0.0


@pytest.mark.parametrize("method", METHODS)
def test_half_precision_branches_run_in_half(smoke: tuple, method: str) -> None:
    """fp16 computes in fp16 everywhere; amp trains under fp16 autocast but evaluates in fp32, as both codes'
    test loops; the reduced precision shows as a nonzero error of the official structure itself."""
    fp16, amp = numerics(smoke[1], method, "fp16"), numerics(smoke[1], method, "amp")
    assert {p["dtype"] for p in fp16.values()} == {"float16"}
    assert {k: p["dtype"] for k, p in amp.items() if k[1] == "official"} == {
        ("train", "official"): "float16",
        ("eval", "official"): "float32",
    }
    for paths in (fp16, amp):
        assert paths["train", "official"]["max_abs_dlogit"] > 0
        assert all(p["finite"] and p["verdict"] == "ok" and 0.0 <= p["argmax_agreement"] <= 1.0 for p in paths.values())


def test_timings_and_memory_rows(smoke: tuple) -> None:
    s = smoke[1]["sections"]
    train = s["train"]["rows"]
    assert {(r["method"], r["setting"], r["prec"]) for r in train} == {
        (m, st, p) for m in METHODS for st in ("dtd", "imagenet") for p in PRECS
    }
    for r in train:
        assert r["rounds"] >= 1 and all(r["ms_per_image"][p] > 0 and r["speedup"][p] > 0 for p in gpu_check.PATHS)
        assert r["speedup"]["official"] == 1.0
        if r["prec"] != "fp16":  # fp16 AdamW (the official code's too) can overflow: reported, not asserted
            assert all(r["finite"].values())
    inference = s["inference"]["rows"]
    assert {(r["method"], r["prec"]) for r in inference} == {(m, p) for m in METHODS for p in PRECS}
    assert all(v > 0 for r in inference for v in r["images_per_s"].values())
    memory = s["memory"]["rows"]
    assert [(r["method"], r["config"]) for r in memory] == [
        (m, c) for m in METHODS for c in ("default", "TEXT_CHUNK 16", "EXACT True")
    ]
    assert all(r["finite"] and r["peak_gib"] is None and r["prec"] == "amp" for r in memory)  # CUDA only


def test_out_of_budget_sections_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "check.json"
    done = run_check("--smoke", "--device", "cpu", "--budget", "0", "--json", str(path))
    assert done.returncode == 0, done.stderr[-3000:]
    sections = json.loads(path.read_text())["sections"]
    assert sections["env"]["status"] == "ok"  # free: always reported
    assert all(sections[n]["status"] == "skipped" for n in gpu_check.SECTIONS[1:])
    assert "| numerics | skipped |" in done.stdout


def test_a_failing_section_or_row_is_reported_and_the_rest_runs(tmp_path: Path) -> None:
    args = gpu_check.parse_args(["--smoke", "--device", "cpu", "--json", str(tmp_path / "x.json")])
    ctx = gpu_check.Context(args, gpu_check.SMOKE, torch.device("cpu"), gpu_check.Clock(60, start=time.monotonic()))

    def broken(ctx: gpu_check.Context, end: float) -> list[dict]:
        raise RuntimeError("CUDA out of memory (simulated)")

    entry = gpu_check.run_section(ctx, "memory", broken, end=time.monotonic() + 10)
    assert entry["status"] == "failed" and "RuntimeError: CUDA out of memory (simulated)" in entry["error"]

    def row(r: dict, row_end: float) -> dict:
        if r["n"] == 1:
            raise ValueError("bad row")
        return {"value": r["n"]}

    rows = gpu_check.groups(ctx, [{"n": 1}, {"n": 2}], time.monotonic() + 10, row)
    assert rows == [{"n": 1, "error": "ValueError: bad row"}, {"n": 2, "value": 2}]
    report = {
        "meta": {"command": "c", "date": "d", "mode": "m", "budget_s": 1.0},
        "sections": {
            "memory": entry,
            "train": {
                "status": "partial",
                "seconds": 1.0,
                "rows": [{"method": "mmrl", "setting": "dtd", "prec": "amp", "error": "ValueError: bad row"}],
            },
        },
    }
    text = gpu_check.markdown(report)
    assert "| memory | failed |" in text and "failed: ValueError: bad row" in text


@pytest.mark.parametrize(("first", "budget", "expected"), [(0.5, 10.0, 20), (5.0, 10.0, 3), (0.01, 10.0, 30),
                                                          (1.0, -4.0, 3)])  # fmt: skip
def test_rounds_fill_the_budget_within_bounds(first: float, budget: float, expected: int) -> None:
    assert gpu_check.plan_rounds(first, budget, least=3, most=30) == expected


def test_a_missing_weights_file_is_one_error_line() -> None:
    done = run_check("--device", "cpu", "--weights", "/nonexistent/ViT-B-16.pt", timeout=300)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: --weights /nonexistent/ViT-B-16.pt: no such file (a local OpenAI CLIP file; nothing is downloaded)"
    ]
