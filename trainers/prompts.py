"""Class prompts: the per-dataset templates of CoOp's zero-shot CLIP, shared by the methods.

CoOp's ``CUSTOM_TEMPLATES`` (also the prompts of the MMRL paper's Table 7); a method whose official
code uses other templates passes its own table to ``class_prompts``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

TEMPLATES = {
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
DEFAULT_TEMPLATE = "a photo of a {}."


def class_name(name: str) -> str:
    """Class names are written with "_" for spaces in the datasets; prompts use spaces."""
    return name.replace("_", " ")


# Templates a dataset brings itself (ImageFolder's DATASET.FOLDER.TEMPLATE), set at build time by the
# trainer; they win over every method's table, as the user asked for them.
_DATASET_TEMPLATES: dict[str, str] = {}


def set_dataset_template(dataset: str, template: str) -> None:
    """Prompt every class of ``dataset`` with ``template`` (one "{}"), whatever the method's own table says."""
    _DATASET_TEMPLATES[dataset] = template


def class_prompts(dataset: str, classnames: Sequence[str], templates: Mapping[str, str] = TEMPLATES) -> list[str]:
    """One prompt per class from the dataset's template."""
    template = _DATASET_TEMPLATES.get(dataset) or templates.get(dataset, DEFAULT_TEMPLATE)
    return [template.format(class_name(name)) for name in classnames]
