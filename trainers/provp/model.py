"""ProVP (Xu et al., IJCV 2024, "Progressive Visual Prompt Learning with Contrastive Feature Re-formation").

Learned prompts in every block of CLIP's image tower; the classes are the frozen CLIP's features of fixed
class prompts (computed once). With prompts P of shape (layers, N_CTX, width) and ALPHA = 0.01:

- before block 1, P[0] is inserted right after the class token (after ``ln_pre``, without a positional
  embedding), if N_CTX > 4;
- before block i = 2..layers, the prompt rows 1..N_CTX become ALPHA * (the previous block's output there)
  + (1 - ALPHA) * P[i - 1]: each layer's prompts carry a little of the previous layer's (the "progressive" link).

Logits: ``logit_scale.exp()`` times the cosine of the prompted image feature and the class features.
Loss: cross-entropy; ProVP-Ref (``OPTIM.USE_REF True``) adds the contrastive feature re-formation loss
``LOSS.LAMBDA * CE(f @ f0.T, arange(B))``: the batch's prompted features f (normalised) must each pick
their own image's frozen CLIP feature f0 among the batch's (raw cosines, no temperature).

Official code: github MCG-NJU/ProVP at 837b8fb, ProVP/trainers/provp.py and the prompted blocks of
ProVP/clip/model.py; its forked Dassl (ProVP's Dassl/) tests on the test split after every epoch and
reports the best epoch (``SELECT_ON_TEST`` of trainer.py, ``official.py``). As there: the class prompts are ProVP's
own templates; the frozen features f0 come from an fp32 CLIP whatever PREC is; the checkpoint folder is
``Prompt_learner`` and holds ``prompt_embeddings`` only, so official checkpoints load unchanged.

Not as the official code: the number of layers and the width come from the backbone (the official code
hard-codes ViT-B/16's 12 and 768, so it runs with ViT-B backbones only; the init bound keeps its
hard-coded patch size 14); the per-layer ``nn.Dropout(0.0)`` of the official learner (the identity) is
left out; ``LOSS.LAMBDA`` weighs the re-formation loss (the official code reads it but multiplies by 1.0,
the value its scripts pass); its amp branch (which fails) is replaced by the base's amp step.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from yacs.config import CfgNode

from clip import clip
from clip.model import CLIP, BlockHooks

from ..base import LossTerms
from ..logits import clip_logits, l2_normalize
from ..prompts import class_prompts
from ..templates import templates
from ..text_cache import FrozenFeatures

ALPHA = 0.01  # weight of the previous block's outputs in the prompt rows (official: hard-coded)
INSERT_MIN = 4  # prompts are inserted before block 1 only if there are more than this many (official)
INIT_PATCH = 14  # the patch size in the official init bound (hard-coded there, although ViT-B/16's is 16)


def init_bound(width: int) -> float:
    """The official uniform init's bound: VPT's Xavier bound sqrt(6 / (3 * patch^2 + width)), patch 14."""
    return math.sqrt(6.0 / float(3 * INIT_PATCH * INIT_PATCH + width))


def draw_prompts(layers: int, n_ctx: int, width: int) -> Tensor:
    """(layers, n_ctx, width) initial prompts, drawn as the official learner draws them (fp32 uniform)."""
    prompts = torch.zeros(layers, n_ctx, width)
    bound = init_bound(width)
    nn.init.uniform_(prompts, -bound, bound)
    return prompts


class VisualPrompts(nn.Module):
    """The learner: one set of prompts per image block, under the official key ``prompt_embeddings``."""

    def __init__(self, prompts: Tensor) -> None:
        super().__init__()
        self.prompt_embeddings = nn.Parameter(prompts)


class ProgressiveHooks(BlockHooks):
    """One pass of the image tower with ``prompts`` (layers, n, width), in the tower's dtype (module docstring)."""

    def __init__(self, prompts: Tensor) -> None:
        self.prompts = prompts

    def before(self, i: int, x: Tensor) -> Tensor:
        if i > len(self.prompts):
            return x
        # As the official block: the layer's prompts expanded over the batch, then sequence-first (the batch
        # sum of their gradient is then taken in the same order).
        rows = self.prompts[i - 1].expand(x.shape[1], -1, -1).permute(1, 0, 2)
        n = rows.shape[0]
        if i == 1:
            return torch.cat([x[:1], rows, x[1:]], dim=0) if n > INSERT_MIN else x
        return torch.cat([x[:1], x[1 : n + 1] * ALPHA + rows * (1 - ALPHA), x[n + 1 :]], dim=0)


