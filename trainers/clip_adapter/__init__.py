"""CLIP-Adapter (Gao et al., IJCV 2023; github gaopengcuhk/CLIP-Adapter), trainer ``CLIP_Adapter``."""

from .clip_adapter import CLIP_Adapter, CLIPAdapterModel, build_clip_adapter

__all__ = ["CLIPAdapterModel", "CLIP_Adapter", "build_clip_adapter"]
