"""tools.parity without the network: a stand-in "official" repository and a stand-in upstream Dassl, built
here, run through the real launcher and compared by the real comparison.

The stand-in train.py has the habits the launcher's shims exist for: it moves its model and batches with
``.cuda()``, casts a layer with ``Module.half()`` in its ``trainers/maple.py``, builds Dassl's constant-warmup
scheduler (which passes ``verbose`` to torch's scheduler), reads its CLIP through ``clip._download`` and
reloads its own pickled checkpoint with Dassl's ``load_checkpoint``. A probe script has the habits of the
methods with scenario shims (TCP, MetaPrompt, CLIP-Adapter, ProVP). "Ours" is a copy without those habits,
in which a difference can be planted: one loss, one per-class count, the result block left out.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from clip.model import RESNET
from tools.parity import cli, compare, repos, runner, worlds
from tools.parity.pins import seeded_run, train_steps
from tools.parity.scenario import Run, Scenario
from tools.parity.scenarios import SCENARIOS

DASSL = {
    "dassl/__init__.py": "",
    "dassl/utils/__init__.py": "",
    "dassl/utils/meters.py": """
        class MetricMeter:
            def __init__(self):
                self.values = {}

            def update(self, d):
                self.values = dict(d)

            def __str__(self):
                return " ".join(f"{k} {v:.4f} ({v:.4f})" for k, v in self.values.items())
    """,
    "dassl/utils/torchtools.py": """
        import torch

        def load_checkpoint(path):
            return torch.load(path, map_location="cpu")
    """,
    "dassl/optim/__init__.py": "",
    "dassl/optim/lr_scheduler.py": """
        from torch.optim.lr_scheduler import _LRScheduler

        class _BaseWarmupScheduler(_LRScheduler):
            def __init__(self, optimizer, successor, warmup_epoch, last_epoch=-1, verbose=False):
                self.successor = successor
                self.warmup_epoch = warmup_epoch
                super().__init__(optimizer, last_epoch, verbose)

            def step(self, epoch=None):
                if self.last_epoch >= self.warmup_epoch:
                    self.successor.step(epoch)
                    self._last_lr = self.successor.get_last_lr()
                else:
                    super().step(epoch)

        class ConstantWarmupScheduler(_BaseWarmupScheduler):
            def __init__(self, optimizer, successor, warmup_epoch, cons_lr, last_epoch=-1, verbose=False):
                self.cons_lr = cons_lr
                super().__init__(optimizer, successor, warmup_epoch, last_epoch, verbose)

            def get_lr(self):
                if self.last_epoch >= self.warmup_epoch:
                    return self.successor.get_last_lr()
                return [self.cons_lr for _ in self.base_lrs]
    """,
    "dassl/evaluation/__init__.py": "",
    "dassl/evaluation/evaluator.py": """
        class Classification:
            def __init__(self, n):
                self.correct = [0] * n
                self.total = [0] * n

            def process(self, mo, gt):
                for p, y in zip(mo.argmax(1).tolist(), gt.tolist()):
                    self.total[y] += 1
                    self.correct[y] += int(p == y)

            def evaluate(self):
                for k, (c, t) in enumerate(zip(self.correct, self.total)):
                    print(f"* class: {k} (c{k})\\ttotal: {t}\\tcorrect: {c}\\tacc: {100 * c / t:.1f}%")
                c, t = sum(self.correct), sum(self.total)
                if RESULT_BLOCK:
                    print(f"* total: {t:,}\\n* correct: {c:,}\\n* accuracy: {100 * c / t:.1f}%")
    """,
}
OFFICIAL = {
    "clip/__init__.py": "",
    "clip/clip.py": """
        _MODELS = {"ViT-B/16": "https://example.invalid/ViT-B-16.pt"}

        def _download(url, root=None):
            raise RuntimeError("no network in a parity run")
    """,
    "trainers/__init__.py": "",
    "trainers/maple.py": """
        import torch


        def projection():
            proj = torch.nn.Linear(8, 8)
            proj.half()  # the official MaPLe casts a projection to fp16 whatever the precision
            return proj
    """,
    "configs/datasets/dtd.yaml": "",
    "configs/trainers/StandIn/tiny.yaml": "",
    "train.py": """
        import argparse
        import datetime
        import os

        import torch

        from clip import clip
        from dassl.evaluation.evaluator import Classification
        from dassl.optim.lr_scheduler import ConstantWarmupScheduler
        from dassl.utils.meters import MetricMeter
        from dassl.utils.torchtools import load_checkpoint

        CUDA_HABITS = True
        PLANTED_STEP = -1  # a step whose loss gets 1e-3 more
        PLANTED_FLIP = False  # one test image of class 0 scored wrong

        p = argparse.ArgumentParser()
        for flag in ("--root", "--trainer", "--dataset-config-file", "--config-file", "--output-dir", "--model-dir"):
            p.add_argument(flag, default="")
        p.add_argument("--seed", type=int, default=1)
        p.add_argument("--load-epoch", type=int)
        p.add_argument("--eval-only", action="store_true")
        p.add_argument("opts", nargs="*")
        a = p.parse_args()
        opts = dict(zip(a.opts[0::2], a.opts[1::2]))
        path = opts.get("MODEL.BACKBONE.PATH") or clip._download(clip._MODELS["ViT-B/16"])
        scale = torch.load(path)["logit_scale"].float()
        torch.manual_seed(a.seed)
        model = torch.nn.Linear(8, 3)
        if CUDA_HABITS:
            from trainers.maple import projection

            model = model.cuda()
            proj = projection()
        else:
            proj = torch.nn.Linear(8, 8)
        g = torch.Generator().manual_seed(0)
        images, labels = torch.randn(6, 8, generator=g), torch.tensor([0, 1, 2, 0, 1, 2])
        os.makedirs(a.output_dir, exist_ok=True)
        ckpt = os.path.join(a.model_dir or a.output_dir, "model.pth.tar-2")
        if not a.eval_only:
            optim = torch.optim.SGD(model.parameters(), lr=0.1)
            cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optim, 2)
            sched = ConstantWarmupScheduler(optim, cosine, 1, 1e-3)
            meter = MetricMeter()
            for epoch in range(2):
                for b in range(2):
                    x, y = images[3 * b : 3 * b + 3], labels[3 * b : 3 * b + 3]
                    if CUDA_HABITS:
                        x = x.cuda()
                    loss = torch.nn.functional.cross_entropy(scale * model(proj(x)), y)
                    optim.zero_grad()
                    loss.backward()
                    optim.step()
                    value = loss.item() + (1e-3 if 2 * epoch + b == PLANTED_STEP else 0.0)
                    meter.update({"loss": value, "acc": 100.0 * float((model(proj(x)).argmax(1) == y).float().mean())})
                    lr = optim.param_groups[0]["lr"]
                    print(f"epoch [{epoch + 1}/2] batch [{b + 1}/2] time 0.01 (0.01) data 0.00 (0.00) {meter} "
                          f"lr {lr:.4e} eta 0:00:0{3 - 2 * epoch - b}")
                sched.step()
            extra = {"saved": datetime.date(2022, 10, 6)} if CUDA_HABITS else {}  # upstream pickles more
            torch.save({"state_dict": model.state_dict(), **extra}, ckpt)
        model.load_state_dict(load_checkpoint(ckpt)["state_dict"])  # a pickled object: a full load
        with torch.no_grad():
            logits = scale * model(proj(images))
        if PLANTED_FLIP:
            logits[0] = -logits[0]
        evaluator = Classification(3)
        evaluator.process(logits, labels)
        evaluator.evaluate()
    """,
}


def write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(textwrap.dedent(text).lstrip())


def set_constants(path: Path, **constants: object) -> None:
    """Rewrite ``NAME = value`` lines of a stand-in file."""
    lines = path.read_text().splitlines()
    for i, line in enumerate(lines):
        name = line.split(" = ")[0]
        if name in constants:
            lines[i] = f"{name} = {constants[name]!r}"
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def standin(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The stand-in official folder (with its Dassl inside, as --dassl), one official run, a world."""
    root = tmp_path_factory.mktemp("standin")
    official = root / "official"
    write(official, OFFICIAL)
    dassl = root / "dassl"
    write(dassl, DASSL)
    evaluator = dassl / "dassl" / "evaluation" / "evaluator.py"
    evaluator.write_text("RESULT_BLOCK = True\n" + evaluator.read_text())
    world = worlds.World(clip=worlds.widths(vision_layers=1, transformer_layers=1), data=())
    world_dir = worlds.build(world, str(root / "worlds"))
    scenario = Scenario("StandIn", "tiny", "coop", world, "StandIn/tiny", (Run("train"),))
    paths = runner.Paths(str(official), str(dassl), ours=str(official))
    got = runner.run_side(scenario, "official", world_dir, str(root / "runs"), paths, threads=1)
    return {"root": root, "official": official, "dassl": dassl, "world": world_dir, "scenario": scenario,
            "paths": paths, "run": got["train"]}  # fmt: skip


