"""MMRL: Multi-Modal Representation Learning for vision-language models (CVPR 2025).

A shared representation space R (K tokens of width d_r) is mapped, for every layer i of
REP_LAYERS, into both CLIP encoders by linear maps F_i^v and F_i^t. The K visual tokens sit right
after the class token, the K textual tokens right after BOT; they are inserted at the first
REP_LAYER and replaced at each later one. Two image features come out: f_c from the class token
through CLIP's frozen projection, and f_r, the mean of the K token outputs through a trainable
projection P_v^r. Training scores both against text features computed with the tokens and keeps
f_c and the text features close to zero-shot CLIP; inference scores with the fused logits where
the classes were trained on, and with the class-token logits only for unseen classes/datasets.

Data flow (each arrow one function below)::

    R --RepresentationLearner--> tokens per REP_LAYER --TokenInjector--> CLIP towers
    image --MMRLModel.encode_image--> f_c, f_r (and zero-shot f_0)
    prompts --MMRLModel.encode_text--> w;   mmrl_loss / scored_logits

The checkpoint is the ``MultiModalRepresentationLearner`` module, which holds only the trainable
tensors, under the official implementation's key names (so both codes load each other's files).
"""

from __future__ import annotations

import copy
import os
import os.path as osp
import re
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from typing import Any, NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor
from yacs.config import CfgNode

from clip import clip
from clip.model import CLIP, build_model, config_from_state_dict
from dassl.engine import TRAINER_REGISTRY, TrainerX
from dassl.metrics import compute_accuracy
from dassl.optim import build_lr_scheduler, build_optimizer
from dassl.utils import UserError, load_checkpoint, load_pretrained_weights


class ConfigError(UserError, ValueError):
    """A config value or checkpoint that does not fit the model; names the key and the fix."""


# Name under which the learnable module is registered: checkpoints live at
# <output_dir>/MultiModalRepresentationLearner/model.pth.tar-<epoch>, as in the official code.
LEARNER_NAME = "MultiModalRepresentationLearner"

TEMPLATES = {
    "OxfordPets": "a photo of a {}, a type of pet.",
    "OxfordFlowers": "a photo of a {}, a type of flower.",
    "FGVCAircraft": "a photo of a {}, a type of aircraft.",
    "DescribableTextures": "{} texture.",
    "EuroSAT": "a centered satellite photo of {}.",
    "Food101": "a photo of {}, a type of food.",
    "UCF101": "a photo of a person doing {}.",
}
DEFAULT_TEMPLATE = "a photo of a {}."


def class_prompts(dataset: str, classnames: Sequence[str]) -> list[str]:
    """One prompt per class from the dataset's template ("_" in class names becomes a space)."""
    template = TEMPLATES.get(dataset, DEFAULT_TEMPLATE)
    return [template.format(name.replace("_", " ")) for name in classnames]


# ----------------------------------------------------------------------------------------------
# The learnable parts. Attribute names are the official checkpoint keys.


class RepresentationLearner(nn.Module):
    """R (K x d_r, N(0, 0.02)) and, per REP_LAYER, the maps F_i^v: d_r->d_v and F_i^t: d_r->d_t.

    MMRL builds ONE nn.Linear per modality and gives every layer a copy of it, so all F_i^v start
    equal (and all F_i^t). R, the visual Linear and the text Linear are drawn in that order.
    """

    def __init__(self, n_tokens: int, rep_dim: int, visual_dim: int, text_dim: int, n_layers: int, **map_options):
        super().__init__()
        self.n_layers = n_layers
        self.compound_rep_tokens = nn.Parameter(torch.empty(n_tokens, rep_dim))
        nn.init.normal_(self.compound_rep_tokens, std=0.02)
        self.build_maps(nn.Linear(rep_dim, visual_dim), nn.Linear(rep_dim, text_dim), n_layers, **map_options)

    def build_maps(self, visual: nn.Linear, text: nn.Linear, n_layers: int) -> None:
        self.compound_rep_tokens_r2vproj = nn.ModuleList(copy.deepcopy(visual) for _ in range(n_layers))
        self.compound_rep_tokens_r2tproj = nn.ModuleList(copy.deepcopy(text) for _ in range(n_layers))

    def map_visual(self, r: Tensor, index: int) -> Tensor:
        return self.compound_rep_tokens_r2vproj[index](r)

    def map_text(self, r: Tensor, index: int) -> Tensor:
        return self.compound_rep_tokens_r2tproj[index](r)

    def forward(self) -> tuple[list[Tensor], list[Tensor]]:
        """(visual tokens, textual tokens): one K x d tensor per REP_LAYER, in layer order."""
        r = self.compound_rep_tokens
        visual, text = [], []
        for i in range(self.n_layers):
            # Text before visual, layer by layer, as the official code: the order in which R's
            # gradient is accumulated in backward, and so its last bits, depend on it.
            text.append(self.map_text(r, i))
            visual.append(self.map_visual(r, i))
        return visual, text


