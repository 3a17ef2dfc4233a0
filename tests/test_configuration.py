"""Where a run's settings come from (docs/configuration.md): the per-dataset layer as data, the block a run
prints about it, and a run's config holding only its own method's node."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest
import yaml

import datasets  # noqa: F401  (registers the datasets)
import train
from dassl.config import get_cfg_default
from dassl.data.datasets import DATASET_REGISTRY
from dassl.engine import TRAINER_REGISTRY
from dassl.evaluation.metrics_file import config_sha256
from dassl.utils import UserError
from trainers.base import TASKS, CLIPTrainer
from trainers.config import (
    apply_dataset_layer,
    clip_trainers,
    dataset_layer,
    datasets_file,
    extend_cfg,
    method_nodes,
)

REPO = Path(__file__).resolve().parents[1]
EUROSAT = str(REPO / "configs" / "datasets" / "eurosat.yaml")
MMRL_YAML = "configs/trainers/MMRL/vit_b16.yaml"


def configure(argv: list[str]):
    return train.configure(train.build_parser().parse_args(argv))


def test_the_block_names_each_per_dataset_value_what_it_replaced_and_where_that_was_set() -> None:
    cfg, lines = configure(["--trainer", "MMRL", "--dataset-config-file", EUROSAT, "--config-file", MMRL_YAML])
    assert lines[0] == "Per-dataset settings: configs/trainers/MMRL/datasets.yaml (EuroSAT, TASK B2N)"
    # The trainer YAML says 1.0 and 512: the per-dataset layer replaces both, and says so.
    assert f"  TRAINER.MMRL.REG_WEIGHT = 0.01  (replaces 1.0, set in {MMRL_YAML})" in lines
    assert f"  TRAINER.MMRL.REP_DIM = 2048  (replaces 512, set in {MMRL_YAML})" in lines
    assert cfg.TRAINER.MMRL.REG_WEIGHT == 0.01 and cfg.TRAINER.MMRL.REP_DIM == 2048

    # Without the YAML the replaced value is the default; trailing options still win, and the block says so.
    cfg, lines = configure(["--trainer", "MMRL", "--dataset-config-file", EUROSAT, "TRAINER.MMRL.REG_WEIGHT", "3.5"])
    assert "  TRAINER.MMRL.REP_DIM = 2048  (replaces 512, the default)" in lines
    assert "  TRAINER.MMRL.REG_WEIGHT: not applied, the command line's 3.5 wins over 0.01" in lines
    assert cfg.TRAINER.MMRL.REG_WEIGHT == 3.5

    # Cross-dataset: the table applies under every TASK, as the official train.py (trainers/config.py ignores
    # the task for MMRL); the official scripts' options on the command line win over it.
    cd_yaml = "configs/trainers/MMRL/vit_b16_cross_datasets.yaml"
    cfg, lines = configure(["--trainer", "MMRL", "--dataset-config-file", EUROSAT, "--config-file", cd_yaml,
                            "TASK", "CD"])  # fmt: skip
    assert f"  TRAINER.MMRL.REP_DIM = 2048  (replaces 512, set in {cd_yaml})" in lines
    assert cfg.TRAINER.MMRL.REP_DIM == 2048 and cfg.TRAINER.MMRL.REG_WEIGHT == 0.01
    cfg, lines = configure(["--trainer", "MMRL", "--dataset-config-file", EUROSAT, "--config-file", cd_yaml,
                            "TASK", "CD", "TRAINER.MMRL.REG_WEIGHT", "0.2", "TRAINER.MMRL.REP_DIM", "512"])  # fmt: skip
    assert "  TRAINER.MMRL.REP_DIM: not applied, the command line's 512 wins over 2048" in lines
    assert cfg.TRAINER.MMRL.REP_DIM == 512 and cfg.TRAINER.MMRL.REG_WEIGHT == 0.2


def test_a_method_without_per_dataset_values_prints_nothing() -> None:
    cfg, lines = configure(["--trainer", "CoOp", "--dataset-config-file", EUROSAT])
    assert lines == [] and cfg.TRAINER.NAME == "CoOp"


def test_a_run_config_holds_only_its_methods_node() -> None:
    coop = configure(["--trainer", "CoOp", "--dataset-config-file", EUROSAT])[0]
    assert set(coop.TRAINER) == {"NAME", "COOP"} and "W" not in coop.TRAINER.COOP
    kgcoop = configure(["--trainer", "KgCoOp", "--dataset-config-file", EUROSAT, "TRAINER.COOP.W", "8.0"])[0]
    assert set(kgcoop.TRAINER) == {"NAME", "COOP"} and kgcoop.TRAINER.COOP.W == 8.0
    # Zero-shot CLIP reads CoOp's files, as upstream: they merge, and nothing of CoOp's node stays.
    zs = configure(["--trainer", "ZeroshotCLIP", "--dataset-config-file", EUROSAT,
                    "--config-file", "configs/trainers/CoOp/vit_b16.yaml"])[0]  # fmt: skip
    assert set(zs.TRAINER) == {"NAME"}


def test_adding_or_removing_another_method_leaves_a_runs_config_hash_alone() -> None:
    argv = ["--trainer", "CoOp", "--dataset-config-file", EUROSAT]
    argv += ["--config-file", "configs/trainers/CoOp/vit_b16.yaml"]
    argv += ["--seed", "1"]
    before = config_sha256(configure(argv)[0])

    class UnrelatedMethod(CLIPTrainer):
        NODE = "UNRELATED"
        DEFAULTS = {"SCALE": 3.0}

    class SharesCoOpsNode(CLIPTrainer):
        NODE = "COOP"
        DEFAULTS = {**clip_trainers()["CoOp"].DEFAULTS, "EXTRA": 1}

    for cls in (UnrelatedMethod, SharesCoOpsNode):
        TRAINER_REGISTRY.register(cls)
    try:
        cfg = configure(argv)[0]
        assert config_sha256(cfg) == before
    finally:
        for cls in (UnrelatedMethod, SharesCoOpsNode):
            TRAINER_REGISTRY._obj_map.pop(cls.__name__)
    assert config_sha256(configure(argv)[0]) == before


def test_methods_sharing_a_node_agree_on_its_defaults() -> None:
    nodes = method_nodes(clip_trainers().values())  # raises on a disagreement
    assert nodes["COOP"]["W"] == 1.0 and nodes["COOP"]["N_CTX"] == 16

    class Disagrees(CLIPTrainer):
        NODE = "COOP"
        DEFAULTS = {"N_CTX": 4}

    with pytest.raises(ValueError, match="TRAINER.COOP.N_CTX"):
        method_nodes([*clip_trainers().values(), Disagrees])


@pytest.mark.parametrize("trainer", sorted(t for t in clip_trainers() if Path(datasets_file(t)).is_file()))
def test_every_datasets_yaml_names_known_datasets_and_keys(trainer: str) -> None:
    """Each value of every method's datasets.yaml applies to a fresh config (a typo is caught here, not in a run)."""
    with open(datasets_file(trainer)) as f:
        sections = yaml.safe_load(f)
    named = {d for section in sections.values() for d in section}
    assert named <= set(DATASET_REGISTRY.registered_names()), named - set(DATASET_REGISTRY.registered_names())
    for dataset, task in itertools.product(sorted(named), TASKS):
        layer = dataset_layer(trainer, dataset, task)
        cfg = get_cfg_default()
        extend_cfg(cfg)
        lines = apply_dataset_layer(cfg, layer, {}, [])
        assert len(lines) == 1 + max(1, len(layer.values))


