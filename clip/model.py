"""CLIP with a ViT or a ResNet image tower, one transformer class for the ViT and the text tower, and
hook sites for methods that add tokens or adapters to the transformers.

Parameter names, module construction order, random initialisation and floating-point op order all follow
OpenAI's CLIP, so OpenAI state dicts load unchanged, a seeded run draws the same random numbers after the
model is built, and features are bit-identical to OpenAI's implementation in the same precision.
The ResNet image tower (RN50 ... RN50x64) is in ``clip.resnet``.
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
from .resnet import ModifiedResNet

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
        return self.head(self.transformer(self.embed(image), inject=inject))

    def post(self, x: torch.Tensor, positions: int | slice = 0) -> torch.Tensor:
        """``ln_post`` of the transformer's output (L', N, width) at ``positions``, batch-first: (N, width) for
        one position, (N, n, width) for a slice. The tail for methods that read other tokens than the class token."""
        return self.ln_post(x.permute(1, 0, 2)[:, positions, :])

    def head(self, x: torch.Tensor) -> torch.Tensor:
        """Image features (N, output_dim) from the transformer's output (L', N, width): the class token after
        ``ln_post``, projected (the tail of ``forward``, for methods that run the blocks themselves)."""
        return self.post(x) @ self.proj


VIT, RESNET = "ViT", "ResNet"  # the two image-tower families (``CLIPConfig.family``)


@dataclass
class CLIPConfig:
    """Hyper-parameters of a CLIP, named as in OpenAI's constructor.

    As there, ``vision_layers`` is an int (transformer blocks) for a ViT image tower, or four ints (blocks
    per ResNet stage) for a ResNet one, whose ``vision_patch_size`` is None. The image tower's heads
    follow OpenAI's rules (their state dicts do not store them): ``vision_width // 64`` for a ViT,
    ``vision_width * 32 // 64`` (64 dimensions per head of the attention pooling) for a ResNet.
    """

    embed_dim: int
    image_resolution: int
    vision_layers: int | tuple[int, int, int, int]
    vision_width: int
    vision_patch_size: int | None
    context_length: int
    vocab_size: int
    transformer_width: int
    transformer_heads: int
    transformer_layers: int

    @property
    def family(self) -> str:
        return RESNET if isinstance(self.vision_layers, tuple) else VIT

    @property
    def vision_heads(self) -> int:
        return self.vision_width * 32 // 64 if self.family == RESNET else self.vision_width // 64

    def __post_init__(self) -> None:
        if isinstance(self.vision_layers, list):  # from JSON or YAML
            self.vision_layers = tuple(self.vision_layers)
        if self.family == VIT:
            if self.vision_width < 64:
                raise ValueError(f"vision_width must be at least 64 (heads = width // 64), got {self.vision_width}")
            return
        if len(self.vision_layers) != 4 or min(self.vision_layers) < 1:
            raise ValueError(f"a ResNet tower has 4 stages of 1 block or more, got vision_layers {self.vision_layers}")
        if self.vision_width < 2 or self.vision_width % 2:
            raise ValueError(f"a ResNet vision_width must be even and at least 2, got {self.vision_width}")
        if self.image_resolution % 32:
            raise ValueError(f"a ResNet tower takes images of a multiple of 32 pixels, got {self.image_resolution}")


class CLIP(nn.Module):
    """CLIP: ``visual`` image tower (ViT or ResNet) and a causal text tower whose parts sit at the top level.

    ``exact`` (True by default): ``encode_text`` and ``encode_text_embeddings`` run all 77 positions, as
    OpenAI's code, and a ResNet's attention pooling attends from every position and keeps the first, as
    the code in OpenAI's published archives and in the official methods' copy of it (CoOp's, CoCoOp's,
    KgCoOp's). False: the prompts run only up to the longest EOT (under the causal mask no later position
    reaches an EOT) and the pooling computes its one query (OpenAI's current ``model.py``): the same
    features up to float rounding, for a fraction of the work (CoOp's prompts are ~20 of 77 positions).
    Trainers build it with the run's ``EXACT`` (False by default).
    """

    def __init__(self, config: CLIPConfig, exact: bool = True) -> None:
        super().__init__()
        self.config = config
        self.context_length = config.context_length
        self.visual: VisionTransformer | ModifiedResNet
        if config.family == RESNET:
            self.visual = ModifiedResNet(
                layers=config.vision_layers,
                output_dim=config.embed_dim,
                heads=config.vision_heads,
                input_resolution=config.image_resolution,
                width=config.vision_width,
            )
        else:
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
        self.exact = exact
        self.initialize_parameters()

    def initialize_parameters(self) -> None:
        """OpenAI's init, in its order: the text blocks are re-drawn, the ViT blocks keep PyTorch's
        defaults, a ResNet tower re-draws its attention pooling (``ModifiedResNet.initialize_parameters``)."""
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)
        if isinstance(self.visual, ModifiedResNet):
            self.visual.initialize_parameters()
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

    @property
    def exact(self) -> bool:
        return self._exact

    @exact.setter
    def exact(self, value: bool) -> None:
        """Set on the ResNet's pooling too (``AttentionPool2d.all_queries``), so its image features follow."""
        self._exact = value
        if isinstance(getattr(self, "visual", None), ModifiedResNet):
            self.visual.attnpool.all_queries = value

    def encode_image(self, image: torch.Tensor, inject: Hooks | None = None) -> torch.Tensor:
        """Image features (N, embed_dim). ``inject`` needs a ViT tower (a ResNet has no token sequence)."""
        if inject is None:
            return self.visual(image)
        if not isinstance(self.visual, VisionTransformer):
            raise TypeError("hooks into the image tower need a ViT CLIP; this one has a ResNet image tower")
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
                return self.text_tail(rows)
        x = self.transformer(self.position_text(embeddings), causal=True, inject=inject)
        return self.read_text(x, eot)

    def read_text(self, x: torch.Tensor, eot: torch.Tensor) -> torch.Tensor:
        """Text features (N, embed_dim) from the text transformer's output (L', N, width): ``ln_final`` on every
        position, then the output at ``eot`` (N,) (each row's EOT, or where a method moved it), projected."""
        return self.pool_text(self.ln_final(x.permute(1, 0, 2)).to(self.dtype), eot)

    def text_tail(self, rows: torch.Tensor) -> torch.Tensor:
        """Text features (N, embed_dim) from the text transformer's output at each row's EOT only (N, width), as
        ``clip.fast.text_at_eot`` gives it: ``ln_final``, projected."""
        return self.ln_final(rows).to(self.dtype) @ self.text_projection

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


def _text_fields(state_dict: Mapping[str, torch.Tensor]) -> dict[str, int]:
    """The text tower's and the joint space's fields (heads follow OpenAI's width // 64 rule)."""
    text_width = state_dict["ln_final.weight"].shape[0]
    return dict(
        embed_dim=state_dict["text_projection"].shape[1],
        context_length=state_dict["positional_embedding"].shape[0],
        vocab_size=state_dict["token_embedding.weight"].shape[0],
        transformer_width=text_width,
        transformer_heads=text_width // 64,
        transformer_layers=_block_count(state_dict, "transformer.resblocks."),
    )


def _require(state_dict: Mapping[str, torch.Tensor], keys: tuple[str, ...]) -> None:
    missing = [key for key in keys if key not in state_dict]
    if missing:
        raise KeyError(f"Cannot infer the CLIP architecture: the state dict lacks {missing}")


TEXT_KEYS = ("text_projection", "positional_embedding", "token_embedding.weight", "ln_final.weight")


def _square_side(rows: int, key: str, what: str) -> int:
    side = round(math.sqrt(rows - 1))
    if side * side + 1 != rows:
        raise ValueError(f"{key} has {rows} rows, not 1 + a square number of {what}")
    return side


def config_from_state_dict(state_dict: Mapping[str, torch.Tensor]) -> CLIPConfig:
    """Infer the architecture, ViT or ResNet, from tensor shapes and key names, as OpenAI's ``build_model``."""
    if "visual.proj" not in state_dict:
        if any(key.startswith(("visual.layer1.", "visual.attnpool.")) for key in state_dict):
            return _resnet_config(state_dict)
        raise ValueError(
            "Not a CLIP state dict: it has neither 'visual.proj' (ViT) nor 'visual.layer1' / 'visual.attnpool' "
            "(ResNet)"
        )
    _require(state_dict, ("visual.conv1.weight", "visual.positional_embedding", *TEXT_KEYS))
    conv = state_dict["visual.conv1.weight"]
    patch_size = conv.shape[-1]
    key = "visual.positional_embedding"
    grid = _square_side(state_dict[key].shape[0], key, "patches")
    return CLIPConfig(
        image_resolution=patch_size * grid,
        vision_layers=_block_count(state_dict, "visual.transformer.resblocks."),
        vision_width=conv.shape[0],
        vision_patch_size=patch_size,
        **_text_fields(state_dict),
    )


def _resnet_config(state_dict: Mapping[str, torch.Tensor]) -> CLIPConfig:
    """A ResNet CLIP's config: blocks per stage, the width of the first block, the attention pooling's grid."""
    key = "visual.attnpool.positional_embedding"
    _require(state_dict, ("visual.layer1.0.conv1.weight", key, *TEXT_KEYS))
    grid = _square_side(state_dict[key].shape[0], key, "feature-map positions")
    layers = tuple(_block_count(state_dict, f"visual.layer{i}.") for i in (1, 2, 3, 4))
    if min(layers) < 1:
        raise KeyError(f"Cannot infer the CLIP architecture: the ResNet stages hold {layers} blocks")
    return CLIPConfig(
        image_resolution=32 * grid,
        vision_layers=layers,
        vision_width=state_dict["visual.layer1.0.conv1.weight"].shape[0],
        vision_patch_size=None,
        **_text_fields(state_dict),
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
