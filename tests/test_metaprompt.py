"""MetaPrompt (Meta_B2N, Meta_DG): seeded runs pinned to the official implementation, its meta step's two
behaviours against a literal replay of the official statements, official checkpoints, the zero-shot head,
user errors.

The pins are printed by the OFFICIAL code (github Vill-Lab/2024-TIP-MetaPrompt @ca99607 on upstream Dassl
@c61a1b5, CPU, fp32, its .cuda() calls removed) run on the world rebuilt here: the tiny CLIP of
``tiny_clip_config()`` drawn after ``torch.manual_seed(0)``, the synthetic DTD of ``make_dataset("dtd", root,
n_classes=8, n_train=4, n_val=2, n_test=3, seed=0)`` and the synthetic PACS of ``make_dataset("pacs", root,
n_classes=5, n_train=3, n_val=2, n_test=2, seed=0)``, with the command lines of ``RECIPES`` (both sides:
``DATALOADER.NUM_WORKERS 0 TRAIN.PRINT_FREQ 1 TEST.PER_CLASS_RESULT True INPUT.SIZE (32, 32)
TRAINER.META.PREC fp32``). "torch2" is the official code as it runs on today's torch; "torch1" the same
with ``torch.optim.Optimizer.zero_grad`` defaulting to ``set_to_none=False``, as on its torch 1.10.1.
Losses and accuracies are the values the official ``forward_backward`` returned (full precision), ``lr``
the printed ones, ``correct`` the per-class test counts, ``logits_*`` its test outputs.
Regenerate: ``python -m tools.parity Meta_B2N --scenario base_to_new_torch2 --scenario base_to_new_torch1
--write-pins`` and ``python -m tools.parity Meta_DG --scenario pacs_cartoon_torch2 --scenario pacs_cartoon_torch1
--write-pins`` (the tool's world and command lines are these).
"""

from __future__ import annotations

import copy
import json
import shutil
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import train
from clip import clip
from clip.model import CLIP
from dassl.config import get_cfg_default
from dassl.evaluation.evaluator import Classification
from dassl.utils.meters import MetricMeter
from datasets.synthetic import make_dataset
from tests.tiny import tiny_clip_config
from trainers.base import ConfigError
from trainers.config import extend_cfg
from trainers.metaprompt import official
from trainers.metaprompt.model import build_metaprompt, zero_shot_prompts, zero_shot_templates
from trainers.metaprompt.trainer import Episode, Meta_B2N, MetaPromptTrainer

REPO = Path(__file__).resolve().parents[1]
COMMON = ["DATALOADER.NUM_WORKERS", "0", "TRAIN.PRINT_FREQ", "1", "TEST.PER_CLASS_RESULT", "True",
          "INPUT.SIZE", "(32, 32)", "TRAINER.META.PREC", "fp32"]  # fmt: skip
B2N = ["DATASET.NUM_SHOTS", "4", "DATALOADER.TRAIN_X.BATCH_SIZE", "4", "OPTIM.MAX_EPOCH", "2", "OPTIM.LR", "0.05"]
DG = ["DATASET.NUM_SHOTS", "2", "DATALOADER.TRAIN_X.BATCH_SIZE", "8", "OPTIM.MAX_EPOCH", "2", "OPTIM.LR", "0.05",
      "DATASET.ID", "1"]  # fmt: skip
