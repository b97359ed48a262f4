"""Registry of consistency regularizers by name (``--reg=NAME``); a name can be registered once.

``build_regularizer(name, cons_loss, rng, options)`` passes each class only the options its
constructor names, after building the mask generator a class asks for with ``mask_generator``.
"""
from __future__ import annotations

import inspect

import numpy as np

from .losses import ConsistencyLoss

REGULARIZERS: dict[str, type] = {}


def register_regularizer(name: str, cls: type) -> None:
    if name in REGULARIZERS:
        raise ValueError(f"regularizer {name!r} is already registered")
    REGULARIZERS[name] = cls


def get_regularizer_class(name: str) -> type:
    if name not in REGULARIZERS:
        raise KeyError(f"unknown regularizer {name!r}; choose one of: none, {', '.join(sorted(REGULARIZERS))}")
    return REGULARIZERS[name]


def regularizer_defaults(name: str) -> dict:
    """The options ``--reg=name`` sets when nothing overrides them: its paper weight and its ``defaults``
    (mask range, VAT's loss); ``none`` has weight 0."""
    if name == "none":
        return {"cons_weight": 0.0}
    cls = get_regularizer_class(name)
    return {"cons_weight": cls.default_weight, **cls.defaults}


def call_with_known_options(fn, options: dict, **fixed):
    """Call ``fn`` with ``fixed`` plus the entries of ``options`` that ``fn`` has parameters for."""
    params = inspect.signature(fn).parameters
    return fn(**fixed, **{k: v for k, v in options.items() if k in params and k not in fixed})


def build_regularizer(name: str, cons_loss: ConsistencyLoss, rng: np.random.Generator, options: dict):
    cls = get_regularizer_class(name)
    fixed = {"cons_loss": cons_loss, "rng": rng}
    if "mask_generator" in inspect.signature(cls).parameters:
        fixed["mask_generator"] = call_with_known_options(cls.mask_generator_factory, options)
    return call_with_known_options(cls, options, **fixed)
