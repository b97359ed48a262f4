"""The 2D toy experiments of French et al., "Semi-supervised semantic segmentation needs strong, varied
perturbations" (BMVC 2020), supplement C and Figure 1 of the paper.

Two classes of points in [-1, 1]^2 come from a black-and-white boundary image (one sample per pixel,
jittered); an MLP is trained on 10 labelled points with mean teacher consistency on all the points.
With a low-density gap between the classes (`--erode-radius 35`) consistency finds the boundary; with no
gap (`--erode-radius 0`) isotropic perturbation fails, and perturbations constrained to the contours of
the distance map to the true boundary (`--dist-contour-range 4`) succeed again.

    python toy2d.py train --out-dir runs/toy2d-mt-gap                      # one experiment
    python toy2d.py figure1 --out-dir runs/toy2d-figure1                   # the four panels of Figure 1
    python toy2d.py make-boundary --overwrite                              # re-create toy2d_boundary.png
    python toy2d.py make-boundary --kind curve --overwrite                 # re-create toy2d_curve.png

Self-contained (numpy, scipy, torch, OpenCV, Pillow, click): copy this file alone and it works.

Units and conventions. Pixel (row r, column c) of an H x W image covers [c, c+1) x [r, r+1); its centre
(c + 0.5, r + 0.5) maps to u = (c + 0.5) / W * 2 - 1, v = (r + 0.5) / H * 2 - 1, which is the
`grid_sample(align_corners=False)` convention. Points are (x, y) = (u, v). Every length on the command
line is in pixels of the image: 30 px = 30 / 512 * 2 = 0.117 on a 512-pixel image (supplement C).
"""

import os

# Before torch loads OpenMP: busy-waiting OpenMP threads slow everything down on a shared machine.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import copy
import dataclasses
import json
import math
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import click
import cv2
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image
from scipy.ndimage import distance_transform_edt

DEFAULT_BOUNDARY_PATH = Path(__file__).resolve().parent / "toy2d_boundary.png"
DEFAULT_BOUNDARY_SEED = 7
DEFAULT_CURVE_PATH = Path(__file__).resolve().parent / "toy2d_curve.png"
DEFAULT_CURVE_SEED = 7
EVAL_CHUNK = 16384


# ----------------------------------------------------------------------------------------------------
# Data: boundary images, signed distance map, erosion, samples
# ----------------------------------------------------------------------------------------------------


def make_default_boundary(seed: int = DEFAULT_BOUNDARY_SEED, size: int = 512) -> np.ndarray:
    """The project's own boundary: a smooth irregular closed curve, class 1 inside.

    The curve is rho(theta) = 0.52 (1 + sum_k a_k cos(k theta + phi_k)), k = 2..5, in normalised image
    coordinates around a slightly shifted centre; a_k and phi_k come from `seed`. The lobes stay wider
    than the 70 px gap of the paper, so each class stays one connected region after erosion.
    Returns (size, size) bool.
    """
    rng = np.random.default_rng(seed)
    ks = np.arange(2, 6)
    amps = rng.uniform(0.6, 1.0, ks.size) * 0.42 / ks**0.8
    phases = rng.uniform(0.0, 2.0 * np.pi, ks.size)
    cx, cy = rng.uniform(-0.08, 0.08, 2)
    c = (np.arange(size) + 0.5) / size * 2.0 - 1.0
    x, y = np.meshgrid(c, c)
    rho, theta = np.hypot(x - cx, y - cy), np.arctan2(y - cy, x - cx)
    radius = 0.52 * (1.0 + sum(a * np.cos(k * theta + p) for k, a, p in zip(ks, amps, phases, strict=True)))
    return rho < radius


def make_curve_boundary(seed: int = DEFAULT_CURVE_SEED, size: int = 512, share: float = 0.25) -> np.ndarray:
    """The project's second boundary: a smooth irregular open curve across the image from its left to its
    right edge, class 1 below it, so that both classes reach the image border and neither encloses the
    other (`--dataset curve`; the default `boundary` is a closed curve).

    The curve is y(x) = b + sum_k a_k sin(k pi (x + 1) / 2 + phi_k), k = 1..5, in normalised image
    coordinates; a_k = U(0.6, 1) 0.2 / k^0.8 and phi_k come from `seed`, and b is set by bisection so
    that class 1 covers `share` of the pixels (0.25: the authors' isotropic panel, which predicts one
    class everywhere, erred on 24.58 % of their samples). With the default seed the curve stays between
    rows 0.60 and 0.85 of the height and each class stays one connected region after the 35 px erosion.
    Returns (size, size) bool.
    """
    rng = np.random.default_rng(seed)
    ks = np.arange(1, 6)
    amps = rng.uniform(0.6, 1.0, ks.size) * 0.2 / ks**0.8
    phases = rng.uniform(0.0, 2.0 * np.pi, ks.size)
    c = (np.arange(size) + 0.5) / size * 2.0 - 1.0
    wave = sum(a * np.sin(k * np.pi * (c + 1.0) / 2.0 + p) for k, a, p in zip(ks, amps, phases, strict=True))
    below = c[:, None] - wave[None, :]  # class 1 where this exceeds b
    lo, hi = -2.0, 2.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if (below > mid).mean() > share else (lo, mid)
    return below > 0.5 * (lo + hi)


# 16-bit greyscale images (Pillow opens 16-bit PNGs as I;16, older versions as I): mode -> white
WHITE_16BIT = {"I;16": 65535, "I;16B": 65535, "I;16L": 65535, "I;16N": 65535, "I": 65535}


