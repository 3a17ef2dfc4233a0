"""CLIP for the CoOp family: ``from clip import clip`` or ``import clip`` give OpenAI's API."""

from .clip import (
    available_models,
    build_model,
    load,
    load_clip_state_dict,
    load_state_dict_from_file,
    model_family,
    tokenize,
)
from .model import CLIP, BlockHooks, CLIPConfig, Injector

__all__ = [
    "CLIP",
    "BlockHooks",
    "CLIPConfig",
    "Injector",
    "available_models",
    "build_model",
    "load",
    "load_clip_state_dict",
    "load_state_dict_from_file",
    "model_family",
    "tokenize",
]
