"""Worlds: a random CLIP file and synthetic datasets, built once per spec and shared by both sides.

A world is everything a side-by-side run reads besides the code: the CLIP weights (a tiny random CLIP in
OpenAI's state-dict layout, which the official ``clip._download`` is made to return) and the datasets
(``datasets.synthetic``, the real on-disk layouts). Each side gets its own copy of the data folder, so
few-shot pickles and rebuilt splits one side writes are never read by the other.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
from dataclasses import asdict, dataclass, field

import torch

from clip.model import CLIP, CLIPConfig
from datasets.synthetic import make_dataset

# The tests' tiny CLIP (tests/tiny.py): 12 layers per tower, width 64 (one head), 32-px images.
TINY = dict(
    embed_dim=64,
    image_resolution=32,
    vision_layers=12,
    vision_width=64,
    vision_patch_size=8,
    context_length=77,
    vocab_size=49408,
    transformer_width=64,
    transformer_heads=1,
    transformer_layers=12,
)
# ViT-B/16's widths and heads (768 / 512, 12 / 8 heads, 12 layers, patch 16) at 32 px: 4 patches.
VIT_B16_WIDTHS = dict(
    embed_dim=512, vision_width=768, vision_patch_size=16, transformer_width=512, transformer_heads=8
)


@dataclass(frozen=True)
class Data:
    """One synthetic dataset of ``datasets.synthetic.make_dataset`` (``name``: a config file stem)."""

    name: str = "dtd"
    n_classes: int = 8
    n_train: int = 4
    n_val: int = 2
    n_test: int = 3
    seed: int = 0


@dataclass(frozen=True)
class World:
    """A random CLIP (``torch.manual_seed(weight_seed)``, then ``noise`` * N(0, 1) on every weight) and datasets."""

    clip: tuple[tuple[str, int], ...] = ()  # overrides of TINY
    weight_seed: int = 0
    noise: float = 0.0
    data: tuple[Data, ...] = field(default_factory=lambda: (Data(),))

    def config(self) -> CLIPConfig:
        return CLIPConfig(**{**TINY, **dict(self.clip)})

    def key(self) -> str:
        """A short digest of the spec: the folder name of the built world."""
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def describe(self) -> str:
        c = self.config()
        if isinstance(c.vision_layers, tuple):
            return resnet_description(self, c)
        sets = ", ".join(f"{d.name} {d.n_classes} classes (seed {d.seed})" for d in self.data) or "no dataset"
        noise = f" + {self.noise} noise" if self.noise else ""
        return (
            f"CLIP {c.vision_width}/{c.transformer_width} wide, {c.vision_layers}/{c.transformer_layers} layers, "
            f"patch {c.vision_patch_size} at {c.image_resolution} px, seed {self.weight_seed}{noise}; {sets}"
        )


def clip_weights(world: World) -> dict[str, torch.Tensor]:
    """The world's CLIP state dict (fp32; the runs round it to fp16 as OpenAI's release, then back)."""
    return random_clip(world.config(), world.weight_seed, world.noise).state_dict()


def random_clip(config: CLIPConfig, seed: int, noise: float = 0.0) -> CLIP:
    """OpenAI's construction after ``torch.manual_seed(seed)`` (a ResNet's BatchNorm as if trained), then
    ``noise`` times a normal draw added to every weight, so none keeps its init value (zeros, ones)."""
    torch.manual_seed(seed)
    model = CLIP(config)
    if isinstance(config.vision_layers, tuple):
        trained_batchnorm(model, seed)
    if noise:
        with torch.no_grad():
            for p in model.parameters():
                p.add_(noise * torch.randn_like(p))
    return model


def trained_batchnorm(model: CLIP, seed: int) -> None:
    """A ResNet CLIP's BatchNorm layers as if trained (also the test suite's tiny ResNet, tests/tiny.py).

    Through the default init a random ResNet's signal fades block after block, so its features would be
    the biases alone. Every BatchNorm gets a random scale and shift, then the running statistics of 16
    random images (one training-mode pass in float64), from a generator seeded with ``seed``.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for bn in (m for m in model.visual.modules() if isinstance(m, torch.nn.BatchNorm2d)):
            bn.weight.copy_(1.0 + 0.2 * torch.randn(bn.num_features, generator=g))
            bn.bias.copy_(0.1 * torch.randn(bn.num_features, generator=g))
        measured = copy.deepcopy(model.visual).double().train()
        for bn in (m for m in measured.modules() if isinstance(m, torch.nn.BatchNorm2d)):
            bn.momentum = None
        size = model.visual.input_resolution
        measured(torch.randn(16, 3, size, size, generator=g, dtype=torch.float64))
        for name, buffer in measured.named_buffers():
            model.visual.get_buffer(name).copy_(buffer)


