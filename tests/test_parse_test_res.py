"""parse_test_res.py on generated log folders."""
from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import pytest

import parse_test_res


def write_log(path: Path, accuracies: list[float], macro_f1: float = 50.0) -> None:
    """A log shaped like the evaluator's: noise, then one result block per accuracy."""
    path.mkdir(parents=True, exist_ok=True)
    lines = ["epoch [1/2] batch [1/1] loss 1.0 acc 12.5 lr 1.0e-05", "* accuracy: 99.9% (before any result: ignored)"]
    for acc in accuracies:
        lines += [
            "=> result",
            "* total: 1,000",
            "* correct: 123",
            f"* accuracy: {acc}%",
            f"* error: {100 - acc:.1f}%",
            f"* macro_f1: {macro_f1}%",
        ]
    (path / "log.txt").write_text("\n".join(lines) + "\n")


def test_mean_std_over_seeds_and_parse_txt(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    for seed, acc in zip((1, 2, 3), (70.0, 80.0, 90.0)):
        write_log(tmp_path / f"seed{seed}", [10.0, acc])  # the last block is the final test
    (tmp_path / "seed4").mkdir()  # a run that has not finished: no log, skipped
    result = parse_test_res.main([str(tmp_path)])
    assert result == {"accuracy": pytest.approx(80.0)}
    # population std of (70, 80, 90) = sqrt(200/3) = 8.165
    out = capsys.readouterr().out
    assert "* accuracy: 80.00% +- 8.16%" in out
    parse_txt = (tmp_path / "parse.txt").read_text()
    assert "* accuracy: 80.00% +- 8.16%" in parse_txt
    assert parse_txt.count("file: ") == 3


def test_ci95_and_keyword(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    write_log(tmp_path / "seed1", [60.0], macro_f1=40.0)
    write_log(tmp_path / "seed2", [70.0], macro_f1=60.0)
    parse_test_res.main([str(tmp_path), "--keyword", "macro_f1", "--ci95"])
    half_width = 1.96 * 10.0 / math.sqrt(2)  # std of (40, 60) is 10
    assert f"* macro_f1: 50.00% +- {half_width:.2f}%" in capsys.readouterr().out


def test_multi_exp_averages_experiments(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    write_log(tmp_path / "exp-a" / "seed1", [50.0])
    write_log(tmp_path / "exp-a" / "seed2", [70.0])
    write_log(tmp_path / "exp-b" / "seed1", [90.0])
    result = parse_test_res.main([str(tmp_path), "--multi-exp", "--test-log"])
    assert result == {"accuracy": pytest.approx((60.0 + 90.0) / 2)}
    assert (tmp_path / "exp-a" / "parse.txt").is_file()
    assert "* accuracy: 75.00%" in capsys.readouterr().out


def test_no_results_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "seed1").mkdir()
    (tmp_path / "seed1" / "log.txt").write_text("training crashed\n")
    with pytest.raises(SystemExit, match=r"^error: no finished run with '\* accuracy:' in .*'=> result' block\)$"):
        parse_test_res.main([str(tmp_path)])


def test_metrics_json_is_read_before_the_rounded_log(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A run that wrote both is read from metrics.json (unrounded); one whose last evaluation was on the
    validation split is unfinished and left out; the official code's runs (log only) still count."""
    exact = {1: 50.34, 2: 51.16}  # their logs print 50.3 and 51.2
    for seed, acc in exact.items():
        write_log(tmp_path / f"seed{seed}", [acc])
        metrics = {"accuracy": acc, "phase": {"split": "test"}}
        (tmp_path / f"seed{seed}" / "metrics.json").write_text(json.dumps(metrics))
    write_log(tmp_path / "seed3", [52.0])  # an official run: no metrics.json
    write_log(tmp_path / "seed4", [99.0])
    (tmp_path / "seed4" / "metrics.json").write_text(json.dumps({"accuracy": 99.0, "phase": {"split": "val"}}))
    result = parse_test_res.main([str(tmp_path)])
    values = [50.34, 51.16, 52.0]
    assert result == {"accuracy": pytest.approx(statistics.mean(values))}
    out = capsys.readouterr().out
    assert f"* accuracy: {statistics.mean(values):.2f}% +- {statistics.pstdev(values):.2f}%" in out
    assert f"file: {tmp_path / 'seed1' / 'metrics.json'}. accuracy: 50.34%." in out
    assert f"file: {tmp_path / 'seed3' / 'log.txt'}. accuracy: 52.00%." in out
    assert f"skipped unfinished: {tmp_path / 'seed4'} (its last evaluation is on the val split)" in out
