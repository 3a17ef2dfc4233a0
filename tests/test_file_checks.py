"""Every row of docs/reliability.md's table of checked user files, made to happen.

The table is the specification: each row's id names a case below, which breaks that file the way the row
says and returns the line the user sees; the line must match the row's message (``<...>`` = any text)
and name the broken file. A row without a case, or a case without a row, fails. Cases run the real entry
points in process (``train.setup_cfg``, the dataset classes, a built trainer, the report, the parsers);
the errors must be ``UserError``s, which train.py, the report and the scripts print as one ``error:`` line
(tests/test_user_errors.py checks that end to end).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import os.path as osp
import pickle
import random
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
import torch

import train
from dassl.data.data_manager import build_data_loader
from dassl.data.datasets import build_dataset
from dassl.engine import build_trainer
from dassl.engine.preflight import check_input_files
from dassl.engine.resume_state import rng_state
from dassl.errors import UserError
from dassl.utils import save_checkpoint
from datasets.synthetic import make_dataset
from datasets.utils import read_split
from trainers.base import load_clip

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
DOC = osp.join(REPO, "docs", "reliability.md")
ROW = re.compile(r"^\| `([a-z0-9-]+)` \|.*\| `(.+)` \|$")


def table() -> dict[str, str]:
    """id -> message template, from the table in docs/reliability.md."""
    with open(DOC) as f:
        return {m.group(1): m.group(2) for line in f if (m := ROW.match(line.rstrip("\n")))}


def pattern(template: str) -> str:
    return ".+?".join(re.escape(part) for part in re.split(r"<[^>]+>", template))


CASES: dict[str, Callable[[Env], str]] = {}


def case(row: str) -> Callable[[Callable[[Env], str]], Callable[[Env], str]]:
    def register(fn: Callable[[Env], str]) -> Callable[[Env], str]:
        CASES[row] = fn
        return fn

    return register


@dataclass
class Env:
    tmp: str  # a fresh folder per case
    tiny: str  # tiny CLIP weights
    trainer: object  # a CoOp trainer on the tiny CLIP (shared: cases only load into it; the base's checks)
    capsys: pytest.CaptureFixture

    def path(self, name: str) -> str:
        return osp.join(self.tmp, name)


@pytest.fixture(scope="module")
def shared(tiny_clip, tmp_path_factory) -> tuple[str, object]:
    root = tmp_path_factory.mktemp("checks")
    make_dataset("dtd", str(root / "data"), n_classes=2, n_train=2, n_val=1, n_test=1)
    cfg = train.setup_cfg(args(str(root / "data"), tiny_clip, str(root / "out"), trainer="CoOp"))
    with contextlib.redirect_stdout(io.StringIO()):
        trainer = build_trainer(cfg)
    return tiny_clip, trainer


@pytest.fixture
def env(shared, tmp_path, capsys) -> Env:
    return Env(str(tmp_path), shared[0], shared[1], capsys)


def args(root: str, tiny: str, out: str, *opts: str, dataset: str = "dtd", config: str = "",
         trainer: str = "MMRL"):  # fmt: skip
    extra = ["TRAINER.MMRL.REP_DIM", "16"] if trainer == "MMRL" else []
    return train.build_parser().parse_args([
        "--root", root, "--seed", "1", "--trainer", trainer, "--output-dir", out,
        "--dataset-config-file", osp.join(REPO, "configs", "datasets", f"{dataset}.yaml"),
        "--config-file", config or osp.join(REPO, "configs", "trainers", trainer, "vit_b16.yaml"),
        "MODEL.BACKBONE.PATH", tiny, "INPUT.SIZE", "(32, 32)", "DATALOADER.NUM_WORKERS", "0", *extra, *opts,
    ])  # fmt: skip


def error(fn: Callable[..., object], *a: object) -> str:
    """The line train.py (and the report, the scripts) prints for the error ``fn(*a)`` raises."""
    with pytest.raises(UserError) as info, contextlib.redirect_stdout(io.StringIO()):
        fn(*a)
    return f"error: {train.error_line(info.value)}"


def dataset(env: Env, name: str, shots: int = -1, **make: object) -> tuple[str, Callable[[], object]]:
    """A synthetic dataset in the case's folder, and a builder of it as train.py builds it (seeded)."""
    root = env.path("data")
    folder = make_dataset(name, root, **{"n_classes": 2, "n_train": 2, "n_val": 1, "n_test": 1, **make})
    cfg = train.setup_cfg(args(root, env.tiny, env.path("out"), "DATASET.NUM_SHOTS", str(shots), dataset=name))

    def build() -> object:
        random.seed(1)
        return build_dataset(cfg)

    return folder, build


