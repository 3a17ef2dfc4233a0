"""TCP: seeded runs against the official implementation, its sizes, settings, draws and checkpoints."""

from __future__ import annotations

import os

import pytest
import torch
from tiny import seeded_state_dict, tiny_clip_config, without_data

import train
from clip import clip
from clip.model import CLIP, build_model
from dassl.config import get_cfg_default
from trainers.base import ConfigError
from trainers.config import extend_cfg
from trainers.tcp import TCP, build_tcp
from trainers.tcp.tcp import ClassAwareTokens
from trainers.templates import templates

CLASSNAMES = ["banded", "blotchy", "braided", "bubbly", "chequered"]
LABELS = [[0, 1, 2, 3], [4, 0, 1, 2], [3, 4, 0, 1], [2, 3, 4, 0]]

# Produced by the OFFICIAL TCP (github htyao89/Textual-based_Class-aware_prompt_tuning @ bd97bec, trainers/tcp.py
# on upstream Dassl @ c61a1b5 with the Adam eps=1e-3 edit its README asks for, applied at run time; CPU, fp32:
# PREC fp32, its meta-net and second CLIP in fp16 as that code runs them) on exactly the setup below: the
# CLIP of `seeded_clip` (text width 512, which the official code needs), DTD, seed 7 before the trainer is
# built, four steps of two-batch epochs on images drawn from the global generator after the build (so its
# build-time draws are checked too), then its model_inference on two more images. Per step: loss, acc, lr
# after the step; then the logits. Regenerate: python -m tools.parity TCP --scenario seeded_<name> --write-pins
OFFICIAL = {
    # CTX_INIT False, N_CTX 4: random context, drawn between the first and the second CLIP construction
    "random": {
        "steps": [[4.480466842651367, 25.0, 0.01], [3.029721260070801, 25.0, 0.005],
                  [2.4650521278381348, 25.0, 0.005], [2.4515905380249023, 0.0, 0.0]],
        "logits": [[-1.4609333276748657, -1.4526270627975464, -1.4925010204315186, -1.4123338460922241,
                    -1.2685306072235107],
                   [-1.2616307735443115, -1.1613377332687378, -1.2433550357818604, -1.2126750946044922,
                    -0.9081780910491943]],
    },
    # CTX_INIT truthy ("an image of" here), N_CTX 16: the official code uses "a photo of a", 4 vectors
    "init_words": {
        "steps": [[3.4460091590881348, 0.0, 0.01], [3.2314205169677734, 0.0, 0.005],
                  [2.6007919311523438, 25.0, 0.005], [2.629241704940796, 0.0, 0.0]],
        "logits": [[-0.9086775779724121, -0.7033640146255493, -0.8271576166152954, -1.0305347442626953,
                    -0.5564157962799072],
                   [-1.020187258720398, -0.6972888708114624, -1.048050045967102, -1.0418964624404907,
                    -0.65363609790802]],
    },
}  # fmt: skip
SETTINGS = {"random": ["TRAINER.COOP.CTX_INIT", "", "TRAINER.COOP.N_CTX", 4],
            "init_words": ["TRAINER.COOP.CTX_INIT", "an image of", "TRAINER.COOP.N_CTX", 16]}  # fmt: skip


FixedClasses = without_data(TCP, CLASSNAMES)


@pytest.fixture(scope="module")
def seeded_clip(tmp_path_factory) -> str:
    """A tiny CLIP whose text tower is 512 wide (8 heads), embedding width 64; seed 123 plus 0.02 noise."""
    path = tmp_path_factory.mktemp("tcp") / "seeded512.pt"
    torch.save(seeded_state_dict(tiny_clip_config(transformer_width=512, transformer_heads=8)), path)
    return str(path)


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory) -> str:
    """The tests' tiny CLIP with an embedding narrower than its text tower (32 < 64)."""
    path = tmp_path_factory.mktemp("tcp") / "tiny.pt"
    torch.manual_seed(0)
    torch.save(CLIP(tiny_clip_config(embed_dim=32)).state_dict(), path)
    return str(path)


def make_cfg(clip_path: str, *opts):
    cfg = get_cfg_default()
    extend_cfg(cfg)
    cfg.merge_from_list(["TRAINER.NAME", "TCP", "DATASET.NAME", "DescribableTextures", "INPUT.SIZE", (32, 32)])
    cfg.merge_from_list(["MODEL.BACKBONE.PATH", clip_path, "OPTIM.NAME", "adam", "OPTIM.LR", 0.01])
    cfg.merge_from_list(["OPTIM.LR_SCHEDULER", "cosine", "OPTIM.MAX_EPOCH", 2, "TRAINER.COOP.PREC", "fp32", *opts])
    cfg.freeze()
    return cfg


