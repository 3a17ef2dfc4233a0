"""Linear-probe CLIP (CoOp's ``lpclip``) as a trainer, so the few-shot protocols run it like any method.

What lpclip does, and this trainer does the same way: image features of the frozen CLIP (test-time
transform, no normalisation), a multinomial logistic regression (scikit-learn, lbfgs, L2, 1000
iterations), and its inverse regularisation C chosen on the validation set by a sweep over
1e6 ... 1e-6 followed by a search of ``NUM_STEP`` halvings (in log10) around the best sweep value.
``search_c`` reproduces lpclip's search step for step, ties included, so that on the same feature
arrays it picks the same C and the same classifier.

What differs, by choice: lpclip draws its few-shot train and val sets itself (``np.random.seed`` per
run, from the full splits). Here they are the Dassl few-shot sets of ``DATASET.NUM_SHOTS`` and
``--seed`` (the images every other method of the protocol trains on) with lpclip's val sizes,
min(shots, 4) per class, which is what the CoOp datasets' few-shot val already holds.

The fitted classifier is the learner (``weight``, ``bias`` in float64, as scikit-learn computes), saved
as ``linear_probe/model.pth.tar-<MAX_EPOCH>``, so ``--eval-only --model-dir`` works as for any method.
scikit-learn is an optional extra (``pip install -e ".[linear_probe]"``), imported only when fitting.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from yacs.config import CfgNode

from clip.model import CLIP, RESNET, VIT
from dassl.data.data_manager import build_data_loader
from dassl.data.transforms import build_transform
from dassl.engine import TRAINER_REGISTRY

from ..base import CLIPTrainer, ConfigError

LEARNER_NAME = "linear_probe"
C_SWEEP = (1e6, 1e4, 1e2, 1.0, 1e-2, 1e-4, 1e-6)  # lpclip's initial sweep, in its order
MAX_VAL_SHOTS = 4  # lpclip's validation images per class: min(shots, 4)


def search_c(val_accuracy: Callable[[float], float], sweep: Sequence[float], num_step: int) -> float:
    """lpclip's choice of C: the best of ``sweep``, then ``num_step`` steps between a left and a right C.

    The first maximum of the sweep wins; the bounds start at a tenth and ten times it. Each step keeps
    the better bound (the left one on a tie), moves the other to the midpoint in log10, and passes both
    through log10 and back, as lpclip does (which can move a bound by one ulp, so it is kept).
    With no step, the sweep's best (lpclip needs at least one).
    """
    accuracies = [val_accuracy(c) for c in sweep]
    print("Val accuracy of the C sweep: " + ", ".join(f"C {c:g}: {100 * a:.2f}" for c, a in zip(sweep, accuracies)))
    peak = sweep[int(np.argmax(accuracies))]
    left, right = 1e-1 * peak, 1e1 * peak
    chosen = peak
    for _ in range(num_step):
        acc_left, acc_right = val_accuracy(left), val_accuracy(right)
        middle = 0.5 * (np.log10(right) + np.log10(left))
        if acc_left < acc_right:
            chosen, log_left, log_right = right, middle, np.log10(right)
        else:
            chosen, log_left, log_right = left, np.log10(left), middle
        print(f"C {left:.6g}: val {100 * acc_left:.2f}, C {right:.6g}: val {100 * acc_right:.2f} -> C {chosen:.6g}")
        left, right = np.power(10, log_left), np.power(10, log_right)
    return float(chosen)


def logistic_regression(max_iter: int) -> Callable[[float, np.ndarray, np.ndarray], Any]:
    """``fit(C, features, labels)`` with lpclip's classifier; one ``error:`` line without scikit-learn."""
    try:
        from sklearn.linear_model import LogisticRegression
    except ImportError as e:
        raise ConfigError(
            'LinearProbeCLIP needs scikit-learn: pip install -e ".[linear_probe]" (or pip install scikit-learn)'
        ) from e

    def fit(c: float, features: np.ndarray, labels: np.ndarray) -> Any:
        return LogisticRegression(solver="lbfgs", max_iter=max_iter, C=c).fit(features, labels)

    return fit


class LinearHead(nn.Module):
    """``features @ weight.T + bias`` in float64: scikit-learn's decision function, so the same argmax."""

    def __init__(self, in_features: int, n_cls: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(n_cls, in_features, dtype=torch.float64))
        self.bias = nn.Parameter(torch.zeros(n_cls, dtype=torch.float64))

    def forward(self, features: Tensor) -> Tensor:
        return features.double() @ self.weight.t() + self.bias

    @torch.no_grad()
    def set_from(self, classifier: Any) -> None:
        """Copy a fitted scikit-learn classifier (classes 0..n-1; one row of coefficients when n = 2)."""
        coef = torch.from_numpy(np.asarray(classifier.coef_, dtype=np.float64))
        intercept = torch.from_numpy(np.asarray(classifier.intercept_, dtype=np.float64))
        if coef.shape[0] == 1:  # binary: class 1 iff the decision is > 0, i.e. argmax of (0, decision)
            coef = torch.cat([torch.zeros_like(coef), coef])
            intercept = torch.cat([torch.zeros_like(intercept), intercept])
        self.weight.copy_(coef)
        self.bias.copy_(intercept)


