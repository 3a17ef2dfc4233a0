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
from ..prompts import class_name


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
    ``cached_text`` holds the eval-time text features; any change of mode or weights drops it.
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
        self.cached_text: Tensor | None = None

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

    def train(self, mode: bool = True) -> AdapterLearner:
        self.cached_text = None
        return super().train(mode)

    def load_state_dict(self, *args: Any, **kwargs: Any) -> Any:
        self.cached_text = None
        return super().load_state_dict(*args, **kwargs)


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

    @property
    def learner(self) -> AdapterLearner:
        return self.adapter_learner

    def encode_text(self) -> Tensor:
        learner = self.adapter_learner
        tokens = learner.tokenized_prompts
        hooks = AdapterHooks(learner, learner.text_adapter, self.clip.transformer.resblocks, adapt_input=False)
        return self.clip.encode_text_embeddings(learner.text_embeddings(), tokens.argmax(dim=-1), inject=hooks)

    def text_features(self) -> Tensor:
        """In training, recomputed every step; in eval, once per evaluation (the weights are fixed then)."""
        learner = self.adapter_learner
        if learner.training:
            return self.encode_text()
        if learner.cached_text is None:
            learner.cached_text = self.encode_text()
        return learner.cached_text

    def forward(self, image: Tensor) -> Tensor:
        text = self.text_features()
        learner = self.adapter_learner
        hooks = AdapterHooks(learner, learner.visual_adapter, self.clip.visual.transformer.resblocks, adapt_input=True)
        image_features = self.clip.encode_image(image.to(self.clip.dtype), inject=hooks)
        text = F.normalize(text, dim=-1)
        image_features = F.normalize(image_features, dim=-1)
        return self.clip.logit_scale.exp() * image_features @ text.t()


def adapted_layers(settings: CfgNode) -> range:
    """ADAPTER_START..ADAPTER_END, both included (the official range)."""
    return range(settings.ADAPTER_START, settings.ADAPTER_END + 1)


def build_mma(cfg: CfgNode, classnames: list[str], clip_model: CLIP) -> MMAModel:
    """MMA around a frozen ``clip_model``: prompts "TEXT_CTX_INIT <class>." and fresh adapters (seeded draws)."""
    s = cfg.TRAINER.MMADAPTER
    tokens = clip.tokenize([f"{s.TEXT_CTX_INIT} {class_name(name)}." for name in classnames])
    with torch.no_grad():
        embedding = clip_model.token_embeddings(tokens)
    text_width = clip_model.ln_final.weight.shape[0]
    visual_width = clip_model.visual.ln_post.weight.shape[0]
    scale = float(s.ADAPTER_SCALE)
    learner = AdapterLearner(text_width, visual_width, s.ADAPTER_DIM, adapted_layers(s), scale, tokens, embedding)
    return MMAModel(clip_model, learner.to(clip_model.dtype))


@TRAINER_REGISTRY.register()
class MultiModalAdapter(CLIPTrainer):
    """MMA: the adapters are the only trained tensors; plain cross-entropy on the adapted logits."""

    NODE = "MMADAPTER"
    LEARNER_NAME = "adapter_learner"
    REBUILT_KEYS = ("token_embedding", "tokenized_prompts")
    model_factory = staticmethod(build_mma)
    model: MMAModel

    @classmethod
    def add_config(cls, cfg: CfgNode) -> None:
        """The official train.py defaults; the YAML files set the published values (5..12, alpha 0.001)."""
        node = CfgNode()
        node.TEXT_CTX_INIT = ""  # words before the class name: "<TEXT_CTX_INIT> <class>."
        node.PREC = "amp"  # fp16, fp32 or amp
        node.ADAPTER_START = 4  # first adapted layer (1-based; 0 adapts the input embeddings)
        node.ADAPTER_END = 12  # last adapted layer, inclusive
        node.ADAPTER_DIM = 32  # bottleneck width, also the shared projection's width
        node.ADAPTER_SCALE = 0.1  # alpha, the branch's weight in the forward pass
        cfg.TRAINER.MMADAPTER = node

    def check_cfg(self, cfg: CfgNode) -> None:
        super().check_cfg(cfg)
        s = cfg.TRAINER.MMADAPTER
        if not 0 <= s.ADAPTER_START <= s.ADAPTER_END:
            raise ConfigError(
                f"TRAINER.MMADAPTER.ADAPTER_START ({s.ADAPTER_START}) and ADAPTER_END ({s.ADAPTER_END}) must satisfy "
                "0 <= ADAPTER_START <= ADAPTER_END"
            )
        if s.ADAPTER_DIM < 1:
            raise ConfigError(f"TRAINER.MMADAPTER.ADAPTER_DIM must be at least 1, got {s.ADAPTER_DIM}")
        if float(s.ADAPTER_SCALE) == 0:
            raise ConfigError(
                "TRAINER.MMADAPTER.ADAPTER_SCALE must not be 0 (adapter gradients are scaled by 1/ADAPTER_SCALE); "
                "for CLIP without adapters run ZeroshotCLIP"
            )

    def check_architecture(self, arch: CLIPConfig) -> None:
        s = self.settings
        depth = min(arch.vision_layers, arch.transformer_layers)
        if s.ADAPTER_END > depth:
            raise ConfigError(
                f"TRAINER.MMADAPTER.ADAPTER_END={s.ADAPTER_END}, but the CLIP backbone has {depth} layers"
            )
        if s.ADAPTER_DIM in (arch.transformer_width, arch.vision_width):
            raise ConfigError(
                f"TRAINER.MMADAPTER.ADAPTER_DIM={s.ADAPTER_DIM} equals a tower's width; the official code then builds "
                "no down/up projections and fails, so choose another width"
            )

    def forward_backward(self, batch: dict) -> dict[str, float]:
        """The step of the base; the official MMA logs the loss only, so only the loss is reported."""
        return {"loss": super().forward_backward(batch)["loss"]}