def seeded_run(clip_path: str, *opts) -> tuple[list[list[float]], torch.Tensor]:
    """The recipe of OFFICIAL: (loss, acc, lr) per step and the eval logits."""
    cfg = make_cfg(clip_path, *opts)
    torch.manual_seed(7)
    t = FixedClasses(cfg)
    images = torch.randn(4, 4, 3, 32, 32)
    t.set_model_mode("train")
    t.num_batches = 2
    steps = []
    for i in range(4):
        t.epoch, t.batch_idx = divmod(i, t.num_batches)
        summary = t.forward_backward({"img": images[i], "label": torch.tensor(LABELS[i])})
        steps.append([summary["loss"], summary["acc"], t.get_current_lr()])
    t.set_model_mode("eval")
    extra = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        return steps, t.model_inference(extra)


@pytest.mark.parametrize("setting", sorted(OFFICIAL))
def test_seeded_run_equals_the_official_code(seeded_clip: str, setting: str) -> None:
    steps, logits = seeded_run(seeded_clip, "EXACT", True, *SETTINGS[setting])
    assert steps == OFFICIAL[setting]["steps"]
    assert logits.tolist() == OFFICIAL[setting]["logits"]

    # The default path (prompts cut after the longest EOT) differs by float rounding only.
    steps, logits = seeded_run(seeded_clip, *SETTINGS[setting])
    expected = torch.tensor(OFFICIAL[setting]["steps"])
    torch.testing.assert_close(torch.tensor(steps), expected, atol=2e-3, rtol=0)
    torch.testing.assert_close(logits, torch.tensor(OFFICIAL[setting]["logits"]), atol=5e-3, rtol=0)


def test_fp16_context_draw_is_the_rounded_fp32_draw() -> None:
    """official.py draws the context in fp32 before CLIP is cast: the official fp16 draw (PREC fp16) must take
    the same numbers from the generator and be their rounding, else later draws and values would differ."""
    for shape in ((4, 64), (4, 512), (4, 768)):
        torch.manual_seed(3)
        half = torch.empty(shape, dtype=torch.float16).normal_(std=0.02)
        after_half = torch.rand(3)
        torch.manual_seed(3)
        full = torch.empty(shape).normal_(std=0.02)
        after_full = torch.rand(3)
        assert torch.equal(half, full.half()) and torch.equal(after_half, after_full)


def build_on(clip_path: str, *opts) -> TCP:
    torch.manual_seed(0)
    return FixedClasses(make_cfg(clip_path, "TRAINER.COOP.N_CTX", 4, *opts))


def test_sizes_come_from_the_backbone(tiny_path: str) -> None:
    """Text width 64, embedding 32: four class-aware tokens of width 64 per class, meta-net 32 -> 8 -> 256."""
    t = build_on(tiny_path)
    learner = t.model.learner
    assert learner.ctx.shape == (4, 64)
    assert learner.meta_net.linear1.weight.shape == (8, 32) and learner.meta_net.linear2.weight.shape == (256, 8)
    prompts, tokens = learner(t.model.teacher())
    assert prompts.shape == (5, 77, 64) and tokens.shape == (5, 4, 64)


def test_published_learnable_parameters_at_vit_b16_widths() -> None:
    """MMRL's Table 6: TCP 0.332 M at ViT-B/16 (text width 512, embedding 512): 2,048 + 65,664 + 264,192."""
    torch.manual_seed(0)
    vit_b16_text = CLIP(tiny_clip_config(embed_dim=512, transformer_width=512, transformer_heads=8,
                                         transformer_layers=1, vision_layers=1))  # fmt: skip
    cfg = make_cfg("unused", "TRAINER.COOP.N_CTX", 4, "TRAINER.COOP.CLASS_AWARE_LAYER", 0)  # one text block here
    model = build_tcp(cfg, CLASSNAMES, vit_b16_text)
    assert sum(p.numel() for p in model.learner.parameters() if p.requires_grad) == 331_904


def test_class_aware_tokens_replace_the_context_rows_before_block_9(tiny_path: str) -> None:
    """The text features equal blocks 1-8, then rows 1-4 set to the class-aware tokens, then blocks 9-12."""
    t = build_on(tiny_path, "EXACT", True)
    model, clip_model = t.model, t.model.clip
    with torch.no_grad():
        prompts, tokens = model.learner(model.teacher())
        x = clip_model.transformer(clip_model.position_text(prompts), causal=True, stop=8)
        x = torch.cat([x[:1], tokens.permute(1, 0, 2).float(), x[5:]])
        x = clip_model.transformer(x, causal=True, start=9)
        expected = clip_model.pool_text(clip_model.ln_final(x.permute(1, 0, 2)), model.learner.eot)
        assert torch.equal(model.class_features(), expected / expected.norm(dim=-1, keepdim=True))
    hooks = ClassAwareTokens(tokens, block=9)
    x = torch.randn(77, 5, 64)
    assert torch.equal(hooks.before(8, x), x) and torch.equal(hooks.before(10, x), x)


