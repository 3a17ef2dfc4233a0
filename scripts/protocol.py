"""Each method's published protocol settings, and the result tables, for scripts/protocols.sh.

A method declares its settings in ``configs/trainers/<TRAINER>/protocols.yaml``::

    base2new: {config: vit_b16_ctxv1, imagenet: vit_b16_ep50_ctxv1}
    cross_datasets: {config: vit_b16_ep50_ctxv1}
    few_shot:
      config: {1: vit_b16_ep50, 2: vit_b16_ep100, 16: vit_b16}   # by number of shots, or one name
      imagenet: vit_b16_ep50
      opts: [TRAINER.COOP.N_CTX, 16]                             # extra KEY VALUE pairs
    eval_only: true                                              # nothing to train (zero-shot)
    backbones:                                                   # other backbones' files for the same settings
      rn50: {vit_b16: rn50, vit_b16_ep50: rn50_ep50}             # chosen with BACKBONE=rn50 in the environment

    python scripts/protocol.py settings TRAINER PROTOCOL DATASET [SHOTS]
        -> one line: CONFIG FOLDER EVAL_ONLY(0|1) [KEY VALUE ...]   (FOLDER: see run_folder)
    python scripts/protocol.py table PROTOCOL --methods A B --datasets x y --output OUT [--shots 1 2]
        -> the methods side by side, from the parse.txt files the protocol runs wrote

Only PyYAML is imported (no torch), so the scripts ask it once per run at no cost.
"""

from __future__ import annotations

import argparse
import os
import os.path as osp
import re
import sys
from typing import Any

from protocols_file import PROTOCOLS, FileError, read_protocols  # checked reading (scripts/protocols_file.py)

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


class ProtocolError(Exception):
    """A method without protocols.yaml, or without the asked protocol; printed as one error line."""


def load_protocols(trainer: str) -> dict[str, Any]:
    path = osp.join(REPO, "configs", "trainers", trainer, "protocols.yaml")
    if not osp.isfile(path):
        raise ProtocolError(
            f"no {osp.relpath(path, REPO)}: '{trainer}' is not a method with published protocols "
            f"(methods: {', '.join(methods_with_protocols())})"
        )
    try:
        return read_protocols(path)
    except FileError as e:
        raise ProtocolError(str(e)) from None


def methods_with_protocols() -> list[str]:
    root = osp.join(REPO, "configs", "trainers")
    return sorted(d for d in os.listdir(root) if osp.isfile(osp.join(root, d, "protocols.yaml")))


def settings(
    trainer: str, protocol: str, dataset: str, shots: int | None = None, backbone: str | None = None
) -> tuple[str, bool, list[str]]:
    """(config file stem, eval-only, extra KEY VALUE options) of ``trainer`` in ``protocol`` on ``dataset``.

    ``backbone`` (default: the BACKBONE environment variable, unset for the published default): the
    method's file of that backbone for the same settings, from its ``backbones`` table.
    """
    backbone = os.environ.get("BACKBONE", "") if backbone is None else backbone
    data = load_protocols(trainer)
    if protocol not in data:
        declared = [p for p in PROTOCOLS if p in data]
        raise ProtocolError(
            f"{trainer} has no '{protocol}' setting in configs/trainers/{trainer}/protocols.yaml "
            f"(it declares: {', '.join(declared) or 'none'})"
        )
    entry = data[protocol]
    config = _config(entry, dataset)
    if isinstance(config, dict):
        if shots is None or shots not in config:
            raise ProtocolError(
                f"{trainer} {protocol}: no config for {shots} shots (configs by shots: {sorted(config)})"
            )
        config = config[shots]
    if backbone:
        config = _backbone_config(trainer, data, backbone, str(config))
    if not osp.isfile(osp.join(REPO, "configs", "trainers", trainer, f"{config}.yaml")):
        raise ProtocolError(f"{trainer} {protocol}: configs/trainers/{trainer}/{config}.yaml does not exist")
    opts = [str(v) for v in entry.get("opts", [])]
    if any(not v or re.search(r"\s", v) for v in opts):
        raise ProtocolError(f"{trainer} {protocol}: opts values must be non-empty and without spaces: {opts}")
    return str(config), bool(data.get("eval_only", False)), opts


