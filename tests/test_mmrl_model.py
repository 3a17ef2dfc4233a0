"""MMRL / MMRL++ modules on a tiny random CLIP: learner, injection, features, inference choice."""

from __future__ import annotations

import pytest
import torch
from tiny import tiny_clip_config
from torch import nn

from clip import clip
from clip.model import CLIP, VisionTransformer
from trainers.mmrl import (
    MMRLModel,
    MultiModalRepresentationLearner,
    Outputs,
    RepresentationLearner,
    RepresentationProjection,
    TokenInjector,
    scored_logits,
)
from trainers.mmrl.mmrlpp import BlendingInjector, LoRAProjection, SRRALearner
from trainers.mmrl.model import draw_proj_rep, feature_distance
from trainers.prompts import class_prompts
from trainers.replay import replay_clip_construction

LAYERS = (6, 7, 8, 9, 10, 11, 12)
K = 5
# Unequal widths (d_v 128, d_t 64, d_out 32) so that a swapped dimension cannot go unnoticed.
TINY = tiny_clip_config(embed_dim=32, vision_width=128)


@pytest.fixture(scope="module")
def tiny() -> CLIP:
    torch.manual_seed(0)
    return CLIP(TINY).eval().requires_grad_(False)


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def count(*modules: nn.Module) -> int:
    return sum(p.numel() for m in modules for p in m.parameters())


def mmrl_model(tiny: CLIP, layers=LAYERS, rep_dim: int = 32, seed: int = 0) -> MMRLModel:
    torch.manual_seed(seed)
    learner = MultiModalRepresentationLearner(
        RepresentationLearner(K, rep_dim, 128, 64, len(layers)), RepresentationProjection(draw_proj_rep(128, 32))
    )
    prompts = clip.tokenize(class_prompts("OxfordPets", ["Abyssinian", "american_bulldog", "tabby_cat"]))
    return MMRLModel(tiny, learner, layers, prompts, alpha=0.7, exact=True)  # the official op order, bit for bit


# ---- parameter counts


def test_learnable_parameters_vit_b16_mmrl_is_paper_figure():
    # d_v 768, d_t 512, d_out 512, d_r 512, K 5, layers 6..12: the paper's 4.992 M.
    learner = RepresentationLearner(5, 512, 768, 512, 7)
    projection = RepresentationProjection(draw_proj_rep(768, 512))
    by_hand = 5 * 512 + 7 * (512 * 768 + 768) + 7 * (512 * 512 + 512) + 768 * 512
    assert count(learner, projection) == by_hand == 4_992_256


def test_learnable_parameters_vit_b16_mmrlpp():
    learner = SRRALearner(5, 512, 768, 512, 7, rank=4)
    projection = LoRAProjection(torch.zeros(768, 64), 512)
    visual = 768 * 512 + 7 * (768 + 768 * 4 + 4 * 512)  # shared W + per layer bias, A, B
    text = 512 * 512 + 7 * (512 + 512 * 4 + 4 * 512)
    assert count(learner, projection) == 5 * 512 + visual + text + 768 * 64 + 64 * 512 == 813_312


# ---- initialisation


def test_mmrl_maps_start_as_copies_of_one_linear():
    learner = RepresentationLearner(K, 32, 64, 48, 3)
    for maps in (learner.compound_rep_tokens_r2vproj, learner.compound_rep_tokens_r2tproj):
        assert all(torch.equal(m.weight, maps[0].weight) and torch.equal(m.bias, maps[0].bias) for m in maps)
        assert maps[0].weight.data_ptr() != maps[1].weight.data_ptr()  # copies, not one shared module
    assert learner.compound_rep_tokens.std().item() == pytest.approx(0.02, rel=0.3)


def test_mmrlpp_maps_equal_their_base_linear_at_init():
    torch.manual_seed(3)
    learner = SRRALearner(K, 32, 64, 48, 3, rank=4)
    torch.manual_seed(3)
    torch.empty(K, 32).normal_(std=0.02)  # R, drawn first
    base_visual = nn.Linear(32, 64)
    r = learner.compound_rep_tokens
    visual, text = learner()
    assert len(visual) == len(text) == 3
    for tokens in visual:  # B = 0: every layer maps like the shared nn.Linear
        torch.testing.assert_close(tokens, base_visual(r), rtol=0, atol=1e-6)
    assert all(layer.A.abs().sum() > 0 and layer.B.abs().sum() == 0 for layer in learner.srra_r2vproj.srra)


def test_replay_draws_what_one_clip_construction_draws(tiny):
    torch.manual_seed(5)
    CLIP(TINY)
    after_construction = torch.get_rng_state()
    torch.manual_seed(5)
    replay_clip_construction(tiny, lambda width, out_dim: torch.empty(0))
    assert torch.equal(torch.get_rng_state(), after_construction)


