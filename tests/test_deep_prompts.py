"""Deep prompts (trainers/deep_prompts.py) and the four methods on it: MaPLe, IVLP, VPT, PromptSRC."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clip.model import CLIP, CLIPConfig, LayerNorm
from dassl.config import get_cfg_default
from tests.tiny import seeded_state_dict, tiny_clip_config, without_data
from trainers.base import ConfigError
from trainers.config import dataset_layer, extend_cfg
from trainers.deep_prompts import ivlp, maple, promptsrc, vpt
from trainers.deep_prompts.mechanism import DeepPromptHooks, PromptShape, TextContext
from trainers.deep_prompts.promptsrc import TEMPLATES, gpa_weights

CLASSNAMES = ["red_apple", "dog", "cat", "house", "tree"]
# MaPLe's official code hard-codes ViT-B/16's widths (768, 512): its reference ran on a CLIP of those
# widths with 3 layers per tower (patch 16 at 32 px: 4 patches).
MAPLE_CLIP = tiny_clip_config(
    embed_dim=512, vision_width=768, vision_patch_size=16, vision_layers=3, transformer_width=512,
    transformer_heads=8, transformer_layers=3,
)
SETTINGS = {
    "MaPLe": ("MAPLE", {"N_CTX": 2, "CTX_INIT": "a photo of a", "PROMPT_DEPTH": 3}),
    "IVLP": ("IVLP", {"N_CTX_VISION": 2, "N_CTX_TEXT": 3, "CTX_INIT": "a photo of a", "PROMPT_DEPTH_VISION": 12,
                      "PROMPT_DEPTH_TEXT": 9}),
    "VPT": ("VPT", {"N_CTX_VISION": 8, "PROMPT_DEPTH_VISION": 12}),
    "PromptSRC": ("PROMPTSRC", {"N_CTX_VISION": 4, "N_CTX_TEXT": 4, "CTX_INIT": "a photo of a",
                                "PROMPT_DEPTH_VISION": 9, "PROMPT_DEPTH_TEXT": 9, "GPA_MEAN": 1.5, "GPA_STD": 1.0}),
}
# Printed by the OFFICIAL code (github muzairkhattak/multimodal-prompt-learning @69bce21, PromptSRC @bb95c77)
# on upstream Dassl, CPU, fp32 (its prompt casts to fp16 kept, as its fp32 runs have them; MaPLe's fp16 proj
# layer and .cuda() calls removed), same recipe as below. Regenerate each entry with the command above it
# (tools/parity, recipe "steps"; --write-pins prints the entry).
OFFICIAL: dict[str, dict[str, list[float]]] = {
    # python -m tools.parity MaPLe --scenario seeded --write-pins
    "MaPLe": {
        "losses": [1.6601314544677734, 1.5701773166656494, 1.7109676599502563, 1.6987274885177612],
        "lrs": [0.05, 0.025, 0.025, 0.0],
        "logits0": [-0.28136, -0.32224, -0.56193, -0.72212, -0.57119],
        "logits5": [0.18254, -0.07673, -0.2427, -0.38233, -0.13105],
    },
    # python -m tools.parity IVLP --scenario seeded --write-pins
    "IVLP": {
        "losses": [3.0155885219573975, 1.6077238321304321, 1.6181529760360718, 1.618517279624939],
        "lrs": [0.05, 0.025, 0.025, 0.0],
        "logits0": [-2.10882, -2.06047, -2.05387, -2.07661, -2.04556],
        "logits5": [-1.04421, -1.00365, -0.96442, -1.00816, -0.97275],
    },
    # python -m tools.parity VPT --scenario seeded --write-pins
    "VPT": {
        "losses": [2.209378242492676, 1.6709561347961426, 1.7637903690338135, 1.69814932346344],
        "lrs": [0.05, 0.025, 0.025, 0.0],
        "logits0": [-2.89909, -2.72985, -2.71265, -2.36696, -3.53038],
        "logits5": [-2.76278, -2.99276, -2.78831, -2.75517, -3.32162],
    },
    # python -m tools.parity PromptSRC --scenario seeded --write-pins
    "PromptSRC": {
        "losses": [5.265894889831543, 4.424088001251221, 4.027401924133301, 3.847912073135376],
        "lrs": [0.05, 0.025, 0.025, 0.0],
        "logits0": [-2.0598, -2.22772, -2.17087, -2.2448, -2.17969],
        "logits5": [-1.31353, -1.48222, -1.44082, -1.49243, -1.44995],
    },
}


def tiny_weights(path: str, config: CLIPConfig) -> None:
    """The pins' seeded CLIP (tests/tiny.py) saved as a state dict."""
    torch.save(seeded_state_dict(config), path)


