"""Datasets, splits, OpenCV augmentation with affine matrices, and seeded loaders."""
from . import synthetic  # noqa: F401  (registers the dataset)
from .base import DataBundle, DataError, SegDataset, Subset, check_label
from .loaders import StreamSampler, eval_loader, stream_loader
from .registry import DATASETS, build_dataset, register_dataset
from .splits import Split, random_split, split_from_order
from .transforms import AugParams, sample_matrix, warp

__all__ = ["DATASETS", "AugParams", "DataBundle", "DataError", "SegDataset", "Split", "StreamSampler", "Subset",
           "build_dataset", "check_label", "eval_loader", "random_split", "register_dataset", "sample_matrix",
           "split_from_order", "stream_loader", "warp"]
