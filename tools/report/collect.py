"""Collecting an output tree: every seed folder of the protocol layout with a result, and which protocol
and phase each belongs to (rules in the package docstring)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from tools.protocols.layout import DG_TARGETS, SOURCE, find_seed_dirs, parse_run_dir
from tools.protocols.results import RunResult, read_result


@dataclass
class Run(RunResult):
    """One evaluated seed folder: its result, where it sits in the layout, and its place in the tables."""

    tree: str = ""  # base2new | few_shot | dg
    stage: str = ""  # train_base | test_new | ... (the held-out domain in dg, "" in few_shot)
    dataset: str = ""
    shots: int = 0
    trainer: str = ""
    cfg: str = ""
    seed: int = 0
    protocol: str = ""  # base2new | cross_datasets | few_shot | dg
    phase: str = ""  # base | novel (base2new), source | target (cross_datasets), accuracy (few_shot),
    # the held-out domain (dg)
    method: str = ""  # display name (trainer, or "trainer (cfg)")


def collect_runs(root: str) -> tuple[list[Run], list[str]]:
    """Every run with a result under ``root``, and notes on the folders left out."""
    runs, notes = [], []
    for path in find_seed_dirs(root):
        where = parse_run_dir(path)
        if where is None:
            notes.append(f"skipped: {path} (not in the protocol layout)")
            continue
        result = read_result(path, notes)
        if result is not None:
            runs.append(Run(**vars(result), **vars(where)))
    return runs, notes


def classify(runs: list[Run]) -> None:
    """Set each run's protocol and phase (rules in the module docstring)."""
    groups: dict[tuple[str, str], list[Run]] = defaultdict(list)
    for r in runs:
        if r.tree == "few_shot":
            r.protocol, r.phase = "few_shot", "accuracy"
        elif r.tree == "dg":
            r.protocol, r.phase = "dg", r.stage
        else:
            groups[(r.trainer, r.cfg)].append(r)
    for group in groups.values():
        trained = {r.dataset for r in group if r.stage == "train_base"}
        tested = {r.dataset for r in group if r.stage != "train_base"}
        group_cd = (bool(tested - trained) and SOURCE in trained and trained <= {SOURCE}) or bool(
            tested & set(DG_TARGETS)
        )
        for r in group:
            task = (r.task or "").upper()
            cd = task == "CD" or (task != "B2N" and group_cd)
            if cd:
                r.protocol, r.phase = "cross_datasets", "source" if r.stage == "train_base" else "target"
            else:
                r.protocol = "base2new"
                sub = (r.subsample or "").lower()
                if sub not in ("base", "new"):
                    sub = "base" if r.stage in ("train_base", "test_base") else "new"
                r.phase = "base" if sub == "base" else "novel"


def name_methods(runs: list[Run]) -> None:
    """Method names: the trainer, or ``trainer (cfg)`` for a minority config sharing a cell."""
    counts: dict[tuple[str, str, str], int] = defaultdict(int)
    cells: dict[tuple, set[str]] = defaultdict(set)
    for r in runs:
        counts[(r.protocol, r.trainer, r.cfg)] += 1
        cells[(r.protocol, r.trainer, r.dataset, r.shots, r.phase)].add(r.cfg)
    for r in runs:
        cfgs = cells[(r.protocol, r.trainer, r.dataset, r.shots, r.phase)]
        main = max(sorted(cfgs), key=lambda c: counts[(r.protocol, r.trainer, c)])
        r.method = r.trainer if r.cfg == main else f"{r.trainer} ({r.cfg})"