RECIPES = {  # (trainer, dataset config, options); seed 1, the trainer's vit_b16.yaml
    "b2n_base": ("Meta_B2N", "dtd", [*B2N, "DATASET.SUBSAMPLE_CLASSES", "base"]),
    "b2n_new": ("Meta_B2N", "dtd", [*B2N, "DATASET.SUBSAMPLE_CLASSES", "new"]),  # --load-epoch 2 --eval-only
    "dg": ("Meta_DG", "pacs", DG),
}
WARMUP_B2N = [1e-05] * 3 + [0.05] * 4 + [0.025]
WARMUP_DG = [1e-05] * 2 + [0.05] * 3 + [0.025]
OFFICIAL = {
    "torch2": {
        "b2n_base": dict(
            loss=[0.7448816299438477, 0.5031733512878418, 0.4588005244731903, 0.6312956213951111,
                  0.6322006583213806, 0.6494641304016113, 0.6946554183959961, 0.6832810640335083],
            acc=[25.0, 50.0, 0.0, 25.0, 25.0, 25.0, 50.0, 25.0], lr=WARMUP_B2N,
            correct=[0, 3, 2, 3], logits_sum=16.87238446250558,
            logits0=[0.016074080020189285, 0.5258310437202454, -0.4338662624359131, -0.8237738609313965],
        ),
        "b2n_new": dict(
            correct=[0, 0, 3, 0], logits_sum=13.46602113544941,
            logits0=[0.5843843221664429, 0.3624315559864044, 0.37578633427619934, 0.7975366115570068],
        ),
        "dg": dict(
            loss=[1.5145498514175415, 1.7402170896530151, 1.6186866760253906, 1.4218357801437378,
                  1.5190870761871338, 1.3282530307769775],
            acc=[0.0, 0.0, 0.0, 0.0, 62.5, 75.0], lr=WARMUP_DG,
            correct=[0, 5, 6, 5, 6], logits_sum=-55.556151285767555,
            logits0=[-1.4012045860290527, -1.0391008853912354, -1.6203196048736572, -1.5865756273269653,
                     -1.0578460693359375],
        ),
    },
    "torch1": {
        "b2n_base": dict(
            loss=[0.7448816299438477, 0.5031735301017761, 0.45880016684532166, 0.6312956213951111,
                  0.6322005987167358, 0.6491868495941162, 0.6950932741165161, 0.6789701581001282],
            acc=[25.0, 50.0, 0.0, 25.0, 25.0, 25.0, 75.0, 25.0], lr=WARMUP_B2N,
            correct=[0, 3, 3, 3], logits_sum=17.969041593372822,
            logits0=[-0.035214416682720184, 0.10769286751747131, -0.5442015528678894, -1.1416184902191162],
        ),
        "b2n_new": dict(
            correct=[0, 0, 3, 0], logits_sum=16.35759035497904,
            logits0=[0.8523986339569092, 0.4822172522544861, 0.5097641348838806, 1.1550202369689941],
        ),
        "dg": dict(
            loss=[1.5145498514175415, 1.7402170896530151, 1.6186867952346802, 1.4217803478240967,
                  1.519045114517212, 1.3280130624771118],
            acc=[0.0, 0.0, 0.0, 0.0, 62.5, 75.0], lr=WARMUP_DG,
            correct=[0, 5, 6, 5, 6], logits_sum=-64.43428938090801,
            logits0=[-1.4511222839355469, -0.9021999835968018, -1.6390540599822998, -1.5885287523269653,
                     -1.077521800994873],
        ),
    },
}  # fmt: skip
STEP_FROZEN = {"torch1": "True", "torch2": "False"}


@pytest.fixture(scope="module")
def world(tiny_clip, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("metaprompt")
    shutil.copyfile(tiny_clip, root / "tiny.pt")  # the suite's tiny CLIP (tests/conftest.py)
    make_dataset("dtd", str(root / "data"), n_classes=8, n_train=4, n_val=2, n_test=3, size=32, seed=0)
    make_dataset("pacs", str(root / "data"), n_classes=5, n_train=3, n_val=2, n_test=2, size=32, seed=0)
    return root


class Recorded:
    """What a run printed: the step dicts (full precision), the per-step lr, the test outputs."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.steps: list[dict] = []
        self.outputs: list[torch.Tensor] = []
        update, process = MetricMeter.update, Classification.process

        def recorded_update(meter: MetricMeter, values: dict) -> None:
            self.steps.append(dict(values))
            update(meter, values)

        def recorded_process(evaluator: Classification, mo: torch.Tensor, gt: torch.Tensor) -> None:
            self.outputs.append(mo.detach().clone())
            process(evaluator, mo, gt)

        monkeypatch.setattr(MetricMeter, "update", recorded_update)
        monkeypatch.setattr(Classification, "process", recorded_process)


def fresh_data(world: Path, folder: Path) -> Path:
    """A copy of the world's data: the official runs started without few-shot caches (a cached split draws
    no random numbers, which moves every later Python draw)."""
    shutil.copytree(world / "data", folder / "data")
    return folder / "data"


def run(world: Path, data: Path, monkeypatch: pytest.MonkeyPatch, name: str, recipe: str, *opts: str,
        model_dir: str = "") -> tuple[Recorded, str]:  # fmt: skip
    """train.py in-process with the recipe's command line; what it recorded and its log."""
    trainer, dataset, recipe_opts = RECIPES[recipe]
    argv = ["--root", str(data), "--seed", "1", "--trainer", trainer]
    argv += ["--dataset-config-file", str(REPO / f"configs/datasets/{dataset}.yaml")]
    argv += ["--config-file", str(REPO / f"configs/trainers/{trainer}/vit_b16.yaml")]
    argv += ["--output-dir", str(data.parent / name)]
    if model_dir:
        argv += ["--model-dir", str(data.parent / model_dir), "--load-epoch", "2", "--eval-only"]
    record = Recorded(monkeypatch)
    argv += [*COMMON, *recipe_opts, *opts, "MODEL.BACKBONE.PATH", str(world / "tiny.pt")]
    train.main(train.build_parser().parse_args(argv))
    sys.stdout.flush()  # dassl's logger tees stdout into log.txt
    return record, (data.parent / name / "log.txt").read_text()