@pytest.mark.parametrize("layer", [0, 8, 11])
def test_the_fast_text_path_gives_the_exact_features_and_gradients(tiny_path: str, layer: int) -> None:
    """Default path (cut after the longest EOT, SOS and context once before the class-aware tokens, rows by
    EOT after them) against the 77 positions of EXACT True: the same features and gradients up to rounding."""
    names = ["a", "pleated knitted", "red car", "dotted woven striped zigzagged", "x"]  # prompts of 4 lengths
    cfg = make_cfg(tiny_path, "TRAINER.COOP.N_CTX", 4, "TRAINER.COOP.CLASS_AWARE_LAYER", layer)
    torch.manual_seed(0)
    clip_model = build_model(torch.load(tiny_path)).float().requires_grad_(False)
    model = build_tcp(cfg, names, clip_model)
    assert len(set(model.learner.eot.tolist())) == 4
    with torch.no_grad():
        model.learner.ctx.normal_()
    results = []
    for exact in (True, False):
        clip_model.exact = exact
        model.learner.zero_grad()
        features = model.class_features()
        (features * torch.linspace(-1, 1, features.numel()).view_as(features)).sum().backward()
        grads = [p.grad.float().clone() for p in model.learner.parameters()]
        results.append((features.detach(), grads))
    (exact_features, exact_grads), (fast_features, fast_grads) = results
    torch.testing.assert_close(fast_features, exact_features, rtol=0, atol=2e-6)
    for fast, exact in zip(fast_grads, exact_grads):
        torch.testing.assert_close(fast, exact, rtol=1e-3, atol=1e-5)
    assert not torch.equal(fast_features, exact_features)  # another computation, not the same one


def test_frozen_class_features_are_the_released_fp16_clip_s(tiny_path: str) -> None:
    """The official second CLIP is never cast to fp32: its features (and the meta-net) are fp16 in an fp32
    run; META_NET_PREC fp32 uses the run's CLIP and an fp32 meta-net."""
    t = build_on(tiny_path)
    assert t.model.clip.dtype == torch.float32 and t.model.learner.meta_net.linear1.weight.dtype == torch.float16
    tokens = clip.tokenize([f"a photo of a {c}, a type of texture." for c in CLASSNAMES])
    with torch.no_grad():
        released = build_model(torch.load(tiny_path)).encode_text(tokens)
        fp32 = t.model.clip.encode_text(tokens)
    assert torch.equal(t.model.teacher(), released / released.norm(dim=-1, keepdim=True))
    t = build_on(tiny_path, "TRAINER.COOP.META_NET_PREC", "fp32")
    assert t.model.learner.meta_net.linear1.weight.dtype == torch.float32
    torch.testing.assert_close(t.model.teacher(), fp32 / fp32.norm(dim=-1, keepdim=True), rtol=0, atol=1e-6)
    assert not torch.equal(t.model.teacher().half(), released / released.norm(dim=-1, keepdim=True))


def test_the_official_templates() -> None:
    """TCP's two tables (trainers/tcp.py of the official code: CUSTOM_TEMPLATES_ori, CUSTOM_TEMPLATES), as
    configs/trainers/TCP/templates.yaml holds them (teacher, prompts)."""
    teacher, prompt = templates("TCP", "teacher").datasets, templates("TCP").datasets
    assert teacher["FGVCAircraft"] == "a photo of an aircraft {}."
    assert teacher["Food101"] == "a photo of a {}, a type of food."
    assert teacher["DescribableTextures"] == "a photo of a {}, a type of texture."
    assert teacher["EuroSAT"] == "a centered satellite photo of {}."
    assert teacher["UCF101"] == "a photo of a person doing {}."
    assert prompt["StanfordCars"] == "X X X X {}, a type of car"
    assert prompt["DescribableTextures"] == "X X X X {} texture."
    assert prompt["ImageNet"] == "a photo of a {}."
    assert len(teacher) == len(prompt) == 15


