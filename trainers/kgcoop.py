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
- the random numbers its build draws are drawn in the same order (``replay_official_build``): a second
  full CLIP construction and three modules it never uses, so the data order and augmentation that
  follow are the official run's;
- official checkpoints also hold those unused ``bias_vectors`` and ``meta_net`` tensors, skipped on load;
- the teacher features are those of the released fp16 CLIP whatever PREC is (the official teacher is a
  second CLIP that is never cast to fp32): computed once from an fp16 copy of the frozen CLIP.

Not the official code: its amp branch is broken (the model returns a tuple), ours runs amp as the other
methods do (not exercised here: CPU only).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from yacs.config import CfgNode

from clip import clip
from clip.model import CLIP, convert_weights
from dassl.engine import TRAINER_REGISTRY

from .base import CLIPTrainer, ConfigError
from .coop.coop import REBUILT, CoOpPromptLearner, add_missing, check_context, coop_node
from .prompts import TEMPLATES, class_prompts
from .replay import replay_clip_construction

# KgCoOp's templates: CoOp's except DTD.
KGCOOP_TEMPLATES = {**TEMPLATES, "DescribableTextures": "a photo of a {}, a type of texture."}
# What the official code initialises the context with whenever CTX_INIT is truthy.
INIT_WORDS = "a photo of a"
# Keys of official checkpoints for modules built but never used (frozen, untouched by training).
UNUSED_OFFICIAL_KEYS = ("bias_vectors", "meta_net.")
# Their hard-coded width (512, ViT-B/16's embedding width) whatever the backbone.
UNUSED_WIDTH = 512


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
        self.register_buffer("teacher_features", torch.empty(0), persistent=False)

    @torch.no_grad()
    def encode_teacher(self) -> None:
        """The templates' normalised features from the released fp16 CLIP; once the model is on its device.

        The official teacher is a second CLIP that is never cast to fp32 (``.cuda()`` only), whatever PREC
        is: its features, and their normalisation, are computed in fp16 (``convert_weights`` restores the
        release's layout exactly on a copy, the fp32 weights being fp16 values cast up). Computed once, so
        always over the official 77 positions: the prompt cut would move fp16 values by fp16 rounding.
        """
        teacher = copy.deepcopy(self.clip)
        convert_weights(teacher)
        teacher.cut_text = False
        features = teacher.encode_text(self.teacher_tokens)
        self.teacher_features = features / features.norm(dim=-1, keepdim=True)

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor]:
        """(logits, normalised class features of the learned prompts)."""
        clip_model = self.clip
        text = clip_model.encode_text_embeddings(self.learner(), self.learner.eot, shared=self.learner.shared)
        image_features = clip_model.encode_image(image.type(clip_model.dtype))
        image_features = image_features / image_features.norm(dim=-1, keepdim=True)
        text = text / text.norm(dim=-1, keepdim=True)
        return clip_model.logit_scale.exp() * image_features @ text.t(), text


def kgcoop_loss(logits: Tensor, text: Tensor, teacher: Tensor, label: Tensor, weight: float) -> Tensor:
    """CE + W * (1 - mean cos(text, teacher)); the teacher is renormalised (in its own dtype, fp16) as the
    official code does."""
    teacher = teacher / teacher.norm(dim=-1, keepdim=True)
    score = 1.0 - torch.mean(F.cosine_similarity(text, teacher, dim=1, eps=1e-07))
    return F.cross_entropy(logits, label) + weight * score


