"""Pascal VOC 2012 in its official layout: ``pascal_aug`` (10,582 augmented training labels) and ``pascal``.

Root = the ``VOC2012`` folder (``--data-dir``, else ``$SEMISUP_PASCAL_DIR``, else ``data/VOCdevkit/VOC2012``)::

    VOC2012/JPEGImages/<id>.jpg
    VOC2012/SegmentationClassAug/<id>.png              pascal_aug: grey PNGs of class indices (255 = boundary)
    VOC2012/ImageSets/SegmentationAug/train_aug.txt    pascal_aug: the 10,582 training ids
    VOC2012/ImageSets/SegmentationAug/val.txt          pascal_aug: the 1,449 validation ids
    VOC2012/SegmentationClass/<id>.png                 pascal: palette PNGs (read as palette indices)
    VOC2012/ImageSets/Segmentation/{train,val}.txt     pascal: 1,464 / 1,449 ids

List lines may be bare ids or two-column image/label paths (only the id of the first column is used).
"""
from __future__ import annotations

from pathlib import Path

from .base import DataBundle
from .files import FileDataset, check_files_exist, find_root, read_list, require_dir, voc_palette
from .registry import register_dataset

ENV_VAR = "SEMISUP_PASCAL_DIR"
DEFAULT_ROOT = "data/VOCdevkit/VOC2012"
CLASS_NAMES = ["background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
               "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
               "tvmonitor"]
PALETTE = voc_palette(len(CLASS_NAMES))

# Paper settings (the authors' run script: --freeze_bn --batch_size=10 --learning_rate=3e-5
# --crop_size=321,321 --aug_hflip --aug_scale_hung, 40 × 1000 iterations, constant lr). ImageNet weights
# and frozen BatchNorm are the network's own defaults (architectures registry), so --arch may change them.
RECIPE = {
    "arch": "deeplabv2_resnet101",
    "crop_size": (321, 321),
    "aug_scale_hung": True,  # scale 0.5–1.5 in steps of 0.1
    "aug_hflip": True,
    "aug_centre_small": True,  # their crop pads an image smaller than the crop centrally
    "batch_size": 10,
    "optimizer": "adam",  # no lr: the network's own (supplement Table 2, whose values are Pascal's; DeepLab v2: 3e-5)
    "lr_sched": "none",
    "iters": 40000,
    "eval_every": 1000,
    "eval_batch_size": 1,  # image sizes differ
}


def voc_split(root: Path, ids: list[str], label_dir: str, name: str) -> FileDataset:
    images = [root / "JPEGImages" / f"{i}.jpg" for i in ids]
    labels = [root / label_dir / f"{i}.png" for i in ids]
    check_files_exist(images, name, "image", f"the VOC2012 folder {root} should hold JPEGImages/<id>.jpg")
    check_files_exist(labels, name, "label", f"the VOC2012 folder {root} should hold {label_dir}/<id>.png")
    return FileDataset(ids, images, labels, len(CLASS_NAMES), fix="VOC labels are class indices 0–20 and 255")


def build(name: str, data_dir, list_dir: str, train_list: str, label_dir: str) -> DataBundle:
    layout = f"the VOC2012 folder holding JPEGImages/, {label_dir}/ and ImageSets/{list_dir}/"
    root = find_root(data_dir, ENV_VAR, DEFAULT_ROOT, name, layout)
    require_dir(root / "JPEGImages", name, f"expected {layout}")
    require_dir(root / label_dir, name, f"expected {layout}")
    fix = f"put the list files in {root / 'ImageSets' / list_dir} (see the README for where to get them)"
    train_ids = read_list(root / "ImageSets" / list_dir / train_list, name, fix)
    val_ids = read_list(root / "ImageSets" / list_dir / "val.txt", name, fix)
    return DataBundle(name=name, train=voc_split(root, train_ids, label_dir, name),
                      val=voc_split(root, val_ids, label_dir, name), class_names=list(CLASS_NAMES),
                      palette=PALETTE, recipe=dict(RECIPE))


@register_dataset("pascal_aug")
def pascal_aug(data_dir=None, **_) -> DataBundle:
    """Training on the 10,582 ``train_aug`` images with ``SegmentationClassAug`` labels (the paper's set)."""
    return build("pascal_aug", data_dir, "SegmentationAug", "train_aug.txt", "SegmentationClassAug")


@register_dataset("pascal")
def pascal(data_dir=None, **_) -> DataBundle:
    """The classic 1,464 training images with the palette PNGs of ``SegmentationClass``."""
    return build("pascal", data_dir, "Segmentation", "train.txt", "SegmentationClass")
