"""MMA, the Multi-Modal Adapter of Yang et al. (CVPR 2024), on ``CLIPTrainer``.

In each adapted layer i (ADAPTER_START..ADAPTER_END, 1-based, the same in both towers) a bottleneck
branch reads the block's input through the block's own frozen ``ln_1`` and is added, scaled by
ADAPTER_SCALE (alpha), after the block's MLP residual::

    out_i = block_i(x) + alpha * up_m,i(shared_i(down_m,i(ln_1_i(x))))        m = text or visual

``down`` (width -> ADAPTER_DIM, ReLU) and ``up`` (ADAPTER_DIM -> width) belong to one tower; the
ADAPTER_DIM x ADAPTER_DIM ``shared_i`` (ReLU) is the same module in both towers, the only place the
two modalities meet. Two gradient-scale points (``GradientScale``) surround the branch so that the
adapter weights are trained as if alpha were 1 while the backbone sees the true alpha-scaled branch.
Layer 0, if asked for, adapts the input embeddings (text: token embeddings; image: after ``ln_pre``).

The learner (``AdapterLearner``, registered as ``adapter_learner``) has the official checkpoint keys:
``{text,visual}_adapter.<i>.down.0.*``, ``.up.*``, ``shared_adapter.<i>.0.*`` and the class-specific
buffers ``token_embedding``/``tokenized_prompts`` (rebuilt from the class names, never loaded).
The class prompts are "TEXT_CTX_INIT <class>.", or the dataset's own template if it brings one
(ImageFolder's DATASET.FOLDER.TEMPLATE). As the official trainer, the log shows the loss only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from yacs.config import CfgNode

from clip import clip
from clip.model import CLIP, BlockHooks, CLIPConfig, ResidualAttentionBlock
from dassl.engine import TRAINER_REGISTRY

from ..base import CLIPTrainer, ConfigError
from ..logits import clip_logits
from ..prompts import class_prompts
from ..text_cache import UnchangedCache


class GradientScale(torch.autograd.Function):
    """Identity forward; backward multiplies the incoming gradient by ``scale``."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, scale: float) -> Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return grad * ctx.scale, None


def scale_gradient(x: Tensor, scale: float) -> Tensor:
    return GradientScale.apply(x, scale)


class Bottleneck(nn.Module):
    """One tower's half of a layer's adapter: ``down`` (Linear + ReLU) to the adapter width, ``up`` back."""

    def __init__(self, width: int, dim: int):
        super().__init__()
        self.down = nn.Sequential(nn.Linear(width, dim), nn.ReLU())
        self.up = nn.Linear(dim, width)


def _adapter_dict(build: Callable[[], nn.Module], layers: range) -> nn.ModuleDict:
    """One module per adapted layer, then every Linear re-drawn: the official init and its RNG order.

    Each Linear draws PyTorch's default init when built; once the whole set exists, every weight is
    redrawn from kaiming_normal_(fan_out, relu) and every bias set to 0, in module order.
    """
    modules = nn.ModuleDict({str(i): build() for i in layers})
    for m in modules.modules():
        if isinstance(m, nn.Linear):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.constant_(m.bias, 0)
    return modules


class AdapterLearner(nn.Module):
    """Every tensor MMA trains (the three adapter sets), plus the class prompts' token embeddings.

    Built in the official order (text set, visual set, shared set), so a seed gives the official init.
    """

    def __init__(
        self,
        text_width: int,
        visual_width: int,
        dim: int,
        layers: range,
        scale: float,
        prompts: Tensor,
        token_embedding: Tensor,
    ):
        super().__init__()
        self.text_adapter = _adapter_dict(lambda: Bottleneck(text_width, dim), layers)
        self.visual_adapter = _adapter_dict(lambda: Bottleneck(visual_width, dim), layers)
        self.shared_adapter = _adapter_dict(lambda: nn.Sequential(nn.Linear(dim, dim), nn.ReLU()), layers)
        self.scale = scale
        self.register_buffer("token_embedding", token_embedding)
        self.register_buffer("tokenized_prompts", prompts)

    def branch(self, adapters: nn.ModuleDict, key: str, x: Tensor) -> Tensor:
        """up(shared(down(x))) of layer ``key`` for one tower (no scaling)."""
        adapter = adapters[key]
        return adapter.up(self.shared_adapter[key](adapter.down(x)))

    def text_embeddings(self) -> Tensor:
        """The prompts' token embeddings, with the layer-0 text adapter added if there is one."""
        x = self.token_embedding
        if "0" in self.text_adapter:
            x = x + self.scale * self.branch(self.text_adapter, "0", x)
        return x


