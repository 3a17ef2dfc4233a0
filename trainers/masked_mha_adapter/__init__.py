"""The masked multi-head-attention adapter of Seputis et al. (arXiv 2409.02958), ``MaskedMHAAdapter``."""

from .masked_mha_adapter import MaskedMHAAdapter, build_masked_mha_adapter

__all__ = ["MaskedMHAAdapter", "build_masked_mha_adapter"]
