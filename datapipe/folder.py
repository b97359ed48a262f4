"""``folder``: your own data, described by options (``--num-classes``, ``--ignore-index``); no code, no config.

Root (``--data-dir``, else ``$SEMISUP_FOLDER_DIR``)::

    images/<name>.<jpg|png|...>    labelled training images
    labels/<name>.png              class indices 0 … C−1 (grey or palette PNG), ``--ignore-index`` = ignore
    unlabelled/<name>.<ext>        optional: extra images without labels (added to the unlabelled pool)
    val/images/, val/labels/       optional: the evaluation set (else hold out training images: --n-val K)
    test/images/, test/labels/     optional: scored as the test set (``test_miou``)

Labels equal to ``--ignore-index`` become 255 (ignored); any other value outside [0, C) is an error.
"""
from __future__ import annotations

from pathlib import Path

from .base import DataBundle, DataError
from .files import FileDataset, check_files_exist, find_root, list_images, lookup_table, voc_palette
from .registry import register_dataset

ENV_VAR = "SEMISUP_FOLDER_DIR"
LAYOUT = "images/ and labels/ (PNG class indices), optionally unlabelled/, val/{images,labels}/, test/{...}/"
RECIPE = {"crop_size": (256, 256), "aug_hflip": True, "eval_batch_size": 1}


def labelled_images(folder: Path, num_classes: int, ignore_index: int, required: bool) -> FileDataset | None:
    image_dir, label_dir = folder / "images", folder / "labels"
    if not image_dir.is_dir():
        # an optional val/ or test/ is skipped unless it holds labels/ or images: then its layout is wrong
        if not required and not (label_dir.is_dir() or (folder.is_dir() and list_images(folder))):
            return None
        raise DataError(f"folder: {image_dir} not found; expected {LAYOUT} under {folder}")
    images = list_images(image_dir)
    if not images:
        raise DataError(f"folder: no images in {image_dir}; expected image files (.png, .jpg, ...)")
    labels = [label_dir / f"{p.stem}.png" for p in images]
    check_files_exist(labels, "folder", "label", f"every image in {image_dir} needs labels/<name>.png (put images "
                      f"without labels in unlabelled/)")
    table = lookup_table({**{i: i for i in range(num_classes)}, ignore_index: 255})
    return FileDataset([p.stem for p in images], images, labels, num_classes, table,
                       fix=f"labels must be 0–{num_classes - 1} or the ignore index {ignore_index}; "
                           f"check --num-classes and --ignore-index")


@register_dataset("folder")
def folder(data_dir=None, num_classes: int | None = None, ignore_index: int | None = 255, **_) -> DataBundle:
    root = find_root(data_dir, ENV_VAR, None, "folder", LAYOUT)
    if num_classes is None:
        raise DataError("folder: pass --num-classes C (labels are 0 … C−1)")
    if not 1 < num_classes <= 255:
        raise DataError(f"folder: --num-classes must be between 2 and 255, got {num_classes}")
    ignore_index = 255 if ignore_index is None else ignore_index
    if not (num_classes <= ignore_index <= 255):
        raise DataError(f"folder: --ignore-index {ignore_index} must be between --num-classes {num_classes} and 255")
    train = labelled_images(root, num_classes, ignore_index, required=True)
    unlabelled = None  # extra images; the training images are unlabelled data too (the paper's protocol)
    if (root / "unlabelled").is_dir() and list_images(root / "unlabelled"):
        images = list_images(root / "unlabelled")
        unlabelled = FileDataset([p.stem for p in images], images, None, num_classes)
    return DataBundle(name="folder", train=train, val=labelled_images(root / "val", num_classes, ignore_index, False),
                      test=labelled_images(root / "test", num_classes, ignore_index, False),
                      class_names=[f"class_{i}" for i in range(num_classes)], palette=voc_palette(num_classes),
                      unlabelled=unlabelled, recipe=dict(RECIPE))
