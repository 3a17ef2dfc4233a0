"""TCP (Yao et al., CVPR 2024): Textual-based Class-aware Prompt tuning.

CoOp's context (4 vectors) in per-dataset prompts (configs/trainers/TCP/templates.yaml), plus
class-aware tokens: a small meta-network (the paper's Textual Knowledge Embedding) maps each class's frozen
CLIP text feature, of a hand-written template (its teacher table), to 4 tokens that
replace the context's rows before a middle text block (the 9th). The image tower is frozen and unprompted.
Loss = cross-entropy + 8 * (1 - mean over classes of cos(learned class feature, frozen class feature)),
KgCoOp's regulariser at TCP's fixed weight. TCP shares CoOp's node
``TRAINER.COOP`` (as KgCoOp does) and adds the keys below.

Sizes come from the backbone: the class-aware tokens are as wide as the text tower (the official code
writes 512, ViT-B/16's width), the meta-network maps the embedding width d to d / 4 to 4 x text width.
What the official code (github htyao89/Textual-based_Class-aware_prompt_tuning) hard-codes or reads
elsewhere is a key here, whose default is the official behaviour:

- ``CLASS_AWARE_LAYER`` (8): text blocks run before the tokens replace the context (official: 8);
- ``META_NET_PREC`` (fp16): the frozen class features come from the released fp16 CLIP and the
  meta-network runs in fp16, whatever PREC is (the official code computes them with a second CLIP it
  never casts, and halves the meta-network when ``TRAINER.COCOOP.PREC``, default fp16, says so);
  fp32: features from the run's CLIP and an fp32 meta-network (under PREC amp always, since a gradient
  scaler cannot unscale fp16 gradients);
- ``ADAM_EPS`` (1e-3): Adam's eps when OPTIM.NAME is adam, the upstream-Dassl edit TCP's README asks
  for and its published numbers used (1e-8 is unedited Dassl).

As the official code, on purpose: a truthy CTX_INIT means the words "a photo of a"; the prompt is always
SOS, context, the rest of the template (the class token at the end); the random numbers its build draws
(a second CLIP construction between the context and the meta-network) are drawn in the same order
(``official.py``); its checkpoints are ours (same keys). Not the official code: its amp branch does not
run (the model gets no label in training mode), ours runs amp as the other methods do.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import Tensor, nn
from yacs.config import CfgNode

from clip import clip
from clip.fast import SharedPrefixText, text_at_eot
from clip.model import CLIP, RESNET, VIT, BlockHooks, CLIPConfig, QuickGELU
from dassl.engine import TRAINER_REGISTRY
from dassl.optim import build_optimizer

from ..base import ConfigError
from ..coop.coop import CoOp, PromptModel, PromptTrainer, context_init
from ..coop.kgcoop import INIT_WORDS, kgcoop_loss, official_context, teacher_features
from ..logits import clip_logits, l2_normalize
from ..prompts import ClassPrompts, class_prompts
from ..templates import templates
from ..text_cache import FrozenFeatures, UnchangedCache
from . import official

N_TOKENS = 4  # class-aware tokens per class = context vectors = the templates' 4 leading words
KG_WEIGHT = 8.0  # weight of the cosine term (official: a constant)
META_PRECISIONS = ("fp16", "fp32")


class TCPPromptLearner(ClassPrompts):
    """The context (``ctx``) and the meta-network (``meta_net``: ``linear1``, ``relu``, ``linear2``), under
    the official names; ``token_prefix`` / ``token_suffix`` are rebuilt from the class names."""

    def __init__(self, cfg: CfgNode, classnames: list[str], clip_model: CLIP, init: Tensor | None = None) -> None:
        settings = cfg.TRAINER.COOP
        width, embed_dim = clip_model.ln_final.weight.shape[0], clip_model.text_projection.shape[1]
        if init is not None and not settings.CTX_INIT:
            ctx, stand_in = init.to(clip_model.dtype), " ".join(["X"] * N_TOKENS)
        else:
            ctx, stand_in = context_init(width, settings.N_CTX, settings.CTX_INIT, clip_model)
        print(f'Initial context: "{stand_in}"')
        template = templates("TCP").template(cfg.DATASET.NAME)
        super().__init__(classnames, stand_in, N_TOKENS, clip_model, template=template)
        self.ctx = nn.Parameter(ctx)
        layers = [
            ("linear1", nn.Linear(embed_dim, embed_dim // 4)),
            ("relu", QuickGELU()),
            ("linear2", nn.Linear(embed_dim // 4, N_TOKENS * width)),
        ]
        self.meta_net = nn.Sequential(OrderedDict(layers)).to(meta_net_dtype(settings))

    def forward(self, class_features: Tensor) -> tuple[Tensor, Tensor]:
        """(token embeddings (n_cls, L, width) of the prompts, class-aware tokens (n_cls, 4, width)) for the
        frozen class features (n_cls, embed_dim)."""
        dtype = self.meta_net.linear1.weight.dtype
        tokens = self.meta_net(class_features.to(dtype)).reshape(self.n_cls, -1, self.ctx.shape[-1])
        ctx = self.ctx.unsqueeze(0).expand(self.n_cls, -1, -1)
        return torch.cat([self.token_prefix, ctx, self.token_suffix], dim=1), tokens


def meta_net_dtype(settings: CfgNode) -> torch.dtype:
    """fp16 as the official code (META_NET_PREC fp16), except under amp; else fp32."""
    return torch.float16 if settings.META_NET_PREC == "fp16" and settings.PREC != "amp" else torch.float32


class ClassAwareTokens(BlockHooks):
    """Before text block ``block`` (1-based), the rows after SOS become each prompt's class-aware tokens.

    The official block computes 1.0 * tokens + 0.0 * rows, which is the tokens (cast to the stream's dtype).
    """

    def __init__(self, tokens: Tensor, block: int) -> None:
        self.tokens, self.block = tokens, block

    def before(self, i: int, x: Tensor) -> Tensor:
        if i != self.block:
            return x
        n = self.tokens.shape[1]
        return torch.cat([x[:1], self.tokens.permute(1, 0, 2).to(x.dtype), x[1 + n :]])


class TCPModel(PromptModel):
    """The frozen CLIP, the prompt learner and the frozen class features (``teacher``)."""

    def __init__(self, clip_model: CLIP, learner: TCPPromptLearner, teacher_tokens: Tensor, layer: int,
                 released_teacher: bool) -> None:  # fmt: skip
        super().__init__(clip_model, learner)
        self.block = layer + 1
        self.released_teacher = released_teacher
        self.register_buffer("teacher_tokens", teacher_tokens, persistent=False)
        self.teacher = FrozenFeatures(self.encode_teacher, clip_model.text_projection)
        self.eval_text = UnchangedCache()

    def encode_teacher(self) -> Tensor:
        """Normalised features of the templates, over all 77 positions (computed once); with ``released_teacher``
        by the released fp16 CLIP: the official code's second CLIP (``kgcoop.teacher_features``)."""
        return teacher_features(self.clip, self.teacher_tokens, self.released_teacher)

    def class_features(self) -> Tensor:
        """Normalised text features of every class's prompt, with its class-aware tokens: over the official
        77 positions with ``EXACT``, else by ``fast_text`` (the same up to float rounding)."""
        prompts, tokens = self.learner(self.teacher())
        clip_model, eot = self.clip, self.learner.eot
        if clip_model.exact:
            text = clip_model.encode_text_embeddings(prompts, eot, inject=ClassAwareTokens(tokens, self.block))
        else:
            text = fast_text(clip_model, prompts, eot.tolist(), tokens, self.block)
        return l2_normalize(text)

    def image_features(self, image: Tensor) -> Tensor:
        """The frozen, unprompted image tower's features (the trainer's ``FROZEN_IMAGE_FEATURES``)."""
        return self.clip.encode_image(image.type(self.clip.dtype))

    def forward(self, image: Tensor, text: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(logits, the class features scored); at evaluation the class features are kept while the
        learner is unchanged (``text``: given class features, e.g. recomputed)."""
        clip_model = self.clip
        image_features = l2_normalize(self.image_features(image))
        if text is None:
            text = self.eval_text.get(self.learner.parameters(), self.class_features)
        return clip_logits(clip_model.logit_scale.exp(), image_features, text, normalize=False), text


def fast_text(clip_model: CLIP, prompts: Tensor, eot: list[int], tokens: Tensor, block: int) -> Tensor:
    """What ``encode_text_embeddings(prompts, eot, inject=ClassAwareTokens(tokens, block))`` computes, with less
    work: the prompts cut after the longest EOT; before ``block``, SOS and the context (the same in every
    prompt until the class-aware tokens replace the context) computed once for all prompts; from ``block``
    on, the prompts grouped by EOT position and the last block run at the EOT only (``clip/fast.py``)."""
    length, n = max(eot) + 1, prompts.shape[0]
    shared = 1 + tokens.shape[1]
    x = clip_model.position_text(prompts[:, :length])
    blocks = list(clip_model.transformer.resblocks)
    if block > 1:
        trunk = SharedPrefixText(x[:shared, :1], [x[shared:]])
        trunk.run(blocks[: block - 1], first=1)
        x = torch.cat([trunk.prefix.expand(-1, n, -1), trunk.packed.view(length - shared, n, -1)])
    x = ClassAwareTokens(tokens, block).before(block, x)
    rows = text_at_eot(x, eot, 1, blocks[block - 1 :], first=block)
    return clip_model.text_tail(rows)


def check_settings(s: CfgNode) -> None:
    """Refuse (one ConfigError line) what TCP cannot run: the official code fails or drops the class name."""
    if s.CLASS_TOKEN_POSITION != "end":
        raise ConfigError(
            f"TRAINER.COOP.CLASS_TOKEN_POSITION {s.CLASS_TOKEN_POSITION!r}: TCP's prompts hold the class name "
            "after the context (its templates); use end"
        )
    if s.CSC:
        raise ConfigError("TRAINER.COOP.CSC True: TCP learns one context for all classes; use CSC False")
    if not s.CTX_INIT and s.N_CTX != N_TOKENS:
        raise ConfigError(
            f"TRAINER.COOP.N_CTX {s.N_CTX}: TCP's prompts have {N_TOKENS} context slots (its templates' 4 "
            f"leading words, replaced by its {N_TOKENS} class-aware tokens); set TRAINER.COOP.N_CTX {N_TOKENS}"
        )
    if s.META_NET_PREC not in META_PRECISIONS:
        raise ConfigError(
            f"TRAINER.COOP.META_NET_PREC must be one of {', '.join(META_PRECISIONS)}, got {s.META_NET_PREC!r}"
        )
    if not s.ADAM_EPS > 0:
        raise ConfigError(f"TRAINER.COOP.ADAM_EPS must be positive, got {s.ADAM_EPS}")
    if s.CLASS_AWARE_LAYER < 0:
        raise ConfigError(f"TRAINER.COOP.CLASS_AWARE_LAYER must be 0 or more, got {s.CLASS_AWARE_LAYER}")


def check_layer(layer: int, depth: int) -> None:
    """The class-aware tokens enter before one of the text tower's ``depth`` blocks."""
    if layer >= depth:
        raise ConfigError(
            f"TRAINER.COOP.CLASS_AWARE_LAYER {layer}: the backbone's text tower has {depth} blocks, so the tokens "
            f"must enter after at most {depth - 1}"
        )


def build_tcp(
    cfg: CfgNode, classnames: list[str], clip_model: CLIP, *, template: str | None = None,
    init: Tensor | None = None,
) -> TCPModel:  # fmt: skip
    """TCP around a frozen ``clip_model``: draws the context (unless ``init``, the context the official build
    draws, is given) and then the meta-network. ``template``: the frozen class features' template if the
    dataset brings one (else TCP's teacher table, configs/trainers/TCP/templates.yaml)."""
    check_settings(cfg.TRAINER.COOP)
    check_layer(cfg.TRAINER.COOP.CLASS_AWARE_LAYER, len(clip_model.transformer.resblocks))
    cfg = official_context(cfg)
    settings = cfg.TRAINER.COOP
    learner = TCPPromptLearner(cfg, classnames, clip_model, init)
    prompts = class_prompts(cfg.DATASET.NAME, classnames, templates("TCP", "teacher"), template)
    released = settings.META_NET_PREC == "fp16"
    return TCPModel(clip_model, learner, clip.tokenize(prompts), settings.CLASS_AWARE_LAYER, released)


@TRAINER_REGISTRY.register()
class TCP(PromptTrainer):
    """TCP: CoOp's context, class-aware tokens from the meta-network, KgCoOp's loss at weight 8."""

    NODE = "COOP"  # shared with CoOp and KgCoOp
    BACKBONES = (VIT, RESNET)  # its image tower is frozen and unprompted (the official code runs on both)
    DEFAULTS = {
        **CoOp.DEFAULTS,
        "CLASS_AWARE_LAYER": 8,  # text blocks before the class-aware tokens replace the context (official: 8)
        "META_NET_PREC": "fp16",  # fp16: released fp16 CLIP's class features, fp16 meta-net (official); fp32
        "ADAM_EPS": 1e-3,  # Adam's eps (OPTIM.NAME adam): TCP's edit of upstream Dassl; 1e-8 unedited
    }
    FROZEN_IMAGE_FEATURES = "image_features"  # computed once per image of a split without random steps
    model_factory = staticmethod(build_tcp)
    replay_construction = staticmethod(official.replay_construction)
    model: TCPModel

    def check_cfg(self, cfg: CfgNode) -> None:
        super().check_cfg(cfg)
        check_settings(cfg.TRAINER.COOP)
        if cfg.TRAINER.COOP.CTX_INIT and cfg.TRAINER.COOP.CTX_INIT != INIT_WORDS:
            print(f'Note: TCP initialises the context with "{INIT_WORDS}" whatever CTX_INIT is (official code)')

    def check_architecture(self, arch: CLIPConfig) -> None:
        check_layer(self.settings.CLASS_AWARE_LAYER, arch.transformer_layers)

    def make_optimizer(self, learner: nn.Module) -> torch.optim.Optimizer:
        """Upstream's optimizer; for adam, with eps ADAM_EPS (the official run's edited Dassl)."""
        cfg = self.cfg
        if cfg.OPTIM.NAME != "adam":
            return super().make_optimizer(learner)
        groups = [{"params": list(learner.parameters()), "eps": self.settings.ADAM_EPS}]
        return build_optimizer(learner, cfg.OPTIM, param_groups=groups)

    def compute_loss(self, image: Tensor, label: Tensor) -> tuple[Tensor, Tensor]:
        logits, text = self.model(image)
        return kgcoop_loss(logits, text, self.model.teacher(), label, KG_WEIGHT), logits

    def model_inference(self, input: Tensor) -> Tensor:
        return self.model(input)[0]