def _backbone_config(trainer: str, data: dict, backbone: str, config: str) -> str:
    """The ``backbone`` file standing for ``config`` in the method's ``backbones`` table."""
    table = (data.get("backbones") or {}).get(backbone)
    if table is None:
        raise ProtocolError(
            f"{trainer} has no {backbone} files in configs/trainers/{trainer}/protocols.yaml (backbones: "
            f"{', '.join(data.get('backbones') or {}) or 'none, the published default only'}); unset BACKBONE"
        )
    if config not in table:
        raise ProtocolError(f"{trainer} has no {backbone} file for the setting of {config}.yaml (its {backbone} files: "
                            f"{', '.join(sorted(set(table.values())))})")  # fmt: skip
    return str(table[config])


def _config(entry: dict, dataset: str) -> Any:
    return entry.get("imagenet") if dataset == "imagenet" and entry.get("imagenet") else entry["config"]


def run_folder(trainer: str, protocol: str, dataset: str, config: str) -> str:
    """The config-level folder of a run: the config's name, as the official trees, except for a cross-dataset
    run whose config is also the method's base-to-novel config for that dataset, which would share its
    folder (base2new/train_base/imagenet/..., base2new/test_new/<dataset>/...) with the base-to-novel run."""
    if protocol != "cross_datasets" or "base2new" not in load_protocols(trainer):
        return config
    try:
        shared = settings(trainer, "base2new", dataset)[0] == config  # at the same BACKBONE
    except ProtocolError:  # no base-to-novel file at this backbone: no folder to share
        shared = False
    return f"{config}_cross_datasets" if shared else config


# ---- Tables: read parse.txt (parse_test_res.py's output) of each run folder.


def mean_accuracy(folder: str) -> float | None:
    """The mean accuracy in ``folder/parse.txt``, or None when the protocol has not written it."""
    try:
        with open(osp.join(folder, "parse.txt")) as f:
            values = re.findall(r"^\* accuracy: ([0-9.]+)%", f.read(), flags=re.M)
    except OSError:
        return None
    return float(values[-1]) if values else None


def harmonic_mean(a: float, b: float) -> float:
    return 2 * a * b / (a + b) if a + b > 0 else 0.0


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def base2new_table(methods: list[str], datasets: list[str], output: str) -> list[str]:
    """Base / novel / HM per dataset and method; the average row is the HM of the averages (as papers)."""
    header = f"{'dataset':<16}" + "".join(f" {m + ' base':>14} {'novel':>7} {'HM':>7}" for m in methods)
    rows = [header]
    sums: dict[str, list[float]] = {m: [] for m in methods}
    for dataset in datasets:
        cells = []
        for m in methods:
            cfg = settings(m, "base2new", dataset)[0]
            tail = f"{dataset}/shots_16/{m}/{cfg}"
            base = mean_accuracy(osp.join(output, "base2new", "train_base", tail))
            novel = mean_accuracy(osp.join(output, "base2new", "test_new", tail))
            hm = harmonic_mean(base, novel) if base is not None and novel is not None else None
            if hm is not None:
                sums[m].append((base, novel))
            cells.append(f" {_fmt(base):>14} {_fmt(novel):>7} {_fmt(hm):>7}")
        rows.append(f"{dataset:<16}" + "".join(cells))
    average = []
    for m in methods:
        if sums[m]:
            b = sum(x for x, _ in sums[m]) / len(sums[m])
            n = sum(y for _, y in sums[m]) / len(sums[m])
            average.append(f" {b:>14.2f} {n:>7.2f} {harmonic_mean(b, n):>7.2f}")
        else:
            average.append(f" {'-':>14} {'-':>7} {'-':>7}")
    rows.append(f"{'average':<16}" + "".join(average))
    return rows