# ---- YAML configs: train.setup_cfg, as train.py reads --config-file / --dataset-config-file.


def config_error(env: Env, name: str, content: bytes) -> str:
    path = env.path(name)
    with open(path, "wb") as f:
        f.write(content)
    line = error(train.setup_cfg, args(env.path("d"), env.tiny, env.path("o"), config=path))
    assert path in line
    return line


@case("config-missing")
def _(env: Env) -> str:
    line = error(train.setup_cfg, args("d", env.tiny, "o", config=env.path("nope.yaml")))
    assert env.path("nope.yaml") in line
    return line


@case("config-not-yaml")
def _(env: Env) -> str:
    return config_error(env, "cfg.py", b"import os\nos.remove('x')\n")


@case("config-not-text")
def _(env: Env) -> str:
    return config_error(env, "cfg.yaml", b"OPTIM:\n  LR: 0.1\n\xff\xfe\n")


@case("config-syntax")
def _(env: Env) -> str:
    line = config_error(env, "cfg.yaml", b"OPTIM:\n  LR: 0.1\n  MAX_EPOCH: [1, 2\nSEED: 3\n")
    assert "cfg.yaml:3: " in line and line.endswith("fix line 3")  # the unclosed bracket's line
    return line


@case("config-empty")
def _(env: Env) -> str:
    return config_error(env, "cfg.yaml", b"# nothing but a comment\n")


@case("config-not-mapping")
def _(env: Env) -> str:
    return config_error(env, "cfg.yaml", b"- OPTIM.LR\n- 0.1\n")


@case("config-unknown-key")
def _(env: Env) -> str:
    line = config_error(env, "cfg.yaml", b"OPTIM:\n  LR: 0.1\n  MAX_EPOHC: 5\n")
    assert line.endswith("cfg.yaml:3: unknown config key OPTIM.MAX_EPOHC: did you mean OPTIM.MAX_EPOCH?")
    return line


@case("config-wrong-type")
def _(env: Env) -> str:
    line = config_error(env, "cfg.yaml", b"SEED: 2\nOPTIM:\n  MAX_EPOCH: five\n")
    assert "cfg.yaml:3: OPTIM.MAX_EPOCH takes an int like " in line and line.endswith("got 'five': fix line 3")
    return line


# ---- A run folder's record, read back by tools.predict / tools.inspect / load_run.


@case("run-config")
def _(env: Env) -> str:
    from tools.run_model import run_config

    with open(env.path("config.yaml"), "w") as f:
        f.write("DATASET:\n  NAME: DescribableTextures\n  NUM_SHOTZ: 16\n")
    line = error(run_config, env.tmp)
    assert line.startswith(f"error: {env.path('config.yaml')}:3: unknown config key DATASET.NUM_SHOTZ: ")
    return line


@case("run-classnames")
def _(env: Env) -> str:
    from dassl.engine.run_record import read_classnames

    with open(env.path("classnames.txt"), "wb") as f:
        f.write("banded\nblotchy\n".encode("utf-16"))
    line = error(read_classnames, env.path("classnames.txt"))
    assert env.path("classnames.txt") in line
    return line


# ---- protocols.yaml: read by tools/protocols (the scripts, the grid, the report's method names).