def printed_lrs(log: str) -> list[float]:
    return [float(line.split(" lr ")[1].split()[0]) for line in log.splitlines() if line.startswith("epoch [")]


def correct_counts(log: str) -> list[int]:
    return [int(line.rsplit("correct: ", 1)[1].split()[0]) for line in log.splitlines() if line.startswith("* class:")]


def check(record: Recorded, log: str, expected: dict, exact: bool) -> None:
    logits = torch.cat(record.outputs)
    if "loss" in expected:
        losses = [s["loss"] for s in record.steps]
        if exact:
            assert losses == expected["loss"]
        else:  # the default path: the same numbers up to float rounding
            assert losses == pytest.approx(expected["loss"], abs=1e-4)
        assert [s["acc"] for s in record.steps] == expected["acc"]
        assert printed_lrs(log) == pytest.approx(expected["lr"], rel=1e-4)
    else:
        assert record.steps == []
    assert correct_counts(log) == expected["correct"]
    if exact:
        assert logits.double().sum().item() == expected["logits_sum"]
        assert logits[0].tolist() == expected["logits0"]
    else:
        assert logits.double().sum().item() == pytest.approx(expected["logits_sum"], abs=1e-4 * logits.numel())
        assert logits[0].tolist() == pytest.approx(expected["logits0"], abs=1e-4)


@pytest.mark.parametrize("torch_version", ["torch2", "torch1"])
@pytest.mark.parametrize("exact", [True, False], ids=["exact", "default"])
def test_meta_b2n_base_to_new_reproduces_the_official_runs(world, tmp_path, monkeypatch, torch_version, exact):
    opts = ["EXACT", str(exact), "TRAINER.META.STEP_FROZEN_PROMPT", STEP_FROZEN[torch_version]]
    tag, data = f"b2n_{torch_version}_{exact}", fresh_data(world, tmp_path)
    record, log = run(world, data, monkeypatch, f"{tag}_base", "b2n_base", *opts)
    check(record, log, OFFICIAL[torch_version]["b2n_base"], exact)
    saved = torch.load(tmp_path / f"{tag}_base/model/model.pth.tar-2", weights_only=False)["state_dict"]
    assert {"prompt_learner.ctx", "vision_prompt_learner.ctx"} <= set(saved)  # the official checkpoint's names
    assert json.loads((tmp_path / f"{tag}_base" / "metrics.json").read_text())["domains"] is None  # no domains
    record, log = run(world, data, monkeypatch, f"{tag}_new", "b2n_new", *opts, model_dir=f"{tag}_base")
    check(record, log, OFFICIAL[torch_version]["b2n_new"], exact)


@pytest.mark.parametrize("torch_version", ["torch2", "torch1"])
@pytest.mark.parametrize("exact", [True, False], ids=["exact", "default"])
def test_meta_dg_reproduces_the_official_runs(world, tmp_path, monkeypatch, torch_version, exact) -> None:
    opts = ["EXACT", str(exact), "TRAINER.META.STEP_FROZEN_PROMPT", STEP_FROZEN[torch_version]]
    data = fresh_data(world, tmp_path)
    record, log = run(world, data, monkeypatch, f"dg_{torch_version}_{exact}", "dg", *opts)
    assert "PACSFS: target (held-out) domain cartoon; sources art_painting, photo, sketch" in log
    check(record, log, OFFICIAL[torch_version]["dg"], exact)
    metrics = json.loads((tmp_path / f"dg_{torch_version}_{exact}" / "metrics.json").read_text())
    assert metrics["domains"] == {"source": ["art_painting", "photo", "sketch"], "target": ["cartoon"]}


def test_the_step_frozen_prompt_default_is_the_official_environment() -> None:
    """The published numbers come from torch 1.10.1 (the official INSTALL.md): its zero_grad keeps gradients."""
    assert MetaPromptTrainer.DEFAULTS["STEP_FROZEN_PROMPT"] is True


