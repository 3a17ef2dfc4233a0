"""VPT (deep vision prompting, as the baseline of Khattak et al. CVPR 2023): deep prompts in the image tower
only; the classes are the frozen text features of "a photo of a <class>.", computed once.

Official code: github muzairkhattak/multimodal-prompt-learning, trainers/vpt.py. As there, the CLIP runs
in fp32 whatever PREC says (the official code casts it to fp32 when loading it), and the checkpoint folder
is ``prompt_learner``. The mechanism is mechanism.py. A dataset that brings its own template
(ImageFolder's DATASET.FOLDER.TEMPLATE) replaces the fixed prompt.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn
from yacs.config import CfgNode

from clip import clip
from clip.model import CLIP
from dassl.engine import TRAINER_REGISTRY

from ..logits import clip_logits
from ..prompts import class_prompts
from ..text_cache import FrozenFeatures
from . import official
from .mechanism import IndependentInit, PromptShape, TowerPrompts
from .trainer import DeepPromptTrainer

TEMPLATE = "a photo of a {}."  # the official VPT's fixed prompt, for every dataset


class VisionPrompts(nn.Module):
    """Every learned tensor of VPT, under the official model's key names."""

    def __init__(self, clip_model: CLIP, settings: CfgNode, init: IndependentInit | None = None) -> None:
        super().__init__()
        init = init if init is not None else PromptShape.of(settings).draw(clip_model)
        self.image_encoder = TowerPrompts(init.vision_deep, init.vision_first)


class VPTModel(nn.Module):
    """The frozen CLIP with deep prompts in its image tower, against fixed class features."""

    def __init__(self, clip_model: CLIP, prompts: Sequence[str], learner: VisionPrompts) -> None:
        super().__init__()
        self.clip = clip_model
        self.learner = learner
        self.register_buffer("tokens", clip.tokenize(list(prompts)), persistent=False)
        self.text_features = FrozenFeatures(lambda: self.clip.encode_text(self.tokens), clip_model.text_projection)

    def forward(self, image: Tensor) -> Tensor:
        hooks = self.learner.image_encoder.hooks(text=False, ln_pre=self.clip.visual.ln_pre)
        return clip_logits(self.clip.logit_scale.exp(), self.clip.encode_image(image, hooks), self.text_features())


def build_vpt(
    cfg: CfgNode, classnames: list[str], clip_model: CLIP, *, template: str | None = None,
    init: IndependentInit | None = None
) -> VPTModel:  # fmt: skip
    """VPT around ``clip_model``; ``init``: the prompts' initial values (None: drawn here, in the official order)."""
    prompts = class_prompts(cfg.DATASET.NAME, classnames, template=template or TEMPLATE)
    return VPTModel(clip_model, prompts, VisionPrompts(clip_model, cfg.TRAINER.VPT, init))


@TRAINER_REGISTRY.register()
class VPT(DeepPromptTrainer):
    """VPT on Dassl's TrainerX, under the official name, node and model name."""

    NODE = "VPT"
    DEFAULTS = {  # the official defaults (the YAML file sets the values used)
        "N_CTX_VISION": 2,  # prompt tokens per layer
        "CTX_INIT": "a photo of a",  # read by nothing (the official node has it)
        "PREC": "fp16",  # fp16 runs in fp32, as the official code; amp
        "PROMPT_DEPTH_VISION": 1,  # layers 1..depth get prompts
    }
    LEARNER_NAME = "prompt_learner"
    DEPTH_KEYS = (("PROMPT_DEPTH_VISION", "vision", 1),)  # the official VPT needs one at least
    model_factory = staticmethod(build_vpt)
    replay_construction = staticmethod(official.replay_construction)

    def precision(self) -> str:
        """fp16 runs in fp32: the official VPT casts its CLIP to fp32 whatever PREC says."""
        prec = super().precision()
        if prec == "fp16":
            print("VPT runs its CLIP in fp32 (as the official code) although PREC is fp16")
            return "fp32"
        return prec
