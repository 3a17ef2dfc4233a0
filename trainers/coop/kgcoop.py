"""KgCoOp (Yao et al., CVPR 2023): CoOp's prompt learner kept close to zero-shot CLIP's class embeddings.

Loss = cross-entropy + W * (1 - mean over classes of cos(learned class feature, frozen class feature)),
where the frozen ("teacher") features are the frozen CLIP's text features of KgCoOp's own per-dataset
templates (CoOp's, except DTD: "a photo of a {}, a type of texture."). The learner is CoOp's prompt
learner (``trainers/coop``: ``ctx``, ``token_prefix``, ``token_suffix``), registered as ``prompt_learner``;
KgCoOp shares ``TRAINER.COOP`` with CoOp and adds ``W``.

As the official code (github htyao89/KgCoOp), on purpose:
- a truthy ``CTX_INIT`` always means the words "a photo of a" (4 context vectors), whatever the string;
- the class token is always at the end (the official prompt learner has no other position: any other
  ``CLASS_TOKEN_POSITION`` is refused here rather than silently ignored);
- the random numbers its build draws are drawn in the same order, and official checkpoints (which hold
  tensors of modules it never uses) load and resume: ``official.py``;
- the teacher features are those of the released fp16 CLIP whatever PREC is (the official teacher is a
  second CLIP that is never cast to fp32): computed from an fp16 copy of the frozen CLIP.

Not the official code: its amp branch is broken (the model returns a tuple), ours runs amp as the other
methods do (not exercised here: CPU only).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from yacs.config import CfgNode

from clip import clip
from clip.model import CLIP, RESNET, VIT, convert_weights
from dassl.engine import TRAINER_REGISTRY

from ..base import ConfigError
from ..logits import clip_logits, l2_normalize
from ..prompts import class_prompts
from ..templates import templates
from ..text_cache import FrozenFeatures, UnchangedCache
from . import official
from .coop import CoOp, CoOpPromptLearner, PromptTrainer

# What the official code initialises the context with whenever CTX_INIT is truthy.
INIT_WORDS = "a photo of a"


def official_context(cfg: CfgNode) -> CfgNode:
    """``cfg`` with a truthy ``CTX_INIT`` read as "a photo of a", the official KgCoOp's rule."""
    if not cfg.TRAINER.COOP.CTX_INIT or cfg.TRAINER.COOP.CTX_INIT == INIT_WORDS:
        return cfg
    cfg = cfg.clone()
    cfg.defrost()
    cfg.TRAINER.COOP.CTX_INIT = INIT_WORDS
    return cfg


class KgCoOpModel(nn.Module):
    """The frozen CLIP, the prompt learner and the frozen teacher class features."""

    def __init__(self, clip_model: CLIP, learner: CoOpPromptLearner, teacher_tokens: Tensor) -> None:
        super().__init__()
        self.clip = clip_model
        self.learner = learner
        self.register_buffer("teacher_tokens", teacher_tokens, persistent=False)
        self.teacher = FrozenFeatures(self.encode_teacher, clip_model.text_projection)
        self.eval_text = UnchangedCache()

    def encode_teacher(self) -> Tensor:
        """The templates' normalised features from the released fp16 CLIP, whatever the run's precision."""
        return teacher_features(self.clip, self.teacher_tokens)

    def image_features(self, image: Tensor) -> Tensor:
        """The frozen, unprompted image tower's features (the trainer's ``FROZEN_IMAGE_FEATURES``)."""
        return self.clip.encode_image(image.type(self.clip.dtype))

    def text_features(self) -> Tensor:
        learner = self.learner
        return self.clip.encode_text_embeddings(learner(), learner.eot, shared=learner.shared)

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor]:
        """(logits, normalised class features of the learned prompts); at evaluation the class features are
        kept while the context is unchanged."""
        clip_model = self.clip
        text = self.eval_text.get(self.parameters(), self.text_features)
        image_features = l2_normalize(self.image_features(image))
        text = l2_normalize(text)
        return clip_logits(clip_model.logit_scale.exp(), image_features, text, normalize=False), text


