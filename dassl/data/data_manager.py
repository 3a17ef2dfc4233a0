"""Dataset -> transforms -> samplers -> loaders, built in upstream's order.

The order matters for equal numbers: building a sampler may draw random numbers, and the
model is built right after, from the same generators.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torchvision.transforms as T
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset
from yacs.config import CfgNode

from dassl.utils import read_image
from dassl.utils.crash_points import crash_point

from .datasets import build_dataset
from .samplers import build_sampler
from .transforms import INTERPOLATION_MODES, build_transform

__all__ = ["DataManager", "DatasetWrapper", "build_data_loader"]


def build_data_loader(
    cfg: CfgNode,
    sampler_type: str = "SequentialSampler",
    data_source: Sequence[Any] | None = None,
    batch_size: int = 64,
    n_domain: int = 0,
    n_ins: int = 2,
    tfm: Callable | Sequence[Callable] | None = None,
    is_train: bool = True,
    dataset_wrapper: type[TorchDataset] | None = None,
) -> DataLoader:
    """A loader over ``data_source`` (Datum-like items); the last short batch is dropped only in training."""
    sampler = build_sampler(
        sampler_type, cfg=cfg, data_source=data_source, batch_size=batch_size, n_domain=n_domain, n_ins=n_ins
    )
    wrapper = dataset_wrapper or DatasetWrapper
    loader = DataLoader(
        wrapper(cfg, data_source, transform=tfm, is_train=is_train),
        batch_size=batch_size,
        sampler=sampler,
        num_workers=cfg.DATALOADER.NUM_WORKERS,
        drop_last=is_train and len(data_source) >= batch_size,
        pin_memory=torch.cuda.is_available() and cfg.USE_CUDA,
    )
    if len(loader) == 0:
        raise ValueError(f"Empty data loader ({len(data_source)} items, batch size {batch_size})")
    return loader


def _format_table(rows: list[list[Any]]) -> str:
    """Two left-aligned columns between dashed rules (the look of upstream's tabulate summary)."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(2)]
    rule = "  ".join("-" * w for w in widths)
    body = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    return "\n".join([rule, *body, rule])


class DataManager:
    """Builds the dataset named in ``cfg.DATASET.NAME`` and its train_x/train_u/val/test loaders."""

    def __init__(
        self,
        cfg: CfgNode,
        custom_tfm_train: Callable | None = None,
        custom_tfm_test: Callable | None = None,
        dataset_wrapper: type[TorchDataset] | None = None,
    ) -> None:
        dataset = build_dataset(cfg)

        if custom_tfm_train is None:
            tfm_train = build_transform(cfg, is_train=True)
        else:
            print("* Using custom transform for training")
            tfm_train = custom_tfm_train
        if custom_tfm_test is None:
            tfm_test = build_transform(cfg, is_train=False)
        else:
            print("* Using custom transform for testing")
            tfm_test = custom_tfm_test

        loader_cfg = cfg.DATALOADER
        x = loader_cfg.TRAIN_X
        self.train_loader_x = build_data_loader(
            cfg,
            sampler_type=x.SAMPLER,
            data_source=dataset.train_x,
            batch_size=x.BATCH_SIZE,
            n_domain=x.N_DOMAIN,
            n_ins=x.N_INS,
            tfm=tfm_train,
            is_train=True,
            dataset_wrapper=dataset_wrapper,
        )

        # Upstream's unlabelled loader (its SSL / DA trainers; no dataset here has train_u): dassl/compat.py.
        self.train_loader_u = None
        if dataset.train_u:
            u = x if loader_cfg.TRAIN_U.SAME_AS_X else loader_cfg.TRAIN_U
            self.train_loader_u = build_data_loader(
                cfg,
                sampler_type=u.SAMPLER,
                data_source=dataset.train_u,
                batch_size=u.BATCH_SIZE,
                n_domain=u.N_DOMAIN,
                n_ins=u.N_INS,
                tfm=tfm_train,
                is_train=True,
                dataset_wrapper=dataset_wrapper,
            )

        def test_loader(data_source: Sequence[Any]) -> DataLoader:
            return build_data_loader(
                cfg,
                sampler_type=loader_cfg.TEST.SAMPLER,
                data_source=data_source,
                batch_size=loader_cfg.TEST.BATCH_SIZE,
                tfm=tfm_test,
                is_train=False,
                dataset_wrapper=dataset_wrapper,
            )

        self.val_loader = test_loader(dataset.val) if dataset.val else None
        self.test_loader = test_loader(dataset.test)

        self._num_classes = dataset.num_classes
        # A DG dataset resolves its domains itself (DATASET.ID or the lists): report those.
        self._source_domains = list(getattr(dataset, "source_domains", cfg.DATASET.SOURCE_DOMAINS))
        self._target_domains = list(getattr(dataset, "target_domains", cfg.DATASET.TARGET_DOMAINS))
        self._num_source_domains = len(self._source_domains)
        self._lab2cname = dataset.lab2cname
        self.dataset = dataset

        if cfg.VERBOSE:
            self.show_dataset_summary(cfg)

    @property
    def num_classes(self) -> int:
        return self._num_classes

    @property
    def num_source_domains(self) -> int:
        return self._num_source_domains

    @property
    def lab2cname(self) -> dict[int, str]:
        return self._lab2cname

    def show_dataset_summary(self, cfg: CfgNode) -> None:
        rows: list[list[Any]] = [["Dataset", cfg.DATASET.NAME]]
        if self._source_domains:
            rows.append(["Source", self._source_domains])
        if self._target_domains:
            rows.append(["Target", self._target_domains])
        rows.append(["# classes", f"{self.num_classes:,}"])
        rows.append(["# train_x", f"{len(self.dataset.train_x):,}"])
        if self.dataset.train_u:
            rows.append(["# train_u", f"{len(self.dataset.train_u):,}"])
        if self.dataset.val:
            rows.append(["# val", f"{len(self.dataset.val):,}"])
        rows.append(["# test", f"{len(self.dataset.test):,}"])
        print(_format_table(rows))


NO_IMAGE = torch.empty(0)  # ``img`` of an item whose image is not needed (DatasetWrapper.images_needed)


class DatasetWrapper(TorchDataset):
    """Reads and transforms one item into a dict: label, domain, impath, index, img[, img2, ...][, img0].

    ``transform`` may be a list: the k-th pipeline's output goes to ``img`` (k=1) or ``img<k>``.
    With ``DATALOADER.K_TRANSFORMS > 1`` (training only) each entry is a list of that many views.

    ``images_needed`` False (set by a trainer that holds what it computes from every image of this
    split, before a pass starts): the image is neither read nor transformed and ``img`` is an empty
    tensor; only a deterministic transform may be skipped so, as it draws no random numbers.
    """

    def __init__(
        self,
        cfg: CfgNode,
        data_source: Sequence[Any],
        transform: Callable | Sequence[Callable] | None = None,
        is_train: bool = False,
    ) -> None:
        self.cfg = cfg
        self.data_source = data_source
        self.transform = transform
        self.is_train = is_train
        self.k_tfm = cfg.DATALOADER.K_TRANSFORMS if is_train else 1
        self.return_img0 = cfg.DATALOADER.RETURN_IMG0
        self.images_needed = True
        if self.k_tfm > 1 and transform is None:
            raise ValueError(f"Cannot augment the image {self.k_tfm} times because transform is None")

        # img0: resized (and normalised if configured) but not augmented
        to_tensor: list[Callable] = [
            T.Resize(cfg.INPUT.SIZE, interpolation=INTERPOLATION_MODES[cfg.INPUT.INTERPOLATION]),
            T.ToTensor(),
        ]
        if "normalize" in cfg.INPUT.TRANSFORMS:
            to_tensor.append(T.Normalize(mean=cfg.INPUT.PIXEL_MEAN, std=cfg.INPUT.PIXEL_STD))
        self.to_tensor = T.Compose(to_tensor)

    def __len__(self) -> int:
        return len(self.data_source)

    def __getitem__(self, idx: int) -> dict[str, Any]:
        item = self.data_source[idx]
        output: dict[str, Any] = {"label": item.label, "domain": item.domain, "impath": item.impath, "index": idx}
        crash_point("load_item")
        if not self.images_needed:
            output["img"] = NO_IMAGE
            return output
        img0 = read_image(item.impath)
        if self.transform is None:
            output["img"] = img0
        elif isinstance(self.transform, (list, tuple)):
            for k, tfm in enumerate(self.transform, start=1):
                output["img" if k == 1 else f"img{k}"] = self._transform_image(tfm, img0)
        else:
            output["img"] = self._transform_image(self.transform, img0)
        if self.return_img0:
            output["img0"] = self.to_tensor(img0)
        return output

    def _transform_image(self, tfm: Callable, img0: Any) -> Any:
        views = [tfm(img0) for _ in range(self.k_tfm)]
        return views[0] if len(views) == 1 else views
