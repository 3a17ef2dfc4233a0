"""ProVP (github MCG-NJU/ProVP): progressive visual prompts, with the contrastive feature re-formation
loss of ProVP-Ref. ``model.py`` is the method, ``trainer.py`` its trainer, ``official.py`` what exists only
to match the official code (its draws, its forked Dassl's model selection on the test set)."""

from .model import ProVPModel, build_provp
from .trainer import ProVP

__all__ = ["ProVP", "ProVPModel", "build_provp"]
