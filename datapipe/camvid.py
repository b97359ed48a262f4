"""CamVid in the SegNet tutorial's layout: 11 classes + void (void → 255 = ignore).

Root (``--data-dir``, else ``$SEMISUP_CAMVID_DIR``, else ``data/CamVid``)::

    train/*.png  trainannot/*.png      367 images 480×360, labels 0–10 and 11 = void
    val/*.png    valannot/*.png        101
    test/*.png   testannot/*.png       233 (scored as the test set: ``test_miou``)

The paper has no CamVid experiment; the recipe below is ours (DeepLab v2 settings scaled to 367 images).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import DataBundle, DataError
from .files import FileDataset, check_files_exist, find_root, list_images, lookup_table, require_dir
from .registry import register_dataset

ENV_VAR = "SEMISUP_CAMVID_DIR"
DEFAULT_ROOT = "data/CamVid"
LAYOUT = "train/, trainannot/, val/, valannot/ and test/, testannot/ (the SegNet tutorial's CamVid folders)"
CLASS_NAMES = ["sky", "building", "pole", "road", "pavement", "tree", "sign", "fence", "car", "pedestrian",
               "bicyclist"]
PALETTE = np.array([[128, 128, 128], [128, 0, 0], [192, 192, 128], [128, 64, 128], [0, 0, 192], [128, 128, 0],
                    [192, 128, 128], [64, 64, 128], [64, 0, 128], [64, 64, 0], [0, 128, 192]], np.uint8)
LABEL_MAP = lookup_table({**{i: i for i in range(11)}, 11: 255, 255: 255})

RECIPE = {  # our choice, not the paper's
    "arch": "deeplabv2_resnet101",
    "crop_size": (321, 321),
    "aug_scale_range": (0.75, 1.5),
    "aug_hflip": True,
    "batch_size": 10,
    "optimizer": "adam",  # no lr: the network's own (DeepLab v2: 3e-5)
    "lr_sched": "none",
    "iters": 10000,
    "eval_every": 1000,
    "eval_batch_size": 1,
}


def split_dataset(root: Path, split: str, required: bool = True) -> FileDataset | None:
    image_dir = root / split
    if not image_dir.is_dir() and not required:
        return None
    require_dir(image_dir, "camvid", f"expected {LAYOUT} under {root}")
    images = list_images(image_dir)
    if not images:
        raise DataError(f"camvid: no images in {image_dir}; expected {LAYOUT}")
    labels = [root / f"{split}annot" / p.name for p in images]
    check_files_exist(labels, "camvid", "label", f"expected {split}annot/<name> for every image in {split}/")
    return FileDataset([p.stem for p in images], images, labels, len(CLASS_NAMES), LABEL_MAP,
                       fix="CamVid labels are 0–10 and 11 (void)")


@register_dataset("camvid")
def camvid(data_dir=None, **_) -> DataBundle:
    root = find_root(data_dir, ENV_VAR, DEFAULT_ROOT, "camvid", LAYOUT)
    return DataBundle(name="camvid", train=split_dataset(root, "train"), val=split_dataset(root, "val"),
                      test=split_dataset(root, "test", required=False), class_names=list(CLASS_NAMES),
                      palette=PALETTE, recipe=dict(RECIPE))
