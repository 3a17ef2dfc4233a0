"""The report beside the paper: every table shows the published number of each method and dataset it has runs
for, and the difference. The expected published values are read here from tools/paper_numbers.csv with the csv
module (not through tools/paper_numbers.py, which the report uses), and a few are typed in from the paper."""
from __future__ import annotations

import csv
import os

import pytest
from test_report import B2N, md_row, read_csv, run_dir, write_metrics

from tools import report
from tools.protocols.layout import DATASETS
from tools.report.plots import base_to_novel_bars

DATA_FILE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools", "paper_numbers.csv")
PAPER_NAMES = {"ZeroshotCLIP": "CLIP", "MultiModalAdapter": "MMA", "LinearProbeCLIP": "Linear probe CLIP"}
DATASET_NAMES = {"dtd": "DTD", "eurosat": "EuroSAT", "imagenet": "ImageNet", "caltech101": "Caltech101",
                 "imagenetv2": "ImageNetV2", "imagenet_a": "ImageNet-A", "imagenet_sketch": "ImageNet-Sketch",
                 "average": "Average"}  # fmt: skip


def published(method: str, protocol: str, dataset: str, metric: str = "accuracy", shots: int | None = None) -> str:
    """The data file's value of one cell, as the report prints it (two decimals)."""
    with open(DATA_FILE) as f:
        rows = list(csv.DictReader(line for line in f if not line.startswith("#")))
    shots_text = "" if shots is None else str(shots)
    want = (PAPER_NAMES.get(method, method), protocol, DATASET_NAMES[dataset], metric, shots_text)
    found = [r for r in rows if (r["method"], r["protocol"], r["dataset"], r["metric"], r["shots"]) == want]
    assert len(found) == 1, want
    return f"{float(found[0]['value']):.2f}"


def delta(ours: float, paper: str) -> str:
    return f"{ours - float(paper):+.2f}"


B2N_RUNS = {  # (trainer, dataset) -> base, novel (seeds 1 and 2 differ by 2 points around these)
    ("MMRL", "dtd"): (80.0, 60.0), ("MMRL", "eurosat"): (90.0, 70.0), ("CoOp", "dtd"): (75.0, 45.0),
    ("ZeroshotCLIP", "dtd"): (53.0, 60.0), ("MultiModalAdapter", "imagenet"): (76.0, 70.0),
}  # fmt: skip
CD_RUNS = {  # trainer -> dataset -> accuracy (imagenet is the source)
    "MMRL": {"imagenet": 72.0, "caltech101": 94.0, "dtd": 46.0, "imagenetv2": 64.0, "imagenet_a": 51.0},
    "CoOp": {"imagenet": 71.0, "caltech101": 93.0, "imagenet_sketch": 47.0},
}
FS_RUNS = {  # (trainer, dataset) -> shots -> accuracy
    ("MMRL", "dtd"): {1: 55.0, 16: 74.0}, ("MMRL", "eurosat"): {1: 76.0, 16: 92.0},
    ("LinearProbeCLIP", "dtd"): {1: 35.0, 16: 63.0}, ("CoOp", "eurosat"): {1: 55.0, 16: 85.0},
}  # fmt: skip


@pytest.fixture(scope="module")
def paper_tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("paper")
    for (method, dataset), (base, novel) in B2N_RUNS.items():
        for seed, shift in ((1, -1.0), (2, 1.0)):
            tail = (dataset, "shots_16", method, "cfg", f"seed{seed}")
            write_metrics(run_dir(root, B2N, "train_base", *tail), base + shift, task="B2N", subsample="base")
            write_metrics(run_dir(root, B2N, "test_new", *tail), novel + shift, task="B2N", subsample="new")
    for method, accs in CD_RUNS.items():
        for dataset, acc in accs.items():
            stage = "train_base" if dataset == "imagenet" else "test_new"
            write_metrics(run_dir(root, B2N, stage, dataset, "shots_16", method, "cd", "seed1"), acc, task="CD")
    for (method, dataset), by_shots in FS_RUNS.items():
        for shots, acc in by_shots.items():
            write_metrics(run_dir(root, "few_shot", dataset, f"shots_{shots}", method, "fs", "seed1"), acc, task="FS")
    report.main([str(root), "--show", "none"])
    return root, (root / "report.md").read_text()


