"""train.py run in-process and recorded as the side-by-side checks record an official run: every training
step's printed values at full precision, each test image's predicted class, and the per-class counts of the
run's log (with ``TEST.PER_CLASS_RESULT True`` and 3 test images per class)."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

import train
from dassl.engine import build_trainer

PER_CLASS = re.compile(r"^\* class: \d+ \(\w+\)\ttotal: 3\tcorrect: (\d+)", flags=re.M)


def recorded_train(argv: list[str], output_dir: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, list]:
    """``train.py argv`` (whose ``--output-dir`` is ``output_dir``): {loss, acc, lr, correct, predicted}."""
    steps: list[dict] = []
    predicted: list[int] = []

    def recording(cfg):
        t = build_trainer(cfg)
        step, inference = t.forward_backward, t.model_inference

        def forward_backward(batch):
            summary = step(batch)
            steps.append({**summary, "lr": t.get_current_lr()})
            return summary

        def model_inference(image):
            logits = inference(image)
            predicted.extend(logits.argmax(dim=1).tolist())
            return logits

        t.forward_backward, t.model_inference = forward_backward, model_inference
        return t

    monkeypatch.setattr(train, "build_trainer", recording)
    train.main(train.build_parser().parse_args(argv))
    sys.stdout.flush()  # dassl's logger tees stdout into log.txt
    log = (output_dir / "log.txt").read_text()
    return {
        "loss": [s["loss"] for s in steps], "acc": [s.get("acc") for s in steps], "lr": [s["lr"] for s in steps],
        "correct": [int(n) for n in PER_CLASS.findall(log)], "predicted": predicted,
    }  # fmt: skip
