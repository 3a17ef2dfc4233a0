"""Deep prompts: learned tokens in the layers of CLIP's towers, the one mechanism of MaPLe, IVLP, VPT and PromptSRC.

Before block 1 the image tower gets ``first`` appended after its other tokens, the text tower gets its
context vectors between the SOS token and "<class name>." (CoOp's way, through ``encode_text_embeddings``).
Before each block i = 2..depth, the prompt rows are overwritten by that layer's prompts: the last n rows
in the image tower, rows 1..n in the text tower. The methods differ only in where the prompts come from
(independent tensors for IVLP/VPT/PromptSRC, text prompts projected to the image width for MaPLe).

As the official code (github muzairkhattak/multimodal-prompt-learning and PromptSRC):
- the image tower's first prompts go through ``ln_pre`` with the patch tokens (ours: row by row, the same
  values, gradients summed over the batch in the same order);
- the independent prompts are drawn in the official order (a plain factory draws only them; the trainer
  draws them inside a replay of CLIP's construction, as the official code: ``official.py``);
- a trainer's checkpoint holds its learner under the official key names (``prompt_learner.ctx``,
  ``image_encoder.VPT``, ``text_encoder.transformer.resblocks.<j>.VPT_shallow``, ...); the official files
  also hold the frozen CLIP, which is skipped on load (``official.py``);
- the log shows the loss only (the official trainers print no accuracy);
- prompts enter a tower through fp16 (``official_cast``), whatever the run's precision: the official
  ``.half()`` casts round them in fp32 runs too, since the concatenation promotes them back.

Not as the official code: widths are read from the backbone (the official MaPLe hard-codes ViT-B/16's 512
and 768).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from yacs.config import CfgNode

from clip import clip
from clip.model import CLIP, BlockHooks

from ..base import ConfigError
from ..prompts import ClassPrompts

PROMPT_STD = 0.02  # every randomly initialised prompt is N(0, 0.02)


def normal_prompts(n: int, width: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """(n, width) prompts drawn as the official code draws each: ``normal_`` over a fresh tensor."""
    prompts = torch.empty(n, width, dtype=dtype)
    nn.init.normal_(prompts, std=PROMPT_STD)
    return prompts


def official_cast(prompts: Tensor, dtype: torch.dtype) -> Tensor:
    """Prompts as the official code feeds them to a tower: cast to fp16 (``.half()``), then to ``dtype``.

    The official code casts every prompt to fp16 where it joins the tokens, whatever PREC is; in an fp32 or
    amp run the concatenation promotes it back to fp32, so the prompts enter rounded to fp16 and their
    gradients leave rounded to fp16 (per image, before the batch sum). In an fp16 run this is the cast.
    """
    return prompts.half().to(dtype)


class DeepPromptHooks(BlockHooks):
    """One tower's prompts for one pass: ``deep[k]`` is written over the prompt rows before block k + 2.

    ``first`` (image tower only) is appended before block 1 through ``ln_pre``; the text tower's layer-0
    prompts are part of its input embeddings instead.
    """

    def __init__(
        self, deep: Sequence[Tensor], text: bool, first: Tensor | None = None, ln_pre: nn.Module | None = None
    ) -> None:
        self.deep, self.text, self.first, self.ln_pre = deep, text, first, ln_pre

    @staticmethod
    def _rows(prompts: Tensor, x: Tensor) -> Tensor:
        # The official ``expand(...).permute(...).half()``: cast last, so the batch sum of the gradient is
        # taken in the prompts' own dtype; through fp16 whatever the run's dtype (see ``official_cast``).
        return official_cast(prompts.expand(x.shape[1], -1, -1).permute(1, 0, 2), x.dtype)

    def within_prefix(self, n: int) -> bool:
        # Text: the deep prompts overwrite positions 1..len(prompts), the same rows in every class prompt.
        return self.text and self.first is None and all(1 + len(d) <= n for d in self.deep)

    def before(self, i: int, x: Tensor) -> Tensor:
        if i == 1 and self.first is not None:
            assert self.ln_pre is not None
            first = self.ln_pre(official_cast(self.first.expand(x.shape[1], -1, -1), x.dtype))
            return torch.cat([x, first.permute(1, 0, 2)], dim=0)
        k = i - 2
        if not 0 <= k < len(self.deep):
            return x
        rows = self._rows(self.deep[k], x)
        n = rows.shape[0]
        if self.text:
            return torch.cat([x[:1], rows, x[1 + n :]], dim=0)
        return torch.cat([x[: x.shape[0] - n], rows], dim=0)


class TextContext(ClassPrompts):
    """The text tower's layer-0 prompts (CoOp's way): ``ctx`` between the SOS token and "<class name>.".

    As the official code: with CTX_INIT and at most 4 vectors, ``ctx`` is the embedding of the first
    ``n_ctx`` tokens of CTX_INIT while the prompt text keeps all of CTX_INIT (2 vectors of "a photo of a"
    give "[v1][v2] of a <class>."); otherwise N(0, 0.02) and "X X ... <class>.".
    """

    def __init__(self, clip_model: CLIP, classnames: Sequence[str], n_ctx: int, ctx_init: str) -> None:
        dtype, width = clip_model.dtype, clip_model.ln_final.weight.shape[0]
        if ctx_init and n_ctx <= 4:
            prefix = ctx_init.replace("_", " ")
            with torch.no_grad():
                ctx = clip_model.token_embeddings(clip.tokenize(prefix))[0, 1 : 1 + n_ctx]
        else:
            ctx = normal_prompts(n_ctx, width, dtype)
            prefix = " ".join(["X"] * n_ctx)
        print(f'Initial text context: "{prefix}" ({n_ctx} context vectors)')
        super().__init__(classnames, prefix, n_ctx, clip_model)
        self.ctx = nn.Parameter(ctx)
        self.shared = 1 + n_ctx  # SOS and the context: the same in every class prompt

    def forward(self) -> Tensor:
        """Token embeddings (n_cls, L, width) of every class prompt, before the positional embedding."""
        ctx = self.ctx.unsqueeze(0).expand(self.n_cls, -1, -1)
        return torch.cat([self.token_prefix, ctx, self.token_suffix], dim=1)


class _PromptedBlock(nn.Module):
    def __init__(self, prompts: Tensor) -> None:
        super().__init__()
        self.VPT_shallow = nn.Parameter(prompts)


class _PromptedBlocks(nn.Module):
    def __init__(self, deep: Sequence[Tensor]) -> None:
        super().__init__()
        # Official block j (0-based) holds the prompts it reads first: ours before block i = j + 1.
        self.resblocks = nn.ModuleDict({str(j): _PromptedBlock(p) for j, p in enumerate(deep, start=1)})


class TowerPrompts(nn.Module):
    """One tower's independent prompts under the official names: ``VPT`` (the image tower's layer 0) and
    ``transformer.resblocks.<j>.VPT_shallow`` (before official block j, 0-based)."""

    def __init__(self, deep: Sequence[Tensor], first: Tensor | None = None) -> None:
        super().__init__()
        if first is not None:
            self.VPT = nn.Parameter(first)
        self.transformer = _PromptedBlocks(deep)

    def hooks(self, text: bool, ln_pre: nn.Module | None = None) -> DeepPromptHooks:
        deep = [block.VPT_shallow for block in self.transformer.resblocks.values()]
        return DeepPromptHooks(deep, text, getattr(self, "VPT", None), ln_pre)


@dataclass
class IndependentInit:
    """Initial independent prompts: the image tower's layer 0 and deep ones, the text tower's deep ones."""

    vision_first: Tensor | None = None
    vision_deep: list[Tensor] = field(default_factory=list)
    text_deep: list[Tensor] = field(default_factory=list)


@dataclass(frozen=True)
class PromptShape:
    """Tokens per layer and depth (layers that get prompts, 0: none) of the two towers."""

    n_vision: int
    vision_depth: int
    n_text: int
    text_depth: int

    @classmethod
    def of(cls, settings: CfgNode) -> PromptShape:
        """From a node with N_CTX_VISION, PROMPT_DEPTH_VISION and, if present, N_CTX_TEXT, PROMPT_DEPTH_TEXT."""
        text = settings.get("N_CTX_TEXT", 0), settings.get("PROMPT_DEPTH_TEXT", 0)
        return cls(settings.N_CTX_VISION, settings.PROMPT_DEPTH_VISION, *text)

    def draw_at(self, init: IndependentInit, v_width: int, t_width: int) -> Callable[[str, int], None]:
        """The ``replay`` site drawing the prompts where the official CLIP constructor draws them."""

        def site(tower: str, j: int) -> None:
            if tower == "visual" and j == -1 and self.vision_depth >= 1:
                init.vision_first = normal_prompts(self.n_vision, v_width)
            elif tower == "visual" and 1 <= j < self.vision_depth:
                init.vision_deep.append(normal_prompts(self.n_vision, v_width))
            elif tower == "text" and 1 <= j < self.text_depth:
                init.text_deep.append(normal_prompts(self.n_text, t_width))

        return site

    def draw(self, clip_model: CLIP) -> IndependentInit:
        """Fresh prompts in the official order, without CLIP's own draws (a model built outside a trainer)."""
        init = IndependentInit()
        site = self.draw_at(init, clip_model.visual.conv1.weight.shape[0], clip_model.ln_final.weight.shape[0])
        site("visual", -1)
        for tower, layers in (("visual", self.vision_depth), ("text", self.text_depth)):
            for j in range(layers):
                site(tower, j)
        return init


def check_depth(depth: int, least: int, layers: int | None, key: str) -> None:
    """A prompt depth must lie within the tower (0 = no prompts, where the method allows it)."""
    if depth < least or (layers is not None and depth > layers):
        within = f"between {least} and the tower's {layers} layers" if layers is not None else f"at least {least}"
        raise ConfigError(f"{key} must be {within}, got {depth}")