def make_cfg(method: str, clip_path: str, **overrides: object) -> object:
    cfg = get_cfg_default()
    extend_cfg(cfg)
    cfg.merge_from_list(["TRAINER.NAME", method, "DATASET.NAME", "DescribableTextures", "INPUT.SIZE", (32, 32)])
    cfg.merge_from_list(["MODEL.BACKBONE.PATH", clip_path, "OPTIM.NAME", "sgd", "OPTIM.LR", 0.05])
    cfg.merge_from_list(["OPTIM.MAX_EPOCH", 2, "OPTIM.LR_SCHEDULER", "cosine"])
    node, values = SETTINGS[method]
    cfg.TRAINER[node].update({**values, "PREC": "fp32", **overrides})
    return cfg


def fixed_trainer(cfg: object) -> object:
    """The method's trainer on the five class names, no data (the steps are fed by hand)."""
    base = {"MaPLe": maple.MaPLe, "IVLP": ivlp.IVLP, "VPT": vpt.VPT, "PromptSRC": promptsrc.PromptSRC}[cfg.TRAINER.NAME]

    cfg.freeze()
    torch.manual_seed(7)
    return without_data(base, CLASSNAMES)(cfg)


def run_steps(t: object, steps: range, g: torch.Generator) -> tuple[list[float], list[float]]:
    """Two epochs of two batches (the lr steps, PromptSRC aggregates), as the official recipe."""
    images = torch.randn(4, 4, 3, 32, 32, generator=g)
    labels = torch.tensor([[0, 1, 2, 3], [4, 0, 1, 2], [3, 4, 0, 1], [2, 3, 4, 0]])
    t.set_model_mode("train")
    t.num_batches = 2
    losses, lrs = [], []
    for step in steps:
        t.epoch, t.batch_idx = divmod(step, 2)
        losses.append(t.forward_backward({"img": images[step], "label": labels[step]})["loss"])
        lrs.append(t.get_current_lr())
        if t.batch_idx == 1 and isinstance(t, promptsrc.PromptSRC):
            t.aggregate_epoch()  # what its after_epoch does before the base's (no checkpoint to write here)
    return losses, lrs


@pytest.mark.parametrize("method", ["MaPLe", "IVLP", "VPT", "PromptSRC"])
def test_seeded_run_reproduces_the_official_implementation(tmp_path, method):
    tiny_weights(str(tmp_path / "clip.pt"), MAPLE_CLIP if method == "MaPLe" else tiny_clip_config())
    cfg = make_cfg(method, str(tmp_path / "clip.pt"))
    # EXACT True, the official op order: with prompts rounded to fp16 in the loop, the default path's float
    # rounding grows to ~1e-4 in these logits after four steps (python -m tools.parity METHOD reports it).
    cfg.EXACT = True
    t = fixed_trainer(cfg)
    g = torch.Generator().manual_seed(0)
    losses, lrs = run_steps(t, range(4), g)
    t.set_model_mode("eval")
    with torch.no_grad():
        out = t.model(torch.randn(6, 3, 32, 32, generator=g))
    expected = OFFICIAL[method]
    assert losses == pytest.approx(expected["losses"], rel=1e-5)
    assert lrs == pytest.approx(expected["lrs"], rel=1e-9)
    assert out[0].tolist() == pytest.approx(expected["logits0"], abs=1e-4)
    assert out[5].tolist() == pytest.approx(expected["logits5"], abs=1e-4)


