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
calls masked attention); ``MASK none`` is plain self-attention. The release's checkpoints of the whole
model load too (``official.py``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torchvision.transforms import Compose
from yacs.config import CfgNode

from clip import clip
from clip.model import CLIP
from dassl.data.transforms import build_transform
from dassl.engine import TRAINER_REGISTRY
from dassl.utils import load_checkpoint
from dassl.utils.torchtools import state_dict_of

from ..base import CLIPTrainer, ConfigError
from ..logits import l2_normalize
from ..prompts import class_prompts
from ..text_cache import FrozenFeatures
from . import official

MASKS = ("additive", "cross_only", "none")


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


class MaskedAttentionAdapter(nn.Module):
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


def adapted_logits(
    adapter: MaskedAttentionAdapter, image_features: Tensor, text_features: Tensor, blend: float, logit_scale: Tensor
) -> Tensor:
    """(B, N) logits from L2-normalised fp32 features: image (B, D), class texts (N, D).

    The originals are normalised a second time before the blend, a rounding-level no-op the release
    performs and that is kept here for bit equality.
    """
    n_classes, batch = text_features.shape[0], image_features.shape[0]
    texts = text_features.unsqueeze(1).expand(-1, batch, -1)
    images = image_features.unsqueeze(0)
    adapted = adapter(torch.cat([texts, images], dim=0))
    adapted_images = l2_normalize(adapted[n_classes:])
    adapted_texts = l2_normalize(adapted[:n_classes])
    images = l2_normalize(blend * adapted_images + (1 - blend) * l2_normalize(images))
    texts = l2_normalize(blend * adapted_texts + (1 - blend) * l2_normalize(texts))
    return logit_scale.exp() * torch.bmm(images.permute(1, 0, 2), texts.permute(1, 2, 0)).squeeze(1)


class MaskedMHAAdapterModel(nn.Module):
    """Frozen CLIP + the adapter (``learner``); the class-prompt features are computed once and kept."""

    def __init__(
        self, clip_model: CLIP, learner: MaskedAttentionAdapter, tokenized_prompts: Tensor, blend: float
    ) -> None:
        super().__init__()
        self.clip, self.learner, self.blend = clip_model, learner, blend
        self.register_buffer("tokenized_prompts", tokenized_prompts, persistent=False)
        # Normalised fp32 features of the class prompts (the adapter always runs in fp32, as the release).
        self.text_features = FrozenFeatures(self.encode_prompts, clip_model.text_projection)

    def encode_prompts(self) -> Tensor:
        return l2_normalize(self.clip.encode_text(self.tokenized_prompts)).float()

    def image_features(self, image: Tensor) -> Tensor:
        """The frozen image tower's features in CLIP's dtype (the trainer's ``FROZEN_IMAGE_FEATURES``)."""
        return self.clip.encode_image(image.type(self.clip.dtype))

    def forward(self, image: Tensor) -> Tensor:
        with torch.no_grad():
            image_features = l2_normalize(self.image_features(image)).float()
        return adapted_logits(self.learner, image_features, self.text_features(), self.blend, self.clip.logit_scale)


def build_masked_mha_adapter(
    cfg: CfgNode, classnames: list[str], clip_model: CLIP, *, template: str | None = None
) -> MaskedMHAAdapterModel:
    """The model around a frozen CLIP; the adapter's width is CLIP's joint embedding width."""
    settings = cfg.TRAINER.MASKED_MHA_ADAPTER
    adapter = MaskedAttentionAdapter(
        clip_model.text_projection.shape[1], settings.DOWN_DIM, settings.BOTTLENECK, settings.HEADS, settings.MASK,
        settings.SINGLE_LINEAR,
    )  # fmt: skip
    tokenized_prompts = clip.tokenize(class_prompts(cfg.DATASET.NAME, classnames, template=template))
    return MaskedMHAAdapterModel(clip_model, adapter, tokenized_prompts, settings.BLEND)


class _EarlyStop(Exception):
    """Raised before an epoch once PATIENCE epochs passed without a better val accuracy."""


@TRAINER_REGISTRY.register()
class MaskedMHAAdapter(CLIPTrainer):
    """The adapter on Dassl: Adam, constant lr, best-val checkpoint and optional early stopping."""

    NODE = "MASKED_MHA_ADAPTER"
    DEFAULTS = {  # the release's values
        "MASK": "additive",  # additive (the release), cross_only (the paper's masking) or none
        "BLEND": 0.2,  # lambda: weight of the adapted feature in the blend with the original one
        "DOWN_DIM": 128,  # width of the attention (embed -> BOTTLENECK -> DOWN_DIM)
        "BOTTLENECK": 32,  # inner width of the two-layer down/up-samplers
        "HEADS": 4,
        "SINGLE_LINEAR": False,  # True: one linear layer each way (the release's later ablation default)
        "PATIENCE": 0,  # stop after this many epochs without a better val accuracy (0: never)
        "PREC": "fp16",  # CLIP's precision (the adapter always runs in fp32, as in the release)
    }
    LEARNER_NAME = "adapter"  # the release's attribute name (and the prefix of its checkpoint keys)
    FROZEN_IMAGE_FEATURES = "image_features"  # both encoders are frozen and no augmentation: train and val too
    model_factory = staticmethod(build_masked_mha_adapter)
    filter_state_dict = staticmethod(official.filter_release_state_dict)
    model: MaskedMHAAdapterModel

    def __init__(self, cfg: CfgNode) -> None:
        self.best_epoch = 0  # 1-based epoch of the best val accuracy so far (0: none yet)
        super().__init__(cfg)

    def check_cfg(self, cfg: CfgNode) -> None:
        super().check_cfg(cfg)
        settings, node = cfg.TRAINER.MASKED_MHA_ADAPTER, "TRAINER.MASKED_MHA_ADAPTER"
        if settings.MASK not in MASKS:
            raise ConfigError(f"{node}.MASK must be one of {', '.join(MASKS)}, got {settings.MASK!r}")
        if not 0.0 <= settings.BLEND <= 1.0:
            raise ConfigError(f"{node}.BLEND is a mixing weight in [0, 1], got {settings.BLEND}")
        for name in ("DOWN_DIM", "BOTTLENECK", "HEADS"):
            if settings[name] < 1:
                raise ConfigError(f"{node}.{name} must be at least 1, got {settings[name]}")
        if settings.DOWN_DIM % settings.HEADS:
            raise ConfigError(
                f"{node}.DOWN_DIM ({settings.DOWN_DIM}) must be divisible by {node}.HEADS ({settings.HEADS})"
            )
        if settings.PATIENCE < 0:
            raise ConfigError(f"{node}.PATIENCE must be >= 0 (0: no early stopping), got {settings.PATIENCE}")
        if settings.PATIENCE and (cfg.TEST.FINAL_MODEL != "best_val" or cfg.TEST.NO_TEST):
            raise ConfigError(
                f"{node}.PATIENCE counts epochs without a better val accuracy: it needs "
                "TEST.FINAL_MODEL best_val (and TEST.NO_TEST False)"
            )

    def train_transform(self) -> Compose:
        """No augmentation, as the release: training images get the test transform (resize, centre crop)."""
        return build_transform(self.cfg, is_train=False)

    def init_learner(self, learner: nn.Module, path: str) -> None:
        """MODEL.INIT_WEIGHTS strictly: the adapter's own state dict or the release's whole model (``adapter.``)."""
        state_dict = state_dict_of(load_checkpoint(path), path)
        learner.load_state_dict(self.learner_state(learner, state_dict, f"MODEL.INIT_WEIGHTS {path}"))

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
