"""CLIP ViT with one transformer for both towers and a single hook for methods that add tokens.

Parameter names, module construction order, random initialisation and floating-point op order all follow
OpenAI's CLIP, so OpenAI state dicts load unchanged, a seeded run draws the same random numbers after the
model is built, and features are bit-identical to OpenAI's implementation in the same precision.
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import nn

from .fast import text_at_eot

Injector = Callable[[int, torch.Tensor], torch.Tensor]
"""Called as ``x = inject(i, x)`` before transformer block ``i`` (1-based) on the (L, N, D) sequence.

It may return a sequence of another length (e.g. with extra tokens); later blocks and masks adapt to it.
"""


class BlockHooks:
    """The hook sites of one transformer pass; a method overrides the ones it needs.

    ``before(i, x)`` runs before block ``i`` (1-based) and may change the sequence length, as an
    ``Injector`` does. ``after(i, block, x_in, x_out)`` runs after block ``i`` with the block's input and
    its output (the residual stream after the MLP), and the block itself, so an adapter can read its own
    ``block.ln_1(x_in)``; ``after`` of the last block is the site "after the last block". The defaults
    return their input unchanged, so unused sites keep every value bit for bit.
    """

    def before(self, i: int, x: torch.Tensor) -> torch.Tensor:
        return x

    def after(self, i: int, block: ResidualAttentionBlock, x_in: torch.Tensor, x_out: torch.Tensor) -> torch.Tensor:
        return x_out

    def within_prefix(self, n: int) -> bool:
        """True if ``before`` writes positions below ``n`` only, the same in every row, and ``after`` is the
        identity: the hooks may then run on a prefix computed once for all rows (``shared`` of
        ``CLIP.encode_text_embeddings``). Hooks that can promise it say so."""
        return False


class _BeforeOnly(BlockHooks):
    """An ``Injector`` seen as hooks."""

    def __init__(self, inject: Injector) -> None:
        self.before = inject  # type: ignore[method-assign]


Hooks = BlockHooks | Injector
"""What the ``inject`` argument of the towers takes: hooks, or an ``Injector`` (shorthand for ``before``)."""


def as_hooks(inject: Hooks | None) -> BlockHooks | None:
    if inject is None or isinstance(inject, BlockHooks):
        return inject
    return _BeforeOnly(inject)

# Keys OpenAI's JIT archives carry as buffers; they are hyper-parameters, not weights.
NON_WEIGHT_KEYS = ("input_resolution", "context_length", "vocab_size")


class LayerNorm(nn.LayerNorm):
    """LayerNorm computed in fp32 and cast back, so fp16 weights keep fp32-stable statistics."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.to(torch.float32)).to(x.dtype)


class QuickGELU(nn.Module):
    """The sigmoid approximation of GELU that CLIP was trained with."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


@lru_cache(maxsize=64)
def causal_mask(length: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Additive (length, length) mask: 0 on and below the diagonal, -inf above.

    Cached per (length, device, dtype) outside any module, so it never enters a state dict. Built outside
    inference mode so that a mask first made during evaluation can still be used in a training step.
    """
    with torch.inference_mode(False):
        return torch.full((length, length), float("-inf"), device=device, dtype=dtype).triu_(1)


