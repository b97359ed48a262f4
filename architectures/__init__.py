"""Segmentation networks behind one interface (see ``base.SegNet``), selected by name."""
from . import unet_small  # noqa: F401  (registers its networks)
from .base import IMAGENET_MEAN, IMAGENET_STD, SegNet
from .registry import ARCHITECTURES, ArchSpec, build_arch, get_arch_spec, register_arch

__all__ = ["ARCHITECTURES", "ArchSpec", "IMAGENET_MEAN", "IMAGENET_STD", "SegNet", "build_arch",
           "get_arch_spec", "register_arch"]