def protocols_error(env: Env, text: str) -> str:
    from tools.protocols.protocols_file import read_protocols

    path = env.path("protocols.yaml")
    with open(path, "w") as f:
        f.write(text)
    line = error(read_protocols, path)
    assert path in line
    return line


@case("protocols-syntax")
def _(env: Env) -> str:
    line = protocols_error(env, "name: X\nbase2new: {config: vit_b16\nfew_shot: {config: a}\n")
    assert "protocols.yaml:2: " in line
    return line


@case("protocols-schema")
def _(env: Env) -> str:
    line = protocols_error(env, "name: X\nfew_shot: {config: a}\nbase2new: vit_b16\n")
    assert "protocols.yaml:3: base2new is a str ('vit_b16')" in line
    return line


# ---- Dataset files.


@case("split-json")
def _(env: Env) -> str:
    folder, build = dataset(env, "dtd")
    split = osp.join(folder, "split_zhou_DescribableTextures.json")
    text = open(split).read()
    with open(split, "w") as f:
        f.write(text[: len(text) // 2])  # cut short, as by a full disk
    line = error(build)
    assert split in line and "ends early (truncated?)" in line
    return line


@case("split-schema")
def _(env: Env) -> str:
    folder, build = dataset(env, "dtd")
    split = osp.join(folder, "split_zhou_DescribableTextures.json")
    data = json.load(open(split))
    data["val"][0] = [data["val"][0][0], "one", data["val"][0][2]]  # a label that is not a number
    json.dump(data, open(split, "w"))
    line = error(build)
    assert split in line and '"val" item 0 is ' in line
    return line


@case("split-rebuilt")
def _(env: Env) -> str:
    folder, build = dataset(env, "dtd", n_train=3, n_val=1, n_test=2, with_split=False)
    with contextlib.redirect_stdout(io.StringIO()):
        build()  # rebuilds the split file and marks it
    split = osp.join(folder, "split_zhou_DescribableTextures.json")
    assert osp.isfile(split + ".rebuilt")
    with open(split, "w") as f:
        f.write('{"train": [}')
    line = error(build)
    assert split in line and line.endswith("split_zhou_DescribableTextures.json.rebuilt: the next run rebuilds it")
    return line


@contextlib.contextmanager
def as_nobody() -> Iterator[None]:
    """Run as an unprivileged user where the suite runs as root (root reads any file)."""
    if os.geteuid() != 0:
        yield
        return
    os.seteuid(65534)
    try:
        yield
    finally:
        os.seteuid(0)


@case("unreadable")
def _(env: Env) -> str:
    folder, _ = dataset(env, "dtd")
    split = osp.join(folder, "split_zhou_DescribableTextures.json")
    os.chmod(split, 0)
    with as_nobody():
        line = error(read_split, split, folder)
    assert split in line
    return line


def variant_with_classnames(env: Env, content: str | None) -> tuple[str, str]:
    folder, build = dataset(env, "imagenetv2", n_test=1)
    path = osp.join(folder, "classnames.txt")
    if content is None:
        os.remove(path)
    else:
        with open(path, "w") as f:
            f.write(content)
    return path, error(build)


@case("classnames-missing")
def _(env: Env) -> str:
    path, line = variant_with_classnames(env, None)
    assert path in line
    return line


@case("classnames-format")
def _(env: Env) -> str:
    path, line = variant_with_classnames(env, "n01440764 tench\nn01443537\nn01484850 great white shark\n")
    assert f"{path}:2: line 2 is 'n01443537'" in line
    return line


@case("classnames-duplicate")
def _(env: Env) -> str:
    path, line = variant_with_classnames(env, "n01440764 tench\n\nn01443537 goldfish\nn01440764 tinca\n")
    assert f"{path}:4: folder n01440764 is listed twice (lines 1 and 4)" in line
    return line


@case("classnames-json")
def _(env: Env) -> str:
    folder, build = dataset(env, "oxford_flowers", n_train=3, n_val=1, n_test=2, with_split=False)
    path = osp.join(folder, "cat_to_name.json")
    with open(path, "w") as f:
        json.dump(["pink primrose", "hard-leaved pocket orchid"], f)
    line = error(build)
    assert path in line
    return line


def rebuilt_cache(env: Env, damage: Callable[[str], None], name: str = "dtd") -> str:
    """Build (writing the cache), damage the cache, build again: the rebuilt data equal the first."""
    folder, build = dataset(env, name, shots=2 if name == "dtd" else -1, n_train=3)
    with contextlib.redirect_stdout(io.StringIO()):
        first = build()
    cache = osp.join(folder, "split_fewshot", "shot_2-seed_1.pkl") if name == "dtd" else osp.join(
        folder, "preprocessed.pkl")
    assert osp.isfile(cache)
    damage(cache)
    env.capsys.readouterr()
    again = build()
    lines = [ln for ln in env.capsys.readouterr().out.splitlines() if ln.startswith("warning:")]
    assert len(lines) == 1 and cache in lines[0]
    assert [(d.impath, d.label) for d in again.train_x] == [(d.impath, d.label) for d in first.train_x]
    with contextlib.redirect_stdout(io.StringIO()):
        build()  # the rebuilt cache reads back without a warning
    assert "warning" not in env.capsys.readouterr().out
    return lines[0]


def truncate(path: str) -> None:
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])


