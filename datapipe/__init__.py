"""Datasets, splits, OpenCV augmentation with affine matrices, and seeded loaders."""
from . import camvid, cityscapes, fashion_canvas, folder, isic, pascal, synthetic  # noqa: F401  (register datasets)
from .base import DataBundle, DataError, GeneratedDataset, SegDataset, Subset, check_label
from .colour import ColourJitter
from .files import Concat
from .loaders import StreamSampler, eval_loader, stream_loader
from .registry import DATASETS, build_dataset, register_dataset
from .split_files import read_split_file, split_from_file
from .splits import AUTHORS_VAL_SEED, Split, authors_split, random_split, split_from_order
from .transforms import AugParams, sample_matrix, warp

__all__ = ["AUTHORS_VAL_SEED", "DATASETS", "AugParams", "ColourJitter", "Concat", "DataBundle", "DataError",
           "GeneratedDataset", "SegDataset", "Split", "StreamSampler", "Subset", "authors_split", "build_dataset",
           "check_label", "eval_loader", "random_split", "read_split_file", "register_dataset", "sample_matrix",
           "split_from_file", "split_from_order", "stream_loader", "warp"]
