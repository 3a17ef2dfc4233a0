"""clip/fast.py: each shortcut gives what the plain blocks give (to float rounding), computed here block by
block with CLIP's own ``ResidualAttentionBlock.forward``, on a random tiny CLIP with several attention heads
(2 in the width-128 image tower, 4 in the width-64 text tower)."""

from __future__ import annotations

import pytest
import torch
from tiny import tiny_clip_config

from clip.fast import SharedPrefixText, block_for_queries, block_with_inserted_rows, common_prefix_length
from clip.model import CLIP, causal_mask

TOL = dict(rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def model() -> CLIP:
    torch.manual_seed(0)
    return CLIP(tiny_clip_config(vision_width=128, transformer_heads=4)).eval().requires_grad_(False)


def randn(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_block_for_queries_is_the_block_at_the_first_positions_with_its_gradient(model):
    block = model.visual.transformer.resblocks[-1]
    x = randn(17, 3, 128, seed=1).requires_grad_(True)
    plain_x = x.detach().clone().requires_grad_(True)
    out, expected = block_for_queries(block, x, 4), block(plain_x)[:4]
    torch.testing.assert_close(out, expected, **TOL)
    weights = randn(*expected.shape, seed=7)
    (out * weights).sum().backward()
    (expected * weights).sum().backward()
    torch.testing.assert_close(x.grad, plain_x.grad, **TOL)


def test_block_with_inserted_rows_gives_both_sequences_and_grads_only_to_the_rows(model):
    block = model.visual.transformer.resblocks[5]
    x = randn(17, 3, 128, seed=2)
    rows = randn(5, 3, 128, seed=3).requires_grad_(True)
    out_x, out_y = block_with_inserted_rows(block, x, rows, 1)
    torch.testing.assert_close(out_x, block(x), **TOL)
    plain_rows = rows.detach().clone().requires_grad_(True)
    expected = block(torch.cat([x[:1], plain_rows, x[1:]]))
    torch.testing.assert_close(out_y, expected, **TOL)
    assert not out_x.requires_grad
    weights = randn(*expected.shape, seed=4)
    (out_y * weights).sum().backward()
    (expected * weights).sum().backward()
    torch.testing.assert_close(rows.grad, plain_rows.grad, **TOL)


def test_shared_prefix_text_is_the_causal_tower_at_each_rows_last_position(model):
    """Two groups with suffixes of different lengths, packed together: each row as if run alone."""
    blocks = list(model.transformer.resblocks[6:])
    prefix = randn(4, 1, 64, seed=5)  # the same first 4 positions in every row (e.g. BOT + prompt tokens)
    suffixes = [randn(3, 5, 64, seed=6), randn(1, 2, 64, seed=8), randn(5, 3, 64, seed=9)]
    text = SharedPrefixText(prefix, suffixes)
    text.run(blocks, first=7, last_only=True)
    assert text.packed.shape == (10, 64)
    expected = []
    for suffix in suffixes:
        full = torch.cat([prefix.expand(-1, suffix.shape[1], -1), suffix])
        for block in blocks:
            full = block(full, causal_mask(len(full), full.device, full.dtype))
        expected.append(full[-1])
    torch.testing.assert_close(text.packed, torch.cat(expected), **TOL)


def test_common_prefix_length():
    tokens = torch.tensor([[1, 7, 7, 3, 9], [1, 7, 7, 4, 9], [1, 7, 7, 3, 0]])
    assert common_prefix_length(tokens) == 3
    assert common_prefix_length(tokens[:1]) == 5
