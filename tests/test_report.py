"""python -m tools.report on output trees written by hand, with numbers whose statistics are worked out here."""
from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys

import pytest

from dassl.config import get_cfg_default
from tools import report
from tools.protocols.layout import DATASETS
from tools.protocols.logs import parse_log, parse_logged_config, parse_per_class

B2N = "base2new"


def run_dir(root, *parts):
    path = os.path.join(str(root), *parts)
    os.makedirs(path, exist_ok=True)
    return path


def write_metrics(path, acc, *, task, subsample="all", split="test", rebuilt=False, selection="last", epoch=5):
    """A metrics.json as the engine writes it (only the fields the report reads matter)."""
    data = {
        "schema": 1, "accuracy": acc, "error": 100 - acc, "macro_f1": acc - 1, "per_class": [],
        "phase": {"subsample": subsample, "task": task, "split": split},
        "model": {"selection": selection, "epoch": epoch, "model_dir": None},
        "split": {"rebuilt": rebuilt, "source": "rebuilt here" if rebuilt else None},
    }  # fmt: skip
    with open(os.path.join(path, "metrics.json"), "w") as f:
        json.dump(data, f)


def logged_config(task=None, subsample=None):
    cfg = get_cfg_default()
    if subsample:
        cfg.DATASET.SUBSAMPLE_CLASSES = subsample
    if task:
        cfg.TASK = task
    return "************\n** Config **\n************\n" + str(cfg) + "\n"