def load_boundary_image(path) -> np.ndarray:
    """Read any image as greyscale in [0, 1] (divided by its white: 255, or 65535 for 16 bits) and threshold
    at 0.5: (H, W) bool, True = class 1. An image of one class only is refused."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"boundary image {path} is a directory; pass an image file (img:PATH)")
    if not path.is_file():
        raise ValueError(f"boundary image not found: {path}; pass an existing image file (img:PATH)")
    try:
        with Image.open(path) as im:
            if im.mode in WHITE_16BIT:
                grey = np.asarray(im, dtype=np.float64) / WHITE_16BIT[im.mode]
            else:
                grey = np.asarray(im.convert("L"), dtype=np.float32) / 255.0
    except Image.DecompressionBombError:
        raise ValueError(f"boundary image {path} has more pixels than Pillow reads safely; shrink it (the "
                         "shipped images are 512x512)") from None
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read boundary image {path} ({exc}); pass a PNG or JPEG, white = class 1") from None
    image = grey >= 0.5
    if image.all() or not image.any():
        raise ValueError(f"{path}: the boundary image must contain both classes (pixels >= 0.5 and < 0.5); "
                         "draw class 1 in white on black")
    return image


def make_spiral_image(size: int = 512, turns: float = 1.75) -> np.ndarray:
    """Two interleaved Archimedean spiral arms; each pixel takes the class of the nearer arm.

    Arm k (k = 0, 1) is rho = a (theta - k pi + 2 pi n) with a = 0.47 size / (2 pi turns); a pixel
    belongs to class 1 when its phase (rho / a - theta) mod 2 pi is closer to pi than to 0.
    Returns (size, size) bool.
    """
    a = 0.47 * size / (2.0 * np.pi * turns)
    c = np.arange(size) + 0.5 - size / 2.0
    x, y = np.meshgrid(c, c)
    phase = np.mod(np.hypot(x, y) / a - np.arctan2(y, x), 2.0 * np.pi)
    return np.cos(phase) < 0.0


def spiral_samples(
    size: int, n_per_arm: int, noise_std: float, rng: np.random.Generator, turns: float = 1.75
) -> tuple[np.ndarray, np.ndarray]:
    """Points along the two arms of `make_spiral_image` (radius uniform in area), jittered by
    `noise_std` px. Returns positions (N, 2) as (x, y) in pixels and labels (N,) int64."""
    a = 0.47 * size / (2.0 * np.pi * turns)
    rho_max = 0.47 * size
    rho = np.sqrt(rng.uniform((0.05 * rho_max) ** 2, rho_max**2, size=(2, n_per_arm)))
    theta = rho / a + np.pi * np.arange(2)[:, None]
    pos = np.stack([np.cos(theta) * rho, np.sin(theta) * rho], axis=-1).reshape(-1, 2) + size / 2.0
    pos = pos + rng.normal(0.0, noise_std, size=pos.shape)
    labels = np.repeat(np.arange(2), n_per_arm)
    return pos, labels


def signed_distance_map(image: np.ndarray) -> np.ndarray:
    """Signed distance to the class boundary, in pixels (supplement C).

    image: (H, W) bool, True = class 1. Class-1 pixels hold +(Euclidean distance from their centre to
    the nearest class-0 pixel centre), class-0 pixels hold -(distance to the nearest class-1 pixel), so
    the two pixels touching the boundary hold +1 and -1 and the value is never 0.
    Returns (H, W) float32.
    """
    if image.all() or not image.any():
        raise ValueError("the boundary image must contain both classes (pixels >= 0.5 and < 0.5)")
    to_class0 = distance_transform_edt(image)
    to_class1 = distance_transform_edt(~image)
    return np.where(image, to_class0, -to_class1).astype(np.float32)


def erode_classes(image: np.ndarray, radius: float) -> np.ndarray:
    """Erode each class region by `radius` px: drop every pixel whose centre lies within `radius` px of
    a pixel of the other class (|signed distance| <= radius). The gap between the classes is then
    about 2 * radius wide; the image border erodes nothing. Returns the kept pixels, (H, W) bool."""
    return np.abs(signed_distance_map(image)) > radius


def image_samples(
    image: np.ndarray, erode_radius: float, noise_std: float, rng: np.random.Generator, option: str = "--erode-radius"
) -> tuple[np.ndarray, np.ndarray]:
    """One sample per kept pixel at its centre + N(0, noise_std^2) px, labelled with the pixel's class.
    Returns positions (N, 2) as (x, y) in pixels and labels (N,) int64."""
    kept = erode_classes(image, erode_radius)
    for cls in (0, 1):
        if not (kept & (image == bool(cls))).any():
            raise ValueError(f"{option} {erode_radius:g} leaves no pixel of class {cls}; use a smaller {option}")
    rows, cols = np.nonzero(kept)
    pos = np.stack([cols, rows], axis=1) + 0.5
    pos = pos + rng.normal(0.0, noise_std, size=pos.shape)
    return pos, image[rows, cols].astype(np.int64)


def choose_labelled(labels: np.ndarray, n_sup: int, balance: bool, rng: np.random.Generator) -> np.ndarray:
    """Indices of `n_sup` labelled samples: equal numbers per class (`balance`, any remainder to the
    lowest classes) or numbers proportional to the class sizes (largest remainder), drawn without
    replacement within each class. Returns sorted (n_sup,) int64."""
    classes, counts = np.unique(labels, return_counts=True)
    if n_sup > labels.size:
        raise ValueError(f"--n-sup {n_sup} is more than the {labels.size} samples; use a smaller --n-sup")
    if balance:
        per_class = np.full(classes.size, n_sup // classes.size)
        per_class[: n_sup % classes.size] += 1
    else:
        share = n_sup * counts / counts.sum()
        per_class = np.floor(share).astype(int)
        per_class[np.argsort(per_class - share)[: n_sup - per_class.sum()]] += 1
    if (per_class > counts).any():
        raise ValueError(f"cannot choose {per_class.tolist()} labelled points from classes of {counts.tolist()} "
                         "samples; use a smaller --n-sup")
    chosen = [
        rng.choice(np.flatnonzero(labels == c), k, replace=False) for c, k in zip(classes, per_class, strict=True)
    ]
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def pixels_to_unit(pos: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(N, 2) pixel positions (x, y) -> [-1, 1] coordinates (align_corners=False convention)."""
    h, w = shape
    return pos / np.array([w, h], dtype=np.float64) * 2.0 - 1.0


def pixel_centres(shape: tuple[int, int]) -> np.ndarray:
    """Centres of every pixel in row-major order: (H * W, 2) as (x, y) in pixels."""
    h, w = shape
    rows, cols = np.mgrid[0:h, 0:w]
    return np.stack([cols.ravel(), rows.ravel()], axis=1) + 0.5


@dataclass
class ToyData:
    """A toy dataset: the class image (ground truth for every pixel) and the samples."""

    name: str
    image: np.ndarray  # (H, W) bool, True = class 1
    pos: np.ndarray  # (N, 2) float64, sample positions (x, y) in pixels
    labels: np.ndarray  # (N,) int64
    sup_pos: np.ndarray  # (n_sup, 2) float64, the labelled points (x, y) in pixels
    sup_labels: np.ndarray  # (n_sup,) int64


# the shipped boundary images: dataset name -> (file, function that re-creates it)
SHIPPED_BOUNDARIES = {
    "boundary": (DEFAULT_BOUNDARY_PATH, make_default_boundary),
    "curve": (DEFAULT_CURVE_PATH, make_curve_boundary),
}
DATASET_CHOICES = "boundary, curve, spiral or img:PATH"


