"""Trainers: importing this package registers MMRL and MMRLpp in dassl's TRAINER_REGISTRY."""

from . import mmrl, mmrlpp  # noqa: F401
