"""``--split-file``: a text list of training images, matched to the dataset's samples by image id.

Each non-empty line names one image, in any of the public formats:

    2007_000032                                                    plain ids (the Mittal et al. order)
    JPEGImages/2007_000733.jpg SegmentationClass/2007_000733.png   two columns (the classic 92–1464 lists)
    leftImg8bit/train/jena/jena_000078_000019_leftImg8bit.png gtFine/.../jena_000078_000019_gtFine_labelTrainIds.png

A line's id is the first of its tokens whose file name, stem, or stem without a known suffix
(``_leftImg8bit``, ``_gtFine_labelTrainIds``, ...) is a sample id of the dataset. Lines starting with
``#`` are comments. The first ``n_sup`` lines are labelled (all lines when ``n_sup`` is None).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import DataError
from .splits import Split, split_from_order

KNOWN_SUFFIXES = ("_leftImg8bit", "_gtFine_labelTrainIds", "_gtFine_labelIds", "_gtFine_color",
                  "_gtFine_instanceIds", "_segmentation", "_superpixels", "_L")


def candidates(token: str) -> list[str]:
    """The ids a token may stand for: the file name, its stem, the stem without a known suffix."""
    name = token.replace("\\", "/").rsplit("/", 1)[-1]
    stems = [Path(name).stem, name.split(".", 1)[0]]  # ``a.b.png`` → ``a.b`` and ``a``
    out = [name, *stems]
    out += [stem[: -len(s)] for stem in stems for s in KNOWN_SUFFIXES if stem.endswith(s) and len(stem) > len(s)]
    return out


def read_split_file(path, ids: list[str]) -> np.ndarray:
    """Indices into ``ids`` of the images named by the lines of ``path``, in file order."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"split file {path} not found; pass the path of a text list of image names")
    position = {sample_id: i for i, sample_id in enumerate(ids)}
    order, first_line, unknown = [], {}, []
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()  # -sig: a byte-order mark is not a name
    except UnicodeDecodeError:
        raise DataError(f"split file {path} is not a text file; pass a text list of image names") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = next((c for token in line.split() for c in candidates(token) if c in position), None)
        if match is None:
            unknown.append((number, line.strip()))
            continue
        if match in first_line:
            raise DataError(f"split file {path}: line {number} repeats image {match!r} (first on line "
                            f"{first_line[match]}); remove the duplicate")
        first_line[match] = number
        order.append(position[match])
    if unknown:
        number, text = unknown[0]
        raise DataError(f"split file {path}: {len(unknown)} of {len(unknown) + len(order)} lines name no training "
                        f"image of this dataset (first: line {number} {text[:80]!r}); check --dataset, --data-dir "
                        f"and that the list belongs to this dataset's training set")
    if not order:
        raise DataError(f"split file {path} lists no images; it needs one image name per line")
    return np.asarray(order, np.int64)


def split_from_file(path, ids: list[str], n_sup: int | None, n_unsup: int | None, n_val: int,
                    split_seed: int) -> Split:
    """Labelled = the first ``n_sup`` listed images (all when None); unlabelled and held out as in
    ``split_from_order``: held-out images are drawn (seeded) from the images not labelled."""
    listed = read_split_file(path, ids)
    n_sup = len(listed) if n_sup is None else n_sup
    if n_sup > len(listed):
        raise DataError(f"--n-sup {n_sup} is more than the {len(listed)} images listed in split file {path}; "
                        f"lower --n-sup or use a longer list")
    rest = np.setdiff1d(np.arange(len(ids)), listed[:n_sup])
    order = np.concatenate([listed[:n_sup], rest])
    return split_from_order(order, n_sup, n_unsup, n_val, split_seed, n_train=len(ids))