@case("fewshot-corrupt")
def _(env: Env) -> str:
    return rebuilt_cache(env, truncate)


class Payload:
    """A pickle that would run a shell command if anything unpickled it for real."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))


@case("fewshot-foreign")
def _(env: Env) -> str:
    line = rebuilt_cache(env, lambda p: pickle.dump({"train": Payload(env.path("ran"))}, open(p, "wb")))
    assert not osp.exists(env.path("ran")) and "system, not data records" in line
    return line


@case("fewshot-schema")
def _(env: Env) -> str:
    return rebuilt_cache(env, lambda p: pickle.dump({"val": []}, open(p, "wb")))


@case("preprocessed-corrupt")
def _(env: Env) -> str:
    return rebuilt_cache(env, truncate, name="imagenet")


@case("image-missing")
def _(env: Env) -> str:
    folder, build = dataset(env, "dtd")
    image = sorted(os.path.join(d, f) for d, _, fs in os.walk(osp.join(folder, "images")) for f in fs)[0]
    os.remove(image)
    line = error(build)
    assert image in line and "\n" not in line
    return line


@case("image-corrupt")
def _(env: Env) -> str:
    folder, build = dataset(env, "dtd")
    with contextlib.redirect_stdout(io.StringIO()):
        data = build()
    image = data.test[0].impath
    open(image, "wb").write(b"not an image")
    cfg = train.setup_cfg(args(env.path("data"), env.tiny, env.path("out"), "DATALOADER.NUM_WORKERS", "1"))
    loader = build_data_loader(cfg, data_source=data.test[:1], batch_size=1, tfm=None, is_train=False)
    batches = iter(loader)
    with pytest.raises(UserError) as info:  # raised in the worker, re-raised here
        next(batches)
    del batches  # stops the worker now, not when the next test collects it
    line = f"error: {train.error_line(info.value)}"
    assert image in line and "Traceback" not in line
    return line


# ---- Weights named in the config: checked before the data and the models are built.


def preflight(env: Env, *opts: str) -> str:
    cfg = train.setup_cfg(args(env.path("data"), env.tiny, env.path("out"), *opts))
    return error(check_input_files, cfg)


@case("clip-missing")
def _(env: Env) -> str:
    return preflight(env, "MODEL.BACKBONE.PATH", env.path("ViT-B-16.pt"))


@case("clip-truncated")
def _(env: Env) -> str:
    cut = env.path("cut.pt")
    open(cut, "wb").write(open(env.tiny, "rb").read()[:5000])
    line = preflight(env, "MODEL.BACKBONE.PATH", cut)
    assert cut in line
    return line


@case("clip-not-torch")
def _(env: Env) -> str:
    html = env.path("ViT-B-16.pt")
    open(html, "w").write("<html>Quota exceeded</html>")  # what a failed download leaves
    return preflight(env, "MODEL.BACKBONE.PATH", html)


@case("clip-not-clip")
def _(env: Env) -> str:
    learner = env.path("learner.pt")
    torch.save({"state_dict": {"weight": torch.zeros(2)}}, learner)
    cfg = train.setup_cfg(args(env.path("data"), env.tiny, env.path("out"), "MODEL.BACKBONE.PATH", learner))
    check_input_files(cfg)  # a fine PyTorch file: only building CLIP from it tells
    line = error(load_clip, cfg)
    assert learner in line
    return line


@case("init-weights-missing")
def _(env: Env) -> str:
    return preflight(env, "MODEL.INIT_WEIGHTS", env.path("released.pth"))


@case("init-weights-truncated")
def _(env: Env) -> str:
    path = env.path("released.pth")
    torch.save({"w": torch.zeros(100)}, path)
    truncate(path)
    return preflight(env, "MODEL.INIT_WEIGHTS", path)


@case("init-weights-no-weights")
def _(env: Env) -> str:
    path = env.path("released.pth")
    torch.save([1, 2, 3], path)
    learner = env.trainer.model.learner
    return error(env.trainer.init_learner, learner, path)


@case("init-weights-mismatch")
def _(env: Env) -> str:
    path = env.path("released.pth")
    state = env.trainer.model.learner.state_dict()
    torch.save({k: v for i, (k, v) in enumerate(state.items()) if i}, path)  # one tensor short
    cfg = env.trainer.cfg
    cfg.defrost()
    cfg.MODEL.INIT_WEIGHTS = path
    try:
        return error(env.trainer.load_init_weights)
    finally:
        cfg.MODEL.INIT_WEIGHTS = ""
        cfg.freeze()


# ---- Checkpoints of a run: --model-dir, resume.


def model_dir_with(env: Env, write: Callable[[str], None] | None) -> str:
    folder = osp.join(env.path("run"), env.trainer.LEARNER_NAME)
    os.makedirs(folder)
    if write is not None:
        write(osp.join(folder, "model-best.pth.tar"))
    return folder


@case("checkpoint-none")
def _(env: Env) -> str:
    folder = model_dir_with(env, None)
    line = error(env.trainer.load_model, env.path("run"))
    assert folder in line
    return line


@case("checkpoint-corrupt")
def _(env: Env) -> str:
    model_dir_with(env, lambda p: open(p, "wb").write(b"PK\x03\x04 cut short"))
    return error(env.trainer.load_model, env.path("run"))


@case("checkpoint-foreign")
def _(env: Env) -> str:
    model_dir_with(env, lambda p: torch.save({"state_dict": {}, "epoch": 1, "extra": Payload(env.path("ran"))}, p))
    line = error(env.trainer.load_model, env.path("run"))
    assert not osp.exists(env.path("ran"))
    return line


@case("checkpoint-schema")
def _(env: Env) -> str:
    model_dir_with(env, lambda p: torch.save(env.trainer.model.learner.state_dict(), p))  # a bare state dict
    return error(env.trainer.load_model, env.path("run"))


@case("checkpoint-mismatch")
def _(env: Env) -> str:
    model_dir_with(env, lambda p: torch.save({"state_dict": {"context": torch.zeros(4, 8)}, "epoch": 3}, p))
    return error(env.trainer.load_model, env.path("run"))


@case("checkpoint-pointer")
def _(env: Env) -> str:
    learner = env.trainer.model.learner
    folder = osp.join(env.path("run"), env.trainer.LEARNER_NAME)
    with contextlib.redirect_stdout(io.StringIO()):
        save_checkpoint({"state_dict": learner.state_dict(), "epoch": 2}, folder)
    os.remove(osp.join(folder, "model.pth.tar-2"))  # the pointer names a file that is gone
    line = error(env.trainer.resume_model_if_exist, env.path("run"))
    assert osp.join(folder, "checkpoint") in line and osp.join(folder, "model.pth.tar-2") in line
    return line


@case("resume-corrupt")
def _(env: Env) -> str:
    os.makedirs(env.path("out"))
    open(env.path("out/resume.pth.tar"), "wb").write(b"\x80\x02" + b"\x00" * 100)
    return error(env.trainer.resume_state_if_exist, env.path("out"))


@case("resume-schema")
def _(env: Env) -> str:
    os.makedirs(env.path("out"))
    torch.save({"state_dict": {}, "epoch": 3}, env.path("out/resume.pth.tar"))  # a model checkpoint, renamed
    return error(env.trainer.resume_state_if_exist, env.path("out"))


@case("resume-schedule")
def _(env: Env) -> str:
    t = env.trainer
    os.makedirs(env.path("out"))
    models = {}
    for name in t.get_model_names():
        schedule = t._scheds[name].state_dict()
        inner = schedule["successor"] if "successor" in schedule else schedule
        inner["T_max"] += 5  # written by a run with 5 more epochs
        models[name] = {"state_dict": t._models[name].state_dict(), "optimizer": t._optims[name].state_dict(),
                        "scheduler": schedule}  # fmt: skip
    state = {"epoch": 1, "models": models, "best_result": 0.0, "extra": {}, "rng": rng_state()}
    torch.save(state, env.path("out/resume.pth.tar"))
    line = error(t.resume_state_if_exist, env.path("out"))
    assert re.search(r"\((successor\.)?T_max \d+\.0 -> \d+\.0\)", line)
    return line


@case("resume-missing")
def _(env: Env) -> str:
    line = preflight(env, "RESUME", env.path("gone"))
    assert env.path("gone") in line
    return line


@case("resume-empty")
def _(env: Env) -> str:
    os.makedirs(env.path("prev/tensorboard"))
    line = preflight(env, "RESUME", env.path("prev"))
    assert env.path("prev") in line
    return line


# ---- Results read by the report and parse_test_res.py.


def report_error(env: Env, metrics: str) -> str:
    from tools import report

    run = env.path("out/base2new/train_base/dtd/shots_16/MMRL/vit_b16/seed1")
    os.makedirs(run)
    with open(osp.join(run, "metrics.json"), "w") as f:
        f.write(metrics)
    with pytest.raises(SystemExit) as info, contextlib.redirect_stdout(io.StringIO()):
        report.main([env.path("out")])
    line = str(info.value.code)
    assert osp.join(run, "metrics.json") in line
    return line


@case("metrics-json")
def _(env: Env) -> str:
    return report_error(env, '{"schema": 1, "accuracy": 81.5, "per_class": [')


@case("metrics-schema")
def _(env: Env) -> str:
    line = report_error(env, '{"schema": 1, "accuracy": "81.5%", "phase": {"split": "test"}}')
    assert "accuracy is '81.5%', expected a number" in line
    return line


@case("log-number")
def _(env: Env) -> str:
    import parse_test_res

    seed = env.path("runs/seed1")
    os.makedirs(seed)
    with open(osp.join(seed, "log.txt"), "w") as f:
        f.write("epoch [1/1]\n=> result\n* total: 10\n* accuracy: 8.-%\n")
    line = error(parse_test_res.main, [env.path("runs")])
    assert f"{osp.join(seed, 'log.txt')}:4: line 4 has '8.-'" in line
    return line


# ---- The table and the cases.


def test_every_row_has_a_case_and_every_case_a_row():
    rows = table()
    assert len(rows) >= 40
    assert sorted(set(rows) - set(CASES)) == [] and sorted(set(CASES) - set(rows)) == []


@pytest.mark.parametrize("row", sorted(table()))
def test_row(row: str, env: Env) -> None:
    line = CASES[row](env)
    template = table()[row]
    assert re.fullmatch(pattern(template), line), f"\n{line}\ndoes not match\n{template}"
