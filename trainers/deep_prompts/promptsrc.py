"""PromptSRC (Khattak et al., ICCV 2023): IVLP's deep prompts, regulated towards the frozen CLIP, with
Gaussian prompt aggregation (GPA) over the epochs.

Official code: github muzairkhattak/PromptSRC, trainers/promptsrc.py. Loss = cross-entropy
+ TEXT_LOSS_WEIGHT * L1(prompted class features, mean frozen features of 60 templates)
+ IMAGE_LOSS_WEIGHT * L1(prompted image features, frozen image features)
+ KL(frozen logits || prompted logits) summed and divided by the number of logits.
GPA: at the end of epoch e the model state is weighted by w_e ~ N(e; GPA_MEAN, GPA_STD) (normalised
over the epochs) and summed; after the last epoch the sum replaces the model, frozen CLIP included (its
weights become sum_e w_e * W, W up to rounding), as in the official code.

A dataset that brings its own template (ImageFolder's DATASET.FOLDER.TEMPLATE) joins the 60 templates.

Not as the official code: the frozen image features come from the same frozen CLIP (the official code
builds two more copies, one fp32 for the template features, one in the run's dtype); the GPA sum is saved
in the checkpoints, so a resumed run still aggregates the epochs before it (the official sum is lost on
resume and the resumed run then never aggregates). Matching the official code's draws and checkpoints:
``official.py``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from yacs.config import CfgNode

from clip import clip
from clip.model import CLIP
from dassl.engine import TRAINER_REGISTRY

from ..base import ConfigError
from ..logits import clip_logits, l2_normalize
from ..prompts import class_prompts
from ..text_cache import FrozenFeatures
from . import official
from .ivlp import IVLP, IndependentPrompts, IVLPModel
from .mechanism import IndependentInit

# OpenAI's ImageNet prompt-engineering templates, as PromptSRC uses them: 60 of the 80, in this order
# (the order fixes the rounding of their mean).
TEMPLATES = tuple(
    t + "."
    for t in (
        "a photo of a {}|a bad photo of a {}|a photo of many {}|a sculpture of a {}|a photo of the hard to see {}|"
        "a low resolution photo of the {}|a rendering of a {}|graffiti of a {}|a bad photo of the {}|"
        "a cropped photo of the {}|a tattoo of a {}|the embroidered {}|a photo of a hard to see {}|"
        "a bright photo of a {}|a photo of a clean {}|a photo of a dirty {}|a dark photo of the {}|"
        "a drawing of a {}|a photo of my {}|the plastic {}|a photo of the cool {}|a close-up photo of a {}|"
        "a black and white photo of the {}|a painting of the {}|a painting of a {}|a pixelated photo of the {}|"
        "a sculpture of the {}|a bright photo of the {}|a cropped photo of a {}|a plastic {}|"
        "a photo of the dirty {}|a jpeg corrupted photo of a {}|a blurry photo of the {}|a photo of the {}|"
        "a good photo of the {}|a rendering of the {}|a {} in a video game|a photo of one {}|a doodle of a {}|"
        "a close-up photo of the {}|the origami {}|the {} in a video game|a sketch of a {}|a doodle of the {}|"
        "a origami {}|a low resolution photo of a {}|the toy {}|a rendition of the {}|a photo of the clean {}|"
        "a photo of a large {}|a rendition of a {}|a photo of a nice {}|a photo of a weird {}|"
        "a blurry photo of a {}|a cartoon {}|art of a {}|a sketch of the {}|a embroidered {}|"
        "a pixelated photo of a {}|itap of the {}"
    ).split("|")
)
def gpa_weights(mean: float, std: float, epochs: int) -> np.ndarray:
    """Normalised Gaussian weights of epochs 1..epochs, computed as the official code (float64)."""
    density = [(1 / (std * np.sqrt(2 * np.pi))) * np.exp(-0.5 * ((e - mean) / std) ** 2) for e in range(1, epochs + 1)]
    weights = np.array(density)
    return weights / sum(weights)


def weighted_sum(values: list[Tensor], weights: np.ndarray) -> Tensor:
    """sum_e weights[e] * values[e], accumulated as the official GPA does (in each tensor's dtype)."""
    total = values[0] * weights[0]
    for value, w in zip(values[1:], weights[1:], strict=True):
        total = total + value * w
    return total


class Aggregate(nn.Module):
    """The running GPA sum of the learner's tensors and the number of epochs in it (checkpointed)."""

    def __init__(self, learner: nn.Module) -> None:
        super().__init__()
        self.keys = list(learner.state_dict())
        for key, value in learner.state_dict().items():
            self.register_buffer(self._name(key), torch.zeros_like(value))
        self.register_buffer("epochs", torch.zeros((), dtype=torch.long))

    @staticmethod
    def _name(key: str) -> str:
        return "sum__" + key.replace(".", "__")

    def add(self, state: Mapping[str, Tensor], weight: float) -> None:
        """Add the epoch's ``state`` weighted by ``weight`` (the first epoch starts the sum)."""
        for key in self.keys:
            weighted = state[key] * weight
            total = getattr(self, self._name(key))
            total.copy_(weighted if self.epochs == 0 else total + weighted)
        self.epochs += 1

    def state(self) -> dict[str, Tensor]:
        return {key: getattr(self, self._name(key)).clone() for key in self.keys}


class PromptSRCLearner(IndependentPrompts):
    """IVLP's prompts under the official keys, plus the GPA sum (``gpa.*``, ours only)."""

    def __init__(
        self, clip_model: CLIP, classnames: list[str], settings: CfgNode, init: IndependentInit | None = None
    ) -> None:
        super().__init__(clip_model, classnames, settings, init)
        self.gpa = Aggregate(self)


class PromptSRCModel(IVLPModel):
    """IVLP's model plus the frozen class features (mean over the templates) its losses aim at."""

    def __init__(self, clip_model: CLIP, learner: PromptSRCLearner, prompts: list[list[str]]) -> None:
        super().__init__(clip_model, learner)
        # (templates, classes, 77) tokens of the class prompts, one set per template; kept on the CPU (used
        # once; 37 MB at ImageNet's 1000 classes) and moved template by template when encoded.
        self.template_tokens = torch.stack([clip.tokenize(p) for p in prompts])
        self.fixed_embeddings = FrozenFeatures(self.encode_templates, clip_model.text_projection)

    def encode_templates(self) -> Tensor:
        """Mean over the templates of the class features, from an fp32 text tower (the official fp32 CLIP)."""
        clip_model = self.clip
        text_clip = clip_model if clip_model.dtype == torch.float32 else copy.deepcopy(clip_model).float()
        device = clip_model.text_projection.device
        features = [text_clip.encode_text(tokens.to(device)) for tokens in self.template_tokens]
        return torch.stack(features, dim=1).mean(dim=1)


def promptsrc_loss(
    model: PromptSRCModel, image: Tensor, label: Tensor, text_weight: float, image_weight: float
) -> tuple[Tensor, Tensor]:
    """(loss, logits): cross-entropy plus the three regularisers towards the frozen CLIP (module docstring)."""
    logit_scale = model.clip.logit_scale.exp()
    text_features = model.text_features()
    image_features = l2_normalize(model.image_features(image))
    text_features = l2_normalize(text_features)
    logits = clip_logits(logit_scale, image_features, text_features, normalize=False)
    fixed = l2_normalize(model.fixed_embeddings())
    with torch.no_grad():
        zs_features = l2_normalize(model.clip.encode_image(image))
        zs_logits = clip_logits(logit_scale, zs_features, fixed.to(zs_features.dtype), normalize=False)
    loss_text = F.l1_loss(text_features, fixed, reduction="mean") * text_weight
    loss_image = F.l1_loss(image_features, zs_features, reduction="mean") * image_weight
    loss_logits = (
        F.kl_div(F.log_softmax(logits, dim=1), F.log_softmax(zs_logits, dim=1), reduction="sum", log_target=True)
        / logits.numel()
    )
    return F.cross_entropy(logits, label) + (loss_logits + loss_text + loss_image), logits


def build_promptsrc(
    cfg: CfgNode, classnames: list[str], clip_model: CLIP, *, template: str | None = None,
    init: IndependentInit | None = None
) -> PromptSRCModel:  # fmt: skip
    """PromptSRC around ``clip_model``; ``init``: the prompts' initial values (None: drawn here, in the
    official order); ``template``: the dataset's own, added to the 60."""
    learner = PromptSRCLearner(clip_model, classnames, cfg.TRAINER.PROMPTSRC, init)
    templates = [*TEMPLATES, *([template] if template else [])]
    prompts = [class_prompts(cfg.DATASET.NAME, classnames, template=t) for t in templates]
    return PromptSRCModel(clip_model, learner, prompts)


@TRAINER_REGISTRY.register()
class PromptSRC(IVLP):
    """PromptSRC on Dassl's TrainerX, under the official name, node and model name (IVLP's learner)."""

    NODE = "PROMPTSRC"
    DEFAULTS = {  # the official defaults (the YAML files set the values used)
        **IVLP.DEFAULTS,
        "N_CTX_VISION": 4,
        "N_CTX_TEXT": 4,
        "TEXT_LOSS_WEIGHT": 25,
        "IMAGE_LOSS_WEIGHT": 10,
        "GPA_MEAN": 15,  # the Gaussian over epochs 1..MAX_EPOCH that weights each epoch's model
        "GPA_STD": 1,
    }
    model_factory = staticmethod(build_promptsrc)
    replay_after_factory = staticmethod(official.replay_promptsrc_build)
    filter_state_dict = staticmethod(official.filter_promptsrc_state_dict)
    model: PromptSRCModel

    def check_cfg(self, cfg: CfgNode) -> None:
        super().check_cfg(cfg)
        if cfg.TRAINER.PROMPTSRC.GPA_STD <= 0:
            raise ConfigError(f"TRAINER.PROMPTSRC.GPA_STD must be positive, got {cfg.TRAINER.PROMPTSRC.GPA_STD}")

    @property
    def gpa_weights(self) -> np.ndarray:
        return gpa_weights(self.settings.GPA_MEAN, self.settings.GPA_STD, self.cfg.OPTIM.MAX_EPOCH)

    def compute_loss(self, image: Tensor, label: Tensor) -> tuple[Tensor, Tensor]:
        settings = self.settings
        return promptsrc_loss(self.model, image, label, settings.TEXT_LOSS_WEIGHT, settings.IMAGE_LOSS_WEIGHT)

    def after_epoch(self) -> None:
        """GPA, then the base's end of epoch (validation, checkpoints): the checkpoint holds the sum."""
        self.aggregate_epoch()
        super().after_epoch()

    def aggregate_epoch(self) -> None:
        """Add the epoch's model to the GPA sum; after the last epoch, use the sum."""
        learner = self.model.learner
        learner.gpa.add(learner.state_dict(), self.gpa_weights[self.epoch])
        if self.epoch + 1 == self.cfg.OPTIM.MAX_EPOCH:
            print("Using GPA model for final inference...")
            self.apply_gpa()

    def frozen_clip_keys(self) -> list[str]:
        """Our CLIP's tensors the official model holds (and averages): all but the token embedding."""
        return [k for k in self.model.clip.state_dict() if k != "token_embedding.weight"]

    def apply_gpa(self) -> None:
        """Replace the learner by the GPA sum and the frozen CLIP by its own weighted sum."""
        learner = self.model.learner
        learner.load_state_dict({**learner.state_dict(), **learner.gpa.state()})
        self.average_frozen_clip()

    def average_frozen_clip(self) -> None:
        clip_model = self.model.clip
        state = clip_model.state_dict()
        weights = self.gpa_weights
        averaged = {k: weighted_sum([state[k]] * len(weights), weights) for k in self.frozen_clip_keys()}
        clip_model.load_state_dict({**state, **averaged})

    def load_checkpoint_into(self, name: str, checkpoint: dict[str, Any], path: str) -> None:
        """As the base; a model saved after GPA also gets GPA's frozen CLIP, as the official code loads it:
        an official file holds it, ours is recomputed from the loaded sum."""
        super().load_checkpoint_into(name, checkpoint, path)
        frozen = official.frozen_clip_state(checkpoint["state_dict"], self.model.learner)
        if frozen:
            clip_model = self.model.clip
            clip_model.load_state_dict({**clip_model.state_dict(), **frozen})
        elif int(self.model.learner.gpa.epochs) == self.cfg.OPTIM.MAX_EPOCH:
            self.average_frozen_clip()
