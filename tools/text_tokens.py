"""The learned text tokens of a trained model and the vocabulary words nearest to each (CoOp's interpret_prompt).

CoOp reads its context vectors by the words whose token embeddings are nearest (Euclidean distance).
That comparison means something only where the learned vectors live: context vectors (``ctx``) enter
the text encoder with the word embeddings, so they are compared with the token-embedding table. Deep
prompts (IVLP, PromptSRC, MaPLe) and MMRL's representation tokens enter later, in place of the hidden
states after ``depth`` blocks, where word embeddings are not comparable. There each token is compared
with every vocabulary word's hidden state at that depth: the frozen text encoder run on "<SOS> word",
the word at position 1, where the learned tokens sit right after SOS. At depth 0 this is CoOp's lookup.

Where the tokens are found (the official checkpoint names, which every method keeps):
- ``ctx`` / ``*.ctx``: context vectors at depth 0 (CoOp, KgCoOp, IVLP, MaPLe, PromptSRC; CoCoOp's shared
  context, before its per-image shift; class-specific contexts give one set per class);
- ``text_encoder.transformer.resblocks.<j>.VPT_shallow``: deep text prompts at depth j (IVLP, PromptSRC);
- ``*compound_prompts_text.<k>``: MaPLe's deep text prompts at depth k + 1;
- a ``representation_learner`` (MMRL, MMRL++): the text projection of the representation space,
  F_i^t(R), at depth REP_LAYER_i - 1. For MMRL++ these are the tokens written in, before its residual
  blend with the previous layer's outputs;
- a learner whose prompts do not fit these names says where they enter itself, with
  ``text_token_sets() -> [(name, depth, vectors)]`` (MetaPrompt: one tensor, a slice per layer).
Image-side prompts (VPT, MMRL's visual tokens) live in the image tower, where no words are: not shown.
"""
from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from tqdm import tqdm

from clip.fast import SharedPrefixText
from clip.model import CLIP
from clip.tokenizer import default_tokenizer

_DEEP_TEXT = re.compile(r"text_encoder\.transformer\.resblocks\.(\d+)\.VPT_shallow")
_MAPLE_TEXT = re.compile(r"(?:.*\.)?compound_prompts_text\.(\d+)")


@dataclass
class TokenSet:
    """Learned text tokens entering the text encoder at one depth."""

    name: str  # where they are in the learner (a checkpoint key, or "F_t(R)" for MMRL)
    depth: int  # text blocks run before they enter: 0 = with the word embeddings
    vectors: Tensor  # (n, width), float32 on the CPU
    labels: list[str]  # one per row: "1", "2", ... or "<class> 1" for class-specific contexts


def learned_text_tokens(
    learner: nn.Module, classnames: Sequence[str], rep_layers: Sequence[int] = ()
) -> list[TokenSet]:
    """Every set of learned text tokens of a method's ``learner``, in depth order (see the module docstring).

    ``rep_layers``: MMRL's REP_LAYERS (1-based blocks before which its tokens enter), for a learner that
    has a ``representation_learner``.
    """
    declared = getattr(learner, "text_token_sets", None)
    if declared is not None:
        with torch.no_grad():
            sets = [TokenSet(name, depth, v.detach().float().cpu(), _numbered(len(v))) for name, depth, v in declared()]
        return sorted(sets, key=lambda s: s.depth)
    sets: list[TokenSet] = []
    with torch.no_grad():
        for key, value in learner.state_dict().items():
            vectors = value.detach().float().cpu()
            if key == "ctx" or key.endswith(".ctx"):
                if vectors.dim() == 3:  # class-specific contexts
                    labels = [f"{name} {i + 1}" for name in classnames for i in range(vectors.shape[1])]
                    sets.append(TokenSet(key, 0, vectors.reshape(-1, vectors.shape[-1]), labels))
                else:
                    sets.append(TokenSet(key, 0, vectors, _numbered(len(vectors))))
            elif m := _DEEP_TEXT.fullmatch(key):
                sets.append(TokenSet(key, int(m.group(1)), vectors, _numbered(len(vectors))))
            elif m := _MAPLE_TEXT.fullmatch(key):
                sets.append(TokenSet(key, int(m.group(1)) + 1, vectors, _numbered(len(vectors))))
        representation = getattr(learner, "representation_learner", None)
        if representation is not None:
            _, text = representation()
            for layer, tokens in zip(rep_layers, text, strict=True):
                tokens = tokens.detach().float().cpu()
                sets.append(TokenSet(f"F_t(R) at layer {layer}", layer - 1, tokens, _numbered(len(tokens))))
    return sorted(sets, key=lambda s: s.depth)