class ResidualAttentionBlock(nn.Module):
    """Pre-LN block: x + attn(ln_1(x)), then x + mlp(ln_2(x)), on sequence-first (L, N, D) tensors."""

    def __init__(self, d_model: int, n_head: int) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(d_model, n_head)
        self.ln_1 = LayerNorm(d_model)
        self.mlp = nn.Sequential(
            OrderedDict(
                [
                    ("c_fc", nn.Linear(d_model, d_model * 4)),
                    ("gelu", QuickGELU()),
                    ("c_proj", nn.Linear(d_model * 4, d_model)),
                ]
            )
        )
        self.ln_2 = LayerNorm(d_model)

    def attention(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        if attn_mask is not None:
            attn_mask = attn_mask.to(dtype=x.dtype, device=x.device)
        return self.attn(x, x, x, need_weights=False, attn_mask=attn_mask)[0]

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attention(self.ln_1(x), attn_mask)
        x = x + self.mlp(self.ln_2(x))
        return x


class Transformer(nn.Module):
    """A stack of residual attention blocks shared by the image and the text tower."""

    def __init__(self, width: int, layers: int, heads: int) -> None:
        super().__init__()
        self.width = width
        self.layers = layers
        self.resblocks = nn.ModuleList([ResidualAttentionBlock(width, heads) for _ in range(layers)])

    def forward(
        self,
        x: torch.Tensor,
        causal: bool = False,
        inject: Hooks | None = None,
        start: int = 1,
        stop: int | None = None,
    ) -> torch.Tensor:
        """Run blocks ``start..stop`` (1-based, inclusive; ``stop=None`` is the last) on (L, N, D) ``x``.

        Split runs compose: blocks 1..j-1 then j..L equal 1..L, which lets callers cache a frozen trunk.
        ``causal`` masks attention to later positions, with a mask sized to the sequence at each block.
        ``inject`` gives the hook sites (``BlockHooks``, or an ``Injector`` for the site before each block).
        """
        stop = self.layers if stop is None else stop
        if not (1 <= start <= stop + 1 and stop <= self.layers):
            raise ValueError(f"block range {start}..{stop} is outside 1..{self.layers}")
        hooks = as_hooks(inject)
        for i in range(start, stop + 1):
            block = self.resblocks[i - 1]
            if hooks is not None:
                x = hooks.before(i, x)
            mask = causal_mask(x.shape[0], x.device, x.dtype) if causal else None
            y = block(x, attn_mask=mask)
            x = y if hooks is None else hooks.after(i, block, x, y)
        return x


class VisionTransformer(nn.Module):
    """ViT image tower: patch embedding + class token, the transformer, ``ln_post`` and ``proj``."""

    def __init__(
        self, input_resolution: int, patch_size: int, width: int, layers: int, heads: int, output_dim: int
    ) -> None:
        super().__init__()
        self.input_resolution = input_resolution
        self.output_dim = output_dim
        self.conv1 = nn.Conv2d(3, width, kernel_size=patch_size, stride=patch_size, bias=False)
        scale = width**-0.5
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(scale * torch.randn((input_resolution // patch_size) ** 2 + 1, width))
        self.ln_pre = LayerNorm(width)
        self.transformer = Transformer(width, layers, heads)
        self.ln_post = LayerNorm(width)
        self.proj = nn.Parameter(scale * torch.randn(width, output_dim))

    def embed(self, image: torch.Tensor) -> torch.Tensor:
        """Input sequence (1 + grid**2, N, width) of the transformer: class token first."""
        x = self.conv1(image.to(self.conv1.weight.dtype))
        x = x.flatten(2).permute(0, 2, 1)
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)
        return self.ln_pre(x).permute(1, 0, 2)

    def forward_tokens(self, image: torch.Tensor, inject: Hooks | None = None) -> torch.Tensor:
        """Every output token after ``ln_post``, batch-first (N, L', width), not projected."""
        x = self.transformer(self.embed(image), inject=inject)
        return self.ln_post(x.permute(1, 0, 2))

    def forward(self, image: torch.Tensor, inject: Hooks | None = None) -> torch.Tensor:
        """Image features (N, output_dim): the class token after ``ln_post``, projected."""
        x = self.transformer(self.embed(image), inject=inject).permute(1, 0, 2)
        return self.ln_post(x[:, 0, :]) @ self.proj


@dataclass
class CLIPConfig:
    """Hyper-parameters of a ViT CLIP, named as in OpenAI's constructor.

    The vision tower uses ``vision_width // 64`` heads, OpenAI's rule (their state dicts do not store it).
    """

    embed_dim: int
    image_resolution: int
    vision_layers: int
    vision_width: int
    vision_patch_size: int
    context_length: int
    vocab_size: int
    transformer_width: int
    transformer_heads: int
    transformer_layers: int

    @property
    def vision_heads(self) -> int:
        return self.vision_width // 64

    def __post_init__(self) -> None:
        if self.vision_width < 64:
            raise ValueError(f"vision_width must be at least 64 (heads = width // 64), got {self.vision_width}")


class CLIP(nn.Module):
    """ViT CLIP: ``visual`` image tower and a causal text tower whose parts sit at the top level.

    ``exact`` (True by default): ``encode_text`` and ``encode_text_embeddings`` run all 77 positions, as
    OpenAI's code. False: they run the prompts only up to the longest EOT. Under the causal mask no later
    position reaches an EOT, so the features are the same up to float rounding, for a fraction of the work
    (CoOp's prompts are ~20 of 77 positions). Trainers build it with the run's ``EXACT`` (False by default).
    """

    def __init__(self, config: CLIPConfig, exact: bool = True) -> None:
        super().__init__()
        self.config = config
        self.exact = exact
        self.context_length = config.context_length
        self.visual = VisionTransformer(
            input_resolution=config.image_resolution,
            patch_size=config.vision_patch_size,
            width=config.vision_width,
            layers=config.vision_layers,
            heads=config.vision_heads,
            output_dim=config.embed_dim,
        )
        self.transformer = Transformer(config.transformer_width, config.transformer_layers, config.transformer_heads)
        self.vocab_size = config.vocab_size
        self.token_embedding = nn.Embedding(config.vocab_size, config.transformer_width)
        self.positional_embedding = nn.Parameter(torch.empty(config.context_length, config.transformer_width))
        self.ln_final = LayerNorm(config.transformer_width)
        self.text_projection = nn.Parameter(torch.empty(config.transformer_width, config.embed_dim))
        self.logit_scale = nn.Parameter(torch.ones([]) * math.log(1 / 0.07))
        self.initialize_parameters()

    def initialize_parameters(self) -> None:
        """OpenAI's init; only the text blocks are re-drawn, the vision blocks keep PyTorch's defaults."""
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)
        width, layers = self.transformer.width, self.transformer.layers
        attn_std = width**-0.5
        proj_std = width**-0.5 * (2 * layers) ** -0.5
        fc_std = (2 * width) ** -0.5
        for block in self.transformer.resblocks:
            nn.init.normal_(block.attn.in_proj_weight, std=attn_std)
            nn.init.normal_(block.attn.out_proj.weight, std=proj_std)
            nn.init.normal_(block.mlp.c_fc.weight, std=fc_std)
            nn.init.normal_(block.mlp.c_proj.weight, std=proj_std)
        nn.init.normal_(self.text_projection, std=width**-0.5)

    @property
    def dtype(self) -> torch.dtype:
        return self.visual.conv1.weight.dtype

    def encode_image(self, image: torch.Tensor, inject: Hooks | None = None) -> torch.Tensor:
        return self.visual(image, inject=inject)

    def token_embeddings(self, text: torch.Tensor) -> torch.Tensor:
        """Token embeddings (N, L, width) of token ids (N, L), in the model's dtype: what prompt learners edit."""
        return self.token_embedding(text).to(self.dtype)

    def embed_text(self, text: torch.Tensor) -> torch.Tensor:
        """Input sequence (L, N, width) of the text transformer for token ids (N, L), L <= context_length."""
        return self.position_text(self.token_embeddings(text))

    def position_text(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Token embeddings (N, L, width) plus the positional embedding, sequence-first (L, N, width)."""
        x = embeddings + self.positional_embedding[: embeddings.shape[1]].to(self.dtype)
        return x.permute(1, 0, 2)

    def encode_text_tokens(self, text: torch.Tensor, inject: Hooks | None = None) -> torch.Tensor:
        """Every output token after ``ln_final``, batch-first (N, L', width), not projected."""
        x = self.transformer(self.embed_text(text), causal=True, inject=inject)
        return self.ln_final(x.permute(1, 0, 2)).to(self.dtype)

    def encode_text(self, text: torch.Tensor, inject: Hooks | None = None) -> torch.Tensor:
        """Text features (N, embed_dim): the EOT token (the largest id of each row), projected."""
        eot = text.argmax(dim=-1)
        if not self.exact:
            text = text[:, : int(eot.max()) + 1]
        return self.pool_text(self.encode_text_tokens(text, inject), eot)

    def encode_text_embeddings(
        self, embeddings: torch.Tensor, eot: torch.Tensor, inject: Hooks | None = None, shared: int = 0
    ) -> torch.Tensor:
        """Text features from token embeddings (N, L, width), before the positional embedding.

        The entry point of prompt learners (CoOp and its family), which replace some embeddings by
        learned vectors; ``eot`` (N,) is the EOT position of each row (``tokens.argmax(-1)``).
        ``shared``: the caller's promise that the first ``shared`` positions are the same function of
        its learned tensors in every row (SOS and a context common to all classes). Without ``exact``,
        and no hooks or hooks ``within_prefix(shared)``, those positions are computed once for all rows
        (``clip.fast.text_at_eot``).
        """
        if not self.exact:
            positions = eot.tolist()  # one device sync for the cut and the groups
            embeddings = embeddings[:, : max(positions) + 1]
            shared, hooks = min(shared, *positions), as_hooks(inject)
            if shared > 0 and (hooks is None or hooks.within_prefix(shared)):
                rows = text_at_eot(self.position_text(embeddings), positions, shared,
                                   list(self.transformer.resblocks), before=hooks and hooks.before)  # fmt: skip
                return self.ln_final(rows).to(self.dtype) @ self.text_projection
        x = self.transformer(self.position_text(embeddings), causal=True, inject=inject)
        return self.pool_text(self.ln_final(x.permute(1, 0, 2)).to(self.dtype), eot)

    def pool_text(self, tokens: torch.Tensor, eot: torch.Tensor) -> torch.Tensor:
        """The text feature: the output (N, L, width) at each row's EOT position, projected."""
        return tokens[torch.arange(tokens.shape[0], device=tokens.device), eot] @ self.text_projection

    def forward(self, image: torch.Tensor, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Scaled cosine similarities (logits_per_image, logits_per_text)."""
        image_features = self.encode_image(image)
        text_features = self.encode_text(text)
        image_features = image_features / image_features.norm(dim=1, keepdim=True)
        text_features = text_features / text_features.norm(dim=1, keepdim=True)
        logits_per_image = self.logit_scale.exp() * image_features @ text_features.t()
        return logits_per_image, logits_per_image.t()


def convert_weights(model: nn.Module) -> None:
    """Cast to fp16 what OpenAI's release keeps in fp16: conv/linear/attention weights and the projections.

    Embeddings, LayerNorms and ``logit_scale`` stay fp32. Trainers call ``.float()`` for fp32 or AMP runs.
    """

    def to_half(module: nn.Module) -> None:
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Linear)):
            module.weight.data = module.weight.data.half()
            if module.bias is not None:
                module.bias.data = module.bias.data.half()
        if isinstance(module, nn.MultiheadAttention):
            for name in ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight", "in_proj_bias"):
                tensor = getattr(module, name)
                if tensor is not None:
                    tensor.data = tensor.data.half()
        for name in ("text_projection", "proj"):
            tensor = getattr(module, name, None)
            if isinstance(tensor, nn.Parameter):
                tensor.data = tensor.data.half()

    model.apply(to_half)


def _block_count(state_dict: Mapping[str, torch.Tensor], prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    indices = {int(m.group(1)) for key in state_dict if (m := pattern.match(key))}
    return max(indices) + 1 if indices else 0


def config_from_state_dict(state_dict: Mapping[str, torch.Tensor]) -> CLIPConfig:
    """Infer the architecture from tensor shapes and key names (heads follow OpenAI's width // 64 rule)."""
    if "visual.proj" not in state_dict:
        if any(key.startswith("visual.layer1.") or key.startswith("visual.attnpool.") for key in state_dict):
            raise NotImplementedError("This is a ResNet CLIP state dict; only ViT backbones are supported.")
        raise ValueError("Not a CLIP ViT state dict: it has no 'visual.proj'.")
    needed = ("visual.conv1.weight", "visual.positional_embedding", "text_projection", "positional_embedding")
    needed += ("token_embedding.weight", "ln_final.weight")
    missing = [key for key in needed if key not in state_dict]
    if missing:
        raise KeyError(f"Cannot infer the CLIP architecture: the state dict lacks {missing}")
    conv = state_dict["visual.conv1.weight"]
    patch_size = conv.shape[-1]
    n_positions = state_dict["visual.positional_embedding"].shape[0]
    grid = round(math.sqrt(n_positions - 1))
    if grid * grid + 1 != n_positions:
        raise ValueError(f"visual.positional_embedding has {n_positions} rows, not 1 + a square number of patches")
    text_width = state_dict["ln_final.weight"].shape[0]
    return CLIPConfig(
        embed_dim=state_dict["text_projection"].shape[1],
        image_resolution=patch_size * grid,
        vision_layers=_block_count(state_dict, "visual.transformer.resblocks."),
        vision_width=conv.shape[0],
        vision_patch_size=patch_size,
        context_length=state_dict["positional_embedding"].shape[0],
        vocab_size=state_dict["token_embedding.weight"].shape[0],
        transformer_width=text_width,
        transformer_heads=text_width // 64,
        transformer_layers=_block_count(state_dict, "transformer.resblocks."),
    )


def load_weights(model: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> None:
    """Strict ``load_state_dict`` whose error lists every missing and unexpected key by name."""
    expected, given = set(model.state_dict()), set(state_dict)
    missing, unexpected = sorted(expected - given), sorted(given - expected)
    if missing or unexpected:
        raise RuntimeError(
            f"State dict does not fit {type(model).__name__}: missing keys {missing}, unexpected keys {unexpected}"
        )
    model.load_state_dict(state_dict)


def build_model(state_dict: Mapping[str, torch.Tensor], exact: bool = True) -> CLIP:
    """A CLIP in eval mode with OpenAI's fp16 weight layout, its architecture inferred from ``state_dict``.

    The caller's dict is not modified; OpenAI's non-weight entries (input_resolution, ...) are ignored.
    ``exact``: see ``CLIP``.
    """
    weights = {key: value for key, value in state_dict.items() if key not in NON_WEIGHT_KEYS}
    model = CLIP(config_from_state_dict(weights), exact)
    convert_weights(model)
    load_weights(model, weights)
    return model.eval()
