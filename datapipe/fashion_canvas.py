"""``fashion_canvas``: real Fashion-MNIST garments composed onto canvases — a real-image set that trains on a CPU.

Each canvas (64×64 by default) has a smooth, dim colour background and 2–4 garments, each scaled 1–1.6×
(28–45 px), tinted, and pasted at a random place (later ones occlude earlier ones). A garment covers the
pixels where its resized grey image exceeds 40, holes filled; its label is its Fashion-MNIST class + 1
there, background (0) elsewhere. Every canvas is a pure function of (seed, split, index).
Training canvases use the 60,000 training garments; validation canvases the first 5,000 test garments
and test canvases the other 5,000, so no garment is shared between training and evaluation.

The IDX files are read from ``--data-dir``, else ``$SEMISUP_FASHION_MNIST_DIR``, else
``/usr/share/datasets/fashion-mnist`` (Debian package ``dataset-fashion-mnist``), else ``data/fashion-mnist``,
where torchvision downloads them when the machine has internet.
"""
from __future__ import annotations

import gzip
import os
import zlib
from functools import lru_cache, partial
from pathlib import Path

import cv2
import numpy as np
from scipy.ndimage import binary_fill_holes
from torchvision.datasets import FashionMNIST

from .base import DataBundle, DataError, GeneratedDataset
from .files import voc_palette
from .registry import register_dataset

ENV_VAR = "SEMISUP_FASHION_MNIST_DIR"
SYSTEM_DIR = "/usr/share/datasets/fashion-mnist"
DOWNLOAD_DIR = "data/fashion-mnist"
FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "t10k": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
GARMENTS = ["t-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot"]
CLASS_NAMES = ["background", *GARMENTS]
PALETTE = voc_palette(len(CLASS_NAMES))
THRESHOLD = 40  # a garment covers the pixels of its resized grey image above this value (holes filled)

RECIPE = {  # ours: the small CPU network, as for the synthetic set
    "arch": "unet_small",
    "aug_scale_range": (0.8, 1.25),
    "aug_hflip": True,
    "batch_size": 16,
    "optimizer": "adam",
    "lr": 1e-3,
    "lr_sched": "cosine",
    "iters": 3000,  # as in benchmarks/fashion_canvas.py
    "eval_every": 500,
    "eval_batch_size": 100,
    "n_sup": 50,
}


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (``.gz`` or not) as a uint8 array: (N, 28, 28) images or (N,) labels."""
    try:
        data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"cannot read {path} ({err}); download the Fashion-MNIST files again") from None
    if len(data) < 8 or int.from_bytes(data[:4], "big") >> 8 != 0x08 or data[3] not in (1, 3):
        raise DataError(f"{path} is not an IDX file of uint8 data; download the Fashion-MNIST files again")
    ndim = data[3]
    if len(data) < 4 + 4 * ndim:
        raise DataError(f"{path} is truncated inside its header; download the Fashion-MNIST files again")
    shape = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    body = np.frombuffer(data, np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise DataError(f"{path} is truncated ({body.size} of {int(np.prod(shape))} bytes); download it again")
    return body.reshape(shape)


def idx_path(directory: Path, name: str) -> Path | None:
    for folder in (directory, directory / "FashionMNIST" / "raw"):
        for candidate in (folder / f"{name}.gz", folder / name):
            if candidate.is_file():
                return candidate
    return None


def has_files(directory: Path) -> bool:
    return all(idx_path(directory, n) for pair in FILES.values() for n in pair)


def find_idx_dir(data_dir) -> Path:
    """The folder holding the four IDX files; an explicit ``--data-dir`` is the only place looked at."""
    if data_dir is not None:
        if not has_files(Path(data_dir)):
            raise DataError(f"fashion_canvas: {data_dir} does not hold the Fashion-MNIST IDX files "
                            f"({', '.join(FILES['train'] + FILES['t10k'])}, optionally .gz); fix --data-dir")
        return Path(data_dir)
    places = [os.environ.get(ENV_VAR), SYSTEM_DIR, DOWNLOAD_DIR]
    for place in places:
        if place and has_files(Path(place)):
            return Path(place)
    try:  # the machine may have internet
        for train in (True, False):
            FashionMNIST(DOWNLOAD_DIR, train=train, download=True)
    except Exception as err:  # noqa: BLE001  (any download failure becomes one line)
        raise DataError(f"fashion_canvas: Fashion-MNIST not found in {', '.join(p for p in places if p)} and the "
                        f"download failed ({' '.join(str(err).split())[:120]}); install the Debian package "
                        f"dataset-fashion-mnist, set {ENV_VAR} or pass --data-dir") from None
    return Path(DOWNLOAD_DIR)


@lru_cache(maxsize=2)
def load_fashion_mnist(directory: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{"train": (images (60000, 28, 28), classes (60000,)), "t10k": (10000 ...)}, uint8."""
    out = {}
    for part, (images_name, labels_name) in FILES.items():
        images, classes = (read_idx(idx_path(Path(directory), n)) for n in (images_name, labels_name))
        if images.ndim != 3 or classes.ndim != 1 or len(images) != len(classes) or classes.max() >= 10:
            raise DataError(f"fashion_canvas: the {part} IDX files in {directory} do not match (images "
                            f"{images.shape}, labels {classes.shape}); download them again")
        out[part] = (images, classes)
    return out


