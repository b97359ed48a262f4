"""Benchmark: does CutMix's gain come from the mask or from the loss? (A question users of such code ask.)

THE PROTOCOL (fixed 2026-12-03 before any of its runs; the synthetic benchmark's protocol, see
``benchmarks/synthetic_semisup.py``: recipe defaults, 2,500 iterations, 100 labels, final teacher, seeds
0, 1, 2, one torch thread per run). A 2 × 2 design plus the supervised baseline, run by
one invocation (leave the code's defaults unchanged while it runs; each run's environment.json records its commit):

    perturbation  CutMix (the paper's: one box of half the area)  |  no mask (``--mask-prop-range 0``)
    loss          ``var`` (the paper's squared error of probabilities, fraction-scaled by confidence)
                  |  ``pseudo_ce`` (cross-entropy to the teacher's arg-max, masked per pixel by confidence)

"No mask" is ``--reg cutmix`` with a box of area 0: the mask is all zeros, so the student sees the
unlabelled image itself (x_a·1 + x_b·0) and the target is the teacher's prediction on it (the lerp
with weight 0 returns g(x_a) exactly); the student and the teacher differ only by the EMA. Everything
else (weight 1, confidence 0.97, the partner batch and its teacher pass) is CutMix's. Nothing is tuned
per cell. The mask's effect is CutMix − no mask under the same loss; the loss's effect is ``pseudo_ce`` −
``var`` under the same perturbation.

    python -m benchmarks.mask_vs_loss --jobs 2 --out-dir runs/mask_vs_loss           # 15 runs (~2 h on 2 cores)
    python -m benchmarks.mask_vs_loss --jobs 2 --out-dir runs/mask_vs_loss --reuse   # keep finished runs
    python -m benchmarks.mask_vs_loss --seeds 0 --out-dir runs/mvl-smoke -- --iters 20  # smoke test

Writes ``OUT/<cell>-s<seed>/`` (each a training run), ``OUT/<cell>-s<seed>.log``, ``OUT/table.md`` and
``OUT/results.json``.
"""
from __future__ import annotations

import json
import statistics
from pathlib import Path

import click

import cli_errors
from benchmarks.synthetic_semisup import reuse_or_run, run_all

# cell -> (--reg, extra options); the order is the table's
CELLS = {
    "none": ("none", []),
    "cutmix-var": ("cutmix", ["--cons-loss=var"]),
    "cutmix-pseudo_ce": ("cutmix", ["--cons-loss=pseudo_ce"]),
    "nomask-var": ("cutmix", ["--cons-loss=var", "--mask-prop-range=0"]),
    "nomask-pseudo_ce": ("cutmix", ["--cons-loss=pseudo_ce", "--mask-prop-range=0"]),
}
# the comparisons the table reports: (name, minuend cell, subtrahend cell)
CONTRASTS = [
    ("the mask, with var", "cutmix-var", "nomask-var"),
    ("the mask, with pseudo_ce", "cutmix-pseudo_ce", "nomask-pseudo_ce"),
    ("the loss (pseudo_ce − var), with CutMix", "cutmix-pseudo_ce", "cutmix-var"),
    ("the loss (pseudo_ce − var), no mask", "nomask-pseudo_ce", "nomask-var"),
]


