"""The shell protocols: scripts/{mmrl,mmrlpp}/*.sh and the top-level base_to_novel.sh, cross_datasets.sh,
few_shot.sh, as the official README runs them (no argument, DATA in the scripts or the environment) and with
methods given.

First with a stand-in interpreter for train.py that records each command and writes a finished log (the
exact command lines, the official output layout and order, skipping, parse.txt, the report's table), then
for real on synthetic data with a tiny CLIP, with stand-in packages named ``datasets`` and ``clip`` on the
path: every script family trains and tests end to end with this repository's packages.
"""

from __future__ import annotations

import os
import os.path as osp
import shutil
import stat
import subprocess
import sys

import pytest

from tools.protocols import DATASETS

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
EXTRA = ["MODEL.BACKBONE.PATH", "/w/tiny.pt", "INPUT.SIZE", "(32, 32)"]

# "python -m ..." runs the real interpreter; "python train.py ARGS" is recorded and writes a finished log
# whose accuracy is 50 + the seed (so a table shows which runs it averaged).
STUB = r"""#!/bin/bash
if [ "$1" = -m ]; then exec "$REAL_PYTHON" "$@"; fi
printf '%s\n' "$*" >> "$STUB_LOG"
prev=
for a in "$@"; do
    if [ "$prev" = --output-dir ]; then out=$a; fi
    if [ "$prev" = --seed ]; then seed=$a; fi
    prev=$a
done
mkdir -p "$out" && printf '=> result\n* accuracy: %s.0%%\n' "$((50 + seed))" > "$out/log.txt"
"""


@pytest.fixture
def stub(tmp_path):
    path = tmp_path / "python"
    path.write_text(STUB)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    log = tmp_path / "commands.txt"
    (tmp_path / "data").mkdir()
    env = dict(os.environ, PYTHON=str(path), STUB_LOG=str(log), DATA=str(tmp_path / "data"), SEEDS="1 2")
    env.update(OUTPUT=str(tmp_path / "out"), REAL_PYTHON=sys.executable)

    def run(script, *args, ok=True, **env_overrides):
        """(the train.py commands run, stdout, stderr) of ``bash script args``; paths shortened to R, O, D."""
        log.write_text("")
        result = subprocess.run(
            ["bash", osp.join(REPO, script) if not osp.isabs(script) else script, *args],
            env={k: v for k, v in {**env, **env_overrides}.items() if v is not None}, capture_output=True, text=True,
        )  # fmt: skip
        assert (result.returncode == 0) == ok, result.stdout[-3000:] + result.stderr[-3000:]
        short = log.read_text().replace(REPO, "R").replace(str(tmp_path / "out"), "O").replace(str(tmp_path), "T")
        return short.splitlines(), result.stdout, result.stderr

    return run


def train(*args: str) -> str:
    return " ".join(["R/train.py --root T/data", *args])


def test_base2new_commands_and_parse_txt(stub, tmp_path):
    commands, out, _ = stub("scripts/mmrl/base2new_train.sh", "dtd", *EXTRA)
    common = "--trainer MMRL --dataset-config-file R/configs/datasets/dtd.yaml"
    common += " --config-file R/configs/trainers/MMRL/vit_b16.yaml"
    assert commands == [
        train("--seed 1", common, "--output-dir O/base2new/train_base/dtd/shots_16/MMRL/vit_b16/seed1",
              "DATASET.NUM_SHOTS 16 DATASET.SUBSAMPLE_CLASSES base TASK B2N", *EXTRA),
        train("--seed 2", common, "--output-dir O/base2new/train_base/dtd/shots_16/MMRL/vit_b16/seed2",
              "DATASET.NUM_SHOTS 16 DATASET.SUBSAMPLE_CLASSES base TASK B2N", *EXTRA),
    ]  # fmt: skip
    folder = tmp_path / "out/base2new/train_base/dtd/shots_16/MMRL/vit_b16"
    assert "* accuracy: 51.50% +- 0.50%" in out and "* accuracy: 51.50% +- 0.50%" in (folder / "parse.txt").read_text()
    stub("scripts/mmrlpp/base2new_train.sh", "imagenet", SEEDS="3")
    commands, _, _ = stub("scripts/mmrlpp/base2new_test.sh", "imagenet", SEEDS="3")
    model = "O/base2new/train_base/imagenet/shots_16/MMRLpp/vit_b16_imagenet/seed3"
    assert commands == [
        train("--seed 3 --trainer MMRLpp --dataset-config-file R/configs/datasets/imagenet.yaml",
              "--config-file R/configs/trainers/MMRLpp/vit_b16_imagenet.yaml",
              "--output-dir O/base2new/test_new/imagenet/shots_16/MMRLpp/vit_b16_imagenet/seed3",
              f"--model-dir {model} --eval-only DATASET.NUM_SHOTS 16 DATASET.SUBSAMPLE_CLASSES new TASK B2N")
    ]  # fmt: skip


