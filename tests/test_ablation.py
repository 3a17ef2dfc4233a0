"""Ablations as protocols: declared in a method's protocols.yaml, planned by tools/protocols/ablation.py into
OUTPUT/ablation/<name>/<value>/, run by ablation.sh and tools.grid, tabled by the report beside the paper."""

from __future__ import annotations

import csv
import json
import os
import os.path as osp
import subprocess
import sys

import pytest
import yaml

from tools.protocols import FINISHED, ProtocolError, cell_status
from tools.protocols.ablation import ablation, ablation_plan
from tools.protocols.protocols_file import FileError, read_protocols
from tools.report import make_report

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def paper_table8() -> dict[tuple[str, str], str]:
    """MMRL's Table 8 as the data file holds it: {(lambda, paper dataset name): HM as printed}."""
    with open(osp.join(REPO, "tools", "paper_numbers.csv"), newline="") as f:
        rows = csv.DictReader(line for line in f if not line.startswith("#"))
        return {(r["setting"].removeprefix("lambda="), r["dataset"]): r["value"] for r in rows
                if r["table"] == "Table 8" and r["method"] == "MMRL" and r["metric"] == "hm"}  # fmt: skip


def declared(trainer: str) -> dict:
    with open(osp.join(REPO, "configs", "trainers", trainer, "protocols.yaml")) as f:
        return yaml.safe_load(f)["ablations"]


