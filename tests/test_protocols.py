"""tools.protocols: the one home of the protocols' run plan, run-folder layout and cell status, that the shell
scripts, the grid and the report share."""

from __future__ import annotations

import json
import os
import stat

import pytest

from tools.protocols import FINISHED, INCOMPLETE, NOT_STARTED, ProtocolError, cell_status, parse_run_dir, plan
from tools.protocols.runner import run_cells
from tools.report import load_results


def test_plan_is_the_official_command_lines_in_order(tmp_path):
    cells = plan("base2new", ["MMRL"], str(tmp_path), "/d", ["dtd", "imagenet"], [1], [])
    assert [c.name for c in cells] == [
        "MMRL/dtd/seed1/train_base", "MMRL/dtd/seed1/test_new",
        "MMRL/imagenet/seed1/train_base", "MMRL/imagenet/seed1/test_new",
    ]  # fmt: skip
    train, test = cells[2], cells[3]
    assert train.output_dir == str(tmp_path / "base2new/train_base/imagenet/shots_16/MMRL/vit_b16_imagenet/seed1")
    assert test.after == train.output_dir and test.args[test.args.index("--model-dir") + 1] == train.output_dir
    assert list(test.args[-6:]) == ["DATASET.NUM_SHOTS", "16", "DATASET.SUBSAMPLE_CLASSES", "new", "TASK", "B2N"]
    cd = plan("cross_datasets", ["MMRL"], str(tmp_path), "/d", ["eurosat"], [2], [])
    assert cd[1].after == cd[0].output_dir
    assert list(cd[0].args[-4:]) == ["TRAINER.MMRL.REG_WEIGHT", "0.2", "TRAINER.MMRL.REP_DIM", "512"]
    # A method whose cross-dataset config is its base-to-novel one gets its own folder (no shared results).
    b2n = plan("base2new", ["MaskedMHAAdapter"], str(tmp_path), "/d", ["imagenet"], [1], [])
    xd = plan("cross_datasets", ["MaskedMHAAdapter"], str(tmp_path), "/d", ["dtd"], [1], [])
    assert b2n[0].output_dir.endswith("train_base/imagenet/shots_16/MaskedMHAAdapter/vit_b16/seed1")
    assert xd[0].output_dir.endswith("train_base/imagenet/shots_16/MaskedMHAAdapter/vit_b16_cross_datasets/seed1")
    assert "configs/trainers/MaskedMHAAdapter/vit_b16.yaml" in " ".join(xd[0].args)
    fs = plan("few_shot", ["MMRLpp"], str(tmp_path), "/d", ["dtd"], [1, 2], [1, 4])
    assert [c.name for c in fs] == ["MMRLpp/dtd/1-shot/seed1", "MMRLpp/dtd/1-shot/seed2", "MMRLpp/dtd/4-shot/seed1",
                                    "MMRLpp/dtd/4-shot/seed2"]  # fmt: skip
    assert fs[-1].output_dir.endswith("few_shot/dtd/shots_4/MMRLpp/vit_b16_few_shot/seed2")
    # Another backbone's published files (the method's backbones table), in their own folders.
    rn = plan("few_shot", ["CoOp"], str(tmp_path), "/d", ["dtd"], [1], [8], backbone="rn50")
    assert rn[0].output_dir.endswith("few_shot/dtd/shots_8/CoOp/rn50/seed1")
    assert "configs/trainers/CoOp/rn50.yaml" in " ".join(rn[0].args)
    # Zero-shot CLIP has nothing to train: its tests evaluate it as built and wait for nothing.
    zs = plan("base2new", ["ZeroshotCLIP"], str(tmp_path), "/d", ["dtd"], [1], [], phases=["test"])
    assert [c.name for c in zs] == ["ZeroshotCLIP/dtd/seed1/test_new"] and zs[0].after is None
    assert "--eval-only" in zs[0].args and "--model-dir" not in zs[0].args