def test_base_to_novel_beside_table_1(paper_tree):
    _, md = paper_tree
    table = md.split("## Base-to-novel")[1].split("\n## ")[0]
    for (method, dataset), (base, novel) in B2N_RUNS.items():
        hm = 2 * base * novel / (base + novel)
        paper = [published(method, "base2new", dataset, m) for m in ("base", "novel", "hm")]
        assert md_row(table, DATASET_NAMES[dataset] if dataset != "imagenet" else "ImageNet", method,
                      f"{base:.2f} ± 1.00", f"{novel:.2f} ± 1.00", f"{hm:.2f}", *paper,
                      delta(base, paper[0]), delta(novel, paper[1]), delta(hm, paper[2]))  # fmt: skip
    # As printed in MMRL's Table 1 (DTD rows): MMRL 85.67 / 65.00 / 73.82; CoOp 79.44 / 41.18 / 54.24.
    assert md_row(table, "DTD", "MMRL", "80.00 ± 1.00", "60.00 ± 1.00", "68.57", "85.67", "65.00", "73.82")
    assert md_row(table, "DTD", "CoOp", "75.00 ± 1.00", "45.00 ± 1.00", "56.25", "79.44", "41.18", "54.24")
    # The average of two datasets is not put beside the paper's average over 11.
    assert md_row(table, "Average (2 datasets)", "MMRL", "85.00 ± 1.00", "65.00 ± 1.00", "73.67", "-", "-", "-")


def test_cross_dataset_and_domain_generalisation_beside_tables_2_and_3(paper_tree):
    _, md = paper_tree
    cross = md.split("## Cross-dataset")[1].split("\n## ")[0]
    dg = md.split("## Domain generalisation")[1].split("\n## ")[0]
    assert "| Method | ImageNet | Caltech101 | DTD | Average |" in cross
    assert "| Method | ImageNet | ImageNetV2 | ImageNet-Sketch | ImageNet-A | Average |" in dg
    mmrl_cd = [published("MMRL", "cross_dataset", d) for d in ("imagenet", "caltech101", "dtd")]
    assert md_row(cross, "MMRL (paper)", *mmrl_cd, "-")  # the paper's average is over 10 targets
    assert md_row(cross, "MMRL (Δ)", delta(72, mmrl_cd[0]), delta(94, mmrl_cd[1]), delta(46, mmrl_cd[2]), "-")
    coop_cd = [published("CoOp", "cross_dataset", d) for d in ("imagenet", "caltech101")]
    assert md_row(cross, "CoOp (paper)", *coop_cd, "41.92")  # DTD: as printed in Table 2
    mmrl_dg = [published("MMRL", "domain_generalization", d) for d in ("imagenet", "imagenetv2", "imagenet_a")]
    assert md_row(dg, "MMRL (paper)", mmrl_dg[0], mmrl_dg[1], "49.17", mmrl_dg[2], "-")  # Sketch: Table 3
    assert md_row(dg, "MMRL (Δ)", delta(72, mmrl_dg[0]), delta(64, mmrl_dg[1]), "-", delta(51, mmrl_dg[2]), "-")
    coop_sketch = published("CoOp", "domain_generalization", "imagenet_sketch")
    assert md_row(dg, "CoOp (Δ)", delta(71, published("CoOp", "domain_generalization", "imagenet")), "-",
                  delta(47, coop_sketch), "-", "-")  # fmt: skip


def test_few_shot_beside_tables_10_and_11(paper_tree):
    root, md = paper_tree
    for dataset, title in (("dtd", "DTD"), ("eurosat", "EuroSAT")):
        table = md.split(f"## Few-shot: {title}")[1].split("\n## ")[0]
        for (method, d), by_shots in FS_RUNS.items():
            if d != dataset:
                continue
            paper = [published(method, "few_shot", dataset, shots=k) for k in (1, 16)]
            assert md_row(table, method, *(f"{by_shots[k]:.2f}" for k in (1, 16)))
            assert md_row(table, f"{method} (paper)", *paper)
            assert md_row(table, f"{method} (Δ)", *(delta(by_shots[k], p) for k, p in zip((1, 16), paper)))
    # As printed in Table 11: MMRL on EuroSAT, 1 shot 76.00.
    eurosat = md.split("## Few-shot: EuroSAT")[1].split("\n## ")[0]
    assert md_row(eurosat, "MMRL (paper)", "76.00")
    # Two datasets: no paper average beside ours.
    average = md.split("## Few-shot: Average")[1].split("\n## ")[0]
    assert "(paper)" not in average
    rows = read_csv(root / "report.csv")
    lp = next(r for r in rows if (r["method"], r["dataset"], r["shots"]) == ("LinearProbeCLIP", "dtd", "16"))
    assert lp["paper"] == published("LinearProbeCLIP", "few_shot", "dtd", shots=16)
    assert float(lp["delta"]) == pytest.approx(63 - float(lp["paper"]))