# ---- the meta step against a literal replay of the official statements


def official_meta_update(learned: nn.Parameter, fixed: nn.Parameter, optim: torch.optim.SGD, losses: list,
                         run: list[bool], lr: float, meta_step: float, keep_grads: bool) -> None:  # fmt: skip
    """The official code's statements for one batch's domain split (trainers/meta.py, Meta_B2N), written out:
    ``deepcopy``, a real step per meta-train, ``autograd.grad``, ``ctx.data = saved``, the meta update."""
    fixed.requires_grad_(False)
    saved = copy.deepcopy(learned)
    grads = []
    for i, (meta_train, meta_test) in enumerate(losses):
        if not run[i]:
            continue
        optim.zero_grad(set_to_none=not keep_grads)
        meta_train().backward()
        optim.step()
        grads.append(torch.autograd.grad(meta_test(), learned)[0])
        learned.data = saved
    for grad in grads:
        learned.data -= lr * grad * meta_step
    fixed.requires_grad_(True)


def toy_episodes(learned: nn.Parameter, fixed: nn.Parameter, targets: torch.Tensor) -> list:
    """Two (meta-train, meta-test) losses that depend on both tensors."""

    def loss(k: int) -> torch.Tensor:
        return ((learned - targets[k]) ** 3).abs().sum() + (fixed * learned.sum()).sum()

    return [(lambda: loss(0), lambda: loss(1)), (lambda: loss(2), lambda: loss(3))]


@pytest.mark.parametrize("keep_grads", [True, False], ids=["torch1", "torch2"])
@pytest.mark.parametrize("run_episodes", [[True, True], [True, False], [False, True]])
def test_meta_update_is_the_official_statements(keep_grads: bool, run_episodes: list[bool]) -> None:
    """Only the first meta-train step is undone (the aliased restore); with torch < 2.0's zero_grad the frozen
    tensor also gets weight decay and momentum; the momentum keeps every step."""
    results = []
    for side in ("official", "ours"):
        torch.manual_seed(0)
        learned, fixed = nn.Parameter(torch.randn(3, 2)), nn.Parameter(torch.randn(4))
        optim = torch.optim.SGD([learned, fixed], lr=0.1, momentum=0.9, weight_decay=5e-4)
        optim.zero_grad()
        (learned.square().sum() + fixed.square().sum()).backward()  # the in-domain step before the split
        optim.step()

        pairs = toy_episodes(learned, fixed, torch.randn(4, 3, 2))
        if side == "official":
            official_meta_update(learned, fixed, optim, pairs, run_episodes, 0.1, 0.2, keep_grads)
        else:
            trainer = object.__new__(Meta_B2N)  # the meta update only: an optimizer and the settings
            trainer._optims, trainer._models = {"model": optim}, {"model": nn.Module()}
            trainer.cfg = get_cfg_default()
            extend_cfg(trainer.cfg)
            trainer.cfg.TRAINER.NAME = "Meta_B2N"
            trainer.cfg.TRAINER.META.STEP_FROZEN_PROMPT = keep_grads
            episodes = (Episode(*p) for p, r in zip(pairs, run_episodes) if r)
            trainer.meta_update(learned, fixed, episodes)
        state = [optim.state[p]["momentum_buffer"].clone() for p in (learned, fixed)]
        results.append((learned.detach().clone(), fixed.detach().clone(), state))
    (learned_o, fixed_o, state_o), (learned_u, fixed_u, state_u) = results
    assert torch.equal(learned_u, learned_o)
    assert torch.equal(fixed_u, fixed_o)
    assert all(torch.equal(a, b) for a, b in zip(state_u, state_o))


# ---- checkpoints, the zero-shot head, errors


def test_an_official_layout_checkpoint_loads_and_other_keys_are_refused(world, monkeypatch) -> None:
    """The official file holds the whole model (its frozen CLIP under the wrappers' names): the two prompts
    are taken, the frozen parts skipped; anything else is refused with its key named."""
    t = build(world, "Meta_B2N", [])
    learner = t.model.learner
    ctx = {k: torch.randn_like(v) for k, v in learner.state_dict().items() if k.endswith(".ctx")}
    frozen = {f"{prefix}weight" if prefix.endswith(".") else prefix: torch.zeros(2)
              for prefix in official.FROZEN_PREFIXES}  # fmt: skip
    state = t.learner_state(learner, {**ctx, **frozen}, "model.pth.tar-8")
    assert all(torch.equal(state[k], v) for k, v in ctx.items())
    with pytest.raises(ConfigError, match="unexpected keys \\['prompt_learner.meta_net.weight'\\]"):
        t.learner_state(learner, {**ctx, "prompt_learner.meta_net.weight": torch.zeros(1)}, "other.pth")
    with pytest.raises(ConfigError, match="missing keys \\['vision_prompt_learner.ctx'\\]"):
        t.learner_state(learner, {"prompt_learner.ctx": ctx["prompt_learner.ctx"]}, "other.pth")


