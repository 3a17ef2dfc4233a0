"""MetaPrompt's two trainers, under their official names: ``Meta_B2N`` (base-to-novel) and ``Meta_DG``
(multi-source domain generalisation). Official code: github Vill-Lab/2024-TIP-MetaPrompt, trainers/meta.py.

Each batch is two updates ("alternate episodic training"):

1. in-domain: cross-entropy of ``logits``, ``logits_i`` and ``logits_t`` summed, one optimizer step of
   both prompts;
2. domain split, on one tower's prompts while the other's are frozen: Meta_B2N splits the classes into
   two random halves (text prompts, ``logits_t``), Meta_DG the batch by source domain (image prompts,
   ``logits_i``). For each split i that has data: an optimizer step on the loss of the other part
   (meta-train), then the gradient of split i's loss at the stepped prompts (meta-test); finally the
   prompts move by ``META_STEP * lr`` times each meta-test gradient.

As the official code computes it (bit for bit with ``EXACT True``), two behaviours that read otherwise:

- Only the first meta-train step of a batch is undone. The official code restores the prompts after
  each split with ``ctx.data = saved``, which makes them share storage with ``saved``: later steps move
  ``saved`` too, so when both splits run, the second split's step stays. The optimizer's momentum keeps
  all three steps of the batch.
- ``STEP_FROZEN_PROMPT`` (default True): each meta-train step also applies weight decay and momentum to
  the frozen tower's prompts, as the official code does on torch < 2.0, its environment (torch 1.10.1,
  so the published numbers): there ``zero_grad()`` leaves a zero gradient that SGD still uses. On torch
  >= 2.0 ``zero_grad()`` drops it and SGD skips them: ``STEP_FROZEN_PROMPT False`` computes that.

Printed per step: the last meta-test loss (the in-domain loss when no split ran) and the in-domain
accuracy, as the official log. By default the split steps reuse the batch's frozen image features and
run only the tower they train (``EXACT True`` recomputes the frozen features per split, as the official
code does; the towers it runs without using them change nothing).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from yacs.config import CfgNode

from clip.model import CLIPConfig
from dassl.engine import TRAINER_REGISTRY
from dassl.metrics import compute_accuracy

from ..base import CLIPTrainer, ConfigError
from . import official
from .model import MetaPromptModel, build_metaprompt


@dataclass
class Episode:
    """One domain split: the meta-train loss (an optimizer step) and the meta-test loss (a gradient),
    each computed when asked for (the meta-test one after the meta-train step)."""

    meta_train: Callable[[], Tensor]
    meta_test: Callable[[], Tensor]


class MetaPromptTrainer(CLIPTrainer):
    """What both trainers share: the node, the model, the in-domain step and the meta update."""

    NODE = "META"
    DEFAULTS = {  # the official train.py's defaults (the YAML files set the values used)
        "MODE": "D",  # read by nothing (the official node has it, so its YAML files merge)
        "N_CTX": 2,  # text prompt vectors per layer
        "N_PRO": 2,  # image prompt vectors per layer
        "META_STEP": 0.2,  # the meta update's step, as a fraction of the learning rate
        "LAYERS": 12,  # layers with prompts in each tower (1: the input only)
        "PREC": "fp16",  # fp16, fp32 or amp (amp runs fp32, as the official code)
        # The meta-train steps also move the frozen tower's prompts by weight decay and momentum: the
        # official code on torch < 2.0 (its torch 1.10.1); False: the same code on torch >= 2.0.
        "STEP_FROZEN_PROMPT": True,
    }
    LEARNER_NAME = "model"  # the official trainers register their whole model as "model"
    REBUILT_KEYS = ("prompt_learner.token_prefix", "prompt_learner.token_suffix")
    model_factory = staticmethod(build_metaprompt)
    filter_state_dict = staticmethod(official.filter_state_dict)
    filter_optimizer_state = staticmethod(official.refuse_optimizer_state)
    model: MetaPromptModel

    def check_cfg(self, cfg: CfgNode) -> None:
        super().check_cfg(cfg)
        settings = cfg.TRAINER.META
        for key in ("N_CTX", "N_PRO", "LAYERS"):
            if settings[key] < 1:
                raise ConfigError(f"TRAINER.META.{key} must be at least 1, got {settings[key]}")

    def check_architecture(self, arch: CLIPConfig) -> None:
        depth = min(arch.vision_layers, arch.transformer_layers)
        if self.settings.LAYERS > depth:
            raise ConfigError(
                f"TRAINER.META.LAYERS is {self.settings.LAYERS} but the CLIP towers have {depth} layers; "
                f"set TRAINER.META.LAYERS {depth} or less"
            )

    def model_zero_grad(self, names: str | list[str] | None = None) -> None:
        """Upstream's, with torch < 2.0's ``zero_grad()`` under ``STEP_FROZEN_PROMPT`` (gradients zeroed,
        not dropped, so SGD still decays the frozen prompts)."""
        keep = self.settings.STEP_FROZEN_PROMPT
        for name in self.get_model_names(names):
            if self._optims[name] is not None:
                self._optims[name].zero_grad(set_to_none=not keep)

    # ---- one batch
    def forward_backward(self, batch: dict) -> dict[str, float]:
        image, label = self.parse_batch_train(batch)
        model = self.model
        frozen = model.frozen_image_features(image)
        logits_i = model.image_logits(image)
        logits_t = model.text_logits(frozen)
        logits = 0.5 * (logits_i + logits_t)
        loss = F.cross_entropy(logits, label) + F.cross_entropy(logits_i, label) + F.cross_entropy(logits_t, label)
        self.model_backward_and_update(loss)

        learned, fixed = self.split_prompts()
        meta_loss = self.meta_update(learned, fixed, self.episodes(batch, image, label, frozen.detach()))
        summary = {"loss": (loss if meta_loss is None else meta_loss).item()}
        summary["acc"] = compute_accuracy(logits, label)[0].item()
        if (self.batch_idx + 1) == self.num_batches:
            self.update_lr()
        return summary

    def split_prompts(self) -> tuple[nn.Parameter, nn.Parameter]:
        """(prompts the domain split trains, prompts it freezes)."""
        raise NotImplementedError

    def episodes(self, batch: dict, image: Tensor, label: Tensor, frozen: Tensor) -> Iterator[Episode]:
        """The batch's domain splits that have data, in the official order."""
        raise NotImplementedError

    def meta_step_of(self, grad: Tensor, lr: float) -> Tensor:
        """The meta update of one meta-test gradient (each trainer keeps its official float order)."""
        raise NotImplementedError

    def meta_update(self, learned: nn.Parameter, fixed: nn.Parameter, episodes: Iterator[Episode]) -> Tensor | None:
        """Run the episodes on ``learned`` with ``fixed`` frozen, then the meta update; returns the last
        meta-test loss (None if no episode ran)."""
        fixed.requires_grad_(False)
        try:
            saved = learned.detach().clone()
            grads, loss = [], None
            for episode in episodes:
                self.model_backward_and_update(episode.meta_train())
                loss = episode.meta_test()
                grads.append(torch.autograd.grad(loss, learned)[0])
                if len(grads) == 1:  # only the first step is undone (see the module docstring)
                    with torch.no_grad():
                        learned.copy_(saved)
            lr = self.get_current_lr()
            with torch.no_grad():
                for grad in grads:
                    learned.sub_(self.meta_step_of(grad, lr))
        finally:
            fixed.requires_grad_(True)
        return loss