def ours(standin: dict, name: str, result_block: bool = True, **constants: object) -> runner.Outcome:
    """The scenario's run on our side: a copy of the stand-in without its habits, its Dassl inside, and the
    planted ``constants``."""
    code = standin["root"] / f"ours-{name}"
    shutil.copytree(standin["official"], code)
    shutil.copytree(standin["dassl"] / "dassl", code / "dassl")
    set_constants(code / "train.py", CUDA_HABITS=False, **constants)
    set_constants(code / "dassl" / "evaluation" / "evaluator.py", RESULT_BLOCK=result_block)
    scheduler = code / "dassl" / "optim" / "lr_scheduler.py"  # ours passes no ``verbose``
    text = scheduler.read_text().replace("last_epoch, verbose)\n\n    def step", "last_epoch)\n\n    def step")
    scheduler.write_text(text)
    paths = runner.Paths(str(standin["official"]), ours=str(code))
    work = str(standin["root"] / "runs-" / name)
    return runner.run_side(standin["scenario"], "exact", standin["world"], work, paths, threads=1)["train"]


def test_the_shims_let_the_official_stand_in_run_and_the_recorders_record(standin):
    run = standin["run"]
    assert run.returncode == 0, run.log[-3000:]
    steps = compare.printed(run.log).steps
    assert len(steps) == 4 and not any(" time " in s or " eta " in s for s in steps)  # timing fields dropped
    assert [s.split(" lr ")[1] for s in steps[:2]] == ["1.0000e-03", "1.0000e-03"]  # the warmup's constant lr
    recorded = compare.recorded_steps(run.record)
    assert len(recorded) == 4 and set(recorded[0]) == {"loss", "acc"}
    assert f"loss {recorded[2]['loss']:.4f}" in steps[2]
    assert compare.recorded_outputs(run.record)[0].shape == (6, 3)