def test_cell_status(tmp_path):
    """Not started (no folder, or empty), incomplete (started, no test result), finished (a test result)."""
    cell = tmp_path / "seed1"
    assert cell_status(str(cell)) == NOT_STARTED
    cell.mkdir()
    assert cell_status(str(cell)) == NOT_STARTED
    (cell / "log.txt").write_text("epoch [1/5] batch [1/1]\n")
    assert cell_status(str(cell)) == INCOMPLETE
    (cell / "metrics.json").write_text('{"accuracy": 40.0, "phase": {"split": "val"}}')  # best_val, killed
    assert cell_status(str(cell)) == INCOMPLETE
    (cell / "metrics.json").write_text('{"accuracy": 41.0, "phase": {"split": "test"}}')
    assert cell_status(str(cell)) == FINISHED
    (cell / "metrics.json").unlink()
    (cell / "log.txt").write_text("Evaluate on the *test* set\n=> result\n* accuracy: 41.0%\n")  # official code
    assert cell_status(str(cell)) == FINISHED


def test_the_report_reads_back_what_the_plan_writes(tmp_path):
    """Every cell's folder parses back to its method, dataset, shots and seed, and the report files each
    finished cell under its protocol and phase."""
    cells = plan("base2new", ["CoOp"], str(tmp_path), "/d", ["dtd", "imagenet"], [1, 2], [])
    cells += plan("cross_datasets", ["MMRL"], str(tmp_path), "/d", ["eurosat", "imagenet_r"], [1], [])
    cells += plan("few_shot", ["MMRLpp"], str(tmp_path), "/d", ["dtd"], [1], [2, 4])
    expected = {}
    for i, cell in enumerate(cells):
        where = parse_run_dir(cell.output_dir)
        args = dict(zip(cell.args[::2], cell.args[1::2]))  # flags and KEY VALUE pairs, before --eval-only shifts
        assert (where.trainer, where.seed) == (cell.args[5], int(cell.args[3]))
        assert where.dataset == os.path.basename(cell.args[7])[: -len(".yaml")] and where.shots > 0
        task = cell.args[cell.args.index("TASK") + 1]
        subsample = "new" if "/test_new/" in cell.output_dir and task == "B2N" else "base" if task == "B2N" else "all"
        os.makedirs(cell.output_dir)
        accuracy = 50.0 + i
        with open(os.path.join(cell.output_dir, "metrics.json"), "w") as f:
            json.dump({"accuracy": accuracy, "phase": {"task": task, "subsample": subsample, "split": "test"}}, f)
        expected[cell.output_dir] = accuracy
        assert args["--output-dir"] == cell.output_dir
    res = load_results(str(tmp_path))
    assert {r.path: r.accuracy for r in res.runs} == expected
    by_cell = {(r.protocol, r.trainer, r.dataset, r.phase, r.shots) for r in res.runs}
    assert by_cell == {
        ("base2new", "CoOp", d, phase, 16) for d in ("dtd", "imagenet") for phase in ("base", "novel")
    } | {
        ("cross_datasets", "MMRL", "imagenet", "source", 16), ("cross_datasets", "MMRL", "eurosat", "target", 16),
        ("cross_datasets", "MMRL", "imagenet_r", "target", 16),
        ("few_shot", "MMRLpp", "dtd", "accuracy", 2), ("few_shot", "MMRLpp", "dtd", "accuracy", 4),
    }  # fmt: skip


def test_plan_errors_name_the_file_to_fix(tmp_path):
    with pytest.raises(ProtocolError, match=r"^'Nope' has no configs/trainers/Nope/protocols.yaml; methods: .*MMRL"):
        plan("base2new", ["Nope"], str(tmp_path), "/d", ["dtd"])
    with pytest.raises(ProtocolError, match=r"^LinearProbeCLIP has no 'base2new' setting in configs/trainers/"):
        plan("base2new", ["LinearProbeCLIP"], str(tmp_path), "/d", ["dtd"])
    with pytest.raises(ProtocolError, match=r"^no configs/datasets/nope.yaml; datasets: caltech101 .*dtd eurosat "):
        plan("few_shot", ["MMRL"], str(tmp_path), "/d", ["nope"])
    with pytest.raises(ProtocolError, match=r"KEY VALUE pairs"):
        plan("few_shot", ["MMRL"], str(tmp_path), "/d", ["dtd"], opts=["OPTIM.LR"])


