"""Cityscapes in its official layout, labelIds mapped to the 19 train ids (others → 255 = ignore).

Root (``--data-dir``, else ``$SEMISUP_CITYSCAPES_DIR``, else ``data/cityscapes``)::

    leftImg8bit/{train,val}/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    gtFine/{train,val}/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png

The paper trained at half resolution (1024×512): ``python prepare_data.py prepare cityscapes`` writes
that copy in the same layout (images 2×2 box-averaged, labels by 2×2 majority vote, see
``half_resolution_label``) and marks it with ``prepared.json``; point the root at the copy. A sample's
id is the file stem without ``_leftImg8bit`` (``jena_000078_000019``), as split files name it.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from .base import DataBundle, DataError
from .files import FileDataset, check_files_exist, find_root, is_prepared, lookup_table, require_dir
from .registry import register_dataset

ENV_VAR = "SEMISUP_CITYSCAPES_DIR"
DEFAULT_ROOT = "data/cityscapes"
LAYOUT = "leftImg8bit/{train,val}/<city>/*_leftImg8bit.png and gtFine/{train,val}/<city>/*_gtFine_labelIds.png"
IMAGE_SUFFIX, LABEL_SUFFIX = "_leftImg8bit", "_gtFine_labelIds"

CLASS_NAMES = ["road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
               "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle",
               "bicycle"]
PALETTE = np.array([[128, 64, 128], [244, 35, 232], [70, 70, 70], [102, 102, 156], [190, 153, 153], [153, 153, 153],
                    [250, 170, 30], [220, 220, 0], [107, 142, 35], [152, 251, 152], [70, 130, 180], [220, 20, 60],
                    [255, 0, 0], [0, 0, 142], [0, 0, 70], [0, 60, 100], [0, 80, 100], [0, 0, 230], [119, 11, 32]],
                   np.uint8)
# labelId → trainId (cityscapesScripts' labels.py); every other id 0–33 is ignored. The licence plate's id
# −1 cannot be stored in a uint8 PNG; 255 is accepted as ignore too.
LABEL_TO_TRAIN = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12,
                  26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
LABEL_MAP = lookup_table({**{i: 255 for i in range(34)}, 255: 255, **LABEL_TO_TRAIN})

# Paper settings (the authors' run script: --freeze_bn --batch_size=4 --learning_rate=3e-5
# --crop_size=256,512 --aug_hflip on the 1024×512 copy, 40 × 1000 iterations). ImageNet weights and frozen
# BatchNorm are the network's own defaults.
RECIPE = {
    "arch": "deeplabv2_resnet101",
    "crop_size": (256, 512),
    "aug_hflip": True,
    "batch_size": 4,
    "optimizer": "adam",  # no lr: the network's own (DeepLab v2: 3e-5, the paper's; others: Table 2's)
    "lr_sched": "none",
    "iters": 40000,
    "eval_every": 1000,
    "eval_batch_size": 1,
}


def sample_id(image_path: Path) -> str:
    return image_path.name[: -len(IMAGE_SUFFIX + ".png")]


def split_files(root: Path, split: str) -> tuple[list[str], list[Path], list[Path]]:
    image_dir = require_dir(root / "leftImg8bit" / split, "cityscapes", f"expected {LAYOUT} under {root}")
    images = sorted(image_dir.glob(f"*/*{IMAGE_SUFFIX}.png"))
    if not images:
        raise DataError(f"cityscapes: no */*{IMAGE_SUFFIX}.png images in {image_dir}; expected {LAYOUT}")
    ids = [sample_id(p) for p in images]
    labels = [root / "gtFine" / split / p.parent.name / f"{i}{LABEL_SUFFIX}.png" for p, i in zip(images, ids,
                                                                                                  strict=True)]
    check_files_exist(labels, "cityscapes", "label", f"expected {LAYOUT} (gtFine_trainvaltest.zip)")
    return ids, images, labels


def dataset(root: Path, split: str) -> FileDataset:
    ids, images, labels = split_files(root, split)
    return FileDataset(ids, images, labels, len(CLASS_NAMES), LABEL_MAP, fix=LABEL_FIX)


LABEL_FIX = "Cityscapes labelIds are 0–33 (use the *_gtFine_labelIds.png files, not color or instanceIds)"


def half_resolution_label(label_ids: np.ndarray) -> np.ndarray:
    """(H, W) labelIds → (H/2, W/2) by majority vote in each 2×2 block (H, W even).

    Ties are broken towards the LOWER labelId (the authors' argmax over one-hot counts did the same),
    e.g. [7, 7, 26, 26] → 7 (road), [7, 26, 24, 33] → 7. The vote is over labelIds, as the authors
    prepared it, and the result is mapped to train ids when read.
    """
    h, w = label_ids.shape
    if h % 2 or w % 2:
        raise DataError(f"cannot halve a {w}×{h} label: width and height must be even")
    blocks = label_ids.reshape(h // 2, 2, w // 2, 2).transpose(0, 2, 1, 3).reshape(h // 2, w // 2, 4)
    votes = (blocks[..., :, None] == blocks[..., None, :]).sum(-1)  # (h/2, w/2, 4): count of each entry
    score = votes.astype(np.int64) * 1024 - blocks.astype(np.int64)  # most votes, then lowest id
    return np.take_along_axis(blocks, score.argmax(-1)[..., None], -1)[..., 0]


def half_resolution_image(image: np.ndarray, truncate: bool = False) -> np.ndarray:
    """(H, W, 3) uint8 → (H/2, W/2, 3): the mean of each 2×2 block, rounded to nearest (halves up), or with
    ``truncate`` rounded down, as the authors' ``downscale_local_mean(...).astype(uint8)``."""
    h, w = image.shape[:2]
    blocks = image[: h - h % 2, : w - w % 2].astype(np.uint16).reshape(h // 2, 2, w // 2, 2, -1)
    return ((blocks.sum(axis=(1, 3)) + (0 if truncate else 2)) // 4).astype(np.uint8)


@register_dataset("cityscapes")
def cityscapes(data_dir=None, **_) -> DataBundle:
    root = find_root(data_dir, ENV_VAR, DEFAULT_ROOT, "cityscapes", LAYOUT)
    bundle = DataBundle(name="cityscapes", train=dataset(root, "train"), val=dataset(root, "val"),
                        class_names=list(CLASS_NAMES), palette=PALETTE, recipe=dict(RECIPE))
    if not is_prepared(root):
        warnings.warn(f"cityscapes: {root} is not a half-resolution copy; the paper trained at 1024×512: run "
                      f"`python prepare_data.py prepare cityscapes --data-dir {root}` and train on its output",
                      stacklevel=2)
    return bundle