def test_a_test_before_its_training_is_one_error_line(stub):
    commands, _, err = stub("scripts/mmrl/base2new_test.sh", "dtd", ok=False)
    assert commands == [] and err.count("\n") == 1
    assert err.startswith("error: ") and "has not finished training: run the training first" in err


def test_cross_dataset_commands(stub):
    commands, _, _ = stub("scripts/mmrl/cross_datasets_train.sh", SEEDS="1")
    assert commands[0].endswith(
        "--config-file R/configs/trainers/MMRL/vit_b16_cross_datasets.yaml "
        "--output-dir O/base2new/train_base/imagenet/shots_16/MMRL/vit_b16_cross_datasets/seed1 "
        "DATASET.NUM_SHOTS 16 TASK CD TRAINER.MMRL.REG_WEIGHT 0.2 TRAINER.MMRL.REP_DIM 512"
    )
    commands, _, _ = stub("scripts/mmrl/cross_datasets_test.sh", "eurosat", *EXTRA, SEEDS="1")
    assert "--output-dir O/base2new/test_new/eurosat/shots_16/MMRL/vit_b16_cross_datasets/seed1" in commands[0]
    assert commands[0].endswith(
        "--model-dir O/base2new/train_base/imagenet/shots_16/MMRL/vit_b16_cross_datasets/seed1 --eval-only "
        "DATASET.NUM_SHOTS 16 TASK CD TRAINER.MMRL.REG_WEIGHT 0.2 TRAINER.MMRL.REP_DIM 512 " + " ".join(EXTRA)
    )
    stub("scripts/mmrlpp/cross_datasets_train.sh", SEEDS="1")
    commands, _, _ = stub("scripts/mmrlpp/cross_datasets_test.sh", "eurosat", SEEDS="1")
    assert commands[0].endswith("--eval-only DATASET.NUM_SHOTS 16 TASK CD")


def test_few_shot_commands(stub):
    commands, _, _ = stub("scripts/mmrlpp/few_shot.sh", "eurosat", SHOTS="1 4", SEEDS="1")
    assert [c.split("--output-dir ")[1] for c in commands] == [
        "O/few_shot/eurosat/shots_1/MMRLpp/vit_b16_few_shot/seed1 DATASET.NUM_SHOTS 1 TASK FS",
        "O/few_shot/eurosat/shots_4/MMRLpp/vit_b16_few_shot/seed1 DATASET.NUM_SHOTS 4 TASK FS",
    ]
    commands, _, _ = stub("scripts/mmrl/few_shot.sh", "imagenet", SHOTS="16", SEEDS="1")
    assert "--config-file R/configs/trainers/MMRL/vit_b16_imagenet.yaml" in commands[0]


def test_finished_runs_are_skipped_and_unfinished_ones_rerun(stub, tmp_path):
    stub("scripts/mmrl/base2new_train.sh", "dtd")
    unfinished = tmp_path / "out/base2new/train_base/dtd/shots_16/MMRL/vit_b16/seed2"
    (unfinished / "log.txt").write_text("epoch [1/10] ... crashed\n")
    commands, out, _ = stub("scripts/mmrl/base2new_train.sh", "dtd")
    assert "Skip O/base2new/train_base/dtd/shots_16/MMRL/vit_b16/seed1" in out.replace(str(tmp_path / "out"), "O")
    assert len(commands) == 1 and "/seed2 " in commands[0]
    assert [p.name.startswith("log.txt.incomplete-") for p in unfinished.glob("log.txt.*")] == [True]
    _, out, _ = stub("scripts/mmrl/base2new_train.sh", "dtd", DRY_RUN="1")  # nothing left to run
    assert out.count("Skip ") == 2 and "train.py" not in out