def test_replay_draws_the_extra_tensor_right_after_visual_proj(tiny):
    torch.manual_seed(5)
    VisionTransformer(32, 8, 128, 12, 2, 32)  # ends with proj: the official P_v^r comes next
    expected = draw_proj_rep(128, 32)
    torch.manual_seed(5)
    assert torch.equal(replay_clip_construction(tiny, draw_proj_rep), expected)


# ---- injection


def record_inputs(transformer, x, inject=None, causal=False):
    """The sequence entering each block, after the injector ran."""
    seen = {}

    def hook(i, x):
        x = inject(i, x) if inject is not None else x
        seen[i] = x
        return x

    transformer(x, causal=causal, inject=hook)
    return seen


@pytest.mark.parametrize("layers", [LAYERS, (3, 9)])
def test_tokens_reach_the_class_token_only_from_the_first_rep_layer(tiny, images, layers):
    first = layers[0]
    model = mmrl_model(tiny, layers)
    with torch.no_grad():
        visual_tokens, _ = model.representation_tokens()
        x = tiny.visual.embed(images)
        plain = record_inputs(tiny.visual.transformer, x)
        injected = record_inputs(tiny.visual.transformer, x, TokenInjector(visual_tokens, layers))
    for i in range(1, first):  # blocks before J see (and so produce) exactly CLIP's sequence
        assert torch.equal(injected[i], plain[i])
    # at J: [c, R^v_J, E] with c and E as CLIP computed them
    assert injected[first].shape[0] == plain[first].shape[0] + K
    assert torch.equal(injected[first][:1], plain[first][:1])
    assert torch.equal(injected[first][1 + K :], plain[first][1:])
    assert torch.equal(injected[first][1 : 1 + K], visual_tokens[0].expand(len(images), -1, -1).transpose(0, 1))
    # block J mixes the tokens in: the class token differs from then on
    assert not torch.allclose(injected[first + 1][0], plain[first + 1][0])


def test_later_rep_layers_replace_the_slots(tiny, images):
    model = mmrl_model(tiny)
    with torch.no_grad():
        visual_tokens, _ = model.representation_tokens()
        seen = record_inputs(tiny.visual.transformer, tiny.visual.embed(images), TokenInjector(visual_tokens, LAYERS))
    for j, layer in enumerate(LAYERS):
        assert seen[layer].shape[0] == 1 + K + 16  # inserted once, then kept at K slots
        assert torch.equal(seen[layer][1 : 1 + K, 1], visual_tokens[j])


def test_text_feature_is_read_at_eot_shifted_by_k(tiny):
    model = mmrl_model(tiny)
    with torch.no_grad():
        _, text_tokens = model.representation_tokens()
        features = model.encode_text(text_tokens)
        injector = TokenInjector(text_tokens, LAYERS)
        tokens = tiny.encode_text_tokens(model.tokenized_prompts, inject=injector)  # whole model, no caching
        eot = model.tokenized_prompts.argmax(dim=-1)
        rows = torch.arange(len(eot))
        assert tokens.shape[1] == 77 + K
        torch.testing.assert_close(features, tokens[rows, eot + K] @ tiny.text_projection, rtol=0, atol=0)
        assert (features - tokens[rows, eot] @ tiny.text_projection).abs().max() > 1e-3


def test_forward_features_and_logits(tiny, images):
    model = mmrl_model(tiny)
    with torch.no_grad():
        out = model(images, zero_shot=True)
        visual_tokens, _ = model.representation_tokens()
        # f_c and f_r by hand through CLIP's own tower with the injector
        tokens = tiny.visual.forward_tokens(images, inject=TokenInjector(visual_tokens, LAYERS))
        f_c = tokens[:, 0] @ tiny.visual.proj
        f_r = tokens[:, 1 : 1 + K].mean(dim=1) @ model.learner.image_encoder.proj_rep
        f_0 = tiny.encode_image(images)
    torch.testing.assert_close(out.image_features, f_c / f_c.norm(dim=-1, keepdim=True))
    torch.testing.assert_close(out.image_features_zs, f_0 / f_0.norm(dim=-1, keepdim=True))
    f_r = f_r / f_r.norm(dim=-1, keepdim=True)
    torch.testing.assert_close(out.logits_rep, 100 * f_r @ out.text_features.t())
    torch.testing.assert_close(out.logits, 100 * out.image_features @ out.text_features.t())
    torch.testing.assert_close(out.logits_fusion, 0.7 * out.logits + 0.3 * out.logits_rep)
    assert out.logits.shape == (3, 3)


