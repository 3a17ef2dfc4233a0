"""dassl.data: loaders, the dataset wrapper, transform pipelines and samplers."""
from __future__ import annotations

import random
from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from dassl.config import get_cfg_default
from dassl.data import DatasetWrapper, build_data_loader
from dassl.data.datasets import Datum
from dassl.data.samplers import RandomClassSampler, RandomDomainSampler, SeqDomainSampler, build_sampler
from dassl.data.transforms import INTERPOLATION_MODES, build_transform


@pytest.fixture(scope="module")
def items(tmp_path_factory):
    """12 images of 10x14 pixels: labels 0..2 (4 each), domains alternating 0/1."""
    root = tmp_path_factory.mktemp("imgs")
    out = []
    for i in range(12):
        path = str(root / f"{i}.png")
        Image.fromarray(np.full((10, 14, 3), i * 20, np.uint8)).save(path)
        out.append(Datum(path, label=i // 4, domain=i % 2, classname=f"c{i // 4}"))
    return out


def small_cfg(**input_overrides):
    cfg = get_cfg_default()
    cfg.USE_CUDA = False
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.INPUT.SIZE = (8, 8)
    for k, v in input_overrides.items():
        cfg.INPUT[k] = v
    return cfg


def test_drop_last_only_for_full_training_batches(items):
    cfg = small_cfg()
    assert len(build_data_loader(cfg, "RandomSampler", items, batch_size=5, is_train=True)) == 2
    assert len(build_data_loader(cfg, "SequentialSampler", items, batch_size=5, is_train=False)) == 3
    tfm = build_transform(cfg, is_train=True)
    short = build_data_loader(cfg, "RandomSampler", items[:3], batch_size=5, tfm=tfm, is_train=True)
    assert len(short) == 1 and next(iter(short))["img"].shape == (3, 3, 8, 8)


def test_wrapper_views_img0_and_metadata(items):
    cfg = small_cfg(TRANSFORMS=("normalize",), PIXEL_MEAN=[0.5, 0.5, 0.5], PIXEL_STD=[0.5, 0.5, 0.5])
    cfg.DATALOADER.K_TRANSFORMS = 2
    cfg.DATALOADER.RETURN_IMG0 = True
    tfm = build_transform(cfg, is_train=True)
    out = DatasetWrapper(cfg, items, transform=[tfm, tfm], is_train=True)[5]
    assert set(out) == {"label", "domain", "impath", "index", "img", "img2", "img0"}
    assert (out["label"], out["domain"], out["index"]) == (1, 1, 5)
    assert isinstance(out["img"], list) and len(out["img"]) == 2 and out["img"][0].shape == (3, 8, 8)
    expected = (5 * 20 / 255 - 0.5) / 0.5  # constant image, resized and normalised
    assert torch.allclose(out["img0"], torch.full((3, 8, 8), expected), atol=1e-6)
    single = DatasetWrapper(cfg, items, transform=tfm, is_train=False)[0]  # K views only in training
    assert isinstance(single["img"], torch.Tensor)
    with pytest.raises(ValueError, match="transform is None"):
        DatasetWrapper(cfg, items, transform=None, is_train=True)


def test_train_pipeline_has_upstream_order_whatever_the_listed_order():
    cfg = small_cfg(
        TRANSFORMS=("normalize", "random_flip", "random_resized_crop"), RRCROP_SCALE=(0.5, 1), INTERPOLATION="bicubic"
    )
    ops = build_transform(cfg, is_train=True).transforms
    assert [type(op) for op in ops] == [T.RandomResizedCrop, T.RandomHorizontalFlip, T.ToTensor, T.Normalize]
    assert ops[0].scale == (0.5, 1) and ops[0].interpolation == INTERPOLATION_MODES["bicubic"]
    plain = build_transform(small_cfg(), is_train=True).transforms
    assert [type(op) for op in plain] == [T.Resize, T.ToTensor]  # no crop chosen: resize to SIZE


def test_test_pipeline_resizes_shorter_edge_then_center_crops():
    cfg = small_cfg(SIZE=(6, 9), TRANSFORMS=("random_flip", "normalize"))
    ops = build_transform(cfg, is_train=False).transforms
    assert [type(op) for op in ops] == [T.Resize, T.CenterCrop, T.ToTensor, T.Normalize]
    assert ops[0].size == 9 and tuple(ops[1].size) == (6, 9)
    img = Image.fromarray(np.zeros((20, 40, 3), np.uint8))
    assert build_transform(cfg, is_train=False)(img).shape == (3, 6, 9)


def test_transform_names_are_checked():
    with pytest.raises(ValueError, match="random_flipp"):
        build_transform(small_cfg(TRANSFORMS=("random_flipp",)))
    with pytest.raises(NotImplementedError, match="randaugment"):
        build_transform(small_cfg(TRANSFORMS=("randaugment",)))
    assert build_transform(small_cfg(NO_TRANSFORM=True)) is None


def test_random_class_sampler_batches_and_construction_draws(items):
    state = random.getstate()
    sampler = build_sampler("RandomClassSampler", data_source=items, batch_size=4, n_ins=2)
    assert isinstance(sampler, RandomClassSampler)
    assert random.getstate() != state  # like upstream, the constructor runs one pass to learn its length
    idxs = list(sampler)
    assert len(idxs) % 4 == 0 and len(idxs) >= 8
    for b in range(0, len(idxs), 4):
        labels = [items[i].label for i in idxs[b : b + 4]]
        assert labels[0] == labels[1] and labels[2] == labels[3] and labels[0] != labels[2]


def test_domain_samplers_balance_domains(items):
    rd = build_sampler("RandomDomainSampler", data_source=items, batch_size=4, n_domain=0)
    sd = build_sampler("SeqDomainSampler", data_source=items, batch_size=4)
    assert isinstance(rd, RandomDomainSampler) and isinstance(sd, SeqDomainSampler)
    for idxs in (list(rd), list(sd)):
        assert len(idxs) == 12 and sorted(idxs) == list(range(12))
        for b in range(0, 12, 4):
            assert Counter(items[i].domain for i in idxs[b : b + 4]) == {0: 2, 1: 2}
    with pytest.raises(ValueError, match="Unknown sampler"):
        build_sampler("Shuffled", data_source=items)
