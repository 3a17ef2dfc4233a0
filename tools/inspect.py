"""Look inside a trained run: its settings, the words nearest to its learned text tokens, and a picture of
its per-class test accuracy beside zero-shot CLIP's.

    python -m tools.inspect RUN_DIR [--topk 5] [--out DIR] [--root DATA] [--load-epoch N] [--device cpu]
        [--vocab-size N] [--no-accuracy]

Writes ``per_class_accuracy.csv`` and, with matplotlib (the ``plots`` extra), ``per_class_accuracy.png``
into ``--out`` (default ``RUN_DIR/inspect``). The accuracy needs the run's test images (``--root`` if the
data moved since training); the zero-shot model is ZeroshotCLIP on the same backbone, classes and prompt
template. How the nearest words are found, and for which tokens: ``tools/text_tokens.py``.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import io
import os.path as osp
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm
from yacs.config import CfgNode

from clip.model import CLIP
from dassl.data.data_manager import build_data_loader
from dassl.data.datasets import build_dataset
from dassl.data.transforms import build_transform
from dassl.evaluation.metrics_file import METRICS_FILE, read_metrics
from dassl.utils import UserError, atomic_write
from tools.run_model import RunError, RunModel, build_run_trainer, load_run
from tools.text_tokens import TokenSet, learned_text_tokens, nearest_words

PLOT_HINT = 'per-class picture skipped: matplotlib is not installed (pip install -e ".[plots]")'
MAX_CLASSES_SHOWN = 50  # more classes: the largest gains and losses, half each


@dataclass
class ClassAccuracy:
    name: str
    total: int
    trained: float  # %
    zero_shot: float  # %


def settings_text(run_dir: str, model: RunModel) -> str:
    """The run's settings in a few lines: what was trained on what, how, and what its evaluation gave."""
    cfg, trainer = model.cfg, model.trainer
    names = model.classnames
    shown = ", ".join(names[:8]) + (f", ... ({len(names)} in all)" if len(names) > 8 else "")
    weights = f" (weights {cfg.MODEL.BACKBONE.PATH})" if cfg.MODEL.BACKBONE.PATH else ""
    lines = [
        f"Run: {run_dir}",
        f"  method {cfg.TRAINER.NAME}, dataset {cfg.DATASET.NAME}, task {cfg.TASK}, classes "
        f"{cfg.DATASET.SUBSAMPLE_CLASSES}, shots {cfg.DATASET.NUM_SHOTS}, seed {cfg.SEED}",
        f"  classes: {shown}",
        f"  backbone {cfg.MODEL.BACKBONE.NAME}{weights}, input {tuple(cfg.INPUT.SIZE)}, optimizer {cfg.OPTIM.NAME} lr "
        f"{cfg.OPTIM.LR} ({cfg.OPTIM.LR_SCHEDULER}), epochs {cfg.OPTIM.MAX_EPOCH}, batch "
        f"{cfg.DATALOADER.TRAIN_X.BATCH_SIZE}",
    ]
    if trainer.NODE and trainer.NODE in cfg.TRAINER:
        node = cfg.TRAINER[trainer.NODE]
        lines.append(f"  TRAINER.{trainer.NODE}: " + ", ".join(f"{k} {node[k]}" for k in sorted(node)))
    learned = list(trainer.model.learner.parameters())
    lines.append(f"  learned: {sum(p.numel() for p in learned):,} values in {len(learned)} tensors "
                 f"({trainer.LEARNER_NAME})")  # fmt: skip
    metrics = osp.join(run_dir, METRICS_FILE)
    if osp.isfile(metrics):
        data = read_metrics(metrics)
        model_info = data.get("model") or {}
        lines.append(f"  metrics.json: accuracy {data['accuracy']:.2f}% on {data.get('phase', {}).get('split')} "
                     f"({model_info.get('selection')} model, epoch {model_info.get('epoch')})")  # fmt: skip
    return "\n".join(lines)


def words_text(sets: Sequence[TokenSet], words: list[list[list[tuple[str, float]]]]) -> str:
    """The nearest words of each token, one line per token, grouped by set."""
    lines = ["Nearest words to the learned text tokens (Euclidean distance where the tokens enter the text encoder):"]
    for s, per_token in zip(sets, words):
        where = "with the word embeddings" if s.depth == 0 else f"after text block {s.depth}"
        lines.append(f"  {s.name} ({len(s.labels)} tokens, {where})")
        for label, nearest in zip(s.labels, per_token):
            lines.append(f"    {label}: " + ", ".join(f"{w} ({d:.3g})" for w, d in nearest))
    return "\n".join(lines)


