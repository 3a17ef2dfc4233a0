"""The Multi-Modal Adapter of Seputis, Mihailov, Chatterjee and Xiao (arXiv 2409.02958).

One small attention module sits after both frozen CLIP encoders. For each image, the normalised
features of the N class prompts and of the image form a sequence of N + 1 tokens; a downsampler,
a 4-head self-attention and an upsampler turn it into one adaptation per token, which is blended
(weight ``BLEND``) into the normalised original feature. Text outputs therefore depend on the image
(one set of class features per image), and the module has no per-class tensor, so a model trained
on base classes scores any class list.

The computation follows the authors' public module (github dqmis/clip-mma, ``MaskedMultiheadAttention
Downsampled`` in ``CLIPTransformerAdapterText``) op for op, so that the same weights and features give
the same logits bit for bit in fp32; its tensors keep the release's key names (``downsampler.*``,
``mha.*``, ``upsampler.*``). The release's mask is a float 0/1 matrix, which PyTorch *adds* to the
attention logits: a +1 bias on the text-image pairs, nothing is blocked (``MASK additive``). Side
branches of the release block all but the text-image pairs (``MASK cross_only``, what the paper
calls masked attention); ``MASK none`` is plain self-attention.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn
from yacs.config import CfgNode

from clip import clip
from clip.model import CLIP
from dassl.data import DataManager
from dassl.data.transforms import build_transform
from dassl.engine import TRAINER_REGISTRY
from dassl.utils import load_checkpoint
from dassl.utils.torchtools import state_dict_of

from .base import CLIPTrainer, ConfigError
from .prompts import class_prompts

MASKS = ("additive", "cross_only", "none")
# The release's whole-model checkpoints hold the adapter under this prefix, next to the frozen CLIP.
RELEASE_PREFIX = "adapter."


def adapter_node() -> CfgNode:
    """TRAINER.MASKED_MHA_ADAPTER with the release's values as defaults."""
    node = CfgNode()
    node.MASK = "additive"  # additive (the release), cross_only (the paper's masking) or none
    node.BLEND = 0.2  # lambda: weight of the adapted feature in the blend with the original one
    node.DOWN_DIM = 128  # width of the attention (embed -> BOTTLENECK -> DOWN_DIM)
    node.BOTTLENECK = 32  # inner width of the two-layer down/up-samplers
    node.HEADS = 4
    node.SINGLE_LINEAR = False  # True: one linear layer each way (the release's later ablation default)
    node.PATIENCE = 0  # stop after this many epochs without a better val accuracy (0: never)
    node.PREC = "fp16"  # CLIP's precision (the adapter always runs in fp32, as in the release)
    return node


def attention_mask(kind: str, n_texts: int, device: torch.device) -> Tensor | None:
    """The (N+1, N+1) float mask added to the attention logits; the image is the last token.

    ``additive``: 1 on the text-image pairs, 0 elsewhere (a bias; nothing blocked).
    ``cross_only``: 0 on the text-image pairs, -inf elsewhere, the diagonal included, so a text
    attends only to the image and the image only to the texts.
    """
    if kind == "none":
        return None
    cross = torch.zeros(n_texts + 1, n_texts + 1, dtype=torch.bool, device=device)
    cross[:n_texts, n_texts] = True
    cross[n_texts, :n_texts] = True
    if kind == "additive":
        return cross.float()
    return torch.zeros(cross.shape, device=device).masked_fill(~cross, float("-inf"))