def rows(out: str, title: str) -> dict[str, list[str]]:
    """The rows of the printed table ``title``, by their first cells (dataset, or dataset and method)."""
    lines = out[out.index(title) :].split("\n\n")[0].splitlines()[2:]
    return {" ".join(line.split()[:2]): line.split()[2:] for line in lines}


def test_no_argument_runs_mmrlpp_then_mmrl_on_every_dataset_as_the_official_script(stub):
    commands, out, _ = stub("base_to_novel.sh", DRY_RUN="1", SEEDS="1")
    trained = [line.split("--trainer ")[1].split()[0] + " " + line.split("configs/datasets/")[1].split(".yaml")[0]
               for line in out.splitlines() if "train.py" in line]  # fmt: skip
    assert trained == [f"MMRLpp {d}" for d in DATASETS for _ in "tt"] + [f"MMRL {d}" for d in DATASETS for _ in "tt"]
    assert DATASETS[0] == "eurosat" and DATASETS[-1] == "imagenet"  # the official script's order

    commands, out, _ = stub("base_to_novel.sh", DATASETS="dtd")
    assert [c.split("--trainer ")[1].split()[0] for c in commands] == ["MMRLpp"] * 4 + ["MMRL"] * 4
    table = rows(out, "Base-to-novel generalisation")
    assert table["DTD MMRL"][:5] == ["51.50", "±", "0.50", "51.50", "±"]
    assert table["DTD MMRLpp"][:5] == ["51.50", "±", "0.50", "51.50", "±"]
    assert out.count("Base-to-novel generalisation") == 1  # one table (and the report files)
    _, out, _ = stub("cross_datasets.sh", DATASETS="dtd imagenet_a", SEEDS="1")
    assert "Cross-dataset evaluation" in out and "Domain generalisation" in out
    commands, out, _ = stub("few_shot.sh", DATASETS="dtd", SHOTS="1 2", SEEDS="1")
    assert [c.split("--trainer ")[1].split()[0] for c in commands] == ["MMRLpp"] * 2 + ["MMRL"] * 2
    assert "Few-shot: DTD" in out


@pytest.mark.parametrize("script", ["base_to_novel.sh", "cross_datasets.sh", "few_shot.sh"])
def test_data_left_unset_is_one_error_line_naming_the_script_to_edit(stub, script):
    commands, out, err = stub(script, ok=False, DATA=None)
    first = {"base_to_novel.sh": "base2new_train", "cross_datasets.sh": "cross_datasets_train"}.get(script, "few_shot")
    assert commands == [] and err.count("\n") == 1
    assert err == f"error: DATA is not set: edit the DATA= line of {REPO}/scripts/mmrlpp/{first}.sh " \
                  "(or set DATA in the environment); see README.md#data\n"  # fmt: skip
    _, _, err = stub(script, ok=False, DATA="/no/such/folder")
    assert err.startswith("error: DATA=/no/such/folder is not a folder: edit the DATA= line of ")
    _, _, err = stub(script, "CoOp", ok=False, DATA=None)  # methods given: DATA from the environment
    assert err == f"error: DATA is not set: run DATA=/path/to/datasets bash {script} ...; see README.md#data\n"


def test_the_data_line_of_a_script(stub, tmp_path):
    """A user who edits the DATA= line, as the official README says, needs nothing in the environment."""
    scripts = tmp_path / "copy" / "scripts"
    (scripts / "mmrl").mkdir(parents=True)
    (scripts / "protocols.sh").symlink_to(osp.join(REPO, "scripts", "protocols.sh"))
    text = open(osp.join(REPO, "scripts", "mmrl", "few_shot.sh")).read()
    assert text.count("PATH/TO/YOUR/DATASETS") == 1
    (scripts / "mmrl" / "few_shot.sh").write_text(text.replace("PATH/TO/YOUR/DATASETS", str(tmp_path / "data")))
    commands, _, _ = stub(str(scripts / "mmrl" / "few_shot.sh"), "dtd", DATA=None, SHOTS="1", SEEDS="1")
    assert len(commands) == 1 and commands[0].startswith("R/train.py --root T/data --seed 1 --trainer MMRL ")