def zero_shot_model(model: RunModel) -> RunModel:
    """Zero-shot CLIP on the run's backbone, classes, precision and device."""
    if model.cfg.TRAINER.NAME == "ZeroshotCLIP":
        return model
    cfg: CfgNode = model.cfg.clone()
    cfg.defrost()
    cfg.TRAINER.NAME = "ZeroshotCLIP"
    cfg.freeze()
    return RunModel(build_run_trainer(cfg, model.classnames), model.classnames)


def test_loader(cfg: CfgNode, classnames: list[str]) -> DataLoader:
    """The run's test images, as its evaluation loaded them (same split, classes and transform)."""
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            dataset = build_dataset(cfg)
        except (OSError, ValueError, UserError) as e:
            raise RunError(f"cannot read the run's test set ({cfg.DATASET.NAME} under {cfg.DATASET.ROOT}): "
                           f"{str(e).splitlines()[0]}; pass --root DATA if the data moved") from e  # fmt: skip
        if list(dataset.classnames) != list(classnames):
            raise RunError(f"the {cfg.DATASET.NAME} test set under {cfg.DATASET.ROOT} has other classes than the "
                           "run's classnames.txt: pass the --root the run was trained with")  # fmt: skip
        return build_data_loader(cfg, data_source=dataset.test, batch_size=cfg.DATALOADER.TEST.BATCH_SIZE,
                                 tfm=build_transform(cfg, is_train=False), is_train=False)  # fmt: skip


@torch.no_grad()
def per_class_accuracy(model: RunModel, zero_shot: RunModel, loader: DataLoader) -> list[ClassAccuracy]:
    """Per-class accuracy (%) of the trained and the zero-shot model on the same test images."""
    n = len(model.classnames)
    total = torch.zeros(n, dtype=torch.long)
    hits = {"trained": torch.zeros(n, dtype=torch.long), "zero_shot": torch.zeros(n, dtype=torch.long)}
    for batch in tqdm(loader, desc="test set", unit="batch", file=sys.stderr):
        labels = batch["label"]
        total += torch.bincount(labels, minlength=n)
        for key, m in (("trained", model), ("zero_shot", zero_shot)):
            right = labels[m.logits(batch["img"]).argmax(dim=-1) == labels]
            hits[key] += torch.bincount(right, minlength=n)
    return [
        ClassAccuracy(name, int(t), 100.0 * int(h) / max(int(t), 1), 100.0 * int(z) / max(int(t), 1))
        for name, t, h, z in zip(model.classnames, total, hits["trained"], hits["zero_shot"])
        if t > 0
    ]


def write_accuracy_csv(path: str, rows: list[ClassAccuracy]) -> None:
    with atomic_write(path) as f:
        writer = csv.writer(f)
        writer.writerow(["class", "test_images", "trained_acc", "zero_shot_acc", "difference"])
        writer.writerows([r.name, r.total, f"{r.trained:.2f}", f"{r.zero_shot:.2f}", f"{r.trained - r.zero_shot:.2f}"]
                         for r in rows)  # fmt: skip