class LinearProbeModel(nn.Module):
    """The frozen CLIP image encoder and a linear classifier on its features (the learner)."""

    def __init__(self, clip_model: CLIP, n_cls: int) -> None:
        super().__init__()
        self.clip = clip_model
        self.learner = LinearHead(clip_model.visual.output_dim, n_cls)

    def features(self, image: Tensor) -> Tensor:
        return self.clip.encode_image(image.type(self.clip.dtype))

    def forward(self, image: Tensor) -> Tensor:
        return self.learner(self.features(image))


def build_linear_probe(
    cfg: CfgNode, classnames: list[str], clip_model: CLIP, *, template: str | None = None
) -> LinearProbeModel:
    """The model before fitting: a zero classifier over ``classnames`` (image features only: no prompts)."""
    return LinearProbeModel(clip_model, len(classnames))


@TRAINER_REGISTRY.register()
class LinearProbeCLIP(CLIPTrainer):
    """Training is one fit: extract features of the few-shot train and val sets, search C, keep the classifier."""

    NODE = "LINEAR_PROBE"
    DEFAULTS = {
        "C_SWEEP": list(C_SWEEP),
        "NUM_STEP": 8,  # lpclip's linear_probe.sh --num_step
        "MAX_ITER": 1000,
        "PREC": "fp16",  # lpclip's CLIP on GPU is fp16 (clip.load); fp32 elsewhere
    }
    LEARNER_NAME = LEARNER_NAME
    BACKBONES = (VIT, RESNET)
    model_factory = staticmethod(build_linear_probe)
    model: LinearProbeModel

    @classmethod
    def scores_new_classes(cls, cfg: CfgNode) -> bool:
        """The classifier has one row per trained class: other classes cannot be scored."""
        return False

    def check_cfg(self, cfg: CfgNode) -> None:
        super().check_cfg(cfg)
        settings = cfg.TRAINER.LINEAR_PROBE
        if settings.NUM_STEP < 0:
            raise ConfigError(f"TRAINER.LINEAR_PROBE.NUM_STEP must be 0 or more, got {settings.NUM_STEP}")
        if not settings.C_SWEEP or min(settings.C_SWEEP) <= 0:
            raise ConfigError(f"TRAINER.LINEAR_PROBE.C_SWEEP must be positive values, got {list(settings.C_SWEEP)}")
        logistic_regression(settings.MAX_ITER)  # scikit-learn missing: say so before the data and CLIP load

    def val_items(self) -> list:
        """lpclip's validation size: min(shots, 4) per class; ImageNet's val (= its test set) is subsampled."""
        dataset = self.dm.dataset
        val = list(dataset.val or [])
        if not val:
            raise ConfigError(f"{self.cfg.DATASET.NAME} has no validation set to choose C on")
        shots = self.cfg.DATASET.NUM_SHOTS
        if shots < 1:
            return val
        per_class = min(shots, MAX_VAL_SHOTS)
        counts = np.bincount([item.label for item in val])
        return val if counts.max() <= per_class else dataset.generate_fewshot_dataset(val, num_shots=per_class)

    @torch.no_grad()
    def extract(self, items: list) -> tuple[np.ndarray, np.ndarray]:
        """Image features (float64, as lpclip saves them) and labels, with the test-time transform."""
        cfg = self.cfg
        loader = build_data_loader(
            cfg, data_source=items, batch_size=cfg.DATALOADER.TEST.BATCH_SIZE,
            tfm=build_transform(cfg, is_train=False), is_train=False,
        )  # fmt: skip
        self.set_model_mode("eval")
        features, labels = [], []
        for batch in loader:
            image, label = self.parse_batch_train(batch)
            features.append(self.model.features(image).double().cpu())
            labels.append(label.cpu())
        return torch.cat(features).numpy(), torch.cat(labels).numpy()

    def fit(self) -> None:
        """lpclip's search on this run's few-shot sets; the classifier of the chosen C becomes the learner."""
        settings = self.settings
        train_x, train_y = self.extract(list(self.dm.dataset.train_x))
        val_x, val_y = self.extract(self.val_items())
        missing = sorted(set(range(self.num_classes)) - set(train_y.tolist()))
        if missing:
            raise ConfigError(f"the training set has no image of classes {missing}: a linear probe needs every class")
        print(f"Linear probe: {len(train_y)} training and {len(val_y)} validation features")
        fit, fitted = logistic_regression(settings.MAX_ITER), {}

        def val_accuracy(c: float) -> float:
            if c not in fitted:
                fitted[c] = fit(c, train_x, train_y)
            return float(np.mean(fitted[c].predict(val_x) == val_y))

        self.chosen_c = search_c(val_accuracy, list(settings.C_SWEEP), settings.NUM_STEP)
        print(f"Chosen C: {self.chosen_c!r}")
        self.model.learner.set_from(fitted[self.chosen_c])

    def train(self) -> None:  # type: ignore[override]
        """One fit in place of the epochs; the checkpoint and the final test as after a training run."""
        self.before_train()
        if self.start_epoch < self.max_epoch:
            self.fit()
            self.epoch = self.max_epoch - 1
            self.save_model(self.epoch, self.output_dir)
        self.after_train()
