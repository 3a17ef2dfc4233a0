"""benchmarks/bench_feature_cache.py in its smoke mode (tiny CLIP, 32 px), so that it cannot rot: the uncached
trainer encodes every training and val image in every epoch, the cached one only in its first epoch, and the
report's FLOPs and end-to-end figures follow from its measured epochs."""
from __future__ import annotations

import json

import pytest

from benchmarks import bench_feature_cache


def test_smoke_run_measures_both_paths(tmp_path, capsys) -> None:
    out = tmp_path / "bench.json"
    assert bench_feature_cache.main(["--smoke", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    setting = report["setting"]
    images = setting["train_images"] + setting["val_images"]
    assert (setting["train_images"], setting["val_images"]) == (8, 8)  # 4 classes, 2 images each
    assert [e["encoded"] for e in report["epochs"]["uncached"]] == [images] * 3
    assert [e["encoded"] for e in report["epochs"]["cached"]] == [images, 0, 0]
    gflop = report["gflop_per_epoch"]
    assert gflop["uncached"] == pytest.approx(gflop["cached_later"] + images * report["gflop_per_image_encode"])
    assert 0 < gflop["cached_later"] < gflop["uncached"]
    for path in ("uncached", "cached"):  # 200 epochs: the first one and 199 like the later measured ones
        assert report["end_to_end_s"][path] > 199 * report["later_epoch_s"][path]
    for x in report["extrapolated"]:  # the recipe's datasets: the cached path encodes each image once
        assert x["training_gflop_ratio"] > x["with_test_gflop_ratio"] > 1
        assert x["adapter"]["train_gflop"] > x["adapter"]["val_gflop"] > 0  # a step is forward and backward
    printed = capsys.readouterr().out
    assert "| cached |" in printed and "| ImageNet, base classes | 500 |" in printed


def test_an_epoch_uses_whole_batches_of_256_as_the_loader_does() -> None:
    """drop_last: 384 DTD images give one step of 256; fewer than 256 images give one short batch."""
    sizes = {n: bench_feature_cache.Scenario("x", 1, n, 0, 0).used for n in (100, 256, 384, 8000)}
    assert sizes == {100: 100, 256: 256, 384: 256, 8000: 31 * 256}


def test_fewer_than_two_epochs_is_a_usage_error(tmp_path, capsys) -> None:
    assert bench_feature_cache.main(["--smoke", "--epochs", "1", "--json", str(tmp_path / "b.json")]) == 2
    assert capsys.readouterr().err.startswith("error: --epochs must be at least 2")
