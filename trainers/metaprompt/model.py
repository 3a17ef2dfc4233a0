"""MetaPrompt's model (Zhao et al., TIP 2024): independent deep prompts in both towers, each tower's
prompted features scored against the other tower's frozen features.

- Text: ``prompt_learner.ctx`` (LAYERS, N_CTX, width). Slice 0 sits between SOS and "<class name>." (CoOp's
  way, stand-in "X X ..."); slice k (1 <= k < LAYERS) replaces rows 1..N_CTX before block k + 1.
- Image: ``vision_prompt_learner.ctx`` (LAYERS, N_PRO, width). Slice 0 is appended after the patch tokens
  and goes through ``ln_pre`` with them; slice k replaces the last N_PRO rows before block k + 1.
  Prompts get no positional embedding in either tower.
- Logits: ``logits_i`` = prompted image features against the zero-shot class features (MetaPrompt's
  template(s) for the dataset, or the dataset's own template, on the frozen CLIP), ``logits_t`` = frozen
  image features against the prompted class features, ``logits`` = their mean; all three are trained,
  ``logits`` is scored.

As the official code (github Vill-Lab/2024-TIP-MetaPrompt, trainers/meta.py), and so bit for bit with
``EXACT True``: the prompts are one tensor per tower, expanded over the rows and sliced per layer (their
gradients are summed over the rows in the official order, also for a subset of the classes); the
zero-shot head is built from the raw class names (underscores kept) with MetaPrompt's own templates
(ImageNet and its variants: 8 templates), each class encoded on its own, its rows normalised, averaged
and normalised again; products are scaled after the matrix product. By default the class prompts stop at
the longest EOT and share their SOS + context prefix (``clip.fast``), and the zero-shot head is encoded
one template at a time for all classes: float rounding only. Widths are read from the backbone.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from yacs.config import CfgNode

from clip import clip
from clip.model import CLIP, BlockHooks, VisionTransformer

from ..logits import l2_normalize
from ..prompts import ClassPrompts, class_name
from ..templates import templates
from ..text_cache import FrozenFeatures, UnchangedCache

PROMPT_STD = 0.02


def zero_shot_templates(dataset: str, template: str | None = None) -> list[str]:
    """The templates of the zero-shot head: the dataset's own if it brings one, else MetaPrompt's table
    (configs/trainers/Meta_B2N/templates.yaml, for both trainers; a dataset the official table lacks gets its
    generic "a photo of a {}")."""
    if template:
        return [template]
    return templates("Meta_B2N").ensemble(dataset)


def zero_shot_prompts(dataset: str, classnames: Sequence[str], template: str | None = None) -> list[list[str]]:
    """Per class, its prompts of the zero-shot head. MetaPrompt's templates take the raw class names, as the
    official head writes them ("a photo of a apple_pie, a type of food"); a dataset's own template takes
    them with spaces, as every other method's prompts."""
    templates = zero_shot_templates(dataset, template)
    names = [class_name(name) for name in classnames] if template else list(classnames)
    return [[t.format(name) for t in templates] for name in names]