def build(world: Path, trainer: str, opts: list[str]) -> MetaPromptTrainer:
    parser = train.build_parser()
    args = parser.parse_args(["--root", str(world / "data"), "--seed", "1", "--trainer", trainer,
                              "--dataset-config-file", str(REPO / "configs/datasets/dtd.yaml"),
                              "--config-file", str(REPO / f"configs/trainers/{trainer}/vit_b16.yaml"),
                              "--output-dir", str(world / "built"), "--no-train", *COMMON,
                              "MODEL.BACKBONE.PATH", str(world / "tiny.pt"), *opts])  # fmt: skip
    return train.main(args)


# The ImageNet templates of CustomCLIP in trainers/meta.py of github Vill-Lab/2024-TIP-MetaPrompt (commit
# ca99607), in that order (the official head averages them for every dataset whose name contains "ImageNet").
IMAGENET_TEMPLATES = [
    "itap of a {}", "a bad photo of the {}", "a origami {}", "a photo of the large {}",
    "a {} in a video game", "art of the {}", "a photo of the small {}", "a photo of a {}",
]  # fmt: skip


def test_zero_shot_templates_are_metaprompts_own() -> None:
    assert zero_shot_templates("DescribableTextures") == ["{} texture"]
    assert zero_shot_templates("Food101") == ["a photo of a {}, a type of food"]  # not CoOp's "a photo of {}"
    assert zero_shot_templates("OfficeHomeFS") == ["a photo of a {}"]
    for name in ("ImageNet", "ImageNetSketch", "ImageNetV2", "ImageNetA", "ImageNetR"):
        assert zero_shot_templates(name) == IMAGENET_TEMPLATES
    assert zero_shot_templates("ImageFolder") == ["a photo of a {}"]
    assert zero_shot_templates("ImageNet", "a sketch of a {}.") == ["a sketch of a {}."]
    # The official head formats the raw names; a dataset's own template gets them with spaces, as elsewhere.
    assert zero_shot_prompts("Food101", ["apple_pie"]) == [["a photo of a apple_pie, a type of food"]]
    assert zero_shot_prompts("ImageFolder", ["blue_jay"], "a {}.") == [["a blue jay."]]


def test_zero_shot_head_keeps_raw_names_and_learned_prompts_use_spaces() -> None:
    """As the official code: "a photo of a alarm_clock" for the head, "X X alarm clock." for the learned prompts."""
    cfg = get_cfg_default()
    extend_cfg(cfg)
    cfg.merge_from_list(["DATASET.NAME", "OfficeHomeFS", "TRAINER.META.LAYERS", 3])
    torch.manual_seed(0)
    clip_model = CLIP(tiny_clip_config(vision_layers=3, transformer_layers=3)).requires_grad_(False)
    model = build_metaprompt(cfg, ["alarm_clock", "bed"], clip_model)
    assert torch.equal(model.zero_shot_tokens[:, 0], clip.tokenize(["a photo of a alarm_clock", "a photo of a bed"]))
    learned = clip.tokenize(["X X alarm clock.", "X X bed."])
    assert torch.equal(model.learner.prompt_learner.eot, learned.argmax(dim=-1))
    assert torch.equal(model.learner.prompt_learner.token_suffix, clip_model.token_embeddings(learned)[:, 3:])
    assert model.zero_shot().shape == (64, 2)


@pytest.mark.parametrize(
    "opts, message",
    [
        (["TRAINER.META.N_PRO", "0"], "TRAINER.META.N_PRO must be at least 1"),
        (["TRAINER.META.LAYERS", "13"], "TRAINER.META.LAYERS is 13 but the CLIP towers have 12 layers"),
    ],
)
def test_settings_that_cannot_run_are_one_error(world, opts, message) -> None:
    with pytest.raises(ConfigError, match=message):
        build(world, "Meta_B2N", opts)
