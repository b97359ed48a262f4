"""Segmentation networks behind one interface (see ``base.SegNet``), selected by name."""
from . import deeplab, pspnet, unet_small, unets  # noqa: F401  (register their networks)
from .base import IMAGENET_MEAN, IMAGENET_STD, SegNet
from .registry import ARCHITECTURES, ArchSpec, build_arch, get_arch_spec, register_arch
from .weights import WeightsError, WeightsUnavailableError, load_weights

__all__ = ["ARCHITECTURES", "ArchSpec", "IMAGENET_MEAN", "IMAGENET_STD", "SegNet", "WeightsError",
           "WeightsUnavailableError", "build_arch", "get_arch_spec", "load_weights", "register_arch"]
