"""The dataset protocol shared by every dataset here.

A ``SegDataset`` is a list of samples addressed by index:
- ``load_image(i)``: RGB uint8 (H, W, 3);
- ``load_label(i)``: uint8 (H, W) class indices, ``ignore_index`` (255) = ignore; checked on load;
- ``sample_id(i)``: a stable name (the image file stem for datasets on disk), used by split files.
Unlabelled data never needs label files: a dataset with ``has_labels = False`` only loads images.

A ``DataBundle`` is what a registered dataset builder returns: the training and evaluation sets, the
class names and palette, and the ``recipe`` — the paper's settings for this dataset (network, crop,
batch, augmentation, optimiser, iterations), overridable from the command line.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np


class DataError(Exception):
    """Bad or missing input data; the message is one line naming the file or setting and the fix."""


class SegDataset:
    ignore_index: int = 255
    has_labels: bool = True

    def __init__(self, num_classes: int):
        self.num_classes = num_classes

    def __len__(self) -> int:
        raise NotImplementedError

    def sample_id(self, index: int) -> str:
        return str(index)

    def load_image(self, index: int) -> np.ndarray:
        raise NotImplementedError

    def read_label(self, index: int) -> np.ndarray:
        raise NotImplementedError

    def label_source(self, index: int) -> str:
        """Where sample ``index``'s label comes from, for error messages."""
        return f"label of sample {self.sample_id(index)!r}"

    def load_label(self, index: int) -> np.ndarray:
        label = self.read_label(index)
        check_label(label, self.num_classes, self.ignore_index, self.label_source(index))
        return label


def check_label(label: np.ndarray, num_classes: int, ignore_index: int, source: str) -> None:
    if label.ndim != 2:
        raise DataError(f"{source}: expected a single-channel (H, W) label image, got shape {label.shape}")
    bad = (label >= num_classes) & (label != ignore_index)
    if bad.any():
        values = sorted(int(v) for v in np.unique(label[bad]))[:10]
        raise DataError(f"{source}: label values {values} outside [0, {num_classes}) and != {ignore_index}; "
                        f"fix the label file or set the number of classes / ignore index")


class Subset(SegDataset):
    """The samples ``indices`` of ``dataset``, in that order."""

    def __init__(self, dataset: SegDataset, indices):
        super().__init__(dataset.num_classes)
        self.dataset, self.indices = dataset, [int(i) for i in indices]
        self.ignore_index, self.has_labels = dataset.ignore_index, dataset.has_labels

    def __len__(self) -> int:
        return len(self.indices)

    def sample_id(self, index: int) -> str:
        return self.dataset.sample_id(self.indices[index])

    def load_image(self, index: int) -> np.ndarray:
        return self.dataset.load_image(self.indices[index])

    def load_label(self, index: int) -> np.ndarray:
        return self.dataset.load_label(self.indices[index])


class GeneratedDataset(SegDataset):
    """Samples made on demand by ``make_sample(rng)`` → (image, label), with rng seeded from (seed, split, index).

    Nothing is stored on disk; any sample can be re-made, and each is kept in memory once made.
    """

    SPLIT_CODES = {"train": 0, "val": 1, "test": 2}

    def __init__(self, num_classes: int, split: str, length: int, seed: int,
                 make_sample: Callable[[np.random.Generator], tuple[np.ndarray, np.ndarray]]):
        super().__init__(num_classes)
        self.split, self.length, self.seed, self.make_sample = split, length, seed, make_sample
        self._made: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        return self.length

    def sample_id(self, index: int) -> str:
        return f"{self.split}_{index:06d}"

    def sample(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        if not 0 <= index < self.length:
            raise IndexError(index)
        if index not in self._made:
            rng = np.random.default_rng([self.seed, self.SPLIT_CODES[self.split], index])
            self._made[index] = self.make_sample(rng)
        return self._made[index]

    def load_image(self, index: int) -> np.ndarray:
        return self.sample(index)[0]

    def read_label(self, index: int) -> np.ndarray:
        return self.sample(index)[1]


@dataclass
class DataBundle:
    name: str
    train: SegDataset  # labelled training pool (the labelled subset is chosen from it)
    val: SegDataset  # official evaluation set
    class_names: list[str]
    palette: np.ndarray  # (num_classes, 3) uint8 RGB, for prediction PNGs
    recipe: dict = field(default_factory=dict)
    unlabelled: SegDataset | None = None  # extra unlabelled-only images (None: the training images)
    test: SegDataset | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)
