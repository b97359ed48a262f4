"""Datasets read from disk: roots, image and label files, and their one-line errors.

A dataset root comes from ``--data-dir``, else the dataset's environment variable, else a documented
default (relative to the directory you run from). Images are read with Pillow as RGB uint8; labels
are PNGs of class indices (palette PNGs give their palette INDICES, never colours), optionally mapped
through a lookup table (Cityscapes labelIds → train ids, ISIC 0/255 → 0/1). Every problem raises a
``DataError`` of one line that names the file and the fix.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from PIL import Image

from .base import DataError, SegDataset, check_label

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".ppm", ".webp")
PREPARED_MARK = "prepared.json"  # written by ``prepare_data.py prepare`` when a copy is complete
UNFINISHED_MARK = "prepare_unfinished.json"  # present while ``prepare`` runs (removed when it finishes)


def find_root(data_dir, env_var: str, default: str | None, name: str, layout: str) -> Path:
    """``data_dir`` > ``$env_var`` > ``default``; a missing folder is a one-line error naming the layout."""
    chosen = data_dir or os.environ.get(env_var) or default
    if chosen is None:
        raise DataError(f"{name}: no dataset root given; pass --data-dir or set {env_var} (expected {layout})")
    root = Path(chosen).expanduser()
    if not root.is_dir():
        raise DataError(f"{name}: dataset root {root} not found; expected {layout}; "
                        f"pass --data-dir or set {env_var}")
    unfinished = root / UNFINISHED_MARK
    if unfinished.exists():
        try:  # the mark names the source the copy is made from (prepare_data.py)
            source = json.loads(unfinished.read_text()).get("source")
        except (OSError, ValueError, AttributeError):
            source = None
        data_dir = f" --data-dir {source}" if isinstance(source, str) else " --data-dir <the original data>"
        raise DataError(f"{name}: {root} is an unfinished prepared copy ({unfinished} exists); "
                        f"rerun `python prepare_data.py prepare {name}{data_dir} --out-dir {root}` to finish it")
    return root


def is_prepared(root: Path) -> bool:
    return (root / PREPARED_MARK).is_file()


def require_dir(path: Path, name: str, fix: str) -> Path:
    if not path.is_dir():
        raise DataError(f"{name}: folder {path} not found; {fix}")
    return path


def list_images(folder: Path, exclude_suffix: str | None = None) -> list[Path]:
    """Image files directly in ``folder``, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
                  and not (exclude_suffix and p.stem.endswith(exclude_suffix)))


def read_list(path: Path, name: str, fix: str) -> list[str]:
    """Image ids of a list file: the stem of the first token of each non-empty line (``2007_000032`` or
    ``/JPEGImages/2007_000032.jpg /SegmentationClassAug/2007_000032.png`` give the same id)."""
    if not path.is_file():
        raise DataError(f"{name}: list file {path} not found; {fix}")
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()  # -sig: a byte-order mark is not a name
    except UnicodeDecodeError:
        raise DataError(f"{name}: list file {path} is not a text file; {fix}") from None
    ids = [Path(line.split()[0]).stem for line in lines if line.strip()]
    if not ids:
        raise DataError(f"{name}: list file {path} is empty; {fix}")
    return ids


def check_files_exist(paths, name: str, what: str, fix: str) -> None:
    """One error naming the first missing file (and how many more are missing)."""
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise DataError(f"{name}: {what} {missing[0]} not found{more}; {fix}")