class MultiModalAdapter(nn.Module):
    """downsampler -> masked multi-head self-attention -> upsampler, over a (N+1, B, embed) sequence.

    The layers are created in the release's order (the later single-linear release builds the
    attention last), so that a seeded construction draws the same initial weights.
    """

    def __init__(
        self,
        embed_dim: int,
        down_dim: int = 128,
        bottleneck: int = 32,
        heads: int = 4,
        mask: str = "additive",
        single_linear: bool = False,
    ) -> None:
        super().__init__()
        self.mask, self.heads = mask, heads
        if single_linear:
            self.downsampler: nn.Module = nn.Linear(embed_dim, down_dim)
            self.upsampler: nn.Module = nn.Linear(down_dim, embed_dim)
            self.mha = nn.MultiheadAttention(down_dim, heads)
        else:
            self.downsampler = nn.Sequential(nn.Linear(embed_dim, bottleneck), nn.Linear(bottleneck, down_dim))
            self.mha = nn.MultiheadAttention(down_dim, heads)
            self.upsampler = nn.Sequential(nn.Linear(down_dim, bottleneck), nn.GELU(), nn.Linear(bottleneck, embed_dim))

    def forward(self, sequence: Tensor, return_weights: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """One adaptation per token; with ``return_weights`` also the head-averaged (B, N+1, N+1) attention."""
        length, batch = sequence.shape[:2]
        mask = attention_mask(self.mask, length - 1, sequence.device)
        if mask is not None:  # one copy per image and head, the layout the release passes
            mask = mask.expand(batch * self.heads, length, length)
        x = self.downsampler(sequence)
        # need_weights=True (PyTorch's default, the release's call) keeps the explicit softmax path.
        x, weights = self.mha(x, x, x, attn_mask=mask, need_weights=True)
        x = self.upsampler(x)
        return (x, weights) if return_weights else x


def normalize(x: Tensor) -> Tensor:
    """L2-normalise the last axis, written as the release writes it (same rounding)."""
    return x / x.norm(dim=-1, keepdim=True)


def adapted_logits(
    adapter: MultiModalAdapter, image_features: Tensor, text_features: Tensor, blend: float, logit_scale: Tensor
) -> Tensor:
    """(B, N) logits from L2-normalised fp32 features: image (B, D), class texts (N, D).

    The originals are normalised a second time before the blend, a rounding-level no-op the release
    performs and that is kept here for bit equality.
    """
    n_classes, batch = text_features.shape[0], image_features.shape[0]
    texts = text_features.unsqueeze(1).expand(-1, batch, -1)
    images = image_features.unsqueeze(0)
    adapted = adapter(torch.cat([texts, images], dim=0))
    adapted_images = normalize(adapted[n_classes:])
    adapted_texts = normalize(adapted[:n_classes])
    images = normalize(blend * adapted_images + (1 - blend) * normalize(images))
    texts = normalize(blend * adapted_texts + (1 - blend) * normalize(texts))
    return logit_scale.exp() * torch.bmm(images.permute(1, 0, 2), texts.permute(1, 2, 0)).squeeze(1)


class MaskedMHAAdapterModel(nn.Module):
    """Frozen CLIP + the adapter (``learner``); the class-prompt features are computed once and cached."""

    def __init__(self, clip_model: CLIP, learner: MultiModalAdapter, tokenized_prompts: Tensor, blend: float) -> None:
        super().__init__()
        self.clip, self.learner, self.blend = clip_model, learner, blend
        self.register_buffer("tokenized_prompts", tokenized_prompts, persistent=False)
        self._text_features: Tensor | None = None

    @torch.no_grad()
    def text_features(self) -> Tensor:
        """Normalised fp32 features of the class prompts; the encoder is frozen, so once per device."""
        if self._text_features is None or self._text_features.device != self.tokenized_prompts.device:
            features = self.clip.encode_text(self.tokenized_prompts)
            self._text_features = normalize(features).float()
        return self._text_features

    def forward(self, image: Tensor) -> Tensor:
        with torch.no_grad():
            image_features = normalize(self.clip.encode_image(image.type(self.clip.dtype))).float()
        return adapted_logits(self.learner, image_features, self.text_features(), self.blend, self.clip.logit_scale)


def build_masked_mha_adapter(cfg: CfgNode, classnames: list[str], clip_model: CLIP) -> MaskedMHAAdapterModel:
    """The model around a frozen CLIP; the adapter's width is CLIP's joint embedding width."""
    s = cfg.TRAINER.MASKED_MHA_ADAPTER
    adapter = MultiModalAdapter(
        clip_model.text_projection.shape[1], s.DOWN_DIM, s.BOTTLENECK, s.HEADS, s.MASK, s.SINGLE_LINEAR
    )
    tokenized_prompts = clip.tokenize(class_prompts(cfg.DATASET.NAME, classnames))
    return MaskedMHAAdapterModel(clip_model, adapter, tokenized_prompts, s.BLEND)


class _EarlyStop(Exception):
    """Raised before an epoch once PATIENCE epochs passed without a better val accuracy."""


@TRAINER_REGISTRY.register()
class MaskedMHAAdapter(CLIPTrainer):
    """The adapter on Dassl: Adam, constant lr, best-val checkpoint and optional early stopping."""

    NODE = "MASKED_MHA_ADAPTER"
    LEARNER_NAME = "adapter"  # the release's attribute name (and the prefix of its checkpoint keys)
    model_factory = staticmethod(build_masked_mha_adapter)
    model: MaskedMHAAdapterModel

    def __init__(self, cfg: CfgNode) -> None:
        self.best_epoch = 0  # 1-based epoch of the best val accuracy so far (0: none yet)
        super().__init__(cfg)

    @classmethod
    def add_config(cls, cfg: CfgNode) -> None:
        cfg.TRAINER.MASKED_MHA_ADAPTER = adapter_node()

    def check_cfg(self, cfg: CfgNode) -> None:
        super().check_cfg(cfg)
        s, node = cfg.TRAINER.MASKED_MHA_ADAPTER, "TRAINER.MASKED_MHA_ADAPTER"
        if s.MASK not in MASKS:
            raise ConfigError(f"{node}.MASK must be one of {', '.join(MASKS)}, got {s.MASK!r}")
        if not 0.0 <= s.BLEND <= 1.0:
            raise ConfigError(f"{node}.BLEND is a mixing weight in [0, 1], got {s.BLEND}")
        for name in ("DOWN_DIM", "BOTTLENECK", "HEADS"):
            if s[name] < 1:
                raise ConfigError(f"{node}.{name} must be at least 1, got {s[name]}")
        if s.DOWN_DIM % s.HEADS:
            raise ConfigError(f"{node}.DOWN_DIM ({s.DOWN_DIM}) must be divisible by {node}.HEADS ({s.HEADS})")
        if s.PATIENCE < 0:
            raise ConfigError(f"{node}.PATIENCE must be >= 0 (0: no early stopping), got {s.PATIENCE}")
        if s.PATIENCE and (cfg.TEST.FINAL_MODEL != "best_val" or cfg.TEST.NO_TEST):
            raise ConfigError(
                f"{node}.PATIENCE counts epochs without a better val accuracy: it needs "
                "TEST.FINAL_MODEL best_val (and TEST.NO_TEST False)"
            )

    def build_data_loader(self) -> None:
        """No augmentation, as the release: training images get the test transform (resize, centre crop)."""
        dm = DataManager(self.cfg, custom_tfm_train=build_transform(self.cfg, is_train=False))
        for name in (
            "train_loader_x",
            "train_loader_u",
            "val_loader",
            "test_loader",
            "num_classes",
            "num_source_domains",
            "lab2cname",
        ):
            setattr(self, name, getattr(dm, name))
        self.dm = dm

    def after_build(self) -> None:
        """Cache the class features."""
        self.model.text_features()

    def init_learner(self, learner: nn.Module, path: str) -> None:
        """MODEL.INIT_WEIGHTS strictly: the adapter's own state dict or the release's whole model (``adapter.``)."""
        state_dict = state_dict_of(load_checkpoint(path), path)
        learner.load_state_dict(self.learner_state(learner, state_dict, f"MODEL.INIT_WEIGHTS {path}"))

    def learner_state(self, learner: nn.Module, state_dict: Mapping[str, Tensor], source: str) -> dict[str, Tensor]:
        """Ours, the adapter module's own state dict, or a whole release model (adapter under ``adapter.``)."""
        if any(k.startswith(RELEASE_PREFIX) for k in state_dict):
            state_dict = {k[len(RELEASE_PREFIX) :]: v for k, v in state_dict.items() if k.startswith(RELEASE_PREFIX)}
        return super().learner_state(learner, state_dict, source)

    # ---- Early stopping on the val accuracy (the release's recipe), on top of Dassl's best_val.
    def test(self, split: str | None = None) -> float:
        """Dassl's test; a val accuracy above the best so far also records its epoch (for PATIENCE)."""
        result = super().test(split)
        if split == "val" and result > self.best_result:
            self.best_epoch = self.epoch + 1
        return result

    def before_epoch(self) -> None:
        """Stop before an epoch, not after one, so that a resumed run applies the same rule."""
        patience = self.settings.PATIENCE
        if patience and self.best_epoch and self.epoch - self.best_epoch >= patience:
            print(f"No better val accuracy for {patience} epochs (best: epoch {self.best_epoch}): stopping early")
            raise _EarlyStop

    def train(self) -> None:  # type: ignore[override]
        try:
            super().train()
        except _EarlyStop:
            self.after_train()

    def extra_state(self) -> dict[str, Any]:
        return {**super().extra_state(), "best_epoch": self.best_epoch}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        super().load_extra_state(state)
        self.best_epoch = state.get("best_epoch", 0)
