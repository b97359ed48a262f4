"""Patch-to-patch distances in segmentation data: why there is no low-density region between classes.

Supplement B of French et al., "Semi-supervised semantic segmentation needs strong, varied perturbations"
(BMVC 2020). Two analyses, for any dataset of the registry (``datapipe``) or a single image:

- ``maps`` (B.1): the L2 distance between the patches centred on horizontally (vertically) neighbouring
  pixels equals the norm of one patch of the gradient image Δx I (Δy I), so for all pixels at once it is
  sqrt((Δx I)² ∗ 1^{p×p}): a box filter, hence a smooth map. The paper shows p = 15 and p = 225.
- ``triplets`` (B.2, Figure 2): anchor A next to a class boundary, negative N its neighbour across it,
  positive P the nearest same-class patch in the OTHER images (exhaustive search). The paper's histogram
  of |N−A| / |P−A| on Cityscapes has its median near 1/3: the best intra-class distance is about three
  times the inter-class distance across a boundary.

    python patch_distances.py maps --dataset synthetic --index 3 --patch-size 15 --patch-size 31
    python patch_distances.py maps --image frankfurt.png --label frankfurt_labelTrainIds.png
    python patch_distances.py triplets --dataset synthetic --n-anchors 200 --search-images 500
    python patch_distances.py triplets --dataset folder --data-dir data/mine --num-classes 5 --n-anchors 200
    python patch_distances.py triplets --dataset cityscapes --data-dir data/cityscapes --chunk 3/40 --out-dir runs/pd
    python patch_distances.py merge --out-dir runs/pd                     # all chunks → triplets.json + histogram

Conventions. Pixels are RGB scaled to [0, 1]; a distance is the L2 norm over the p×p×3 values of two
patches. A patch "centred on (r, c)" covers rows r−h..r+h and columns c−h..c+h, h = p // 2 (p odd), and
only patches lying fully inside the image are used: no padding anywhere. Randomness comes from
``np.random.default_rng(seed)``: the anchors and the order in which images are searched depend on the
seed only, so ``--chunk i/k`` runs (1 ≤ i ≤ k) share them and ``merge`` gives exactly the single run.

Self-contained apart from ``datapipe`` (numpy, scipy, OpenCV, Pillow, click).
"""
from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import click
import cv2
import numpy as np
import scipy.fft
from PIL import Image

import cli_errors
from datapipe import DataError, build_dataset

IGNORE_INDEX = 255
BATCH_BYTES = 256 * 2**20  # working memory of one batch of anchors searched in one image
SPECTRUM_CACHE_BYTES = 1024 * 2**20  # anchor spectra kept between search images of the same FFT size
TRIPLETS_JSON, TRIPLETS_PNG = "triplets.json", "triplets_hist.png"


# ----------------------------------------------------------------------------------------------------
# Neighbour patch-distance maps (supplement B.1)
# ----------------------------------------------------------------------------------------------------