def replay_official_build(clip_model: CLIP) -> None:
    """Draw what the official build draws after the context.

    In its order: ``bias_vectors``, a second CLIP construction, ``meta_net``, then the model's adapter.
    """
    with torch.no_grad():
        torch.empty(1, UNUSED_WIDTH, dtype=clip_model.dtype).normal_(std=0.02)
        replay_clip_construction(clip_model)
        nn.Linear(UNUSED_WIDTH, UNUSED_WIDTH)
        nn.Linear(UNUSED_WIDTH, UNUSED_WIDTH // 4, bias=False)
        nn.Linear(UNUSED_WIDTH // 4, UNUSED_WIDTH, bias=False)


def build_kgcoop(cfg: CfgNode, classnames: list[str], clip_model: CLIP) -> KgCoOpModel:
    """KgCoOp around a frozen ``clip_model``, drawing the official build's random numbers in its order."""
    learner = CoOpPromptLearner(official_context(cfg), classnames, clip_model)
    replay_official_build(clip_model)
    prompts = class_prompts(cfg.DATASET.NAME, classnames, KGCOOP_TEMPLATES)
    print(f"Prompts: {prompts}")
    return KgCoOpModel(clip_model, learner, clip.tokenize(prompts))


@TRAINER_REGISTRY.register()
class KgCoOp(CLIPTrainer):
    """KgCoOp on ``CLIPTrainer``: CoOp's learner, the knowledge-guided loss, the official build's draws."""

    NODE = "COOP"
    LEARNER_NAME = "prompt_learner"
    REBUILT_KEYS = REBUILT
    model_factory = staticmethod(build_kgcoop)
    model: KgCoOpModel

    @classmethod
    def add_config(cls, cfg: CfgNode) -> None:
        """Add ``W`` to CoOp's node (created with CoOp's defaults if no CoOp trainer did)."""
        node = coop_node()
        node.W = 1.0  # the official default; the published scripts pass 8.0
        add_missing(cfg, "COOP", node)

    def check_cfg(self, cfg: CfgNode) -> None:
        super().check_cfg(cfg)
        s = cfg.TRAINER.COOP
        if s.CLASS_TOKEN_POSITION != "end":
            raise ConfigError(
                f"TRAINER.COOP.CLASS_TOKEN_POSITION {s.CLASS_TOKEN_POSITION!r}: KgCoOp's official prompt learner "
                "places the class token at the end only; use end"
            )
        check_context("COOP", s.N_CTX, s.CTX_INIT)
        if s.CTX_INIT and s.CTX_INIT != INIT_WORDS:
            print(f'Note: KgCoOp initialises the context with "{INIT_WORDS}" whatever CTX_INIT is (official code)')

    def after_build(self) -> None:
        self.model.encode_teacher()

    def compute_loss(self, image: Tensor, label: Tensor) -> tuple[Tensor, Tensor]:
        logits, text = self.model(image)
        return kgcoop_loss(logits, text, self.model.teacher_features, label, self.settings.W), logits

    def model_inference(self, input: Tensor) -> Tensor:
        return self.model(input)[0]

    def learner_state(self, learner: nn.Module, state_dict: Mapping[str, Tensor], source: str) -> dict[str, Any]:
        """Ours or an official checkpoint, whose unused ``bias_vectors`` and ``meta_net`` are skipped."""
        used = {k: v for k, v in state_dict.items() if not k.removeprefix("module.").startswith(UNUSED_OFFICIAL_KEYS)}
        return super().learner_state(learner, used, source)

    def adapt_checkpoint(self, name: str, checkpoint: dict[str, Any], path: str) -> dict[str, Any]:
        """Resume from an official folder too: its optimizer also lists the unused parameters.

        The official optimizer's one group holds the official prompt learner's parameters (``ctx`` first,
        then ``bias_vectors`` and ``meta_net``'s, which never get a gradient, so no state): only ``ctx``'s
        entry is kept. The scheduler state needs no mapping.
        """
        checkpoint = super().adapt_checkpoint(name, checkpoint, path)
        optimizer = checkpoint.get("optimizer")
        if optimizer is None or [len(g["params"]) for g in optimizer["param_groups"]] == [1]:
            return checkpoint
        (group,) = optimizer["param_groups"]
        ctx_id = group["params"][0]
        state = {0: optimizer["state"][ctx_id]} if ctx_id in optimizer["state"] else {}
        print("An official checkpoint: resuming from its ctx and ctx's optimizer state")
        return {**checkpoint, "optimizer": {"state": state, "param_groups": [{**group, "params": [0]}]}}
