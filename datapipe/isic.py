"""ISIC 2017 skin lesion segmentation (challenge Part 1), in the challenge's folder layout; 2 classes.

Root (``--data-dir``, else ``$SEMISUP_ISIC2017_DIR``, else ``data/isic2017``), the unzipped archives::

    ISIC-2017_Training_Data/ISIC_0000000.jpg                           2,000 (``*_superpixels.png`` skipped)
    ISIC-2017_Training_Part1_GroundTruth/ISIC_0000000_segmentation.png  masks 0 / 255
    ISIC-2017_Validation_Data/, ISIC-2017_Validation_Part1_GroundTruth/  150
    ISIC-2017_Test_v2_Data/, ISIC-2017_Test_v2_Part1_GroundTruth/        600, optional (the test set)

The paper resized everything to 248×248 (area interpolation, masks thresholded at 127):
``python prepare_data.py prepare isic2017`` writes that copy in the same layout (PNG images). Masks are
read 0 → background, 255 → lesion; any other value is an error. Validation is on the official
validation set and, when present, the test set is scored too (``test_miou``).
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from .base import DataBundle, DataError
from .files import FileDataset, check_files_exist, find_root, is_prepared, list_images, lookup_table
from .registry import register_dataset

ENV_VAR = "SEMISUP_ISIC2017_DIR"
DEFAULT_ROOT = "data/isic2017"
SPLITS = {"train": ("ISIC-2017_Training_Data", "ISIC-2017_Training_Part1_GroundTruth"),
          "val": ("ISIC-2017_Validation_Data", "ISIC-2017_Validation_Part1_GroundTruth"),
          "test": ("ISIC-2017_Test_v2_Data", "ISIC-2017_Test_v2_Part1_GroundTruth")}
LAYOUT = "ISIC-2017_{Training,Validation}_Data/ and ISIC-2017_{Training,Validation}_Part1_GroundTruth/"
MASK_SUFFIX = "_segmentation"
CLASS_NAMES = ["background", "lesion"]
PALETTE = np.array([[0, 0, 0], [255, 255, 255]], np.uint8)
LABEL_MAP = lookup_table({0: 0, 255: 1})

# Paper settings: DenseNet-161 U-Net, SGD Nesterov 0.9, lr 0.05 (supplement; the authors' script
# used 0.1), weight decay 5e-4, poly schedule, batch 10, 100 × 400 iterations, crops of 224 from the
# 248×248 copy, h/v/diagonal flips, scale up to 1.1, rotation ±45°, hole filling before scoring, 50 labels.
RECIPE = {
    "arch": "densenet161_unet",
    "crop_size": (224, 224),
    "aug_hflip": True,
    "aug_vflip": True,
    "aug_hvflip": True,
    "aug_max_scale": 1.1,
    "aug_rot_mag": 45.0,
    "aug_free_scale_rot": True,  # aug: teacher and student views rotated/scaled independently (supplement D.4.2)
    "aug_reflect_border": True,  # the authors' rotated crops mirror the image into their corners (still invalid)
    "batch_size": 10,
    "optimizer": "sgd",
    "momentum": 0.9,
    "nesterov": True,
    "weight_decay": 5e-4,
    "lr": 0.05,
    "lr_sched": "poly",
    "iters": 40000,
    "eval_every": 400,
    "eval_batch_size": 1,  # the original images' sizes differ (the prepared copy is all 248×248)
    "n_sup": 50,
    "bin_fill_holes": True,
    # consistency weights for ISIC; VAT: supplement 0.1 (the default here), the authors' script 0.001
    "reg_weights": {"aug": 0.1, "ict": 0.0003, "vat": 0.1, "cutout": 1.0, "cutmix": 1.0},
}


def split_dataset(root: Path, split: str) -> FileDataset | None:
    image_dir, mask_dir = (root / d for d in SPLITS[split])
    if not image_dir.is_dir():
        if split == "test":
            return None
        raise DataError(f"isic2017: folder {image_dir} not found; expected {LAYOUT} under {root} "
                        f"(the unzipped challenge archives)")
    images = list_images(image_dir, exclude_suffix="_superpixels")
    if not images:
        raise DataError(f"isic2017: no images in {image_dir}; expected ISIC_<id>.jpg files")
    ids = [p.stem for p in images]
    masks = [mask_dir / f"{i}{MASK_SUFFIX}.png" for i in ids]
    check_files_exist(masks, "isic2017", "mask", f"expected {mask_dir.name}/<id>{MASK_SUFFIX}.png for every image")
    return FileDataset(ids, images, masks, len(CLASS_NAMES), LABEL_MAP, fix=LABEL_FIX)


LABEL_FIX = ("ISIC masks are 0 (background) and 255 (lesion); resized masks must be thresholded "
             "(python prepare_data.py prepare isic2017)")


@register_dataset("isic2017")
def isic2017(data_dir=None, **_) -> DataBundle:
    root = find_root(data_dir, ENV_VAR, DEFAULT_ROOT, "isic2017", LAYOUT)
    bundle = DataBundle(name="isic2017", train=split_dataset(root, "train"), val=split_dataset(root, "val"),
                        test=split_dataset(root, "test"), class_names=list(CLASS_NAMES), palette=PALETTE,
                        recipe=dict(RECIPE))
    if not is_prepared(root):
        warnings.warn(f"isic2017: {root} is not the 248×248 copy the paper trained on: run "
                      f"`python prepare_data.py prepare isic2017 --data-dir {root}` and train on its output",
                      stacklevel=2)
    return bundle