def test_a_promptsrc_run_resumed_after_an_epoch_still_aggregates(tmp_path):
    """The GPA sum is in the checkpointed learner: a run resumed from epoch 1's state ends as an uninterrupted one."""
    tiny_weights(str(tmp_path / "clip.pt"), tiny_clip_config())

    def trainer() -> object:
        depths = {"PROMPT_DEPTH_VISION": 2, "PROMPT_DEPTH_TEXT": 2}
        return fixed_trainer(make_cfg("PromptSRC", str(tmp_path / "clip.pt"), **depths))

    def final_logits(t: object, g: torch.Generator) -> torch.Tensor:
        t.set_model_mode("eval")
        with torch.no_grad():
            return t.model(torch.randn(6, 3, 32, 32, generator=g))

    whole = trainer()
    g = torch.Generator().manual_seed(0)
    run_steps(whole, range(4), g)
    expected = final_logits(whole, g)

    first = trainer()
    run_steps(first, range(2), torch.Generator().manual_seed(0))
    name = first.LEARNER_NAME
    saved = {k: v.clone() for k, v in first._models[name].state_dict().items()}
    optim, sched = first._optims[name].state_dict(), first._scheds[name].state_dict()
    assert int(saved["gpa.epochs"]) == 1

    resumed = trainer()
    resumed._models[name].load_state_dict(saved)
    resumed._optims[name].load_state_dict(optim)
    resumed._scheds[name].load_state_dict(sched)
    g = torch.Generator().manual_seed(0)
    run_steps(resumed, range(2, 4), g)
    assert torch.equal(final_logits(resumed, g), expected)


def test_gpa_weights_are_the_normalised_gaussian_over_the_epochs():
    density = np.exp(-0.5 * ((np.arange(1, 6) - 3.0) / 2.0) ** 2)
    assert gpa_weights(3, 2, 5) == pytest.approx(density / density.sum(), rel=1e-12)
    assert len(TEMPLATES) == 60 and len(set(TEMPLATES)) == 60 and all("{}" in t for t in TEMPLATES)
    # Few-shot: the official file's commented alternative (45/5) for five datasets, its own values elsewhere.
    gpa = {"TRAINER.PROMPTSRC.GPA_MEAN": 45, "TRAINER.PROMPTSRC.GPA_STD": 5}
    assert dataset_layer("PromptSRC", "EuroSAT", "FS").values == gpa
    assert dataset_layer("PromptSRC", "EuroSAT", "B2N").values == {}
    assert dataset_layer("PromptSRC", "Caltech101", "FS").values == {}


def test_first_image_prompts_go_through_ln_pre_exactly_as_appended_before_it():
    """The official code appends the prompts before ln_pre; ours after, row by row: same bits, same gradients."""
    torch.manual_seed(0)
    ln = LayerNorm(64)
    with torch.no_grad():
        ln.weight.normal_()
        ln.bias.normal_()
    tokens = torch.randn(3, 5, 64)  # batch-first (N, L, D), before ln_pre
    prompts = torch.randn(2, 64, requires_grad=True)
    reference = ln(torch.cat([tokens, prompts.expand(3, -1, -1).half()], dim=1)).permute(1, 0, 2)  # cat promotes
    (reference.square().sum()).backward()
    grad_reference = prompts.grad.clone()
    prompts.grad = None
    ours = DeepPromptHooks([], text=False, first=prompts, ln_pre=ln).before(1, ln(tokens).permute(1, 0, 2))
    (ours.square().sum()).backward()
    assert torch.equal(ours, reference)
    assert torch.equal(prompts.grad, grad_reference)


