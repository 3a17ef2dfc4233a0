"""Dataset registry and factory: ``DATASET.NAME`` picks a class registered here."""
from __future__ import annotations

from typing import Any

from dassl.utils.registry import Registry

DATASET_REGISTRY = Registry("DATASET")


def build_dataset(cfg: Any) -> Any:
    """Instantiate the dataset named by ``cfg.DATASET.NAME`` with ``cfg``."""
    name = cfg.DATASET.NAME
    if name not in DATASET_REGISTRY:
        known = ", ".join(sorted(DATASET_REGISTRY.registered_names())) or "(none)"
        raise ValueError(
            f'Unknown dataset "{name}" (DATASET.NAME). Registered: {known}. A dataset is registered when '
            "the module defining it is imported (`import datasets` loads all of this repo's), or define "
            "your own with @DATASET_REGISTRY.register()."
        )
    if getattr(cfg, "VERBOSE", False):
        print(f"Loading dataset: {name}")
    return DATASET_REGISTRY.get(name)(cfg)