def build_dataset(
    dataset: str,
    erode_radius: float,
    noise_std: float,
    n_sup: int,
    balance: bool,
    rng: np.random.Generator,
    sup_erode_radius: float | None = None,
) -> ToyData:
    """`boundary` or `curve` (the shipped toy2d_boundary.png / toy2d_curve.png, re-created if missing),
    `spiral`, or `img:PATH`.

    The labelled points are chosen among the samples themselves, or, with `sup_erode_radius` set to
    another radius, among the samples of the image eroded by that radius, drawn first from `rng` (so
    they are the very points a run with `erode_radius = sup_erode_radius` labels): the authors drew
    their labelled points once from the gap data (`--sup_path`, 35 px) and used them in every panel."""
    if dataset == "spiral":
        if sup_erode_radius is not None:
            raise ValueError("--sup-erode-radius is not supported with --dataset spiral (its arms have no erosion)")
        image = make_spiral_image()
        pos, labels = spiral_samples(image.shape[0], 5000, noise_std, rng)
    else:
        if dataset in SHIPPED_BOUNDARIES:
            path, make = SHIPPED_BOUNDARIES[dataset]
            image = load_boundary_image(path) if path.is_file() else make()
        elif dataset.startswith("img:"):
            image = load_boundary_image(dataset[4:])
        else:
            raise ValueError(f"unknown --dataset {dataset!r}: use {DATASET_CHOICES}")
        if sup_erode_radius is not None and sup_erode_radius != erode_radius:
            source_pos, source_labels = image_samples(image, sup_erode_radius, noise_std, rng, "--sup-erode-radius")
            sup_idx = choose_labelled(source_labels, n_sup, balance, rng)
            pos, labels = image_samples(image, erode_radius, noise_std, rng)
            return ToyData(dataset, image, pos, labels, source_pos[sup_idx], source_labels[sup_idx])
        pos, labels = image_samples(image, erode_radius, noise_std, rng)
    sup_idx = choose_labelled(labels, n_sup, balance, rng)
    return ToyData(dataset, image, pos, labels, pos[sup_idx], labels[sup_idx])


# ----------------------------------------------------------------------------------------------------
# Constrained perturbation (supplement C)
# ----------------------------------------------------------------------------------------------------


def sample_map(map_t: torch.Tensor, points: torch.Tensor, padding: str = "border") -> torch.Tensor:
    """Bilinear look-up of a map at points. map_t: (1, 1, H, W); points: (N, 2) (x, y) in [-1, 1];
    points outside the image read the nearest border value (`padding="border"`) or 0 (`"zeros"`, what
    the authors' code did: the map is 0 on the boundary, so such points count as lying on it).
    Returns (N,)."""
    grid = points.view(1, 1, -1, 2)
    return F.grid_sample(map_t, grid, mode="bilinear", padding_mode=padding, align_corners=False).view(-1)


def contour_mask(
    dist_map_t: torch.Tensor, x: torch.Tensor, x_hat: torch.Tensor, max_change: float, padding: str = "border"
) -> torch.Tensor:
    """1 where the perturbation x -> x_hat keeps the signed distance to the true boundary within
    `max_change` px, |m(x_hat) - m(x)| <= max_change, else 0 (supplement C: 4 px ~ 0.016).
    dist_map_t: (1, 1, H, W) in px; x, x_hat: (N, 2) in [-1, 1]; `padding` as in `sample_map`.
    Returns (N,) float."""
    change = sample_map(dist_map_t, x_hat, padding) - sample_map(dist_map_t, x, padding)
    return (change.abs() <= max_change).float()


# ----------------------------------------------------------------------------------------------------
# Model and losses
# ----------------------------------------------------------------------------------------------------


class MLP(nn.Module):
    """n_hidden x (Linear -> [BatchNorm] -> ReLU), optional dropout, Linear -> 2 logits (supplement C;
    the authors' release used BatchNorm and dropout 0.5 before the output layer)."""

    def __init__(self, n_hidden: int = 3, hidden_size: int = 512, norm_layer: str = "batch", dropout: float = 0.5):
        super().__init__()
        layers, width = [], 2
        for _ in range(n_hidden):
            layers.append(nn.Linear(width, hidden_size))
            if norm_layer == "batch":
                layers.append(nn.BatchNorm1d(hidden_size))
            layers.append(nn.ReLU())
            width = hidden_size
        self.hidden = nn.Sequential(*layers)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(width, 2)

    def forward(self, x: torch.Tensor, use_dropout: bool = True, rows: torch.Tensor | None = None) -> torch.Tensor:
        """x: (N, 2) -> logits (N, 2). With `rows` (M,), the logits of the batch x[rows] (M, 2), computed
        as that batch would be but with the hidden layers run once per row of x: the labelled batch
        repeats 10 points about 50 times each. Dropout, which comes after the hidden layers, still draws
        one mask per row of the batch, and BatchNorm uses the statistics of the repeated batch (each point
        weighted by its count), so outputs, gradients and running statistics are those of
        `forward(x[rows])` up to float rounding."""
        if rows is None:
            h = self.hidden(x)
        else:
            counts = torch.bincount(rows, minlength=x.shape[0]).to(x.dtype)
            h = x
            for layer in self.hidden:
                h = batch_norm_weighted(layer, h, counts) if isinstance(layer, nn.BatchNorm1d) else layer(h)
            h = h[rows]
        return self.out(self.drop(h) if use_dropout else h)


def batch_norm_weighted(bn: nn.BatchNorm1d, h: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """`bn` applied to a batch in which row i of h stands counts[i] times, given only the distinct rows:
    in training mode the batch mean and (biased) variance weighted by the counts, and the running
    statistics updated with the unbiased variance of the repeated batch, as nn.BatchNorm1d does."""
    if not bn.training:
        return bn(h)
    if bn.momentum is None or not bn.track_running_stats:
        raise ValueError("batch_norm_weighted supports BatchNorm1d with a momentum and running statistics")
    n = counts.sum()
    w = (counts / n)[:, None]
    mean = (w * h).sum(dim=0)
    var = (w * (h - mean).pow(2)).sum(dim=0)
    with torch.no_grad():
        bn.running_mean.lerp_(mean, bn.momentum)
        bn.running_var.lerp_(var * n / (n - 1).clamp(min=1), bn.momentum)
        bn.num_batches_tracked += 1
    out = (h - mean) * torch.rsqrt(var + bn.eps)
    return out * bn.weight + bn.bias if bn.affine else out


def consistency_per_sample(student_logits: torch.Tensor, teacher_logits: torch.Tensor, kind: str) -> torch.Tensor:
    """Per-sample consistency loss, averaged over the 2 classes as in the authors' toy code.
    bce: binary cross-entropy of the student's probabilities against the teacher's (the paper);
    var: squared error of probabilities; logits_var: squared error of logits. (N, 2) -> (N,)."""
    if kind == "logits_var":
        return (student_logits - teacher_logits).pow(2).mean(dim=1)
    p_s, p_t = student_logits.softmax(dim=1), teacher_logits.softmax(dim=1)
    if kind == "var":
        return (p_s - p_t).pow(2).mean(dim=1)
    if kind == "bce":
        eps = 1e-6
        return -(p_t * torch.log(p_s + eps) + (1.0 - p_t) * torch.log(1.0 - p_s + eps)).mean(dim=1)
    raise ValueError(f"unknown consistency loss {kind!r}")


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, alpha: float) -> None:
    """phi <- alpha phi + (1 - alpha) theta for every floating point entry of the state dict
    (BatchNorm running statistics included, as the authors did)."""
    pairs = [(t, s) for t, s in zip(teacher.state_dict().values(), student.state_dict().values(), strict=True)
             if t.is_floating_point()]
    torch._foreach_lerp_([t for t, _ in pairs], [s for _, s in pairs], 1.0 - alpha)  # one kernel on a GPU