def class_halves(n_cls: int) -> list[list[int]]:
    """The classes in a random order (Python's ``random.shuffle``, once per batch), cut in two halves, the
    first one class larger when the count is odd."""
    order = list(range(n_cls))
    random.shuffle(order)
    half = (n_cls - 1) // 2 + 1
    return [order[:half], order[half : 2 * half]]


@TRAINER_REGISTRY.register()
class Meta_B2N(MetaPromptTrainer):  # noqa: N801  (the official name)
    """Domain split over the classes: meta-train the text prompts on one half of the classes, meta-test
    on the other half (only a half of at least 2 classes is meta-tested)."""

    def split_prompts(self) -> tuple[nn.Parameter, nn.Parameter]:
        learner = self.model.learner
        return learner.prompt_learner.ctx, learner.vision_prompt_learner.ctx

    def meta_step_of(self, grad: Tensor, lr: float) -> Tensor:
        return grad * lr * self.settings.META_STEP

    def episodes(self, batch: dict, image: Tensor, label: Tensor, frozen: Tensor) -> Iterator[Episode]:
        halves = class_halves(len(self.dm.dataset.classnames))
        labels = label.tolist()
        rows = [[j for j, y in enumerate(labels) if y in half] for half in halves]
        exact = self.cfg.EXACT

        def loss(part: int) -> Tensor:
            classes, index = halves[part], rows[part]
            relabel = {y: k for k, y in enumerate(classes)}
            target = torch.tensor([relabel[y] for y in label[index].tolist()], device=image.device)
            # EXACT: the frozen features of the part's images encoded again, as the official forward does.
            features = self.model.frozen_image_features(image[index]) if exact else frozen[index]
            return F.cross_entropy(self.model.text_logits(features, classes), target)

        for i, other in ((0, 1), (1, 0)):
            if len(halves[i]) < 2 or not rows[i] or not rows[other]:
                continue
            yield Episode(lambda other=other: loss(other), lambda i=i: loss(i))


@TRAINER_REGISTRY.register()
class Meta_DG(MetaPromptTrainer):  # noqa: N801  (the official name)
    """Domain split over the source domains of the batch: for each domain label i, meta-train the image
    prompts on the other domains and meta-test on domain i.

    As the official code, the labels are taken to be 0..N-1 for the N domains present in the batch: a
    batch without domain 0 (possible with few images per domain) skips or leaves out some domains.
    """

    def before_train(self) -> None:
        super().before_train()
        if self.dm.num_source_domains < 2:
            print(f"Note: Meta_DG's domain split needs several source domains; {self.cfg.DATASET.NAME} gives "
                  f"{self.dm.num_source_domains}: only the in-domain step runs")  # fmt: skip

    def split_prompts(self) -> tuple[nn.Parameter, nn.Parameter]:
        learner = self.model.learner
        return learner.vision_prompt_learner.ctx, learner.prompt_learner.ctx

    def meta_step_of(self, grad: Tensor, lr: float) -> Tensor:
        return self.settings.META_STEP * lr * grad

    def episodes(self, batch: dict, image: Tensor, label: Tensor, frozen: Tensor) -> Iterator[Episode]:
        domains = batch["domain"].tolist()
        n = len(set(domains))

        def loss(index: Sequence[int]) -> Tensor:
            return F.cross_entropy(self.model.image_logits(image[index]), label[index])

        for i in range(n):
            train = [j for j, d in enumerate(domains) if d != i and d < n]
            test = [j for j, d in enumerate(domains) if d == i]
            if not train or not test:
                continue
            yield Episode(lambda train=train: loss(train), lambda test=test: loss(test))
