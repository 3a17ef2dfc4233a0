"""Frozen image features computed once per image and split, the image-side counterpart of text_cache.py.

A trainer declares ``FROZEN_IMAGE_FEATURES = "<method>"``: its model's method ``(images) -> features``
whose result for an image depends on that image alone (a frozen, unprompted image tower: nothing
learned reaches it, and no other image: CLIP is in eval mode). The trainer base installs a
``FeatureCache`` over that method. For a split whose transform is deterministic (``random_steps``:
no random augmentation, one view, no ``img0``), the first pass computes the features of each image,
keyed by the item's index in the split (not by its position in a batch: shuffling moves it) and keeps
them on the model's device in the dtype they were computed in (fp16 runs keep fp16); once every item
of the split is held, later passes read no image at all: the loader still runs (its sampler and the
random numbers it draws are the same), but its items skip reading and transforming the image, which
draws nothing from any generator, and no worker process is started.

Same numbers as without the cache. A batch whose features are all held gets them from the store. A
batch with an item not yet held is computed: with ``EXACT True`` as a whole, as without the cache, so
every value is one the uncached run computes for a batch of that size (the training batches all have
one size, and a row's result does not depend on the other rows); by default only the missing items,
which can move those rows by float rounding (a batch of one image takes other kernels), and every
image is computed exactly once per split.

Bounded: every split's store together stays within ``FEATURE_CACHE.MAX_MB``; a split that would not
fit is computed in every pass, and says so in one line. ``FEATURE_CACHE.ENABLED False`` turns it off.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from dassl.data import DatasetWrapper
from dassl.data.transforms import random_steps

from .text_cache import autocast_enabled

MB = 2**20


@dataclass
class SplitStore:
    """The features of one split's items, allocated at the split's first computed batch."""

    split: str
    loader: DataLoader
    size: int  # items in the split
    values: Tensor | None = None  # (size, *feature shape) on the model's device
    filled: Tensor = field(init=False)  # (size,) bool, on the CPU: which items are held
    context: tuple = ()  # the model's (device, dtype, autocast on) when they were computed
    over_bound: bool = False  # did not fit: computed in every pass

    def __post_init__(self) -> None:
        self.filled = torch.zeros(self.size, dtype=torch.bool)

    @property
    def complete(self) -> bool:
        return self.values is not None and bool(self.filled.all())

    @property
    def nbytes(self) -> int:
        return 0 if self.values is None else self.values.numel() * self.values.element_size()

    def gather(self, index: Tensor) -> Tensor:
        assert self.values is not None
        return self.values.index_select(0, index.to(self.values.device))

    def put(self, index: Tensor, rows: Tensor) -> None:
        """Hold ``rows`` as the features of the items ``index`` (a plain tensor even under inference mode)."""
        assert self.values is not None
        with torch.inference_mode(False), torch.no_grad():
            self.values.index_copy_(0, index.to(self.values.device), rows.detach())
        self.filled[index] = True


class FeatureCache:
    """The per-split stores of one run, and the cached version of the frozen method (``install``)."""

    def __init__(self, max_mb: float, exact: bool) -> None:
        self.max_bytes = int(max_mb * MB)
        self.exact = exact
        self.stores: dict[str, SplitStore | None] = {}  # None: the split is not cached (said once)
        self.active: tuple[SplitStore, Tensor] | None = None  # the store and item indices of the current batch
        self.images_skipped = False  # the current pass reads no image: every feature comes from the store
        self.anchor: Tensor | None = None  # a parameter of the model: its device and dtype are the model's
        self.computed = 0  # images the frozen method computed (for tests and benchmarks)

    # ---- The frozen method.
    def install(self, model: nn.Module, name: str) -> None:
        """Route ``model.<name>(images)`` through the cache (outside a trainer's pass it computes as before)."""
        compute = getattr(model, name, None)
        if not callable(compute):
            raise TypeError(f"FROZEN_IMAGE_FEATURES names {name!r}, but {type(model).__name__} has no such method")
        self.anchor = next(model.parameters())
        setattr(model, name, lambda images: self.features(images, compute))

    def context(self) -> tuple:
        """What the features depend on besides the image: the model's device and dtype, and autocast."""
        assert self.anchor is not None
        device = self.anchor.device
        return device, self.anchor.dtype, autocast_enabled(device.type)

    def features(self, images: Tensor, compute: Callable[[Tensor], Tensor]) -> Tensor:
        """``compute(images)``, or what is held for the current batch's items."""
        if self.active is None:
            self.computed += len(images)
            return compute(images)
        store, index = self.active
        if self.images_skipped:
            return store.gather(index)
        if len(images) != len(index):
            raise RuntimeError(
                f"the frozen image features were asked for {len(images)} images in a batch of {len(index)}: "
                "FROZEN_IMAGE_FEATURES must name a method called on the batch's images only"
            )
        if store.over_bound or (store.values is not None and store.context != self.context()):
            self.computed += len(images)
            return compute(images)
        missing = ~store.filled[index]
        if store.values is not None and not missing.any():
            return store.gather(index)
        if self.exact or store.values is None:
            features = compute(images)
            self.computed += len(images)
            if self.allocate(store, features):
                store.put(index[missing], features[missing.to(features.device)])
            return features
        store.put(index[missing], compute(images[missing.to(images.device)]))
        self.computed += int(missing.sum())
        return store.gather(index)

    def allocate(self, store: SplitStore, features: Tensor) -> bool:
        """Make room for the split's features at its first batch; False (and one line) if they do not fit."""
        if store.values is not None:
            return True
        row = features[0]
        needed = store.size * row.numel() * row.element_size()
        used = sum(s.nbytes for s in self.stores.values() if s is not None)
        if used + needed > self.max_bytes:
            store.over_bound = True
            shape = " x ".join(str(n) for n in (store.size, *row.shape))
            print(
                f"Frozen-feature cache: the {store.split} features ({shape} {str(row.dtype).removeprefix('torch.')}, "
                f"{needed / MB:.1f} MB) exceed FEATURE_CACHE.MAX_MB {self.max_bytes / MB:g} "
                f"({(self.max_bytes - used) / MB:.1f} MB left): computing them in every pass"
            )
            return False
        with torch.inference_mode(False):
            store.values = torch.empty((store.size, *row.shape), dtype=row.dtype, device=row.device)
        store.context = self.context()
        return True

    # ---- The passes.
    def store_for(self, split: str, loader: Iterable[Any]) -> SplitStore | None:
        """The split's store (made and announced at its first pass), or None if it cannot be cached."""
        store = self.stores.get(split)
        if split in self.stores and (store is None or store.loader is loader):
            return store
        reason = uncachable(loader)
        if reason:
            print(f"Frozen-feature cache: the {split} images are encoded in every pass ({reason})")
            self.stores[split] = None
            return None
        assert isinstance(loader, DataLoader)
        store = self.stores[split] = SplitStore(split, loader, len(loader.dataset))
        print(f"Frozen-feature cache: the {split} images are encoded once ({store.size:,} images)")
        return store

    def batches(self, split: str, loader: Iterable[Any]) -> Iterator[Any]:
        """The loader's batches, each with its items' indices bound for the frozen method.

        Once the split's store is complete, the pass reads no image and starts no worker process (set
        before the iterator starts, which is when workers copy the dataset); the sampler and the
        loader's seed draw are the same, so no generator sees a difference.
        """
        store = self.store_for(split, loader)
        if store is None:
            yield from loader
            return
        assert isinstance(loader, DataLoader) and isinstance(loader.dataset, DatasetWrapper)
        wrapper, workers = loader.dataset, loader.num_workers
        self.images_skipped = store.complete
        if self.images_skipped:
            wrapper.images_needed = False
            loader.num_workers = 0
        try:
            for batch in loader:
                self.active = (store, batch["index"])
                yield batch
                self.active = None
        finally:
            self.active, self.images_skipped = None, False
            wrapper.images_needed, loader.num_workers = True, workers


def uncachable(loader: Iterable[Any]) -> str:
    """Why a pass over ``loader`` may give an image other pixels each time ("" if it cannot)."""
    wrapper = getattr(loader, "dataset", None)
    if not isinstance(loader, DataLoader) or not isinstance(wrapper, DatasetWrapper):
        return "not a Dassl data loader"
    steps = random_steps(wrapper.transform)
    if steps:
        return f"random transform steps: {', '.join(dict.fromkeys(steps))}"
    if wrapper.k_tfm > 1:
        return f"DATALOADER.K_TRANSFORMS {wrapper.k_tfm}"
    if wrapper.return_img0:
        return "DATALOADER.RETURN_IMG0 True"
    return ""