class RepresentationProjection(nn.Module):
    """P_v^r of MMRL: a trainable d_v x d_out matrix with its own random init (not a copy of P_v^c)."""

    def __init__(self, proj_rep: Tensor):
        super().__init__()
        self.proj_rep = nn.Parameter(proj_rep)

    def forward(self, x: Tensor, class_proj: Tensor) -> Tensor:
        return x @ self.proj_rep.to(x.dtype)


class MultiModalRepresentationLearner(nn.Module):
    """Every tensor MMRL trains, and nothing else: this module's state dict is the checkpoint.

    The attribute names give the official keys: ``representation_learner.*`` and
    ``image_encoder.*`` (the official code keeps P_v^r inside its copy of CLIP's image encoder).
    """

    def __init__(self, representation_learner: RepresentationLearner, projection: nn.Module):
        super().__init__()
        self.representation_learner = representation_learner
        self.image_encoder = projection


# ----------------------------------------------------------------------------------------------
# Putting the tokens into CLIP's transformer.


class TokenInjector:
    """CLIP ``Injector``: before block i of REP_LAYERS, put that layer's K tokens after position 0.

    Position 0 is the class token (image) or BOT (text). At the first REP_LAYER the tokens are
    inserted, which lengthens the sequence by K; at later REP_LAYERS the K slots are updated.
    """

    def __init__(self, tokens: Sequence[Tensor], layers: Sequence[int]):
        if len(tokens) != len(layers):
            raise ValueError(f"{len(tokens)} token sets for {len(layers)} REP_LAYERS")
        self.tokens = dict(zip(layers, tokens))
        self.first = layers[0]

    def __call__(self, i: int, x: Tensor) -> Tensor:
        tokens = self.tokens.get(i)
        if tokens is None:
            return x
        new = tokens.expand(x.shape[1], -1, -1).permute(1, 0, 2)  # (K, N, D), like x
        if i == self.first:
            return torch.cat([x[:1], new, x[1:]], dim=0)
        k = new.shape[0]
        return torch.cat([x[:1], self.update(new, x[1 : 1 + k]), x[1 + k :]], dim=0)

    def update(self, new: Tensor, previous: Tensor) -> Tensor:
        """Content of the K slots at a later REP_LAYER. MMRL: the previous outputs are dropped."""
        return new


# ----------------------------------------------------------------------------------------------
# The model.


class Outputs(NamedTuple):
    logits: Tensor  # class-token branch, 100 * cos(f_c, w)
    logits_rep: Tensor  # representation branch, 100 * cos(f_r, w)
    logits_fusion: Tensor  # alpha * logits + (1 - alpha) * logits_rep
    image_features: Tensor  # f_c, normalised
    text_features: Tensor  # w, normalised, one row per class
    image_features_zs: Tensor | None  # zero-shot CLIP f_0, normalised (only when asked for)


def _autocast_enabled(device_type: str) -> bool:
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4 takes no argument
        return torch.is_autocast_enabled() if device_type == "cuda" else torch.is_autocast_cpu_enabled()