def teacher_features(clip_model: CLIP, tokens: Tensor, released: bool = True) -> Tensor:
    """Normalised features of the teacher prompts ``tokens`` over the official 77 positions (computed once, and
    a cut would move fp16 values by fp16 rounding).

    ``released``: by the released fp16 CLIP, whatever the run's precision. The official teacher (KgCoOp's, TCP's)
    is a second CLIP that is never cast to fp32 (``.cuda()`` only): its features, and their normalisation, are
    fp16. A copy of an fp32 ``clip_model`` in the release's layout (``convert_weights`` restores it exactly: the
    fp32 weights are fp16 values cast up) computes them. Otherwise by ``clip_model`` as it is.
    """
    encoder = clip_model
    if released and encoder.dtype != torch.float16:
        encoder = copy.deepcopy(encoder)
        convert_weights(encoder)
    return l2_normalize(encoder.pool_text(encoder.encode_text_tokens(tokens), tokens.argmax(dim=-1)))


def kgcoop_loss(logits: Tensor, text: Tensor, teacher: Tensor, label: Tensor, weight: float) -> Tensor:
    """CE + W * (1 - mean cos(text, teacher)); the teacher is renormalised (in its own dtype, fp16) as the
    official code does."""
    score = 1.0 - torch.mean(F.cosine_similarity(text, l2_normalize(teacher), dim=1, eps=1e-07))
    return F.cross_entropy(logits, label) + weight * score


def build_kgcoop(
    cfg: CfgNode, classnames: list[str], clip_model: CLIP, *, template: str | None = None
) -> KgCoOpModel:
    """KgCoOp around a frozen ``clip_model`` (draws the context only); ``template``: the teacher's, if the
    dataset brings one (else KgCoOp's table, configs/trainers/KgCoOp/templates.yaml)."""
    learner = CoOpPromptLearner(official_context(cfg), classnames, clip_model)
    prompts = class_prompts(cfg.DATASET.NAME, classnames, templates("KgCoOp", "teacher"), template)
    print(f"Prompts: {prompts}")
    return KgCoOpModel(clip_model, learner, clip.tokenize(prompts))


@TRAINER_REGISTRY.register()
class KgCoOp(PromptTrainer):
    """KgCoOp: CoOp's learner and the knowledge-guided loss, on CoOp's node plus ``W``."""

    NODE = "COOP"  # shared with CoOp
    FROZEN_IMAGE_FEATURES = "image_features"
    DEFAULTS = {**CoOp.DEFAULTS, "W": 1.0}  # W: the official default; the published scripts pass 8.0
    BACKBONES = (VIT, RESNET)
    model_factory = staticmethod(build_kgcoop)
    replay_after_factory = staticmethod(official.replay_kgcoop_build)
    filter_state_dict = staticmethod(official.filter_kgcoop_state_dict)
    filter_optimizer_state = staticmethod(official.kgcoop_optimizer_state)
    model: KgCoOpModel

    def check_cfg(self, cfg: CfgNode) -> None:
        super().check_cfg(cfg)
        settings = cfg.TRAINER.COOP
        if settings.CLASS_TOKEN_POSITION != "end":
            raise ConfigError(
                f"TRAINER.COOP.CLASS_TOKEN_POSITION {settings.CLASS_TOKEN_POSITION!r}: KgCoOp's official prompt "
                "learner places the class token at the end only; use end"
            )
        if settings.CTX_INIT and settings.CTX_INIT != INIT_WORDS:
            print(f'Note: KgCoOp initialises the context with "{INIT_WORDS}" whatever CTX_INIT is (official code)')

    def compute_loss(self, image: Tensor, label: Tensor) -> tuple[Tensor, Tensor]:
        logits, text = self.model(image)
        return kgcoop_loss(logits, text, self.model.teacher(), label, self.settings.W), logits

    def model_inference(self, input: Tensor) -> Tensor:
        return self.model(input)[0]