def test_without_the_launcher_the_stand_in_fails_on_its_cuda_habit(standin):
    env = {**os.environ, "PYTHONPATH": str(standin["dassl"])}
    clip = os.path.join(standin["world"], "clip.pt")
    done = subprocess.run([sys.executable, "train.py", "--output-dir", str(standin["root"] / "plain"),
                           "MODEL.BACKBONE.PATH", clip], cwd=standin["official"], capture_output=True, text=True,
                          env=env)  # fmt: skip
    assert done.returncode != 0 and "cuda" in done.stderr.lower()


def test_equal_runs_are_reported_equal(standin):
    got = ours(standin, "equal")
    verdict = compare.compare_run(standin["run"].log, standin["run"].record, got.log, got.record)
    assert verdict.difference is None and (verdict.steps, verdict.classes) == (4, 3)


def test_a_changed_loss_is_reported_with_the_first_differing_step(standin):
    got = ours(standin, "loss", PLANTED_STEP=2)
    verdict = compare.compare_run(standin["run"].log, standin["run"].record, got.log, got.record)
    assert verdict.difference is not None and verdict.difference.startswith("step 3 differs:")
    official, mine = verdict.difference.splitlines()[1:]
    assert official.split("official: ")[1].startswith("epoch [2/2] batch [1/2] loss")
    assert official.split("loss ")[1][:6] != mine.split("loss ")[1][:6]


