"""CLIP model, injection hook and state-dict handling, on tiny random models."""

import math
import re

import pytest
import torch
import torch.nn.functional as F
from tiny import tiny_clip_config

from clip.model import CLIP, CLIPConfig, Transformer, build_model, config_from_state_dict
from clip.tokenizer import tokenize

TINY = tiny_clip_config()
OTHER = CLIPConfig(  # every field differs from TINY
    embed_dim=32,
    image_resolution=64,
    vision_layers=6,
    vision_width=128,
    vision_patch_size=16,
    context_length=20,
    vocab_size=1000,
    transformer_width=128,
    transformer_heads=2,
    transformer_layers=6,
)

BLOCK_KEYS = [
    "attn.in_proj_weight",
    "attn.in_proj_bias",
    "attn.out_proj.weight",
    "attn.out_proj.bias",
    "ln_1.weight",
    "ln_1.bias",
    "mlp.c_fc.weight",
    "mlp.c_fc.bias",
    "mlp.c_proj.weight",
    "mlp.c_proj.bias",
    "ln_2.weight",
    "ln_2.bias",
]
# Weights OpenAI's release stores in fp16; every other tensor stays fp32.
FP16_KEY = re.compile(r"(visual\.conv1\.weight|.*\.attn\..*|.*\.mlp\..*|visual\.proj|text_projection)$")


def openai_vit_keys(vision_layers: int, text_layers: int) -> set[str]:
    keys = {
        "positional_embedding",
        "text_projection",
        "logit_scale",
        "token_embedding.weight",
        "ln_final.weight",
        "ln_final.bias",
        "visual.class_embedding",
        "visual.positional_embedding",
        "visual.proj",
        "visual.conv1.weight",
        "visual.ln_pre.weight",
        "visual.ln_pre.bias",
        "visual.ln_post.weight",
        "visual.ln_post.bias",
    }
    keys |= {f"visual.transformer.resblocks.{i}.{k}" for i in range(vision_layers) for k in BLOCK_KEYS}
    keys |= {f"transformer.resblocks.{i}.{k}" for i in range(text_layers) for k in BLOCK_KEYS}
    return keys


@pytest.fixture(scope="module")
def tiny() -> CLIP:
    torch.manual_seed(0)
    return CLIP(TINY).eval()


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def texts() -> torch.Tensor:
    return tokenize(["a photo of a cat.", "a photo of a small dog."])


# --- structure and state dicts ---------------------------------------------------------------------------


def test_state_dict_keys_are_openai_vit_keys(tiny):
    sd = tiny.state_dict()
    assert set(sd) == openai_vit_keys(12, 12)
    assert sd["visual.positional_embedding"].shape == (17, 64)  # (32 / 8) ** 2 patches + class token
    assert sd["visual.proj"].shape == (64, 64) and sd["text_projection"].shape == (64, 64)
    assert math.isclose(sd["logit_scale"].item(), math.log(1 / 0.07), rel_tol=1e-6)
    assert list(tiny.buffers()) == []


def test_vision_heads_follow_width_over_64():
    torch.manual_seed(0)
    model = CLIP(OTHER)
    assert model.visual.transformer.resblocks[0].attn.num_heads == 2
    assert model.transformer.resblocks[0].attn.num_heads == 2
    assert TINY.vision_heads == 1


@pytest.mark.parametrize("config", [TINY, OTHER])
def test_config_from_state_dict_infers_every_field(config):
    torch.manual_seed(0)
    assert config_from_state_dict(CLIP(config).state_dict()) == config


def test_a_state_dict_of_neither_tower_is_rejected():
    sd = {"visual.conv1.weight": torch.zeros(32, 3, 3, 3), "text_projection": torch.zeros(512, 1024)}
    with pytest.raises(ValueError, match="neither 'visual.proj' \\(ViT\\) nor 'visual.layer1'"):
        config_from_state_dict(sd)


def test_build_model_round_trip_with_openai_fp16_layout(tiny):
    sd = tiny.state_dict()
    sd_with_extras = {**sd, "input_resolution": torch.tensor(32), "context_length": torch.tensor(77)}
    model = build_model(sd_with_extras)
    assert "input_resolution" in sd_with_extras  # the caller's dict is left alone
    assert not model.training
    assert model.dtype == torch.float16
    loaded = model.state_dict()
    assert set(loaded) == set(sd)
    for key, value in sd.items():
        expected_dtype = torch.float16 if FP16_KEY.match(key) else torch.float32
        assert loaded[key].dtype == expected_dtype, key
        assert torch.equal(loaded[key], value.to(expected_dtype)), key


