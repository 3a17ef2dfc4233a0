"""metrics.json: written by every engine evaluation, atomically, with the run's metadata."""
from __future__ import annotations

import hashlib
import json
import os
import os.path as osp
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

import dassl.evaluation.metrics_file as metrics_file
from dassl.config import get_cfg_default
from dassl.data.datasets import DATASET_REGISTRY, DatasetBase, Datum
from dassl.engine import TRAINER_REGISTRY, TrainerX, build_trainer
from dassl.evaluation import METRICS_FILE, ModelSelection, build_evaluator, read_metrics, run_metadata
from dassl.optim import build_lr_scheduler, build_optimizer

Y_TRUE = [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
Y_PRED = [0, 0, 1, 2, 1, 1, 0, 2, 2, 1]
MACRO_F1 = 100 * (4 / 7 + 4 / 7 + 4 / 6) / 3  # per class (tp, fp, fn): (2, 1, 2), (2, 2, 1), (2, 1, 1)


def tiny_cfg(out_dir):
    cfg = get_cfg_default()
    cfg.VERBOSE = False
    cfg.OUTPUT_DIR = str(out_dir)
    cfg.DATASET.NAME = "DescribableTextures"
    cfg.DATASET.NUM_SHOTS = 16
    cfg.DATASET.SUBSAMPLE_CLASSES = "base"  # added by trainers.config in real runs
    cfg.TASK = "B2N"
    cfg.TRAINER.NAME = "MMRL"
    cfg.SEED = 2
    return cfg


def evaluate(cfg, run_info=None):
    ev = build_evaluator(cfg, lab2cname={0: "banded", 1: "blotchy", 2: "braided"})
    scores = F.one_hot(torch.tensor(Y_PRED), 3).float()
    ev.process(scores[:5], torch.tensor(Y_TRUE[:5]))
    ev.process(scores[5:], torch.tensor(Y_TRUE[5:]))
    return ev.evaluate(run_info=run_info)


def test_evaluator_writes_every_field_and_keeps_the_printed_block(tmp_path, capsys):
    cfg = tiny_cfg(tmp_path)
    dataset = SimpleNamespace(split_rebuilt=True, split_source="rebuilt from the image folders")
    info = run_metadata(cfg, "test", ModelSelection("epoch", 5, "/runs/seed2"), dataset)
    evaluate(cfg, info)
    assert capsys.readouterr().out == (  # upstream's block, unchanged
        "=> result\n* total: 10\n* correct: 6\n* accuracy: 60.0%\n* error: 40.0%\n* macro_f1: 60.3%\n"
    )
    m = read_metrics(str(tmp_path / METRICS_FILE))
    assert m["schema"] == 1
    assert (m["accuracy"], m["error"], m["total"], m["correct"]) == (pytest.approx(60.0), pytest.approx(40.0), 10, 6)
    assert m["macro_f1"] == pytest.approx(MACRO_F1)
    assert m["per_class"] == [
        {"label": 0, "classname": "banded", "total": 4, "correct": 2, "acc": 50.0},
        {"label": 1, "classname": "blotchy", "total": 3, "correct": 2, "acc": pytest.approx(200 / 3)},
        {"label": 2, "classname": "braided", "total": 3, "correct": 2, "acc": pytest.approx(200 / 3)},
    ]
    assert m["perclass_accuracy"] == pytest.approx((50 + 400 / 3) / 3)
    assert (m["dataset"], m["method"], m["seed"], m["shots"]) == ("DescribableTextures", "MMRL", 2, 16)
    assert m["phase"] == {"subsample": "base", "task": "B2N", "split": "test"}
    assert m["model"] == {"selection": "epoch", "epoch": 5, "model_dir": "/runs/seed2"}
    assert m["config_sha256"] == hashlib.sha256(cfg.dump().encode()).hexdigest()
    assert m["split"] == {"rebuilt": True, "source": "rebuilt from the image folders"}
    assert m["output_dir"] == str(tmp_path) and m["written_at"].endswith("+00:00")


def test_published_split_and_initial_model_are_the_defaults(tmp_path):
    cfg = tiny_cfg(tmp_path)
    evaluate(cfg, run_metadata(cfg, "val", dataset=object()))
    m = read_metrics(str(tmp_path / METRICS_FILE))
    assert m["split"] == {"rebuilt": False, "source": None}
    assert m["model"] == {"selection": "initial", "epoch": None, "model_dir": None}
    assert m["phase"]["split"] == "val"


def test_no_run_info_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = tiny_cfg("out")
    evaluate(cfg)  # upstream's call: the printed block only
    assert os.listdir(tmp_path) == []


def test_the_write_is_atomic(tmp_path, monkeypatch):
    cfg = tiny_cfg(tmp_path)
    evaluate(cfg, run_metadata(cfg, "test"))
    before = (tmp_path / METRICS_FILE).read_text()

    def broken_dump(obj, f, **kwargs):
        f.write('{"accuracy": 1')  # half a file, then the process "dies"
        raise OSError("disk full")

    monkeypatch.setattr(metrics_file.json, "dump", broken_dump)
    cfg.SEED = 3
    with pytest.raises(OSError, match="disk full"):
        evaluate(cfg, run_metadata(cfg, "test"))
    assert (tmp_path / METRICS_FILE).read_text() == before  # the old file, whole
    assert os.listdir(tmp_path) == [METRICS_FILE]  # no temp file left behind


def test_model_selection_rejects_unknown_names():
    with pytest.raises(ValueError, match="selection"):
        ModelSelection("final")


# ---- Through the engine: training, best-val and --load-epoch evaluations.


@DATASET_REGISTRY.register()
class TinyMetricsColours(DatasetBase):
    """Three colours of 8x8 images; declares a rebuilt split like a dataset without its split file."""

    def __init__(self, cfg):
        def read(split):
            folder = osp.join(cfg.DATASET.ROOT, split)
            return [Datum(osp.join(folder, n), int(n[0]), 0, f"colour{n[0]}") for n in sorted(os.listdir(folder))]

        super().__init__(train_x=read("train"), val=read("val"), test=read("test"))
        self.split_rebuilt = True
        self.split_source = "tiny test split"


@TRAINER_REGISTRY.register()
class TinyMetricsMLP(TrainerX):
    def build_model(self):
        self.model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, self.num_classes))
        self.optim = build_optimizer(self.model, self.cfg.OPTIM)
        self.sched = build_lr_scheduler(self.optim, self.cfg.OPTIM)
        self.register_model("model", self.model, self.optim, self.sched)

    def forward_backward(self, batch):
        image, label, _ = self.parse_batch_train(batch)
        loss = F.cross_entropy(self.model(image), label)
        self.model_backward_and_update(loss)
        if self.batch_idx + 1 == self.num_batches:
            self.update_lr()
        return {"loss": loss.item()}


