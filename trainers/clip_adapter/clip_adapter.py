"""CLIP-Adapter (Gao et al., IJCV 2023): a small bottleneck MLP learns new image features, blended
residually into the frozen CLIP's own; the classes are scored as zero-shot CLIP scores them.

For an image feature f (the frozen image tower's output, d values) and the class prompts
"a photo of a {class}." (CoOp's template of the dataset) through the frozen text tower, t_i:

    A(f)    = ReLU(ReLU(f W1) W2)          W1: d x d/REDUCTION, W2: d/REDUCTION x d, no biases
    f*      = RATIO * A(f) + (1 - RATIO) * f
    logit_i = exp(logit_scale) * cos(f*, t_i)

Only W1 and W2 are trained, with cross-entropy. The class features t_i never change: they are encoded
once. d is read from the backbone (the release writes 1024, RN50's feature size).
"""

from __future__ import annotations

from torch import Tensor, nn
from yacs.config import CfgNode

from clip import clip
from clip.model import CLIP, RESNET, VIT, CLIPConfig
from dassl.engine import TRAINER_REGISTRY

from ..base import CLIPTrainer, ConfigError
from ..logits import clip_logits
from ..prompts import class_prompts
from ..text_cache import FrozenFeatures
from . import official


class Adapter(nn.Module):
    """A: two bias-free linear maps through a bottleneck of ``width // reduction``, each followed by a ReLU."""

    def __init__(self, width: int, reduction: int) -> None:
        super().__init__()
        hidden = width // reduction
        self.fc = nn.Sequential(
            nn.Linear(width, hidden, bias=False),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, width, bias=False),
            nn.ReLU(inplace=True),
        )

    def forward(self, features: Tensor) -> Tensor:
        return self.fc(features)


class CLIPAdapterModel(nn.Module):
    """The frozen CLIP, the adapter (the ``learner``: every tensor trained) and the class features."""

    def __init__(self, clip_model: CLIP, adapter: Adapter, prompts: list[str], ratio: float) -> None:
        super().__init__()
        self.clip = clip_model
        self.adapter = adapter  # the release's name: its checkpoints hold fc.0.weight and fc.2.weight
        self.ratio = ratio
        self.register_buffer("tokens", clip.tokenize(prompts), persistent=False)
        # Encoded on first use where the model runs (again only on another device or dtype).
        self.text_features = FrozenFeatures(self.encode_prompts, clip_model.text_projection)

    @property
    def learner(self) -> nn.Module:
        return self.adapter

    def encode_prompts(self) -> Tensor:
        """t: the class prompts through the frozen text tower."""
        return self.clip.encode_text(self.tokens)

    def image_features(self, image: Tensor) -> Tensor:
        """f: the frozen, unprompted image tower's features (they depend on the image alone)."""
        return self.clip.encode_image(image.type(self.clip.dtype))

    def blend(self, features: Tensor) -> Tensor:
        """f* = RATIO * A(f) + (1 - RATIO) * f, in the adapter's fp32."""
        features = features.float()
        return self.ratio * self.adapter(features) + (1 - self.ratio) * features

    def logits(self, image_features: Tensor, text_features: Tensor) -> Tensor:
        return clip_logits(self.clip.logit_scale.exp(), self.blend(image_features), text_features.float())

    def forward(self, image: Tensor) -> Tensor:
        return self.logits(self.image_features(image), self.text_features())


def build_clip_adapter(
    cfg: CfgNode, classnames: list[str], clip_model: CLIP, *, template: str | None = None
) -> CLIPAdapterModel:
    """CLIP-Adapter around a frozen ``clip_model``; ``template``: the dataset's own prompt template, if any."""
    settings = cfg.TRAINER.CLIP_ADAPTER
    prompts = class_prompts(cfg.DATASET.NAME, classnames, template=template)
    adapter = Adapter(clip_model.visual.output_dim, settings.REDUCTION)
    return CLIPAdapterModel(clip_model, adapter, prompts, settings.RATIO)


@TRAINER_REGISTRY.register()
class CLIP_Adapter(CLIPTrainer):
    """CLIP-Adapter under its official trainer name: cross-entropy of the adapted logits (the base's step)."""

    NODE = "CLIP_ADAPTER"  # cfg.TRAINER.CLIP_ADAPTER
    DEFAULTS = {  # the release's values (written in its code, not read from a config)
        "RATIO": 0.2,  # the residual ratio: weight of the adapted features
        "REDUCTION": 4,  # the bottleneck's width is the feature size / REDUCTION
        "PREC": "fp32",  # the release casts CLIP to fp32; fp16 and amp (CUDA only) run CLIP in half precision
    }
    BACKBONES = (VIT, RESNET)
    LEARNER_NAME = "clip_adapter"  # checkpoints: <output-dir>/clip_adapter/model.pth.tar-<epoch>, as the release's
    FROZEN_IMAGE_FEATURES = "image_features"  # computed once per image of a split without random steps
    OFFICIAL_TEST_STEP = "text of every class at 77 tokens, every batch; image tower; adapter"
    official_test_step = staticmethod(official.official_forward)
    model_factory = staticmethod(build_clip_adapter)

    def check_cfg(self, cfg: CfgNode) -> None:
        super().check_cfg(cfg)
        settings = cfg.TRAINER.CLIP_ADAPTER
        if not 0 <= settings.RATIO <= 1:
            raise ConfigError(f"TRAINER.CLIP_ADAPTER.RATIO must be within 0 and 1, got {settings.RATIO}")
        if settings.REDUCTION < 1:
            raise ConfigError(f"TRAINER.CLIP_ADAPTER.REDUCTION must be at least 1, got {settings.REDUCTION}")

    def check_architecture(self, arch: CLIPConfig) -> None:
        reduction = self.settings.REDUCTION
        if arch.embed_dim // reduction < 1:
            raise ConfigError(
                f"TRAINER.CLIP_ADAPTER.REDUCTION {reduction} leaves no bottleneck for the backbone's "
                f"{arch.embed_dim} features: set it to at most {arch.embed_dim}"
            )