def test_build_model_names_missing_and_unexpected_keys(tiny):
    sd = dict(tiny.state_dict())
    del sd["visual.ln_post.bias"]
    sd["visual.extra_head.weight"] = torch.zeros(3)
    with pytest.raises(RuntimeError, match=r"missing keys \['visual\.ln_post\.bias'\].*visual\.extra_head\.weight"):
        build_model(sd)


def test_fp16_model_runs_and_matches_fp32(tiny, images, texts):
    half = build_model(tiny.state_dict())
    with torch.no_grad():
        image_half, text_half = half.encode_image(images), half.encode_text(texts)
        image_ref, text_ref = tiny.encode_image(images), tiny.encode_text(texts)
    assert image_half.dtype == text_half.dtype == torch.float16
    torch.testing.assert_close(image_half.float(), image_ref, atol=0.05, rtol=0.05)
    torch.testing.assert_close(text_half.float(), text_ref, atol=0.05, rtol=0.05)


# --- encoders --------------------------------------------------------------------------------------------


def test_logits_are_exp_scale_times_cosine(tiny, images, texts):
    with torch.no_grad():
        logits_per_image, logits_per_text = tiny(images, texts)
        image_features, text_features = tiny.encode_image(images), tiny.encode_text(texts)
    cosine = torch.tensor([[F.cosine_similarity(i, t, dim=0).item() for t in text_features] for i in image_features])
    torch.testing.assert_close(logits_per_image, (1 / 0.07) * cosine, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(logits_per_text, logits_per_image.t())


def test_text_feature_is_causal_and_read_at_eot(tiny, texts):
    after_eot = texts.clone()
    after_eot[:, 12] = 500  # both prompts end before position 12
    before_eot = texts.clone()
    before_eot[:, 2] = 500
    with torch.no_grad():
        base = tiny.encode_text(texts)
        torch.testing.assert_close(tiny.encode_text(after_eot), base, rtol=0, atol=1e-6)
        assert (tiny.encode_text(before_eot) - base).abs().max() > 1e-3


def test_encode_text_is_projected_eot_token(tiny, texts):
    with torch.no_grad():
        tokens = tiny.encode_text_tokens(texts)
        features = tiny.encode_text(texts)
    eot = [7, 8]  # "a photo of a cat." has 6 word tokens, "a photo of a small dog." 7
    assert tokens.shape == (2, 77, 64)
    torch.testing.assert_close(features, tokens[[0, 1], eot] @ tiny.text_projection)


def test_embed_text_is_sequence_first_and_accepts_shorter_prompts(tiny, texts):
    x = tiny.embed_text(texts)
    assert x.shape == (77, 2, 64) and x.dtype == tiny.dtype
    torch.testing.assert_close(tiny.embed_text(texts[:, :10]), x[:10])
    torch.testing.assert_close(x[3, 1], tiny.token_embedding.weight[texts[1, 3]] + tiny.positional_embedding[3])


def test_vision_tokens_and_feature(tiny, images):
    with torch.no_grad():
        tokens = tiny.visual.forward_tokens(images.double())  # the input is cast to the model dtype
        feature = tiny.encode_image(images)
    assert tokens.shape == (2, 17, 64) and tokens.dtype == torch.float32
    # ln_post (unit weight, zero bias at init) is applied to every token, not only the class token
    torch.testing.assert_close(tokens.mean(-1), torch.zeros(2, 17), atol=1e-5, rtol=0)
    torch.testing.assert_close(tokens.var(-1, unbiased=False), torch.ones(2, 17), atol=1e-3, rtol=0)
    torch.testing.assert_close(tokens[:, 0] @ tiny.visual.proj, feature)
    assert tiny.visual.embed(images).shape == (17, 2, 64)


# --- the injection hook ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stack() -> Transformer:
    torch.manual_seed(0)
    return Transformer(width=64, layers=6, heads=2).eval()


def recorder(calls: list, edit=None):
    def inject(i: int, x: torch.Tensor) -> torch.Tensor:
        calls.append((i, x.clone()))
        return edit(i, x) if edit is not None else x

    return inject


def insert_at(block: int, position: int, extra: torch.Tensor):
    def edit(i: int, x: torch.Tensor) -> torch.Tensor:
        if i != block:
            return x
        tokens = extra.unsqueeze(1).expand(-1, x.shape[1], -1)
        return torch.cat([x[:position], tokens, x[position:]])

    return edit


@pytest.fixture(scope="module")
def seq() -> torch.Tensor:
    return torch.randn(10, 3, 64, generator=torch.Generator().manual_seed(2))


@pytest.fixture(scope="module")
def extra() -> torch.Tensor:
    return torch.randn(4, 64, generator=torch.Generator().manual_seed(3))


def test_injector_is_called_before_each_block_in_range(stack, seq):
    calls: list = []
    with torch.no_grad():
        stack(seq, inject=recorder(calls), start=2, stop=5)
    assert [i for i, _ in calls] == [2, 3, 4, 5]


@pytest.mark.parametrize("causal", [False, True])
def test_inserted_tokens_change_length_from_their_block_on(stack, seq, extra, causal):
    plain, injected = [], []
    with torch.no_grad():
        out_plain = stack(seq, causal=causal, inject=recorder(plain))
        out = stack(seq, causal=causal, inject=recorder(injected, insert_at(4, 1, extra)))
    assert out.shape == (14, 3, 64)
    for (i, x_plain), (_, x) in zip(plain[:4], injected[:4], strict=True):
        assert torch.equal(x, x_plain), f"input of block {i} changed"
    assert [x.shape[0] for _, x in injected] == [10, 10, 10, 10, 14, 14]
    # position 0 precedes the insert: with a causal mask it cannot see the new tokens
    if causal:
        torch.testing.assert_close(out[0], out_plain[0], rtol=0, atol=1e-6)
    else:
        assert (out[0] - out_plain[0]).abs().max() > 1e-3


def test_causal_mask_grows_with_tokens_appended_at_the_end(stack, seq, extra):
    with torch.no_grad():
        plain = stack(seq, causal=True)
        out = stack(seq, causal=True, inject=insert_at(3, 10, extra))
    assert out.shape == (14, 3, 64)
    torch.testing.assert_close(out[:10], plain, rtol=0, atol=1e-6)


@pytest.mark.parametrize("causal", [False, True])
def test_split_runs_compose(stack, seq, extra, causal):
    inject = insert_at(3, 1, extra)
    with torch.no_grad():
        whole = stack(seq, causal=causal, inject=inject)
        trunk = stack(seq, causal=causal, inject=inject, stop=2)
        split = stack(trunk, causal=causal, inject=inject, start=3)
        empty = stack(seq, causal=causal, start=1, stop=0)
    assert torch.equal(split, whole)
    assert torch.equal(empty, seq)


@pytest.mark.parametrize(("start", "stop"), [(0, 3), (2, 7), (5, 3)])
def test_invalid_block_range(stack, seq, start, stop):
    with pytest.raises(ValueError, match="outside"):
        stack(seq, start=start, stop=stop)


def test_towers_pass_the_injector(tiny, images, texts, extra):
    with torch.no_grad():
        image_tokens = tiny.visual.forward_tokens(images, inject=insert_at(6, 1, extra))
        text_tokens = tiny.encode_text_tokens(texts, inject=insert_at(6, 1, extra))
        image_feature = tiny.encode_image(images, inject=insert_at(6, 1, extra))
    assert image_tokens.shape == (2, 21, 64) and text_tokens.shape == (2, 81, 64)
    torch.testing.assert_close(image_tokens[:, 0] @ tiny.visual.proj, image_feature)


def test_causal_masks_are_not_module_state(stack, seq):
    keys = list(stack.state_dict())
    with torch.no_grad():
        stack(seq[:7], causal=True)
    assert list(stack.state_dict()) == keys
    assert list(stack.buffers()) == []


def test_mask_made_in_inference_mode_is_usable_for_training(stack, seq):
    x = seq[:9]  # a length no other test uses, so the mask is first built here
    with torch.inference_mode():
        stack(x, causal=True)
    y = x.clone().requires_grad_()
    stack(y, causal=True).sum().backward()
    assert y.grad is not None and torch.isfinite(y.grad).all()