class AdapterHooks(BlockHooks):
    """CLIP hook sites of one tower: layer i's branch is computed before block i and added after it.

    Computing the branch before the block (as the official block does) keeps the order in which
    backward sums the block input's three gradients (branch, attention, residual), so the gradients
    are bit-identical to the official ones. Layer 0 of the image tower is added before block 1
    (the text tower's layer 0 acts on the token embeddings, ``AdapterLearner.text_embeddings``).
    """

    def __init__(self, learner: AdapterLearner, adapters: nn.ModuleDict, blocks: nn.ModuleList, adapt_input: bool):
        self.learner = learner
        self.adapters = adapters
        self.blocks = blocks
        self.adapt_input = adapt_input and "0" in adapters
        self.pending: Tensor | None = None

    def before(self, i: int, x: Tensor) -> Tensor:
        scale = self.learner.scale
        if i == 1 and self.adapt_input:  # batch-first, as the official code: the weight grads sum rows in that order
            x = x + (self.learner.branch(self.adapters, "0", x.transpose(0, 1)) * scale).transpose(0, 1)
        key = str(i)
        if key in self.adapters:
            y = self.blocks[i - 1].ln_1(scale_gradient(x, scale))
            self.pending = scale_gradient(self.learner.branch(self.adapters, key, y) * scale, 1.0 / scale)
        return x

    def after(self, i: int, block: ResidualAttentionBlock, x_in: Tensor, x_out: Tensor) -> Tensor:
        if self.pending is None:
            return x_out
        y, self.pending = self.pending, None
        return x_out + y


class MMAModel(nn.Module):
    """The frozen CLIP with the adapters hooked into both towers; ``forward`` gives the logits."""

    def __init__(self, clip_model: CLIP, learner: AdapterLearner):
        super().__init__()
        self.adapter_learner = learner
        self.clip = clip_model
        self.eval_text = UnchangedCache()

    @property
    def learner(self) -> AdapterLearner:
        return self.adapter_learner

    def encode_text(self) -> Tensor:
        learner = self.adapter_learner
        tokens = learner.tokenized_prompts
        hooks = AdapterHooks(learner, learner.text_adapter, self.clip.transformer.resblocks, adapt_input=False)
        return self.clip.encode_text_embeddings(learner.text_embeddings(), tokens.argmax(dim=-1), inject=hooks)

    def text_features(self) -> Tensor:
        """In training, recomputed every step; at evaluation, kept while the adapters are unchanged."""
        return self.eval_text.get(self.adapter_learner.parameters(), self.encode_text)

    def forward(self, image: Tensor) -> Tensor:
        text = self.text_features()
        learner = self.adapter_learner
        hooks = AdapterHooks(learner, learner.visual_adapter, self.clip.visual.transformer.resblocks, adapt_input=True)
        image_features = self.clip.encode_image(image.to(self.clip.dtype), inject=hooks)
        text = F.normalize(text, dim=-1)  # F.normalize, as the official code (not x / x.norm)
        image_features = F.normalize(image_features, dim=-1)
        return clip_logits(self.clip.logit_scale.exp(), image_features, text, normalize=False)


def adapted_layers(settings: CfgNode) -> range:
    """ADAPTER_START..ADAPTER_END, both included (the official range)."""
    return range(settings.ADAPTER_START, settings.ADAPTER_END + 1)


