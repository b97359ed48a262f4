"""Box masks for Cutout and CutMix, with the semantics of the authors' ``BoxMaskGenerator``.

Self-contained (numpy only): copy this file into your project. Randomness comes from the
``np.random.Generator`` passed to ``generate``.

Per mask:
- draw the area proportion p of each box uniformly from ``prop_range`` (``(a, b)``; a == b for a fixed p);
- random aspect ratio: box height proportion h = p**u with u ~ U(0, 1), width proportion w = p / h;
  fixed aspect ratio: h = w = sqrt(p);  with ``prop_by_area=False`` h and w are drawn directly from
  ``prop_range`` (sizing by side length);
- with n boxes each side is scaled by sqrt(1/n), so n boxes cover about the same total area as one;
- ``within_bounds``: each box lies inside the image (position uniform over the allowed range);
  otherwise its centre is uniform over the image and it may leave it;
- boxes are combined by XOR; ``invert=True`` (the original's default) starts from a mask of zeros, so
  boxes are 1; ``invert=False`` starts from ones, so boxes are 0.
"""
from __future__ import annotations

import numpy as np


def parse_range(value, what: str) -> tuple[float, float]:
    """``0.5`` / ``"0.5"`` → (0.5, 0.5);  ``"0:1"`` / ``(0, 1)`` → (0.0, 1.0); ``what`` names it in errors."""
    if isinstance(value, str):
        parts = value.split(":")
        if len(parts) not in (1, 2):
            raise ValueError(f"{what} {value!r} must be a number or 'a:b'")
        return float(parts[0]), float(parts[-1])
    if np.isscalar(value):
        return float(value), float(value)
    low, high = (float(v) for v in value)
    return low, high


def parse_prop_range(value) -> tuple[float, float]:
    """``0.5`` / ``"0.5"`` → (0.5, 0.5);  ``"0:1"`` / ``(0, 1)`` → (0.0, 1.0)."""
    low, high = parse_range(value, "mask proportion range")
    if not 0.0 <= low <= high <= 1.0:
        raise ValueError(f"mask proportion range {value!r} must satisfy 0 <= a <= b <= 1")
    return low, high


class BoxMaskGenerator:
    def __init__(self, prop_range=0.5, n_boxes: int = 1, random_aspect_ratio: bool = True,
                 prop_by_area: bool = True, within_bounds: bool = True, invert: bool = True):
        if n_boxes < 1:
            raise ValueError(f"n_boxes must be >= 1, got {n_boxes}")
        self.prop_range = parse_prop_range(prop_range)
        self.n_boxes = n_boxes
        self.random_aspect_ratio = random_aspect_ratio
        self.prop_by_area = prop_by_area
        self.within_bounds = within_bounds
        self.invert = invert

    def box_sizes(self, n_masks: int, rng: np.random.Generator) -> np.ndarray:
        """(n_masks, n_boxes, 2) box (height, width) as proportions of the image sides."""
        low, high = self.prop_range
        shape = (n_masks, self.n_boxes)
        if self.prop_by_area:
            area = rng.uniform(low, high, size=shape)
            if self.random_aspect_ratio:
                # h = p**u; p = 0 gives an empty box (log(0) would give NaN)
                u = rng.uniform(0.0, 1.0, size=shape)
                with np.errstate(divide="ignore", invalid="ignore"):
                    h = np.where(area > 0, np.exp(u * np.log(np.maximum(area, 1e-300))), 0.0)
                    w = np.where(area > 0, area / np.maximum(h, 1e-300), 0.0)
            else:
                h = w = np.sqrt(area)
        else:
            h = rng.uniform(low, high, size=shape)
            w = rng.uniform(low, high, size=shape) if self.random_aspect_ratio else h.copy()
        scale = np.sqrt(1.0 / self.n_boxes)
        return np.stack([h * scale, w * scale], axis=2)

    def rectangles(self, n_masks: int, mask_shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
        """(n_masks, n_boxes, 4) integer boxes (y0, x0, y1, x1), possibly outside the image."""
        hw = np.array(mask_shape, dtype=np.float64)
        sizes = np.round(self.box_sizes(n_masks, rng) * hw)
        if self.within_bounds:
            top_left = np.round((hw - sizes) * rng.uniform(0.0, 1.0, size=sizes.shape))
            boxes = np.concatenate([top_left, top_left + sizes], axis=2)
        else:
            centre = np.round(hw * rng.uniform(0.0, 1.0, size=sizes.shape))
            boxes = np.concatenate([centre - sizes * 0.5, centre + sizes * 0.5], axis=2)
        return boxes.astype(np.int64)

    def generate(self, n_masks: int, mask_shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
        """(n_masks, 1, H, W) float32 masks of 0 and 1."""
        height, width = mask_shape
        masks = np.zeros((n_masks, 1, height, width), dtype=np.float32)
        for mask, boxes in zip(masks, self.rectangles(n_masks, mask_shape, rng), strict=True):
            for y0, x0, y1, x1 in boxes:
                y0, y1 = np.clip([y0, y1], 0, height)
                x0, x1 = np.clip([x0, x1], 0, width)
                mask[0, y0:y1, x0:x1] = 1.0 - mask[0, y0:y1, x0:x1]  # XOR
        return masks if self.invert else 1.0 - masks
