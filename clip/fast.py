"""Less work for the same numbers (in real arithmetic): fast paths through CLIP's blocks.

- ``block_for_queries``: a block whose output is needed at the first ``n`` positions only (the last
  block, read at the class token and a few slots) attends from those ``n`` queries only and runs its
  MLP on them. Its keys and values are never formed: a query's scores are its query mapped back
  through the key weights against the normalised inputs, and its output is the value map of the
  weighted mean input (the key bias shifts a query's scores equally, so softmax drops it; the weights
  sum to 1, so the value bias passes through). That replaces two (L x D x D) products by (n x L x D) ones.
- ``SharedPrefixText``: under the causal mask, positions that hold the same tokens in every row (BOT,
  tokens inserted after it, a template's common words) compute the same values in every row, so they
  are computed once (batch 1) and the rows carry only their own suffix, which attends to that prefix.
  Rows are grouped by EOT position, so no padding is computed, and all groups' positions are packed
  into one matrix for the per-position work (LayerNorm, projections, MLP): one large product per
  layer instead of one per group. The last block computes the EOT position only.
- ``block_with_inserted_rows``: one block on a constant sequence and on the same sequence with rows
  inserted (a frozen pass and a prompted pass from the same input); the inserted rows change neither
  the other rows' LayerNorm nor their q/k/v projections, so those are computed once, without gradient.

They change only the float rounding (the reductions see other batch shapes), not what is computed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

if TYPE_CHECKING:  # clip.model uses this module
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


def attend_from(block: ResidualAttentionBlock, hq: Tensor, hkv: Tensor) -> Tensor:
    """The block's attention output (n, N, D) for queries from normalised inputs ``hq`` (n, N, D) over
    normalised inputs ``hkv`` (L, N, D), unmasked, without forming keys or values (module docstring)."""
    attn = block.attn
    heads, width = attn.num_heads, hq.shape[-1]
    d = width // heads
    w_q, w_k, w_v = attn.in_proj_weight.chunk(3)
    b_q, _, b_v = attn.in_proj_bias.chunk(3)
    q = _heads(F.linear(hq, w_q, b_q), heads)  # (N, heads, n, d)
    q_in = torch.einsum("bhnd,hde->bhne", q * d**-0.5, w_k.view(heads, d, width))
    weights = torch.einsum("bhne,lbe->bhnl", q_in, hkv).softmax(dim=-1)
    mean_in = torch.einsum("bhnl,lbe->bhne", weights, hkv)
    return _merge(torch.einsum("bhne,hde->bhnd", mean_in, w_v.view(heads, d, width)) + b_v.view(heads, 1, d))


def block_for_queries(block: ResidualAttentionBlock, x: Tensor, n: int) -> Tensor:
    """The block's output at positions ``0..n-1`` of (L, N, D) ``x`` (no mask: an image tower's block)."""
    h = block.ln_1(x)
    return _finish(block, x[:n], attend_from(block, h[:n], h))


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

    ``prefix`` (P, 1, D) is computed once; each of ``suffixes`` (S_g, N_g, D) holds the own positions of
    a group of N_g rows. A row's position i attends to the whole prefix and to its positions up to i.
    The groups travel packed, position-major, in ``packed`` (sum of S_g * N_g, D).
    """

    def __init__(self, prefix: Tensor, suffixes: list[Tensor]) -> None:
        self.prefix = prefix
        self.shapes = [tuple(s.shape[:2]) for s in suffixes]
        self.packed = torch.cat([s.reshape(-1, s.shape[-1]) for s in suffixes])

    def run(self, blocks: list[ResidualAttentionBlock], first: int,
            before: Callable[[int, Tensor], Tensor] | None = None, last_only: bool = False) -> None:  # fmt: skip
        """Blocks ``blocks`` (numbered from ``first``); ``before(i, prefix)`` may rewrite the prefix first.

        ``last_only``: only each group's last position is read afterwards (EOT, when the suffixes end
        there), so the last block computes that position alone and ``packed`` becomes (sum of N_g, D),
        the groups' rows in order.
        """
        for i, block in enumerate(blocks, start=first):
            if before is not None:
                self.prefix = before(i, self.prefix)
            self.step(block, last_only and i == first + len(blocks) - 1)

    def _groups(self, t: Tensor) -> list[Tensor]:
        """``t`` (packed rows, ...) split into the groups' (S_g, N_g, ...) views."""
        parts = t.split([length * rows for length, rows in self.shapes])
        return [p.view(length, rows, *t.shape[1:]) for p, (length, rows) in zip(parts, self.shapes)]

    def step(self, block: ResidualAttentionBlock, last_only: bool = False) -> None:
        heads = block.attn.num_heads
        p, n_prefix = self.prefix, self.prefix.shape[0]
        hp, hs = block.ln_1(p), block.ln_1(self.packed)
        if last_only:  # each row's last position sees everything: no mask, no keys formed
            ends = [x[-1] for x in self._groups(self.packed)]
            attended = [
                attend_from(block, h[-1:], torch.cat([hp.expand(-1, h.shape[1], -1), h]))[0]
                for h in self._groups(hs)
            ]
            self.packed = _finish(block, torch.cat(ends), torch.cat(attended))
            self.shapes = [(1, rows) for _, rows in self.shapes]
            return
        qp, kp, vp = (_heads(t, heads) for t in _project(block, hp))
        attended = []
        for q, k, v in zip(*(self._groups(t) for t in _project(block, hs))):
            length, rows = q.shape[:2]
            keys = torch.cat([kp.expand(rows, -1, -1, -1), _heads(k, heads)], dim=2)
            values = torch.cat([vp.expand(rows, -1, -1, -1), _heads(v, heads)], dim=2)
            mask = torch.ones(length, n_prefix + length, dtype=torch.bool, device=q.device)
            mask[:, n_prefix:] = torch.ones(length, length, dtype=torch.bool, device=q.device).tril()
            out = F.scaled_dot_product_attention(_heads(q, heads), keys, values, attn_mask=mask)
            attended.append(_merge(out).reshape(length * rows, -1))
        attended_p = F.scaled_dot_product_attention(qp, kp, vp, is_causal=True)
        self.prefix = _finish(block, p, _merge(attended_p))
        self.packed = _finish(block, self.packed, torch.cat(attended))


def text_at_eot(x: Tensor, eot: list[int], shared: int, blocks: list[ResidualAttentionBlock], first: int = 1,
                before: Callable[[int, Tensor], Tensor] | None = None) -> Tensor:  # fmt: skip
    """Output (N, D) at each row's EOT of the causal ``blocks`` (numbered from ``first``) on (L, N, D) ``x``
    whose first ``shared`` (>= 1, <= every EOT) positions hold the same values in every row, as the same
    function of any learned tensor; ``before(i, prefix)`` may rewrite the prefix before block i.
    Rows are grouped by EOT position (``SharedPrefixText``)."""
    groups: dict[int, list[int]] = {}
    for row, position in enumerate(eot):
        groups.setdefault(position, []).append(row)
    index = {p: torch.tensor(rows, device=x.device) for p, rows in groups.items()}
    text = SharedPrefixText(x[:shared, :1], [x[shared : p + 1, index[p]] for p in groups])
    text.run(blocks, first, before, last_only=True)
    return text.packed[torch.cat(list(index.values())).argsort()]


def common_prefix_length(tokens: Tensor) -> int:
    """Leading positions at which every row of (N, L) token ids holds the same id."""
    same = (tokens == tokens[:1]).all(dim=0)
    differing = (~same).nonzero()
    return int(differing[0]) if len(differing) else tokens.shape[1]