def resnet_description(world: World, c: CLIPConfig) -> str:
    sets = ", ".join(f"{d.name} {d.n_classes} classes (seed {d.seed})" for d in world.data) or "no dataset"
    noise = f" + {world.noise} noise" if world.noise else ""
    stages = "-".join(map(str, c.vision_layers))
    return (
        f"ResNet CLIP {stages} blocks, width {c.vision_width}, text {c.transformer_width} wide, "
        f"features {c.embed_dim}, at {c.image_resolution} px, seed {world.weight_seed}{noise}; {sets}"
    )


def build(world: World, cache: str) -> str:
    """Build ``world`` under ``cache/<key>`` unless it is there: ``clip.pt`` and ``data/``. Returns the folder."""
    folder = os.path.join(cache, world.key())
    if os.path.exists(os.path.join(folder, "done")):
        return folder
    tmp = folder + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(os.path.join(tmp, "data"))
    torch.save(clip_weights(world), os.path.join(tmp, "clip.pt"))
    for d in world.data:
        make_dataset(d.name, os.path.join(tmp, "data"), n_classes=d.n_classes, n_train=d.n_train,
                     n_val=d.n_val, n_test=d.n_test, size=world.config().image_resolution, seed=d.seed)  # fmt: skip
    with open(os.path.join(tmp, "world.json"), "w") as f:
        json.dump(asdict(world), f, indent=1)
    open(os.path.join(tmp, "done"), "w").close()
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)
    return folder


def side_copy(world_dir: str, dest: str) -> str:
    """A fresh copy of the world's data for one side; returns the data root."""
    root = os.path.join(dest, "data")
    shutil.rmtree(root, ignore_errors=True)
    shutil.copytree(os.path.join(world_dir, "data"), root)
    return root


def widths(**overrides: int) -> tuple[tuple[str, int], ...]:
    """CLIP overrides of TINY as a World field."""
    return tuple(sorted(overrides.items()))


# The worlds of the scenarios. TESTS* are the worlds the tests rebuild (their pins come from them);
# the others vary what a world can vary: weights, widths and heads, class counts, name lengths, seeds.
TESTS = World()
TESTS_IMAGENET = World(data=(Data("imagenet"),))
TESTS_CLIP = World(data=())
# The unit tests' seeded CLIPs; their images are drawn by the recipes, no dataset is read.
SEEDED = World(weight_seed=123, noise=0.02, data=())
SEEDED_EMBED512 = World(clip=widths(embed_dim=512), weight_seed=123, noise=0.02, data=())
SEEDED_MMRL = World(clip=widths(embed_dim=32, vision_width=128), weight_seed=123, noise=0.02, data=())
SEEDED_MAPLE = World(
    clip=widths(**VIT_B16_WIDTHS, vision_layers=3, transformer_layers=3), weight_seed=123, noise=0.02, data=()
)
DTD20 = World(weight_seed=1, data=(Data("dtd", n_classes=20, n_train=4, n_val=2, n_test=3, seed=1),))
CARS = World(
    clip=widths(transformer_width=128, transformer_heads=2, vision_width=128),
    weight_seed=2,
    noise=0.02,
    data=(Data("stanford_cars", n_classes=6, n_train=6, n_val=2, n_test=3, seed=2),),
)
PETS = World(
    clip=widths(embed_dim=32, vision_width=128),
    weight_seed=4,
    data=(Data("oxford_pets", n_classes=6, n_train=4, n_val=2, n_test=2, seed=4),),
)
CROSS = World(
    weight_seed=5,
    data=(Data("imagenet", n_classes=8, n_train=4, n_val=2, n_test=2, seed=5), Data("dtd", n_classes=5, seed=5),
          Data("eurosat", n_classes=4, seed=5)),
)  # fmt: skip
VIT_B16 = World(
    clip=widths(**VIT_B16_WIDTHS),
    weight_seed=3,
    data=(Data("dtd", n_classes=20, n_train=4, n_val=2, n_test=3, seed=3),),
)
VIT_B16_CROSS = World(
    clip=widths(**VIT_B16_WIDTHS),
    weight_seed=6,
    data=(Data("imagenet", n_classes=8, n_train=4, n_val=2, n_test=2, seed=6), Data("dtd", n_classes=6, seed=6)),
)
# ProVP's official code hard-codes ViT-B/16's 12 image blocks and width 768 (its text side any width).
PROVP_IMAGE = widths(vision_width=768, vision_patch_size=16)
SEEDED_PROVP = World(clip=PROVP_IMAGE, weight_seed=123, noise=0.02, data=())
PROVP = World(
    clip=PROVP_IMAGE,
    weight_seed=3,
    noise=0.02,
    data=(Data("dtd", n_classes=6, n_train=4, n_val=2, n_test=3, seed=1),
          Data("eurosat", n_classes=4, n_train=4, n_val=2, n_test=3, seed=2),
          Data("oxford_pets", n_classes=5, n_train=4, n_val=2, n_test=2, seed=3)),
)  # fmt: skip
# TCP: its official code reshapes its meta-network's output to width 512, so its text towers are 512 wide.
TCP_TEXT = widths(transformer_width=512, transformer_heads=8)
SEEDED_TCP = World(clip=TCP_TEXT, weight_seed=123, noise=0.02, data=())
SEEDED_TCP_RESNET = World(
    clip=widths(transformer_width=512, transformer_heads=8, vision_layers=(2, 1, 1, 1), vision_width=8,
                vision_patch_size=None),
    weight_seed=123, data=(),
)  # fmt: skip
TCP_DTD = World(clip=TCP_TEXT, weight_seed=1, data=(Data("dtd", n_classes=8, n_train=4, n_val=2, n_test=3, seed=1),))
TCP_CARS = World(
    clip=widths(transformer_width=512, transformer_heads=8, vision_width=128, embed_dim=32),
    weight_seed=2,
    noise=0.02,
    data=(Data("stanford_cars", n_classes=10, n_train=4, n_val=2, n_test=2, seed=2),),
)
# MetaPrompt: the tests' world (tests/test_metaprompt.py), and another one.
METAPROMPT = World(data=(Data("dtd", n_classes=8, n_train=4, n_val=2, n_test=3, seed=0),
                         Data("pacs", n_classes=5, n_train=3, n_val=2, n_test=2, seed=0)))  # fmt: skip
