"""Classify images with a trained run: the top-k classes and their probabilities, printed and written as CSV.

    python -m tools.predict --model-dir RUN_DIR IMAGES... [--topk 5] [--out predictions.csv]
        [--classnames FILE] [--load-epoch N] [--batch-size 64] [--workers 4] [--device cuda|cpu]

IMAGES are files, folders (every image below them) or globs (quoted, ``**`` recursive). The CSV has the
columns ``path, class_1, prob_1, ..., class_k, prob_k``, best first. The classes are the run's, or
``--classnames FILE`` (one per line) for methods that score classes they were not trained on. The
Python API is ``tools.run_model.load_run``.
"""
from __future__ import annotations

import argparse
import csv
import glob
import os
import os.path as osp
import sys
from collections.abc import Sequence

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from dassl.engine.run_record import read_classnames
from dassl.utils import ImageReadError, UserError, atomic_write, read_image
from tools.run_model import RunError, RunModel, load_run

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")


def _images_below(folder: str) -> list[str]:
    found = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        found += [osp.join(root, f) for f in sorted(files) if f.lower().endswith(IMAGE_EXTENSIONS)]
    return found


def collect_images(inputs: Sequence[str]) -> list[str]:
    """Files as given, folders walked, globs expanded; each path once, in the order found."""
    paths: list[str] = []
    for item in inputs:
        if osp.isfile(item):
            paths.append(item)
        elif osp.isdir(item):
            paths += _images_below(item)
        else:
            matches = sorted(glob.glob(item, recursive=True))
            if not matches:
                raise RunError(f"{item}: no such file, folder or matching glob")
            for match in matches:
                if osp.isdir(match):
                    paths += _images_below(match)
                elif match.lower().endswith(IMAGE_EXTENSIONS):
                    paths.append(match)
    unique = list(dict.fromkeys(paths))
    if not unique:
        raise RunError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {' '.join(inputs)}")
    return unique


class ImageFiles(Dataset):
    """(image through the run's test transform, index, read error or "") per path: a bad file is reported, not fatal."""

    def __init__(self, paths: list[str], model: RunModel) -> None:
        self.paths, self.preprocess = paths, model.preprocess
        self.size = tuple(model.cfg.INPUT.SIZE)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, str]:
        try:
            return self.preprocess(read_image(self.paths[index])), index, ""
        except ImageReadError as e:
            return torch.zeros(3, *self.size), index, str(e)
        except (OSError, ValueError) as e:  # a file PIL opens but the transform cannot take
            return torch.zeros(3, *self.size), index, f"{self.paths[index]}: {str(e).splitlines()[0]}"


def predict_files(
    model: RunModel, paths: list[str], topk: int, batch_size: int = 64, workers: int = 4, show: bool = True
) -> tuple[list[list[str]], list[str]]:
    """CSV rows (path, class, prob, ...) of the images that could be read; one message per image that could not."""
    loader = DataLoader(ImageFiles(paths, model), batch_size=batch_size, num_workers=workers,
                        pin_memory=model.device.type == "cuda")  # fmt: skip
    rows, failed = [], []
    with tqdm(total=len(paths), unit="img", file=sys.stderr, disable=not show) as bar:
        for images, indices, errors in loader:
            ok = [j for j, e in enumerate(errors) if not e]
            failed += [e for e in errors if e]
            if ok:
                for j, top in zip(ok, model.predict(images[ok], topk)):
                    row = [paths[int(indices[j])]]
                    for name, prob in top:
                        row += [name, f"{prob:.6f}"]
                    rows.append(row)
                    if show:
                        bar.write(row[0] + "  " + ", ".join(f"{n} {100 * p:.2f}%" for n, p in top))
            bar.update(len(errors))
    return rows, failed


def write_csv(path: str, rows: list[list[str]], topk: int) -> None:
    header = ["path"] + [f"{c}_{i}" for i in range(1, topk + 1) for c in ("class", "prob")]
    with atomic_write(path) as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("images", nargs="+", help="image files, folders or (quoted) globs")
    p.add_argument("--model-dir", required=True, help="the output folder of a train.py run")
    p.add_argument("--topk", type=int, default=5, help="classes per image (default 5)")
    p.add_argument("--out", default="predictions.csv", help="CSV file to write (default predictions.csv)")
    p.add_argument("--classnames", help="a file of class names, one per line, to score instead of the run's")
    p.add_argument("--load-epoch", type=int, help="checkpoint epoch (default: best on val if saved, else the last)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=4, help="image-reading processes (0: in the main process)")
    p.add_argument("--device", choices=("cuda", "cpu"), help="default: cuda when available")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.topk < 1 or args.batch_size < 1 or args.workers < 0:
        raise RunError("--topk and --batch-size must be at least 1, --workers at least 0")
    classnames = None
    if args.classnames:
        if not osp.isfile(args.classnames):
            raise RunError(f"--classnames {args.classnames}: no such file")
        classnames = read_classnames(args.classnames)
        if not classnames:
            raise RunError(f"--classnames {args.classnames}: no class names in it (one per line)")
    out_dir = osp.dirname(osp.abspath(args.out))
    if osp.isdir(out_dir) and not os.access(out_dir, os.W_OK):
        raise RunError(f"--out {args.out}: cannot write to {out_dir}; choose another file")
    paths = collect_images(args.images)
    model = load_run(args.model_dir, classnames, args.load_epoch, args.device)
    topk = min(args.topk, len(model.classnames))
    print(f"{model.cfg.TRAINER.NAME} on {len(model.classnames)} classes ({model.device}): {len(paths)} images",
          file=sys.stderr)  # fmt: skip
    rows, failed = predict_files(model, paths, topk, args.batch_size, args.workers)
    write_csv(args.out, rows, topk)
    for message in failed:
        print(f"error: {message}", file=sys.stderr)
    print(f"Wrote {args.out} ({len(rows)} images{f', {len(failed)} unreadable' if failed else ''})", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except UserError as e:
        sys.exit(f"error: {e}")
