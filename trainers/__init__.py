"""Trainers: importing this package imports every method module in it, which registers itself in
dassl's TRAINER_REGISTRY. A new method is a new module (or package) here: nothing else is edited."""

import importlib
import pkgutil

_SUPPORT = {"base", "config", "prompts", "replay", "protocols"}

for _module in pkgutil.iter_modules(__path__):
    if _module.name not in _SUPPORT and not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")