@torch.no_grad()
def predict(model: nn.Module, points: torch.Tensor) -> torch.Tensor:
    """Class-1 probability at points (N, 2), in eval mode, in chunks. Returns (N,) float on the CPU."""
    model.eval()
    probs = [model(chunk).softmax(dim=1)[:, 1].cpu() for chunk in points.split(EVAL_CHUNK)]
    return torch.cat(probs)


# ----------------------------------------------------------------------------------------------------
# Rendering (OpenCV; images are BGR uint8)
# ----------------------------------------------------------------------------------------------------

CLASS_BGR = ((200, 110, 20), (20, 120, 255))  # class 0 blue, class 1 orange
BOUNDARY_BGR = (40, 40, 220)  # true boundary: red
DECISION_BGR = (0, 0, 0)  # predicted boundary: black


def boundary_pixels(image: np.ndarray) -> np.ndarray:
    """Pixels with a 4-neighbour of the other class: (H, W) bool."""
    edge = np.zeros_like(image)
    dx, dy = image[:, 1:] != image[:, :-1], image[1:, :] != image[:-1, :]
    edge[:, 1:] |= dx
    edge[:, :-1] |= dx
    edge[1:, :] |= dy
    edge[:-1, :] |= dy
    return edge


def render_prediction(
    image: np.ndarray,
    prob1: np.ndarray,
    pos: np.ndarray,
    sup_pos: np.ndarray,
    sup_labels: np.ndarray,
    mode: str = "prob",
) -> np.ndarray:
    """Picture of a run: sample density (grey shading), the prediction (class-1 probability or class
    through a colour map), the predicted boundary (black), the true boundary (red), the labelled points
    (circles in their class colour). image: (H, W) bool; prob1: (H, W); pos: (N, 2) px; sup_pos:
    (n, 2) px. Returns (H, W, 3) uint8."""
    h, w = image.shape
    cols = np.clip(pos[:, 0].astype(int), 0, w - 1)
    rows = np.clip(pos[:, 1].astype(int), 0, h - 1)
    density = np.bincount(rows * w + cols, minlength=h * w).reshape(h, w)
    grey = 255.0 * (1.0 - 0.45 * (1.0 - 0.5**density))
    shown = prob1 if mode == "prob" else (prob1 >= 0.5).astype(np.float64)
    colour = cv2.applyColorMap(np.round(shown * 255).astype(np.uint8), cv2.COLORMAP_VIRIDIS)
    vis = (0.6 * grey[..., None] + 0.4 * colour).astype(np.uint8)
    predicted = (prob1 >= 0.5).astype(np.uint8)
    vis[boundary_pixels(predicted.astype(bool))] = DECISION_BGR
    vis[boundary_pixels(image)] = BOUNDARY_BGR
    for (x, y), label in zip(sup_pos, sup_labels, strict=True):
        centre = (int(x), int(y))
        cv2.circle(vis, centre, 7, CLASS_BGR[int(label)], -1, cv2.LINE_AA)
        cv2.circle(vis, centre, 7, (255, 255, 255), 2, cv2.LINE_AA)
    return vis


def render_distance_map(dist: np.ndarray, step: float = 16.0) -> np.ndarray:
    """The signed distance map (colour), its contours every `step` px (dark lines) and the boundary
    (white): the directions a constrained perturbation may take (the paper's Figure 1(c)).
    dist: (H, W) px. Returns (H, W, 3) uint8."""
    scale = max(float(np.abs(dist).max()), 1e-6)
    vis = cv2.applyColorMap(np.round((dist / scale + 1.0) * 127.5).astype(np.uint8), cv2.COLORMAP_TWILIGHT_SHIFTED)
    level = np.floor(dist / step).astype(np.int64)
    contour = np.zeros(dist.shape, dtype=bool)
    contour[:, 1:] |= level[:, 1:] != level[:, :-1]
    contour[1:, :] |= level[1:, :] != level[:-1, :]
    vis[contour] = (vis[contour] * 0.35).astype(np.uint8)
    vis[boundary_pixels(dist > 0)] = (255, 255, 255)
    return vis