def test_inference_text_cache_follows_learnable_tensors(tiny, images):
    model = mmrl_model(tiny)
    with torch.no_grad():
        before = model(images).logits
        torch.testing.assert_close(model(images).logits, before, rtol=0, atol=0)
        model.learner.representation_learner.compound_rep_tokens.add_(0.5)  # as an optimiser step would
        after = model(images).logits
    assert (after - before).abs().max() > 1e-4
    fresh = mmrl_model(tiny)
    fresh.learner.load_state_dict(model.learner.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(fresh(images).logits, after, rtol=0, atol=0)


# ---- MMRL++ deltas


def test_blending_with_beta_one_equals_replacement(tiny, images):
    model = mmrl_model(tiny)
    with torch.no_grad():
        visual_tokens, _ = model.representation_tokens()
        x = tiny.visual.embed(images)
        replaced = tiny.visual.transformer(x, inject=TokenInjector(visual_tokens, LAYERS))
        blended = tiny.visual.transformer(x, inject=BlendingInjector(visual_tokens, LAYERS, beta=1.0))
        partial = tiny.visual.transformer(x, inject=BlendingInjector(visual_tokens, LAYERS, beta=0.5))
    assert torch.equal(blended, replaced)
    assert not torch.allclose(partial, replaced)


def test_blending_keeps_one_minus_beta_of_the_previous_slots():
    tokens = [torch.full((2, 4), 1.0), torch.full((2, 4), 3.0)]
    injector = BlendingInjector(tokens, (2, 5), beta=0.25)
    x = torch.zeros(6, 1, 4)
    x = injector(2, x)  # inserted as is at the first REP_LAYER
    assert x.shape == (8, 1, 4) and torch.equal(x[1:3, 0], tokens[0])
    x = injector(5, x)
    torch.testing.assert_close(x[1:3, 0], 0.25 * tokens[1] + 0.75 * tokens[0])
    assert torch.equal(x[3:], torch.zeros(5, 1, 4))


def test_mmrlpp_representation_projection_equals_class_projection_at_init(tiny):
    projection = LoRAProjection(torch.randn(128, 8), 32)
    x = torch.randn(3, 128)
    assert torch.equal(projection(x, tiny.visual.proj), x @ tiny.visual.proj)


# ---- decoupled inference


@pytest.mark.parametrize(
    "task, subsample, dataset, expected",
    [
        ("B2N", "base", "DescribableTextures", "logits_fusion"),
        ("B2N", "new", "DescribableTextures", "logits"),
        ("B2N", "all", "DescribableTextures", "logits"),
        ("FS", "all", "EuroSAT", "logits_fusion"),
        ("FS", "all", "ImageNet", "logits_fusion"),
        ("CD", "all", "ImageNet", "logits_fusion"),
        ("CD", "all", "ImageNetV2", "logits"),
        ("CD", "all", "OxfordPets", "logits"),
    ],
)
def test_decoupled_inference_scores_the_right_logits(task, subsample, dataset, expected):
    out = Outputs(*(torch.full((1, 2), float(i)) for i in range(5)), None)
    assert scored_logits(out, task, subsample, dataset) is getattr(out, expected)


def test_unknown_task_is_rejected():
    out = Outputs(*(torch.zeros(1, 2) for _ in range(5)), None)
    with pytest.raises(ValueError, match="TASK must be B2N, FS or CD"):
        scored_logits(out, "DG", "all", "ImageNet")


def test_prompts_use_dataset_templates():
    assert class_prompts("OxfordPets", ["great_pyrenees"]) == ["a photo of a great pyrenees, a type of pet."]
    assert class_prompts("DescribableTextures", ["banded"]) == ["banded texture."]
    assert class_prompts("Caltech101", ["face"]) == ["a photo of a face."]


def test_regulariser_distances_by_hand():
    """REG_LOSS: rows (1,0,0)/(0.6,0.8,0) and (0,1,0)/(0,0,1): cosine 1 - mean(0.6, 0) = 0.7; l1 the mean over the
    6 elements of |a - b| = (0.4 + 0.8 + 1 + 1) / 6; mse (0.16 + 0.64 + 1 + 1) / 6."""
    a = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    b = torch.tensor([[0.6, 0.8, 0.0], [0.0, 0.0, 1.0]])
    assert feature_distance(a, b).item() == pytest.approx(0.7)  # the default, the official code's term
    assert feature_distance(a, b, "cosine").item() == pytest.approx(0.7)
    assert feature_distance(a, b, "l1").item() == pytest.approx(3.2 / 6)
    assert feature_distance(a, b, "mse").item() == pytest.approx(2.8 / 6)
    with pytest.raises(ValueError, match="REG_LOSS must be one of cosine, l1, mse"):
        feature_distance(a, b, "l2")
