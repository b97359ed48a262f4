"""Registry of segmentation networks, by name (timm's ``register_model`` pattern).

A builder is registered with the learning rate the paper used for it (supplement Table 2) and is
called as ``builder(num_classes=..., pretrained=..., freeze_bn=...)``; it returns a ``SegNet``.
``build_arch(..., weights=PATH)`` then loads a state dict (``weights.load_weights``).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .weights import load_weights


@dataclass(frozen=True)
class ArchSpec:
    name: str
    builder: Callable
    default_lr: float  # learning rate of the new layers when neither the dataset recipe nor --lr set one
    freeze_bn: bool  # the paper's BatchNorm setting for this network
    description: str
    has_pretrained: bool = True  # ImageNet weights exist (the paper's networks start from them)


ARCHITECTURES: dict[str, ArchSpec] = {}


def register_arch(name: str, *, default_lr: float, freeze_bn: bool = False, description: str = "",
                  has_pretrained: bool = True):
    """Decorator: add ``builder`` to the registry under ``name``; a name can be registered only once."""

    def decorator(builder: Callable) -> Callable:
        if name in ARCHITECTURES:
            raise ValueError(f"architecture {name!r} is already registered")
        ARCHITECTURES[name] = ArchSpec(name, builder, default_lr, freeze_bn, description, has_pretrained)
        return builder

    return decorator


def get_arch_spec(name: str) -> ArchSpec:
    if name not in ARCHITECTURES:
        raise KeyError(f"unknown architecture {name!r}; choose one of: {', '.join(sorted(ARCHITECTURES))}")
    return ARCHITECTURES[name]


def build_arch(name: str, num_classes: int, pretrained: bool = False, freeze_bn: bool | None = None,
               weights: str | None = None, **kwargs):
    """Build a registered network; ``freeze_bn=None`` takes the paper's setting for that network.

    ``weights``: path to a state dict of the network or of its ImageNet backbone, loaded after building
    (it replaces the download that ``pretrained`` would do). Problems raise ``weights.WeightsError``
    (``WeightsUnavailableError`` when pretrained weights cannot be had), with a one-line message.
    """
    spec = get_arch_spec(name)
    if freeze_bn is None:
        freeze_bn = spec.freeze_bn
    download = pretrained and weights is None
    net = spec.builder(num_classes=num_classes, pretrained=download, freeze_bn=freeze_bn, **kwargs)
    if weights is not None:
        load_weights(net, weights)
    return net