@TRAINER_REGISTRY.register()
class TinyMetricsOwnLoader(TinyMetricsMLP):
    """Overrides load_model without calling super(), as method trainers do."""

    def load_model(self, directory, epoch=None):
        name = f"model.pth.tar-{epoch}" if epoch is not None else "model-best.pth.tar"
        if not osp.isfile(osp.join(directory, "model", name)):
            name = "model.pth.tar-2"
        state = torch.load(osp.join(directory, "model", name), weights_only=True)["state_dict"]
        self.model.load_state_dict(state)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_metrics")
    rng = np.random.default_rng(0)
    for split in ("train", "val", "test"):
        os.makedirs(root / split)
        for label, colour in enumerate([(200, 40, 40), (40, 200, 40), (40, 40, 200)]):
            for i in range(4):
                pixels = np.clip(np.array(colour) + rng.normal(0, 30, (8, 8, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(root / split / f"{label}_{i}.png")
    return str(root)


def engine_cfg(data_root, out_dir, trainer="TinyMetricsMLP", **overrides):
    cfg = get_cfg_default()
    cfg.VERBOSE = False
    cfg.DATASET.NAME = "TinyMetricsColours"
    cfg.DATASET.ROOT = data_root
    cfg.OUTPUT_DIR = str(out_dir)
    cfg.TRAINER.NAME = trainer
    cfg.SEED = 1
    cfg.USE_CUDA = False
    cfg.INPUT.SIZE = (8, 8)
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.DATALOADER.TRAIN_X.BATCH_SIZE = 4
    cfg.OPTIM.NAME = "sgd"
    cfg.OPTIM.LR = 0.05
    cfg.OPTIM.MAX_EPOCH = 2
    cfg.TRAIN.CHECKPOINT_FREQ = 1
    for key, value in overrides.items():
        node, *path = cfg, *key.split(".")
        for p in path[:-1]:
            node = node[p]
        node[path[-1]] = value
    return cfg


def test_training_then_eval_only_runs_record_the_evaluated_model(data_root, tmp_path):
    torch.manual_seed(0)
    trained = build_trainer(engine_cfg(data_root, tmp_path / "train"))
    trained.train()
    m = read_metrics(str(tmp_path / "train" / METRICS_FILE))
    assert m["model"] == {"selection": "last", "epoch": 2, "model_dir": None}
    assert m["phase"]["split"] == "test" and m["split"] == {"rebuilt": True, "source": "tiny test split"}
    assert m["method"] == "TinyMetricsMLP"
    assert m["config_sha256"] == hashlib.sha256(trained.cfg.dump().encode()).hexdigest()

    model_dir = str(tmp_path / "train")
    for trainer_name in ("TinyMetricsMLP", "TinyMetricsOwnLoader"):
        out = tmp_path / trainer_name
        evaluator = build_trainer(engine_cfg(data_root, out, trainer_name))
        evaluator.test()  # nothing loaded yet
        assert read_metrics(str(out / METRICS_FILE))["model"]["selection"] == "initial"
        evaluator.load_model(model_dir, epoch=1)  # --load-epoch 1
        evaluator.test()
        assert read_metrics(str(out / METRICS_FILE))["model"] == {
            "selection": "epoch", "epoch": 1, "model_dir": osp.abspath(model_dir)
        }  # fmt: skip
    evaluator.load_model(model_dir)  # no best checkpoint: the last epoch saved
    evaluator.test()
    assert read_metrics(str(out / METRICS_FILE))["model"]["selection"] == "last"
    assert read_metrics(str(out / METRICS_FILE))["model"]["epoch"] == 2


def test_best_val_run_records_the_best_epoch(data_root, tmp_path):
    torch.manual_seed(0)
    trainer = build_trainer(engine_cfg(data_root, tmp_path, **{"TEST.FINAL_MODEL": "best_val", "OPTIM.MAX_EPOCH": 3}))
    trainer.train()
    best_epoch = torch.load(tmp_path / "model" / "model-best.pth.tar", weights_only=True)["epoch"]
    m = read_metrics(str(tmp_path / METRICS_FILE))
    assert m["phase"]["split"] == "test"  # the final test replaced the per-epoch val files
    assert m["model"] == {"selection": "best_val", "epoch": best_epoch, "model_dir": str(tmp_path)}
    assert json.loads((tmp_path / METRICS_FILE).read_text())["accuracy"] == m["accuracy"]