def test_a_changed_per_class_count_is_reported(standin):
    got = ours(standin, "flip", PLANTED_FLIP=True)
    verdict = compare.compare_run(standin["run"].log, standin["run"].record, got.log, got.record)
    assert verdict.difference is not None and verdict.difference.startswith("per-class line 1 differs:")
    assert "* class: 0 (c0)" in verdict.difference and verdict.max_logit > 0


def test_a_missing_result_block_is_reported(standin):
    got = ours(standin, "noresult", result_block=False)
    verdict = compare.compare_run(standin["run"].log, standin["run"].record, got.log, got.record)
    assert verdict.difference is not None and verdict.difference.startswith("result line: 3 official vs 0 ours")
    assert "* total: 6" in verdict.difference


def test_a_difference_below_the_printed_digits_is_caught_by_the_recorder():
    steps = [{"loss": 1.25, "acc": 50.0}]
    assert compare.first_difference("recorded step", [repr(steps)], [repr([{"loss": 1.2500001, "acc": 50.0}])])
    assert compare.compare_values({"losses": [1.0, 2.0]}, {"losses": [1.0, 2.0000002]}) == (
        "losses.1: official 2.0, ours 2.0000002"
    )


def test_the_2022_dassl_forks_printing_is_compared_in_the_same_form_as_ours():
    """ProVP's forked Dassl prints steps and percentages in its own format: the same values compare equal,
    other values not (lines printed by each, the timing fields differing)."""
    fork = ("epoch [1/3][2/3]\ttime 1.261 (1.295)\tdata 0.003 (0.011)\teta 0:00:09\txe_loss 1.1476 (1.2115)\t"
            "ref_loss 1.2943 (1.2990)\tacc 50.0000 (37.5000)\tlr 1.000000e-05\n"
            "* class: 0 (banded)\ttotal: 3\tcorrect: 3\tacc: 100.00%\n* accuracy: 33.33%\n")  # fmt: skip
    ours = ("epoch [1/3] batch [2/3] time 1.170 (1.180) data 0.008 (0.009) xe_loss 1.1476 (1.2115) ref_loss 1.2943 "
            "(1.2990) acc 50.0000 (37.5000) lr 1.0000e-05 eta 0:00:08\n"
            "* class: 0 (banded)\ttotal: 3\tcorrect: 3\tacc: 100.0%\n* accuracy: 33.3%\n")  # fmt: skip
    a, b = compare.printed(fork), compare.printed(ours)
    assert a == b and a.steps == ["epoch [1/3] batch [2/3] xe_loss 1.1476 (1.2115) ref_loss 1.2943 (1.2990) "
                                  "acc 50.0000 (37.5000) lr 1.0000e-05"]  # fmt: skip
    assert compare.printed(ours.replace("ref_loss 1.2943", "ref_loss 1.2944")).steps != a.steps
    assert compare.printed(ours.replace("lr 1.0000e-05", "lr 1.0001e-05")).steps != a.steps


def git(*args: str, cwd: Path) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}  # fmt: skip
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True, env=env).stdout.strip()