def cross_datasets_table(methods: list[str], datasets: list[str], output: str) -> list[str]:
    """ImageNet source, every target, and the averages over other datasets (CD) and ImageNet variants (DG)."""
    rows = [f"{'dataset':<20}" + "".join(f" {m:>12}" for m in methods)]
    cd: dict[str, list[float]] = {m: [] for m in methods}
    dg: dict[str, list[float]] = {m: [] for m in methods}
    for dataset in ["imagenet", *datasets]:
        cells = []
        for m in methods:
            cfg = run_folder(m, "cross_datasets", dataset, settings(m, "cross_datasets", dataset)[0])
            phase = "train_base" if dataset == "imagenet" else "test_new"
            acc = mean_accuracy(osp.join(output, "base2new", phase, dataset, "shots_16", m, cfg))
            if acc is not None and dataset != "imagenet":
                (dg if dataset.startswith("imagenet") else cd)[m].append(acc)
            cells.append(f" {_fmt(acc):>12}")
        rows.append(f"{dataset + ('(source)' if dataset == 'imagenet' else ''):<20}" + "".join(cells))
    for label, values in (("cross-dataset avg", cd), ("domain-gen. avg", dg)):
        if any(values.values()):
            cells = [f" {_fmt(sum(v) / len(v) if v else None):>12}" for v in (values[m] for m in methods)]
            rows.append(f"{label:<20}" + "".join(cells))
    return rows


def few_shot_table(methods: list[str], datasets: list[str], output: str, shots: list[int]) -> list[str]:
    """Accuracy per dataset, method and number of shots, and the averages over datasets."""
    rows = [f"{'dataset':<16} {'method':<16}" + "".join(f" {str(k) + '-shot':>8}" for k in shots)]
    totals: dict[tuple[str, int], list[float]] = {}
    for dataset in datasets:
        for m in methods:
            cells = []
            for k in shots:
                cfg = settings(m, "few_shot", dataset, k)[0]
                acc = mean_accuracy(osp.join(output, "few_shot", dataset, f"shots_{k}", m, cfg))
                if acc is not None:
                    totals.setdefault((m, k), []).append(acc)
                cells.append(f" {_fmt(acc):>8}")
            rows.append(f"{dataset:<16} {m:<16}" + "".join(cells))
    for m in methods:
        cells = [f" {_fmt(sum(v) / len(v) if (v := totals.get((m, k))) else None):>8}" for k in shots]
        rows.append(f"{'average':<16} {m:<16}" + "".join(cells))
    return rows


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("settings")
    s.add_argument("trainer")
    s.add_argument("protocol", choices=PROTOCOLS)
    s.add_argument("dataset")
    s.add_argument("shots", nargs="?", type=int)
    t = sub.add_parser("table")
    t.add_argument("protocol", choices=PROTOCOLS)
    t.add_argument("--methods", nargs="+", required=True)
    t.add_argument("--datasets", nargs="+", required=True)
    t.add_argument("--output", required=True)
    t.add_argument("--shots", nargs="+", type=int, default=[1, 2, 4, 8, 16])
    t.add_argument("--seeds", default="")
    args = p.parse_args(argv)
    if args.command == "settings":
        config, eval_only, opts = settings(args.trainer, args.protocol, args.dataset, args.shots)
        folder = run_folder(args.trainer, args.protocol, args.dataset, config)
        print(" ".join([config, folder, "1" if eval_only else "0", *opts]))
        return
    title = {"base2new": "Base-to-novel", "cross_datasets": "Cross-dataset", "few_shot": "Few-shot"}[args.protocol]
    seeds = f", mean over seeds {args.seeds}" if args.seeds else ""
    print(f"{title}: accuracy (%){seeds}")
    if args.protocol == "base2new":
        rows = base2new_table(args.methods, args.datasets, args.output)
    elif args.protocol == "cross_datasets":
        rows = cross_datasets_table(args.methods, args.datasets, args.output)
    else:
        rows = few_shot_table(args.methods, args.datasets, args.output, args.shots)
    print("\n".join(rows))


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except ProtocolError as e:
        sys.exit(f"error: {e}")
