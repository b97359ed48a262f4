"""``synthetic``: procedurally generated objects whose class is their TEXTURE.

Each 64×64 image has a smooth, blotchy background and 2–4 objects. An object's class is the family
of its texture — stripes, checks, dots, waves or grid — while its colours, the texture's period and
orientation, and the object's outline (disc, square, triangle, cross, star, at random size and
rotation) are drawn independently of the class. Colour says nothing about the class; the network has
to recognise the pattern under changes of scale, orientation and contrast, which a handful of
labelled images covers poorly. Objects may occlude each other.

Every image is a pure function of (seed, split, index): nothing is stored, any sample can be re-made.
"""
from __future__ import annotations

import cv2
import numpy as np

from .base import DataBundle, GeneratedDataset
from .registry import register_dataset

CLASS_NAMES = ["background", "stripes", "checks", "dots", "waves", "grid"]
PALETTE = np.array([[0, 0, 0], [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48]],
                   np.uint8)


def texture(cls: int, rng: np.random.Generator, size: int) -> np.ndarray:
    """(size, size) binary float32 pattern of texture class ``cls`` (1–5), random period and angle."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    angle = rng.uniform(0, np.pi)
    u = xx * np.cos(angle) + yy * np.sin(angle) + rng.uniform(0, 100)
    v = -xx * np.sin(angle) + yy * np.cos(angle) + rng.uniform(0, 100)
    period = rng.uniform(4.0, 10.0)
    if cls == 1:  # stripes
        return (np.sin(2 * np.pi * u / period) > 0).astype(np.float32)
    if cls == 2:  # checks
        return ((np.floor(u / period) + np.floor(v / period)) % 2).astype(np.float32)
    if cls == 3:  # dots
        du, dv = (u % period) - period / 2, (v % period) - period / 2
        return (du**2 + dv**2 < (period * rng.uniform(0.25, 0.35)) ** 2).astype(np.float32)
    if cls == 4:  # waves: stripes bent by a sinusoid along them
        bend = period * rng.uniform(0.3, 0.6) * np.sin(2 * np.pi * v / (period * rng.uniform(1.5, 3.0)))
        return (np.sin(2 * np.pi * (u + bend) / period) > 0).astype(np.float32)
    if cls == 5:  # grid of thin lines
        width = period * rng.uniform(0.2, 0.3)
        return (((u % period) < width) | ((v % period) < width)).astype(np.float32)
    raise ValueError(f"no texture for class {cls}")


def two_colours(rng: np.random.Generator, min_contrast: float = 60.0) -> np.ndarray:
    """(2, 3) random RGB colours whose mean intensities differ by at least ``min_contrast``."""
    while True:
        colours = rng.uniform(0, 255, size=(2, 3)).astype(np.float32)
        if abs(colours[0].mean() - colours[1].mean()) >= min_contrast:
            return colours


def background(rng: np.random.Generator, size: int) -> np.ndarray:
    """(size, size, 3) float: smooth blotches between two colours (no sharp edges)."""
    noise = cv2.GaussianBlur(rng.standard_normal((size, size)).astype(np.float32), (0, 0), rng.uniform(3, 8))
    t = np.clip(0.5 + noise / (4 * noise.std() + 1e-6), 0, 1)[..., None]
    c0, c1 = two_colours(rng, 0.0)
    return c0 + t * (c1 - c0)


def outline(rng: np.random.Generator, size: int, centre, radius: float) -> np.ndarray:
    """(size, size) uint8 mask of a random outline (disc, square, triangle, cross or star)."""
    kind, angle = int(rng.integers(0, 5)), rng.uniform(0, 2 * np.pi)
    mask = np.zeros((size, size), np.uint8)
    shift = 4  # sub-pixel vertex precision
    if kind == 0:
        cv2.circle(mask, tuple(int(round(c * 2**shift)) for c in centre), int(round(radius * 2**shift)), 1, -1,
                   cv2.LINE_8, shift)
        return mask
    if kind == 1:
        t, r = np.arange(4) * np.pi / 2 + np.pi / 4, np.full(4, radius)
    elif kind == 2:
        t, r = np.arange(3) * 2 * np.pi / 3, np.full(3, radius * 1.2)
    elif kind == 3:  # plus-shaped cross
        a, b = radius, radius * 0.45
        pts = np.array([[b, a], [b, b], [a, b], [a, -b], [b, -b], [b, -a], [-b, -a], [-b, -b], [-a, -b],
                        [-a, b], [-b, b], [-b, a]])
        t, r = np.arctan2(pts[:, 1], pts[:, 0]), np.hypot(pts[:, 0], pts[:, 1])
    else:  # five-pointed star
        t = np.arange(10) * np.pi / 5
        r = np.where(np.arange(10) % 2 == 0, radius * 1.2, radius * 0.6)
    polygon = np.stack([centre[0] + r * np.cos(t + angle), centre[1] + r * np.sin(t + angle)], axis=1)
    cv2.fillPoly(mask, [np.round(polygon * 2**shift).astype(np.int32)], 1, cv2.LINE_8, shift)
    return mask


def render(rng: np.random.Generator, size: int = 64, n_objects=(2, 4), radius_range=(8.0, 16.0)):
    """One sample: (image (size, size, 3) uint8 RGB, label (size, size) uint8)."""
    image = background(rng, size)
    label = np.zeros((size, size), np.uint8)
    for _ in range(int(rng.integers(n_objects[0], n_objects[1] + 1))):
        cls = int(rng.integers(1, len(CLASS_NAMES)))
        radius = rng.uniform(*radius_range)
        mask = outline(rng, size, rng.uniform(radius * 0.5, size - radius * 0.5, size=2), radius) > 0
        c0, c1 = two_colours(rng)
        fill = c0 + texture(cls, rng, size)[..., None] * (c1 - c0)
        image[mask] = fill[mask]
        label[mask] = cls
    image += rng.normal(0, 5, size=image.shape).astype(np.float32)
    return np.clip(image, 0, 255).astype(np.uint8), label


RECIPE = {
    "arch": "unet_small",
    "crop_size": (64, 64),
    "aug_scale_range": (0.75, 1.25),
    "aug_hflip": True,
    "batch_size": 16,
    "optimizer": "adam",
    "lr": 1e-3,
    "iters": 2500,
    "eval_every": 500,
    "eval_batch_size": 32,
    "n_sup": 100,
}


@register_dataset("synthetic")
def synthetic(data_dir=None, synthetic_seed: int = 0, n_train: int = 4000, n_val: int = 500, **_) -> DataBundle:
    """Generated on demand (``data_dir`` is not used); other datasets' options are ignored."""
    return DataBundle(
        name="synthetic",
        train=GeneratedDataset(len(CLASS_NAMES), "train", n_train, synthetic_seed, render),
        val=GeneratedDataset(len(CLASS_NAMES), "val", n_val, synthetic_seed, render),
        class_names=list(CLASS_NAMES),
        palette=PALETTE,
        recipe=dict(RECIPE),
    )
