"""MaPLe (Khattak et al., CVPR 2023): deep prompts in both towers, the image tower's projected from the
text tower's by one linear layer per depth ("coupling"), trained with cross-entropy.

Official code: github muzairkhattak/multimodal-prompt-learning, trainers/maple.py. Layer-0 text prompts
``ctx`` (CTX_INIT's first N_CTX words) are projected by ``proj`` into the image tower's layer-0 prompts;
for the layers 2..PROMPT_DEPTH, ``compound_prompts_text[k]`` (N(0, 0.02)) go into the text tower and
``compound_prompt_projections[k]`` of them into the image tower. The projections start as copies of
one linear layer. The mechanism is mechanism.py.

Not as the official code: the widths come from the backbone (the official code hard-codes ViT-B/16's
512 and 768, so it only runs with ViT-B backbones); ``proj`` has the CLIP's dtype (the official one is
always fp16, which cannot run in fp32: the same in fp16 runs).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

from torch import Tensor, nn
from yacs.config import CfgNode

from clip.model import CLIP
from dassl.engine import TRAINER_REGISTRY

from ..logits import clip_logits
from ..prompts import template_not_used
from ..text_cache import UnchangedCache
from .mechanism import DeepPromptHooks, TextContext, normal_prompts
from .trainer import DeepPromptTrainer


class CoupledPrompts(TextContext):
    """The official ``MultiModalPromptLearner``: text prompts per layer and their projections to the image tower."""

    def __init__(self, clip_model: CLIP, classnames: Sequence[str], settings: CfgNode) -> None:
        super().__init__(clip_model, classnames, settings.N_CTX, settings.CTX_INIT)
        t_width, v_width = clip_model.ln_final.weight.shape[0], clip_model.visual.conv1.weight.shape[0]
        # Built in the official order, so a seeded run draws the official initial values.
        self.proj = nn.Linear(t_width, v_width).to(clip_model.dtype)
        deep = [nn.Parameter(normal_prompts(settings.N_CTX, t_width)) for _ in range(settings.PROMPT_DEPTH - 1)]
        self.compound_prompts_text = nn.ParameterList(deep)
        projection = nn.Linear(t_width, v_width)
        self.compound_prompt_projections = nn.ModuleList(copy.deepcopy(projection) for _ in deep)

    def hooks(self, ln_pre: nn.Module) -> tuple[DeepPromptHooks, DeepPromptHooks]:
        """(text tower hooks, image tower hooks) of one pass."""
        text = list(self.compound_prompts_text)
        vision = [project(p) for project, p in zip(self.compound_prompt_projections, text, strict=True)]
        return DeepPromptHooks(text, text=True), DeepPromptHooks(vision, False, self.proj(self.ctx), ln_pre)


class MaPLeLearner(nn.Module):
    """Every learned tensor of MaPLe, under the official model's key names (``prompt_learner.*``)."""

    def __init__(self, clip_model: CLIP, classnames: Sequence[str], settings: CfgNode) -> None:
        super().__init__()
        self.prompt_learner = CoupledPrompts(clip_model, classnames, settings)


class MaPLeModel(nn.Module):
    """The frozen CLIP with MaPLe's coupled prompts."""

    def __init__(self, clip_model: CLIP, learner: MaPLeLearner) -> None:
        super().__init__()
        self.clip = clip_model
        self.learner = learner
        self.eval_text = UnchangedCache()

    def forward(self, image: Tensor) -> Tensor:
        """Logits; at evaluation the class features are kept while no prompt (and no CLIP weight) changes."""
        prompts = self.learner.prompt_learner
        text_hooks, image_hooks = prompts.hooks(self.clip.visual.ln_pre)
        encode = self.clip.encode_text_embeddings
        text_features = self.eval_text.get(
            self.parameters(), lambda: encode(prompts(), prompts.eot, text_hooks, prompts.shared)
        )
        image_features = self.clip.encode_image(image, image_hooks)
        return clip_logits(self.clip.logit_scale.exp(), image_features, text_features)


def build_maple(cfg: CfgNode, classnames: list[str], clip_model: CLIP, *, template: str | None = None) -> MaPLeModel:
    """MaPLe around ``clip_model`` (its random init drawn after CLIP's, as the official code)."""
    template_not_used("MaPLe", template)
    return MaPLeModel(clip_model, MaPLeLearner(clip_model, classnames, cfg.TRAINER.MAPLE))


@TRAINER_REGISTRY.register()
class MaPLe(DeepPromptTrainer):
    """MaPLe on Dassl's TrainerX, under the official name, node and model name."""

    NODE = "MAPLE"
    DEFAULTS = {  # the official defaults (the YAML files set the values used)
        "N_CTX": 2,  # prompt tokens per layer, both towers
        "CTX_INIT": "a photo of a",  # words initialising the layer-0 text prompts
        "PREC": "fp16",  # fp16, fp32 or amp
        "PROMPT_DEPTH": 9,  # layers 1..depth of both towers get prompts (1: layer 0 only)
    }
    LEARNER_NAME = "MultiModalPromptLearner"
    REBUILT_KEYS = ("prompt_learner.token_prefix", "prompt_learner.token_suffix")
    DEPTH_KEYS = (("PROMPT_DEPTH", "vision", 1), ("PROMPT_DEPTH", "text", 1))
    model_factory = staticmethod(build_maple)
