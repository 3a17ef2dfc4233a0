"""Per-dataset prompt templates are data (configs/templates.yaml, configs/trainers/<TRAINER>/templates.yaml), equal
to the official code's tables, and no Python file of the repo holds a per-dataset table again."""

from __future__ import annotations

import ast
import os.path as osp
import pathlib

import pytest

import datasets  # noqa: F401  (registers the datasets)
from dassl.data.datasets import DATASET_REGISTRY
from dassl.user_files import FileError
from trainers import templates as templates_module
from trainers.coop.zsclip import dataset_templates
from trainers.prompts import class_prompts
from trainers.templates import dataset_list, template_list, templates

REPO = pathlib.Path(__file__).resolve().parent.parent

# CUSTOM_TEMPLATES in trainers/zsclip.py of github KaiyangZhou/CoOp (commit ff61507c), copied from that file.
COOP_OFFICIAL = {
    "OxfordPets": "a photo of a {}, a type of pet.",
    "OxfordFlowers": "a photo of a {}, a type of flower.",
    "FGVCAircraft": "a photo of a {}, a type of aircraft.",
    "DescribableTextures": "{} texture.",
    "EuroSAT": "a centered satellite photo of {}.",
    "StanfordCars": "a photo of a {}.",
    "Food101": "a photo of {}, a type of food.",
    "SUN397": "a photo of a {}.",
    "Caltech101": "a photo of a {}.",
    "UCF101": "a photo of a person doing {}.",
    "ImageNet": "a photo of a {}.",
    "ImageNetSketch": "a photo of a {}.",
    "ImageNetV2": "a photo of a {}.",
    "ImageNetA": "a photo of a {}.",
    "ImageNetR": "a photo of a {}.",
}


def test_coop_table_is_the_official_one() -> None:
    table = templates()
    assert dict(table.datasets) == COOP_OFFICIAL
    assert table.default == "a photo of a {}."  # ours: the official table has no entry for other datasets
    prompts = class_prompts("DescribableTextures", ["banded", "polka_dotted"])
    assert prompts == ["banded texture.", "polka dotted texture."]
    assert class_prompts("MyData", ["owl"]) == ["a photo of a owl."]


def test_provp_table_rewords_five_datasets() -> None:
    """CUSTOM_TEMPLATES in ProVP/trainers/provp.py of github MCG-NJU/ProVP (commit 837b8fb3), copied from there."""
    reworded = {
        "OxfordPets": "a type of pet, a photo of a {}.",
        "OxfordFlowers": "a type of flower, a photo of a {}.",
        "FGVCAircraft": "a type of aircraft, a photo of a {}.",
        "DescribableTextures": "a texture of {}.",
        "Food101": "a type of food, a photo of {}.",
    }
    assert dict(templates("ProVP").datasets) == {**COOP_OFFICIAL, **reworded}


def test_kgcoop_table_differs_from_coop_on_dtd_only() -> None:
    """CUSTOM_TEMPLATES in KgCoOp/trainers/kgcoop.py of github htyao89/KgCoOp (commit c43ccc32): CoOp's table
    with DescribableTextures "a photo of a {}, a type of texture."."""
    kgcoop = dict(templates("KgCoOp", "teacher").datasets)
    assert kgcoop.pop("DescribableTextures") == "a photo of a {}, a type of texture."
    assert kgcoop == {k: v for k, v in COOP_OFFICIAL.items() if k != "DescribableTextures"}


