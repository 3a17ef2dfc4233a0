"""Trainers: every sub-package here is a method family, imported (and so registered in dassl's
TRAINER_REGISTRY) when this package is imported. The modules at this level are what methods share
(``base``, ``config``, ``prompts``, ...). A new method is a new sub-package: nothing else is edited."""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    if _module.ispkg:
        importlib.import_module(f"{__name__}.{_module.name}")
