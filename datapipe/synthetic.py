"""``synthetic``: procedurally generated shapes whose class is their SHAPE (SPEC: issue 2).

Each 64×64 image has a textured background and 2–4 objects. An object's class is its outline —
disc, square, triangle, cross or star — while its texture (stripes, checks, dots, blotches, flat) and
its two colours are drawn independently of the class, like the background's. Neither colour nor local
texture tells the class: the network has to see the object's shape, which a handful of labelled
images does not teach well. Objects are scaled and rotated at random and may occlude each other.

Every image is a pure function of (seed, split, index): nothing is stored, any sample can be re-made.
"""
from __future__ import annotations

import cv2
import numpy as np

from .base import DataBundle, SegDataset
from .registry import register_dataset

CLASS_NAMES = ["background", "disc", "square", "triangle", "cross", "star"]
PALETTE = np.array([[0, 0, 0], [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48]],
                   np.uint8)
SPLIT_CODES = {"train": 0, "val": 1, "test": 2}


def texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """(size, size) float32 pattern in [0, 1] of a random family with random scale and orientation."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    angle = rng.uniform(0, np.pi)
    u = xx * np.cos(angle) + yy * np.sin(angle)
    v = -xx * np.sin(angle) + yy * np.cos(angle)
    period = rng.uniform(3.0, 9.0)
    kind = rng.integers(0, 5)
    if kind == 0:  # stripes
        return (np.sin(2 * np.pi * u / period) > 0).astype(np.float32)
    if kind == 1:  # checks
        return ((np.floor(u / period) + np.floor(v / period)) % 2).astype(np.float32)
    if kind == 2:  # dots
        du = (u % period) - period / 2
        dv = (v % period) - period / 2
        return (du**2 + dv**2 < (period * 0.3) ** 2).astype(np.float32)
    if kind == 3:  # blotches: thresholded smooth noise
        noise = cv2.GaussianBlur(rng.standard_normal((size, size)).astype(np.float32), (0, 0), period / 2)
        return (noise > 0).astype(np.float32)
    return np.zeros((size, size), np.float32)  # flat


def colourise(pattern: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(H, W) pattern → (H, W, 3) float RGB between two random colours, plus a little pixel noise."""
    c0, c1 = rng.uniform(0, 255, size=(2, 3)).astype(np.float32)
    image = c0 + pattern[..., None] * (c1 - c0)
    return image + rng.normal(0, 6, size=image.shape).astype(np.float32)


def shape_polygon(cls: int, centre, radius: float, angle: float) -> np.ndarray | None:
    """Vertices (K, 2) of a class outline; None for the disc (drawn as a circle)."""
    if cls == 1:
        return None
    if cls == 2:
        t = np.arange(4) * np.pi / 2 + np.pi / 4
        r = np.full(4, radius)
    elif cls == 3:
        t = np.arange(3) * 2 * np.pi / 3
        r = np.full(3, radius * 1.1)
    elif cls == 4:  # plus-shaped cross: 12 vertices
        a, b = radius, radius * 0.38
        pts = np.array([[b, a], [b, b], [a, b], [a, -b], [b, -b], [b, -a], [-b, -a], [-b, -b], [-a, -b],
                        [-a, b], [-b, b], [-b, a]])
        t = np.arctan2(pts[:, 1], pts[:, 0])
        r = np.hypot(pts[:, 0], pts[:, 1])
    else:  # five-pointed star
        t = np.arange(10) * np.pi / 5
        r = np.where(np.arange(10) % 2 == 0, radius * 1.15, radius * 0.5)
    t = t + angle
    return np.stack([centre[0] + r * np.cos(t), centre[1] + r * np.sin(t)], axis=1)


def render(rng: np.random.Generator, size: int = 64, n_objects=(2, 4), radius_range=(7.0, 15.0)):
    """One sample: (image (size, size, 3) uint8 RGB, label (size, size) uint8)."""
    image = colourise(texture(rng, size), rng)
    label = np.zeros((size, size), np.uint8)
    for _ in range(int(rng.integers(n_objects[0], n_objects[1] + 1))):
        cls = int(rng.integers(1, len(CLASS_NAMES)))
        radius = rng.uniform(*radius_range)
        centre = rng.uniform(radius * 0.5, size - radius * 0.5, size=2)
        mask = np.zeros((size, size), np.uint8)
        polygon = shape_polygon(cls, centre, radius, rng.uniform(0, 2 * np.pi))
        shift = 4  # sub-pixel vertex precision
        if polygon is None:
            cv2.circle(mask, tuple(int(round(c * 2**shift)) for c in centre), int(round(radius * 2**shift)), 1,
                       -1, cv2.LINE_8, shift)
        else:
            cv2.fillPoly(mask, [np.round(polygon * 2**shift).astype(np.int32)], 1, cv2.LINE_8, shift)
        fill = colourise(texture(rng, size), rng)
        image[mask > 0] = fill[mask > 0]
        label[mask > 0] = cls
    return np.clip(image, 0, 255).astype(np.uint8), label


class SyntheticShapes(SegDataset):
    def __init__(self, split: str, length: int, seed: int = 0, size: int = 64):
        super().__init__(len(CLASS_NAMES))
        self.split, self.length, self.seed, self.size = split, length, seed, size
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # rendering costs ~3 ms; keep each once

    def __len__(self) -> int:
        return self.length

    def sample_id(self, index: int) -> str:
        return f"{self.split}_{index:06d}"

    def _render(self, index: int):
        if not 0 <= index < self.length:
            raise IndexError(index)
        if index not in self._cache:
            rng = np.random.default_rng([self.seed, SPLIT_CODES[self.split], index])
            self._cache[index] = render(rng, self.size)
        return self._cache[index]

    def load_image(self, index: int) -> np.ndarray:
        return self._render(index)[0]

    def read_label(self, index: int) -> np.ndarray:
        return self._render(index)[1]


RECIPE = {
    "arch": "unet_small",
    "crop_size": (64, 64),
    "aug_scale_range": (0.75, 1.25),
    "aug_hflip": True,
    "batch_size": 16,
    "optimizer": "adam",
    "lr": 1e-3,
    "iters": 3000,
    "eval_every": 500,
    "eval_batch_size": 32,
    "n_sup": 20,
}


@register_dataset("synthetic")
def synthetic(data_dir=None, synthetic_seed: int = 0, n_train: int = 4000, n_val: int = 500, **_) -> DataBundle:
    """Generated on demand (``data_dir`` is not used); other datasets' options are ignored."""
    return DataBundle(
        name="synthetic",
        train=SyntheticShapes("train", n_train, synthetic_seed),
        val=SyntheticShapes("val", n_val, synthetic_seed),
        class_names=list(CLASS_NAMES),
        palette=PALETTE,
        recipe=dict(RECIPE),
    )