def normal_prompts(shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
    """N(0, 0.02) prompts in CLIP's dtype, drawn as the official code draws them."""
    prompts = torch.empty(shape, dtype=dtype)
    nn.init.normal_(prompts, std=PROMPT_STD)
    return prompts


class TextPrompts(ClassPrompts):
    """The text tower's prompts ``ctx`` (layers, n_ctx, width) and the fixed parts of "X .. X <class name>."."""

    def __init__(self, clip_model: CLIP, classnames: Sequence[str], n_ctx: int, layers: int) -> None:
        ctx = normal_prompts((layers, n_ctx, clip_model.ln_final.weight.shape[0]), clip_model.dtype)
        super().__init__(classnames, " ".join(["X"] * n_ctx), n_ctx, clip_model)
        self.ctx = nn.Parameter(ctx)
        self.shared = 1 + n_ctx  # SOS and the layer-0 prompts: the same in every class prompt

    def forward(self, classes: Sequence[int] | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """(token embeddings (rows, L, width), prompts per row (rows, layers, n_ctx, width), EOT positions)
        of every class, or of ``classes`` in that order."""
        ctx = self.ctx.unsqueeze(0).expand(self.n_cls, -1, -1, -1)
        embeddings = torch.cat([self.token_prefix, ctx[:, 0], self.token_suffix], dim=1)
        eot = self.eot
        if classes is not None:  # rows picked after the expansion: gradients summed in class order
            embeddings, ctx, eot = embeddings[classes], ctx[classes], eot[classes]
        return embeddings, ctx, eot


class VisionPrompts(nn.Module):
    """The image tower's prompts ``ctx`` (layers, n_pro, width)."""

    def __init__(self, clip_model: CLIP, n_pro: int, layers: int) -> None:
        super().__init__()
        self.ctx = nn.Parameter(normal_prompts((layers, n_pro, clip_model.visual.ln_pre.weight.shape[0]),
                                               clip_model.dtype))  # fmt: skip


class MetaPrompts(nn.Module):
    """Every learned tensor of MetaPrompt, under the official names (``prompt_learner.ctx``,
    ``vision_prompt_learner.ctx``). Drawn text first, then image, as the official build."""

    def __init__(self, clip_model: CLIP, classnames: Sequence[str], settings: CfgNode) -> None:
        super().__init__()
        self.prompt_learner = TextPrompts(clip_model, classnames, settings.N_CTX, settings.LAYERS)
        self.vision_prompt_learner = VisionPrompts(clip_model, settings.N_PRO, settings.LAYERS)

    def text_token_sets(self) -> list[tuple[str, int, Tensor]]:
        """The text prompts by the depth they enter at (slice k after k blocks), for tools/text_tokens.py."""
        ctx = self.prompt_learner.ctx
        return [(f"prompt_learner.ctx[{k}]", k, ctx[k]) for k in range(len(ctx))]


class LayerPrompts(BlockHooks):
    """One tower's deep prompts for one pass: before block k + 1 (1 <= k < layers) the prompt rows of
    every sequence become ``ctx[:, k]`` (``ctx``: (rows, layers, n, width), one row per sequence).

    Text: rows 1..n (after SOS), the same in every class prompt, so a shared prefix (batch 1) may carry
    them; image: the last n rows.
    """

    def __init__(self, ctx: Tensor, text: bool) -> None:
        self.ctx, self.text = ctx, text
        self.layers, self.n = ctx.shape[1], ctx.shape[2]

    def within_prefix(self, n: int) -> bool:
        return self.text and 1 + self.n <= n

    def before(self, i: int, x: Tensor) -> Tensor:
        k = i - 1
        if not 1 <= k < self.layers:
            return x
        ctx = self.ctx if x.shape[1] == self.ctx.shape[0] else self.ctx[:1]  # [:1]: the shared prefix's one row
        rows = ctx[:, k].permute(1, 0, 2)
        if self.text:
            prefix, suffix = x[:1], x[1 + self.n :]
            return torch.cat([prefix, rows, suffix], dim=0)
        return torch.cat([x[: -self.n], rows], dim=0)


def image_tokens(visual: VisionTransformer, image: Tensor) -> Tensor:
    """Class token and patch tokens with the positional embedding, batch-first, before ``ln_pre``."""
    x = visual.conv1(image.to(visual.conv1.weight.dtype))
    x = x.flatten(2).permute(0, 2, 1)
    cls = visual.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
    return torch.cat([cls, x], dim=1) + visual.positional_embedding.to(x.dtype)


class MetaPromptModel(nn.Module):
    """The frozen CLIP, MetaPrompt's prompts (``learner``) and the zero-shot head.

    ``forward(image)`` returns the scored logits; ``training_logits`` all three; the parts
    (``frozen_image_features``, ``image_logits``, ``text_logits``) serve the meta steps, which each need
    one tower only.
    """

    def __init__(self, clip_model: CLIP, learner: MetaPrompts, head_prompts: Sequence[Sequence[str]]) -> None:
        super().__init__()
        self.clip = clip_model
        self.learner = learner
        tokens = torch.stack([clip.tokenize(list(prompts)) for prompts in head_prompts])  # (classes, templates, 77)
        self.register_buffer("zero_shot_tokens", tokens, persistent=False)
        self.zero_shot = FrozenFeatures(self.encode_zero_shot, clip_model.text_projection)
        self._eval_text = UnchangedCache()

    def encode_zero_shot(self) -> Tensor:
        """(width, classes): per class, its templates' features normalised, averaged and normalised again."""
        if self.clip.exact:  # the official loop: one class at a time
            columns = []
            for tokens in self.zero_shot_tokens:
                mean = l2_normalize(self.clip.encode_text(tokens)).mean(dim=0)
                columns.append(mean / mean.norm())  # the norm of the whole vector, as the official code
            return torch.stack(columns, dim=1)
        per_template = [l2_normalize(self.clip.encode_text(t)) for t in self.zero_shot_tokens.unbind(1)]
        return l2_normalize(torch.stack(per_template, dim=1).mean(dim=1)).t().contiguous()

    def frozen_image_features(self, image: Tensor) -> Tensor:
        return l2_normalize(self.clip.encode_image(image.type(self.clip.dtype)))

    def image_features(self, image: Tensor) -> Tensor:
        """Prompted image features (not normalised)."""
        visual = self.clip.visual
        ctx = self.learner.vision_prompt_learner.ctx
        ctx = ctx.unsqueeze(0).expand(len(image), -1, -1, -1)
        x = torch.cat([image_tokens(visual, image.type(self.clip.dtype)), ctx[:, 0]], dim=1)
        x = visual.ln_pre(x).permute(1, 0, 2)
        return visual.head(visual.transformer(x, inject=LayerPrompts(ctx, text=False)))

    def text_features(self, classes: Sequence[int] | None = None) -> Tensor:
        """Prompted class features (not normalised) of every class, or of ``classes``."""
        text = self.learner.prompt_learner
        embeddings, ctx, eot = text(classes)
        return self.clip.encode_text_embeddings(embeddings, eot, LayerPrompts(ctx, text=True), text.shared)

    def zero_shot_classes(self, classes: Sequence[int] | None = None) -> Tensor:
        zero_shot = self.zero_shot()
        return zero_shot if classes is None else zero_shot[:, classes]

    def image_logits(self, image: Tensor, classes: Sequence[int] | None = None) -> Tensor:
        """``logits_i``: prompted image features against the zero-shot head."""
        image_features = l2_normalize(self.image_features(image))
        return self.clip.logit_scale.exp() * (image_features @ self.zero_shot_classes(classes))

    def text_logits(self, frozen_image: Tensor, classes: Sequence[int] | None = None) -> Tensor:
        """``logits_t``: normalised frozen image features against the prompted class features."""
        text_features = l2_normalize(self.text_features(classes))
        return self.clip.logit_scale.exp() * (frozen_image @ text_features.t())

    def training_logits(self, image: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(logits, logits_i, logits_t) of every class."""
        frozen = self.frozen_image_features(image)
        logits_i = self.image_logits(image)
        logits_t = self.text_logits(frozen)
        return 0.5 * (logits_i + logits_t), logits_i, logits_t

    def forward(self, image: Tensor) -> Tensor:
        """The scored logits, ``(logits_i + logits_t) / 2``; at evaluation the class features are kept
        while the prompts do not change."""
        frozen = self.frozen_image_features(image)
        logits_i = self.image_logits(image)
        text = self._eval_text.get([self.learner.prompt_learner.ctx], lambda: l2_normalize(self.text_features()))
        logits_t = self.clip.logit_scale.exp() * (frozen @ text.t())
        return 0.5 * (logits_i + logits_t)


def build_metaprompt(
    cfg: CfgNode, classnames: list[str], clip_model: CLIP, *, template: str | None = None
) -> MetaPromptModel:
    """MetaPrompt around a frozen ``clip_model`` (draws the text prompts, then the image prompts, as the
    official build); ``template``: the dataset's own, for the zero-shot head."""
    learner = MetaPrompts(clip_model, classnames, cfg.TRAINER.META)
    return MetaPromptModel(clip_model, learner, zero_shot_prompts(cfg.DATASET.NAME, classnames, template))
