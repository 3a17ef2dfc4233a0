"""A method's ablations: one hyperparameter over a grid of values, each value a base-to-novel run of its own.

Declared in the method's ``configs/trainers/<TRAINER>/protocols.yaml``, beside its published settings::

    ablations:
      lambda:                               # the name: ablation.sh MMRL lambda, the folder ablation/lambda/
        key: TRAINER.MMRL.REG_WEIGHT        # the config option the grid sets
        values: [0.0, 0.01, 0.1, 0.5, 3.0]  # each value's folder is the value as written
        datasets: [dtd, eurosat]            # optional: default the 11 of base-to-novel
        seeds: [1, 2, 3]                    # optional: default 1 2 3
      rep_layers:
        key: TRAINER.MMRL.REP_LAYERS
        values: {6: [6, 7, 8, 9, 10, 11, 12], 12: [12]}   # or folder name: value

Every value runs the method's base-to-novel plan (its published configs and per-dataset values) with
``KEY VALUE`` as the last option, so the value wins over the per-dataset ones, into its own tree::

    <output>/ablation/<name>/<value>/base2new/{train_base,test_new}/<dataset>/shots_16/<TRAINER>/<CFG>/seed<S>

The report reads each value's tree as a base-to-novel tree (``tools/report/ablations.py``). The paper's
numbers beside it are those of ``tools/paper_numbers.csv`` whose setting is ``<name>=<value>``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .layout import SEEDS, ablation_dir
from .plan import PHASES, Cell, plan
from .settings import ProtocolError, load_protocols

PROTOCOL = "base2new"  # the protocol every ablation runs (the paper's ablations are on base-to-novel)


@dataclass(frozen=True)
class Ablation:
    """One declared ablation: its config key and (folder name, command-line value) pairs, datasets and seeds."""

    trainer: str
    name: str
    key: str
    values: tuple[tuple[str, str], ...]
    datasets: tuple[str, ...] | None  # None: the protocol's own
    seeds: tuple[int, ...]

    @property
    def labels(self) -> list[str]:
        return [label for label, _ in self.values]


def _option(value: object) -> str:
    """A value as train.py's command line takes it: ``0.5``, ``cosine``, ``[6,7,8]`` (no spaces)."""
    if isinstance(value, list):
        return "[" + ",".join(str(v) for v in value) + "]"
    return str(value)


def ablations(trainer: str) -> dict[str, Ablation]:
    """The ablations ``trainer`` declares (checked when its protocols.yaml is read), in their order."""
    declared = load_protocols(trainer).get("ablations") or {}
    found = {}
    for name, entry in declared.items():
        values = entry["values"]
        pairs = values.items() if isinstance(values, dict) else ((v, v) for v in values)
        found[name] = Ablation(
            trainer, name, entry["key"], tuple((str(label), _option(v)) for label, v in pairs),
            tuple(entry["datasets"]) if "datasets" in entry else None, tuple(entry.get("seeds", SEEDS)),
        )  # fmt: skip
    return found


def ablation(trainer: str, name: str) -> Ablation:
    """The ablation ``name`` of ``trainer``; a ProtocolError listing the declared ones if there is none."""
    declared = ablations(trainer)
    if name not in declared:
        where = f"configs/trainers/{trainer}/protocols.yaml"
        listed = ", ".join(declared) or "none"
        raise ProtocolError(f"{trainer} declares no ablation '{name}' in {where} (its ablations: {listed})")
    return declared[name]


def ablation_plan(
    methods: Iterable[str],
    name: str,
    output: str,
    root: str,
    datasets: Iterable[str] | None = None,
    seeds: Iterable[int] | None = None,
    opts: Sequence[str] = (),
    phases: Iterable[str] = PHASES,
    backbone: str | None = None,
    values: Iterable[str] | None = None,
) -> list[Cell]:
    """The cells of the ablation ``name`` of each method: value by value, the base-to-novel plan of that value.

    ``datasets`` and ``seeds`` default to the ablation's own, ``values`` (folder names) to all of them;
    ``opts`` (KEY VALUE) come before the ablation's option.
    """
    datasets, seeds, phases = (None if x is None else list(x) for x in (datasets, seeds, phases))
    cells: list[Cell] = []
    for method in methods:
        a = ablation(method, name)
        chosen = a.values
        if values is not None:
            wanted = [str(v) for v in values]
            unknown = [v for v in wanted if v not in a.labels]
            if unknown:
                listed = " ".join(a.labels)
                raise ProtocolError(f"{method} ablation '{name}' has no value {unknown[0]} (values: {listed})")
            chosen = tuple(p for p in a.values if p[0] in wanted)
        sets = a.datasets if datasets is None else datasets
        run_seeds = a.seeds if seeds is None else seeds
        for label, value in chosen:
            out = ablation_dir(output, name, label)
            option = [*opts, a.key, value]
            for cell in plan(PROTOCOL, [method], out, root, sets, run_seeds, None, option, phases, backbone):
                cells.append(Cell(f"{name}={label}/{cell.name}", cell.output_dir, cell.args, cell.after))
    return cells
