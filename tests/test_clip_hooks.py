"""clip's hook sites: hooks that change nothing keep every value bit for bit; ``after`` sees the block's input
and output and the block itself; the last ``after`` is the site after the last block; the text tower runs
from token embeddings as prompt learners need. Each expectation is computed block by block in the test."""

from __future__ import annotations

import pytest
import torch
from tiny import tiny_clip_config

from clip import clip
from clip.model import CLIP, BlockHooks


@pytest.fixture(scope="module")
def model() -> CLIP:
    torch.manual_seed(0)
    return CLIP(tiny_clip_config()).eval().requires_grad_(False)


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))


TEXT = clip.tokenize(["a photo of a cat.", "a red house in the snow."])


class Adapter(BlockHooks):
    """Adds ``scale * tanh(ln_1(block input))`` to the output of blocks ``layers`` (an MMA-like branch)."""

    def __init__(self, layers: set[int], scale: float = 0.5) -> None:
        self.layers, self.scale, self.seen = layers, scale, []

    def after(self, i, block, x_in, x_out):
        self.seen.append(i)
        if i not in self.layers:
            return x_out
        return x_out + self.scale * torch.tanh(block.ln_1(x_in))


def manual_blocks(model_transformer, x: torch.Tensor, layers: set[int], scale: float, mask=None) -> torch.Tensor:
    for i, block in enumerate(model_transformer.resblocks, start=1):
        y = x + block.attn(block.ln_1(x), block.ln_1(x), block.ln_1(x), need_weights=False, attn_mask=mask)[0]
        y = y + block.mlp(block.ln_2(y))
        x = y + scale * torch.tanh(block.ln_1(x)) if i in layers else y
    return x


def test_unused_hooks_keep_every_value(model, images):
    assert torch.equal(model.encode_image(images, inject=BlockHooks()), model.encode_image(images))
    assert torch.equal(model.encode_text(TEXT, inject=BlockHooks()), model.encode_text(TEXT))


def test_after_hook_sees_block_input_output_and_ln_1(model, images):
    hooks = Adapter({5, 12})
    got = model.visual.forward_tokens(images, inject=hooks)
    assert hooks.seen == list(range(1, 13))
    x = manual_blocks(model.visual.transformer, model.visual.embed(images), {5, 12}, 0.5)
    expected = model.visual.ln_post(x.permute(1, 0, 2))
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    assert not torch.allclose(got, model.visual.forward_tokens(images), atol=1e-3)


def test_after_the_last_block_is_before_the_final_norm(model, images):
    shift = torch.randn(64, generator=torch.Generator().manual_seed(2))

    class Last(BlockHooks):
        def after(self, i, block, x_in, x_out):
            return x_out + shift if i == 12 else x_out

    got = model.encode_image(images, inject=Last())
    x = model.visual.transformer(model.visual.embed(images)) + shift
    assert torch.equal(got, model.visual.ln_post(x.permute(1, 0, 2)[:, 0, :]) @ model.visual.proj)


def test_text_hooks_run_under_the_causal_mask(model):
    hooks = Adapter({3})
    got = model.encode_text(TEXT, inject=hooks)
    x = model.embed_text(TEXT)
    mask = torch.full((77, 77), float("-inf")).triu_(1)
    x = manual_blocks(model.transformer, x, {3}, 0.5, mask).permute(1, 0, 2)
    expected = model.ln_final(x)[torch.arange(2), TEXT.argmax(-1)] @ model.text_projection
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)


def test_text_from_token_embeddings(model):
    eot = TEXT.argmax(-1)
    embeddings = model.token_embeddings(TEXT)
    assert torch.equal(model.encode_text_embeddings(embeddings, eot), model.encode_text(TEXT))
    # A prompt learner replaces rows 1..4 (after BOT) by its own vectors.
    ctx = torch.randn(4, 64, generator=torch.Generator().manual_seed(3))
    prompted = torch.cat([embeddings[:, :1], ctx.expand(2, -1, -1), embeddings[:, 5:]], dim=1)
    got = model.encode_text_embeddings(prompted, eot)
    x = (prompted + model.positional_embedding).permute(1, 0, 2)
    x = model.transformer(x, causal=True).permute(1, 0, 2)
    assert torch.equal(got, model.ln_final(x)[torch.arange(2), eot] @ model.text_projection)
    assert not torch.allclose(got, model.encode_text(TEXT))


def test_an_injector_function_is_the_before_site(model, images):
    calls = []

    def inject(i, x):
        calls.append(i)
        return x * 1.5 if i == 7 else x

    class Before(BlockHooks):
        def before(self, i, x):
            return x * 1.5 if i == 7 else x

    assert torch.equal(model.encode_image(images, inject=inject), model.encode_image(images, inject=Before()))
    assert calls == list(range(1, 13))


def test_inexact_text_stops_at_the_longest_eot_with_the_same_features(model):
    """``exact=False``: the transformer sees only positions up to the longest EOT, from token embeddings as from
    token ids; the features (with a hook
    editing every block's input, as deep prompts do) equal the full 77-position run up to float rounding."""
    eot = TEXT.argmax(-1)
    embeddings = model.token_embeddings(TEXT)
    seen = []

    class DeepPrompt(BlockHooks):
        def before(self, i, x):
            seen.append(x.shape[0])
            return torch.cat([x[:1], x[1:3] + 0.1 * i, x[3:]])

    full = model.encode_text_embeddings(embeddings, eot, DeepPrompt())
    full_tokens = model.encode_text(TEXT, DeepPrompt())
    assert set(seen) == {77}
    seen.clear()
    model.exact = False
    try:
        cut = model.encode_text_embeddings(embeddings, eot, DeepPrompt())
        cut_tokens = model.encode_text(TEXT, DeepPrompt())
    finally:
        model.exact = True
    assert set(seen) == {int(eot.max()) + 1} and int(eot.max()) + 1 < 12  # "a red house in the snow." + BOT/EOT
    torch.testing.assert_close(cut, full, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(cut_tokens, full_tokens, rtol=1e-5, atol=1e-6)


def test_the_tails_for_methods_that_run_the_blocks_themselves(model, images):
    """``visual.head`` / ``visual.post`` and ``read_text`` / ``text_tail`` are the towers' own tails: a method that
    runs the blocks itself gets ``encode_image`` / ``encode_text`` bit for bit, and reads other positions."""
    x = model.visual.transformer(model.visual.embed(images))
    assert torch.equal(model.visual.head(x), model.encode_image(images))
    slots = model.visual.post(x, slice(1, 3))
    assert slots.shape == (2, 2, 64) and torch.equal(slots, model.visual.forward_tokens(images)[:, 1:3])
    eot = TEXT.argmax(-1)
    t = model.transformer(model.embed_text(TEXT), causal=True)
    assert torch.equal(model.read_text(t, eot), model.encode_text(TEXT))
    moved = model.read_text(t, eot - 1)  # a method that moved the EOT reads another position
    assert torch.equal(moved, model.encode_text_tokens(TEXT)[torch.arange(2), eot - 1] @ model.text_projection)
    rows = t[eot, torch.arange(2)]
    torch.testing.assert_close(model.text_tail(rows), model.encode_text(TEXT), rtol=0, atol=1e-6)
