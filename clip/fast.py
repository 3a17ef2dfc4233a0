"""Less work for the same numbers (in real arithmetic): two generic fast paths through CLIP's blocks.

- ``block_for_queries``: a block whose output is needed at the first ``n`` positions only (the last
  block, read at the class token and a few slots) attends from those ``n`` queries only and runs its
  MLP on them; the keys and values still come from the whole sequence.
- ``SharedPrefixText``: under the causal mask, positions that hold the same tokens in every row (BOT,
  tokens inserted after it, a template's common words) compute the same values in every row, so they
  are computed once (batch 1) and the rows carry only their own suffix, which attends to that prefix;
  rows grouped by EOT position carry no padding, and the last block computes the EOT position only.

- ``block_with_inserted_rows``: one block on a constant sequence and on the same sequence with rows
  inserted (a frozen pass and a prompted pass from the same input); the inserted rows change neither
  the other rows' LayerNorm nor their q/k/v projections, so those are computed once, without gradient.

They change only the float rounding (the reductions see other batch shapes), not what is computed.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from .model import ResidualAttentionBlock


def _project(block: ResidualAttentionBlock, h: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(q, k, v) of the block's attention for (L, N, D) input ``h`` (its in_proj split in three)."""
    attn = block.attn
    return F.linear(h, attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)


def _heads(x: Tensor, n_heads: int) -> Tensor:
    """(L, N, D) -> (N, heads, L, D / heads)."""
    length, batch, width = x.shape
    return x.reshape(length, batch, n_heads, width // n_heads).permute(1, 2, 0, 3)


def _merge(x: Tensor) -> Tensor:
    """(N, heads, L, d) -> (L, N, heads * d)."""
    batch, heads, length, d = x.shape
    return x.permute(2, 0, 1, 3).reshape(length, batch, heads * d)


def _finish(block: ResidualAttentionBlock, x: Tensor, attended: Tensor) -> Tensor:
    attn = block.attn
    x = x + F.linear(attended, attn.out_proj.weight, attn.out_proj.bias)
    return x + block.mlp(block.ln_2(x))


def block_for_queries(block: ResidualAttentionBlock, x: Tensor, n: int) -> Tensor:
    """The block's output at positions ``0..n-1`` of (L, N, D) ``x`` (no mask: an image tower's block)."""
    heads = block.attn.num_heads
    h = block.ln_1(x)
    q, k, v = _project(block, h)
    attended = F.scaled_dot_product_attention(_heads(q[:n], heads), _heads(k, heads), _heads(v, heads))
    return _finish(block, x[:n], _merge(attended))


def _attend(block: ResidualAttentionBlock, x: Tensor, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    heads = block.attn.num_heads
    attended = F.scaled_dot_product_attention(_heads(q, heads), _heads(k, heads), _heads(v, heads))
    return _finish(block, x, _merge(attended))


def block_with_inserted_rows(block: ResidualAttentionBlock, x: Tensor, rows: Tensor, at: int) -> tuple[Tensor, Tensor]:
    """(block(x), block(y)) for (L, N, D) ``x`` without gradient and y = ``x`` with the (K, N, D) ``rows``
    inserted before position ``at`` (no mask: an image tower's block). Gradients reach ``rows`` only."""
    with torch.no_grad():
        projected = _project(block, block.ln_1(x))
        out_x = _attend(block, x, *projected)
    inserted = _project(block, block.ln_1(rows))
    q, k, v = (torch.cat([p[:at], r, p[at:]]) for p, r in zip(projected, inserted))
    return out_x, _attend(block, torch.cat([x[:at], rows, x[at:]]), q, k, v)


class SharedPrefixText:
    """Causal text blocks on sequences whose first ``P`` positions are the same in every row.

    ``prefix`` (P, 1, D) is computed once; ``suffix`` (S, N, D) holds each row's own positions. A row's
    position i of the suffix attends to the whole prefix and to its suffix positions up to i.
    """

    def __init__(self, prefix: Tensor, suffix: Tensor) -> None:
        self.prefix, self.suffix = prefix, suffix

    def run(self, blocks: list[ResidualAttentionBlock], first: int,
            before: Callable[[int, Tensor], Tensor] | None = None, last_only: bool = False) -> None:  # fmt: skip
        """Blocks ``blocks`` (numbered from ``first``); ``before(i, prefix)`` may rewrite the prefix first.

        ``last_only``: only the suffix's last position is read afterwards (EOT, when the suffix ends there),
        so the last block computes that position alone and ``suffix`` becomes (1, N, D).
        """
        for i, block in enumerate(blocks, start=first):
            if before is not None:
                self.prefix = before(i, self.prefix)
            self.step(block, last_only and i == first + len(blocks) - 1)

    def step(self, block: ResidualAttentionBlock, last_only: bool = False) -> None:
        heads = block.attn.num_heads
        p, s = self.prefix, self.suffix
        n_prefix, (n_suffix, batch, _) = p.shape[0], s.shape
        qp, kp, vp = (_heads(t, heads) for t in _project(block, block.ln_1(p)))
        qs, ks, vs = (_heads(t, heads) for t in _project(block, block.ln_1(s)))
        keys = torch.cat([kp.expand(batch, -1, -1, -1), ks], dim=2)
        values = torch.cat([vp.expand(batch, -1, -1, -1), vs], dim=2)
        if last_only:  # the last position sees everything: no mask
            attended_s = F.scaled_dot_product_attention(qs[:, :, -1:], keys, values)
            self.suffix = _finish(block, s[-1:], _merge(attended_s))
            return
        mask = torch.ones(n_suffix, n_prefix + n_suffix, dtype=torch.bool, device=s.device)
        mask[:, n_prefix:] = torch.ones(n_suffix, n_suffix, dtype=torch.bool, device=s.device).tril()
        attended_s = F.scaled_dot_product_attention(qs, keys, values, attn_mask=mask)
        attended_p = F.scaled_dot_product_attention(qp, kp, vp, is_causal=True)
        self.prefix = _finish(block, p, _merge(attended_p))
        self.suffix = _finish(block, s, _merge(attended_s))


def common_prefix_length(tokens: Tensor) -> int:
    """Leading positions at which every row of (N, L) token ids holds the same id."""
    same = (tokens == tokens[:1]).all(dim=0)
    differing = (~same).nonzero()
    return int(differing[0]) if len(differing) else tokens.shape[1]