def test_complete_few_shot_average_beside_the_papers(tmp_path):
    for i, dataset in enumerate(DATASETS):
        write_metrics(run_dir(tmp_path, "few_shot", dataset, "shots_1", "MMRL", "fs", "seed1"), 70.0 + i, task="FS")
    report.main([str(tmp_path), "--show", "none"])
    average = (tmp_path / "report.md").read_text().split("## Few-shot: Average")[1].split("\n## ")[0]
    paper = published("MMRL", "few_shot", "average", shots=1)
    assert paper == "72.67"  # Table 10, as printed
    assert md_row(average, "MMRL", "75.00") and md_row(average, "MMRL (paper)", paper)
    assert md_row(average, "MMRL (Δ)", delta(75.0, paper))


def test_base_to_novel_bars_spread_over_seeds(paper_tree):
    root, _ = paper_tree
    bars = base_to_novel_bars(report.load_results(str(root)))
    dtd = bars["MMRL"]["dtd"]
    # seeds (79, 59) and (81, 61): HMs 67.594... and 69.594..., population std of the HMs
    hms = [2 * 79 * 59 / 138, 2 * 81 * 61 / 142]
    assert dtd.means[:2] == (80.0, 60.0)
    assert dtd.stds == pytest.approx((1.0, 1.0, abs(hms[0] - hms[1]) / 2))
    assert bars["MMRL"]["average"].stds[:2] == pytest.approx((1.0, 1.0))  # both datasets move together
    assert "ZeroshotCLIP" in bars


def test_base_to_novel_picture_puts_zero_shot_first_with_error_bars(paper_tree, monkeypatch):
    """The bars as drawn, panel by panel (base, novel, HM): zero-shot CLIP's runs first, every bar with its spread."""
    pytest.importorskip("matplotlib")
    import matplotlib.axes

    root, _ = paper_tree
    drawn = []
    real_bar = matplotlib.axes.Axes.bar

    def bar(self, x, height, *args, **kwargs):
        drawn.append((kwargs.get("label"), list(height), kwargs.get("yerr")))
        return real_bar(self, x, height, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "bar", bar)
    written = report.plot_base_to_novel(report.load_results(str(root)), str(root))
    assert [os.path.basename(p) for p in written] == ["base_to_novel.png", "base_to_novel.pdf"]
    labels = [label for label, _, _ in drawn]
    assert labels == ["ZeroshotCLIP", "CoOp", "MMRL", "MultiModalAdapter"] * 3
    zero_shot_base, mmrl_base = drawn[0], drawn[2]
    assert zero_shot_base[1:] == ([53.0], [1.0])  # dtd only
    assert mmrl_base[1] == pytest.approx([80.0, 90.0, 85.0]) and mmrl_base[2] == pytest.approx([1.0, 1.0, 1.0])


def test_no_paper_columns_where_the_paper_has_nothing(tmp_path):
    """A dataset of one's own (the demo's): the base-to-novel table drops the six empty paper and Δ columns."""
    for stage, sub in (("train_base", "base"), ("test_new", "new")):
        write_metrics(run_dir(tmp_path, B2N, stage, "demo_shapes", "shots_16", "MMRL", "cfg", "seed1"), 50.0,
                      task="B2N", subsample=sub)  # fmt: skip
    report.main([str(tmp_path), "--show", "none"])
    md = (tmp_path / "report.md").read_text()
    header = "| Dataset | Method | Base | Novel | HM |\n|---|---|---|---|---|\n"
    assert header + "| demo_shapes | MMRL | 50.00 | 50.00 | 50.00 |\n" in md
