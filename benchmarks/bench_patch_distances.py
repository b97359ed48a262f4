"""Seconds per anchor of the exhaustive nearest-patch search (patch_distances.py triplets, issue 7).

Each anchor is compared with every p×p window of every image it searches, by FFT correlation, so the
cost should grow about linearly with the number of pixels searched (times a log factor from the FFT).
Two series on the registry's ``synthetic`` images, held in memory so that loading is nearly free: more
images of 64×64, and more pixels per image (the same images resized to squares of growing side). The
fixed cost per anchor (sampling, cutting patches, one image) is timed separately and subtracted before
the fit. Prints a markdown table, the exponent b of a least-squares fit seconds/anchor ∝ pixels^b, and
what the measured cost per pixel means for the paper's Cityscapes search (2975 images of 1024×2048).

    python -m benchmarks.bench_patch_distances                        # from the repository root, about a minute
    python -m benchmarks.bench_patch_distances --n-anchors 32 --sizes 64,256,1024 --counts 50,200
"""
import os
import time

import click
import cv2
import numpy as np

import cli_errors
import patch_distances as pd
from benchmarks.machine import cpu_model
from datapipe import SegDataset, build_dataset

CITYSCAPES_PIXELS = 2975 * 1024 * 2048


class InMemory(SegDataset):
    """The first ``n`` samples of the registry's ``synthetic`` set, resized to size×size and kept in memory
    (bilinear images, nearest-neighbour labels), so that the benchmark times the search, not the loading."""

    def __init__(self, n: int, size: int):
        source = build_dataset("synthetic", n_train=n).train
        super().__init__(source.num_classes)
        self.images = [cv2.resize(source.load_image(i), (size, size), interpolation=cv2.INTER_LINEAR) for i in range(n)]
        self.labels = [cv2.resize(source.load_label(i), (size, size), interpolation=cv2.INTER_NEAREST)
                       for i in range(n)]

    def __len__(self) -> int:
        return len(self.images)

    def load_image(self, index: int) -> np.ndarray:
        return self.images[index]

    def read_label(self, index: int) -> np.ndarray:
        return self.labels[index]


def best_time(data, n_anchors: int, patch_size: int, n_images: int, repeats: int) -> tuple[float, float]:
    """(wall, CPU) seconds of the fastest of ``repeats`` runs; the CPU time of this process is the figure
    that other jobs on a shared machine do not inflate."""
    wall, cpu = [], []
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        pd.find_triplets(data, n_anchors, patch_size, seed=0, search_images=n_images)
        wall.append(time.perf_counter() - w)
        cpu.append(time.process_time() - c)
    return min(wall), min(cpu)


def measure(size: int, n_images: int, n_anchors: int, patch_size: int, repeats: int) -> dict:
    """Seconds per anchor of find_triplets when each anchor searches ``n_images`` images of size².

    The fixed part (sampling anchors, cutting patches, one image searched) is timed with
    ``search_images=1``; the search cost is the rest, over the other n − 1 images (CPU time).
    """
    data = InMemory(n_images + 1, size)
    wall, cpu = (t / n_anchors for t in best_time(data, n_anchors, patch_size, n_images, repeats))
    fixed = best_time(data, n_anchors, patch_size, 1, repeats)[1] / n_anchors
    pixels = (n_images - 1) * size * size
    search = max(cpu - fixed, 1e-9)
    return {"size": size, "images": n_images, "wall": wall, "cpu": cpu, "fixed": fixed, "pixels": pixels,
            "s_per_anchor": search, "ns_per_anchor_pixel": search / pixels * 1e9}


def fit_exponent(rows: list[dict]) -> tuple[float, float]:
    """Least squares of log(s/anchor) = log(a) + b log(pixels): returns (a, b)."""
    b, log_a = np.polyfit(np.log([r["pixels"] for r in rows]), np.log([r["s_per_anchor"] for r in rows]), 1)
    return float(np.exp(log_a)), float(b)


def ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


@click.command(cls=cli_errors.Command)
@click.option("--n-anchors", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("--patch-size", type=int, default=15, show_default=True)
@click.option("--counts", default="25,50,100,200,400", show_default=True, help="images searched (≥ 2), at 64×64")
@click.option("--sizes", default="64,128,256,512,1024", show_default=True, help="image sides, --size-images each")
@click.option("--size-images", type=click.IntRange(min=2), default=8, show_default=True)
@click.option("--repeats", type=click.IntRange(min=1), default=3, show_default=True)
def main(n_anchors, patch_size, counts, sizes, size_images, repeats):
    series = {"more 64×64 images": [(64, n) for n in ints(counts)],
              f"larger images ({size_images} each)": [(s, size_images) for s in ints(sizes)]}
    rows = []
    for name, points in series.items():
        for size, n_images in points:
            row = measure(size, n_images, n_anchors, patch_size, repeats)
            rows.append({**row, "series": name})
            print(f"{size}x{size} × {n_images}: {row['cpu']:.4f} CPU s/anchor ({row['fixed']:.4f} fixed)", flush=True)

    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"\nMachine: {cpu_model()}, {os.cpu_count()} CPU cores visible (load average {load}), 1 FFT thread; "
          f"numpy {np.__version__}")
    print(f"{n_anchors} anchors searched together, {patch_size}×{patch_size} patches, best of {repeats} runs. "
          "CPU time of this process (wall time in brackets); the fits use the search cost (total − fixed) "
          "against the pixels of the other images\n")
    print("| series | image | images searched | s / anchor, total | of which fixed (1 image) | "
          "search: pixels of the other images | search: s / anchor | ns / (anchor · pixel) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['series']} | {r['size']}×{r['size']} | {r['images']} | {r['cpu']:.4f} ({r['wall']:.4f}) | "
              f"{r['fixed']:.4f} | {r['pixels']:,} | {r['s_per_anchor']:.4f} | {r['ns_per_anchor_pixel']:.1f} |")
    print()
    for name in series:
        a, b = fit_exponent([r for r in rows if r["series"] == name])
        print(f"- {name}: s/anchor ∝ pixels^{b:.2f}")
    a, b = fit_exponent(rows)
    largest = max(rows, key=lambda r: r["size"] * 10**9 + r["pixels"])
    per_pixel = largest["ns_per_anchor_pixel"] * 1e-9
    print(f"- all points: s/anchor ≈ {a:.3g} · pixels^{b:.2f}")
    print(f"- the paper's Cityscapes search ({CITYSCAPES_PIXELS:,} pixels per anchor: 2975 images of 1024×2048) "
          f"at the cost per pixel of the largest images here ({largest['size']}²: {largest['ns_per_anchor_pixel']:.1f} "
          f"ns): ≈ {per_pixel * CITYSCAPES_PIXELS / 60:.1f} CPU-minutes per anchor, "
          f"≈ {1000 * per_pixel * CITYSCAPES_PIXELS / 3600:.0f} CPU-hours for 1000 anchors "
          f"(the power law above, extrapolated, says {1000 * a * CITYSCAPES_PIXELS**b / 3600:.0f})")


if __name__ == "__main__":
    main()
