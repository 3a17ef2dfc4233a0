"""``python -m tools.protocols``: run a protocol in the foreground (what the shell scripts call), show where its
cells stand, list its datasets, or launch one cell (what a grid job runs).

    python -m tools.protocols run base2new --methods CoOp MMRL --root DATA [--output output] [--datasets dtd]
        [--seeds 1 2 3] [--shots K ...] [--phase train|test|all] [--dry-run] [-- KEY VALUE ...]
    python -m tools.protocols status base2new --methods MMRL [--output output] [--datasets dtd]
    python -m tools.protocols datasets cross_datasets
    python -m tools.protocols launch OUTPUT_DIR [--log FILE] -- TRAIN_PY_ARGS ...
"""

from __future__ import annotations

import argparse
import os.path as osp
import sys
from collections import Counter

from dassl.errors import UserError

from .layout import PROTOCOLS, SEEDS, default_datasets
from .plan import PHASES, plan
from .runner import launch, run_cells
from .settings import ProtocolError
from .status import FINISHED, INCOMPLETE, NOT_STARTED, RUNNING, cell_status


def _plan_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("protocol", choices=PROTOCOLS)
    p.add_argument("--methods", nargs="+", required=True, help="trainers with a configs/trainers/<T>/protocols.yaml")
    p.add_argument("--output", default="output", help="the output root (default: output)")
    p.add_argument("--datasets", nargs="+", default=None, help="default: the protocol's own")
    p.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
    p.add_argument("--shots", nargs="+", type=int, default=None,
                   help="shots per class of few_shot and dg (default: 1 2 4 8 16; dg: 1 5)")
    p.add_argument("--phase", choices=[*PHASES, "all"], default="all", help="the training cells, the tests, or both")
    p.add_argument("--backbone", default=None, help="another backbone's files, e.g. rn50 (default: $BACKBONE)")


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
    phases = PHASES if args.phase == "all" else (args.phase,)
    root = getattr(args, "root", "")
    if args.command == "run" and not args.dry_run and not osp.isdir(root):
        raise ProtocolError(f"--root {root}: no such folder (the datasets folder, see README.md#data)")
    cells = plan(args.protocol, args.methods, args.output, root, args.datasets, args.seeds, args.shots, opts, phases,
                 args.backbone)  # fmt: skip
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