def test_clone_from_a_file_url_checks_out_the_pin_and_a_moved_checkout_is_refused(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    git("init", "-q", cwd=src)
    (src / "train.py").write_text("print('v1')\n")
    git("add", ".", cwd=src)
    git("commit", "-q", "-m", "v1", cwd=src)
    pinned = git("rev-parse", "HEAD", cwd=src)
    (src / "train.py").write_text("print('v2')\n")
    git("commit", "-q", "-am", "v2", cwd=src)
    git("clone", "-q", "--bare", str(src), str(tmp_path / "served.git"), cwd=tmp_path)
    repo = repos.Repo("standin", (tmp_path / "served.git").as_uri(), pinned)

    folder = repos.checkout(repo, None, str(tmp_path / "cache"))
    assert (Path(folder) / "train.py").read_text() == "print('v1')\n" and repos.head(folder) == pinned
    assert repos.checkout(repo, None, str(tmp_path / "cache")) == folder  # cloned once
    with pytest.raises(repos.CheckoutError, match="not the pinned"):
        repos.checkout(repo, str(src), str(tmp_path / "cache"))  # a local clone at another commit
    with pytest.raises(repos.CheckoutError, match="not a git checkout"):
        repos.checkout(repo, str(tmp_path), str(tmp_path / "cache"))
    with pytest.raises(repos.CheckoutError, match="failed"):
        repos.clone(repos.Repo("gone", (tmp_path / "missing.git").as_uri(), pinned), str(tmp_path / "c2"))


def test_write_pins_gives_the_test_form_of_an_official_run(standin):
    run = standin["run"]
    pins = train_steps(run.log, run.record)
    recorded = compare.recorded_steps(run.record)
    assert pins["loss"] == [round(s["loss"], 7) for s in recorded] and pins["acc"] == [s["acc"] for s in recorded]
    assert pins["lr"][:2] == [1e-3, 1e-3] and len(pins["lr"]) == 4
    per_class = compare.printed(run.log).per_class
    assert pins["correct"] == [int(line.split("correct: ")[1].split("\t")[0]) for line in per_class]


def test_seeded_run_pins_keep_full_precision_and_every_prediction(standin):
    run = standin["run"]
    pins = seeded_run(run.log, run.record)
    assert pins["loss"] == [s["loss"] for s in compare.recorded_steps(run.record)]  # not rounded
    outputs = compare.recorded_outputs(run.record)
    assert pins["predicted"] == [int(k) for o in outputs for k in o.argmax(dim=1)] and pins["predicted"]
    assert pins["correct"] == train_steps(run.log, run.record)["correct"]


def test_the_resnet_scenarios_world_is_the_tests_tiny_resnet():
    """tests/test_resnet_clip.py's pins are regenerated on RN_TESTS: its CLIP must be tiny_resnet_state_dict(0)."""
    from tiny import tiny_resnet_state_dict

    ours, theirs = worlds.clip_weights(worlds.RN_TESTS), tiny_resnet_state_dict(0)
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in theirs)
    other = worlds.clip_weights(worlds.RN_DTD20)  # another seed: other weights and BatchNorm statistics
    assert not torch.equal(other["visual.bn1.running_mean"], ours["visual.bn1.running_mean"])
    assert worlds.RN_CARS.config().family == RESNET and "ResNet" in worlds.RN_CARS.describe()


