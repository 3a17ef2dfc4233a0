"""Class prompts, one implementation for every method: their text and their fixed token embeddings.

- ``prompt_template``: the template a dataset's prompts use: the dataset's own (ImageFolder's
  ``DATASET.FOLDER.TEMPLATE``, which the trainer passes to every factory as ``template``) or else the
  method's table (``trainers/templates.py`` reads them from ``configs/``), CoOp's by default.
- ``class_prompts``: one prompt per class from that template.
- ``ClassPrompts``: the fixed parts of "<context> <class name>." for prompt learners (SOS embedding,
  the rest of the tokens, EOT positions), under the official buffer names ``token_prefix`` / ``token_suffix``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from clip import clip
from clip.model import CLIP
from clip.tokenizer import default_tokenizer

from .templates import Templates, templates


def class_name(name: str) -> str:
    """Class names are written with "_" for spaces in the datasets; prompts use spaces."""
    return name.replace("_", " ")


def prompt_template(dataset: str, template: str | None = None, table: Templates | None = None) -> str:
    """The dataset's own ``template`` if it brings one (the user asked for it), else ``table``'s entry
    (CoOp's table, ``configs/templates.yaml``, when none is given)."""
    return template or (table or templates()).template(dataset)


def class_prompts(
    dataset: str, classnames: Sequence[str], table: Templates | None = None, template: str | None = None
) -> list[str]:
    """One prompt per class from ``prompt_template(dataset, template, table)``."""
    chosen = prompt_template(dataset, template, table)
    return [chosen.format(class_name(name)) for name in classnames]


def template_not_used(method: str, template: str | None) -> None:
    """Say so when a dataset brings a template to a method whose prompts are learned context + class name."""
    if template:
        print(f'Note: {method} learns its prompt context; the dataset\'s template "{template}" is not used')


class ClassPrompts(nn.Module):
    """The fixed parts of "<stand-in> <class name>." per class: SOS embedding, the rest, EOT positions.

    ``stand_in`` is the text whose first ``n_ctx`` tokens the learned context replaces. ``token_prefix`` /
    ``token_suffix`` are saved in checkpoints (the official ones hold them) but rebuilt from the current
    class names on load; ``eot`` and ``name_lens`` are not saved. ``template``: the prompt with "{}" for the
    class name, when it is not "<stand-in> {}." (it then starts with the ``n_ctx`` tokens to replace).
    """

    def __init__(
        self, classnames: Sequence[str], stand_in: str, n_ctx: int, clip_model: CLIP, template: str | None = None
    ) -> None:
        super().__init__()
        names = [class_name(name) for name in classnames]
        tokenizer = default_tokenizer()
        self.name_lens = [len(tokenizer.encode(name)) for name in names]
        texts = [template.format(name) if template else f"{stand_in} {name}." for name in names]
        tokens = clip.tokenize(texts)
        with torch.no_grad():
            embedding = clip_model.token_embeddings(tokens)
        self.register_buffer("token_prefix", embedding[:, :1])
        self.register_buffer("token_suffix", embedding[:, 1 + n_ctx :])
        self.register_buffer("eot", tokens.argmax(dim=-1), persistent=False)
        self.n_cls = len(names)
        self.shared = 1  # leading positions the same in every class prompt (SOS); learners may widen it