def test_zeroshot_ensemble_is_the_official_one() -> None:
    """IMAGENET_TEMPLATES_SELECT in trainers/imagenet_templates.py of github KaiyangZhou/CoOp (commit ff61507c), in
    its order; its trainers/zsclip.py adds the dataset's CUSTOM_TEMPLATES entry unless DATASET.NAME is ImageNet."""
    official = ["itap of a {}.", "a bad photo of the {}.", "a origami {}.", "a photo of the large {}.",
                "a {} in a video game.", "art of the {}.", "a photo of the small {}."]  # fmt: skip
    assert list(template_list("ZeroshotCLIP2", "ensemble")) == official
    assert dataset_list("ZeroshotCLIP2", "without_own_template") == {"ImageNet"}
    assert dataset_templates("ImageNet", ensemble=True) == official
    assert dataset_templates("EuroSAT", ensemble=True) == [*official, "a centered satellite photo of {}."]
    assert dataset_templates("ImageNet", ensemble=True, template="a {} bird.") == [*official, "a {} bird."]
    assert dataset_templates("EuroSAT", ensemble=False) == ["a centered satellite photo of {}."]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('prompts:\n  default: "a photo of a {}."\n  EuroSAT: "a satellite photo."\n', "prompts.EuroSAT"),
        ('prompts:\n  default: "a {}."\n  ImageNet: ["itap of a {}.", "art."]\n', "prompts.ImageNet[1]"),
        ('prompts:\n  EuroSAT: "a satellite photo of {}."\n', "'default' entry under 'prompts'"),
        ('teacher:\n  default: "a photo of a {}."\n', "under 'prompts'"),
        ('- "a photo of a {}."\n', "a mapping of names"),
    ],
)
def test_a_broken_table_names_the_file_and_entry(tmp_path, monkeypatch, text: str, problem: str) -> None:
    (tmp_path / "trainers" / "Mine").mkdir(parents=True)
    (tmp_path / "trainers" / "Mine" / "templates.yaml").write_text(text)
    monkeypatch.setattr(templates_module, "CONFIGS", str(tmp_path))
    templates.cache_clear()
    try:
        with pytest.raises(FileError) as e:
            templates("Mine")
    finally:
        templates.cache_clear()
    message = str(e.value)
    assert message.startswith(osp.join("configs", "trainers", "Mine", "templates.yaml")) and problem in message


# --- No per-dataset table in Python -------------------------------------------------------------------------------

# Files allowed to key values by dataset, and why: the synthetic datasets' folder layouts and made-up class names
# are the formats of the data the tests generate, not settings of a method.
ALLOWED = {"datasets/synthetic.py"}
SKIPPED_DIRS = {"tests", "__pycache__", "build", "dist"}


def dataset_tables(source: str, names: set[str]) -> list[int]:
    """Lines of dict literals (or ``dict(...)`` calls) keyed by 3 or more dataset names, or by one or more over a
    ``**`` spread (a delta of a per-dataset table)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Dict):
            keys = [k.value for k in node.keys if isinstance(k, ast.Constant) and k.value in names]
            spread = any(k is None for k in node.keys)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict":
            keys = [k.arg for k in node.keywords if k.arg in names]
            spread = bool(node.args) or any(k.arg is None for k in node.keywords)
        else:
            continue
        if len(keys) >= 3 or (keys and spread):
            found.append(node.lineno)
    return found


def known_datasets() -> set[str]:
    return set(DATASET_REGISTRY.registered_names())


def test_the_detector_finds_the_shapes_of_a_per_dataset_table() -> None:
    names = known_datasets()
    assert dataset_tables('T = {"OxfordPets": "a", "EuroSAT": "b", "ImageNet": "c"}', names) == [1]
    assert dataset_tables('K = {**T, "DescribableTextures": "x"}', names) == [1]
    assert dataset_tables("K = dict(T, EuroSAT='x')", names) == [1]
    assert dataset_tables("W = dict(OxfordPets=1, EuroSAT=2, SUN397=3)", names) == [1]
    assert dataset_tables('D = {"OxfordPets": 1, "EuroSAT": 2}\nif name == "ImageNet": pass', names) == []


def test_no_python_file_holds_a_per_dataset_table() -> None:
    """Per-dataset values are YAML (configs/); Python reads them. Scans every Python file outside tests/."""
    names = known_datasets()
    assert {"OxfordPets", "EuroSAT", "ImageNet", "DescribableTextures"} <= names
    found = {}
    scanned = 0
    for path in sorted(REPO.rglob("*.py")):
        relative = path.relative_to(REPO)
        if any(part in SKIPPED_DIRS or part.startswith(".") for part in relative.parts[:-1]):
            continue
        scanned += 1
        lines = dataset_tables(path.read_text(encoding="utf-8"), names)
        if lines and relative.as_posix() not in ALLOWED:
            found[relative.as_posix()] = lines
    assert scanned > 100 and (REPO / "trainers" / "prompts.py").exists()  # the scan reached the repository's code
    assert found == {}, f"per-dataset tables in Python (move them to configs/, docs/configuration.md): {found}"