def test_the_runner_stops_at_the_first_failure_and_resumes(tmp_path, capsys):
    """A failing run stops the protocol with its exit code, nothing after it runs; the same command again
    skips what finished and carries on."""
    python = tmp_path / "python"
    python.write_text(
        "#!/bin/bash\n"
        'for a in "$@"; do if [ "$prev" = --output-dir ]; then out=$a; fi; prev=$a; done\n'
        'mkdir -p "$out"; echo "$out" >> "$(dirname "$0")/ran.txt"\n'
        'if [ -e "$(dirname "$0")/fail" ] && [[ $out == */seed2 ]]; then\n'
        '    echo "epoch [1/5]" > "$out/log.txt"; echo "error: boom" >&2; exit 3\n'
        "fi\n"
        'printf "=> result\\n* accuracy: 60.0%%\\n" > "$out/log.txt"\n'
    )
    python.chmod(python.stat().st_mode | stat.S_IEXEC)
    (tmp_path / "fail").touch()
    cells = plan("base2new", ["MMRL"], str(tmp_path / "out"), "/d", ["dtd"], [1, 2], [])
    assert run_cells(cells, str(python)) == 3
    ran = (tmp_path / "ran.txt").read_text().split()
    assert [os.path.relpath(p, tmp_path / "out") for p in ran] == [
        "base2new/train_base/dtd/shots_16/MMRL/vit_b16/seed1", "base2new/train_base/dtd/shots_16/MMRL/vit_b16/seed2"
    ]  # fmt: skip
    assert [cell_status(c.output_dir) for c in cells] == [FINISHED, INCOMPLETE, NOT_STARTED, NOT_STARTED]
    (tmp_path / "fail").unlink()
    (tmp_path / "ran.txt").unlink()
    assert run_cells(cells, str(python)) == 0
    assert len((tmp_path / "ran.txt").read_text().split()) == 3  # seed2's training, then the two tests
    assert all(cell_status(c.output_dir) == FINISHED for c in cells)
    assert "* accuracy: 60.00% +- 0.00%" in capsys.readouterr().out  # each <CFG> folder summarised
    assert [p.name[:21] for p in (tmp_path / "out").rglob("log.txt.*")] == ["log.txt.incomplete-20"]


def test_multi_source_dg_cells_parse_back_to_their_held_out_domain(tmp_path):
    """dg/<held-out domain>/<dataset>/shots_<K>/...: the report files each run under its dataset, shots and domain,
    with DATASET.ID the domain's index in the loader (DomainNet's six, in Dassl's and MetaPrompt's order)."""
    cells = plan("dg", ["Meta_DG"], str(tmp_path), "/d", ["domainnet"], [2], [5])
    domains = ["clipart", "infograph", "painting", "quickdraw", "real", "sketch"]
    assert [c.name for c in cells] == [f"Meta_DG/domainnet/{d}/5-shot/seed2" for d in domains]
    for i, cell in enumerate(cells):
        assert list(cell.args[-4:]) == ["DATASET.NUM_SHOTS", "5", "DATASET.ID", str(i)]
        where = parse_run_dir(cell.output_dir)
        assert (where.tree, where.stage, where.dataset) == ("dg", domains[i], "domainnet")
        assert (where.shots, where.seed) == (5, 2)
        os.makedirs(cell.output_dir)
        with open(os.path.join(cell.output_dir, "metrics.json"), "w") as f:
            json.dump({"accuracy": 40.0 + i, "phase": {"split": "test"}}, f)
    res = load_results(str(tmp_path))
    assert {(r.protocol, r.phase, r.accuracy) for r in res.runs} == {("dg", d, 40.0 + i) for i, d in enumerate(domains)}
    with pytest.raises(ProtocolError, match=r"^MMRL has no 'dg' setting in configs/trainers/MMRL/protocols.yaml"):
        plan("dg", ["MMRL"], str(tmp_path), "/d", ["pacs"])