def test_lambda_plan_lists_the_papers_values_and_their_folders(tmp_path):
    """DRY_RUN=1 bash ablation.sh MMRL lambda: one base-to-novel plan per value of Table 8, REG_WEIGHT last
    (over the per-dataset values), each value in its own folder; the listing shows the same."""
    env = {**ENV, "DATA": str(tmp_path), "OUTPUT": str(tmp_path / "out"), "DRY_RUN": "1", "DATASETS": "dtd",
           "SEEDS": "1"}  # fmt: skip
    result = subprocess.run(["bash", osp.join(REPO, "ablation.sh"), "MMRL", "lambda"], env=env, cwd=tmp_path,
                            capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = [line.split() for line in result.stdout.splitlines() if "train.py" in line]
    paper_values = sorted({v for v, _ in paper_table8()}, key=float)
    assert len(paper_values) == 11 and len(lines) == 2 * len(paper_values)  # train_base and test_new per value
    assert [line[-1] for line in lines[::2]] == paper_values  # the value, as the paper prints it
    for line, value in zip(lines[::2], paper_values):
        assert line[-2:] == ["TRAINER.MMRL.REG_WEIGHT", value]
        out = line[line.index("--output-dir") + 1]
        assert out == str(tmp_path / f"out/ablation/lambda/{value}/base2new/train_base/dtd/shots_16/MMRL/vit_b16/seed1")
    listing = subprocess.run([sys.executable, "-m", "tools.protocols", "ablations", "MMRL", "lambda"], cwd=REPO,
                             capture_output=True, text=True, env=ENV)  # fmt: skip
    assert listing.returncode == 0
    assert [row.split()[0] for row in listing.stdout.splitlines()[1:]] == paper_values
    assert "output/ablation/lambda/0.5" in listing.stdout


def test_every_ablation_runs_on_the_declared_key_and_values():
    """The plan sets exactly the declared key to each declared value (lists without spaces, as yacs reads them)."""
    for trainer in ("MMRL", "MMRLpp"):
        names = declared(trainer)
        assert set(names) == {"lambda", "alpha", "rep_dim", "rep_layers", "regularizer", "n_tokens"}
        for name, entry in names.items():
            cells = ablation_plan([trainer], name, "out", "/d", ["dtd"], [1], phases=["train"])
            values = entry["values"]
            expected = list(values.values()) if isinstance(values, dict) else values
            assert [c.args[-2] for c in cells] == [entry["key"]] * len(expected)
            assert [c.args[-1] for c in cells] == [str(v).replace(" ", "") for v in expected]
    j6 = ablation("MMRL", "rep_layers").values[5]
    assert j6 == ("6", "[6,7,8,9,10,11,12]")  # J = 6, the published REP_LAYERS
    assert ablation("MMRL", "regularizer").labels == ["cosine", "l1", "mse"]


def test_a_bad_ablation_name_is_one_error_line_listing_the_declared_ones(tmp_path):
    result = subprocess.run(["bash", osp.join(REPO, "ablation.sh"), "MMRL", "lamda"], capture_output=True, text=True,
                            env={**ENV, "DATA": str(tmp_path)})  # fmt: skip
    assert result.returncode != 0 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: MMRL declares no ablation 'lamda'")
    assert lines[0].endswith("(its ablations: " + ", ".join(declared("MMRL")) + ")")
    with pytest.raises(ProtocolError, match="no value 0.3 "):
        ablation_plan(["MMRL"], "lambda", "out", "/d", values=["0.3"])


@pytest.mark.parametrize(
    "entry, key, message",
    [
        ({"key": "TRAINER.MMRL.REG_WEIGHT", "values": 3}, "ablations.lam.values", "expected a list of values"),
        ({"key": "reg_weight", "values": [1]}, "ablations.lam.key", "expected a config key such as"),
        ({"key": "TRAINER.MMRL.ALPHA", "values": [0.5], "seed": [1]}, "ablations.lam.seed", "unknown key 'seed'"),
        ({"key": "TRAINER.MMRL.ALPHA", "values": {"a/b": 1}}, "ablations.lam.values", "expected a list of values"),
        ({"key": "TRAINER.MMRL.ALPHA", "values": [0.5], "seeds": ["1"]}, "ablations.lam.seeds", "integers"),
    ],
)
def test_a_bad_ablation_entry_names_the_file_key_and_line(tmp_path, entry, key, message):
    path = tmp_path / "protocols.yaml"
    path.write_text(yaml.safe_dump({"base2new": {"config": "vit_b16"}, "ablations": {"lam": entry}}, sort_keys=False))
    with pytest.raises(FileError, match=message) as e:
        read_protocols(str(path))
    line = 1 + next(i for i, text in enumerate(path.read_text().splitlines())
                    if text.strip().startswith(key.split(".")[-1] + ":"))  # fmt: skip
    assert e.value.line == line and str(e.value).startswith(f"{path}:{line}: ")
    assert "configs/trainers/MMRL/protocols.yaml" in str(e.value)  # the example to follow


def test_a_tiny_ablation_grid_ends_in_its_table_beside_table_8(tiny_clip, synthetic_data, tmp_path):
    """tools.grid --ablation lambda, 2 values x 1 dataset on the synthetic DTD, then the report: our base, novel
    and HM per value (from the runs' metrics.json) beside Table 8's HM for DTD, read from the data file."""
    root, out = synthetic_data("dtd", n_classes=4, n_train=2, n_val=1, n_test=1), tmp_path / "out"
    opts = ["MODEL.BACKBONE.PATH", tiny_clip, "INPUT.SIZE", "(32, 32)", "DATALOADER.NUM_WORKERS", "0",
            "OPTIM.MAX_EPOCH", "1", "TRAINER.MMRL.REP_DIM", "16"]  # fmt: skip
    cmd = [sys.executable, "-m", "tools.grid", "--ablation", "lambda", "--values", "0.5", "3.0", "--methods", "MMRL",
           "--datasets", "dtd", "--seeds", "1", "--root", root, "--output", str(out), "--jobs", "2",
           "--interval", "0.2", "--", *opts]  # fmt: skip
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=ENV)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "Grid finished: 4 cells done, 0 failed" in result.stdout
    assert "Ablation lambda" in result.stdout  # the report ends the grid, showing the ablation's table

    ours = {}
    for value in ("0.5", "3.0"):
        accs = []
        for stage in ("train_base", "test_new"):
            run = out / f"ablation/lambda/{value}/base2new/{stage}/dtd/shots_16/MMRL/vit_b16/seed1"
            assert cell_status(str(run)) == FINISHED
            assert f"REG_WEIGHT: {float(value)}" in (run / "log.txt").read_text()  # the value won over DTD's 6.0
            accs.append(json.loads((run / "metrics.json").read_text())["accuracy"])
        ours[value] = accs
    make_report(str(out), show=["none"])
    with open(out / "report.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["protocol"] == "ablation"]
    hm = {r["method"]: r for r in rows if r["metric"] == "hm" and r["dataset"] == "dtd"}
    table8 = paper_table8()
    for value, (base, novel) in ours.items():
        row = hm[f"MMRL lambda={value}"]
        expected = 2 * base * novel / (base + novel)
        assert float(row["mean"]) == pytest.approx(expected, abs=1e-4)
        assert row["paper"] == table8[(value, "DTD")]  # 72.67 for 0.5, 73.54 for 3.0
        assert float(row["delta"]) == pytest.approx(expected - float(table8[(value, "DTD")]), abs=1e-4)
    assert table8[("0.5", "DTD")] == "72.67"  # the spot check, as printed in the paper
    report_md = (out / "report.md").read_text()
    assert "| DTD | MMRL lambda=0.5 |" in report_md and "| 72.67 |" in report_md
    # The main tables do not count the ablation's runs as base-to-novel runs of MMRL.
    assert "## Base-to-novel" not in report_md