def test_a_checkout_at_another_commit_stops_the_cli_before_any_run(tmp_path, capsys):
    git("init", "-q", cwd=tmp_path)
    (tmp_path / "train.py").write_text("")
    git("add", ".", cwd=tmp_path)
    git("commit", "-q", "-m", "not CoOp", cwd=tmp_path)
    code = cli.main(["CoOp", "--official-dir", str(tmp_path), "--work", str(tmp_path / "work")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and "not the pinned ff61507c7904" in err
    assert not (tmp_path / "work" / "runs").exists()


def test_what_the_official_code_imports_is_the_parity_extra_and_its_absence_one_error_line(monkeypatch):
    """Without the ``parity`` extra every official side would fail in its own log; the tool says so first."""
    pyproject = (Path(__file__).parent.parent / "pyproject.toml").read_text()
    extra = re.search(r"^parity = \[(.*?)\]", pyproject, re.M).group(1)
    assert sorted(cli.OFFICIAL_IMPORTS.values()) == sorted(re.findall(r'"([^"]+)"', extra))
    monkeypatch.setattr(cli, "OFFICIAL_IMPORTS", {"json": "json", "no_such_module_here": "no-such-package"})
    with pytest.raises(cli.UsageError, match=r'lacks \(no-such-package\): pip install -e "\.\[parity\]"$'):
        cli.check_official_imports()


# ---- the scenarios of TCP, ProVP, MetaPrompt and CLIP-Adapter, and their shims

PROBE = {
    "dassl/optim/optimizer.py": """
        import torch


        def build_optimizer(params):
            return torch.optim.Adam(params, lr=0.1)  # upstream Dassl passes no eps
    """,
    "trainers/__init__.py": "",
    "trainers/tcp.py": """
        import torch


        def meta_net():
            net = torch.nn.Linear(2, 2)
            net.half()  # TCP's fp16 meta-network, computed in its fp32 runs too
            return net
    """,
    "trainers/clip_text/__init__.py": "",
    "trainers/clip_text/clip.py": """
        def _download(url, root=None):
            raise RuntimeError("no network in a parity run")
    """,
    "release/clip_adapter.py": """
        import torch

        import trainers.tcp

        REGISTERED = "CLIP_Adapter"


        class Adapter(torch.nn.Module):
            def __init__(self, c_in, reduction=4):
                super(Adapter, self).__init__()
                self.fc = torch.nn.Linear(c_in, c_in // reduction, bias=False)
    """,
    "probe.py": """
        import json
        import sys

        import torch
        from pkg_resources import packaging  # TCP's clip/clip.py

        import trainers
        import trainers.vpclip  # ProVP's trainers/__init__.py imports it; no commit has it
        from dassl.optim.optimizer import build_optimizer
        from trainers.clip_text import clip
        from trainers.tcp import meta_net

        p = torch.nn.Parameter(torch.ones(2))
        optim = torch.optim.SGD([p], lr=0.1)
        p.sum().backward()
        optim.zero_grad()
        adapter = getattr(trainers, "clip_adapter", None)
        out = {
            "adam_eps": build_optimizer([torch.nn.Parameter(torch.ones(1))]).defaults["eps"],
            "grad_after_zero_grad": None if p.grad is None else p.grad.tolist(),
            "to_cuda": str(torch.ones(1).to("cuda").device) if "to_cuda" in sys.argv else "",
            "meta_net": str(meta_net().weight.dtype),
            "download": clip._download("https://example.invalid/ViT-B-16.pt"),
            "packaging": str(packaging.version.parse("1.7.1") < packaging.version.parse("2.0")),
            "module": getattr(adapter, "REGISTERED", None),
            "adapter_in": adapter.Adapter(1024, 4).fc.in_features if adapter else None,  # the release's literal
        }
        print("PROBE " + json.dumps(out))
    """,
}


@pytest.fixture(scope="module")
def probe_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("probe")
    write(root, PROBE)
    return root


def probe(folder: Path, *launcher_args: str, script_args: tuple[str, ...] = ()) -> dict:
    """The probe run on the official side through the launcher; what it printed."""
    clip = folder / "world-clip.pt"
    torch.save({"text_projection": torch.zeros(16, 48)}, clip)  # a world with 48-d features
    cmd = [sys.executable, runner.LAUNCH, "--side", "official", "--record", str(folder / "rec"), "--clip", str(clip),
           "--dassl", str(folder), *launcher_args, "--", "probe.py", *script_args]  # fmt: skip
    done = subprocess.run(cmd, cwd=folder, capture_output=True, text=True, env=runner.environment(1))
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("PROBE "))
    return json.loads(line.removeprefix("PROBE "))


def test_the_scenario_shims_apply_only_where_a_scenario_names_them(probe_dir):
    plain = probe(probe_dir)
    assert plain["adam_eps"] == 1e-8 and plain["grad_after_zero_grad"] is None and plain["module"] is None
    # common to every official run: TCP's own clip package gets the world's file, its fp16 meta-network stays
    # fp16 (Module.half() is a no-op only in MaPLe's file), pkg_resources' packaging is there
    assert plain["download"] == str(probe_dir / "world-clip.pt") and plain["meta_net"] == "torch.float16"
    assert plain["packaging"] == "True"
    release = f"trainers.clip_adapter={probe_dir / 'release' / 'clip_adapter.py'}"
    assert probe(probe_dir, "--module", release)["adapter_in"] == 1024
    shimmed = probe(probe_dir, "--shim", "adam_eps", "--shim", "zero_grad_keeps_grads", "--shim", "to_cuda",
                    "--shim", "adapter_width", "--module", release, script_args=("to_cuda",))  # fmt: skip
    assert shimmed["adam_eps"] == 1e-3  # TCP's README edit of Dassl's Adam
    assert shimmed["grad_after_zero_grad"] == [0.0, 0.0]  # torch 1.10's zero_grad (MetaPrompt's torch1)
    assert shimmed["to_cuda"] == "cpu"  # CLIP-Adapter's prompts.to("cuda")
    assert shimmed["module"] == "CLIP_Adapter"  # the release's file imported as CoOp's trainers.clip_adapter
    assert shimmed["adapter_in"] == 48  # its Adapter(1024, 4) sized by the world's features


def test_the_new_methods_scenarios_are_listed_with_their_repositories(capsys):
    assert cli.main(["--list"]) == 0
    listed = [line.split()[:3] for line in capsys.readouterr().out.splitlines()]
    expected = {"TCP": "htyao89/Textual-based_Class-aware_prompt_tuning@bd97bec", "ProVP": "MCG-NJU/ProVP@837b8fb",
                "Meta_B2N": "Vill-Lab/2024-TIP-MetaPrompt@ca99607", "Meta_DG": "Vill-Lab/2024-TIP-MetaPrompt@ca99607",
                "CLIP_Adapter": "gaopengcuhk/CLIP-Adapter@08d07f8"}  # fmt: skip
    for method, repo in expected.items():
        rows = [row for row in listed if row[0] == method]
        assert len(rows) >= 2 and all(row[2] == repo for row in rows), (method, rows)
    pinned = {pin.test for s in SCENARIOS for pin in s.pins if s.method in expected}
    assert pinned == {"tests/test_tcp.py", "tests/test_provp.py", "tests/test_metaprompt.py",
                      "tests/test_clip_adapter.py"}  # fmt: skip
    for test in pinned:  # each pinned test names the tools.parity command that regenerates it
        assert "python -m tools.parity" in (Path(__file__).parent.parent / test).read_text(), test


def test_each_side_reads_its_own_dataset_config_and_trainer_config():
    """MetaPrompt's official dataset files sit in b2n/ and dg/; CLIP-Adapter's official run reads CoOp's files."""
    meta = next(s for s in SCENARIOS if s.method == "Meta_DG")
    official = meta.train_args(meta.runs[0], "root", "out", None, official=True)
    ours_args = meta.train_args(meta.runs[0], "root", "out", None, official=False)
    assert official[official.index("--dataset-config-file") + 1] == "configs/datasets/dg/pacs.yaml"
    assert ours_args[ours_args.index("--dataset-config-file") + 1] == "configs/datasets/pacs.yaml"
    adapter = next(s for s in SCENARIOS if s.method == "CLIP_Adapter")
    official = adapter.train_args(adapter.runs[0], "root", "out", None, official=True)
    ours_args = adapter.train_args(adapter.runs[0], "root", "out", None, official=False)
    config = ours_args[ours_args.index("--config-file") + 1]
    assert official[official.index("--config-file") + 1] == config.replace("/CLIP_Adapter/", "/CoOp/")
    assert (Path(__file__).parent.parent / config).exists()


def test_clip_adapter_runs_in_coop_s_checkout_and_provp_on_its_own_dassl(tmp_path, monkeypatch):
    """The official side's folders: CLIP-Adapter's code folder is CoOp's, with the release's file as a module;
    ProVP imports the Dassl fork of its own checkout, not upstream's."""
    names = {"coop": "CoOp", "clip-adapter": "CLIP-Adapter", "provp": "ProVP", "dassl": "Dassl.pytorch"}
    for key, name in names.items():
        folder = tmp_path / name
        folder.mkdir()
        git("init", "-q", cwd=folder)
        git("commit", "-q", "--allow-empty", "-m", "x", cwd=folder)
        r = repos.REPOS[key]
        commit = git("rev-parse", "HEAD", cwd=folder).strip()
        monkeypatch.setitem(repos.REPOS, key, repos.Repo(key, r.url, commit, r.code, r.dassl))
    a = cli.parse(["CLIP_Adapter", "--checkouts", str(tmp_path), "--work", str(tmp_path / "work")])
    paths = cli.paths_for(next(s for s in SCENARIOS if s.method == "CLIP_Adapter"), a)
    assert paths.code == str(tmp_path / "CoOp") and paths.dassl == str(tmp_path / "Dassl.pytorch")
    assert paths.modules == (f"trainers.clip_adapter={tmp_path / 'CLIP-Adapter' / 'clip_adapter.py'}",)
    paths = cli.paths_for(next(s for s in SCENARIOS if s.method == "ProVP"), a)
    assert paths.code == str(tmp_path / "ProVP" / "ProVP") and paths.dassl == str(tmp_path / "ProVP" / "Dassl")
