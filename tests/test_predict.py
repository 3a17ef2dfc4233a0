"""tools.predict / tools.run_model.load_run: a run folder alone gives the model its evaluation scored.

For every registered trainer (tiny random CLIP, synthetic DTD, the method's base-to-novel config): train one
epoch, write the run record as train.py does, evaluate; then ``load_run`` on the folder must give, image by
image, the probabilities of the trainer's own ``model_inference`` and the per-class counts of its
``metrics.json``. With ``--classnames`` (the novel classes), the scores of an evaluation of the novel
classes from the same checkpoint (the base-to-novel protocol's test_new), for the methods that can score
unseen classes; the others refuse in one line.
"""
from __future__ import annotations

import csv
import json
import os
import os.path as osp
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from test_trainer_contract import REPO, TRAINERS, base2new_config, build, tiny_opts

from dassl.config import get_cfg_default
from dassl.engine.run_record import CLASSNAMES_FILE, CONFIG_FILE, write_run_record
from datasets.synthetic import make_dataset
from tools import predict
from tools.run_model import RunError, load_run
from trainers.config import clip_trainers, extend_cfg


@pytest.fixture(scope="module")
def setup(tiny_clip, tmp_path_factory) -> tuple[str, str]:
    root = tmp_path_factory.mktemp("predict")
    make_dataset("dtd", str(root / "data"), n_classes=4, n_train=4, n_val=2, n_test=3)
    return tiny_clip, str(root / "data")


@torch.no_grad()
def evaluation(trainer) -> tuple[list[str], torch.Tensor, torch.Tensor]:
    """(image paths, probabilities, labels) of the trainer's test set, scored as its test() scores them."""
    trainer.set_model_mode("eval")
    paths, probs, labels = [], [], []
    for batch in trainer.test_loader:
        image, label = trainer.parse_batch_test(batch)
        probs.append(trainer.model_inference(image).float().softmax(dim=-1))
        paths += list(batch["impath"])
        labels.append(label)
    return paths, torch.cat(probs), torch.cat(labels)


def trained_run(name, setup, run) -> object:
    t = build(name, setup, str(run))
    if t.TRAINABLE:
        t.train()  # saves epoch 1 and tests the final model (metrics.json)
    else:
        t.test()
    write_run_record(str(run), t.cfg, t.dm.dataset.classnames)  # what train.py writes beside log.txt
    return t


@pytest.mark.parametrize("name", TRAINERS)
def test_load_run_predicts_what_the_run_evaluated(name, setup, tmp_path):
    run = tmp_path / "run"
    t = trained_run(name, setup, run)
    paths, expected, labels = evaluation(t)

    model = load_run(str(run), device="cpu")
    assert model.classnames == list(t.dm.dataset.classnames) and len(model.classnames) == 2  # the base classes
    rows, failed = predict.predict_files(model, paths, topk=2, batch_size=4, workers=0, show=False)
    assert not failed and [r[0] for r in rows] == paths
    got = torch.tensor([[float(r[2]), float(r[4])] for r in rows])  # best first
    torch.testing.assert_close(got, expected.sort(dim=-1, descending=True).values, atol=2e-6, rtol=0)
    top1 = [model.classnames.index(r[1]) for r in rows]
    assert top1 == expected.argmax(dim=-1).tolist()

    # The per-class counts the run wrote, from the predicted top-1 of the same images.
    per_class = json.loads((run / "metrics.json").read_text())["per_class"]
    for entry in per_class:
        mine = [p == entry["label"] for p, y in zip(top1, labels.tolist()) if y == entry["label"]]
        assert (len(mine), sum(mine)) == (entry["total"], entry["correct"]), (name, entry)

    # PIL images through the run's test transform give the same probabilities as the loader's tensors.
    with Image.open(paths[0]) as image:
        torch.testing.assert_close(model([image]), expected[:1], atol=2e-6, rtol=0)


@pytest.mark.parametrize("name", TRAINERS)
def test_new_class_names_are_scored_as_the_novel_classes_or_refused(name, setup, tmp_path):
    run = tmp_path / "run"
    trained_run(name, setup, run)
    novel = build(name, setup, str(tmp_path / "test_new"), ["DATASET.SUBSAMPLE_CLASSES", "new"])
    names = list(novel.dm.dataset.classnames)
    assert set(names).isdisjoint(open(run / CLASSNAMES_FILE).read().split("\n"))
    if not clip_trainers()[name].scores_new_classes(novel.cfg):
        with pytest.raises(RunError, match="cannot score classes it was not trained on"):
            load_run(str(run), classnames=names)
        return
    if novel.TRAINABLE:
        novel.load_model(str(run), epoch=1)
    paths, expected, _ = evaluation(novel)
    model = load_run(str(run), classnames=names, device="cpu")
    rows, _ = predict.predict_files(model, paths, topk=1, batch_size=4, workers=0, show=False)
    assert [names.index(r[1]) for r in rows] == expected.argmax(dim=-1).tolist()
    torch.testing.assert_close(torch.tensor([float(r[2]) for r in rows]), expected.max(dim=-1).values,
                               atol=2e-6, rtol=0)  # fmt: skip


