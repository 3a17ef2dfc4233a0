"""TCP (github htyao89/Textual-based_Class-aware_prompt_tuning): CoOp's context with class-aware tokens
from a meta-network over frozen class features. ``official.py`` replays its build's random draws."""

from .tcp import TCP, build_tcp

__all__ = ["TCP", "build_tcp"]