def test_adam_eps_reaches_adam_only(tiny_path: str) -> None:
    """TCP's published numbers used upstream Dassl edited to Adam(eps=1e-3); 1e-8 (unedited) stays reachable,
    other optimizers and other methods are untouched."""
    assert [g["eps"] for g in build_on(tiny_path).optim.param_groups] == [1e-3]
    t = build_on(tiny_path, "TRAINER.COOP.ADAM_EPS", 1e-8)
    assert [g["eps"] for g in t.optim.param_groups] == [1e-8]
    assert "eps" not in build_on(tiny_path, "OPTIM.NAME", "sgd").optim.param_groups[0]
    assert build_on(tiny_path, "OPTIM.NAME", "adamw").optim.param_groups[0]["eps"] == 1e-8


@pytest.mark.parametrize("opts, key", [
    (["TRAINER.COOP.N_CTX", 16], "N_CTX 16"),
    (["TRAINER.COOP.CSC", True], "CSC True"),
    (["TRAINER.COOP.CLASS_TOKEN_POSITION", "middle"], "CLASS_TOKEN_POSITION 'middle'"),
    (["TRAINER.COOP.META_NET_PREC", "bf16"], "META_NET_PREC"),
    (["TRAINER.COOP.CLASS_AWARE_LAYER", 12], "CLASS_AWARE_LAYER 12"),
])  # fmt: skip
def test_settings_the_official_code_cannot_run_are_refused(tiny_path: str, opts: list, key: str) -> None:
    cfg = make_cfg(tiny_path, "TRAINER.COOP.N_CTX", 4, *opts)
    with pytest.raises(ConfigError, match=f"TRAINER.COOP.{key}"):
        FixedClasses(cfg)


def test_official_command_line_and_node() -> None:
    """The official script's options run as they are; ImageNet and SUN397 train 25 epochs (its train.py)."""
    argv = ["--trainer", "TCP", "--config-file", "configs/trainers/TCP/vit_b16_ep100_ctxv1.yaml",
            "TRAINER.COOP.N_CTX", "4", "TRAINER.COOP.CSC", "False", "TRAINER.COOP.W", "1.0",
            "TRAINER.COOP.CLASS_TOKEN_POSITION", "end"]  # fmt: skip
    for dataset, epochs in (("dtd", 50), ("imagenet", 25), ("sun397", 25)):
        cfg, _ = train.configure(train.build_parser().parse_args(
            ["--dataset-config-file", os.path.join("configs", "datasets", f"{dataset}.yaml"), *argv]))  # fmt: skip
        assert cfg.OPTIM.MAX_EPOCH == epochs
    assert set(cfg.TRAINER.COOP) == {*TCP.DEFAULTS} and "W" not in cfg.TRAINER.COOP  # W: never read by TCP
    assert cfg.TRAINER.COOP.ADAM_EPS == 1e-3 and cfg.OPTIM.NAME == "adam" and cfg.TRAINER.COOP.CTX_INIT == ""


def test_an_official_checkpoint_loads_and_resumes(tiny_path: str, tmp_path) -> None:
    """The official checkpoint: the prompt learner's state dict under the same keys (``ctx``, ``meta_net.*``,
    ``token_prefix``, ``token_suffix``; fp16 tensors under its default PREC), its Adam state and scheduler."""
    t = build_on(tiny_path)
    t.set_model_mode("train")
    t.num_batches = 2
    t.epoch, t.batch_idx = 0, 0
    t.forward_backward({"img": torch.randn(4, 3, 32, 32), "label": torch.tensor(LABELS[0])})
    state = t.model.learner.state_dict()
    official = {k: v.half() if k == "ctx" else v for k, v in state.items()}
    folder = tmp_path / "prompt_learner"
    folder.mkdir()
    torch.save({"state_dict": official, "epoch": 3, "optimizer": t.optim.state_dict(),
                "scheduler": t.sched.state_dict(), "val_result": None}, folder / "model.pth.tar-3")  # fmt: skip
    (folder / "checkpoint").write_text("model.pth.tar-3\n")

    fresh = build_on(tiny_path)
    fresh.load_model(str(tmp_path), epoch=3)
    loaded = fresh.model.learner.state_dict()
    assert not torch.equal(state["ctx"], official["ctx"].float())  # the fp16 file rounds: the load casts it
    assert all(torch.equal(loaded[k], official[k].to(loaded[k].dtype)) for k in official)

    resumed = build_on(tiny_path)
    assert resumed.resume_model_if_exist(str(tmp_path)) == 3
    group = resumed.optim.state_dict()["param_groups"][0]
    assert group["eps"] == 1e-3
    exp_avg = [s["exp_avg"] for s in resumed.optim.state_dict()["state"].values()]
    assert len(exp_avg) == 5 and torch.equal(exp_avg[0], t.optim.state_dict()["state"][0]["exp_avg"])