def test_class_specific_contexts_cannot_score_new_classes(setup):
    config_file, _ = base2new_config("CoOp")
    cfg = get_cfg_default()
    extend_cfg(cfg)
    cfg.merge_from_file(config_file)
    cls = clip_trainers()["CoOp"]
    assert cls.scores_new_classes(cfg)
    cfg.merge_from_list(["TRAINER.COOP.CSC", "True", "TRAINER.COOP.CTX_INIT", ""])
    assert not cls.scores_new_classes(cfg)


def run_cli(*args, cwd):
    env = {**os.environ, "PYTHONPATH": REPO}
    return subprocess.run([sys.executable, "-m", "tools.predict", *args], capture_output=True, text=True, cwd=cwd,
                          env=env)  # fmt: skip


def test_train_py_writes_the_record_and_the_command_line_predicts(setup, tmp_path):
    """The whole path: train.py's run folder, then python -m tools.predict on files, a folder and a glob."""
    config_file, opts = base2new_config("CoOp")
    run = tmp_path / "run"
    cmd = [sys.executable, osp.join(REPO, "train.py"), "--seed", "1", "--trainer", "CoOp",
           "--dataset-config-file", osp.join(REPO, "configs", "datasets", "dtd.yaml"), "--config-file", config_file,
           *opts, *tiny_opts(setup, str(run))]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (run / CONFIG_FILE).is_file() and len((run / CLASSNAMES_FILE).read_text().splitlines()) == 2

    images = sorted(str(p) for p in Path(setup[1]).rglob("*.jpg"))
    assert len(images) == 4 * 9  # 4 classes of 4 + 2 + 3 images
    folder = osp.dirname(images[0])
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    out = tmp_path / "preds.csv"
    res = run_cli("--model-dir", str(run), images[-1], folder, osp.join(folder, "*.jpg"), str(tmp_path / "broken.jpg"),
                  "--topk", "5", "--out", str(out), "--workers", "0", cwd=tmp_path)  # fmt: skip
    assert res.returncode == 1, res.stderr  # one unreadable image: the others are written, the exit says so
    with open(out) as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["path", "class_1", "prob_1", "class_2", "prob_2"]  # --topk 5 of 2 classes
    assert [r[0] for r in rows[1:]] == [images[-1]] + [p for p in images if osp.dirname(p) == folder]  # once each
    assert all(abs(float(r[2]) + float(r[4]) - 1) < 1e-5 and float(r[2]) >= float(r[4]) for r in rows[1:])
    printed = [line for line in res.stdout.splitlines() if line.strip()]
    assert len(printed) == len(rows) - 1 and printed[0].startswith(images[-1] + "  ")
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "broken.jpg" in errors[0]


@pytest.fixture(scope="module")
def probe_run(setup, tmp_path_factory) -> Path:
    """A linear probe's run folder: a method that cannot score new classes."""
    run = tmp_path_factory.mktemp("probe") / "run"
    trained_run("LinearProbeCLIP", setup, run)
    return run


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model-dir", "{run}", "{tmp}/nothing*.png"], "nothing*.png: no such file, folder or matching glob"),
        (["--model-dir", "{tmp}", "{img}"], "config.yaml: no such file"),
        (["--model-dir", "{tmp}/nope", "{img}"], "nope: no such directory"),
        (["--model-dir", "{run}", "{img}", "--classnames", "{tmp}/names.txt"], "cannot score classes"),
        (["--model-dir", "{run}", "{img}", "--classnames", "{tmp}/missing.txt"], "missing.txt: no such file"),
        (["--model-dir", "{run}", "{img}", "--topk", "0"], "--topk and --batch-size must be at least 1"),
    ],
)
def test_user_errors(args, message, probe_run, tmp_path):
    (tmp_path / "names.txt").write_text("cat\ndog\n")
    img = tmp_path / "a.png"
    Image.new("RGB", (40, 40)).save(img)
    with pytest.raises(RunError, match=message.replace("*", r"\*")):
        predict.main([a.format(run=probe_run, tmp=tmp_path, img=img) for a in args])


def test_a_user_error_is_one_line_on_the_command_line(probe_run, tmp_path):
    res = run_cli("--model-dir", str(probe_run), str(tmp_path / "none.png"), cwd=tmp_path)
    expected = f"error: {tmp_path / 'none.png'}: no such file, folder or matching glob\n"
    assert res.returncode == 1 and res.stderr == expected