def test_deep_prompts_overwrite_the_prompt_rows_of_each_tower():
    deep = [torch.full((2, 4), 7.0), torch.full((2, 4), 9.0)]
    x = torch.zeros(6, 3, 4)
    text = DeepPromptHooks(deep, text=True)
    image = DeepPromptHooks(deep, text=False)
    assert torch.equal(text.before(1, x), x)  # layer 0 is the input embeddings' business
    assert text.before(2, x)[1:3].eq(7).all() and text.before(2, x)[[0, 3, 4, 5]].eq(0).all()
    assert image.before(3, x)[4:].eq(9).all() and image.before(3, x)[:4].eq(0).all()
    assert torch.equal(image.before(4, x), x)  # beyond the depth: untouched


def test_text_deep_prompts_on_a_prefix_computed_once_give_the_full_features_and_gradients():
    """IVLP-style text: context after SOS, deep prompts over the same rows; the fast path runs SOS and the
    context once for all classes, with the hooks applied to that prefix alone."""
    torch.manual_seed(0)
    clip_model = CLIP(tiny_clip_config(transformer_heads=4)).float().requires_grad_(False)
    text = TextContext(clip_model, CLASSNAMES, 3, "")
    deep = [torch.nn.Parameter(torch.randn(3, 64) * 0.1) for _ in range(8)]
    hooks = DeepPromptHooks(deep, text=True)
    assert text.shared == 4 and hooks.within_prefix(4) and not hooks.within_prefix(3)
    assert not DeepPromptHooks(deep, text=False).within_prefix(4)
    weights = torch.randn(len(CLASSNAMES), 64, generator=torch.Generator().manual_seed(1))
    results = []
    for cut in (True, False):
        clip_model.exact = not cut
        for p in [text.ctx, *deep]:
            p.grad = None
        features = clip_model.encode_text_embeddings(text(), text.eot, hooks, text.shared)
        (features * weights).sum().backward()
        results.append([features.detach(), text.ctx.grad.clone(), *(p.grad.clone() for p in deep)])
    for k, (fast, full) in enumerate(zip(*results)):
        # The deep prompts' gradients leave through fp16 (the official cast): per class row on the full path,
        # once for the shared prefix on the fast one, so they agree to fp16 rounding; the rest to fp32's.
        tol = 1e-5 if k < 2 else 2e-3
        torch.testing.assert_close(fast, full, rtol=tol, atol=tol * float(full.abs().max()))


VIT_B16 = CLIPConfig(embed_dim=512, image_resolution=224, vision_layers=12, vision_width=768, vision_patch_size=16,
                     context_length=77, vocab_size=49408, transformer_width=512, transformer_heads=8,
                     transformer_layers=12)


@pytest.mark.parametrize(
    ("method", "overrides", "expected"),
    [
        # MaPLe paper Table 6 (3.55 M); IVLP 2+2 depth 12, VPT 8 depth 12, PromptSRC 4+4 depth 9 (Table 6: 0.046 M).
        ("MaPLe", {"N_CTX": 2, "PROMPT_DEPTH": 9}, 3_555_072),
        ("IVLP", {"N_CTX_VISION": 2, "N_CTX_TEXT": 2, "PROMPT_DEPTH_VISION": 12, "PROMPT_DEPTH_TEXT": 12}, 30_720),
        ("VPT", {"N_CTX_VISION": 8, "PROMPT_DEPTH_VISION": 12}, 73_728),
        ("PromptSRC", {"N_CTX_VISION": 4, "N_CTX_TEXT": 4, "PROMPT_DEPTH_VISION": 9, "PROMPT_DEPTH_TEXT": 9}, 46_080),
    ],
)
def test_learnable_parameters_at_vit_b16_are_the_published_counts(method, overrides, expected):
    cfg = make_cfg(method, "", **overrides)
    learners = {  # the modules holding every trained tensor (PromptSRC's: IVLP's, without the frozen targets)
        "MaPLe": lambda clip: maple.build_maple(cfg, CLASSNAMES, clip).learner,
        "IVLP": lambda clip: ivlp.build_ivlp(cfg, CLASSNAMES, clip).learner,
        "VPT": lambda clip: vpt.build_vpt(cfg, CLASSNAMES, clip).learner,
        "PromptSRC": lambda clip: promptsrc.PromptSRCLearner(clip, CLASSNAMES, cfg.TRAINER.PROMPTSRC),
    }
    with torch.device("meta"):
        learner = learners[method](CLIP(VIT_B16).requires_grad_(False))
    assert sum(p.numel() for p in learner.parameters() if p.requires_grad) == expected


