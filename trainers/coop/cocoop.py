"""CoCoOp (Zhou et al., CVPR 2022): CoOp's context shifted per image by a small meta-network.

The learner (registered as ``prompt_learner``, official key names) holds ``ctx``, ``meta_net``
(``linear1``, ``relu``, ``linear2``: image embedding -> embedding/16 -> text width) and the rebuilt
``token_prefix`` / ``token_suffix``. The text tower runs once per image (all classes), in a loop as
the official code: batching the images together would change the rounding of the results.
As the official trainer, the training log shows the loss only (no accuracy).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import Tensor, nn
from yacs.config import CfgNode

from clip.model import CLIP, RESNET, VIT
from dassl.engine import TRAINER_REGISTRY

from ..logits import clip_logits, l2_normalize
from ..prompts import ClassPrompts, template_not_used
from .coop import PromptModel, PromptTrainer, context_init


class CoCoOpPromptLearner(ClassPrompts):
    """Generic context plus a per-image bias from the meta-network."""

    def __init__(self, cfg: CfgNode, classnames: list[str], clip_model: CLIP) -> None:
        settings = cfg.TRAINER.COCOOP
        width, vis_dim = clip_model.ln_final.weight.shape[0], clip_model.visual.output_dim
        ctx, stand_in = context_init(width, settings.N_CTX, settings.CTX_INIT, clip_model)
        n_ctx = ctx.shape[0]
        print(f'Initial context: "{stand_in}"')
        print(f"Number of context words (tokens): {n_ctx}")
        super().__init__(classnames, stand_in, n_ctx, clip_model)
        self.ctx = nn.Parameter(ctx)
        self.shared = 1 + n_ctx  # per image, SOS and the shifted context are the same for every class
        hidden = vis_dim // 16
        layers = [
            ("linear1", nn.Linear(vis_dim, hidden)),
            ("relu", nn.ReLU(inplace=True)),
            ("linear2", nn.Linear(hidden, width)),
        ]
        # fp16 only when CLIP is (the official code halves it for PREC fp16, which keeps CLIP in fp16).
        self.meta_net = nn.Sequential(OrderedDict(layers)).to(clip_model.dtype)

    def forward(self, image_features: Tensor) -> Tensor:
        """Prompts (batch, n_cls, L, width) for normalised image features (batch, embed_dim)."""
        shifted = self.ctx.unsqueeze(0) + self.meta_net(image_features).unsqueeze(1)
        prefix, suffix = self.token_prefix, self.token_suffix
        return torch.stack([torch.cat([prefix, ctx.expand(self.n_cls, -1, -1), suffix], dim=1) for ctx in shifted])


class CoCoOpModel(PromptModel):
    """CoCoOp's model; returns the logits (batch, n_cls)."""

    def forward(self, image: Tensor) -> Tensor:
        clip_model = self.clip
        image_features = l2_normalize(self.image_features(image))
        scale = clip_model.logit_scale.exp()
        logits = []
        for prompts, feature in zip(self.learner(image_features), image_features):
            text = clip_model.encode_text_embeddings(prompts, self.learner.eot, shared=self.learner.shared)
            logits.append(clip_logits(scale, feature, l2_normalize(text), normalize=False))
        return torch.stack(logits)


def build_cocoop(
    cfg: CfgNode, classnames: list[str], clip_model: CLIP, *, template: str | None = None
) -> CoCoOpModel:
    """CoCoOp around a frozen ``clip_model``; draws the context, then the meta-network (official order)."""
    template_not_used("CoCoOp", template)
    return CoCoOpModel(clip_model, CoCoOpPromptLearner(cfg, classnames, clip_model))


@TRAINER_REGISTRY.register()
class CoCoOp(PromptTrainer):
    """Conditional Context Optimization: cross-entropy of the per-image prompts' logits."""

    NODE = "COCOOP"
    BACKBONES = (VIT, RESNET)
    FROZEN_IMAGE_FEATURES = "image_features"
    DEFAULTS = {  # CoOp's train.py
        "N_CTX": 16,  # context vectors
        "CTX_INIT": "",  # words initialising the context ("": random N(0, 0.02))
        "PREC": "fp16",  # fp16, fp32 or amp
    }
    LOG_ACCURACY = False
    model_factory = staticmethod(build_cocoop)