def to_float(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB → (H, W, 3) float64 in [0, 1]."""
    return np.asarray(image, np.float64) / 255.0


def box_sum(x: np.ndarray, p: int) -> np.ndarray:
    """Sums of all p×p windows lying fully inside x: (H, W) → (H−p+1, W−p+1), x ∗ 1^{p×p} 'valid'.

    Entry [i, j] sums x[i:i+p, j:j+p]. Computed from an integral image in float64.
    """
    s = np.zeros((x.shape[0] + 1, x.shape[1] + 1), np.float64)
    s[1:, 1:] = np.cumsum(np.cumsum(x, axis=0, dtype=np.float64), axis=1)
    return s[p:, p:] - s[:-p, p:] - s[p:, :-p] + s[:-p, :-p]


def neighbour_distance_maps(image: np.ndarray, p: int) -> tuple[np.ndarray, np.ndarray]:
    """L2 distances between the p×p patches centred on neighbouring pixels (supplement B.1).

    image: (H, W, 3) float. Returns (dist_x, dist_y), each (H, W) float64:
    dist_x[r, c] = |B − A|, A centred on (r, c) and B on (r, c + 1); dist_y[r, c] the same with B on
    (r + 1, c). B − A is the patch of Δx I (Δy I) centred on (r, c), so dist_x = sqrt(Σ_rgb (Δx I)² ∗ 1^{p×p}).
    Border handling: NaN wherever either patch would extend outside the image (the first and last
    h = p // 2 rows and columns, plus the last column of dist_x and the last row of dist_y).
    """
    h = p // 2
    height, width = image.shape[:2]
    gx = ((image[:, 1:] - image[:, :-1]) ** 2).sum(-1)  # (H, W−1): (Δx I)², summed over RGB
    gy = ((image[1:] - image[:-1]) ** 2).sum(-1)  # (H−1, W)
    dist_x = np.full((height, width), np.nan)
    dist_y = np.full((height, width), np.nan)
    dist_x[h : height - h, h : width - h - 1] = np.sqrt(np.maximum(box_sum(gx, p), 0.0))
    dist_y[h : height - h - 1, h : width - h] = np.sqrt(np.maximum(box_sum(gy, p), 0.0))
    return dist_x, dist_y


def class_boundaries(label: np.ndarray, ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """(H, W) bool: pixels whose right or lower neighbour has another class (neither ignored)."""
    valid = label != ignore_index
    edge = np.zeros(label.shape, bool)
    edge[:, :-1] |= (label[:, :-1] != label[:, 1:]) & valid[:, :-1] & valid[:, 1:]
    edge[:-1] |= (label[:-1] != label[1:]) & valid[:-1] & valid[1:]
    return edge


# ----------------------------------------------------------------------------------------------------
# Exhaustive nearest-patch search by FFT correlation (supplement B.2)
# ----------------------------------------------------------------------------------------------------


def fft_shape(height: int, width: int) -> tuple[int, int]:
    """FFT size for an image: at least its size (no wrap-around in the valid windows), rounded up to a
    multiple of 64 then to a fast length, so that images of similar sizes share anchor spectra."""
    return tuple(scipy.fft.next_fast_len(-(-n // 64) * 64, real=True) for n in (height, width))


def patch_spectrum(patches: np.ndarray, shape: tuple[int, int], workers: int = 1) -> np.ndarray:
    """Conjugate spectra of zero-padded patches: (M, p, p, 3) → (M, 3, Hf, Wf // 2 + 1) complex128.

    conj(rfft2) of each channel padded to ``shape``, so that irfft2(F_image · result) is the correlation
    P⋆A; transforming the p rows first (then the columns) skips the all-zero rows.
    """
    x = np.moveaxis(np.asarray(patches, np.float64), -1, 1)  # (M, 3, p, p)
    x = scipy.fft.rfft(x, n=shape[1], axis=-1, workers=workers)
    return np.conj(scipy.fft.fft(x, n=shape[0], axis=-2, workers=workers))


class PatchSearch:
    """Every p×p window lying fully inside one image, searched for the nearest one to query patches.

    ||P − A||² = ΣP² − 2 P⋆A + ΣA²: ΣP² for all windows is a box filter of the squared image, the
    cross-correlation P⋆A for all windows is one inverse FFT per anchor. Only windows whose centre pixel
    has the anchor's class count. The returned distance is recomputed directly from the chosen window.
    """

    def __init__(self, image: np.ndarray, label: np.ndarray, patch_size: int, workers: int = 1):
        """image: (H, W, 3) float; label: (H, W) class indices, ``IGNORE_INDEX`` never matches."""
        p, h = patch_size, patch_size // 2
        self.image, self.p, self.workers = image, p, workers
        height, width = label.shape
        self.valid_shape = (height - p + 1, width - p + 1)  # window [i, j] is centred on (i + h, j + h)
        self.shape = fft_shape(height, width)
        if min(self.valid_shape) <= 0:  # smaller than a patch: nothing to search
            self.centre_class = np.zeros((0, 0), label.dtype)
            return
        self.spectrum = scipy.fft.rfft2(np.moveaxis(image, -1, 0), s=self.shape, workers=workers)  # (3, Hf, Wf')
        self.sq_sums = box_sum((image**2).sum(-1), p)  # (H−p+1, W−p+1): ΣP² of every window
        self.centre_class = label[h : height - h, h : width - h]

    def nearest(self, patches: np.ndarray, classes: np.ndarray, spectra: np.ndarray | None = None):
        """Nearest window of the anchor's class for each anchor.

        patches: (M, p, p, 3) float or uint8 (×1/255 is applied to uint8); classes: (M,);
        spectra: their ``patch_spectrum`` at ``self.shape`` (computed here if None).
        Returns dist (M,) float64 (inf where no window has the class), rows, cols (M,) int64: the
        centre of the nearest window (−1 where none).
        """
        m = len(patches)
        dist, rows, cols = np.full(m, np.inf), np.full(m, -1), np.full(m, -1)
        if m == 0 or self.centre_class.size == 0:
            return dist, rows, cols
        hv, wv = self.valid_shape
        hf, wf = self.shape
        per_anchor = 16 * hf * (wf // 2 + 1) * 6  # bytes: spectrum (3 channels), product, correlation
        batch = max(1, BATCH_BYTES // per_anchor)

        def query(i):  # (…, p, p, 3) float64, converted per batch: all anchors at once can be large
            return to_float(patches[i]) if patches.dtype == np.uint8 else np.asarray(patches[i], np.float64)

        for start in range(0, m, batch):
            sel = slice(start, min(m, start + batch))
            present = np.isin(classes[sel], self.centre_class)  # skip anchors whose class is absent
            if not present.any():
                continue
            idx = np.arange(sel.start, sel.stop)[present]
            if spectra is None:
                spec = patch_spectrum(query(idx), self.shape, self.workers)
            else:  # a slice is a view; indexing would copy the whole batch of spectra
                spec = spectra[sel] if present.all() else spectra[idx]
            product = self.spectrum[0] * spec[:, 0]  # (B, Hf, Wf // 2 + 1), summed over RGB
            product += self.spectrum[1] * spec[:, 1]
            product += self.spectrum[2] * spec[:, 2]
            d2 = scipy.fft.irfft2(product, s=self.shape, workers=self.workers)  # (B, Hf, Wf): P⋆A at [:hv, :wv]
            kinds, which = np.unique(classes[idx], return_inverse=True)
            base = np.full((len(kinds), hf, wf), np.inf)  # ΣP² where the centre has the class, inf elsewhere
            base[:, :hv, :wv] = np.where(self.centre_class[None] == kinds[:, None, None], self.sq_sums[None], np.inf)
            d2 *= -2.0
            d2 += base[which]  # ΣP² − 2 P⋆A (+ ΣA², the same for every window of one anchor)
            rows[idx], cols[idx] = np.divmod(d2.reshape(len(idx), -1).argmin(1), wf)
        h = self.p // 2
        for a in np.flatnonzero(rows >= 0):  # exact distance of the chosen window; centre coordinates
            window = self.image[rows[a] : rows[a] + self.p, cols[a] : cols[a] + self.p]
            dist[a] = np.sqrt(((window - query(a)) ** 2).sum())
            rows[a], cols[a] = rows[a] + h, cols[a] + h
        return dist, rows, cols


# ----------------------------------------------------------------------------------------------------
# Anchors next to class boundaries
# ----------------------------------------------------------------------------------------------------


def boundary_pairs(label: np.ndarray, patch_size: int, ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """All (anchor, negative) pixel pairs across a class boundary: (K, 4) int64 rows (ra, ca, rn, cn).

    The two pixels are horizontal or vertical neighbours with different classes, neither ignored, and
    the p×p patches centred on both lie fully inside the image. Each boundary pair appears both ways.
    """
    h = patch_size // 2
    height, width = label.shape
    lab = label.astype(np.int64)
    found = []
    for dr, dc in ((0, 1), (1, 0)):
        a, b = lab[: height - dr, : width - dc], lab[dr:, dc:]
        across = (a != b) & (a != ignore_index) & (b != ignore_index)
        inside = np.zeros_like(across)
        inside[h : height - h - dr, h : width - h - dc] = True
        r, c = np.nonzero(across & inside)
        found += [np.stack([r, c, r + dr, c + dc], 1), np.stack([r + dr, c + dc, r, c], 1)]
    return np.concatenate(found).astype(np.int64)


def sample_anchors(
    load_label: Callable[[int], np.ndarray],
    n_images: int,
    n_anchors: int,
    patch_size: int,
    rng: np.random.Generator,
    ignore_index: int = IGNORE_INDEX,
) -> np.ndarray:
    """``n_anchors`` (anchor, negative) pairs from random images: (n, 5) int64 rows (image, ra, ca, rn, cn).

    An image is drawn uniformly per anchor, then a boundary pair uniformly among its ``boundary_pairs``
    (without repetition within one draw). Images without a usable boundary are redrawn.
    """
    found: list[np.ndarray] = []
    empty: set[int] = set()
    while sum(len(f) for f in found) < n_anchors:
        if len(empty) == n_images:
            raise DataError(f"no class boundary with both {patch_size}x{patch_size} patches inside the image in "
                            f"any of the {n_images} images; use a smaller --patch-size")
        picks = rng.integers(n_images, size=n_anchors - sum(len(f) for f in found))
        images, counts = np.unique(picks, return_counts=True)
        for image, count in zip(images.tolist(), counts.tolist(), strict=True):
            if image in empty:
                continue
            pairs = boundary_pairs(load_label(image), patch_size, ignore_index)
            if len(pairs) == 0:
                empty.add(image)
                continue
            chosen = np.sort(rng.choice(len(pairs), size=min(count, len(pairs)), replace=False))
            found.append(np.concatenate([np.full((len(chosen), 1), image), pairs[chosen]], 1))
    return np.concatenate(found)[:n_anchors]


def parse_chunk(spec: str | None, n_anchors: int) -> tuple[int, int]:
    """'i/k' → (i, k), 1 ≤ i ≤ k ≤ n_anchors; None → (1, 1)."""
    if spec is None:
        return 1, 1
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", spec)
    if not match or not 1 <= int(match[1]) <= int(match[2]):
        raise DataError(f"--chunk {spec!r}: expected i/k with 1 <= i <= k, e.g. 3/10")
    i, k = int(match[1]), int(match[2])
    if k > n_anchors:
        raise DataError(f"--chunk {spec}: {k} chunks for {n_anchors} anchors; use at most {n_anchors} chunks")
    return i, k


def chunk_slice(n: int, i: int, k: int) -> slice:
    """Anchors of chunk i of k (1-based): contiguous, sizes differing by at most one."""
    return slice((i - 1) * n // k, i * n // k)


# ----------------------------------------------------------------------------------------------------
# Triplets over a dataset
# ----------------------------------------------------------------------------------------------------


def patch_at(image: np.ndarray, r: int, c: int, p: int) -> np.ndarray:
    h = p // 2
    return image[r - h : r + h + 1, c - h : c + h + 1]


def find_triplets(
    dataset,
    n_anchors: int,
    patch_size: int,
    seed: int,
    search_images: int | None = None,
    chunk: tuple[int, int] = (1, 1),
    workers: int = 1,
    progress: bool = False,
) -> list[dict]:
    """Triplets (A, N, P) for chunk ``chunk`` of ``n_anchors`` anchors of ``dataset`` (a SegDataset).

    Each anchor searches ``search_images`` images other than its own (all others if None): the first
    ones of a seeded permutation of the dataset. Images are the outer loop (each is loaded once), anchors
    are searched together in it. Returns one dict per anchor: ``anchor_id`` (its index among all
    ``n_anchors``), ``image``/``image_index``, ``anchor`` and ``negative`` [row, col], ``class`` and
    ``negative_class``, ``d_neg`` = |N−A|, ``positive`` ({``image``, ``image_index``, ``centre``} or None
    when no other image has the class), ``d_pos`` = |P−A|, ``ratio`` = d_neg / d_pos (inf if d_pos = 0),
    ``images_searched``.
    """
    n = len(dataset)
    rng = np.random.default_rng(seed)
    anchors = sample_anchors(dataset.load_label, n, n_anchors, patch_size, rng, dataset.ignore_index)
    order = rng.permutation(n)
    limit = n - 1 if search_images is None else min(search_images, n - 1)
    anchor_ids = np.arange(n_anchors)[chunk_slice(n_anchors, *chunk)]
    anchors = anchors[anchor_ids]
    m = len(anchors)

    # the anchors and negatives themselves, from their own images (uint8 patches keep memory low)
    p = patch_size
    patches = np.zeros((m, p, p, 3), np.uint8)
    classes, neg_classes, d_neg = np.zeros(m, np.int64), np.zeros(m, np.int64), np.zeros(m)
    for image_index in np.unique(anchors[:, 0]).tolist():
        image, label = dataset.load_image(image_index), dataset.load_label(image_index)
        for a in np.flatnonzero(anchors[:, 0] == image_index):
            _, ra, ca, rn, cn = anchors[a].tolist()
            patches[a] = patch_at(image, ra, ca, p)
            classes[a], neg_classes[a] = label[ra, ca], label[rn, cn]
            d_neg[a] = np.sqrt(((to_float(patch_at(image, rn, cn, p)) - to_float(patches[a])) ** 2).sum())

    best = np.full(m, np.inf)
    best_image, best_rows, best_cols = np.full(m, -1), np.full(m, -1), np.full(m, -1)
    searched = np.zeros(m, np.int64)
    spectra: dict[tuple[int, int], np.ndarray | None] = {}  # FFT shape → spectra of all anchors (or None)
    search = order if limit == n - 1 else order[: limit + 1]
    with click.progressbar(search, label=f"searching {len(search)} images for {m} anchors",
                           hidden=not progress) as bar:
        for image_index in bar:
            todo = np.flatnonzero(searched < limit)
            own = anchors[todo, 0] == image_index  # searched too (cheaper than a copy), results dropped below
            if own.all():
                continue
            active = todo[~own]
            searched[active] += 1
            label = dataset.load_label(int(image_index))
            if not np.isin(classes[active], label).any():
                continue
            searcher = PatchSearch(to_float(dataset.load_image(int(image_index))), label, p, workers)
            if searcher.shape not in spectra:
                nbytes = 16 * 3 * m * searcher.shape[0] * (searcher.shape[1] // 2 + 1)
                cached = sum(s.nbytes for s in spectra.values() if s is not None)
                fits = cached + nbytes <= SPECTRUM_CACHE_BYTES
                spectra[searcher.shape] = patch_spectrum(to_float(patches), searcher.shape, workers) if fits else None
            cache = spectra[searcher.shape]
            if len(todo) < m:  # some anchors are done: copy the others
                cache = None if cache is None else cache[todo]
            dist, rows, cols = searcher.nearest(patches[todo], classes[todo], cache)
            dist, rows, cols = dist[~own], rows[~own], cols[~own]
            better = dist < best[active]  # strict: the first image in search order wins a tie
            idx = active[better]
            best[idx], best_image[idx] = dist[better], image_index
            best_rows[idx], best_cols[idx] = rows[better], cols[better]

    triplets = []
    for a in range(m):
        image_index, ra, ca, rn, cn = anchors[a].tolist()
        found = best_image[a] >= 0
        ratio = None if not found else (d_neg[a] / best[a] if best[a] > 0 else math.inf)
        triplets.append({
            "anchor_id": int(anchor_ids[a]),
            "image": dataset.sample_id(image_index),
            "image_index": image_index,
            "anchor": [ra, ca],
            "negative": [rn, cn],
            "class": int(classes[a]),
            "negative_class": int(neg_classes[a]),
            "d_neg": float(d_neg[a]),
            "positive": None if not found else {
                "image": dataset.sample_id(int(best_image[a])),
                "image_index": int(best_image[a]),
                "centre": [int(best_rows[a]), int(best_cols[a])],
            },
            "d_pos": float(best[a]) if found else None,
            "ratio": ratio,
            "images_searched": int(searched[a]),
        })
    return triplets


def summarise(triplets: list[dict]) -> dict:
    """Median and mean of |N−A| / |P−A| over the triplets with a positive."""
    ratios = np.array([t["ratio"] for t in triplets if t["ratio"] is not None], np.float64)
    d_neg = np.array([t["d_neg"] for t in triplets])
    d_pos = np.array([t["d_pos"] for t in triplets if t["d_pos"] is not None])
    return {
        "n_triplets": len(triplets),
        "n_with_positive": int(ratios.size),
        "median_ratio": float(np.median(ratios)) if ratios.size else None,
        "mean_ratio": float(np.mean(ratios[np.isfinite(ratios)])) if np.isfinite(ratios).any() else None,
        "quartiles_ratio": [float(q) for q in np.quantile(ratios, [0.25, 0.75])] if ratios.size else None,
        "median_d_neg": float(np.median(d_neg)) if d_neg.size else None,
        "median_d_pos": float(np.median(d_pos)) if d_pos.size else None,
    }


def json_safe(value):
    """inf → the string 'inf' (strict JSON has no infinity)."""
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    return value


def ratio_value(r) -> float | None:
    return math.inf if r == "inf" else r


# ----------------------------------------------------------------------------------------------------
# Rendering (OpenCV; BGR uint8 arrays ready for cv2.imwrite)
# ----------------------------------------------------------------------------------------------------

FONT = cv2.FONT_HERSHEY_SIMPLEX


def display_scale(height: int, width: int, min_side: int = 256) -> int:
    """Integer up-scaling that makes small images (e.g. 64×64) readable."""
    return max(1, math.ceil(min_side / min(height, width)))


def upscale(x: np.ndarray, s: int) -> np.ndarray:
    return np.repeat(np.repeat(x, s, 0), s, 1) if s > 1 else x


def render_boundaries(image: np.ndarray, label: np.ndarray | None) -> np.ndarray:
    """RGB image (H, W, 3) uint8 with class boundaries in red (as BGR, up-scaled if small)."""
    s = display_scale(*image.shape[:2])
    out = upscale(cv2.cvtColor(image, cv2.COLOR_RGB2BGR), s)
    if label is not None:
        out[upscale(class_boundaries(label), s)] = (0, 0, 255)
    return np.ascontiguousarray(out)


def render_map(values: np.ndarray, vmax: float, title: str) -> np.ndarray:
    """A distance map in viridis with a colour scale bar on its right; NaN (no patch pair) in grey."""
    s = display_scale(*values.shape)
    finite = np.isfinite(values)
    scaled = np.where(finite, np.clip(values / max(vmax, 1e-12), 0, 1) * 255, 0).astype(np.uint8)
    coloured = cv2.applyColorMap(scaled, cv2.COLORMAP_VIRIDIS)
    coloured[~finite] = 128
    coloured = upscale(coloured, s)
    height, width = coloured.shape[:2]
    font = max(0.4, min(1.5, height / 640))
    thick = max(1, round(font * 2))
    pad_top, bar_w, label_w = round(30 * font / 0.4 * 0.6) + 10, 20, round(90 * font / 0.4 * 0.6) + 20
    canvas = np.full((height + pad_top + 10, width + bar_w + label_w + 20, 3), 255, np.uint8)
    canvas[pad_top : pad_top + height, :width] = coloured
    ramp = np.linspace(255, 0, height).astype(np.uint8)[:, None].repeat(bar_w, 1)
    x0 = width + 10
    canvas[pad_top : pad_top + height, x0 : x0 + bar_w] = cv2.applyColorMap(ramp, cv2.COLORMAP_VIRIDIS)
    for k in range(5):
        y = pad_top + round((height - 1) * (1 - k / 4))
        cv2.line(canvas, (x0 + bar_w, y), (x0 + bar_w + 4, y), (0, 0, 0), 1)
        cv2.putText(canvas, f"{vmax * k / 4:.3g}", (x0 + bar_w + 6, y + round(5 * font / 0.4)), FONT, font,
                    (0, 0, 0), thick, cv2.LINE_AA)
    cv2.putText(canvas, title, (4, pad_top - 8), FONT, font, (0, 0, 0), thick, cv2.LINE_AA)
    return canvas


def render_histogram(ratios: np.ndarray, title: str, bins: int = 40) -> np.ndarray:
    """Histogram of |N−A| / |P−A| with its median (Figure 2, left): (410, 640, 3) BGR."""
    ratios = np.asarray(ratios, np.float64)
    height, width, left, right, top, bottom = 410, 640, 60, 20, 60, 50
    canvas = np.full((height, width, 3), 255, np.uint8)
    finite = ratios[np.isfinite(ratios)]
    hi = max(1.0, math.ceil(np.quantile(finite, 0.99) * 4) / 4) if finite.size else 1.0
    counts, edges = np.histogram(np.clip(ratios, 0, hi), bins=bins, range=(0, hi))  # beyond hi: last bin
    plot_w, plot_h = width - left - right, height - top - bottom
    ymax = max(1, counts.max())

    def x_of(v: float) -> int:
        return left + round(v / hi * plot_w)

    for count, x0, x1 in zip(counts, edges[:-1], edges[1:], strict=True):
        y = top + plot_h - round(count / ymax * plot_h)
        cv2.rectangle(canvas, (x_of(x0), y), (x_of(x1) - 1, top + plot_h), (200, 140, 60), -1)
    cv2.line(canvas, (left, top + plot_h), (left + plot_w, top + plot_h), (0, 0, 0), 1)
    cv2.line(canvas, (left, top), (left, top + plot_h), (0, 0, 0), 1)
    step = 0.25 if hi <= 2 else 0.5 if hi <= 4 else math.ceil(hi / 8)
    for k in range(int(hi / step) + 1):
        v = k * step
        cv2.line(canvas, (x_of(v), top + plot_h), (x_of(v), top + plot_h + 4), (0, 0, 0), 1)
        cv2.putText(canvas, f"{v:g}", (x_of(v) - 10, top + plot_h + 18), FONT, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    for k in range(5):
        c = ymax * k / 4
        y = top + plot_h - round(c / ymax * plot_h)
        cv2.putText(canvas, f"{c:.0f}", (8, y + 4), FONT, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(canvas, "|N-A| / |P-A|", (left + plot_w // 2 - 50, height - 10), FONT, 0.5, (0, 0, 0), 1,
                cv2.LINE_AA)
    cv2.putText(canvas, title, (left, 20), FONT, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    if ratios.size:
        median = float(np.median(ratios))
        xm = x_of(min(median, hi))
        cv2.line(canvas, (xm, top), (xm, top + plot_h), (0, 0, 220), 2)
        cv2.putText(canvas, f"median {median:.3f} (n = {ratios.size})", (min(max(xm - 90, left), width - 200),
                    top - 10), FONT, 0.5, (0, 0, 220), 1, cv2.LINE_AA)
    return canvas


# ----------------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------------


def fail(message: str) -> NoReturn:
    raise click.ClickException(message)


def check_outputs(out_dir: Path, names: list[str], overwrite: bool) -> None:
    """Create ``out_dir``; refuse to overwrite any existing non-empty file among ``names``."""
    if out_dir.exists() and not out_dir.is_dir():
        fail(f"--out-dir {out_dir} exists and is not a directory")
    existing = [n for n in names if (out_dir / n).is_file() and (out_dir / n).stat().st_size > 0]
    if existing and not overwrite:
        fail(f"{out_dir / existing[0]} exists (and {len(existing) - 1} more); pass --overwrite to replace them")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        fail(f"cannot create --out-dir {out_dir} ({exc.strerror}); choose a folder you can write to")


def check_patch_size(p: int, height: int, width: int, pair: bool) -> None:
    need = p + 1 if pair else p  # a neighbour pair needs one more pixel than the patch
    if p < 1 or p % 2 == 0:
        fail(f"--patch-size {p}: must be odd and positive (a patch is centred on a pixel)")
    if need > min(height, width):
        fail(f"--patch-size {p} is too large for the {height}x{width} image (needs at least {need} pixels per side)")


def open_dataset(name: str, data_dir: str | None, split: str, num_classes: int | None, ignore_index: int | None):
    """One split of a registry dataset; ``num_classes`` and ``ignore_index`` describe a ``folder`` dataset."""
    try:
        bundle = build_dataset(name, data_dir=data_dir, num_classes=num_classes, ignore_index=ignore_index)
    except KeyError as exc:
        fail(str(exc.args[0]))
    except DataError as exc:
        fail(str(exc))
    if num_classes not in (None, bundle.num_classes):
        fail(f"--num-classes {num_classes} does not match the {bundle.num_classes} classes of {name}; drop it (it is "
             f"for --dataset folder)")
    dataset = getattr(bundle, split)
    if dataset is None or len(dataset) == 0:
        fail(f"dataset {name!r} has no {split} images")
    return dataset


def read_image_file(path: Path, mode: str) -> np.ndarray:
    """An RGB image (mode "image") or a label image of class indices (mode "label"; a 1-bit image gives 0/1)."""
    if not path.is_file():
        fail(f"image not found: {path}")
    try:
        with Image.open(path) as im:
            if mode == "image":
                return np.asarray(im.convert("RGB"))
            if im.mode == "1":
                return np.asarray(im, np.uint8)  # black = class 0, white = class 1 (255 would mean ignored)
            if im.mode not in ("L", "P", "I", "I;16"):
                fail(f"{path}: a label image must be single-channel (mode 1, L, P or I), got mode {im.mode}; save "
                     "the class indices as a greyscale or palette PNG")
            return np.asarray(im)
    except (OSError, Image.DecompressionBombError) as exc:
        fail(f"cannot read {path}: {exc}")


def write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(json_safe(obj), indent=1, allow_nan=False) + "\n")


@click.group(cls=cli_errors.Group)
def cli():
    """Patch-to-patch distances (supplement B): neighbour distance maps and boundary triplets."""


DATASET_HELP = "a dataset of the registry (datapipe), e.g. synthetic"
folder_options = [
    click.option("--num-classes", type=click.IntRange(min=2), help="folder: number of classes (labels 0 … C−1)"),
    click.option("--ignore-index", type=click.IntRange(0, 255), help="folder: label value to ignore [255]"),
]


def with_folder_options(fn):
    for option in reversed(folder_options):
        fn = option(fn)
    return fn


@cli.command("maps")
@click.option("--image", "image_path", type=click.Path(path_type=Path), help="an image file (RGB)")
@click.option("--label", "label_path", type=click.Path(path_type=Path), help="its label image (class overlay)")
@click.option("--dataset", help=DATASET_HELP)
@click.option("--index", type=click.IntRange(min=0), default=0, show_default=True, help="sample of --dataset")
@click.option("--split", type=click.Choice(["train", "val"]), default="train", show_default=True)
@click.option("--data-dir", "--data_dir", "data_dir", type=click.Path(), help="dataset root (if it needs one)")
@with_folder_options
@click.option("--patch-size", "patch_sizes", type=int, multiple=True, default=(15, 225), show_default=True,
              help="odd patch side in pixels; repeat for several")
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path),
              help="default runs/patch-maps-<dataset>-<split>-<index> or runs/patch-maps-<image stem>")
@click.option("--overwrite/--no-overwrite", default=False, show_default=True)
def maps_command(image_path, label_path, dataset, index, split, data_dir, num_classes, ignore_index, patch_sizes,
                 out_dir, overwrite):
    """Maps of the L2 distance between patches centred on neighbouring pixels (supplement B.1)."""
    if (image_path is None) == (dataset is None):
        fail("give either --image PATH (with an optional --label PATH) or --dataset NAME --index I")
    if image_path is not None and (num_classes, ignore_index) != (None, None):
        fail("--num-classes and --ignore-index describe a --dataset folder; drop them with --image")
    if image_path is not None:
        image = read_image_file(image_path, "image")
        label = read_image_file(label_path, "label") if label_path is not None else None
        if label is not None and label.shape != image.shape[:2]:
            fail(f"{label_path}: label size {label.shape} differs from the image's {image.shape[:2]}")
        source = {"image": str(image_path), "label": None if label_path is None else str(label_path)}
        default_dir = Path("runs") / f"patch-maps-{image_path.stem}"
    else:
        data = open_dataset(dataset, data_dir, split, num_classes, ignore_index)
        if index >= len(data):
            fail(f"--index {index}: the {split} set of {dataset!r} has {len(data)} images")
        try:
            image = data.load_image(index)
            label = data.load_label(index) if data.has_labels else None
        except DataError as exc:
            fail(str(exc))
        source = {"dataset": dataset, "split": split, "index": index, "image": data.sample_id(index)}
        default_dir = Path("runs") / f"patch-maps-{dataset}-{split}-{index}"
    for p in patch_sizes:
        check_patch_size(p, *image.shape[:2], pair=True)
    out_dir = out_dir or default_dir
    names = ["image.png", "maps.json"]
    names += [f"dist_{d}_p{p}.{ext}" for p in patch_sizes for d in "xy" for ext in ("png", "npy")]
    check_outputs(out_dir, names, overwrite)

    cv2.imwrite(str(out_dir / "image.png"), render_boundaries(image, label))
    stats = {}
    for p in patch_sizes:
        maps = dict(zip("xy", neighbour_distance_maps(to_float(image), p), strict=True))
        vmax = float(max(np.nanmax(m) for m in maps.values()))  # one colour scale for both directions
        for d, m in maps.items():
            np.save(out_dir / f"dist_{d}_p{p}.npy", m.astype(np.float32))
            title = f"|B-A|, {'horizontal' if d == 'x' else 'vertical'} neighbours, {p}x{p}"
            cv2.imwrite(str(out_dir / f"dist_{d}_p{p}.png"), render_map(m, vmax, title))
            stats[f"dist_{d}_p{p}"] = {"min": float(np.nanmin(m)), "median": float(np.nanmedian(m)),
                                       "max": float(np.nanmax(m))}
    write_json(out_dir / "maps.json", {"source": source, "patch_sizes": list(patch_sizes), "units": "RGB in [0, 1]",
                                       "border": "NaN where a patch would extend outside the image", "stats": stats})
    click.echo(f"wrote {len(names)} files to {out_dir}")
    for name, s in stats.items():
        click.echo(f"  {name}: min {s['min']:.3f}  median {s['median']:.3f}  max {s['max']:.3f}")


@cli.command("triplets")
@click.option("--dataset", required=True, help=DATASET_HELP)
@click.option("--split", type=click.Choice(["train", "val"]), default="train", show_default=True)
@click.option("--data-dir", "--data_dir", "data_dir", type=click.Path(), help="dataset root (if it needs one)")
@with_folder_options
@click.option("--n-anchors", "--n_anchors", type=click.IntRange(min=1), default=1000, show_default=True,
              help="the paper used 1000 on Cityscapes")
@click.option("--patch-size", type=int, default=15, show_default=True, help="odd patch side in pixels")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--search-images", type=click.IntRange(min=1), default=None,
              help="how many other images each anchor searches  [default: all]")
@click.option("--chunk", help="i/k: run only the i-th of k equal parts of the anchors (1 <= i <= k); see merge")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True, help="FFT worker threads")
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path),
              help="default runs/patch-triplets-<dataset>-p<size>-n<anchors>-s<seed>")
@click.option("--overwrite/--no-overwrite", default=False, show_default=True)
def triplets_command(dataset, split, data_dir, num_classes, ignore_index, n_anchors, patch_size, seed, search_images,
                     chunk, threads, out_dir, overwrite):
    """Anchor/negative pairs across class boundaries and their nearest same-class patch elsewhere (B.2)."""
    try:
        i, k = parse_chunk(chunk, n_anchors)
    except DataError as exc:
        fail(str(exc))
    data = open_dataset(dataset, data_dir, split, num_classes, ignore_index)
    if len(data) < 2:
        fail(f"the {split} set of {dataset!r} has {len(data)} image; the search needs at least 2")
    if not data.has_labels:
        fail(f"the {split} set of {dataset!r} has no labels")
    try:
        check_patch_size(patch_size, *data.load_image(0).shape[:2], pair=True)
    except DataError as exc:
        fail(str(exc))
    out_dir = out_dir or Path("runs") / f"patch-triplets-{dataset}-p{patch_size}-n{n_anchors}-s{seed}"
    names = [f"triplets_chunk{i}of{k}.json"] if k > 1 else [TRIPLETS_JSON, TRIPLETS_PNG]
    check_outputs(out_dir, names, overwrite)
    config = {"dataset": dataset, "split": split, "data_dir": data_dir, "num_classes": num_classes,
              "ignore_index": ignore_index, "n_anchors": n_anchors,
              "patch_size": patch_size, "seed": seed, "search_images": search_images, "chunk": [i, k]}
    start = time.perf_counter()
    try:
        triplets = find_triplets(data, n_anchors, patch_size, seed, search_images, (i, k), threads, progress=True)
    except DataError as exc:
        fail(str(exc))
    seconds = time.perf_counter() - start
    result = {"config": config, "units": "L2 over RGB in [0, 1]", "summary": summarise(triplets),
              "seconds": seconds, "triplets": triplets}
    write_json(out_dir / names[0], result)
    if k == 1:
        write_histogram(out_dir / TRIPLETS_PNG, result)
    report(result, out_dir / names[0])


def write_histogram(path: Path, result: dict) -> None:
    c = result["config"]
    ratios = [ratio_value(t["ratio"]) for t in result["triplets"] if t["ratio"] is not None]
    title = f"{c['dataset']} {c['split']}, {c['patch_size']}x{c['patch_size']} patches, seed {c['seed']}"
    cv2.imwrite(str(path), render_histogram(np.array(ratios, np.float64), title))


def report(result: dict, path: Path) -> None:
    s = result["summary"]
    median = "n/a" if s["median_ratio"] is None else f"{s['median_ratio']:.3f}"
    click.echo(f"{s['n_triplets']} triplets ({s['n_with_positive']} with a positive) in {result['seconds']:.1f} s; "
               f"median |N-A|/|P-A| = {median}; wrote {path}")


def read_chunk(path: Path) -> dict:
    """A JSON written by `triplets --chunk i/k`, checked for everything merge reads."""
    if not path.is_file():
        fail(f"{path} does not exist; pass the triplets_chunk*of*.json files of a `triplets --chunk i/k` run")
    try:
        result = json.loads(path.read_text())
        i, k = result["config"]["chunk"]
        problem = next((f"no {key!r} entry" for key in ("triplets", "seconds") if key not in result), None)
        if problem is None and not (isinstance(i, int) and isinstance(k, int) and 1 <= i <= k):
            problem = f"chunk {i}/{k} is not i/k with 1 <= i <= k"
        if problem is None and not all({"ratio", "d_neg", "d_pos"} <= set(t) for t in result["triplets"]):
            problem = "a triplet lacks ratio, d_neg or d_pos"
    except (OSError, ValueError, KeyError, TypeError) as exc:
        problem = f"{type(exc).__name__}: {exc}"
    if problem is not None:
        fail(f"{path}: not a triplets chunk file ({problem}); pass the files a `triplets --chunk i/k` run wrote")
    return result


@cli.command("merge")
@click.argument("chunk_files", nargs=-1, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out-dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="where triplets.json and the histogram go; chunk files default to its triplets_chunk*.json")
@click.option("--overwrite/--no-overwrite", default=False, show_default=True)
def merge_command(chunk_files, out_dir, overwrite):
    """Combine the JSONs of all `triplets --chunk i/k` runs into triplets.json and its histogram."""
    files = list(chunk_files) or sorted(out_dir.glob("triplets_chunk*of*.json"))
    if not files:
        fail(f"no triplets_chunk*of*.json files in {out_dir}; pass the chunk files as arguments")
    chunks = {}
    for path in files:
        result = read_chunk(path)
        i, k = result["config"]["chunk"]
        if (i, k) in chunks:
            fail(f"{path}: chunk {i}/{k} given twice")
        chunks[i, k] = result
    ks = sorted({k for _, k in chunks})
    if len(ks) > 1:
        fail(f"chunk files of different splits (k = {', '.join(map(str, ks))}); pass the files of one run")
    first = next(iter(chunks.values()))["config"]
    for (i, k), result in chunks.items():
        different = [key for key in first if key != "chunk" and result["config"].get(key) != first.get(key)]
        if different:
            fail(f"chunk {i}/{k} was run with another {different[0]} ({result['config'][different[0]]!r} vs "
                 f"{first[different[0]]!r})")
    k = first["chunk"][1]
    missing = [i for i in range(1, k + 1) if (i, k) not in chunks]
    if missing:
        fail(f"chunks {', '.join(f'{i}/{k}' for i in missing)} missing; run them, then merge again")
    check_outputs(out_dir, [TRIPLETS_JSON, TRIPLETS_PNG], overwrite)
    triplets = [t for i in range(1, k + 1) for t in chunks[i, k]["triplets"]]
    for t in triplets:
        t["ratio"] = ratio_value(t["ratio"])
    result = {"config": {**first, "chunk": [1, 1]}, "units": "L2 over RGB in [0, 1]", "summary": summarise(triplets),
              "seconds": sum(c["seconds"] for c in chunks.values()), "triplets": triplets}
    write_json(out_dir / TRIPLETS_JSON, result)
    write_histogram(out_dir / TRIPLETS_PNG, result)
    report(result, out_dir / TRIPLETS_JSON)


if __name__ == "__main__":
    cli()