def render_canvas(rng: np.random.Generator, garments: np.ndarray, classes: np.ndarray, size: int = 64,
                  n_garments=(2, 4), scale_range=(1.0, 1.6)):
    """One canvas: (image (size, size, 3) uint8 RGB, label (size, size) uint8; 0 = background)."""
    background = rng.uniform(0, 90, size=(3, 3, 3)).astype(np.float32)
    image = cv2.resize(background, (size, size), interpolation=cv2.INTER_LINEAR)
    image += rng.normal(0, 5, size=image.shape).astype(np.float32)
    label = np.zeros((size, size), np.uint8)
    for _ in range(int(rng.integers(n_garments[0], n_garments[1] + 1))):
        j = int(rng.integers(len(garments)))
        side = min(size, int(round(28 * rng.uniform(*scale_range))))
        grey = cv2.resize(garments[j], (side, side), interpolation=cv2.INTER_LINEAR).astype(np.float32)
        mask = binary_fill_holes(grey > THRESHOLD)
        colour = grey[..., None] * rng.uniform(0.5, 1.0, size=3).astype(np.float32)
        y0, x0 = (int(rng.integers(0, size - side + 1)) for _ in range(2))
        image[y0:y0 + side, x0:x0 + side][mask] = colour[mask]
        label[y0:y0 + side, x0:x0 + side][mask] = classes[j] + 1
    return np.clip(image, 0, 255).astype(np.uint8), label


def canvases(split: str, length: int, garments: np.ndarray, classes: np.ndarray, seed: int,
             size: int) -> GeneratedDataset:
    return GeneratedDataset(len(CLASS_NAMES), split, length, seed,
                            partial(render_canvas, garments=garments, classes=classes, size=size))


@register_dataset("fashion_canvas")
def fashion_canvas(data_dir=None, fashion_n_train: int = 4000, fashion_n_val: int = 1000, fashion_seed: int = 0,
                   fashion_canvas_size: int = 64, **_) -> DataBundle:
    """Training, validation and test canvases (``fashion_n_val`` each for validation and test)."""
    if fashion_canvas_size < 28:
        raise DataError(f"fashion_canvas: --fashion-canvas-size must be at least 28, got {fashion_canvas_size}")
    data = load_fashion_mnist(str(find_idx_dir(data_dir)))
    (train_g, train_c), (test_g, test_c) = data["train"], data["t10k"]
    half = len(test_g) // 2
    size = fashion_canvas_size
    return DataBundle(
        name="fashion_canvas",
        train=canvases("train", fashion_n_train, train_g, train_c, fashion_seed, size),
        val=canvases("val", fashion_n_val, test_g[:half], test_c[:half], fashion_seed, size),
        test=canvases("test", fashion_n_val, test_g[half:], test_c[half:], fashion_seed, size),
        class_names=list(CLASS_NAMES),
        palette=PALETTE,
        recipe={**RECIPE, "crop_size": (size, size)},
    )
