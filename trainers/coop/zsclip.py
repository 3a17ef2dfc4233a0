"""Zero-shot CLIP as CoOp's baselines: ``ZeroshotCLIP`` (one template per dataset) and
``ZeroshotCLIP2`` (an ensemble of seven ImageNet templates, plus the dataset's own except on ImageNet).

Nothing is trained (run with ``--eval-only``, no ``--model-dir``); both read CoOp's YAML files and
have no config node of their own. As the official code, CLIP runs as built: fp16 on CUDA, fp32 on
CPU. Logits are ``logit_scale.exp()`` times the cosine. A dataset that brings its own template
(ImageFolder's DATASET.FOLDER.TEMPLATE) is prompted with it instead of CoOp's (configs/templates.yaml).

The official ``ZeroshotCLIP2`` appends the dataset's template to its class-level template list in
place, so in one process a second build (another dataset, or a test harness) ensembles the earlier
datasets' templates too. Here every build starts from the seven templates.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from yacs.config import CfgNode

from clip import clip
from clip.model import CLIP, RESNET, VIT
from dassl.engine import TRAINER_REGISTRY

from ..base import CLIPTrainer
from ..logits import clip_logits, l2_normalize
from ..prompts import class_prompts, prompt_template
from ..templates import dataset_list, template_list
from ..text_cache import FrozenFeatures


class ZeroshotModel(nn.Module):
    """The frozen CLIP and the class features of its prompts (an empty ``learner``: nothing trained)."""

    def __init__(self, clip_model: CLIP, prompts: list[list[str]]) -> None:
        super().__init__()
        self.clip = clip_model
        self.learner = nn.Module()
        self.prompts = prompts
        # (templates, classes, 77) tokens of the class prompts, one set per template.
        self.register_buffer("tokens", torch.stack([clip.tokenize(p) for p in prompts]), persistent=False)
        self.text_features = FrozenFeatures(self.encode_prompts, clip_model.text_projection)

    def encode_prompts(self) -> Tensor:
        """Normalised class features; with several templates, their mean renormalised (the official sums)."""
        features = [l2_normalize(self.clip.encode_text(tokens)) for tokens in self.tokens]
        if len(features) == 1:
            return features[0]
        total: Tensor | int = 0
        for text in features:
            total = total + text
        return l2_normalize(total / len(features))

    def forward(self, image: Tensor) -> Tensor:
        """Logits against the kept (already normalised) class features."""
        image_features = l2_normalize(self.clip.encode_image(image.type(self.clip.dtype)))
        return clip_logits(self.clip.logit_scale.exp(), image_features, self.text_features(), normalize=False)


def dataset_templates(dataset: str, ensemble: bool, template: str | None = None) -> list[str]:
    """The dataset's template, or ZeroshotCLIP2's ensemble (configs/trainers/ZeroshotCLIP2/templates.yaml) plus the
    dataset's template, except CoOp's on the datasets the file names (ImageNet)."""
    own = prompt_template(dataset, template)
    if not ensemble:
        return [own]
    without_own = dataset_list("ZeroshotCLIP2", "without_own_template")
    return [*template_list("ZeroshotCLIP2", "ensemble"), *([] if dataset in without_own and not template else [own])]


def build_zeroshot(
    cfg: CfgNode, classnames: list[str], clip_model: CLIP, *, template: str | None = None, ensemble: bool = False
) -> ZeroshotModel:
    """Zero-shot CLIP with the dataset's template (or the ensemble)."""
    templates = dataset_templates(cfg.DATASET.NAME, ensemble, template)
    prompts = [class_prompts(cfg.DATASET.NAME, classnames, template=t) for t in templates]
    if ensemble:
        print(f"Prompt ensembling (n={len(templates)})")
    else:
        print(f"Prompts: {prompts[0]}")
    return ZeroshotModel(clip_model, prompts)


def build_zeroshot_ensemble(
    cfg: CfgNode, classnames: list[str], clip_model: CLIP, *, template: str | None = None
) -> ZeroshotModel:
    """Zero-shot CLIP with the template ensemble."""
    return build_zeroshot(cfg, classnames, clip_model, template=template, ensemble=True)


@TRAINER_REGISTRY.register()
class ZeroshotCLIP(CLIPTrainer):
    """Zero-shot CLIP with CoOp's per-dataset template."""

    TRAINABLE = False
    BACKBONES = (VIT, RESNET)
    model_factory = staticmethod(build_zeroshot)

    @property
    def text_features(self) -> Tensor:
        """The class features, where the official trainer keeps them."""
        return self.model.text_features()


@TRAINER_REGISTRY.register()
class ZeroshotCLIP2(ZeroshotCLIP):
    """Zero-shot CLIP with the template ensemble."""

    model_factory = staticmethod(build_zeroshot_ensemble)