def test_methods_side_by_side(stub, tmp_path):
    commands, out, _ = stub("base_to_novel.sh", "MMRL,MMRLpp", DATASETS="dtd", SEEDS="1")
    trainers = [c.split("--trainer ")[1].split()[0] for c in commands]
    assert trainers == ["MMRL", "MMRL", "MMRLpp", "MMRLpp"]  # train base + test new, method by method
    table = rows(out, "Base-to-novel generalisation")
    assert table["DTD MMRL"][:3] == ["51.00", "51.00", "51.00"] and table["DTD MMRLpp"][:3] == ["51.00"] * 3
    assert (tmp_path / "out" / "report.md").is_file()


def test_unknown_method_or_dataset_is_rejected(stub):
    _, _, err = stub("base_to_novel.sh", "NoSuchMethod", ok=False)
    assert "error: 'NoSuchMethod' has no configs/trainers/NoSuchMethod/protocols.yaml; methods: " in err
    assert "MMRL MMRLpp" in err
    commands, _, err = stub("scripts/mmrl/few_shot.sh", "no_such_set", ok=False)
    assert commands == [] and err.startswith("error: no configs/datasets/no_such_set.yaml; datasets: ")
    _, _, err = stub("scripts/mmrl/few_shot.sh", ok=False)
    assert err.startswith("error: no DATASET given: bash ") and err.count("\n") == 1


# ---- for real: train.py and parse_test_res.py on synthetic data, beside stand-in datasets / clip packages


def test_every_script_family_runs_end_to_end(tmp_path, tiny_clip, synthetic_data):
    """With packages named ``datasets`` and ``clip`` importable (as Hugging Face datasets and OpenAI's clip would
    be), the scripts, train.py and the report still use this repository's, run from another folder."""
    data = synthetic_data(("dtd", "imagenet", "imagenetv2", "oxford_pets"), n_classes=4, n_train=4, n_val=1, n_test=2)
    standins = tmp_path / "site"
    for name in ("datasets", "clip"):
        (standins / name).mkdir(parents=True)
        (standins / name / "__init__.py").write_text(
            f"import os\nwith open(os.environ['STANDIN_LOG'], 'a') as f:\n    f.write('{name} imported\\n')\n"
        )
    imported = tmp_path / "standins.txt"
    tiny = ["MODEL.BACKBONE.PATH", tiny_clip, "INPUT.SIZE", "(32, 32)", "OPTIM.MAX_EPOCH", "1"]
    tiny += ["DATALOADER.NUM_WORKERS", "0"]
    env = dict(os.environ, DATA=data, OUTPUT=str(tmp_path / "out"), SEEDS="1", SHOTS="2", PYTHON=sys.executable)
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=str(standins), STANDIN_LOG=str(imported))  # tiny tensors: 1 thread

    def run(*cmd: str) -> str:
        result = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        return result.stdout

    run("bash", osp.join(REPO, "scripts/mmrl/base2new_train.sh"), "dtd", *tiny)
    run("bash", osp.join(REPO, "scripts/mmrl/base2new_test.sh"), "dtd", *tiny)
    run("bash", osp.join(REPO, "scripts/mmrlpp/cross_datasets_train.sh"), *tiny)
    run("bash", osp.join(REPO, "scripts/mmrlpp/cross_datasets_test.sh"), "imagenetv2", *tiny)
    run("bash", osp.join(REPO, "scripts/mmrl/few_shot.sh"), "oxford_pets", *tiny)
    run(sys.executable, osp.join(REPO, "parse_test_res.py"), "out/few_shot/oxford_pets/shots_2/MMRL/vit_b16_few_shot")
    report = run("bash", "-c", f'cd {REPO} && {sys.executable} -m tools.report "{tmp_path / "out"}"')
    assert not imported.exists(), imported.read_text()  # ours were used throughout
    assert "Few-shot: OxfordPets" in report and "Domain generalisation" in report
    standin = run(sys.executable, "-c", "import datasets, clip; print(datasets.__file__, clip.__file__)")
    assert standin.split() == [str(standins / "datasets/__init__.py"), str(standins / "clip/__init__.py")]

    out = tmp_path / "out"
    runs = {
        "base2new/train_base/dtd/shots_16/MMRL/vit_b16": 2,  # 4 classes: 2 base, 2 new, 2 test images each
        "base2new/test_new/dtd/shots_16/MMRL/vit_b16": 2,
        "base2new/train_base/imagenet/shots_16/MMRLpp/vit_b16_cross_datasets": 4,
        "base2new/test_new/imagenetv2/shots_16/MMRLpp/vit_b16_cross_datasets": 4,
        "few_shot/oxford_pets/shots_2/MMRL/vit_b16_few_shot": 4,
    }
    for folder, n_classes in runs.items():
        log = (out / folder / "seed1" / "log.txt").read_text()
        assert "=> result" in log and f"* total: {2 * n_classes}" in log, folder
        assert "* accuracy: " in (out / folder / "parse.txt").read_text(), folder
    checkpoint = out / "base2new/train_base/dtd/shots_16/MMRL/vit_b16/seed1/MultiModalRepresentationLearner"
    assert (checkpoint / "model.pth.tar-1").is_file()
    test_log = out / "base2new/test_new/dtd/shots_16/MMRL/vit_b16/seed1/log.txt"
    assert "Loaded weights to MultiModalRepresentationLearner" in test_log.read_text()
    shutil.rmtree(out)