@pytest.mark.parametrize(
    ("method", "overrides", "message"),
    [
        ("IVLP", {"PROMPT_DEPTH_TEXT": 0}, "TRAINER.IVLP.PROMPT_DEPTH_TEXT must be at least 1"),
        ("VPT", {"PROMPT_DEPTH_VISION": 0}, "TRAINER.VPT.PROMPT_DEPTH_VISION must be at least 1"),
        ("MaPLe", {"PROMPT_DEPTH": 13}, "TRAINER.MAPLE.PROMPT_DEPTH must be between 1 and the tower's 3 layers"),
    ],
)
def test_prompt_depths_outside_the_towers_are_config_errors(tmp_path, method, overrides, message):
    config = tiny_clip_config(vision_layers=3, transformer_layers=3)
    tiny_weights(str(tmp_path / "clip.pt"), config)
    with pytest.raises(ConfigError, match=message):
        fixed_trainer(make_cfg(method, str(tmp_path / "clip.pt"), **overrides))


def test_resuming_from_an_official_whole_model_checkpoint_is_refused_evaluating_it_is_not(tmp_path):
    config = tiny_clip_config(vision_layers=3, transformer_layers=3)
    tiny_weights(str(tmp_path / "clip.pt"), config)
    t = fixed_trainer(make_cfg("VPT", str(tmp_path / "clip.pt"), PROMPT_DEPTH_VISION=3))
    learner = t._models["prompt_learner"]
    # The official layout: the learner's tensors among the whole model's (frozen CLIP included).
    official = {**learner.state_dict(), "image_encoder.conv1.weight": torch.zeros(64, 3, 8, 8), "logit_scale": 1.0}
    with pytest.raises(ConfigError, match="training cannot resume from it"):
        t.adapt_checkpoint("prompt_learner", {"state_dict": official}, "official.pth")
    loaded = t.learner_state(learner, {k: v + 1 for k, v in official.items()}, "official.pth")
    assert torch.equal(loaded["image_encoder.VPT"], learner.state_dict()["image_encoder.VPT"] + 1)
    assert "image_encoder.conv1.weight" not in loaded


@pytest.mark.parametrize("method", ["IVLP", "VPT", "PromptSRC"])
def test_a_plain_factory_draws_only_the_prompts_it_keeps(method):
    """Outside a trainer the factory draws the independent prompts in the official order and nothing else
    (PromptSRC's trainer also replays two more CLIP constructions, the official draws: official.py)."""
    cfg = make_cfg(method, "")
    factory = {"IVLP": ivlp.build_ivlp, "VPT": vpt.build_vpt, "PromptSRC": promptsrc.build_promptsrc}[method]
    clip_model = CLIP(tiny_clip_config()).float()
    torch.manual_seed(5)
    learner = factory(cfg, CLASSNAMES, clip_model).learner
    after_factory = torch.get_rng_state()
    torch.manual_seed(5)
    init = PromptShape.of(cfg.TRAINER[SETTINGS[method][0]]).draw(clip_model)  # CTX_INIT words: no text draw
    assert torch.equal(torch.get_rng_state(), after_factory)
    assert torch.equal(learner.image_encoder.VPT, init.vision_first)
