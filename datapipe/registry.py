"""Registry of datasets by name (``--dataset=NAME``); a name can be registered once.

A builder is called as ``builder(data_dir=None, **options)`` and returns a ``DataBundle``.
"""
from __future__ import annotations

from collections.abc import Callable

DATASETS: dict[str, Callable] = {}


def register_dataset(name: str):
    def decorator(builder: Callable) -> Callable:
        if name in DATASETS:
            raise ValueError(f"dataset {name!r} is already registered")
        DATASETS[name] = builder
        return builder

    return decorator


def build_dataset(name: str, **options):
    if name not in DATASETS:
        raise KeyError(f"unknown dataset {name!r}; choose one of: {', '.join(sorted(DATASETS))}")
    return DATASETS[name](**options)
