"""CowOut and CowMix (French et al., "Milking CowMask", 2020): Cutout/CutMix with cow-pattern masks.

Beyond the paper: irregular masks instead of boxes, same plug-ins otherwise. A mask is
Gaussian noise smoothed with a Gaussian of σ drawn log-uniformly from ``sigma_range`` (pixels),
thresholded so that a chosen proportion p of the pixels is 1:
threshold = erfinv(2p − 1)·√2·std + mean of the smoothed noise, mask = smoothed ≤ threshold
(smoothed noise is Gaussian, so P(mask = 1) = Φ(erfinv(2p − 1)·√2) = p). p per mask is drawn
uniformly from ``prop_range`` (CowMix 0.5; CowOut 0:1, as Cutout's box area).

``CowMaskGenerator`` needs numpy and scipy only and has the ``generate`` method of
``masks.BoxMaskGenerator``: to have the masks in your code, copy it with ``gaussian_blur``,
``reflect_blur_matrices`` and ``kernel_radii`` (tests/test_copy_paste.py checks that these suffice).

The smoothing is scipy's ``gaussian_filter(noise, σ, mode="reflect", truncate=4.0)``. Where the kernel is
long for the image (the default σ of 4–16 px on a 64-px crop: 33–129 taps), the same linear filter is
computed as two matrix products instead, B_H · noise · B_Wᵀ with B the filter's matrix along each axis
(``reflect_blur_matrices``): equal to scipy's output up to float64 rounding (< 1e-15 measured, 1e-13 tested), so the
masks are the same, and ~1.5–2× faster for a batch of 64×64 masks on one CPU thread.
"""
from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter
from scipy.special import erfinv

from .box_mixing import CutMix, Cutout
from .masks import parse_prop_range, parse_range


def kernel_radii(sigmas, truncate: float = 4.0) -> np.ndarray:
    """scipy.ndimage's Gaussian kernel radius per σ: int(truncate·σ + 0.5) (the kernel has 2·radius + 1 taps)."""
    return (truncate * np.asarray(sigmas, dtype=np.float64) + 0.5).astype(np.int64)


def reflect_blur_matrices(size: int, sigmas: np.ndarray, truncate: float = 4.0) -> np.ndarray:
    """(n, size, size) matrices B with B @ v = ``scipy.ndimage.gaussian_filter1d(v, σ_i, mode="reflect",
    truncate=truncate)`` for a signal v of length ``size``: scipy's normalised kernel of radius
    int(truncate·σ + 0.5), the signal extended by its mirror images (d c b a | a b c d | d c b a, repeated
    for kernels longer than the signal)."""
    sigmas = np.asarray(sigmas, dtype=np.float64)
    radii = kernel_radii(sigmas, truncate)
    offsets = np.arange(-radii.max(), radii.max() + 1)
    weights = np.exp(-0.5 * offsets**2 / sigmas[:, None] ** 2) * (np.abs(offsets) <= radii[:, None])
    weights /= weights.sum(axis=1, keepdims=True)
    rows = np.arange(size)
    source = (rows[:, None] + offsets) % (2 * size)  # position in one period of the mirrored signal
    source = np.where(source >= size, 2 * size - 1 - source, source)
    n = len(sigmas)
    flat = np.arange(n)[:, None, None] * size * size + rows[:, None] * size + source  # (n, size, taps)
    values = np.broadcast_to(weights[:, None, :], flat.shape)
    return np.bincount(flat.ravel(), values.ravel(), n * size * size).reshape(n, size, size)


def gaussian_blur(images: np.ndarray, sigmas: np.ndarray, truncate: float = 4.0) -> np.ndarray:
    """(n, H, W) images, image i smoothed as ``gaussian_filter(images[i], sigmas[i], mode="reflect",
    truncate=truncate)``; by two matrix products where that is cheaper (long kernels on small images)."""
    n, height, width = images.shape
    taps = 2 * kernel_radii(sigmas, truncate) + 1
    # matrix products cost H·W·(H + W) multiply-adds per image, the filter ≈ 2·H·W·taps at a far lower
    # rate: on one CPU thread the products were faster below (H + W) / taps ≈ 10 (we switch below 8)
    if n and height + width <= 8 * taps.min():
        blur_h = reflect_blur_matrices(height, sigmas, truncate)
        blur_w = blur_h if width == height else reflect_blur_matrices(width, sigmas, truncate)
        return blur_h @ images @ blur_w.transpose(0, 2, 1)
    return np.stack([gaussian_filter(images[i], sigmas[i], mode="reflect", truncate=truncate) for i in range(n)])


def parse_sigma_range(value) -> tuple[float, float]:
    """``8`` / ``"8"`` → (8.0, 8.0);  ``"4:16"`` / ``(4, 16)`` → (4.0, 16.0); σ in pixels, 0 < a <= b."""
    low, high = parse_range(value, "sigma range")
    if not 0.0 < low <= high:
        raise ValueError(f"sigma range {value!r} must satisfy 0 < a <= b")
    return low, high


class CowMaskGenerator:
    def __init__(self, prop_range=(0.5, 0.5), sigma_range=(4.0, 16.0)):
        self.prop_range = tuple(float(v) for v in prop_range)
        self.sigma_range = tuple(float(v) for v in sigma_range)
        if not 0.0 <= self.prop_range[0] <= self.prop_range[1] <= 1.0:
            raise ValueError(f"proportion range {prop_range} must satisfy 0 <= a <= b <= 1")
        if not 0.0 < self.sigma_range[0] <= self.sigma_range[1]:
            raise ValueError(f"sigma range {sigma_range} must satisfy 0 < a <= b")

    def generate(self, n_masks: int, mask_shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
        """(n_masks, 1, H, W) float32 masks of 0 and 1; about a proportion p of each mask is 1."""
        p = rng.uniform(*self.prop_range, size=n_masks)
        log_low, log_high = np.log(self.sigma_range)
        sigmas = np.exp(rng.uniform(log_low, log_high, size=n_masks))
        noise = rng.standard_normal((n_masks, *mask_shape))
        # (n, H, W); a periodic (FFT) blur would be faster, but with σ near the image size it leaves so few
        # blobs that the kept share drifts from p (0.22 for p = 0.2 at σ = 16 on 48×64)
        smooth = gaussian_blur(noise, sigmas)
        mean, std = smooth.mean(axis=(1, 2)), smooth.std(axis=(1, 2))
        with np.errstate(invalid="ignore"):  # p = 0 or 1: threshold ∓inf
            threshold = erfinv(2.0 * p - 1.0) * np.sqrt(2.0) * std + mean
        return (smooth <= threshold[:, None, None])[:, None].astype(np.float32)


def cow_mask_generator(mask_prop_range="0.5", cowmix_sigma_range="4:16") -> CowMaskGenerator:
    """A ``CowMaskGenerator`` from the training script's option names."""
    return CowMaskGenerator(parse_prop_range(mask_prop_range), parse_sigma_range(cowmix_sigma_range))


class CowOut(Cutout):
    """Cutout with a cow mask: student sees x·M, loss where M = 1; kept proportion p ~ U(0, 1)."""

    defaults = {"mask_prop_range": "0:1"}
    mask_generator_factory = staticmethod(cow_mask_generator)


class CowMix(CutMix):
    """CutMix with a cow mask: student sees x_a·(1 − M) + x_b·M with half of the pixels from each."""

    defaults = {"mask_prop_range": "0.5"}
    mask_generator_factory = staticmethod(cow_mask_generator)