def _numbered(n: int) -> list[str]:
    return [str(i + 1) for i in range(n)]


def word(token_id: int) -> str:
    """A vocabulary entry as text ("photo", "ing", "<|startoftext|>"); part of a UTF-8 character as its bytes."""
    tokenizer = default_tokenizer()
    symbol = tokenizer.decoder[token_id]
    if token_id in (tokenizer.bot_id, tokenizer.eot_id):
        return symbol
    raw = bytes(tokenizer.byte_decoder[c] for c in symbol.removesuffix("</w>"))
    try:
        return raw.decode("utf-8").strip() or repr(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return f"<bytes {raw.hex(' ')}>"


@torch.no_grad()
def nearest_words(
    clip_model: CLIP,
    sets: Sequence[TokenSet],
    topk: int = 5,
    vocabulary: Tensor | None = None,
    batch_size: int = 2048,
    show: bool = True,
) -> list[list[list[tuple[str, float]]]]:
    """For each set, for each token: the ``topk`` nearest words and their Euclidean distances, nearest first.

    Depth 0 compares with the token-embedding table; deeper sets with the words' hidden states, computed
    batch by batch (one pass through the deepest block needed). ``vocabulary``: the token ids to compare
    with (default: all of CLIP's).
    """
    device = clip_model.token_embedding.weight.device
    if vocabulary is None:
        vocabulary = torch.arange(clip_model.token_embedding.weight.shape[0])
    vocabulary = vocabulary.to(device)
    best = [(torch.full((len(s.vectors), 0), float("inf")), torch.zeros(len(s.vectors), 0, dtype=torch.long))
            for s in sets]  # fmt: skip
    depths = sorted({s.depth for s in sets})
    bot = default_tokenizer().bot_id
    batches = vocabulary.split(batch_size)
    for ids in tqdm(batches, desc="vocabulary", unit="batch", file=sys.stderr, disable=not show or depths in ([], [0])):
        states = {0: clip_model.token_embedding.weight[ids].float()}
        deep = [d for d in depths if d > 0]
        if deep:  # "<SOS> word": SOS, the same in every row, is computed once (clip/fast.py)
            x = clip_model.embed_text(torch.stack([torch.full_like(ids, bot), ids], dim=1))
            text, done = SharedPrefixText(x[:1, :1], [x[1:]]), 0
            for depth in deep:
                text.run(list(clip_model.transformer.resblocks[done:depth]), first=done + 1)
                states[depth], done = text.packed.float(), depth
        for i, s in enumerate(sets):
            distances = torch.cdist(s.vectors.to(device), states[s.depth], compute_mode="donot_use_mm_for_euclid_dist")
            distances = distances.cpu()
            values = torch.cat([best[i][0], distances], dim=1)
            indices = torch.cat([best[i][1], ids.cpu().expand(len(s.vectors), -1)], dim=1)
            top = values.topk(min(topk, values.shape[1]), dim=1, largest=False)
            best[i] = (top.values, indices.gather(1, top.indices))
    return [
        [[(word(int(j)), float(d)) for d, j in zip(dist_row, id_row)] for dist_row, id_row in zip(*best[i])]
        for i in range(len(sets))
    ]
