"""CoOp (Zhou et al., IJCV 2022): learned context vectors in front of (or around) the class name.

Reusable API (KgCoOp and other CoOp-family methods build on it):
- ``context_init(width, n_ctx, ctx_init, clip_model, n_cls=None)``: the initial context (random
  N(0, 0.02) in CLIP's dtype, ``(n_cls, n_ctx, width)`` when class-specific, or the embeddings of the
  init words) and the text standing for it in the prompts;
- ``CoOpPromptLearner(cfg, classnames, clip_model)``: ``ctx`` and the buffers ``token_prefix`` /
  ``token_suffix`` under the official names; ``learner()`` returns the prompts' token embeddings
  (n_cls, L, width) and ``learner.eot`` their EOT positions, ready for ``CLIP.encode_text_embeddings``;
- ``build_coop(cfg, classnames, clip_model) -> CoOpModel`` (``model.learner`` is the prompt learner).

Random draws at build are the official ones: the frozen CLIP's construction (the trainer base's), then
the random context, nothing else.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from yacs.config import CfgNode

from clip import clip
from clip.model import CLIP, RESNET, VIT
from dassl.engine import TRAINER_REGISTRY

from ..base import CLIPTrainer, ConfigError
from ..logits import clip_logits
from ..prompts import ClassPrompts, template_not_used
from ..text_cache import UnchangedCache

POSITIONS = ("end", "middle", "front")
REBUILT = ("token_prefix", "token_suffix")


def context_init(
    width: int, n_ctx: int, ctx_init: str, clip_model: CLIP, n_cls: int | None = None
) -> tuple[Tensor, str]:
    """(initial context, its stand-in text in the prompts).

    With init words, one vector per word ("_" counts as a space), taken from CLIP's token embeddings;
    otherwise ``n_ctx`` vectors drawn from N(0, 0.02) in CLIP's dtype, one set per class if ``n_cls``.
    """
    if ctx_init:
        words = ctx_init.replace("_", " ")
        n_words = len(words.split(" "))
        with torch.no_grad():
            ctx = clip_model.token_embeddings(clip.tokenize(words))[0, 1 : 1 + n_words]
        return ctx, words
    ctx = torch.empty(*((n_cls,) if n_cls is not None else ()), n_ctx, width, dtype=clip_model.dtype)
    nn.init.normal_(ctx, std=0.02)
    return ctx, " ".join(["X"] * n_ctx)


class CoOpPromptLearner(ClassPrompts):
    """CoOp's learnable context (generic or class-specific) and the class token's position."""

    def __init__(self, cfg: CfgNode, classnames: list[str], clip_model: CLIP) -> None:
        settings = cfg.TRAINER.COOP
        width = clip_model.ln_final.weight.shape[0]
        if not settings.CTX_INIT:
            print("Initializing class-specific contexts" if settings.CSC else "Initializing a generic context")
        n_cls = len(classnames) if settings.CSC else None
        ctx, stand_in = context_init(width, settings.N_CTX, settings.CTX_INIT, clip_model, n_cls)
        n_ctx = ctx.shape[-2]
        print(f'Initial context: "{stand_in}"')
        print(f"Number of context words (tokens): {n_ctx}")
        super().__init__(classnames, stand_in, n_ctx, clip_model)
        self.ctx = nn.Parameter(ctx)
        self.n_ctx = n_ctx
        self.position = settings.CLASS_TOKEN_POSITION
        # Context vectors before the class name: all ("end"), half ("middle") or none ("front").
        self.n_before_name = {"end": n_ctx, "middle": n_ctx // 2, "front": 0}[self.position]
        if ctx.dim() == 2:  # one context for all classes: SOS and the context before the name are shared
            self.shared = 1 + self.n_before_name

    def forward(self) -> Tensor:
        """Token embeddings (n_cls, L, width) of the prompts, before the positional embedding."""
        ctx = self.ctx if self.ctx.dim() == 3 else self.ctx.unsqueeze(0).expand(self.n_cls, -1, -1)
        prefix, suffix = self.token_prefix, self.token_suffix
        if self.position == "end":
            return torch.cat([prefix, ctx, suffix], dim=1)
        half = self.n_before_name
        prompts = []
        for i, n in enumerate(self.name_lens):
            name, rest = suffix[i : i + 1, :n], suffix[i : i + 1, n:]
            before, after = ctx[i : i + 1, :half], ctx[i : i + 1, half:]
            prompts.append(torch.cat([prefix[i : i + 1], before, name, after, rest], dim=1))
        return torch.cat(prompts, dim=0)


class PromptModel(nn.Module):
    """The frozen CLIP and a prompt learner, held as ``prompt_learner`` so that parameter names are
    the official ones (``prompt_learner.ctx``); ``learner`` is the same module (the base's name)."""

    def __init__(self, clip_model: CLIP, learner: nn.Module) -> None:
        super().__init__()
        self.clip = clip_model
        self.prompt_learner = learner

    @property
    def learner(self) -> nn.Module:
        return self.prompt_learner

    def image_features(self, image: Tensor) -> Tensor:
        """The frozen, unprompted image tower's features (the trainers' ``FROZEN_IMAGE_FEATURES``)."""
        return self.clip.encode_image(image.type(self.clip.dtype))


class CoOpModel(PromptModel):
    """CoOp's model; returns the logits. At evaluation the class features are kept while the context is
    unchanged (they do not depend on the image)."""

    def __init__(self, clip_model: CLIP, learner: nn.Module) -> None:
        super().__init__(clip_model, learner)
        self.eval_text = UnchangedCache()

    def text_features(self) -> Tensor:
        learner = self.learner
        return self.clip.encode_text_embeddings(learner(), learner.eot, shared=learner.shared)

    def forward(self, image: Tensor) -> Tensor:
        clip_model = self.clip
        image_features = self.image_features(image)
        text_features = self.eval_text.get(self.parameters(), self.text_features)
        return clip_logits(clip_model.logit_scale.exp(), image_features, text_features)


def build_coop(cfg: CfgNode, classnames: list[str], clip_model: CLIP, *, template: str | None = None) -> CoOpModel:
    """CoOp around a frozen ``clip_model`` (draws only the random context, as the official build)."""
    template_not_used("CoOp", template)
    return CoOpModel(clip_model, CoOpPromptLearner(cfg, classnames, clip_model))


def check_context(node: str, n_ctx: int, ctx_init: str) -> None:
    """Refuse a context that cannot be built (no random vectors and no init words)."""
    if not ctx_init and n_ctx < 1:
        raise ConfigError(f"TRAINER.{node}.N_CTX must be at least 1 (or set TRAINER.{node}.CTX_INIT), got {n_ctx}")


class PromptTrainer(CLIPTrainer):
    """A CoOp-family trainer: its learner is ``prompt_learner`` with rebuilt ``token_prefix`` /
    ``token_suffix``, and its context must be buildable."""

    LEARNER_NAME = "prompt_learner"
    REBUILT_KEYS = REBUILT

    def check_cfg(self, cfg: CfgNode) -> None:
        super().check_cfg(cfg)
        settings = cfg.TRAINER[self.NODE]
        check_context(self.NODE, settings.N_CTX, settings.CTX_INIT)


@TRAINER_REGISTRY.register()
class CoOp(PromptTrainer):
    """Context Optimization: the prompt learner trained with cross-entropy of CLIP's logits."""

    NODE = "COOP"
    BACKBONES = (VIT, RESNET)  # the official code runs on both (CoOp's own results are on RN50)
    FROZEN_IMAGE_FEATURES = "image_features"
    DEFAULTS = {  # CoOp's train.py
        "N_CTX": 16,  # context vectors
        "CSC": False,  # class-specific contexts (one set per class)
        "CTX_INIT": "",  # words initialising the context ("": random N(0, 0.02))
        "PREC": "fp16",  # fp16, fp32 or amp
        "CLASS_TOKEN_POSITION": "end",  # end, middle or front
    }
    model_factory = staticmethod(build_coop)

    def check_cfg(self, cfg: CfgNode) -> None:
        super().check_cfg(cfg)
        settings = cfg.TRAINER.COOP
        if settings.CLASS_TOKEN_POSITION not in POSITIONS:
            raise ConfigError(
                f"TRAINER.COOP.CLASS_TOKEN_POSITION must be one of {', '.join(POSITIONS)}, "
                f"got {settings.CLASS_TOKEN_POSITION!r}"
            )
        if settings.CTX_INIT and settings.CSC:
            print("Note: TRAINER.COOP.CSC is ignored with CTX_INIT (one context initialised from the words)")