# The official trainers/config.py (yunncheng/MMRL @ 27d8821), get_dataset_specified_config: MMRL's table is the
# same for B2N, FS and CD; MMRL++'s CD table is another (its B2N/FS table: ImageNet BETA 0.9, REG_WEIGHT 0.2).
OFFICIAL_MMRL = {"StanfordCars": {"REG_WEIGHT": 7.0}, "ImageNet": {"REG_WEIGHT": 0.5},
                 "EuroSAT": {"REP_DIM": 2048, "REG_WEIGHT": 0.01}, "UnknownSet": {}}  # fmt: skip
OFFICIAL_MMRLPP_IMAGENET = {"B2N": {"BETA": 0.9, "REG_WEIGHT": 0.2}, "FS": {"BETA": 0.9, "REG_WEIGHT": 0.2},
                            "CD": {"BETA": 0.9, "REG_WEIGHT": 0.1}}  # fmt: skip


@pytest.mark.parametrize("task", TASKS)
def test_the_published_tables_apply_under_the_tasks_the_official_code_applies_them(task: str) -> None:
    for dataset, values in OFFICIAL_MMRL.items():
        layer = dataset_layer("MMRL", dataset, task)
        assert layer.values == {f"TRAINER.MMRL.{k}": v for k, v in values.items()}, (dataset, task)
    layer = dataset_layer("MMRLpp", "ImageNet", task)
    assert layer.values == {f"TRAINER.MMRLpp.{k}": v for k, v in OFFICIAL_MMRLPP_IMAGENET[task].items()}


@pytest.mark.parametrize(
    "text, message",
    [
        ("B2N: {EuroSAT: 0.5}\n", "not {key: value} for B2N/EuroSAT"),
        ("B2X:\n  EuroSAT: {REG_WEIGHT: 0.5}\n", "sections must be all or a TASK"),
        ("B2N: [\n", "datasets.yaml"),
    ],
)
def test_a_broken_datasets_yaml_is_one_error_naming_it(tmp_path, monkeypatch, text, message) -> None:
    (tmp_path / "datasets.yaml").write_text(text)
    monkeypatch.setattr("trainers.config.datasets_file", lambda trainer: str(tmp_path / "datasets.yaml"))
    with pytest.raises(UserError, match=re.escape(message)):
        dataset_layer("MMRL", "EuroSAT", "B2N")