def titled(panel: np.ndarray, lines: list[str], bar: int = 54) -> np.ndarray:
    """Panel with a white title bar of text lines above it."""
    out = np.full((panel.shape[0] + bar, panel.shape[1], 3), 255, dtype=np.uint8)
    out[bar:] = panel
    for i, text in enumerate(lines):
        cv2.putText(out, text, (8, 22 + 24 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
    return out


def compose_grid(panels: list[np.ndarray], n_cols: int = 2, margin: int = 10) -> np.ndarray:
    """Panels of equal size in a grid with white margins."""
    h, w = panels[0].shape[:2]
    n_rows = math.ceil(len(panels) / n_cols)
    out = np.full((n_rows * (h + margin) + margin, n_cols * (w + margin) + margin, 3), 255, dtype=np.uint8)
    for i, panel in enumerate(panels):
        r, c = divmod(i, n_cols)
        top, left = margin + r * (h + margin), margin + c * (w + margin)
        out[top : top + h, left : left + w] = panel
    return out


# ----------------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ToyConfig:
    """One toy experiment. Defaults: the paper (supplement C) and the authors' release."""

    dataset: str = "boundary"  # the shipped closed curve; "curve": the shipped open curve
    erode_radius: float = 35.0  # px; the gap is about 2x this
    img_noise_std: float = 2.0  # px
    n_sup: int = 10
    sup_erode_radius: float | None = None  # px; labelled points from the data eroded this much (None: the data)
    balance_classes: bool = False
    seed: int = 0
    n_hidden: int = 3
    hidden_size: int = 512
    norm_layer: str = "batch"  # none | batch
    dropout: float = 0.5  # before the output layer
    cons_dropout: bool = True  # dropout also in the consistency passes
    sup_unique: bool = True  # labelled batch: hidden layers once per distinct point (same maths, 1.5-2.5x faster)
    perturb_std: float = 6.0  # px; the paper's isotropic experiments use 30 (= 0.117)
    dist_contour_range: float = 0.0  # px; > 0: constrained perturbation (paper: 4 = 0.016)
    dist_map_padding: str = "border"  # distance read outside the image: border value | zeros (authors' code)
    cons_loss: str = "bce"  # bce (paper) | var (authors' code default) | logits_var
    cons_weight: float = 10.0  # 0 = supervised only
    conf_thresh: float = 0.97
    conf_avg: bool = False  # True: scale the loss by the confident fraction instead of masking
    lr: float = 2e-4
    teacher_alpha: float = 0.99
    epochs: int = 100
    batch_size: int = 512
    render_pred: str = "prob"  # prob | class
    render_every: int = 0  # epochs; 0 = only the final picture
    device: str = "cpu"


def unit_tensor(pos: np.ndarray, shape: tuple[int, int], device: torch.device) -> torch.Tensor:
    return torch.as_tensor(pixels_to_unit(pos, shape), dtype=torch.float32, device=device)


def evaluate(model: nn.Module, data: ToyData, device: torch.device) -> dict:
    """Error over the dataset's samples (what the authors report) and over every pixel of the image."""
    prob_samples = predict(model, unit_tensor(data.pos, data.image.shape, device)).numpy()
    prob_grid = predict(model, unit_tensor(pixel_centres(data.image.shape), data.image.shape, device)).numpy()
    prob_grid = prob_grid.reshape(data.image.shape)
    return {
        "error_rate": float(((prob_samples >= 0.5) != data.labels).mean()),
        "grid_error_rate": float(((prob_grid >= 0.5) != data.image).mean()),
        "prob_grid": prob_grid,
    }


def render_run(data: ToyData, prob_grid: np.ndarray, mode: str) -> np.ndarray:
    return render_prediction(data.image, prob_grid, data.pos, data.sup_pos, data.sup_labels, mode)


def consistency_loss(
    student: nn.Module,
    teacher: nn.Module,
    x_u: torch.Tensor,
    cfg: ToyConfig,
    sigma: torch.Tensor,
    dist_map_t: torch.Tensor,
    gen: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean teacher consistency on an unlabelled batch x_u (B, 2) in [-1, 1]: the teacher sees x, the
    student x_hat = x + h, h ~ N(0, diag(sigma^2)) (supplement C). Per-sample loss x confidence mask
    (teacher max-probability >= conf_thresh; with conf_avg the batch's confident fraction) x contour mask
    (constrained perturbation, all ones when dist_contour_range is 0), summed and divided by the number of
    samples the contour mask keeps (the authors' reduction). Returns the unweighted loss and the
    diagnostics (4,): confident fraction, kept fraction and the two `pull_fractions`."""
    x_hat = x_u + torch.randn(x_u.shape, generator=gen, device=x_u.device) * sigma
    with torch.no_grad():
        logits_t = teacher(x_u, use_dropout=cfg.cons_dropout)
    logits_s = student(x_hat, use_dropout=cfg.cons_dropout)
    if cfg.dist_contour_range > 0:
        keep = contour_mask(dist_map_t, x_u, x_hat, cfg.dist_contour_range, cfg.dist_map_padding)
    else:
        keep = torch.ones(x_u.shape[0], device=x_u.device)
    confident = (logits_t.softmax(dim=1).max(dim=1).values >= cfg.conf_thresh).float()
    conf_factor = confident.mean() if cfg.conf_avg else confident
    weight = conf_factor * keep
    per_sample = consistency_per_sample(logits_s, logits_t, cfg.cons_loss)
    loss = (per_sample * weight).sum() / keep.sum().clamp(min=1.0)
    return loss, torch.cat([torch.stack([confident.mean(), keep.mean()]), pull_fractions(logits_s, logits_t, weight)])


@torch.no_grad()
def pull_fractions(logits_s: torch.Tensor, logits_t: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Which way the consistency loss pulls the predicted boundary: the fractions of the batch whose loss
    counts (weight > 0) with the teacher predicting class 1 at x and the student class 0 at x_hat (the
    loss pulls x_hat towards class 1: the class-1 region grows), and the reverse. (N, 2), (N, 2), (N,)
    -> (2,): [to class 1, to class 0]."""
    t, s = logits_t.argmax(dim=1), logits_s.argmax(dim=1)
    counts = (weight > 0).float()
    return torch.stack([(counts * ((t == 1) & (s == 0))).mean(), (counts * ((t == 0) & (s == 1))).mean()])


def train(cfg: ToyConfig, data: ToyData, out_dir: Path, log=print) -> dict:
    """Train one toy model; write final.json, prediction.png, distance_map.png and metrics.jsonl
    (one line per epoch) to `out_dir`, plus epochs/epoch_XXXXX.png every `render_every` epochs.
    An epoch is one pass over the unlabelled samples (all samples, labelled ones included) in batches
    of `batch_size`, each paired with a batch of `batch_size` labelled samples drawn from the labelled
    set repeated in shuffled passes. Returns the contents of final.json."""
    device = torch.device(cfg.device)
    shape = data.image.shape
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2) + "\n")
    dist_map = signed_distance_map(data.image)
    cv2.imwrite(str(out_dir / "distance_map.png"), render_distance_map(dist_map))

    torch.manual_seed(cfg.seed)  # the global RNG: weight initialisation only
    student = MLP(cfg.n_hidden, cfg.hidden_size, cfg.norm_layer, cfg.dropout).to(device)
    teacher = copy.deepcopy(student).requires_grad_(False)
    optimizer = torch.optim.Adam(student.parameters(), lr=cfg.lr)
    gen = torch.Generator(device=device).manual_seed(cfg.seed)  # shuffling and perturbations

    x_all = unit_tensor(data.pos, shape, device)  # (N, 2), the unlabelled set
    x_sup = unit_tensor(data.sup_pos, shape, device)  # (n_sup, 2)
    y_sup = torch.as_tensor(data.sup_labels, device=device)  # (n_sup,)
    sigma = torch.tensor([cfg.perturb_std * 2.0 / shape[1], cfg.perturb_std * 2.0 / shape[0]], device=device)
    dist_map_t = torch.as_tensor(dist_map, device=device)[None, None]  # (1, 1, H, W), px
    n_all, n_sup, bs = x_all.shape[0], x_sup.shape[0], cfg.batch_size
    n_iters = n_all // bs + (n_all % bs > 1)  # a last batch of one sample is dropped (BatchNorm)
    if n_iters == 0:
        raise ValueError(f"need at least 2 samples, have {n_all}; use a smaller --erode-radius")

    metrics_path = out_dir / "metrics.jsonl"
    metrics_path.write_text("")
    t_start = time.perf_counter()
    for epoch in range(1, cfg.epochs + 1):
        t_epoch = time.perf_counter()
        student.train()
        teacher.train()  # as the authors: the teacher uses batch statistics and dropout while training
        perm = torch.randperm(n_all, generator=gen, device=device)
        n_cycles = math.ceil(n_iters * bs / n_sup)
        sup_order = torch.rand(n_cycles, n_sup, generator=gen, device=device).argsort(dim=1).view(-1)
        sums = torch.zeros(6, device=device)  # sup loss, cons loss, confident, kept, pulls to class 1 and 0
        for it in range(n_iters):
            sup_batch = sup_order[it * bs : (it + 1) * bs]
            x_u = x_all[perm[it * bs : (it + 1) * bs]]  # (B, 2)

            logits_sup = student(x_sup, rows=sup_batch) if cfg.sup_unique else student(x_sup[sup_batch])
            sup_loss = F.cross_entropy(logits_sup, y_sup[sup_batch])
            loss = sup_loss
            if cfg.cons_weight > 0:
                cons_loss, diagnostics = consistency_loss(student, teacher, x_u, cfg, sigma, dist_map_t, gen)
                loss = sup_loss + cfg.cons_weight * cons_loss
                sums += torch.cat([torch.stack([sup_loss.detach(), cons_loss.detach()]), diagnostics])
            else:
                sums[0] += sup_loss.detach()

            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            ema_update(teacher, student, cfg.teacher_alpha)

        means = (sums / n_iters).tolist()
        record = {
            "epoch": epoch,
            "sup_loss": means[0],
            "cons_loss": means[1],
            "conf_fraction": means[2],
            "kept_fraction": means[3],
            "pull_to_1": means[4],
            "pull_to_0": means[5],
            "seconds": time.perf_counter() - t_epoch,
        }
        if cfg.render_every > 0 and (epoch % cfg.render_every == 0 or epoch == cfg.epochs):
            result = evaluate(teacher, data, device)
            record.update(error_rate=result["error_rate"], grid_error_rate=result["grid_error_rate"])
            (out_dir / "epochs").mkdir(exist_ok=True)
            picture = render_run(data, result["prob_grid"], cfg.render_pred)
            cv2.imwrite(str(out_dir / "epochs" / f"epoch_{epoch:05d}.png"), picture)
        with metrics_path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        log(
            f"epoch {epoch}/{cfg.epochs}  {record['seconds']:.1f}s  sup {means[0]:.4f}  cons {means[1]:.4f}"
            f"  confident {means[2]:.1%}  kept {means[3]:.1%}  pull to 1/0 {means[4]:.2%}/{means[5]:.2%}"
            + (f"  error {record['error_rate']:.2%}" if "error_rate" in record else "")
        )
    seconds = time.perf_counter() - t_start

    result = evaluate(teacher, data, device)  # the teacher is what is evaluated
    cv2.imwrite(str(out_dir / "prediction.png"), render_run(data, result["prob_grid"], cfg.render_pred))
    final = {
        "error_rate": result["error_rate"],
        "grid_error_rate": result["grid_error_rate"],
        "epochs": cfg.epochs,
        "iters_per_epoch": n_iters,
        "seconds": seconds,
        "seconds_per_epoch": seconds / max(cfg.epochs, 1),
        "n_samples": int(n_all),
        "n_sup": int(n_sup),
        "image_size": list(shape),
        "sup_points": [
            [float(x), float(y), int(c)] for (x, y), c in zip(data.sup_pos, data.sup_labels, strict=True)
        ],
        "settings": dataclasses.asdict(cfg),
    }
    (out_dir / "final.json").write_text(json.dumps(final, indent=2) + "\n")
    log(f"error {final['error_rate']:.2%} (samples), {final['grid_error_rate']:.2%} (grid), {seconds:.0f}s")
    return final


def run_experiment(cfg: ToyConfig, out_dir: Path, log=print) -> dict:
    """Build the dataset from cfg (a seeded choice) and train."""
    rng = np.random.default_rng(cfg.seed)
    data = build_dataset(
        cfg.dataset, cfg.erode_radius, cfg.img_noise_std, cfg.n_sup, cfg.balance_classes, rng, cfg.sup_erode_radius
    )
    return train(cfg, data, out_dir, log)


# The four situations of the paper's Figure 1, with the authors' settings for each (their run script).
FIGURE1_PANELS = (
    ("a_supervised", "(a) supervised only, gap", dict(cons_weight=0.0, epochs=25)),
    ("b_mean_teacher_gap", "(b) mean teacher, gap", dict(cons_loss="var")),
    (
        "c_no_gap_isotropic",
        "(c) no gap, isotropic",
        dict(
            erode_radius=0.0,
            norm_layer="none",
            cons_dropout=False,
            cons_loss="logits_var",
            cons_weight=1.0,
            perturb_std=30.0,
            render_pred="class",
        ),
    ),
    (
        "d_no_gap_constrained",
        "(d) no gap, constrained",
        dict(
            erode_radius=0.0,
            norm_layer="none",
            cons_dropout=False,
            cons_loss="logits_var",
            cons_weight=1.0,
            perturb_std=30.0,
            dist_contour_range=4.0,
            render_pred="class",
        ),
    ),
)


# ----------------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------------

D = ToyConfig()


def prepare_out_dir(out_dir: Path, overwrite: bool, fix: str = "pass --overwrite to reuse it") -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise click.ClickException(f"--out-dir {out_dir} exists and is not a directory; choose another --out-dir")
    try:
        if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
            raise click.ClickException(f"--out-dir {out_dir} exists and is not empty ({fix})")
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise click.ClickException(f"cannot create --out-dir {out_dir} ({exc.strerror}); choose a folder you can "
                                   "write to") from None


def check_device(device: str) -> str:
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise click.BadParameter(f"unknown device {device!r}", param_hint="--device") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise click.BadParameter("CUDA is not available on this machine", param_hint="--device")
    return device


def check_dataset(dataset: str) -> str:
    if dataset in SHIPPED_BOUNDARIES or dataset == "spiral":
        return dataset
    if not dataset.startswith("img:"):
        raise click.BadParameter(f"{dataset!r}: use {DATASET_CHOICES}", param_hint="--dataset")
    run_or_fail(lambda: load_boundary_image(dataset[4:]))
    return dataset


def set_threads(threads: int) -> None:
    if threads > 0:
        torch.set_num_threads(threads)


def parse_panels(text: str) -> set[str]:
    """'a,c' or 'a_supervised,c_no_gap_isotropic' → the panel names; unknown entries are a usage error."""
    names = {name[0]: name for name, _, _ in FIGURE1_PANELS}
    chosen = set()
    for item in (part.strip() for part in text.split(",")):
        name = names.get(item, item)
        if name not in names.values():
            raise click.BadParameter(f"unknown panel {item!r}; choose from a, b, c, d", param_hint="--panels")
        chosen.add(name)
    if not chosen:
        raise click.BadParameter("no panel given", param_hint="--panels")
    return chosen


# may differ between a reused run and this one: they change float rounding or pictures, not the experiment
RUN_ONLY_SETTINGS = ("device", "render_every", "sup_unique")


def reusable_final(run_dir: Path, cfg: ToyConfig) -> dict | None:
    """final.json of a finished run in run_dir trained with cfg's settings (device aside), else None."""
    try:
        final = json.loads((run_dir / "final.json").read_text())
    except (OSError, ValueError):
        return None
    defaults = dataclasses.asdict(ToyConfig())
    wanted = json.loads(json.dumps({k: v for k, v in dataclasses.asdict(cfg).items() if k not in RUN_ONLY_SETTINGS}))
    # a setting that an older final.json lacks did not exist then: the run had its default
    had = {k: final.get("settings", {}).get(k, defaults[k]) for k in wanted}
    return final if had == wanted and (run_dir / "prediction.png").is_file() else None


def run_or_fail(fn):
    """Data errors (an unreadable image, one with one class, an erosion that leaves nothing) as one-line
    errors."""
    try:
        return fn()
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None


class OneLineErrorsGroup(click.Group):
    """Every error, usage errors included, as one line ``Error: ...`` with click's exit code (the project's
    ``cli_errors.py``, repeated here so that this file stands alone)."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.ClickException as err:
            message = " ".join(line.strip() for line in err.format_message().splitlines() if line.strip())
            click.echo(f"Error: {message}", err=True)  # click lists a choice's values one per line
            sys.exit(err.exit_code)
        except click.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


@click.group(cls=OneLineErrorsGroup)
def cli():
    """2D toy experiments (supplement C of French et al., BMVC 2020)."""


NONNEG = click.FloatRange(min=0.0)
common_options = [
    click.option(
        "--dataset",
        default=D.dataset,
        show_default=True,
        help="boundary (closed curve) | curve (open curve across the image) | spiral | img:PATH",
    ),
    click.option("--seed", type=int, default=D.seed, show_default=True),
    click.option(
        "--hidden-size", "--hidden_size", type=click.IntRange(min=1), default=D.hidden_size, show_default=True
    ),
    click.option("--batch-size", "--batch_size", type=click.IntRange(min=2), default=D.batch_size, show_default=True),
    click.option(
        "--render-every",
        type=click.IntRange(min=0),
        default=0,
        show_default=True,
        help="write epochs/epoch_XXXXX.png every N epochs (0: only the final picture)",
    ),
    click.option(
        "--sup-unique/--no-sup-unique",
        default=D.sup_unique,
        show_default=True,
        help="run the hidden layers once per distinct labelled point of the labelled batch (the same "
        "maths up to float rounding, 1.5-2.5x faster per epoch); --no-sup-unique: every repeated copy, as the "
        "authors and the runs recorded up to 2026-11-27",
    ),
    click.option("--device", default=D.device, show_default=True, help="cpu, cuda, cuda:1, ..."),
    click.option(
        "--threads",
        type=click.IntRange(min=0),
        default=0,
        show_default=True,
        help="torch CPU threads (0: torch's default)",
    ),
    click.option(
        "--overwrite/--no-overwrite",
        default=False,
        show_default=True,
        help="allow writing into a non-empty --out-dir",
    ),
]


def with_common_options(fn):
    for option in reversed(common_options):
        fn = option(fn)
    return fn


@cli.command("train")
@with_common_options
@click.option(
    "--erode-radius",
    "--region_erode_radius",
    "erode_radius",
    type=NONNEG,
    default=D.erode_radius,
    show_default=True,
    help="px removed on each side of the boundary (gap ~ 2x)",
)
@click.option(
    "--img-noise-std",
    "--img_noise_std",
    type=NONNEG,
    default=D.img_noise_std,
    show_default=True,
    help="jitter of the samples, px",
)
@click.option("--n-sup", "--n_sup", type=click.IntRange(min=1), default=D.n_sup, show_default=True)
@click.option(
    "--sup-erode-radius",
    type=NONNEG,
    default=None,
    help="choose the labelled points among the samples of the image eroded by this many px, drawn first "
    "(the points a run with that --erode-radius labels; the authors' figure: 35) [default: the training data]",
)
@click.option(
    "--balance-classes/--no-balance-classes",
    "--balance_classes/--no_balance_classes",
    default=D.balance_classes,
    show_default=True,
)
@click.option("--n-hidden", "--n_hidden", type=click.IntRange(min=1), default=D.n_hidden, show_default=True)
@click.option(
    "--norm-layer",
    "--norm_layer",
    type=click.Choice(["none", "batch"]),
    default=D.norm_layer,
    show_default=True,
)
@click.option("--dropout", type=click.FloatRange(0.0, 1.0, max_open=True), default=D.dropout, show_default=True)
@click.option(
    "--cons-dropout/--no-cons-dropout",
    " /--cons_no_dropout",
    default=D.cons_dropout,
    show_default=True,
    help="dropout in the consistency passes too (--no-cons-dropout = authors' --cons_no_dropout)",
)
@click.option(
    "--perturb-std",
    "--perturb_noise_std",
    "perturb_std",
    type=NONNEG,
    default=D.perturb_std,
    show_default=True,
    help="std of the isotropic perturbation, px",
)
@click.option(
    "--dist-contour-range",
    "--dist_contour_range",
    type=NONNEG,
    default=D.dist_contour_range,
    show_default=True,
    help="px; > 0: mask the loss where the distance to the boundary changes more",
)
@click.option(
    "--dist-map-padding",
    type=click.Choice(["border", "zeros"]),
    default=D.dist_map_padding,
    show_default=True,
    help="distance read where a perturbed point leaves the image: the nearest border value, or 0 as in "
    "the authors' code (such pairs then count as crossing contours unless near the boundary)",
)
@click.option(
    "--cons-loss",
    "--cons_loss_fn",
    "cons_loss",
    type=click.Choice(["bce", "var", "logits_var"]),
    default=D.cons_loss,
    show_default=True,
)
@click.option(
    "--cons-weight",
    "--cons_weight",
    type=NONNEG,
    default=D.cons_weight,
    show_default=True,
    help="0 = supervised only",
)
@click.option(
    "--conf-thresh",
    "--conf_thresh",
    type=click.FloatRange(0.0, 1.0),
    default=D.conf_thresh,
    show_default=True,
)
@click.option(
    "--conf-avg/--no-conf-avg",
    "--conf_avg/--no_conf_avg",
    default=D.conf_avg,
    show_default=True,
    help="scale the loss by the confident fraction instead of masking each sample",
)
@click.option(
    "--lr",
    "--learning_rate",
    "lr",
    type=click.FloatRange(min=0.0, min_open=True),
    default=D.lr,
    show_default=True,
)
@click.option(
    "--teacher-alpha",
    "--teacher_alpha",
    type=click.FloatRange(0.0, 1.0),
    default=D.teacher_alpha,
    show_default=True,
)
@click.option("--epochs", "--num_epochs", "epochs", type=click.IntRange(min=0), default=D.epochs, show_default=True)
@click.option(
    "--render-pred",
    "--render_pred",
    type=click.Choice(["prob", "class"]),
    default=D.render_pred,
    show_default=True,
)
@click.option(
    "--out-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="default: runs/toy2d-<dataset>-e<erode>-<loss>-w<weight>-p<perturb>-c<range>-s<seed>",
)
def train_command(out_dir, overwrite, threads, **options):
    """Run one toy experiment (defaults: the paper's mean teacher with a 35 px erosion)."""
    cfg = ToyConfig(
        dataset=check_dataset(options.pop("dataset")), device=check_device(options.pop("device")), **options
    )
    source = click.get_current_context().get_parameter_source("erode_radius")
    explicit = source == click.core.ParameterSource.COMMANDLINE
    if cfg.dataset == "spiral" and explicit and cfg.erode_radius:
        raise click.BadParameter("not supported with --dataset spiral (its arms have no erosion); drop it",
                                 param_hint="--erode-radius")
    if cfg.dataset == "spiral" and cfg.sup_erode_radius is not None:
        raise click.BadParameter("not supported with --dataset spiral (its arms have no erosion); drop it",
                                 param_hint="--sup-erode-radius")
    if out_dir is None:
        name = "spiral" if cfg.dataset == "spiral" else Path(cfg.dataset.removeprefix("img:")).stem
        out_dir = Path("runs") / (
            f"toy2d-{name}-e{cfg.erode_radius:g}-{cfg.cons_loss}-w{cfg.cons_weight:g}-p{cfg.perturb_std:g}"
            f"-c{cfg.dist_contour_range:g}-s{cfg.seed}"
        )
    prepare_out_dir(out_dir, overwrite)
    set_threads(threads)
    final = run_or_fail(lambda: run_experiment(cfg, out_dir))
    click.echo(
        f"wrote {out_dir}/final.json: error_rate {final['error_rate']:.4f}, "
        f"grid_error_rate {final['grid_error_rate']:.4f}"
    )


@cli.command("figure1")
@with_common_options
@click.option(
    "--gap-radius",
    type=NONNEG,
    default=D.erode_radius,
    show_default=True,
    help="--erode-radius of the two panels with a gap",
)
@click.option(
    "--epochs",
    type=click.IntRange(min=0),
    default=None,
    help="epochs of every panel (default: the authors', 25 supervised and 100 otherwise)",
)
@click.option(
    "--labels-from-gap/--labels-per-panel",
    default=True,
    show_default=True,
    help="label the same points in every panel, drawn from the gap data (the authors' --sup_path); "
    "--labels-per-panel: the no-gap panels draw their own from their data",
)
@click.option(
    "--conf-avg/--no-conf-avg",
    default=False,
    show_default=True,
    help="the consistency panels (b, c, d) scale the loss by the confident fraction of the batch (the paper's "
    "rule for segmentation, supplement D.4.4) instead of masking it per sample (the authors' toy runs)",
)
@click.option(
    "--panels",
    default="a,b,c,d",
    show_default=True,
    help="panels to run (a,b,c,d or their names); the figure is composed once all four are in --out-dir",
)
@click.option(
    "--reuse/--no-reuse",
    default=False,
    show_default=True,
    help="keep a panel whose final.json in --out-dir has the same settings (any --device) instead of re-running it",
)
@click.option(
    "--out-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("runs/toy2d-figure1"),
    show_default=True,
)
def figure1_command(
    out_dir, overwrite, threads, gap_radius, labels_from_gap, conf_avg, epochs, panels, reuse, **options
):
    """The four situations of the paper's Figure 1, one run each, composed into figure1.png with their
    error rates, plus summary.json."""
    base = ToyConfig(
        dataset=check_dataset(options.pop("dataset")),
        device=check_device(options.pop("device")),
        erode_radius=gap_radius,
        **options,
    )
    selected = parse_panels(panels)
    prepare_out_dir(out_dir, overwrite or reuse,
                    "pass --reuse to keep its finished panels and add the others, or --overwrite")
    set_threads(threads)
    summary, pictures = [], []
    for name, title, overrides in FIGURE1_PANELS:
        cfg = dataclasses.replace(base, **overrides)
        if labels_from_gap and cfg.dataset != "spiral" and cfg.erode_radius != gap_radius:
            cfg = dataclasses.replace(cfg, sup_erode_radius=gap_radius)
        if epochs is not None:
            cfg = dataclasses.replace(cfg, epochs=epochs)
        if conf_avg and cfg.cons_weight > 0:  # the supervised panel has no consistency loss: unchanged, reusable
            cfg = dataclasses.replace(cfg, conf_avg=True)
        final = reusable_final(out_dir / name, cfg) if reuse else None
        if final is not None:
            click.echo(f"== {title}: reusing {out_dir / name}/final.json")
        elif name in selected:
            click.echo(f"== {title}")
            final = run_or_fail(lambda cfg=cfg, name=name: run_experiment(cfg, out_dir / name))
        if final is None:
            continue
        summary.append(
            {
                "name": name,
                "title": title,
                "settings": final["settings"],
                "error_rate": final["error_rate"],
                "grid_error_rate": final["grid_error_rate"],
                "seconds": final["seconds"],
            }
        )
        picture = cv2.imread(str(out_dir / name / "prediction.png"))
        rates = f"error {final['error_rate']:.2%} (samples), {final['grid_error_rate']:.2%} (grid)"
        pictures.append(titled(picture, [title, rates]))
    if len(summary) < len(FIGURE1_PANELS):
        done = ", ".join(entry["name"] for entry in summary) or "none"
        click.echo(f"panels done in {out_dir}: {done}; figure1.png needs all four (run the others, with --reuse)")
        return
    cv2.imwrite(str(out_dir / "figure1.png"), compose_grid(pictures))
    dist_map_png = out_dir / FIGURE1_PANELS[-1][0] / "distance_map.png"
    if dist_map_png.is_file():  # a reused panel kept without its picture of the distance map has none to copy
        shutil.copyfile(dist_map_png, out_dir / "distance_map.png")
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    for entry in summary:
        click.echo(
            f"{entry['title']:<28} error {entry['error_rate']:.2%}  grid {entry['grid_error_rate']:.2%}"
            f"  {entry['seconds']:.0f}s"
        )
    click.echo(f"wrote {out_dir}/figure1.png and {out_dir}/summary.json")


@cli.command("make-boundary")
@click.option(
    "--kind",
    type=click.Choice(list(SHIPPED_BOUNDARIES)),
    default="boundary",
    show_default=True,
    help="boundary: toy2d_boundary.png (closed curve, the default data); curve: toy2d_curve.png (open curve)",
)
@click.option("--seed", type=int, default=DEFAULT_BOUNDARY_SEED, show_default=True)
@click.option("--size", type=click.IntRange(min=16), default=512, show_default=True)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="a .png file; default: the shipped file of --kind, in this file's folder",
)
@click.option(
    "--overwrite/--no-overwrite",
    default=False,
    show_default=True,
    help="replace an existing --out file (the shipped one included)",
)
def make_boundary_command(kind, seed, size, out, overwrite):
    """Re-create one of the project's boundary images (1-bit PNG, white = class 1)."""
    path, make = SHIPPED_BOUNDARIES[kind]
    out = out or path
    if out.suffix.lower() != ".png":
        raise click.ClickException(f"--out {out}: the boundary image is a PNG; use a name ending in .png")
    if not out.parent.is_dir():
        raise click.ClickException(f"--out {out}: folder {out.parent} does not exist; create it or choose another")
    if out.exists() and not overwrite:
        raise click.ClickException(f"{out} exists; pass --overwrite to replace it")
    try:
        Image.fromarray(make(seed, size)).save(out, optimize=True)
    except OSError as exc:
        raise click.ClickException(f"cannot write {out} ({exc}); choose a folder you can write to") from None
    click.echo(f"wrote {out}")


if __name__ == "__main__":
    cli()