def shown_classes(rows: list[ClassAccuracy], limit: int = MAX_CLASSES_SHOWN) -> list[ClassAccuracy]:
    """All classes by gain over zero-shot; beyond ``limit``, the largest losses and the largest gains."""
    ordered = sorted(rows, key=lambda r: (r.trained - r.zero_shot, r.name))
    if len(ordered) <= limit:
        return ordered
    return ordered[: limit // 2] + ordered[-(limit - limit // 2) :]


def plot_accuracy(path: str, rows: list[ClassAccuracy], title: str) -> bool:
    """A dumbbell chart, a row per class: zero-shot (grey) to trained (green gain, red loss); False sans matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    shown = shown_classes(rows)
    fig, ax = plt.subplots(figsize=(7.5, 1.7 + 0.25 * len(shown)))
    for y, r in enumerate(shown):
        color = "tab:green" if r.trained > r.zero_shot else "tab:red" if r.trained < r.zero_shot else "tab:gray"
        ax.plot([r.zero_shot, r.trained], [y, y], color=color, linewidth=2, zorder=1)
    ys = range(len(shown))
    ax.scatter([r.zero_shot for r in shown], ys, color="lightgray", edgecolor="gray", label="zero-shot CLIP", zorder=2)
    ax.scatter([r.trained for r in shown], ys, color="black", s=18, label="trained", zorder=3)
    beside = ax.get_yaxis_transform()  # x in axes units, y in rows: the difference right of the axes
    ax.text(1.01, len(shown) - 0.4, "Δ", transform=beside, va="bottom", fontsize=8)
    for y, r in enumerate(shown):
        ax.text(1.01, y, f"{r.trained - r.zero_shot:+.1f}", transform=beside, va="center", fontsize=7)
    ax.set_yticks(list(ys))
    ax.set_yticklabels([r.name.replace("_", " ") for r in shown], fontsize=8)
    ax.set_xlim(-2, 102)
    ax.set_ylim(-0.7, len(shown) - 0.3)
    ax.set_xlabel("test accuracy per class (%)")
    if len(shown) < len(rows):
        ax.axhline(len(shown) // 2 - 0.5, color="gray", linestyle=":", linewidth=1)
        title += f"\n{len(shown)} of {len(rows)} classes: the largest losses (below the line) and gains"
    ax.set_title(title, fontsize=9)
    ax.grid(axis="x", alpha=0.3)
    height = fig.get_size_inches()[1]
    fig.legend(*ax.get_legend_handles_labels(), loc="lower center", ncol=2, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.3 / height, 1, 1))
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=120)
    plt.close(fig)
    return True


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", help="the output folder of a train.py run")
    p.add_argument("--topk", type=int, default=5, help="nearest words per token (default 5)")
    p.add_argument("--out", help="folder for the picture and CSV (default RUN_DIR/inspect)")
    p.add_argument("--root", help="DATASET.ROOT, if the data moved since training")
    p.add_argument("--load-epoch", type=int, help="checkpoint epoch (default: best on val if saved, else the last)")
    p.add_argument("--device", choices=("cuda", "cpu"), help="default: cuda when available")
    p.add_argument("--vocab-size", type=int, help="compare with the first N vocabulary entries only (BPE merge "
                   "order, roughly by frequency; default all): faster for deep tokens on a CPU")  # fmt: skip
    p.add_argument("--no-accuracy", action="store_true", help="skip the per-class accuracy (no test images needed)")
    return p


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.topk < 1:
        raise RunError(f"--topk must be at least 1, got {args.topk}")
    if args.vocab_size is not None and args.vocab_size < args.topk:
        raise RunError(f"--vocab-size must be at least --topk ({args.topk}), got {args.vocab_size}")
    model = load_run(args.run_dir, epoch=args.load_epoch, device=args.device)
    print(settings_text(args.run_dir, model))

    cfg, trainer = model.cfg, model.trainer
    rep_layers = trainer.settings.get("REP_LAYERS", []) if trainer.NODE else []
    sets = learned_text_tokens(trainer.model.learner, model.classnames, rep_layers)
    if sets:
        clip_model = next(m for m in trainer.model.modules() if isinstance(m, CLIP))
        n_words = clip_model.token_embedding.weight.shape[0]
        vocabulary = None if args.vocab_size is None else torch.arange(min(args.vocab_size, n_words))
        print(words_text(sets, nearest_words(clip_model, sets, args.topk, vocabulary)))
    else:
        print(f"{cfg.TRAINER.NAME} learns no text tokens: no nearest words to show")

    if args.no_accuracy:
        return
    data_cfg = cfg.clone()
    if args.root:
        data_cfg.defrost()
        data_cfg.DATASET.ROOT = args.root
        data_cfg.freeze()
    loader = test_loader(data_cfg, model.classnames)
    rows = per_class_accuracy(model, zero_shot_model(model), loader)
    out = args.out or osp.join(args.run_dir, "inspect")
    n = sum(r.total for r in rows)
    trained = sum(r.trained * r.total for r in rows) / n
    zero_shot = sum(r.zero_shot * r.total for r in rows) / n
    print(f"Test accuracy over {n} images: trained {trained:.2f}%, zero-shot CLIP {zero_shot:.2f}%")
    write_accuracy_csv(osp.join(out, "per_class_accuracy.csv"), rows)
    title = (f"{cfg.TRAINER.NAME} on {cfg.DATASET.NAME} ({cfg.DATASET.SUBSAMPLE_CLASSES} classes, seed {cfg.SEED}): "
             f"{trained:.1f}% vs zero-shot {zero_shot:.1f}%")  # fmt: skip
    written = [osp.join(out, "per_class_accuracy.csv")]
    if plot_accuracy(osp.join(out, "per_class_accuracy.png"), rows, title):
        written.append(osp.join(out, "per_class_accuracy.png"))
    else:
        print(PLOT_HINT)
    print("Wrote " + ", ".join(written))


if __name__ == "__main__":
    try:
        main()
    except UserError as e:
        sys.exit(f"error: {e}")