def write_log(path, acc, *, task=None, subsample=None, per_class=()):
    """A log.txt as upstream Dassl / the official code writes it: config dump, then the result block."""
    total = 1000
    lines = [logged_config(task, subsample), "Evaluate on the *test* set", "=> result",
             f"* total: {total:,}", f"* correct: {round(acc * 10):,}", f"* accuracy: {acc:.1f}%",
             f"* error: {100 - acc:.1f}%", f"* macro_f1: {acc - 1:.1f}%"]  # fmt: skip
    if per_class:
        lines.append("=> per-class result")
        lines += [f"* class: {i} ({name})\ttotal: 1,000\tcorrect: {c:,}\tacc: {c / 10:.1f}%"
                  for i, (name, c) in enumerate(per_class)]  # fmt: skip
    with open(os.path.join(path, "log.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")


def md_row(text, *cells):
    """The Markdown row starting with these cells (the rest of the row is returned too)."""
    prefix = "| " + " | ".join(cells) + " |"
    rows = [line for line in text.splitlines() if line.startswith(prefix)]
    assert rows, f"no row starting with {prefix!r} in:\n{text}"
    return rows[0]


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


# ---- Base-to-novel from our metrics.json files.

MMRL_B2N = {  # dataset -> (cfg, base by seed, novel by seed)
    "dtd": ("vit_b16", [80, 82, 84], [60, 60, 63]),
    "eurosat": ("vit_b16", [90, 90, 90], [70, 70, 70]),
    "imagenet": ("vit_b16_imagenet", [70, 70, 70], [60, 60, 60]),
}


@pytest.fixture()
def b2n_tree(tmp_path):
    for dataset, (cfg, base, novel) in MMRL_B2N.items():
        for seed, (b, n) in enumerate(zip(base, novel), start=1):
            tail = (dataset, "shots_16", "MMRL", cfg, f"seed{seed}")
            write_metrics(run_dir(tmp_path, B2N, "train_base", *tail), b, task="B2N", subsample="base")
            write_metrics(run_dir(tmp_path, B2N, "test_new", *tail), n, task="B2N", subsample="new")
    tail = ("dtd", "shots_16", "CoOp", "vit_b16_ctxv1")
    for seed, b in ((1, 70), (2, 72)):  # seed 3 of the base run is missing
        write_metrics(run_dir(tmp_path, B2N, "train_base", *tail, f"seed{seed}"), b, task="B2N", subsample="base")
    for seed, n in ((1, 50), (2, 51), (3, 58)):  # seed 3 is 7 points above the median 51
        write_metrics(run_dir(tmp_path, B2N, "test_new", *tail, f"seed{seed}"), n, task="B2N", subsample="new")
    return tmp_path


def test_base_to_novel_means_std_hm_average_and_paper(b2n_tree, capsys):
    report.main([str(b2n_tree)])
    assert "23 runs, 2 flags" in capsys.readouterr().out
    md = (b2n_tree / "report.md").read_text()
    # dtd: base 82 ± sqrt(8/3), novel 61 ± sqrt(2), HM 2*82*61/143
    assert md_row(md, "DTD", "MMRL", "82.00 ± 1.63", "61.00 ± 1.41", f"{2 * 82 * 61 / 143:.2f}")
    # eurosat beside the paper's 95.60 / 80.17 / 87.21: HM 78.75
    assert md_row(md, "EuroSAT", "MMRL", "90.00 ± 0.00", "70.00 ± 0.00", "78.75", "95.60", "80.17", "87.21",
                  "-5.60", "-10.17", "-8.46")  # fmt: skip
    # the imagenet config differs, the method is the same; beside Table 1's MMRL ImageNet 77.90 / 71.30 / 74.45
    assert md_row(md, "ImageNet", "MMRL", "70.00 ± 0.00", "60.00 ± 0.00", f"{2 * 70 * 60 / 130:.2f}", "77.90",
                  "71.30", "74.45", "-7.90", "-11.30", f"{2 * 70 * 60 / 130 - 74.45:.2f}")  # fmt: skip
    # average over 3 datasets: base (82+90+70)/3, per-seed averages 80, 80.67, 81.33; HM of the averages
    base, novel = 242 / 3, 191 / 3
    std = math.sqrt(((80 - base) ** 2 + (242 / 3 - base) ** 2 + (244 / 3 - base) ** 2) / 3)
    assert md_row(md, "Average (3 datasets)", "MMRL", f"{base:.2f} ± {std:.2f}", f"{novel:.2f} ± 0.47",
                  f"{2 * base * novel / (base + novel):.2f}", "-", "-", "-", "-")  # not the paper's 11  # fmt: skip
    # CoOp: seed 3 missing from base (†), seed 3 an outlier of novel (‡): 53 ± sqrt(38/3)
    assert md_row(md, "DTD", "CoOp", "71.00 ± 1.00†", "53.00 ± 3.56‡", f"{2 * 71 * 53 / 124:.2f}")
    assert "† missing seeds 3: Base-to-novel CoOp dtd base (has 1, 2)" in md
    assert "‡ outlier seed 3: Base-to-novel CoOp dtd novel = 58.00 (median of its seeds 51.00)" in md
    assert "outlier seed 1" not in md and "outlier seed 2" not in md

    rows = read_csv(b2n_tree / "report.csv")
    coop_base = next(r for r in rows if (r["method"], r["dataset"], r["metric"]) == ("CoOp", "dtd", "base"))
    assert coop_base["values"] == "1:70.00;2:72.00" and coop_base["missing_seeds"] == "3"
    assert coop_base["n_seeds"] == "2" and float(coop_base["mean"]) == 71 and coop_base["shots"] == "16"
    eurosat_hm = next(r for r in rows if (r["method"], r["dataset"], r["metric"]) == ("MMRL", "eurosat", "hm"))
    assert float(eurosat_hm["mean"]) == pytest.approx(78.75) and float(eurosat_hm["delta"]) == pytest.approx(-8.46)
    tex = (b2n_tree / "report.tex").read_text()
    assert "\\begin{tabular}" in tex and "82.00 $\\pm$ 1.63" in tex and "71.00 $\\pm$ 1.00$^\\dagger$" in tex


def test_base_to_novel_picture(b2n_tree):
    pytest.importorskip("matplotlib")
    report.main([str(b2n_tree)])
    points = report.base_to_novel_points(report.results_of(*report.collect_runs(str(b2n_tree)), None, 3.0))
    assert points["MMRL"]["dtd"] == pytest.approx((82, 61, 2 * 82 * 61 / 143))
    assert points["MMRL"]["average"] == pytest.approx((242 / 3, 191 / 3, 2 * 242 * 191 / 3 / 433))
    assert "average" not in points["CoOp"]  # one dataset: no average bar
    for ext, magic in (("png", b"\x89PNG"), ("pdf", b"%PDF")):
        assert (b2n_tree / f"base_to_novel.{ext}").read_bytes().startswith(magic)


def test_expected_seeds_given_and_outlier_threshold(b2n_tree):
    report.main([str(b2n_tree), "--seeds", "1", "2", "3", "4", "--outlier-points", "8", "--out", str(b2n_tree / "r")])
    md = (b2n_tree / "r" / "report.md").read_text()
    assert "† missing seeds 4: Base-to-novel MMRL dtd base (has 1, 2, 3)" in md
    assert "† missing seeds 3, 4: Base-to-novel CoOp dtd base" in md
    assert "‡" not in md.split("## Flags")[1]  # 7 points is no outlier at a threshold of 8
    assert not (b2n_tree / "report.md").exists()  # --out: nothing written beside the runs


def test_rebuilt_split_unfinished_and_val_only_runs_are_reported(tmp_path):
    tail = ("dtd", "shots_16", "MMRL", "vit_b16")
    write_metrics(run_dir(tmp_path, B2N, "train_base", *tail, "seed1"), 80, task="B2N", subsample="base", rebuilt=True)
    write_metrics(run_dir(tmp_path, B2N, "train_base", *tail, "seed2"), 40, task="B2N", subsample="base", split="val")
    with open(os.path.join(run_dir(tmp_path, B2N, "train_base", *tail, "seed3"), "log.txt"), "w") as f:
        f.write(logged_config("B2N", "base") + "epoch [1/5] batch [1/1]\n")  # killed before its test
    seed4 = run_dir(tmp_path, B2N, "train_base", *tail, "seed4")  # official best_val run killed after a validation
    write_log(seed4, 30, task="B2N", subsample="base")
    with open(os.path.join(seed4, "log.txt")) as f:
        text = f.read().replace("Evaluate on the *test* set", "Evaluate on the *val* set")
    with open(os.path.join(seed4, "log.txt"), "w") as f:
        f.write(text)
    report.main([str(tmp_path)])
    md = (tmp_path / "report.md").read_text()
    assert md_row(md, "DTD", "MMRL", "80.00", "-")
    assert "split rebuilt (not the published split file): " in md and "(from rebuilt here)" in md
    assert "seed2 (its last evaluation is on the val split)" in md
    assert "seed3 (log.txt has no result block)" in md
    assert "seed4 (the last result in log.txt is on the val split)" in md


# ---- The official code's trees: log.txt only.


def test_official_tree_cross_dataset_dg_and_base_to_novel_from_logs(tmp_path):
    cd = ("MMRL", "vit_b16_cross_datasets")
    for seed, (src, cal, v2) in enumerate([(72, 94, 64), (74, 95, 65)], start=1):
        write_log(run_dir(tmp_path, B2N, "train_base", "imagenet", "shots_16", *cd, f"seed{seed}"), src, task="CD")
        write_log(run_dir(tmp_path, B2N, "test_new", "caltech101", "shots_16", *cd, f"seed{seed}"), cal, task="CD",
                  per_class=[("accordion", 990), ("airplane (jet)", 900)])  # fmt: skip
        write_log(run_dir(tmp_path, B2N, "test_new", "imagenetv2", "shots_16", *cd, f"seed{seed}"), v2, task="CD")
    # older logs without TASK: the folders alone decide (imagenet-trained, tested elsewhere -> cross-dataset)
    cocoop = ("shots_16", "CoCoOp", "vit_b16_c4_ep10_batch1_ctxv1", "seed1")
    write_log(run_dir(tmp_path, B2N, "train_base", "imagenet", *cocoop), 71)
    write_log(run_dir(tmp_path, B2N, "test_new", "caltech101", *cocoop), 93)
    coop = ("dtd", "shots_16", "CoOp", "vit_b16_ctxv1", "seed1")  # trained and tested on dtd -> base-to-novel
    write_log(run_dir(tmp_path, B2N, "train_base", *coop), 80)
    write_log(run_dir(tmp_path, B2N, "test_new", *coop), 60)

    report.main([str(tmp_path)])
    md = (tmp_path / "report.md").read_text()
    assert "10 runs (0 from metrics.json, 10 from log.txt)" in md
    cross = md.split("## Cross-dataset")[1].split("## Domain")[0]
    assert "| Method | ImageNet | Caltech101 | Average |" in cross
    assert md_row(cross, "MMRL", "73.00 ± 1.00", "94.50 ± 0.50", "94.50 ± 0.50 (1 of 10)")
    assert md_row(cross, "CoCoOp", "71.00", "93.00", "93.00 (1 of 10)")
    dg = md.split("## Domain generalisation")[1].split("##")[0]
    assert "| Method | ImageNet | ImageNetV2 | Average |" in dg
    assert md_row(dg, "MMRL", "73.00 ± 1.00", "64.50 ± 0.50", "64.50 ± 0.50 (1 of 4)")
    assert "CoCoOp" not in dg
    assert md_row(md, "DTD", "CoOp", "80.00", "60.00", f"{2 * 80 * 60 / 140:.2f}")
    assert "CoCoOp" not in md.split("## Base-to-novel")[1].split("##")[0]

    details = [r for r in read_csv(tmp_path / "report.csv") if r["table"] == "details" and r["method"] == "MMRL"]
    jet = next(r for r in details if r["dataset"] == "caltech101" and r["label"] == "1")
    assert (jet["metric"], jet["classname"], float(jet["mean"]), jet["n_seeds"]) == (
        "target_class_acc", "airplane (jet)", 90.0, "2"
    )  # fmt: skip
    f1 = next(r for r in details if r["dataset"] == "caltech101" and r["metric"] == "target_macro_f1")
    assert float(f1["mean"]) == 93.5 and f1["values"] == "1:93.00;2:94.00"


def test_log_parsers_per_class_and_logged_config(tmp_path):
    write_log(str(tmp_path), 94.5, task="CD", subsample="base", per_class=[("accordion", 990), ("airplane (jet)", 9)])
    log = str(tmp_path / "log.txt")
    assert parse_log(log, "accuracy") == 94.5 and parse_log(log, "macro_f1") == 93.5
    assert parse_per_class(log) == [
        {"label": 0, "classname": "accordion", "total": 1000, "correct": 990, "acc": 99.0},
        {"label": 1, "classname": "airplane (jet)", "total": 1000, "correct": 9, "acc": 0.9},
    ]
    assert parse_logged_config(log, ["TASK", "DATASET.SUBSAMPLE_CLASSES", "DATASET.NAME", "NOPE"]) == {
        "TASK": "CD", "DATASET.SUBSAMPLE_CLASSES": "base", "DATASET.NAME": "",
    }  # fmt: skip


# ---- Few-shot tables and curves.


@pytest.fixture()
def few_shot_tree(tmp_path):
    values = {  # (method, dataset) -> shots -> accuracy by seed
        ("MMRL", "dtd"): {1: [50, 52], 2: [60, 62]},
        ("MMRL", "eurosat"): {1: [70, 74], 2: [80, 80]},
        ("CoOp", "dtd"): {1: [45, 45], 2: [55, 57]},
    }
    for (method, dataset), by_shots in values.items():
        for shots, accs in by_shots.items():
            for seed, acc in enumerate(accs, start=1):
                folder = ("few_shot", dataset, f"shots_{shots}", method, "vit_b16_few_shot", f"seed{seed}")
                write_metrics(run_dir(tmp_path, *folder), acc, task="FS")
    return tmp_path


def test_few_shot_tables_and_plots(few_shot_tree):
    pytest.importorskip("matplotlib")
    report.main([str(few_shot_tree)])
    md = (few_shot_tree / "report.md").read_text()
    dtd = md.split("## Few-shot: DTD")[1].split("##")[0]
    assert "| Method | 1-shot | 2-shot |" in dtd
    assert md_row(dtd, "MMRL", "51.00 ± 1.00", "61.00 ± 1.00") and md_row(dtd, "CoOp", "45.00 ± 0.00", "56.00 ± 1.00")
    avg = md.split("## Few-shot: Average")[1].split("##")[0]
    # MMRL 1-shot: (51 + 72) / 2; per-seed averages 60 and 63 -> std 1.5
    assert md_row(avg, "MMRL", "61.50 ± 1.50", "70.50 ± 0.50")
    assert md_row(avg, "CoOp", "45.00 ± 0.00 (1 of 2)", "56.00 ± 1.00 (1 of 2)")  # no EuroSAT runs
    for ext, magic in (("png", b"\x89PNG"), ("pdf", b"%PDF")):
        assert (few_shot_tree / f"few_shot.{ext}").read_bytes().startswith(magic)
    # a sub-tree is read the same way
    report.main([str(few_shot_tree / "few_shot" / "dtd"), "--out", str(few_shot_tree / "sub")])
    sub = (few_shot_tree / "sub" / "report.md").read_text()
    assert md_row(sub, "MMRL", "51.00 ± 1.00", "61.00 ± 1.00") and "EuroSAT" not in sub


def test_without_matplotlib_tables_are_still_written(few_shot_tree, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    report.main([str(few_shot_tree)])
    out = capsys.readouterr().out
    assert report.PLOT_HINT in out and 'pip install -e ".[plots]"' in out
    assert (few_shot_tree / "report.md").is_file() and not (few_shot_tree / "few_shot.png").exists()


# ---- User errors: one line.


def test_user_errors_are_one_line(tmp_path):
    with pytest.raises(SystemExit) as e:
        report.main([str(tmp_path / "nope")])
    assert str(e.value).startswith("error: ") and "is not a directory" in str(e.value)
    with pytest.raises(SystemExit) as e:
        report.main([str(tmp_path)])
    assert str(e.value).startswith("error: no finished runs under")
    with pytest.raises(SystemExit) as e:
        report.main([str(tmp_path), "--outlier-points", "0"])
    assert str(e.value) == "error: --outlier-points must be positive, got 0.0"
    assert "\n" not in str(e.value)


def test_command_line_from_another_folder(tmp_path):
    """The line the protocol scripts run: python -m tools.report with the repo on PYTHONPATH (imports work,
    a user error is one line on stderr; the success path is the same main() the tests above call)."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": repo + os.pathsep + os.environ.get("PYTHONPATH", "")}
    bad = subprocess.run([sys.executable, "-m", "tools.report", str(tmp_path / "missing")], cwd=tmp_path, env=env,
                         capture_output=True, text=True)  # fmt: skip
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1, bad.stderr
    assert bad.stderr.startswith(f"error: {tmp_path / 'missing'} is not a directory")


def test_paper_average_only_beside_all_eleven_datasets_and_last_epoch_not_flagged(tmp_path):
    datasets = DATASETS
    for i, dataset in enumerate(datasets):
        tail = (dataset, "shots_16", "MMRL", "vit_b16", "seed1")
        write_metrics(run_dir(tmp_path, B2N, "train_base", *tail), 80 + i, task="B2N", subsample="base")
        # the official protocol: novel classes from --load-epoch 5, the last epoch; eurosat's from epoch 3
        epoch = 3 if dataset == "eurosat" else 5
        path = run_dir(tmp_path, B2N, "test_new", *tail)
        write_metrics(path, 60, task="B2N", subsample="new", selection="epoch", epoch=epoch)
    report.main([str(tmp_path)])
    md = (tmp_path / "report.md").read_text()
    base = sum(80 + i for i in range(11)) / 11  # 85.00
    hm = 2 * base * 60 / (base + 60)
    paper = (85.68, 77.16, 81.20)  # MMRL's Table 1, Average row
    assert md_row(md, "Average", "MMRL", f"{base:.2f}", "60.00", f"{hm:.2f}", *map("{:.2f}".format, paper),
                  f"{base - paper[0]:.2f}", f"{60 - paper[1]:.2f}", f"{hm - paper[2]:.2f}")  # fmt: skip
    flagged = [line for line in md.splitlines() if "model of a given epoch" in line]
    assert len(flagged) == 1 and "(3)" in flagged[0] and "/eurosat/" in flagged[0], flagged


# ---- One number per cell: parse_test_res.py, the report and the demo's table agree.


def test_parse_test_res_report_and_demo_table_show_the_same_numbers(tmp_path, capsys):
    """Runs write metrics.json (unrounded) and log.txt (one decimal): all three read metrics.json, so a cell
    that the rounded logs would give as 51.27 reads 51.28 everywhere (population std, as upstream's np.std)."""
    import dataclasses
    import statistics

    import parse_test_res
    from demo.dataset import DATASET_DIR
    from demo.run import QUICK, ZERO_SHOT, demo_table
    from tools.report import render_text

    base, novel = [50.34, 51.16, 52.34], [40.06, 41.94, 41.11]
    assert f"{statistics.mean(round(v, 1) for v in base):.2f}" == "51.27"  # what the logs alone would give
    folders = {}
    for stage, values, subsample in (("train_base", base, "base"), ("test_new", novel, "new")):
        folders[stage] = os.path.join(str(tmp_path), B2N, stage, DATASET_DIR, "shots_16", "MMRL", "vit_b16")
        for seed, acc in enumerate(values, start=1):
            path = run_dir(folders[stage], f"seed{seed}")
            write_log(path, acc, task="B2N", subsample=subsample)
            write_metrics(path, acc, task="B2N", subsample=subsample)
    expected = {
        k: f"{statistics.mean(v):.2f} ± {statistics.pstdev(v):.2f}"
        for k, v in (("base", base), ("new", novel))
    }
    assert expected["base"] == "51.28 ± 0.82"

    parse_test_res.main([folders["train_base"]])
    parse_test_res.main([folders["test_new"]])
    printed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("* accuracy:")]
    assert [line.replace("% +- ", " ± ").rstrip("%")[len("* accuracy: ") :] for line in printed] == [
        expected["base"], expected["new"]
    ]  # fmt: skip

    report.main([str(tmp_path)])
    md = (tmp_path / "report.md").read_text()
    assert md_row(md, DATASET_DIR, "MMRL", expected["base"], expected["new"])

    for stage, acc, subsample in (("train_base", 25.333, "base"), ("test_new", 36.336, "new")):  # zero-shot CLIP
        path = run_dir(tmp_path, B2N, stage, DATASET_DIR, "shots_16", "ZeroshotCLIP", "vit_b16", "seed1")
        write_metrics(path, acc, task="B2N", subsample=subsample)
    settings = dataclasses.replace(QUICK, methods=("MMRL",), seeds=(1, 2, 3))
    table, rows = demo_table(settings, str(tmp_path))
    lines = render_text(table).splitlines()
    line = next(line for line in lines if line.startswith("MMRL "))
    assert line.split()[1:7] == [*expected["base"].split(), *expected["new"].split()]
    assert rows["MMRL"]["base"] == pytest.approx(statistics.mean(base))
    zero_shot = next(line for line in lines if line.startswith(ZERO_SHOT))
    assert zero_shot.split()[-3:] == ["25.33", "36.34", f"{2 * 25.333 * 36.336 / (25.333 + 36.336):.2f}"]
    assert rows[ZERO_SHOT] == pytest.approx({"base": 25.333, "base_std": 0, "new": 36.336, "new_std": 0})


def test_a_model_selected_on_the_test_set_is_flagged(tmp_path):
    """ProVP's official protocol (TRAINER.COOP.SELECT_ON_TEST) reports the best epoch on the test set: said so."""
    tail = ("dtd", "shots_16", "ProVP", "vit_b16_b2n_ep100", "seed1")
    write_metrics(run_dir(tmp_path, B2N, "train_base", *tail), 80, task="B2N", subsample="base",
                  selection="best_test", epoch=37)  # fmt: skip
    write_metrics(run_dir(tmp_path, B2N, "train_base", "dtd", "shots_16", "ProVP", "vit_b16_b2n_ep100", "seed2"), 79,
                  task="B2N", subsample="base")  # fmt: skip
    report.main([str(tmp_path)])
    flagged = [line for line in (tmp_path / "report.md").read_text().splitlines() if "selected on the test set" in line]
    assert len(flagged) == 1 and "(the best of its epochs, 37)" in flagged[0] and "/seed1" in flagged[0], flagged
