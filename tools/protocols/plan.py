"""The run plan of a protocol: every train.py command line of the official scripts, in their order.

One cell is one seed folder. The order is the official scripts': method by method, dataset by dataset,
the training runs (all seeds) before the tests of their models, so each ``<CFG>`` folder is complete before
the next starts and can be summarised. The shell scripts run the plan in order (``tools.protocols.runner``),
the grid runs its cells as jobs (``tools.grid``).
"""

from __future__ import annotations

import os
import os.path as osp
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .layout import BASE2NEW_SHOTS, PROTOCOLS, SEEDS, SOURCE, config_dir, default_datasets, default_shots, seed_dir
from .settings import REPO, ProtocolError, Setting, setting

PHASES = ("train", "test")


@dataclass(frozen=True)
class Cell:
    """One train.py run: its name, its seed folder, its arguments, and the training cell whose model it tests."""

    name: str
    output_dir: str
    args: tuple[str, ...]  # train.py's arguments
    after: str | None = None  # output_dir of the cell that trains the model this cell evaluates

    @property
    def folder(self) -> str:
        """The ``<CFG>`` folder holding this cell's seed folder (what parse_test_res.py summarises)."""
        return osp.dirname(self.output_dir)


def _seeds(method: str, dataset: str, s: Setting, folder: str, name: str, protocol_opts: Sequence[str],
           env: tuple[Sequence[int], str, Sequence[str]], model: str | None = None) -> list[Cell]:  # fmt: skip
    """One cell per seed in ``folder``; with ``model`` (a training config folder) they evaluate its models."""
    seeds, root, opts = env
    cells = []
    for seed in seeds:
        out = seed_dir(folder, seed)
        after = None if s.eval_only or model is None else seed_dir(model, seed)
        flags = ["--eval-only"] if s.eval_only else ["--model-dir", after, "--eval-only"] if after else []
        args = (
            "--root", root, "--seed", str(seed), "--trainer", method,
            "--dataset-config-file", osp.join(REPO, "configs", "datasets", f"{dataset}.yaml"),
            "--config-file", osp.join(REPO, "configs", "trainers", method, f"{s.config}.yaml"),
            "--output-dir", out, *flags, *protocol_opts, *s.opts, *opts,
        )  # fmt: skip
        cells.append(Cell(name.format(seed=seed), out, args, after))
    return cells


