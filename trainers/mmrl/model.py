"""MMRL's model: the representation space, its injection into CLIP, the two branches, loss and inference.

A shared representation space R (K tokens of width d_r) is mapped, for every layer i of
REP_LAYERS, into both CLIP encoders by linear maps F_i^v and F_i^t. The K visual tokens sit right
after the class token, the K textual tokens right after BOT; they are inserted at the first
REP_LAYER and replaced at each later one. Two image features come out: f_c from the class token
through CLIP's frozen projection, and f_r, the mean of the K token outputs through a trainable
projection P_v^r. Training scores both against text features computed with the tokens and keeps
f_c and the text features close to zero-shot CLIP; inference scores with the fused logits where
the classes were trained on, and with the class-token logits only for unseen classes/datasets.

Data flow (each arrow one function below)::

    R --RepresentationLearner--> tokens per REP_LAYER --TokenInjector--> CLIP towers
    image --MMRLModel.encode_image--> f_c, f_r (and zero-shot f_0)
    prompts --MMRLModel.encode_text--> w;   mmrl_loss / scored_logits

``build_mmrl(cfg, classnames, clip_model)`` builds the model without a trainer; ``MMRLParts`` holds
the four pieces MMRL++ (mmrlpp.py) replaces.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor
from torch.utils.checkpoint import checkpoint
from yacs.config import CfgNode

from clip import clip
from clip.fast import block_for_queries, block_with_inserted_rows, common_prefix_length, text_at_eot
from clip.model import CLIP

from ..base import ConfigError
from ..logits import clip_logits, l2_normalize
from ..prompts import class_prompts
from ..text_cache import FrozenFeatures, UnchangedCache

# ----------------------------------------------------------------------------------------------
# The learnable parts. Attribute names are the official checkpoint keys.


class RepresentationLearner(nn.Module):
    """R (K x d_r, N(0, 0.02)) and, per REP_LAYER, the maps F_i^v: d_r->d_v and F_i^t: d_r->d_t.

    MMRL builds ONE nn.Linear per modality and gives every layer a copy of it, so all F_i^v start
    equal (and all F_i^t). R, the visual Linear and the text Linear are drawn in that order.
    """

    def __init__(self, n_tokens: int, rep_dim: int, visual_dim: int, text_dim: int, n_layers: int, **map_options):
        super().__init__()
        self.n_layers = n_layers
        self.compound_rep_tokens = nn.Parameter(torch.empty(n_tokens, rep_dim))
        nn.init.normal_(self.compound_rep_tokens, std=0.02)
        self.build_maps(nn.Linear(rep_dim, visual_dim), nn.Linear(rep_dim, text_dim), n_layers, **map_options)

    def build_maps(self, visual: nn.Linear, text: nn.Linear, n_layers: int) -> None:
        self.compound_rep_tokens_r2vproj = nn.ModuleList(copy.deepcopy(visual) for _ in range(n_layers))
        self.compound_rep_tokens_r2tproj = nn.ModuleList(copy.deepcopy(text) for _ in range(n_layers))

    def map_visual(self, r: Tensor, index: int) -> Tensor:
        return self.compound_rep_tokens_r2vproj[index](r)

    def map_text(self, r: Tensor, index: int) -> Tensor:
        return self.compound_rep_tokens_r2tproj[index](r)

    def forward(self) -> tuple[list[Tensor], list[Tensor]]:
        """(visual tokens, textual tokens): one K x d tensor per REP_LAYER, in layer order."""
        r = self.compound_rep_tokens
        visual, text = [], []
        for i in range(self.n_layers):
            # Text before visual, layer by layer, as the official code: the order in which R's
            # gradient is accumulated in backward, and so its last bits, depend on it.
            text.append(self.map_text(r, i))
            visual.append(self.map_visual(r, i))
        return visual, text


class RepresentationProjection(nn.Module):
    """P_v^r of MMRL: a trainable d_v x d_out matrix with its own random init (not a copy of P_v^c)."""

    def __init__(self, proj_rep: Tensor):
        super().__init__()
        self.proj_rep = nn.Parameter(proj_rep)

    def forward(self, x: Tensor, class_proj: Tensor) -> Tensor:
        return x @ self.proj_rep.to(x.dtype)


class MultiModalRepresentationLearner(nn.Module):
    """Every tensor MMRL trains, and nothing else: this module's state dict is the checkpoint.

    The attribute names give the official keys: ``representation_learner.*`` and
    ``image_encoder.*`` (the official code keeps P_v^r inside its copy of CLIP's image encoder).
    """

    def __init__(self, representation_learner: RepresentationLearner, projection: nn.Module):
        super().__init__()
        self.representation_learner = representation_learner
        self.image_encoder = projection


# ----------------------------------------------------------------------------------------------
# Putting the tokens into CLIP's transformer.


class TokenInjector:
    """CLIP ``Injector``: before block i of REP_LAYERS, put that layer's K tokens after position 0.

    Position 0 is the class token (image) or BOT (text). At the first REP_LAYER the tokens are
    inserted, which lengthens the sequence by K; at later REP_LAYERS the K slots are updated.
    """

    def __init__(self, tokens: Sequence[Tensor], layers: Sequence[int]):
        if len(tokens) != len(layers):
            raise ValueError(f"{len(tokens)} token sets for {len(layers)} REP_LAYERS")
        self.tokens = dict(zip(layers, tokens))
        self.first = layers[0]

    def __call__(self, i: int, x: Tensor) -> Tensor:
        tokens = self.tokens.get(i)
        if tokens is None:
            return x
        new = tokens.expand(x.shape[1], -1, -1).permute(1, 0, 2)  # (K, N, D), like x
        if i == self.first:
            return torch.cat([x[:1], new, x[1:]], dim=0)
        k = new.shape[0]
        return torch.cat([x[:1], self.update(new, x[1 : 1 + k]), x[1 + k :]], dim=0)

    def update(self, new: Tensor, previous: Tensor) -> Tensor:
        """Content of the K slots at a later REP_LAYER. MMRL: the previous outputs are dropped."""
        return new


# ----------------------------------------------------------------------------------------------
# The model.


class Outputs(NamedTuple):
    logits: Tensor  # class-token branch, 100 * cos(f_c, w)
    logits_rep: Tensor  # representation branch, 100 * cos(f_r, w)
    logits_fusion: Tensor  # alpha * logits + (1 - alpha) * logits_rep
    image_features: Tensor  # f_c, normalised
    text_features: Tensor  # w, normalised, one row per class
    image_features_zs: Tensor | None  # zero-shot CLIP f_0, normalised (only when asked for)


class MMRLModel(nn.Module):
    """Frozen CLIP plus the learnable parts; ``forward(image)`` gives both branches' logits.

    The frozen parts see constant inputs, so two results are reused without changing any value:
    the text blocks before the first REP_LAYER are run once on the class prompts, and the image
    blocks before it are run once per batch for both the MMRL pass and the zero-shot pass.
    In inference (no grad) the text features are kept until a learnable tensor changes.
    ``text_features_zs()`` are zero-shot CLIP's (normalised) features of the same prompts, w0.

    Unless ``exact`` (``EXACT True``), it also skips work whose result is never read, which changes the
    float rounding only: the prompts are cut after the longest EOT; BOT, the K
    tokens after it and a template's common first words are the same in every prompt, so under the
    causal mask they are computed once for all classes (``clip.fast.SharedPrefixText``); the last
    image block runs its queries for the class token and the K slots only; the first REP_LAYER's image
    block projects the trunk rows once for the zero-shot and the MMRL pass. ``text_chunk`` > 0 runs
    the text side that many classes at a time, recomputing each chunk in backward (activation
    checkpointing): peak memory is bounded by a chunk at any class count, and the numbers do not change.
    """

    def __init__(
        self,
        clip_model: CLIP,
        learner: MultiModalRepresentationLearner,
        rep_layers: Sequence[int],
        tokenized_prompts: Tensor,
        alpha: float,
        injector: Callable[[Sequence[Tensor], Sequence[int]], TokenInjector] = TokenInjector,
        exact: bool = False,
        text_chunk: int = 0,
    ):
        super().__init__()
        self.clip = clip_model
        self.learner = learner
        self.rep_layers = tuple(rep_layers)
        self.alpha = alpha
        self.injector = injector
        self.exact = exact
        self.text_chunk = text_chunk
        self.eot = tokenized_prompts.argmax(dim=-1).tolist()  # fixed with the prompts: plain ints
        self.shared_prefix = 0
        if not exact:
            tokenized_prompts = tokenized_prompts[:, : max(self.eot) + 1]
            # Positions that hold the same token in every prompt, before any EOT: computed once.
            self.shared_prefix = min(common_prefix_length(tokenized_prompts), min(self.eot))
        self.register_buffer("tokenized_prompts", tokenized_prompts, persistent=False)
        self.text_trunk = FrozenFeatures(self._text_trunk, clip_model.text_projection, follow_autocast=True)
        self.text_features_zs = FrozenFeatures(self._zero_shot_text, clip_model.text_projection)
        self._inference = UnchangedCache()

    @property
    def dtype(self) -> torch.dtype:
        return self.clip.dtype

    def representation_tokens(self) -> tuple[list[Tensor], list[Tensor]]:
        visual, text = self.learner.representation_learner()
        return [t.to(self.dtype) for t in visual], [t.to(self.dtype) for t in text]

    def encode_image(
        self, image: Tensor, visual_tokens: Sequence[Tensor], zero_shot: bool = False
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """(f_c, f_r, f_0 or None), unnormalised."""
        visual = self.clip.visual
        first = self.rep_layers[0]
        x = visual.transformer(visual.embed(image.to(self.dtype)), stop=first - 1)  # shared frozen trunk
        k = len(visual_tokens[0])
        inject = self.injector(visual_tokens, self.rep_layers)
        z, start = x, first
        if zero_shot and not self.exact and first < visual.transformer.layers:
            # Block `first` of both passes at once: the tokens inserted after the class token do not change
            # the trunk rows' projections, computed once for the zero-shot and the MMRL pass.
            tokens = inject(first, x)[1 : 1 + k]
            z, x = block_with_inserted_rows(visual.transformer.resblocks[first - 1], x, tokens, 1)
            start = first + 1
        f_0 = None
        if zero_shot:
            with torch.no_grad():
                f_0 = visual.head(self._image_blocks(z, start, None, 1))
        x = self._image_blocks(x, start, inject, 1 + k)
        f_c = visual.head(x)
        # As the official code: ln_post on each token, then the mean over the K slots.
        slots = visual.post(x, slice(1, 1 + k)).mean(dim=1)
        f_r = self.learner.image_encoder(slots, visual.proj)
        return f_c, f_r, f_0

    def _image_blocks(self, x: Tensor, first: int, inject: TokenInjector | None, n_read: int) -> Tensor:
        """Image blocks ``first..L`` (``inject`` before each); unless exact, the last one only at the ``n_read``
        positions read afterwards."""
        transformer = self.clip.visual.transformer
        if self.exact:
            return transformer(x, inject=inject, start=first)
        last = transformer.layers
        x = transformer(x, inject=inject, start=first, stop=last - 1)
        if inject is not None:
            x = inject(last, x)
        return block_for_queries(transformer.resblocks[last - 1], x, n_read)

    def _zero_shot_text(self) -> Tensor:
        return l2_normalize(self.clip.encode_text(self.tokenized_prompts))

    def _text_trunk(self) -> Tensor:
        """Output of the text blocks before the first REP_LAYER on the class prompts (constant: kept)."""
        x = self.clip.embed_text(self.tokenized_prompts)
        return self.clip.transformer(x, causal=True, stop=self.rep_layers[0] - 1)

    def encode_text(self, text_tokens: Sequence[Tensor]) -> Tensor:
        """Class text features w (unnormalised), read at EOT, which the K tokens moved by K."""
        trunk = self.text_trunk()
        if self.text_chunk <= 0 or self.text_chunk >= trunk.shape[1] or not torch.is_grad_enabled():
            return self._encode_text_rows(trunk, 0, *text_tokens)
        chunks = []
        for start in range(0, trunk.shape[1], self.text_chunk):
            chunk = trunk[:, start : start + self.text_chunk]
            chunks.append(checkpoint(self._encode_text_rows, chunk, start, *text_tokens, use_reentrant=False))
        return torch.cat(chunks)

    def _encode_text_rows(self, trunk: Tensor, start: int, *text_tokens: Tensor) -> Tensor:
        """Text features of the prompts ``start..`` whose trunk outputs are (L, N, D) ``trunk``."""
        injector = self.injector(text_tokens, self.rep_layers)
        first = self.rep_layers[0]
        eot = self.eot[start : start + trunk.shape[1]]
        if not self.exact:
            # BOT and the template's first words are computed once for all rows; rows are grouped by EOT
            # position, so a group's suffix ends at its EOT (no padding), the one position read.
            blocks = list(self.clip.transformer.resblocks[first - 1 :])
            return self.clip.text_tail(text_at_eot(trunk, eot, self.shared_prefix, blocks, first, injector))
        x = self.clip.transformer(trunk, causal=True, inject=injector, start=first)
        return self.clip.read_text(x, torch.tensor(eot, device=x.device) + len(text_tokens[0]))

    def _tokens_and_text(self) -> tuple[list[Tensor], Tensor]:
        """(visual tokens, text features); in inference, kept until a learnable tensor changes (step, load, move)."""

        def compute() -> tuple[list[Tensor], Tensor]:
            visual, text = self.representation_tokens()
            return visual, self.encode_text(text)

        return self._inference.get(self.learner.parameters(), compute)  # type: ignore[return-value]

    def forward(self, image: Tensor, zero_shot: bool = False) -> Outputs:
        visual_tokens, text_features = self._tokens_and_text()
        f_c, f_r, f_0 = self.encode_image(image, visual_tokens, zero_shot)
        f_c, f_r, text_features = l2_normalize(f_c), l2_normalize(f_r), l2_normalize(text_features)
        if f_0 is not None:
            f_0 = l2_normalize(f_0)
        # Fixed scale 100, as the official code (not logit_scale.exp()).
        logits = clip_logits(100.0, f_c, text_features, normalize=False)
        logits_rep = clip_logits(100.0, f_r, text_features, normalize=False)
        # The paper fuses probabilities; the official code fuses logits, which we follow.
        logits_fusion = self.alpha * logits + (1 - self.alpha) * logits_rep
        return Outputs(logits, logits_rep, logits_fusion, f_c, text_features, f_0)


REG_LOSSES = ("cosine", "l1", "mse")  # TRAINER.MMRL.REG_LOSS: the paper's Table 9 compares the three


def feature_distance(features: Tensor, target: Tensor, kind: str = "cosine") -> Tensor:
    """How far the (normalised) features are from zero-shot CLIP's, one row per sample or class.

    ``cosine``: 1 - the mean cosine similarity of the rows (the paper's and the official code's term);
    ``l1``: the mean absolute difference and ``mse`` the mean squared difference, over every element.
    """
    if kind == "cosine":
        return 1 - torch.mean(F.cosine_similarity(features, target, dim=1))
    if kind == "l1":
        return F.l1_loss(features, target)
    if kind == "mse":
        return F.mse_loss(features, target)
    raise ValueError(f"REG_LOSS must be one of {', '.join(REG_LOSSES)}, got {kind!r}")


def mmrl_loss(out: Outputs, label: Tensor, text_features_zs: Tensor, alpha: float, reg_weight: float,
              reg_loss: str = "cosine") -> Tensor:  # fmt: skip
    """alpha CE(f_c w) + (1 - alpha) CE(f_r w) + lambda d(f_c, f_0) + lambda d(w, w0).

    d is ``reg_loss`` (``feature_distance``): by default 1 - cos, averaged over samples (f_c) and classes (w).
    """
    ce_class = F.cross_entropy(out.logits, label)
    ce_rep = F.cross_entropy(out.logits_rep, label)
    reg_image = feature_distance(out.image_features, out.image_features_zs, reg_loss)
    reg_text = feature_distance(out.text_features, text_features_zs, reg_loss)
    return alpha * ce_class + (1 - alpha) * ce_rep + reg_weight * reg_image + reg_weight * reg_text


def scored_logits(out: Outputs, task: str, subsample: str, dataset: str) -> Tensor:
    """Decoupled inference: fused logits on the classes trained on, class-token logits elsewhere.

    B2N: base -> fused, otherwise (new, all) -> class.  FS: fused.
    CD (also domain generalisation): ImageNet, the source, -> fused; any other dataset -> class.
    """
    if task == "B2N":
        return out.logits_fusion if subsample == "base" else out.logits
    if task == "FS":
        return out.logits_fusion
    if task == "CD":
        return out.logits_fusion if dataset == "ImageNet" else out.logits
    raise ValueError(f"TASK must be B2N, FS or CD, got {task!r}")


# ----------------------------------------------------------------------------------------------
# Building the model.


class MMRLParts:
    """The pieces of MMRL that MMRL++ replaces, chosen once at build time from ``cfg.TRAINER.<NODE>``."""

    NODE = "MMRL"

    def __init__(self, settings: CfgNode):
        self.settings = settings

    def representation_learner(self, n_tokens, rep_dim, visual_dim, text_dim, n_layers) -> nn.Module:
        return RepresentationLearner(n_tokens, rep_dim, visual_dim, text_dim, n_layers)

    def projection_init(self, width: int, out_dim: int) -> Tensor:
        return draw_proj_rep(width, out_dim)

    def projection(self, init: Tensor, out_dim: int) -> nn.Module:
        return RepresentationProjection(init)

    def injector(self) -> Callable[[Sequence[Tensor], Sequence[int]], TokenInjector]:
        return TokenInjector


def build_mmrl(
    cfg: CfgNode, classnames: Sequence[str], clip_model: CLIP, *, template: str | None = None,
    init: Tensor | None = None, parts: type[MMRLParts] = MMRLParts
) -> MMRLModel:  # fmt: skip
    """MMRL around a frozen ``clip_model``; ``model.learner`` holds every trained tensor.

    ``init`` is P_v^r's (MMRL++: A's) initial value, drawn here when not given (the trainer passes the
    value the official code draws inside its CLIP construction). ``template``: the dataset's own prompt
    template, else CoOp's per dataset.
    """
    p = parts(cfg.TRAINER[parts.NODE])
    settings = p.settings
    rep_layers = check_rep_layers(settings.REP_LAYERS, f"TRAINER.{parts.NODE}.REP_LAYERS")
    visual_dim, out_dim = clip_model.visual.proj.shape
    if init is None:
        init = p.projection_init(visual_dim, out_dim)
    representation_learner = p.representation_learner(
        settings.N_REP_TOKENS, settings.REP_DIM, visual_dim, clip_model.ln_final.weight.shape[0], len(rep_layers)
    )
    # As the official code: the maps share CLIP's dtype, the image-side tensors stay fp32.
    representation_learner.to(clip_model.dtype)
    learner = MultiModalRepresentationLearner(representation_learner, p.projection(init, out_dim))
    tokenized_prompts = clip.tokenize(class_prompts(cfg.DATASET.NAME, classnames, template=template))
    return MMRLModel(
        clip_model, learner, rep_layers, tokenized_prompts, settings.ALPHA, p.injector(), cfg.EXACT,
        settings.TEXT_CHUNK,
    )  # fmt: skip


def draw_proj_rep(width: int, out_dim: int) -> Tensor:
    """P_v^r init of MMRL: N(0, 1) * d_v^-0.5, like CLIP's own ``proj``."""
    return width**-0.5 * torch.randn(width, out_dim)


def check_rep_layers(layers: Sequence[int], key: str, depth: int | None = None) -> tuple[int, ...]:
    layers = tuple(layers)
    hint = "list the 1-based layers that receive tokens, e.g. [6, 7, 8, 9, 10, 11, 12]"
    if not layers:
        raise ConfigError(f"{key} is empty: {hint}")
    if not all(isinstance(i, int) and i >= 1 for i in layers):
        raise ConfigError(f"{key}={list(layers)}: layers are integers from 1; {hint}")
    if any(b <= a for a, b in zip(layers, layers[1:])):
        raise ConfigError(f"{key}={list(layers)} must be strictly increasing")
    if depth is not None and layers[-1] > depth:
        raise ConfigError(f"{key}={list(layers)}: every layer must be in 1..{depth}, the depth of the CLIP encoders")
    return layers
