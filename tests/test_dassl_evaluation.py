"""Classification evaluator and compute_accuracy against hand-computed values."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dassl.config import get_cfg_default
from dassl.evaluation import Classification, build_evaluator
from dassl.metrics import compute_accuracy

Y_TRUE = [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
Y_PRED = [0, 0, 1, 2, 1, 1, 0, 2, 2, 1]
# per class (tp, fp, fn): 0 -> (2, 1, 2), 1 -> (2, 2, 1), 2 -> (2, 1, 1)
MACRO_F1 = 100 * (4 / 7 + 4 / 7 + 4 / 6) / 3  # 60.317...


def run(cfg, y_true, y_pred, n_classes=3):
    ev = build_evaluator(cfg, lab2cname={i: f"name{i}" for i in range(n_classes)})
    assert isinstance(ev, Classification)
    ev.reset()
    scores = F.one_hot(torch.tensor(y_pred), n_classes).float()
    half = len(y_true) // 2  # two batches: results must accumulate
    ev.process(scores[:half], torch.tensor(y_true[:half]))
    ev.process(scores[half:], torch.tensor(y_true[half:]))
    return ev.evaluate()


def test_result_block_and_values(capsys):
    cfg = get_cfg_default()
    res = run(cfg, Y_TRUE, Y_PRED)
    assert list(res) == ["accuracy", "error_rate", "macro_f1"]
    assert res["accuracy"] == pytest.approx(60.0) and res["error_rate"] == pytest.approx(40.0)
    assert res["macro_f1"] == pytest.approx(MACRO_F1)
    assert capsys.readouterr().out == (
        "Loading evaluator: Classification\n"
        "=> result\n* total: 10\n* correct: 6\n* accuracy: 60.0%\n* error: 40.0%\n* macro_f1: 60.3%\n"
    )


def test_per_class_lines_and_confusion_matrix(tmp_path, capsys):
    cfg = get_cfg_default()
    cfg.VERBOSE = False
    cfg.OUTPUT_DIR = str(tmp_path)
    cfg.TEST.PER_CLASS_RESULT = True
    cfg.TEST.COMPUTE_CMAT = True
    res = run(cfg, Y_TRUE, Y_PRED)
    out = capsys.readouterr().out
    assert (
        "=> per-class result\n"
        "* class: 0 (name0)\ttotal: 4\tcorrect: 2\tacc: 50.0%\n"
        "* class: 1 (name1)\ttotal: 3\tcorrect: 2\tacc: 66.7%\n"
        "* class: 2 (name2)\ttotal: 3\tcorrect: 2\tacc: 66.7%\n"
        "* average: 61.1%\n"
    ) in out
    assert res["perclass_accuracy"] == pytest.approx((50 + 200 / 3 + 200 / 3) / 3)
    cmat = torch.load(tmp_path / "cmat.pt", weights_only=True)
    expected = torch.tensor([[2 / 4, 1 / 4, 1 / 4], [1 / 3, 2 / 3, 0], [0, 1 / 3, 2 / 3]], dtype=torch.float64)
    assert torch.allclose(cmat, expected)


def test_thousands_separator_and_unpredicted_class(capsys):
    cfg = get_cfg_default()
    cfg.VERBOSE = False
    # 1,500 samples of classes 0/1; class 1 is never predicted -> F1(1) = 0, F1(0) = 2*1200/(2*1200+300)
    res = run(cfg, [0] * 1200 + [1] * 300, [0] * 1500, n_classes=2)
    out = capsys.readouterr().out
    assert "* total: 1,500\n* correct: 1,200\n* accuracy: 80.0%\n* error: 20.0%\n" in out
    assert res["macro_f1"] == pytest.approx(100 * (2400 / 2700) / 2)


def test_per_class_needs_names():
    cfg = get_cfg_default()
    cfg.TEST.PER_CLASS_RESULT = True
    with pytest.raises(ValueError):
        Classification(cfg)


def test_compute_accuracy_topk():
    out = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.15, 0.05], [0.35, 0.25, 0.4], [0.45, 0.5, 0.05]])
    target = torch.tensor([1, 1, 0, 2])
    top1, top2 = compute_accuracy(out, target, topk=(1, 2))
    assert top1.shape == (1,) and top1.item() == pytest.approx(25.0) and top2.item() == pytest.approx(75.0)
    assert compute_accuracy((out, None), target)[0].item() == pytest.approx(25.0)