METAPROMPT_NOISE = World(
    clip=widths(transformer_width=128, transformer_heads=2),
    weight_seed=1,
    noise=0.02,
    data=(Data("eurosat", n_classes=10, n_train=4, n_val=2, n_test=2, seed=1),
          Data("pacs", n_classes=7, n_train=2, n_val=1, n_test=2, seed=1)),
)  # fmt: skip
# CLIP-Adapter: the release writes its adapter for 1024-d features (tests/test_clip_adapter.py's worlds).
RESNET = widths(vision_layers=(2, 1, 1, 1), vision_width=8, vision_patch_size=None)
ADAPTER_RN = World(clip=(*RESNET, ("embed_dim", 1024)), data=(Data("dtd", n_classes=8, n_train=4, n_val=2, n_test=3),))
ADAPTER_VIT = World(clip=widths(embed_dim=1024), data=(Data("dtd", n_classes=8, n_train=4, n_val=2, n_test=3),))
ADAPTER_CARS = World(
    clip=widths(embed_dim=1024, transformer_width=128, transformer_heads=2),
    weight_seed=3,
    noise=0.02,
    data=(Data("stanford_cars", n_classes=12, n_train=4, n_val=2, n_test=2, seed=3),),
)

# The CoOp family on tiny ResNet CLIPs (RESNET above, tests/tiny.py's tiny_resnet_config: the text tower of
# TINY, a stem 8 wide, stages of 2, 1, 1, 1 blocks, attention pooling 256 wide with 4 heads).
RN_TESTS = World(clip=RESNET)  # tests/test_resnet_clip.py's world: its pins come from it
RN_DTD20 = World(clip=RESNET, weight_seed=1,
                 data=(Data("dtd", n_classes=20, n_train=4, n_val=2, n_test=3, seed=1),))  # fmt: skip
RN_CARS = World(
    clip=widths(vision_layers=(1, 2, 1, 1), vision_width=16, vision_patch_size=None, transformer_width=128,
                transformer_heads=2, embed_dim=32),
    weight_seed=2,
    data=(Data("stanford_cars", n_classes=6, n_train=6, n_val=2, n_test=3, seed=2),),
)  # fmt: skip
RN_IMAGENET = World(clip=RESNET, weight_seed=4,
                    data=(Data("imagenet", n_classes=10, n_train=4, n_val=2, n_test=2, seed=4),))  # fmt: skip
