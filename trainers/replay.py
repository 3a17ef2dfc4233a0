"""Replaying the random draws of the official code's model construction, for seed-exact parity.

The official trainers build CLIP from scratch (OpenAI's random init, then the weights loaded over
it), some of them twice or with extra tensors. A run here draws the same numbers in the same order,
so that everything drawn later (learnable init, data order, augmentation) is what the official run
drew. Only the tensor shapes matter for what is drawn; nothing here keeps a value unless asked.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from clip.model import CLIP
from clip.resnet import EXPANSION, ModifiedResNet

Site = Callable[[str, int], None]
"""``site(tower, j)``: called where a modified CLIP constructor draws more, with tower "visual" or
"text" and j the 0-based block just built, or j = -1 right after the image tower's ``conv1``."""


def _draw_blocks(width: int, layers: int, tower: str, site: Site | None) -> None:
    for j in range(layers):  # the heads do not change what is drawn
        nn.MultiheadAttention(width, 1)
        nn.Linear(width, 4 * width)
        nn.Linear(4 * width, width)
        if site is not None:
            site(tower, j)


def _draw_resnet(width: int, layers: list[int], grid_rows: int, output_dim: int) -> int:
    """The draws of OpenAI's ModifiedResNet constructor, from its sizes; returns the pooling's width.

    Convolutions draw their weights (no bias); BatchNorm and pooling draw nothing. A block draws its three
    convolutions, then its shortcut's when the stride or the width changes (the first block of a stage)."""
    stem = width // 2
    for c_in, c_out in ((3, stem), (stem, stem), (stem, width)):
        nn.Conv2d(c_in, c_out, 3, bias=False)
    inplanes = width
    for stage, n_blocks in enumerate(layers):
        planes = width * 2**stage
        for j in range(n_blocks):
            nn.Conv2d(inplanes, planes, 1, bias=False)
            nn.Conv2d(planes, planes, 3, bias=False)
            nn.Conv2d(planes, planes * EXPANSION, 1, bias=False)
            if (stage > 0 and j == 0) or inplanes != planes * EXPANSION:
                nn.Conv2d(inplanes, planes * EXPANSION, 1, bias=False)
            inplanes = planes * EXPANSION
    embed = width * 32
    torch.randn(grid_rows, embed)  # the attention pooling's positional embedding
    for _ in ("k_proj", "q_proj", "v_proj"):
        nn.Linear(embed, embed)
    nn.Linear(embed, output_dim)  # c_proj
    return embed


def replay_clip_construction(
    clip_model: CLIP, after_visual_proj: Callable[[int, int], Tensor] | None = None, site: Site | None = None
) -> Tensor | None:
    """Draw from the CPU generator what one construction of a CLIP shaped like ``clip_model`` draws.

    ``after_visual_proj(width, output_dim)``, if given, is drawn right after the image tower's ``proj``
    (where the official MMRL code keeps one more tensor) and returned. ``site``, if given, is called at
    each ``Site`` (where deep-prompt constructors draw their prompts). Both need a ViT image tower; a
    ResNet one draws its stem, blocks and attention pooling, and OpenAI's init re-draws the pooling's
    four projections (its zeroed BatchNorm scales draw nothing).
    """
    visual = clip_model.visual
    resnet = isinstance(visual, ModifiedResNet)
    if resnet and (after_visual_proj is not None or site is not None):
        raise ValueError("after_visual_proj and site are sites of a ViT image tower; this CLIP has a ResNet one")
    t_width = clip_model.ln_final.weight.shape[0]
    t_layers = len(clip_model.transformer.resblocks)
    vocab = clip_model.token_embedding.weight.shape[0]
    extra = None
    with torch.no_grad():
        if resnet:
            width = visual.conv3.weight.shape[0]
            layers = [len(stage) for stage in visual.stages()]
            embed = _draw_resnet(width, layers, visual.attnpool.positional_embedding.shape[0], visual.output_dim)
        else:
            v_width, _, patch, _ = visual.conv1.weight.shape
            out_dim = visual.proj.shape[1]
            nn.Conv2d(3, v_width, kernel_size=patch, stride=patch, bias=False)
            if site is not None:
                site("visual", -1)
            torch.randn(v_width)  # class_embedding
            torch.randn(visual.positional_embedding.shape)
            _draw_blocks(v_width, len(visual.transformer.resblocks), "visual", site)
            torch.randn(v_width, out_dim)  # proj
            if after_visual_proj is not None:
                extra = after_visual_proj(v_width, out_dim)
        _draw_blocks(t_width, t_layers, "text", site)
        nn.Embedding(vocab, t_width)
        # OpenAI's initialize_parameters(): only the sizes matter for what is drawn.
        torch.empty(vocab, t_width).normal_()
        torch.empty(clip_model.positional_embedding.shape).normal_()
        if resnet:  # q, k, v, c projections of the attention pooling
            for shape in ((embed, embed),) * 3 + ((visual.output_dim, embed),):
                torch.empty(shape).normal_()
        for _ in range(t_layers):
            for shape in ((3 * t_width, t_width), (t_width, t_width), (4 * t_width, t_width), (t_width, 4 * t_width)):
                torch.empty(shape).normal_()
        torch.empty(clip_model.text_projection.shape).normal_()
    return extra


def build_clip_without_drawing(build: Callable[[], CLIP]) -> CLIP:
    """``build()`` with the CPU generator's state restored afterwards, for a caller that replays the draws."""
    with torch.random.fork_rng(devices=[]):
        return build()