def read_image(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB; a missing, truncated or non-image file is a one-line error naming it."""
    try:
        with Image.open(path) as image:
            return np.array(image.convert("RGB"))
    except FileNotFoundError:
        raise DataError(f"image {path} not found; restore the file or remove it from the dataset") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise DataError(f"cannot read image {path} ({' '.join(str(err).split())}); the file is corrupt or not "
                        f"an image: download it again or remove it from the dataset") from None


def image_size(path: Path) -> tuple[int, int]:
    """(H, W) from the file header, without decoding the pixels."""
    try:
        with Image.open(path) as image:
            return image.height, image.width
    except FileNotFoundError:
        raise DataError(f"image {path} not found; restore the file or remove it from the dataset") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise DataError(f"cannot read image {path} ({' '.join(str(err).split())}); the file is corrupt or not "
                        f"an image: download it again or remove it from the dataset") from None


def read_label_png(path: Path) -> np.ndarray:
    """(H, W) integer class indices. A palette ('P') PNG gives its palette indices, not its colours."""
    try:
        with Image.open(path) as image:
            if image.mode in ("RGB", "RGBA", "LA", "CMYK", "YCbCr"):
                raise DataError(f"label {path} is a {image.mode} colour image; expected class indices (a palette "
                                f"or single-channel PNG): convert it to indices or use the dataset's index labels")
            return np.array(image).astype(np.int64) if image.mode != "P" else np.array(image)
    except FileNotFoundError:
        raise DataError(f"label {path} not found; restore the file or remove its image from the dataset") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise DataError(f"cannot read label {path} ({' '.join(str(err).split())}); the file is corrupt: "
                        f"download it again or remove its image from the dataset") from None


def lookup_table(mapping: dict[int, int]) -> np.ndarray:
    """A 256-entry table raw value → class index (255 = ignore); raw values not in ``mapping`` → −1 (bad)."""
    table = np.full(256, -1, np.int16)
    for raw, cls in mapping.items():
        table[raw] = cls
    return table


class FileDataset(SegDataset):
    """Samples stored as files: ``ids[i]``, ``images[i]`` and ``labels[i]`` (``labels=None``: images only).

    ``label_map`` (256 entries, see ``lookup_table``) maps the raw label values; raw values it marks −1
    are reported with the file. Labels are checked when loaded: values, and size against the image.
    """

    def __init__(self, ids: list[str], images: list[Path], labels: list[Path] | None, num_classes: int,
                 label_map: np.ndarray | None = None, fix: str = "fix or replace the label file"):
        super().__init__(num_classes)
        self.ids, self.images, self.labels, self.label_map, self.fix = ids, images, labels, label_map, fix
        self.has_labels = labels is not None

    def __len__(self) -> int:
        return len(self.ids)

    def sample_id(self, index: int) -> str:
        return self.ids[index]

    def label_source(self, index: int) -> str:
        return f"label {self.labels[index]}"

    def load_image(self, index: int) -> np.ndarray:
        return read_image(self.images[index])

    def read_label(self, index: int) -> np.ndarray:
        return self.map_label(read_label_png(self.labels[index]), index)

    def map_label(self, raw: np.ndarray, index: int) -> np.ndarray:
        """Sample ``index``'s raw label values (as its file holds them) → class indices, bad values reported."""
        if self.label_map is None:
            return raw
        inside = (raw >= 0) & (raw < len(self.label_map))
        label = self.label_map[np.where(inside, raw, 0)]
        bad = ~inside | (label < 0)
        if bad.any():
            values = sorted(int(v) for v in np.unique(raw[bad]))[:10]
            raise DataError(f"label {self.labels[index]}: unexpected values {values} for this dataset; "
                            f"{self.fix}")
        return label

    def load_label(self, index: int, raw: np.ndarray | None = None) -> np.ndarray:
        """Sample ``index``'s checked label (values, and size against the image); ``raw``: its file's
        contents, already read."""
        if self.labels is None:
            raise DataError(f"sample {self.ids[index]!r} has no label (unlabelled images only)")
        label = self.read_label(index) if raw is None else self.map_label(raw, index)
        check_label(label, self.num_classes, self.ignore_index, self.label_source(index))
        size = image_size(self.images[index])
        if label.shape != size:
            raise DataError(f"label {self.labels[index]} is {label.shape[1]}×{label.shape[0]} but image "
                            f"{self.images[index]} is {size[1]}×{size[0]} (W×H); they must match pixel for pixel")
        return label.astype(np.uint8, copy=False)


class Concat(SegDataset):
    """Several datasets one after the other (e.g. training images + extra unlabelled images)."""

    def __init__(self, parts: list[SegDataset]):
        super().__init__(parts[0].num_classes)
        self.parts = parts
        self.offsets = np.cumsum([0] + [len(p) for p in parts])
        self.has_labels = all(p.has_labels for p in parts)

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def _locate(self, index: int):
        part = int(np.searchsorted(self.offsets, index, side="right")) - 1
        return self.parts[part], index - int(self.offsets[part])

    def sample_id(self, index: int) -> str:
        part, i = self._locate(index)
        return part.sample_id(i)

    def load_image(self, index: int) -> np.ndarray:
        part, i = self._locate(index)
        return part.load_image(i)

    def load_label(self, index: int) -> np.ndarray:
        part, i = self._locate(index)
        return part.load_label(i)


def voc_palette(n: int = 256) -> np.ndarray:
    """(n, 3) uint8: the Pascal VOC colour map (bits of the class index spread over R, G, B)."""
    palette = np.zeros((n, 3), np.uint8)
    for i in range(n):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette[i] = (r, g, b)
    return palette
