"""Geometric augmentation with OpenCV that records its affine matrix.

Every training view is ONE ``cv2.warpAffine`` of the source image with a 2×3 matrix ``M`` that maps
source pixel coordinates to view pixel coordinates (OpenCV's convention: pixel centres at integer
coordinates). Scale, rotation, flips and the crop offset are composed into ``M``; pixels that come
from outside the source are padding: label 255 and validity 0. Keeping ``M`` lets the standard-
augmentation regularizer relate two views of one image.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


def translation(dx: float, dy: float) -> np.ndarray:
    return np.array([[1.0, 0.0, dx], [0.0, 1.0, dy], [0.0, 0.0, 1.0]])


def scaling(s: float) -> np.ndarray:
    """Scale about pixel centres: x' = s·(x + ½) − ½, as ``cv2.resize`` does."""
    return translation(s * 0.5 - 0.5, s * 0.5 - 0.5) @ np.diag([s, s, 1.0])


def rotation(degrees: float, cx: float, cy: float) -> np.ndarray:
    m = np.eye(3)
    m[:2] = cv2.getRotationMatrix2D((cx, cy), degrees, 1.0)
    return m


def flip(width: int, height: int, horizontal: bool, vertical: bool) -> np.ndarray:
    """Mirror inside a width×height frame (pixel x ↦ W − 1 − x)."""
    m = np.eye(3)
    if horizontal:
        m[0, 0], m[0, 2] = -1.0, width - 1.0
    if vertical:
        m[1, 1], m[1, 2] = -1.0, height - 1.0
    return m


@dataclass
class AugParams:
    """Settings of the geometric augmentation (dataset recipe, overridable by options)."""

    crop_size: tuple[int, int] | None = None  # (H, W); None: the whole (scaled) image, no crop
    scale_range: tuple[float, float] = (1.0, 1.0)
    scale_step: float = 0.0  # > 0: scale drawn from low, low + step, ..., high (Hung et al.'s 0.5:0.1:1.5)
    scale_log_uniform: bool = False  # log(scale) uniform: the authors' draw for a maximum scale (ISIC)
    rot_mag: float = 0.0  # rotation ~ U(−rot_mag, rot_mag) degrees
    hflip: bool = False
    vflip: bool = False
    hvflip: bool = False  # diagonal flip (transpose), as for ISIC
    centre_small: bool = False  # an image smaller than the crop sits in its centre (the authors' padding)
    reflect_border: bool = False  # image pixels outside the source mirrored in (still invalid; the authors' ISIC)
    authors_interp: bool = False  # labelled images nearest-neighbour, single unlabelled views nearest or bilinear
    # at random (the authors' rotate-and-scale crop, ISIC); False: every image bilinear

    def draw_scale(self, rng: np.random.Generator) -> float:
        low, high = self.scale_range
        if self.scale_step > 0:
            n_steps = int(round((high - low) / self.scale_step))
            return low + self.scale_step * int(rng.integers(0, n_steps + 1))
        if self.scale_log_uniform:
            return float(np.exp(rng.uniform(np.log(low), np.log(high))))
        return float(rng.uniform(low, high))


def sample_matrix(params: AugParams, src_hw: tuple[int, int], rng: np.random.Generator,
                  scale: float | None = None, rot: float | None = None,
                  crop_offset_jitter: int = 0, centre: tuple[float, float] | None = None):
    """Draw one augmentation: (M 3×3 source → view pixels, output (H, W), crop centre in scaled frame).

    ``scale``/``rot`` given: use them (paired views share them); ``centre`` given: the crop is centred
    there (in scaled-image pixels) moved by up to ``crop_offset_jitter`` px in each direction.
    """
    src_h, src_w = src_hw
    scale = params.draw_scale(rng) if scale is None else scale
    rot = float(rng.uniform(-params.rot_mag, params.rot_mag)) if rot is None and params.rot_mag > 0 else (rot or 0.0)
    scaled_h, scaled_w = src_h * scale, src_w * scale
    m = scaling(scale)
    if rot:
        m = rotation(rot, (scaled_w - 1) / 2, (scaled_h - 1) / 2) @ m
    out_h, out_w = params.crop_size if params.crop_size is not None else (round(scaled_h), round(scaled_w))
    if centre is None:
        # top-left corner uniform over every position that keeps the crop inside the image, or
        # (image smaller than the crop) that keeps the image inside the crop
        y0 = rng.uniform(min(0.0, scaled_h - out_h), max(0.0, scaled_h - out_h))
        x0 = rng.uniform(min(0.0, scaled_w - out_w), max(0.0, scaled_w - out_w))
        if params.centre_small:  # the authors padded such an image centrally before cropping
            y0 = (scaled_h - out_h) / 2 if scaled_h < out_h else y0
            x0 = (scaled_w - out_w) / 2 if scaled_w < out_w else x0
        y0, x0 = round(y0), round(x0)
    else:
        jitter = rng.integers(-crop_offset_jitter, crop_offset_jitter + 1, size=2) if crop_offset_jitter else (0, 0)
        y0 = round(centre[1] - (out_h - 1) / 2) + int(jitter[0])
        x0 = round(centre[0] - (out_w - 1) / 2) + int(jitter[1])
    m = translation(-x0, -y0) @ m
    view_centre = (x0 + (out_w - 1) / 2, y0 + (out_h - 1) / 2)  # crop centre in the scaled image
    m = flip(out_w, out_h, params.hflip and rng.random() < 0.5, params.vflip and rng.random() < 0.5) @ m
    if params.hvflip and rng.random() < 0.5:  # transpose (a square crop keeps its size)
        m = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]) @ m
        out_h, out_w = out_w, out_h
    return m, (out_h, out_w), view_centre


def warp(image: np.ndarray, m: np.ndarray, out_hw: tuple[int, int], label: np.ndarray | None = None,
         fill=0, ignore_index: int = 255, reflect: bool = False, nearest: bool = False):
    """Apply the 3×3 source→view matrix ``m``.

    image: (H, W, 3) uint8, sampled bilinearly (``nearest``: nearest-neighbour); label: (H, W) uint8 or None.
    Returns (image (h, w, 3), label (h, w) or None, valid (h, w) uint8: 1 where the view pixel's
    nearest source pixel lies inside the source image, 0 for padding). Padding is ``fill``, or with
    ``reflect`` the image mirrored at its border (OpenCV's BORDER_REFLECT_101; still invalid, label ignored).
    """
    size = (out_hw[1], out_hw[0])  # OpenCV wants (width, height)
    m23 = m[:2].astype(np.float64)
    constant = cv2.BORDER_CONSTANT
    valid = cv2.warpAffine(np.ones(image.shape[:2], np.uint8), m23, size, flags=cv2.INTER_NEAREST,
                           borderMode=constant, borderValue=0)
    image = cv2.warpAffine(image, m23, size, flags=cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REFLECT_101 if reflect else constant, borderValue=fill)
    if label is not None:
        label = cv2.warpAffine(label, m23, size, flags=cv2.INTER_NEAREST, borderMode=constant,
                               borderValue=ignore_index)
    return image, label, valid