def build_mma(cfg: CfgNode, classnames: list[str], clip_model: CLIP, *, template: str | None = None) -> MMAModel:
    """MMA around a frozen ``clip_model``: prompts "TEXT_CTX_INIT <class>." (or the dataset's ``template``)
    and fresh adapters (seeded draws)."""
    settings = cfg.TRAINER.MMADAPTER
    own = f"{settings.TEXT_CTX_INIT} {{}}."
    tokens = clip.tokenize(class_prompts(cfg.DATASET.NAME, classnames, template=template or own))
    with torch.no_grad():
        embedding = clip_model.token_embeddings(tokens)
    text_width = clip_model.ln_final.weight.shape[0]
    visual_width = clip_model.visual.ln_post.weight.shape[0]
    scale = float(settings.ADAPTER_SCALE)
    layers = adapted_layers(settings)
    learner = AdapterLearner(text_width, visual_width, settings.ADAPTER_DIM, layers, scale, tokens, embedding)
    return MMAModel(clip_model, learner.to(clip_model.dtype))


@TRAINER_REGISTRY.register()
class MultiModalAdapter(CLIPTrainer):
    """MMA: the adapters are the only trained tensors; plain cross-entropy on the adapted logits."""

    NODE = "MMADAPTER"
    DEFAULTS = {  # the official train.py defaults; the YAML files set the published values (5..12, alpha 0.001)
        "TEXT_CTX_INIT": "",  # words before the class name: "<TEXT_CTX_INIT> <class>."
        "PREC": "amp",  # fp16, fp32 or amp
        "ADAPTER_START": 4,  # first adapted layer (1-based; 0 adapts the input embeddings)
        "ADAPTER_END": 12,  # last adapted layer, inclusive
        "ADAPTER_DIM": 32,  # bottleneck width, also the shared projection's width
        "ADAPTER_SCALE": 0.1,  # alpha, the branch's weight in the forward pass
    }
    LEARNER_NAME = "adapter_learner"
    REBUILT_KEYS = ("token_embedding", "tokenized_prompts")
    LOG_ACCURACY = False
    model_factory = staticmethod(build_mma)
    model: MMAModel

    def check_cfg(self, cfg: CfgNode) -> None:
        super().check_cfg(cfg)
        settings = cfg.TRAINER.MMADAPTER
        if not 0 <= settings.ADAPTER_START <= settings.ADAPTER_END:
            raise ConfigError(
                f"TRAINER.MMADAPTER.ADAPTER_START ({settings.ADAPTER_START}) and ADAPTER_END "
                f"({settings.ADAPTER_END}) must satisfy 0 <= ADAPTER_START <= ADAPTER_END"
            )
        if settings.ADAPTER_DIM < 1:
            raise ConfigError(f"TRAINER.MMADAPTER.ADAPTER_DIM must be at least 1, got {settings.ADAPTER_DIM}")
        if float(settings.ADAPTER_SCALE) == 0:
            raise ConfigError(
                "TRAINER.MMADAPTER.ADAPTER_SCALE must not be 0 (adapter gradients are scaled by 1/ADAPTER_SCALE); "
                "for CLIP without adapters run ZeroshotCLIP"
            )

    def check_architecture(self, arch: CLIPConfig) -> None:
        settings = self.settings
        depth = min(arch.vision_layers, arch.transformer_layers)
        if settings.ADAPTER_END > depth:
            raise ConfigError(
                f"TRAINER.MMADAPTER.ADAPTER_END={settings.ADAPTER_END}, but the CLIP backbone has {depth} layers"
            )
        if settings.ADAPTER_DIM in (arch.transformer_width, arch.vision_width):
            raise ConfigError(
                f"TRAINER.MMADAPTER.ADAPTER_DIM={settings.ADAPTER_DIM} equals a tower's width; the official code "
                "then builds no down/up projections and fails, so choose another width"
            )
