"""Which training images are labelled, unlabelled and held out.

A seeded random choice: labelled = ``n_sup`` images drawn with ``split_seed``; unlabelled = every
training image (the paper's protocol) or ``n_unsup`` of them; with ``n_val`` K, K images outside the
labelled set are held out for validation and removed from the unlabelled set.

``authors_split`` draws as the authors' release did (numpy's legacy ``RandomState``), so that the same
seed picks the same images from a training set in the same order as theirs.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import DataError


@dataclass
class Split:
    labelled: np.ndarray  # indices into the training set, in split order
    unlabelled: np.ndarray
    held_out: np.ndarray

    def as_dict(self) -> dict:
        return {k: [int(i) for i in v] for k, v in vars(self).items()}


def random_split(n_train: int, n_sup: int | None, split_seed: int, n_unsup: int | None = None,
                 n_val: int = 0) -> Split:
    """Seeded split of ``n_train`` training images; ``n_sup=None`` labels them all (minus ``n_val``)."""
    order = np.random.default_rng(split_seed).permutation(n_train)
    return split_from_order(order, n_sup, n_unsup, n_val, split_seed)


def split_from_order(order: np.ndarray, n_sup: int | None, n_unsup: int | None, n_val: int,
                     split_seed: int, n_train: int | None = None) -> Split:
    """The first ``n_sup`` of ``order`` are labelled; held-out images are drawn (seeded) from the rest."""
    n_train = len(order) if n_train is None else n_train
    order = np.asarray(order, dtype=np.int64)
    if n_sup is None and len(order) - n_val < 1:
        raise DataError(f"--n-val {n_val} holds out every one of the {len(order)} training images, leaving none to "
                        f"label; lower --n-val")
    n_sup = len(order) - n_val if n_sup is None else n_sup
    if n_sup < 1:
        raise DataError(f"--n-sup must be at least 1, got {n_sup}")
    if n_sup + n_val > len(order):
        raise DataError(f"--n-sup {n_sup} + --n-val {n_val} is more than the {len(order)} training images "
                        f"available; lower them")
    labelled = order[:n_sup]
    rest = np.setdiff1d(np.arange(n_train), labelled)
    held_out = np.sort(np.random.default_rng([split_seed, 1]).choice(rest, size=n_val, replace=False)) \
        if n_val else np.zeros(0, np.int64)
    unlabelled = np.setdiff1d(np.arange(n_train), held_out)
    if n_unsup is not None:
        if not 0 < n_unsup <= len(unlabelled):
            raise DataError(f"--n-unsup {n_unsup} must be between 1 and the {len(unlabelled)} unlabelled images")
        unlabelled = np.sort(np.random.default_rng([split_seed, 2]).choice(unlabelled, size=n_unsup, replace=False))
    return Split(labelled, unlabelled, held_out)


AUTHORS_VAL_SEED = 131  # the authors' --val_seed default


def authors_split(n_train: int, n_sup: int | None, split_seed: int, n_unsup: int | None = None, n_val: int = 0,
                  val_seed: int = AUTHORS_VAL_SEED) -> Split:
    """The split of the authors' ``datapipe/datasets.py`` for the training images 0 … n_train − 1 in the
    dataset's order: with ``n_val`` K, ``RandomState(val_seed).permutation`` orders them and its last K are
    held out; then ``perm = RandomState(split_seed).permutation`` of the rest, labelled = the first
    ``n_sup`` of ``perm``; unlabelled = all of the rest, or with ``n_unsup`` the ``n_unsup`` after the
    labelled ones in ``perm`` (so, unlike ``random_split``, no labelled image; with every image labelled,
    ``n_sup=None``, the first ``n_unsup`` of ``perm``)."""
    if n_val >= n_train:
        raise DataError(f"--n-val {n_val} holds out every one of the {n_train} training images, leaving none to "
                        f"label; lower --n-val")
    order, held_out = np.arange(n_train), np.zeros(0, np.int64)
    if n_val:
        trainval = np.random.RandomState(val_seed).permutation(n_train)
        order, held_out = trainval[:-n_val], trainval[-n_val:]
    perm = order[np.random.RandomState(split_seed).permutation(len(order))]
    all_labelled = n_sup is None
    n_sup = len(order) if all_labelled else n_sup
    if not 1 <= n_sup <= len(order):
        raise DataError(f"--n-sup {n_sup} must be between 1 and the {len(order)} training images available"
                        + (f" after --n-val {n_val}" if n_val else "") + "; lower it")
    labelled = perm[:n_sup]
    if n_unsup is None:
        unlabelled = np.sort(order)
    else:
        rest = perm if all_labelled else perm[n_sup:]  # the authors: everything labelled → the first n_unsup
        if not 0 < n_unsup <= len(rest):
            which = "training images" if all_labelled else "training images that are not labelled (the authors' " \
                "split draws them after the labelled ones)"
            raise DataError(f"--n-unsup {n_unsup} must be between 1 and the {len(rest)} {which}")
        unlabelled = np.sort(rest[:n_unsup])
    return Split(labelled.astype(np.int64), unlabelled.astype(np.int64), np.sort(held_out).astype(np.int64))