def mean_std(values: list[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.2f} ± {std:.2f}"


def markdown(results: dict[str, list[dict]], seeds: list[int]) -> str:
    """The per-cell table (mIoU %, and gain over the baseline per seed when it ran) and the contrasts."""
    base = results.get("none")
    lines = ["| cell | --reg, options | " + " | ".join(f"seed {s}" for s in seeds) +
             " | mIoU mean ± std | − none, per seed | − none, mean | minutes/run |",
             "|---|---|" + "---|" * len(seeds) + "---|---|---|---|"]
    for cell, finals in results.items():
        reg, extra = CELLS[cell]
        mious = [100 * f["miou"] for f in finals]
        if base is not None and cell != "none":
            diffs = [m - 100 * b["miou"] for m, b in zip(mious, base, strict=True)]
            gains = ", ".join(f"{d:+.2f}" for d in diffs) + f" | {statistics.mean(diffs):+.2f}"
        else:
            gains = " | "
        lines.append(f"| {cell} | `{' '.join([f'--reg={reg}', *extra])}` | " +
                     " | ".join(f"{m:.2f}" for m in mious) + f" | {mean_std(mious)} | {gains} | "
                     f"{statistics.median(f['seconds'] for f in finals) / 60:.1f} |")
    rows = [c for c in CONTRASTS if c[1] in results and c[2] in results]
    if rows:
        lines += ["", "| effect of | per seed (points) | mean | ahead on |", "|---|---|---|---|"]
        for name, a, b in rows:
            diffs = [100 * (fa["miou"] - fb["miou"]) for fa, fb in zip(results[a], results[b], strict=True)]
            ahead = sum(round(d, 2) > 0 for d in diffs)  # as printed: a 0.00 tie is not ahead
            lines.append(f"| {name} ({a} − {b}) | " + ", ".join(f"{d:+.2f}" for d in diffs) +
                         f" | {statistics.mean(diffs):+.2f} | {ahead} of {len(diffs)} seeds |")
    return "\n".join(lines)


@click.command(cls=cli_errors.Command)
@click.option("--cells", default=",".join(CELLS), show_default=True, help="comma-separated cells to run")
@click.option("--seeds", default="0,1,2", show_default=True)
@click.option("--threads", default=1, show_default=True, type=click.IntRange(min=1))
@click.option("--jobs", default=1, show_default=True, type=click.IntRange(min=1), help="runs at once")
@click.option("--out-dir", default="runs/mask_vs_loss", show_default=True, type=click.Path(file_okay=False))
@click.option("--reuse/--no-reuse", default=False, help="keep runs that finished with the same settings")
@click.argument("extra", nargs=-1)
def main(cells, seeds, threads, jobs, out_dir, reuse, extra):
    """Run the protocol above; EXTRA arguments, after --, go to every training run (e.g. -- --iters 20)."""
    cells = [c.strip() for c in cells.split(",") if c.strip()]
    unknown = [c for c in cells if c not in CELLS]
    if unknown:
        raise click.UsageError(f"unknown cell(s) {', '.join(unknown)}; choose from {', '.join(CELLS)}")
    try:
        seeds = [int(s) for s in seeds.split(",")]
    except ValueError:
        raise click.UsageError(f"--seeds {seeds!r} must be comma-separated integers, e.g. 0,1,2") from None
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    def one(run):
        cell, seed = run
        reg, options = CELLS[cell]
        out = out_dir / f"{cell}-s{seed}"
        final, reused = reuse_or_run(reg, seed, out, threads, [*options, *extra], reuse)
        if reused:
            click.echo(f"{cell} seed {seed}: reusing {out}")
        else:
            click.echo(f"{cell} seed {seed}: mIoU {100 * final['miou']:.2f}%  {final['seconds']:.0f} s", err=True)
        return final

    runs = [(cell, seed) for seed in seeds for cell in cells]
    finals = dict(zip(runs, run_all(one, runs, jobs), strict=True))
    results = {cell: [finals[(cell, seed)] for seed in seeds] for cell in cells}
    table = markdown(results, seeds)
    click.echo("\n" + table)
    (out_dir / "table.md").write_text(table + "\n")
    summary = {cell: [{"seed": s, "miou": f["miou"], "seconds": f["seconds"]}
                      for s, f in zip(seeds, finals, strict=True)] for cell, finals in results.items()}
    (out_dir / "results.json").write_text(json.dumps({"extra": list(extra), "threads": threads, "cells": summary},
                                                     indent=2) + "\n")


if __name__ == "__main__":
    main()
