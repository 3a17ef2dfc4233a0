"""IVLP (independent vision-language prompting, Khattak et al. CVPR 2023's baseline): deep prompts learned
independently in both towers, trained with cross-entropy. The base of PromptSRC (promptsrc.py).

Official code: github muzairkhattak/multimodal-prompt-learning, trainers/independentVL.py (configs under
configs/trainers/IVLP/, PromptSRC's 4+4 ablation config too). The mechanism is mechanism.py.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn
from yacs.config import CfgNode

from clip.model import CLIP
from dassl.engine import TRAINER_REGISTRY

from ..logits import clip_logits
from ..prompts import template_not_used
from ..text_cache import UnchangedCache
from . import official
from .mechanism import IndependentInit, PromptShape, TextContext, TowerPrompts
from .trainer import DeepPromptTrainer


class IndependentPrompts(nn.Module):
    """Every learned tensor of IVLP, under the official model's key names."""

    def __init__(
        self, clip_model: CLIP, classnames: Sequence[str], settings: CfgNode, init: IndependentInit | None = None
    ) -> None:
        super().__init__()
        init = init if init is not None else PromptShape.of(settings).draw(clip_model)
        self.prompt_learner = TextContext(clip_model, classnames, settings.N_CTX_TEXT, settings.CTX_INIT)
        self.image_encoder = TowerPrompts(init.vision_deep, init.vision_first)
        self.text_encoder = TowerPrompts(init.text_deep)


class IVLPModel(nn.Module):
    """The frozen CLIP with IVLP's prompts in both towers; at evaluation the class features are kept while
    no prompt (and no CLIP weight) changes."""

    def __init__(self, clip_model: CLIP, learner: IndependentPrompts) -> None:
        super().__init__()
        self.clip = clip_model
        self.learner = learner
        self.eval_text = UnchangedCache()

    def text_features(self) -> Tensor:
        text = self.learner.prompt_learner
        hooks = self.learner.text_encoder.hooks(text=True)
        return self.clip.encode_text_embeddings(text(), text.eot, hooks, text.shared)

    def image_features(self, image: Tensor) -> Tensor:
        hooks = self.learner.image_encoder.hooks(text=False, ln_pre=self.clip.visual.ln_pre)
        return self.clip.encode_image(image, hooks)

    def forward(self, image: Tensor) -> Tensor:
        image_features = self.image_features(image)
        text = self.eval_text.get(self.parameters(), self.text_features)
        return clip_logits(self.clip.logit_scale.exp(), image_features, text)


def build_ivlp(
    cfg: CfgNode, classnames: list[str], clip_model: CLIP, *, template: str | None = None,
    init: IndependentInit | None = None
) -> IVLPModel:  # fmt: skip
    """IVLP around ``clip_model``; ``init``: the prompts' initial values (None: drawn here, in the official order)."""
    template_not_used("IVLP", template)
    return IVLPModel(clip_model, IndependentPrompts(clip_model, classnames, cfg.TRAINER.IVLP, init))


@TRAINER_REGISTRY.register()
class IVLP(DeepPromptTrainer):
    """IVLP on Dassl's TrainerX, under the official name, node and model name."""

    NODE = "IVLP"
    DEFAULTS = {  # the official defaults (the YAML files set the values used)
        "N_CTX_VISION": 2,  # prompt tokens per layer, image tower
        "N_CTX_TEXT": 2,  # prompt tokens per layer, text tower
        "CTX_INIT": "a photo of a",  # words initialising the text tower's layer-0 prompts
        "PREC": "fp16",  # fp16, fp32 or amp
        "PROMPT_DEPTH_VISION": 9,  # layers 1..depth get prompts (0: none)
        "PROMPT_DEPTH_TEXT": 9,
    }
    LEARNER_NAME = "VLPromptLearner"
    REBUILT_KEYS = ("prompt_learner.token_prefix", "prompt_learner.token_suffix")
    # The official IVLP needs text prompts (VPT is the vision-only method).
    DEPTH_KEYS = (("PROMPT_DEPTH_VISION", "vision", 0), ("PROMPT_DEPTH_TEXT", "text", 1))
    model_factory = staticmethod(build_ivlp)
    replay_construction = staticmethod(official.replay_construction)