class ProVPModel(nn.Module):
    """The frozen CLIP, the visual prompts (``learner``) and the frozen class features."""

    def __init__(self, clip_model: CLIP, learner: VisualPrompts, prompts: list[str], reference: bool) -> None:
        super().__init__()
        self.clip, self.learner = clip_model, learner
        self.register_buffer("tokens", clip.tokenize(prompts), persistent=False)
        self.text_features = FrozenFeatures(self.encode_classes, clip_model.text_projection)
        # The re-formation loss's frozen image features come from an fp32 CLIP (the official zero-shot CLIP
        # is always fp32): a copy of the image tower when CLIP itself runs in another precision.
        fp32 = clip_model.dtype == torch.float32
        self.reference = copy.deepcopy(clip_model.visual).float() if reference and not fp32 else None

    def encode_classes(self) -> Tensor:
        """The frozen CLIP's normalised features of the class prompts."""
        return l2_normalize(self.clip.encode_text(self.tokens))

    def image_features(self, image: Tensor) -> Tensor:
        """Normalised features of the prompted image tower, in CLIP's dtype."""
        dtype = self.clip.dtype
        hooks = ProgressiveHooks(self.learner.prompt_embeddings.type(dtype))
        return l2_normalize(self.clip.encode_image(image.type(dtype), hooks))

    @torch.no_grad()
    def frozen_features(self, image: Tensor) -> Tensor:
        """Normalised features of the frozen image tower, in fp32."""
        visual = self.clip.visual if self.reference is None else self.reference
        return l2_normalize(visual(image.float()))

    def logits(self, image_features: Tensor) -> Tensor:
        return clip_logits(self.clip.logit_scale.exp(), image_features, self.text_features(), normalize=False)

    def forward(self, image: Tensor) -> Tensor:
        return self.logits(self.image_features(image))


def provp_loss(
    model: ProVPModel, image: Tensor, label: Tensor, use_ref: bool, ref_weight: float
) -> tuple[LossTerms, Tensor]:
    """(loss, logits): cross-entropy; with ``use_ref`` the named terms ``xe_loss`` and ``ref_loss`` (weighted)."""
    features = model.image_features(image)
    logits = model.logits(features)
    xe_loss = F.cross_entropy(logits, label)
    if not use_ref:
        return xe_loss, logits
    frozen = model.frozen_features(image)
    own = torch.arange(frozen.shape[0], device=frozen.device)  # each image's own frozen feature
    ref_loss = F.cross_entropy(features @ frozen.type_as(features).t(), own)
    return {"xe_loss": xe_loss, "ref_loss": ref_loss * ref_weight}, logits


def build_provp(
    cfg: CfgNode, classnames: list[str], clip_model: CLIP, *, template: str | None = None, init: Tensor | None = None
) -> ProVPModel:
    """ProVP around a frozen ``clip_model``; ``init``: the prompts' initial values (None: drawn here, as the
    official learner draws them); ``template``: the class prompts' template if the dataset brings one."""
    visual = clip_model.visual
    layers, width = len(visual.transformer.resblocks), visual.conv1.weight.shape[0]
    prompts = init if init is not None else draw_prompts(layers, cfg.TRAINER.COOP.N_CTX, width)
    texts = class_prompts(cfg.DATASET.NAME, classnames, templates("ProVP"), template)
    return ProVPModel(clip_model, VisualPrompts(prompts), texts, reference=cfg.OPTIM.USE_REF)
