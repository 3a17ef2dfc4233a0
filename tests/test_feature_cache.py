"""The frozen-feature cache (trainers/feature_cache.py): the same run with and without it (printed steps,
val accuracies, per-class counts, trained weights), the image tower called once per image and split,
no image read once a split is held, the bound's fallback, and random augmentation never cached.

The world: the tiny CLIP of ``tiny_clip_config()`` and a synthetic DTD of 8 classes (4 training shots, 2
val and 3 test images per class: 32 / 16 / 24 images).
"""

from __future__ import annotations

import re
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

import dassl.data.data_manager as data_manager
import train
from clip.model import VisionTransformer
from dassl.config import get_cfg_default
from dassl.data import DatasetWrapper
from dassl.data.transforms import build_transform, random_steps
from datasets.synthetic import make_dataset
from trainers import feature_cache
from trainers.config import extend_cfg
from trainers.feature_cache import FeatureCache, SplitStore, uncachable

REPO = Path(__file__).resolve().parents[1]
N_TRAIN, N_VAL, N_TEST = 32, 16, 24
STEP = re.compile(r"(epoch \[\d+/\d+\] batch \[\d+/\d+\]) time .* (loss \S+ \(\S+\)(?: acc \S+ \(\S+\))? lr \S+) eta")
VAL = re.compile(r"\*val\* set.*?accuracy: ([\d.]+)%", re.S)
PER_CLASS = re.compile(r"\* class: \d+ \(\w+\)\ttotal: \d+\tcorrect: \d+")
ANNOUNCE = "Frozen-feature cache:"