class MMRLModel(nn.Module):
    """Frozen CLIP plus the learnable parts; ``forward(image)`` gives both branches' logits.

    The frozen parts see constant inputs, so two results are reused without changing any value:
    the text blocks before the first REP_LAYER are run once on the class prompts, and the image
    blocks before it are run once per batch for both the MMRL pass and the zero-shot pass.
    In inference (no grad) the text features are kept until a learnable tensor changes.
    """

    def __init__(
        self,
        clip_model: CLIP,
        learner: MultiModalRepresentationLearner,
        rep_layers: Sequence[int],
        tokenized_prompts: Tensor,
        alpha: float,
        injector: Callable[[Sequence[Tensor], Sequence[int]], TokenInjector] = TokenInjector,
    ):
        super().__init__()
        self.clip = clip_model
        self.learner = learner
        self.rep_layers = tuple(rep_layers)
        self.alpha = alpha
        self.injector = injector
        self.register_buffer("tokenized_prompts", tokenized_prompts, persistent=False)
        self._text_trunk: tuple[tuple, Tensor] | None = None
        self._inference_cache: tuple[tuple, list[Tensor], Tensor] | None = None

    @property
    def dtype(self) -> torch.dtype:
        return self.clip.dtype

    def representation_tokens(self) -> tuple[list[Tensor], list[Tensor]]:
        visual, text = self.learner.representation_learner()
        return [t.to(self.dtype) for t in visual], [t.to(self.dtype) for t in text]

    def encode_image(
        self, image: Tensor, visual_tokens: Sequence[Tensor], zero_shot: bool = False
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """(f_c, f_r, f_0 or None), unnormalised."""
        visual = self.clip.visual
        first = self.rep_layers[0]
        x = visual.transformer(visual.embed(image.to(self.dtype)), stop=first - 1)  # shared frozen trunk
        f_0 = None
        if zero_shot:
            with torch.no_grad():
                z = visual.transformer(x, start=first).permute(1, 0, 2)
                f_0 = visual.ln_post(z[:, 0, :]) @ visual.proj
        x = visual.transformer(x, inject=self.injector(visual_tokens, self.rep_layers), start=first)
        x = x.permute(1, 0, 2)
        f_c = visual.ln_post(x[:, 0, :]) @ visual.proj
        # As the official code: ln_post on each token, then the mean over the K slots.
        slots = visual.ln_post(x[:, 1 : 1 + len(visual_tokens[0]), :]).mean(dim=1)
        f_r = self.learner.image_encoder(slots, visual.proj)
        return f_c, f_r, f_0

    def text_trunk(self) -> Tensor:
        """Output of the text blocks before the first REP_LAYER on the class prompts (constant)."""
        device = self.tokenized_prompts.device
        key = (device, self.dtype, _autocast_enabled(device.type))
        if self._text_trunk is None or self._text_trunk[0] != key:
            with torch.inference_mode(False), torch.no_grad():  # a plain tensor, usable in later training steps
                x = self.clip.embed_text(self.tokenized_prompts)
                x = self.clip.transformer(x, causal=True, stop=self.rep_layers[0] - 1)
            self._text_trunk = (key, x)
        return self._text_trunk[1]

    def encode_text(self, text_tokens: Sequence[Tensor]) -> Tensor:
        """Class text features w (unnormalised), read at EOT, which the K tokens moved by K."""
        injector = self.injector(text_tokens, self.rep_layers)
        x = self.clip.transformer(self.text_trunk(), causal=True, inject=injector, start=self.rep_layers[0])
        x = self.clip.ln_final(x.permute(1, 0, 2)).to(self.dtype)
        eot = self.tokenized_prompts.argmax(dim=-1) + len(text_tokens[0])
        return x[torch.arange(x.shape[0], device=x.device), eot] @ self.clip.text_projection

    def _tokens_and_text(self) -> tuple[list[Tensor], Tensor]:
        if torch.is_grad_enabled():
            self._inference_cache = None
            visual, text = self.representation_tokens()
            return visual, self.encode_text(text)
        # Inference: the text features only change when a learnable tensor does (step, load, move).
        params = list(self.learner.parameters())
        key = tuple((p.data_ptr(), p._version, p.dtype) for p in params)
        key += (_autocast_enabled(params[0].device.type),)
        if self._inference_cache is None or self._inference_cache[0] != key:
            visual, text = self.representation_tokens()
            self._inference_cache = (key, visual, self.encode_text(text))
        return self._inference_cache[1], self._inference_cache[2]

    def forward(self, image: Tensor, zero_shot: bool = False) -> Outputs:
        visual_tokens, text_features = self._tokens_and_text()
        f_c, f_r, f_0 = self.encode_image(image, visual_tokens, zero_shot)
        f_c = f_c / f_c.norm(dim=-1, keepdim=True)
        f_r = f_r / f_r.norm(dim=-1, keepdim=True)
        text_features = text_features / text_features.norm(dim=-1, keepdim=True)
        if f_0 is not None:
            f_0 = f_0 / f_0.norm(dim=-1, keepdim=True)
        # Fixed scale 100, as the official code (not logit_scale.exp()).
        logits = (100.0 * f_c) @ text_features.t()
        logits_rep = (100.0 * f_r) @ text_features.t()
        # The paper fuses probabilities; the official code fuses logits, which we follow.
        logits_fusion = self.alpha * logits + (1 - self.alpha) * logits_rep
        return Outputs(logits, logits_rep, logits_fusion, f_c, text_features, f_0)


def mmrl_loss(out: Outputs, label: Tensor, text_features_zs: Tensor, alpha: float, reg_weight: float) -> Tensor:
    """alpha CE(f_c w) + (1 - alpha) CE(f_r w) + lambda (1 - cos(f_c, f_0)) + lambda (1 - mean_c cos(w_c, w0_c))."""
    ce_class = F.cross_entropy(out.logits, label)
    ce_rep = F.cross_entropy(out.logits_rep, label)
    reg_image = 1 - torch.mean(F.cosine_similarity(out.image_features, out.image_features_zs, dim=1))
    reg_text = 1 - torch.mean(F.cosine_similarity(out.text_features, text_features_zs, dim=1))
    return alpha * ce_class + (1 - alpha) * ce_rep + reg_weight * reg_image + reg_weight * reg_text


def scored_logits(out: Outputs, task: str, subsample: str, dataset: str) -> Tensor:
    """Decoupled inference: fused logits on the classes trained on, class-token logits elsewhere.

    B2N: base -> fused, otherwise (new, all) -> class.  FS: fused.
    CD (also domain generalisation): ImageNet, the source, -> fused; any other dataset -> class.
    """
    if task == "B2N":
        return out.logits_fusion if subsample == "base" else out.logits
    if task == "FS":
        return out.logits_fusion
    if task == "CD":
        return out.logits_fusion if dataset == "ImageNet" else out.logits
    raise ValueError(f"TASK must be B2N, FS or CD, got {task!r}")


# ----------------------------------------------------------------------------------------------
# Initialisation identical to the official code for a given seed.


def _draw_blocks(width: int, layers: int) -> None:
    for _ in range(layers):  # the heads do not change what is drawn
        nn.MultiheadAttention(width, 1)
        nn.Linear(width, 4 * width)
        nn.Linear(4 * width, width)


def draw_official_clip_init(clip_model: CLIP, draw_visual_extra: Callable[[int, int], Tensor]) -> Tensor:
    """Draw from the CPU generator exactly what one CLIP construction of the official code draws.

    The official trainer builds its CLIP from scratch twice (the trained model and a zero-shot
    copy): random init, then the pretrained weights loaded over it. Its image encoder holds one
    more random tensor right after ``proj`` (MMRL: P_v^r, MMRL++: the LoRA factor A) that no weight
    file overwrites. We build CLIP without drawing and replay these draws, so that P_v^r, the
    learner's init and every later draw (data order, augmentation) equal the official run's.
    Returns what ``draw_visual_extra(width, output_dim)`` drew.
    """
    visual = clip_model.visual
    v_width, _, patch, _ = visual.conv1.weight.shape
    out_dim = visual.proj.shape[1]
    t_width = clip_model.ln_final.weight.shape[0]
    t_layers = len(clip_model.transformer.resblocks)
    vocab = clip_model.token_embedding.weight.shape[0]
    with torch.no_grad():
        nn.Conv2d(3, v_width, kernel_size=patch, stride=patch, bias=False)
        torch.randn(v_width)  # class_embedding
        torch.randn(visual.positional_embedding.shape)
        _draw_blocks(v_width, len(visual.transformer.resblocks))
        torch.randn(v_width, out_dim)  # proj
        extra = draw_visual_extra(v_width, out_dim)
        _draw_blocks(t_width, t_layers)
        nn.Embedding(vocab, t_width)
        # OpenAI's initialize_parameters(): only the sizes matter for what is drawn.
        torch.empty(vocab, t_width).normal_()
        torch.empty(clip_model.positional_embedding.shape).normal_()
        for _ in range(t_layers):
            for shape in ((3 * t_width, t_width), (t_width, t_width), (4 * t_width, t_width), (t_width, 4 * t_width)):
                torch.empty(shape).normal_()
        torch.empty(clip_model.text_projection.shape).normal_()
    return extra


def draw_proj_rep(width: int, out_dim: int) -> Tensor:
    """P_v^r init of MMRL: N(0, 1) * d_v^-0.5, like CLIP's own ``proj``."""
    return width**-0.5 * torch.randn(width, out_dim)


# ----------------------------------------------------------------------------------------------
# Checks and checkpoints.


def check_rep_layers(layers: Sequence[int], key: str, depth: int | None = None) -> tuple[int, ...]:
    layers = tuple(layers)
    hint = "list the 1-based layers that receive tokens, e.g. [6, 7, 8, 9, 10, 11, 12]"
    if not layers:
        raise ConfigError(f"{key} is empty: {hint}")
    if not all(isinstance(i, int) and i >= 1 for i in layers):
        raise ConfigError(f"{key}={list(layers)}: layers are integers from 1; {hint}")
    if any(b <= a for a, b in zip(layers, layers[1:])):
        raise ConfigError(f"{key}={list(layers)} must be strictly increasing")
    if depth is not None and layers[-1] > depth:
        raise ConfigError(f"{key}={list(layers)}: every layer must be in 1..{depth}, the depth of the CLIP encoders")
    return layers


# Per-layer map keys, official layout: ...r2vproj.<i>.weight (MMRL), ...r2vproj.srra.<i>.A (MMRL++).
_MAP_KEY = re.compile(r"^representation_learner\.(?:compound_rep_tokens_r2[vt]proj|srra_r2[vt]proj\.srra)\.(\d+)\.")


def check_checkpoint_config(state_dict: Mapping[str, Tensor], settings: CfgNode, node: str, source: str) -> None:
    """Fail with the config key and both values when a checkpoint was trained with other settings."""
    tokens = state_dict.get("representation_learner.compound_rep_tokens")
    if tokens is not None:
        for dim, name in ((0, "N_REP_TOKENS"), (1, "REP_DIM")):
            if tokens.shape[dim] != settings[name]:
                raise ConfigError(
                    f"{source}: representation_learner.compound_rep_tokens has shape {tuple(tokens.shape)}, i.e. "
                    f"{name}={tokens.shape[dim]}, but TRAINER.{node}.{name}={settings[name]} "
                    f"(pass TRAINER.{node}.{name} {tokens.shape[dim]} to use this checkpoint)"
                )
    layers = {int(m.group(1)) for key in state_dict if (m := _MAP_KEY.match(key))}
    if layers and len(layers) != len(settings.REP_LAYERS):
        raise ConfigError(
            f"{source}: the checkpoint has representation maps for {len(layers)} layers "
            f"(representation_learner.*.{min(layers)}..{max(layers)}), but TRAINER.{node}.REP_LAYERS="
            f"{list(settings.REP_LAYERS)} has {len(settings.REP_LAYERS)}"
        )


def learner_state(
    learner: nn.Module, state_dict: Mapping[str, Tensor], settings: CfgNode, node: str, source: str
) -> dict[str, Tensor]:
    """The learner's tensors out of an official checkpoint's state dict (which also holds the frozen
    CLIP, ignored here, as CLIP's weights come from the backbone file) or out of one of ours."""
    given = {k.removeprefix("module."): v for k, v in state_dict.items()}
    check_checkpoint_config(given, settings, node, source)
    expected = learner.state_dict()
    missing = [k for k in expected if k not in given]
    if missing:
        raise ConfigError(f"{source} lacks {missing} (a checkpoint of another method, MMRL vs MMRL++?)")
    for key, value in expected.items():
        if given[key].shape != value.shape:
            raise ConfigError(
                f"{source}: {key} has shape {tuple(given[key].shape)}, the model expects {tuple(value.shape)} "
                f"(trained on another backbone than {node}'s MODEL.BACKBONE?)"
            )
    return {k: given[k] for k in expected}


# The buffers in the official model's state dict; every other key there is a parameter.
OFFICIAL_BUFFERS = frozenset({"prompt_embeddings"})


def learner_optimizer_state(
    optimizer_state: Mapping[str, Any], state_dict: Mapping[str, Tensor], learner: nn.Module, source: str
) -> dict[str, Any]:
    """An official optimizer state re-indexed onto the learner's parameters.

    The official optimizer has one group over ALL the model's parameters, frozen CLIP included, in
    the order of its state dict without the buffers, and state (AdamW: step, exp_avg, exp_avg_sq)
    for the trainable ones only. The group's settings (lr, betas, weight_decay, initial_lr...) are kept.
    """
    keys = (k.removeprefix("module.") for k in state_dict)
    names = [k for k in keys if k not in OFFICIAL_BUFFERS]
    sizes = [len(g["params"]) for g in optimizer_state["param_groups"]]
    if sizes != [len(names)]:
        raise ConfigError(
            f"{source}: the optimizer has groups of {sizes} parameters; "
            f"an official checkpoint has one group over the model's {len(names)} parameters"
        )
    group = optimizer_state["param_groups"][0]
    ours = {name: i for i, (name, _) in enumerate(learner.named_parameters())}
    name_of = dict(zip(group["params"], names))
    return {
        "state": {ours[name_of[i]]: state for i, state in optimizer_state["state"].items()},
        "param_groups": [{**group, "params": list(ours.values())}],
    }


def checkpoint_file(folder: str, epoch: int | None = None) -> str:
    """``model.pth.tar-<epoch>`` if given, else ``model-best.pth.tar``, else the last epoch saved."""
    if not osp.isdir(folder):
        raise ConfigError(f'No checkpoint folder "{folder}" (--model-dir must hold {LEARNER_NAME}/)')
    files = sorted(os.listdir(folder))
    if epoch is not None:
        path = osp.join(folder, f"model.pth.tar-{epoch}")
        if not osp.isfile(path):
            raise ConfigError(f'No checkpoint "{path}" (--load-epoch {epoch}); {folder} holds {files}')
        return path
    if "model-best.pth.tar" in files:
        return osp.join(folder, "model-best.pth.tar")
    epochs = [int(m.group(1)) for f in files if (m := re.fullmatch(r"model\.pth\.tar-(\d+)", f))]
    if not epochs:
        raise ConfigError(f"No model.pth.tar-<epoch> or model-best.pth.tar in {folder} (it holds {files})")
    return osp.join(folder, f"model.pth.tar-{max(epochs)}")


# ----------------------------------------------------------------------------------------------
# The trainer.


@TRAINER_REGISTRY.register()
class MMRL(TrainerX):
    """MMRL on Dassl's TrainerX. MMRL++ (trainers/mmrlpp.py) overrides the four ``make_*`` hooks."""

    NODE = "MMRL"  # config namespace: cfg.TRAINER.<NODE>

    # Hooks for MMRL++.
    def make_representation_learner(self, n_tokens, rep_dim, visual_dim, text_dim, n_layers) -> nn.Module:
        return RepresentationLearner(n_tokens, rep_dim, visual_dim, text_dim, n_layers)

    def draw_projection_init(self, width: int, out_dim: int) -> Tensor:
        return draw_proj_rep(width, out_dim)

    def make_projection(self, init: Tensor, out_dim: int) -> nn.Module:
        return RepresentationProjection(init)

    def make_injector(self) -> Callable[[Sequence[Tensor], Sequence[int]], TokenInjector]:
        return TokenInjector

    # Config.
    @property
    def settings(self) -> CfgNode:
        return self.cfg.TRAINER[self.NODE]

    def check_cfg(self, cfg: CfgNode) -> None:
        """Everything checkable from the config alone, before the data and the model are built."""
        s, node = cfg.TRAINER[self.NODE], f"TRAINER.{self.NODE}"
        if s.PREC not in ("fp16", "fp32", "amp"):
            raise ConfigError(f"{node}.PREC must be fp16, fp32 or amp, got {s.PREC!r}")
        if cfg.TASK not in ("B2N", "FS", "CD"):
            raise ConfigError(f"TASK must be B2N, FS or CD, got {cfg.TASK!r}")
        if cfg.DATASET.SUBSAMPLE_CLASSES not in ("all", "base", "new"):
            raise ConfigError(
                f"DATASET.SUBSAMPLE_CLASSES must be all, base or new, got {cfg.DATASET.SUBSAMPLE_CLASSES!r}"
            )
        for name in ("N_REP_TOKENS", "REP_DIM"):
            if s[name] < 1:
                raise ConfigError(f"{node}.{name} must be at least 1, got {s[name]}")
        check_rep_layers(s.REP_LAYERS, f"{node}.REP_LAYERS")

    def load_clip_weights(self) -> dict[str, Tensor]:
        """CLIP's state dict, checked against the config before anything is built from it.

        Called after the dataset is built, so a missing dataset is reported before a download starts.
        """
        cfg, s, node = self.cfg, self.settings, f"TRAINER.{self.NODE}"
        name, path = cfg.MODEL.BACKBONE.NAME, cfg.MODEL.BACKBONE.PATH
        try:
            state_dict = clip.load_clip_state_dict(name, path)
            arch = config_from_state_dict(state_dict)
        except (OSError, RuntimeError, ValueError, NotImplementedError) as e:
            raise ConfigError(
                f"cannot get the CLIP weights ({'MODEL.BACKBONE.PATH ' + path if path else name}): {e}. "
                "Without network access, pass a local OpenAI checkpoint with MODEL.BACKBONE.PATH /path/to/file.pt"
            ) from e
        check_rep_layers(s.REP_LAYERS, f"{node}.REP_LAYERS", min(arch.vision_layers, arch.transformer_layers))
        size = tuple(cfg.INPUT.SIZE)
        if size != (arch.image_resolution, arch.image_resolution):
            raise ConfigError(
                f"INPUT.SIZE={size} but the CLIP backbone takes {arch.image_resolution}x{arch.image_resolution} "
                f"images; set INPUT.SIZE ({arch.image_resolution}, {arch.image_resolution})"
            )
        return state_dict

    def _precision(self) -> str:
        prec = self.settings.PREC
        if self.device.type != "cuda" and prec != "fp32":
            print(f"PREC {prec} needs CUDA: running in fp32 on {self.device.type}")
            return "fp32"
        return prec

    # Model.
    def build_model(self) -> None:
        cfg, s = self.cfg, self.settings
        self.prec = self._precision()
        classnames = self.dm.dataset.classnames
        rep_layers = tuple(s.REP_LAYERS)

        source = f", weights: {cfg.MODEL.BACKBONE.PATH}" if cfg.MODEL.BACKBONE.PATH else ""
        print(f"Loading CLIP (backbone: {cfg.MODEL.BACKBONE.NAME}{source})")
        with torch.random.fork_rng(devices=[]):  # building our CLIP must not draw (see below)
            clip_model = build_model(self.load_clip_weights())
        if self.prec in ("fp32", "amp"):
            clip_model.float()  # OpenAI's weights are fp16
        clip_model.requires_grad_(False)

        # The official code's two CLIP constructions; the first one's extra tensor is our init.
        projection_init = draw_official_clip_init(clip_model, self.draw_projection_init)
        draw_official_clip_init(clip_model, self.draw_projection_init)

        print("Building MMRL")
        visual_dim, out_dim = clip_model.visual.proj.shape
        representation_learner = self.make_representation_learner(
            s.N_REP_TOKENS, s.REP_DIM, visual_dim, clip_model.ln_final.weight.shape[0], len(rep_layers)
        )
        # As the official code: the maps share CLIP's dtype, the image-side tensors stay fp32.
        representation_learner.to(clip_model.dtype)
        learner = MultiModalRepresentationLearner(
            representation_learner, self.make_projection(projection_init, out_dim)
        )

        tokenized_prompts = clip.tokenize(class_prompts(cfg.DATASET.NAME, classnames))
        if s.CUT_PROMPTS:
            tokenized_prompts = tokenized_prompts[:, : int(tokenized_prompts.argmax(dim=-1).max()) + 1]
        self.model = MMRLModel(clip_model, learner, rep_layers, tokenized_prompts, s.ALPHA, self.make_injector())
        self.model.to(self.device)

        with torch.no_grad():  # frozen zero-shot text features w0 (same template, no tokens)
            w0 = clip_model.encode_text(self.model.tokenized_prompts)
            self.text_features_zs = w0 / w0.norm(dim=-1, keepdim=True)

        names = [name for name, p in learner.named_parameters() if p.requires_grad]
        n_learnable = sum(p.numel() for p in learner.parameters())
        print(f"Parameters to be updated: {names}")
        print(
            f"Learnable parameters: {n_learnable:,} (CLIP: {sum(p.numel() for p in clip_model.parameters()):,} frozen)"
        )

        if cfg.MODEL.INIT_WEIGHTS:
            load_pretrained_weights(learner, cfg.MODEL.INIT_WEIGHTS)

        self.optim = build_optimizer(learner, cfg.OPTIM)
        self.sched = build_lr_scheduler(self.optim, cfg.OPTIM)
        self.register_model(LEARNER_NAME, learner, self.optim, self.sched)
        self.scaler = _grad_scaler() if self.prec == "amp" else None

    # Training and inference.
    def parse_batch_train(self, batch: dict) -> tuple[Tensor, Tensor]:
        return batch["img"].to(self.device), batch["label"].to(self.device)

    def forward_backward(self, batch: dict) -> dict[str, float]:
        image, label = self.parse_batch_train(batch)
        s = self.settings
        amp = torch.autocast("cuda") if self.prec == "amp" else nullcontext()
        with amp:
            out = self.model(image, zero_shot=True)
            loss = mmrl_loss(out, label, self.text_features_zs, s.ALPHA, s.REG_WEIGHT)
        self.optim.zero_grad()
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optim)
            self.scaler.update()
        else:
            loss.backward()
            self.optim.step()

        summary = {"loss": loss.item(), "acc": compute_accuracy(out.logits_fusion, label)[0].item()}
        if (self.batch_idx + 1) == self.num_batches:
            self.update_lr()
        return summary

    def model_inference(self, input: Tensor) -> Tensor:
        cfg = self.cfg
        return scored_logits(self.model(input), cfg.TASK, cfg.DATASET.SUBSAMPLE_CLASSES, cfg.DATASET.NAME)

    # Checkpoints.
    def load_model(self, directory: str, epoch: int | None = None) -> None:
        """Load our checkpoints or the official ones (``--model-dir``, ``--load-epoch``).

        ``epoch`` given: ``model.pth.tar-<epoch>``; else ``model-best.pth.tar`` if there is one
        (upstream Dassl's default), else the last epoch saved (what a default run leaves).
        """
        if not directory:
            print("Note that load_model() is skipped as no pretrained model is given")
            return
        for name in self.get_model_names():
            path = checkpoint_file(osp.join(directory, name), epoch)
            checkpoint = load_checkpoint(path)
            learner = self._models[name]
            learner.load_state_dict(learner_state(learner, checkpoint["state_dict"], self.settings, self.NODE, path))
            print(f'Loaded weights to {name} from "{path}" (epoch = {checkpoint["epoch"]})')

    def adapt_checkpoint(self, name: str, checkpoint: dict[str, Any], path: str) -> dict[str, Any]:
        """Resume from official checkpoints too: their trainable tensors and optimizer state, mapped.

        Ours (exactly the learner's keys) pass unchanged. The scheduler state (upstream pickles the
        successor scheduler into it) is read by the scheduler itself, and the epoch needs no mapping.
        """
        learner = self._models[name]
        state_dict = checkpoint["state_dict"]
        if state_dict.keys() == learner.state_dict().keys():
            return checkpoint
        print("An official checkpoint: resuming from its trainable tensors and their optimizer state")
        return {
            **checkpoint,
            "state_dict": learner_state(learner, state_dict, self.settings, self.NODE, path),
            "optimizer": learner_optimizer_state(checkpoint["optimizer"], state_dict, learner, path),
        }


def _grad_scaler() -> torch.amp.GradScaler:
    try:
        return torch.amp.GradScaler("cuda")
    except (AttributeError, TypeError):  # torch < 2.3
        return torch.cuda.amp.GradScaler()
