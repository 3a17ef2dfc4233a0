"""What a scenario is: a world, an official repository, and the train.py runs both sides make in it.

Every run is the same command line on both sides (``--root``, ``--seed``, ``--trainer``, the dataset and
trainer config files by their relative paths, ``--output-dir``, ``KEY VALUE`` options), except what only
one side understands: ours gets ``MODEL.BACKBONE.PATH <world CLIP>`` (the official code is handed the same
file through its ``clip._download``) and, on the exact side, ``EXACT True``.

A driver scenario instead runs a recipe of ``drivers.py`` in-process on each side (the unit tests' seeded
pins: a trainer built on fixed class names, a few hand-fed steps, its outputs).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .worlds import World

# Options of every train.py run: the world's image size, no loader workers, every step printed, per-class
# results.
COMMON = ("DATALOADER.NUM_WORKERS", "0", "TRAIN.PRINT_FREQ", "1", "TEST.PER_CLASS_RESULT", "True")


@dataclass(frozen=True)
class Run:
    """One train.py invocation.

    ``model_dir`` names an earlier run whose output folder is ``--model-dir``; with ``official_model`` both
    sides read the official side's folder (official checkpoints evaluated in ours).
    """

    name: str
    dataset: str = "dtd"
    opts: tuple[str, ...] = ()
    model_dir: str = ""
    load_epoch: int | None = None
    eval_only: bool = False
    official_model: bool = False


@dataclass(frozen=True)
class Pin:
    """A pinned value of a test that a scenario regenerates: ``target`` in ``test``, written by the
    formatter ``form`` of pins.py from the official side's run ``run`` (driver scenarios: its values)."""

    test: str
    target: str
    form: str
    run: str = ""


@dataclass(frozen=True)
class Scenario:
    """A named comparison of one method against its official code."""

    method: str
    name: str
    repo: str
    world: World
    config: str = ""  # configs/trainers/<config>.yaml, the same relative path on both sides
    runs: tuple[Run, ...] = ()
    opts: tuple[str, ...] = ()  # KEY VALUE options of every run, after COMMON
    # Options of our sides only: settings of ours that make it run what the official code always runs
    # (ProVP's TRAINER.COOP.SELECT_ON_TEST: its forked Dassl's model selection), keys the official config lacks.
    ours_opts: tuple[str, ...] = ()
    seed: int = 1
    trainer: str = ""  # the official trainer name, when it is not ``method``
    driver: str = ""  # a recipe of drivers.py instead of train.py runs
    driver_args: dict = field(default_factory=dict, hash=False, compare=False)
    pins: tuple[Pin, ...] = ()
    note: str = ""
    official_config: str = ""  # the official config file, when it is not ``config`` (zero-shot CLIP's)
    # The folder of the official dataset config files under configs/datasets/ (MetaPrompt's "b2n/", "dg/").
    official_datasets: str = ""
    # Shims of launch.py's SCENARIO_SHIMS the official side gets besides the common ones (by name).
    shims: tuple[str, ...] = ()

    @property
    def official_trainer(self) -> str:
        return self.trainer or self.method

    @property
    def label(self) -> str:
        return f"{self.method}/{self.name}"

    def command(self) -> str:
        """The tools.parity command that runs (and, with --write-pins, prints the pins of) this scenario."""
        return f"python -m tools.parity {self.method} --scenario {self.name}"

    def train_args(self, run: Run, root: str, out: str, model_dir: str | None, official: bool) -> list[str]:
        """train.py arguments of ``run`` for one side (``root``: its data, ``out``: its output folder)."""
        config = self.official_config if official and self.official_config else self.config
        args = ["--root", root, "--seed", str(self.seed), "--trainer", self.official_trainer]
        datasets = f"configs/datasets/{self.official_datasets if official else ''}"
        args += ["--dataset-config-file", f"{datasets}{run.dataset}.yaml"]
        args += ["--config-file", f"configs/trainers/{config}.yaml", "--output-dir", out]
        if model_dir:
            args += ["--model-dir", model_dir]
            if run.load_epoch is not None:
                args += ["--load-epoch", str(run.load_epoch)]
        if run.eval_only:
            args.append("--eval-only")
        size = self.world.config().image_resolution
        return [*args, "INPUT.SIZE", f"({size}, {size})", *COMMON, *self.opts, *run.opts]