def test_multi_source_dg_holds_out_each_domain_in_turn_and_reports_their_average(stub):
    """MetaPrompt's leave-one-domain-out protocol (its scripts/Meta/dg.sh): with no method, Meta_DG; one run per
    held-out domain (DATASET.ID in the loader's order), shot count and seed; the table averages the domains."""
    commands, out, _ = stub("multi_source_dg.sh", DATASETS="pacs", SHOTS="1")
    # PACS's domains in the order of Dassl's and MetaPrompt's PACS loaders (DATASET.ID indexes it).
    domains = ["art_painting", "cartoon", "photo", "sketch"]
    common = "--trainer Meta_DG --dataset-config-file R/configs/datasets/pacs.yaml"
    common += " --config-file R/configs/trainers/Meta_DG/vit_b16.yaml"
    assert commands == [
        train(f"--seed {seed}", common, f"--output-dir O/dg/{domain}/pacs/shots_1/Meta_DG/vit_b16/seed{seed}",
              f"DATASET.NUM_SHOTS 1 DATASET.ID {i}")
        for i, domain in enumerate(domains) for seed in (1, 2)
    ]  # fmt: skip
    table = out[out.index("Multi-source domain generalisation: PACS") :].split("\n\n")[0]
    header, row = table.splitlines()[1:3]
    assert header.split() == ["Method", "Shots", *domains, "Average"]
    # Each domain: seeds 1 and 2 give 51 and 52 (the stand-in's 50 + seed): 51.50 ± 0.50; so is their average.
    assert row.split() == ["Meta_DG", "1", *["51.50", "±", "0.50"] * 5], row
    # Five shots by default (MetaPrompt's 1 and 5), and a dataset without domains is one error line.
    _, out, _ = stub("multi_source_dg.sh", DATASETS="vlcs", SEEDS="1", DRY_RUN="1")
    assert [line.split("DATASET.NUM_SHOTS ")[1] for line in out.splitlines() if "train.py" in line] == [
        f"{k} DATASET.ID {i}" for k in (1, 5) for i in range(4)
    ]
    _, _, err = stub("multi_source_dg.sh", DATASETS="dtd", ok=False)
    assert err.strip().splitlines() == [
        "error: configs/datasets/dtd.yaml: DescribableTextures has no domains to hold out; the dg protocol runs "
        "on pacs, vlcs, office_home, domainnet"
    ]