@pytest.fixture(scope="module")
def world(tiny_clip, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("featcache")
    shutil.copyfile(tiny_clip, root / "tiny.pt")  # the suite's tiny CLIP (tests/conftest.py)
    make_dataset("dtd", str(root / "data"), n_classes=8, n_train=4, n_val=2, n_test=3, size=32, seed=0)
    return root


@dataclass
class Run:
    log: str
    trainer: object
    encoded: int  # images through the image tower
    read: int  # images read from disk

    def steps(self) -> list[str]:
        return [" ".join(m) for m in STEP.findall(self.log)]

    def results(self) -> tuple[list[str], list[str], list[str]]:
        """(printed training steps, val accuracies, per-class test lines)."""
        return self.steps(), VAL.findall(self.log), PER_CLASS.findall(self.log)


@pytest.fixture
def run(world: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Run]:
    """train.py in this process, counting the images the image tower encodes and the images read."""
    counts = {"encoded": 0, "read": 0}
    forward, read_image = VisionTransformer.forward, data_manager.read_image

    def counted_forward(self: VisionTransformer, image: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        counts["encoded"] += image.shape[0]
        return forward(self, image, *args, **kwargs)

    def counted_read(path: str) -> object:
        counts["read"] += 1
        return read_image(path)

    monkeypatch.setattr(VisionTransformer, "forward", counted_forward)
    monkeypatch.setattr(data_manager, "read_image", counted_read)

    def go(name: str, trainer: str, config: str, *opts: str) -> Run:
        counts.update(encoded=0, read=0)
        out = world / name
        argv = ["--root", str(world / "data"), "--seed", "1", "--trainer", trainer, "--output-dir", str(out),
                "--dataset-config-file", str(REPO / "configs/datasets/dtd.yaml"),
                "--config-file", str(REPO / f"configs/trainers/{trainer}/{config}.yaml"),
                "INPUT.SIZE", "(32, 32)", "MODEL.BACKBONE.PATH", str(world / "tiny.pt"), "DATASET.NUM_SHOTS", "4",
                "DATALOADER.NUM_WORKERS", "0", "DATALOADER.TEST.BATCH_SIZE", "5", "TRAIN.PRINT_FREQ", "1",
                "TEST.PER_CLASS_RESULT", "True", *opts]  # fmt: skip
        t = train.main(train.build_parser().parse_args(argv))
        sys.stdout.flush()  # the logger tees stdout into log.txt
        return Run((out / "log.txt").read_text(), t, counts["encoded"], counts["read"])

    return go


# BLEND 0.8 and a high lr: the tiny world's val accuracy moves from epoch to epoch (the release's 0.2 stays at 0).
MHA = ("MaskedMHAAdapter", "vit_b16", "TRAINER.MASKED_MHA_ADAPTER.PREC", "fp32", "OPTIM.MAX_EPOCH", "3",
       "OPTIM.LR", "0.05", "TRAINER.MASKED_MHA_ADAPTER.BLEND", "0.8",
       "TRAINER.MASKED_MHA_ADAPTER.PATIENCE", "0")  # fmt: skip


def learner_state(r: Run) -> dict[str, torch.Tensor]:
    return r.trainer.model.learner.state_dict()


def assert_same_weights(a: Run, b: Run) -> None:
    sa, sb = learner_state(a), learner_state(b)
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("batch", ["4", "3"])  # 3: 10 shuffled batches per epoch and 2 images dropped
def test_masked_mha_adapter_exact_same_run_with_and_without_the_cache(run: Callable[..., Run], batch: str) -> None:
    opts = [*MHA, "EXACT", "True", "DATALOADER.TRAIN_X.BATCH_SIZE", batch]
    cached = run(f"mha{batch}_cached", *opts)
    plain = run(f"mha{batch}_plain", *opts, "FEATURE_CACHE.ENABLED", "False")
    steps, val, per_class = cached.results()
    assert len(steps) == 3 * (N_TRAIN // int(batch)) and len(val) == 3 and len(per_class) == 4 * 8  # val and test
    assert (steps, val, per_class) == plain.results()
    assert_same_weights(cached, plain)  # the best-val model, loaded for the test
    assert ANNOUNCE not in plain.log
    assert plain.encoded == 3 * (N_TRAIN // int(batch)) * int(batch) + 3 * N_VAL + N_TEST
    if batch == "4":  # every training batch is full and holds new images only in the first epoch
        assert cached.encoded == cached.read == N_TRAIN + N_VAL + N_TEST
    else:  # a batch with an image not yet held is encoded whole, as without the cache
        assert N_TRAIN + N_VAL + N_TEST < cached.encoded < plain.encoded
    for split in ("train", "val", "test"):
        assert f"{ANNOUNCE} the {split} images are encoded once" in cached.log


def test_masked_mha_adapter_default_encodes_each_image_once(run: Callable[..., Run]) -> None:
    """By default only the images not yet held are encoded: each image once, shuffled batches or not."""
    opts = [*MHA, "DATALOADER.TRAIN_X.BATCH_SIZE", "3"]
    cached = run("mha_default_cached", *opts)
    plain = run("mha_default_plain", *opts, "FEATURE_CACHE.ENABLED", "False")
    stores = cached.trainer.feature_cache.stores
    seen = int(stores["train"].filled.sum())  # images of the training set drawn in some epoch
    assert N_TRAIN - 2 <= seen <= N_TRAIN
    assert cached.encoded == seen + N_VAL + N_TEST
    assert PER_CLASS.findall(cached.log) == PER_CLASS.findall(plain.log)
    losses = [float(m) for m in re.findall(r"loss (\S+) \(", cached.log)]
    assert losses == pytest.approx([float(m) for m in re.findall(r"loss (\S+) \(", plain.log)], abs=2e-4)


def test_coop_val_and_test_are_cached_its_augmented_training_images_are_not(run: Callable[..., Run]) -> None:
    opts = ["TRAINER.COOP.PREC", "fp32", "OPTIM.MAX_EPOCH", "2", "DATALOADER.TRAIN_X.BATCH_SIZE", "4",
            "TEST.FINAL_MODEL", "best_val", "EXACT", "True"]  # fmt: skip
    cached = run("coop_cached", "CoOp", "vit_b16_ctxv1", *opts)
    plain = run("coop_plain", "CoOp", "vit_b16_ctxv1", *opts, "FEATURE_CACHE.ENABLED", "False")
    steps, val, per_class = cached.results()
    assert len(steps) == 2 * N_TRAIN // 4 and len(val) == 2 and len(per_class) == 3 * 8
    assert (steps, val, per_class) == plain.results()
    assert_same_weights(cached, plain)
    assert plain.encoded == 2 * N_TRAIN + 2 * N_VAL + N_TEST
    assert cached.encoded == 2 * N_TRAIN + N_VAL + N_TEST  # the augmented training images every epoch
    assert (
        f"{ANNOUNCE} the train images are encoded in every pass (random transform steps: RandomResizedCrop, "
        "RandomHorizontalFlip)" in cached.log
    )
    assert cached.trainer.feature_cache.stores["train"] is None


def test_over_the_bound_a_split_is_computed_in_every_pass(run: Callable[..., Run], monkeypatch) -> None:
    """With the bound's unit shrunk to 1 kB (tiny features: 64 fp32 values, 256 bytes per image), MAX_MB 10
    holds the 32 training images (8.2 kB); the val and test images then do not fit."""
    monkeypatch.setattr(feature_cache, "MB", 1000)
    opts = [*MHA, "EXACT", "True", "DATALOADER.TRAIN_X.BATCH_SIZE", "4", "FEATURE_CACHE.MAX_MB", "10"]
    bounded = run("mha_bounded", *opts)
    plain = run("mha_unbounded", *opts, "FEATURE_CACHE.ENABLED", "False")
    assert bounded.results() == plain.results()
    assert bounded.encoded == N_TRAIN + 3 * N_VAL + N_TEST
    overflow = [line for line in bounded.log.splitlines() if "exceed FEATURE_CACHE.MAX_MB" in line]
    assert overflow == [
        f"{ANNOUNCE} the val features (16 x 64 float32, 4.1 MB) exceed FEATURE_CACHE.MAX_MB 10 (1.8 MB left): "
        "computing them in every pass",
        f"{ANNOUNCE} the test features (24 x 64 float32, 6.1 MB) exceed FEATURE_CACHE.MAX_MB 10 (1.8 MB left): "
        "computing them in every pass",
    ]


def test_with_loader_workers_the_same_run_and_no_image_read_once_held(run: Callable[..., Run]) -> None:
    """Workers decode the images of the first epoch; later passes start none and draw the same numbers."""
    opts = [*MHA, "EXACT", "True", "DATALOADER.TRAIN_X.BATCH_SIZE", "4", "DATALOADER.NUM_WORKERS", "1"]
    cached = run("mha_workers_cached", *opts)
    plain = run("mha_workers_plain", *opts, "FEATURE_CACHE.ENABLED", "False")
    assert cached.results() == plain.results()
    assert_same_weights(cached, plain)
    assert cached.encoded == N_TRAIN + N_VAL + N_TEST


def small_cfg(transforms: list[str]):
    cfg = get_cfg_default()
    extend_cfg(cfg)
    cfg.INPUT.SIZE = (32, 32)
    cfg.INPUT.TRANSFORMS = transforms
    return cfg


@pytest.mark.parametrize(
    "choice, step",
    [("random_flip", "RandomHorizontalFlip"), ("random_resized_crop", "RandomResizedCrop"),
     ("random_crop", "RandomCrop"), ("random_translation", "Random2DTranslation"), ("colorjitter", "ColorJitter"),
     ("randomgrayscale", "RandomGrayscale"), ("gaussian_blur", "RandomApply"), ("cutout", "Cutout"),
     ("gaussian_noise", "GaussianNoise")],
)  # fmt: skip
def test_every_random_training_step_is_named(choice: str, step: str) -> None:
    cfg = small_cfg([choice, "normalize"])
    assert random_steps(build_transform(cfg, is_train=True)) == [step]
    assert random_steps(build_transform(cfg, is_train=False)) == []  # the test pipeline: resize, crop, tensor


def test_deterministic_pipelines_and_what_is_never_cached() -> None:
    cfg = small_cfg(["normalize", "instance_norm"])
    assert random_steps(build_transform(cfg, is_train=True)) == []  # resize, tensor, normalize, instance norm

    def loader(tfm: object, is_train: bool = True) -> DataLoader:
        return DataLoader(DatasetWrapper(cfg, [], transform=tfm, is_train=is_train))

    assert uncachable(loader(build_transform(cfg, is_train=True))) == ""
    assert uncachable(loader(lambda img: img)) == "random transform steps: function"  # unknown: not trusted
    assert uncachable(loader(None)) == "random transform steps: no transform (INPUT.NO_TRANSFORM)"
    assert uncachable([{"img": torch.zeros(1)}]) == "not a Dassl data loader"
    cfg.DATALOADER.K_TRANSFORMS = 2
    assert uncachable(loader(build_transform(cfg, is_train=True))) == "DATALOADER.K_TRANSFORMS 2"
    cfg.DATALOADER.K_TRANSFORMS = 1
    cfg.DATALOADER.RETURN_IMG0 = True
    assert uncachable(loader(build_transform(cfg, is_train=True))) == "DATALOADER.RETURN_IMG0 True"


def test_outside_a_pass_the_frozen_method_computes() -> None:
    """A model used directly (a notebook, tools.predict) computes as before."""
    model = torch.nn.Linear(3, 2)
    calls = []
    model.image_features = lambda x: calls.append(len(x)) or model(x)  # type: ignore[method-assign]
    cache = FeatureCache(1, exact=False)
    cache.install(model, "image_features")
    x = torch.randn(4, 3)
    assert torch.equal(model.image_features(x), model(x)) and calls == [4]
    with pytest.raises(TypeError, match="FROZEN_IMAGE_FEATURES names 'encode', but Linear has no such method"):
        cache.install(model, "encode")


class Frozen(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.tower = torch.nn.Linear(3, 2).half()

    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        return self.tower(images.half())


def test_features_are_kept_per_item_in_the_dtype_they_are_computed_in() -> None:
    """fp16 features stay fp16; an item's features are found by its index wherever it sits in a batch."""
    model = Frozen()
    cache = FeatureCache(1, exact=False)
    cache.install(model, "image_features")
    store = cache.stores["val"] = SplitStore("val", None, 5)  # type: ignore[arg-type]  (no loader needed here)
    images = torch.randn(2, 3)
    cache.active = (store, torch.tensor([3, 0]))
    first = model.image_features(images)
    assert store.values is not None and store.values.dtype == torch.float16 and store.values.shape == (5, 2)
    assert store.filled.tolist() == [True, False, False, True, False]
    cache.active = (store, torch.tensor([0, 3]))  # the same items in another order (other pixels: not read)
    assert torch.equal(model.image_features(torch.zeros(2, 3)), first.flip(0))
    assert cache.computed == 2
