"""Classification evaluator; its printed block is what parse_test_res.py reads from log.txt.

Given the run's metadata (``evaluate(run_info=...)``, passed by the engine's ``test()``), the
same numbers plus per-class results are also written to ``<OUTPUT_DIR>/metrics.json``, the
machine-readable record ``python -m tools.report`` reads (``dassl/evaluation/metrics_file.py``).
"""
from __future__ import annotations

import os.path as osp
from collections import OrderedDict, defaultdict
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from yacs.config import CfgNode

from dassl.utils import save_atomic

from .build import EVALUATOR_REGISTRY
from .metrics_file import METRICS_FILE, per_class_table, write_metrics

__all__ = ["EvaluatorBase", "Classification", "macro_f1_score", "confusion_matrix"]


def macro_f1_score(y_true: list[int], y_pred: list[int]) -> float:
    """Mean F1 over the classes present in ``y_true`` (a class never predicted scores 0)."""
    t, p = np.asarray(y_true), np.asarray(y_pred)
    scores = []
    for c in np.unique(t):
        tp = np.sum((t == c) & (p == c))
        fp = np.sum((t != c) & (p == c))
        fn = np.sum((t == c) & (p != c))
        scores.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores))


def confusion_matrix(y_true: list[int], y_pred: list[int]) -> torch.Tensor:
    """Row-normalised confusion matrix over the sorted labels seen in either list (rows: truth)."""
    labels = sorted(set(y_true) | set(y_pred))
    index = {c: i for i, c in enumerate(labels)}
    cmat = torch.zeros(len(labels), len(labels), dtype=torch.float64)
    for t, p in zip(y_true, y_pred):
        cmat[index[t], index[p]] += 1
    return cmat / cmat.sum(1, keepdim=True).clamp_min(1)


class EvaluatorBase:
    """Interface the trainer drives: reset, process each batch, evaluate at the end."""

    def __init__(self, cfg: CfgNode) -> None:
        self.cfg = cfg

    def reset(self) -> None:
        raise NotImplementedError

    def process(self, mo: torch.Tensor, gt: torch.Tensor) -> None:
        raise NotImplementedError

    def evaluate(self, run_info: Mapping[str, Any] | None = None) -> OrderedDict:
        raise NotImplementedError


@EVALUATOR_REGISTRY.register()
class Classification(EvaluatorBase):
    """Accuracy, error and macro F1 of argmax predictions; optionally per class and a confusion matrix."""

    def __init__(self, cfg: CfgNode, lab2cname: dict[int, str] | None = None, **kwargs: Any) -> None:
        super().__init__(cfg)
        if cfg.TEST.PER_CLASS_RESULT and lab2cname is None:
            raise ValueError("TEST.PER_CLASS_RESULT needs lab2cname")
        self._lab2cname = lab2cname
        self.reset()

    def reset(self) -> None:
        self._correct = 0
        self._total = 0
        self._y_true: list[int] = []
        self._y_pred: list[int] = []
        self._per_class_res: defaultdict[int, list[int]] | None = (
            defaultdict(list) if self.cfg.TEST.PER_CLASS_RESULT else None
        )

    def process(self, mo: torch.Tensor, gt: torch.Tensor) -> None:
        """``mo``: scores (batch, num_classes); ``gt``: labels (batch,)."""
        pred = mo.max(1)[1]
        matches = pred.eq(gt).int().cpu().tolist()
        labels = gt.cpu().tolist()
        self._correct += sum(matches)
        self._total += len(labels)
        self._y_true.extend(labels)
        self._y_pred.extend(pred.cpu().tolist())
        if self._per_class_res is not None:
            for label, hit in zip(labels, matches):
                self._per_class_res[label].append(hit)

    def evaluate(self, run_info: Mapping[str, Any] | None = None) -> OrderedDict:
        """Print the result block and return accuracy first (``trainer.test()`` returns the first value).

        With ``run_info`` (``metrics_file.run_metadata``) the results are also written to
        ``<OUTPUT_DIR>/metrics.json``; without it (upstream's call) nothing is written, so a bare
        evaluator never drops files into the working directory.
        """
        acc = 100.0 * self._correct / self._total
        err = 100.0 - acc
        macro_f1 = 100.0 * macro_f1_score(self._y_true, self._y_pred)
        results = OrderedDict(accuracy=acc, error_rate=err, macro_f1=macro_f1)
        # metrics.json first: a log that shows the result block implies the file is complete too.
        if run_info is not None:
            per_class = per_class_table(self._y_true, self._y_pred, self._lab2cname)
            write_metrics(
                osp.join(self.cfg.OUTPUT_DIR, METRICS_FILE),
                {
                    "accuracy": acc,
                    "error": err,
                    "macro_f1": macro_f1,
                    "total": self._total,
                    "correct": self._correct,
                    "perclass_accuracy": float(np.mean([c["acc"] for c in per_class])) if per_class else None,
                    "per_class": per_class,
                },
                run_info,
            )

        print(
            "=> result\n"
            f"* total: {self._total:,}\n"
            f"* correct: {self._correct:,}\n"
            f"* accuracy: {acc:.1f}%\n"
            f"* error: {err:.1f}%\n"
            f"* macro_f1: {macro_f1:.1f}%"
        )

        if self._per_class_res is not None:
            print("=> per-class result")
            accs = []
            for label in sorted(self._per_class_res):
                hits = self._per_class_res[label]
                correct, total = sum(hits), len(hits)
                accs.append(100.0 * correct / total)
                print(
                    f"* class: {label} ({self._lab2cname[label]})\t"
                    f"total: {total:,}\tcorrect: {correct:,}\tacc: {accs[-1]:.1f}%"
                )
            mean_acc = float(np.mean(accs))
            print(f"* average: {mean_acc:.1f}%")
            results["perclass_accuracy"] = mean_acc

        if self.cfg.TEST.COMPUTE_CMAT:
            save_path = osp.join(self.cfg.OUTPUT_DIR, "cmat.pt")
            save_atomic(confusion_matrix(self._y_true, self._y_pred), save_path)
            print(f"Confusion matrix is saved to {save_path}")

        return results