def plan(
    protocol: str,
    methods: Iterable[str],
    output: str,
    root: str,
    datasets: Iterable[str] | None = None,
    seeds: Iterable[int] = SEEDS,
    shots: Iterable[int] | None = None,
    opts: Sequence[str] = (),
    phases: Iterable[str] = PHASES,
    backbone: str | None = None,
) -> list[Cell]:
    """The cells of ``protocol`` for ``methods`` (in the official order), writing under ``output``.

    ``datasets`` defaults to the protocol's own (the cross-dataset targets for ``cross_datasets``), ``shots``
    to its shot counts (few-shot's and ``dg``'s; the others train on 16); ``phases`` picks the training cells,
    the test cells or both (a few-shot or dg cell trains, then tests, and counts as training); ``opts`` (KEY
    VALUE) follow each cell's own options; ``backbone`` picks another backbone's files (default: ``BACKBONE``
    in the environment, see ``settings.setting``).
    """
    if protocol not in PROTOCOLS:
        raise ProtocolError(f"unknown protocol '{protocol}' (protocols: {', '.join(PROTOCOLS)})")
    datasets = list(default_datasets(protocol) if datasets is None else datasets)
    phases = set(phases)
    if phases - set(PHASES):
        raise ProtocolError(f"unknown phase {sorted(phases - set(PHASES))} (phases: {', '.join(PHASES)})")
    if len(opts) % 2:
        raise ProtocolError(f"options must be KEY VALUE pairs, got {list(opts)}")
    missing = [d for d in datasets if not osp.isfile(osp.join(REPO, "configs", "datasets", f"{d}.yaml"))]
    if missing:
        known = sorted(f[: -len(".yaml")] for f in os.listdir(osp.join(REPO, "configs", "datasets")))
        raise ProtocolError(f"no configs/datasets/{missing[0]}.yaml; datasets: {' '.join(known)}")
    env = (list(seeds), root, list(opts))
    shots = list(default_shots(protocol) if shots is None else shots)
    shots_b2n = ["DATASET.NUM_SHOTS", str(BASE2NEW_SHOTS)]
    cells: list[Cell] = []
    for m in methods:
        if protocol == "base2new":
            for d in datasets:
                s = setting(m, protocol, d, backbone=backbone)
                train = config_dir(output, "base2new", "train_base", d, BASE2NEW_SHOTS, m, s.folder)
                test = config_dir(output, "base2new", "test_new", d, BASE2NEW_SHOTS, m, s.folder)
                if "train" in phases:
                    opts_b = [*shots_b2n, "DATASET.SUBSAMPLE_CLASSES", "base", "TASK", "B2N"]
                    cells += _seeds(m, d, s, train, f"{m}/{d}/seed{{seed}}/train_base", opts_b, env)
                if "test" in phases:
                    opts_n = [*shots_b2n, "DATASET.SUBSAMPLE_CLASSES", "new", "TASK", "B2N"]
                    cells += _seeds(m, d, s, test, f"{m}/{d}/seed{{seed}}/test_new", opts_n, env, model=train)
        elif protocol == "cross_datasets":
            src = setting(m, protocol, SOURCE, backbone=backbone)
            model = config_dir(output, "base2new", "train_base", SOURCE, BASE2NEW_SHOTS, m, src.folder)
            cd = [*shots_b2n, "TASK", "CD"]
            if "train" in phases:
                cells += _seeds(m, SOURCE, src, model, f"{m}/{SOURCE}/seed{{seed}}/train", cd, env)
            for d in datasets if "test" in phases else []:
                s = setting(m, protocol, d, backbone=backbone)
                test = config_dir(output, "base2new", "test_new", d, BASE2NEW_SHOTS, m, s.folder)
                cells += _seeds(m, d, s, test, f"{m}/{d}/seed{{seed}}/test", cd, env, model)
        elif protocol == "dg":  # leave one domain out: each domain held out in turn (DATASET.ID, the loaders' order)
            for d in datasets if "train" in phases else []:
                domains = held_out_domains(d)
                for k in shots:
                    s = setting(m, protocol, d, k, backbone=backbone)
                    for i, domain in enumerate(domains):
                        folder = config_dir(output, "dg", domain, d, k, m, s.folder)
                        dg = ["DATASET.NUM_SHOTS", str(k), "DATASET.ID", str(i)]
                        cells += _seeds(m, d, s, folder, f"{m}/{d}/{domain}/{k}-shot/seed{{seed}}", dg, env)
        elif "train" in phases:
            for d in datasets:
                for k in shots:
                    s = setting(m, protocol, d, k, backbone=backbone)
                    folder = config_dir(output, "few_shot", "", d, k, m, s.folder)
                    fs = ["DATASET.NUM_SHOTS", str(k), "TASK", "FS"]
                    cells += _seeds(m, d, s, folder, f"{m}/{d}/{k}-shot/seed{{seed}}", fs, env)
    return cells


def held_out_domains(dataset: str) -> list[str]:
    """The domains of a multi-source dataset in its loader's order (``DATASET.ID`` indexes it), read from the
    dataset class that ``configs/datasets/<dataset>.yaml`` names."""
    import datasets  # noqa: F401  (registers the datasets)
    from dassl.data.datasets import DATASET_REGISTRY
    from dassl.user_files import read_yaml

    name = (read_yaml(osp.join(REPO, "configs", "datasets", f"{dataset}.yaml")) or {}).get("DATASET", {}).get("NAME")
    known = name in DATASET_REGISTRY.registered_names()
    domains = getattr(DATASET_REGISTRY.get(name), "domains", None) if known else None
    if not domains:
        raise ProtocolError(f"configs/datasets/{dataset}.yaml: {name} has no domains to hold out; the dg protocol "
                            f"runs on {', '.join(default_datasets('dg'))}")  # fmt: skip
    return list(domains)
