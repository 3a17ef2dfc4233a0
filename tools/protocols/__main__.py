"""``python -m tools.protocols``: run a protocol in the foreground (what the shell scripts call), show where its
cells stand, list its datasets, or launch one cell (what a grid job runs).

    python -m tools.protocols run base2new --methods CoOp MMRL --root DATA [--output output] [--datasets dtd]
        [--seeds 1 2 3] [--shots K ...] [--phase train|test|all] [--dry-run] [-- KEY VALUE ...]
    python -m tools.protocols status base2new --methods MMRL [--output output] [--datasets dtd]
    python -m tools.protocols datasets cross_datasets
    python -m tools.protocols run base2new --ablation lambda --methods MMRL --root DATA [--values 0.5 3.0] ...
    python -m tools.protocols ablations MMRL [lambda] [--output output]   # the declared grids and their folders
    python -m tools.protocols launch OUTPUT_DIR [--log FILE] -- TRAIN_PY_ARGS ...
"""

from __future__ import annotations

import argparse
import os.path as osp
import sys
from collections import Counter

from dassl.errors import UserError

from .ablation import PROTOCOL as ABLATION_PROTOCOL
from .ablation import ablation, ablation_plan, ablations
from .layout import PROTOCOLS, SEEDS, ablation_dir, default_datasets
from .plan import PHASES, plan
from .runner import launch, run_cells
from .settings import ProtocolError
from .status import FINISHED, INCOMPLETE, NOT_STARTED, RUNNING, cell_status


def _plan_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("protocol", choices=PROTOCOLS)
    p.add_argument("--methods", nargs="+", required=True, help="trainers with a configs/trainers/<T>/protocols.yaml")
    p.add_argument("--output", default="output", help="the output root (default: output)")
    p.add_argument("--datasets", nargs="+", default=None, help="default: the protocol's own")
    p.add_argument("--seeds", nargs="+", type=int, default=None, help="default: 1 2 3, or the ablation's")
    p.add_argument("--shots", nargs="+", type=int, default=None,
                   help="shots per class of few_shot and dg (default: 1 2 4 8 16; dg: 1 5)")
    p.add_argument("--phase", choices=[*PHASES, "all"], default="all", help="the training cells, the tests, or both")
    p.add_argument("--backbone", default=None, help="another backbone's files, e.g. rn50 (default: $BACKBONE)")
    p.add_argument("--ablation", default=None, help="a declared ablation of the methods (base2new only)")
    p.add_argument("--values", nargs="+", default=None, help="the ablation's values to run (default: all)")


def list_ablations(trainer: str, name: str | None, output: str) -> int:
    """Print the declared ablations of ``trainer`` (or the one named): key, each value and its folder."""
    for a in [ablation(trainer, name)] if name else ablations(trainer).values():
        seeds = " ".join(map(str, a.seeds))
        print(f"{a.trainer} {a.name}: {a.key} on {' '.join(a.datasets or default_datasets(ABLATION_PROTOCOL))}, "
              f"seeds {seeds}")  # fmt: skip
        for label, value in a.values:
            print(f"  {label:<8} {a.key} {value:<12} {ablation_dir(output, a.name, label)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    opts: list[str] = []
    if "--" in argv:
        argv, opts = argv[: argv.index("--")], argv[argv.index("--") + 1 :]
    p = argparse.ArgumentParser(prog="python -m tools.protocols", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the cells not finished yet, in order, summarising each config folder")
    _plan_args(run)
    run.add_argument("--root", required=True, help="the datasets folder (train.py --root)")
    run.add_argument("--python", default=sys.executable, help="interpreter for train.py")
    run.add_argument("--dry-run", action="store_true", help="print the command lines instead of running them")
    _plan_args(sub.add_parser("status", help="each cell: running, finished, incomplete or not started"))
    sub.add_parser("datasets", help="the protocol's datasets").add_argument("protocol", choices=PROTOCOLS)
    listing = sub.add_parser("ablations", help="a method's declared ablations: values and folders")
    listing.add_argument("method")
    listing.add_argument("name", nargs="?", default=None)
    listing.add_argument("--output", default="output")
    one = sub.add_parser("launch", help="run train.py for one cell (arguments after --)")
    one.add_argument("output_dir")
    one.add_argument("--log", default=None, help="append train.py's output to this file")
    one.add_argument("--python", default=sys.executable)
    args = p.parse_args(argv)

    if args.command == "datasets":
        print(" ".join(default_datasets(args.protocol)))
        return 0
    if args.command == "launch":
        return launch(args.output_dir, opts, args.python, args.log)
    if args.command == "ablations":
        return list_ablations(args.method, args.name, args.output)
    phases = PHASES if args.phase == "all" else (args.phase,)
    root = getattr(args, "root", "")
    if args.command == "run" and not args.dry_run and not osp.isdir(root):
        raise ProtocolError(f"--root {root}: no such folder (the datasets folder, see README.md#data)")
    if args.ablation is not None:
        if args.protocol != ABLATION_PROTOCOL:
            raise ProtocolError(f"--ablation runs on {ABLATION_PROTOCOL}, not {args.protocol}")
        cells = ablation_plan(args.methods, args.ablation, args.output, root, args.datasets, args.seeds, opts,
                              phases, args.backbone, args.values)  # fmt: skip
    else:
        if args.values is not None:
            raise ProtocolError("--values needs --ablation NAME")
        cells = plan(args.protocol, args.methods, args.output, root, args.datasets, args.seeds or SEEDS, args.shots,
                     opts, phases, args.backbone)  # fmt: skip
    if args.command == "run":
        return run_cells(cells, args.python, args.dry_run)
    states = [cell_status(c.output_dir) for c in cells]
    for cell, state in zip(cells, states):
        print(f"{state:<12} {cell.name}  {cell.output_dir}")
    counts = Counter(states)
    print(", ".join(f"{counts[s]} {s}" for s in (RUNNING, FINISHED, INCOMPLETE, NOT_STARTED)) + f" (of {len(cells)})")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except UserError as e:  # ProtocolError, or a file it read (protocols.yaml, metrics.json, log.txt)
        sys.exit(f"error: {e}")
