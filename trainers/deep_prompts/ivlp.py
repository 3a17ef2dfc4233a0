"""IVLP (independent vision-language prompting, Khattak et al. CVPR 2023's baseline): deep prompts learned
independently in both towers, trained with cross-entropy. The base of PromptSRC (promptsrc.py).

Official code: github muzairkhattak/multimodal-prompt-learning, trainers/independentVL.py (configs under
configs/trainers/IVLP/, PromptSRC's 4+4 ablation config too). The mechanism is deep_prompts.py.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn
from yacs.config import CfgNode

from clip.model import CLIP
from dassl.engine import TRAINER_REGISTRY

from .mechanism import (
    IndependentInit,
    IndependentPromptTrainer,
    PromptShape,
    TextContext,
    TowerPrompts,
    logits_of,
)

LEARNER_NAME = "VLPromptLearner"


def ivlp_node() -> CfgNode:
    """``TRAINER.IVLP`` with the official defaults (the YAML files set the values used)."""
    node = CfgNode()
    node.N_CTX_VISION = 2  # prompt tokens per layer, image tower
    node.N_CTX_TEXT = 2  # prompt tokens per layer, text tower
    node.CTX_INIT = "a photo of a"  # words initialising the text tower's layer-0 prompts
    node.PREC = "fp16"  # fp16, fp32 or amp
    node.PROMPT_DEPTH_VISION = 9  # layers 1..depth get prompts (0: none)
    node.PROMPT_DEPTH_TEXT = 9
    return node


class IndependentPrompts(nn.Module):
    """Every learned tensor of IVLP, under the official model's key names."""

    def __init__(
        self, clip_model: CLIP, classnames: Sequence[str], s: CfgNode, init: IndependentInit | None = None
    ) -> None:
        super().__init__()
        init = init if init is not None else PromptShape.of(s).draw(clip_model)
        self.prompt_learner = TextContext(clip_model, classnames, s.N_CTX_TEXT, s.CTX_INIT)
        self.image_encoder = TowerPrompts(init.vision_deep, init.vision_first)
        self.text_encoder = TowerPrompts(init.text_deep)


class IVLPModel(nn.Module):
    """The frozen CLIP with IVLP's prompts in both towers."""

    def __init__(self, clip_model: CLIP, learner: IndependentPrompts) -> None:
        super().__init__()
        self.clip = clip_model
        self.learner = learner

    def text_features(self) -> Tensor:
        text = self.learner.prompt_learner
        hooks = self.learner.text_encoder.hooks(text=True)
        return self.clip.encode_text_embeddings(text(), text.eot, hooks, text.shared)

    def image_features(self, image: Tensor) -> Tensor:
        hooks = self.learner.image_encoder.hooks(text=False, ln_pre=self.clip.visual.ln_pre)
        return self.clip.encode_image(image, hooks)

    def forward(self, image: Tensor) -> Tensor:
        return logits_of(self.clip.logit_scale, self.image_features(image), self.text_features())


def build_ivlp(
    cfg: CfgNode, classnames: list[str], clip_model: CLIP, init: IndependentInit | None = None
) -> IVLPModel:
    """IVLP around ``clip_model``; ``init``: the prompts drawn in CLIP's construction (else drawn here)."""
    return IVLPModel(clip_model, IndependentPrompts(clip_model, classnames, cfg.TRAINER.IVLP, init))


@TRAINER_REGISTRY.register()
class IVLP(IndependentPromptTrainer):
    """IVLP on Dassl's TrainerX, under the official name, node and model name."""

    NODE = "IVLP"
    LEARNER_NAME = LEARNER_NAME
    REBUILT_KEYS = ("prompt_learner.token_prefix", "prompt_learner.token_suffix")
    # The official IVLP needs text prompts (VPT is the vision-only method).
    DEPTH_KEYS = (("PROMPT_DEPTH_VISION", "vision", 0), ("PROMPT_DEPTH_TEXT", "text", 1))
    model_factory = staticmethod(build_ivlp)

    @classmethod
    def add_config(cls, cfg: CfgNode) -> None:
        cfg.TRAINER.IVLP = ivlp_node()
