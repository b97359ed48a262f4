"""Benchmark: supervised baseline vs consistency regularizers on the synthetic shapes, several seeds.

THE PROTOCOL (fixed before comparing methods; identical for every regularizer, nothing tuned per method):
    python train_seg_semisup.py --dataset=synthetic --reg=REG --seed=S
with the synthetic recipe's defaults — small U-Net (width 16), 100 labelled images out of 4,000 (all
4,000 unlabelled), 64×64 crops with random scale 0.75–1.25 and h-flips, batch 16 labelled + 16
unlabelled (+16 mixing partners), Adam lr 1e-3 constant, 3,000 iterations, mean teacher α 0.99,
confidence threshold 0.97, each regularizer's paper weight (1 for Cutout/CutMix); evaluation of the
final teacher on the 500 validation images. Seeds 0, 1, 2 (seed = split seed).

Each run is a separate process (so peak RSS is per run) with ``--threads`` torch threads; ``--jobs``
runs go at once (e.g. ``--jobs 2 --threads 1`` on 2 cores).
Usage:
    python benchmarks/synthetic_semisup.py                       # none vs cutmix, seeds 0 1 2
    python benchmarks/synthetic_semisup.py --regs none,cutout,cutmix --out-dir runs/bench_synthetic
    python benchmarks/synthetic_semisup.py --reuse               # keep finished runs, run the rest

--reuse keeps a run that wrote final.json only if its config.json holds every setting this invocation would
train with (iterations, device, threads, each regularizer's defaults of today...); any difference is an error
naming it. The code is not compared: each run records its commit in environment.json, and --reuse prints a
note for a run made with other code than this checkout's (after a change to the code, prefer a new --out-dir).
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import click

import cli_errors
import train_seg_semisup

ROOT = Path(__file__).resolve().parents[1]


def train_args(reg: str, seed: int, out: Path, threads: int, extra: list[str]) -> list[str]:
    """The options of one training run of the protocol."""
    return ["--dataset=synthetic", f"--reg={reg}", f"--seed={seed}", f"--threads={threads}", f"--out-dir={out}",
            "--overwrite", *extra]


def run_one(reg: str, seed: int, out: Path, threads: int, extra: list[str]) -> dict:
    cmd = [sys.executable, str(ROOT / "train_seg_semisup.py"), *train_args(reg, seed, out, threads, extra)]
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    t0 = time.time()
    log_path = out.parent / f"{out.name}.log"
    with open(log_path, "w") as log:
        code = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env).returncode
    if code != 0:
        last = log_path.read_text().strip().splitlines()[-1:] or [""]
        raise click.ClickException(f"--reg={reg} seed {seed} failed (exit {code}): {last[0]}  (log: {log_path})")
    final = json.loads((out / "final.json").read_text())
    final["wall_seconds"] = time.time() - t0
    return final


def reuse_or_run(reg: str, seed: int, out: Path, threads: int, extra: list[str], reuse: bool) -> tuple[dict, bool]:
    """(final.json, reused): with ``reuse``, the finished run in ``out`` when every setting it ran with is this
    invocation's (a table mixing devices, iterations or defaults of another day would mislead); else a new run."""
    if reuse and (out / "final.json").is_file():
        conflicts = train_seg_semisup.config_conflicts(
            out, train_seg_semisup.resolved_config(train_args(reg, seed, out, threads, extra)))
        if conflicts:
            raise click.ClickException(f"--reuse: {out} ran with {'; '.join(conflicts)}; choose another --out-dir "
                                       f"or move that run away")
        note = train_seg_semisup.commit_note(out)
        if note:
            click.echo(f"note: {note}")
        return json.loads((out / "final.json").read_text()), True
    return run_one(reg, seed, out, threads, extra), False


def run_all(fn, items: list, jobs: int) -> list:
    """``[fn(item) for item in items]``, ``jobs`` at a time; after a failure no further item starts, and the
    failure is raised once the running ones end."""
    failed = threading.Event()

    def guarded(item):
        if failed.is_set():
            return None
        try:
            return fn(item)
        except BaseException:
            failed.set()
            raise

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(guarded, item) for item in items]
    for future in futures:
        if future.exception() is not None:
            raise future.exception()
    return [future.result() for future in futures]


@click.command(cls=cli_errors.Command)
@click.option("--regs", default="none,cutmix", show_default=True, help="comma-separated --reg values")
@click.option("--seeds", default="0,1,2", show_default=True)
@click.option("--threads", default=2, show_default=True, type=int)
@click.option("--out-dir", default="runs/bench_synthetic", show_default=True, type=click.Path(file_okay=False))
@click.option("--jobs", default=1, show_default=True, type=click.IntRange(min=1), help="runs at once")
@click.option("--reuse/--no-reuse", default=False, help="keep runs finished with this invocation's settings")
@click.argument("extra", nargs=-1)
def main(regs, seeds, threads, jobs, out_dir, reuse, extra):
    """Run the protocol above; EXTRA arguments go to every training run (e.g. --iters 100 for a smoke test)."""
    regs, seeds = regs.split(","), [int(s) for s in seeds.split(",")]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    runs = [(reg, seed) for seed in seeds for reg in regs]

    def one(run):
        reg, seed = run
        out = out_dir / f"{reg}-s{seed}"
        final, reused = reuse_or_run(reg, seed, out, threads, list(extra), reuse)
        final["device"] = json.loads((out / "config.json").read_text())["device"]
        if reused:
            click.echo(f"{reg} seed {seed}: reusing {out}")
        else:
            click.echo(f"{reg} seed {seed}: mIoU {100 * final['miou']:.2f}%  {final['seconds']:.0f} s  "
                       f"peak RSS {final.get('peak_rss_mb') or float('nan'):.0f} MB")
        return final

    finals = dict(zip(runs, run_all(one, runs, jobs), strict=True))
    results = {reg: [finals[(reg, seed)] for seed in seeds] for reg in regs}

    lines = ["| reg | " + " | ".join(f"seed {s}" for s in seeds) +
             " | mean ± std | minutes/run | peak RSS MB | device per seed |",
             "|---|" + "---|" * len(seeds) + "---|---|---|---|"]
    for reg, finals in results.items():
        mious = [100 * f["miou"] for f in finals]
        std = statistics.stdev(mious) if len(mious) > 1 else 0.0
        lines.append(f"| {reg} | " + " | ".join(f"{m:.2f}" for m in mious) +
                     f" | {statistics.mean(mious):.2f} ± {std:.2f} | "
                     f"{statistics.median(f['seconds'] for f in finals) / 60:.1f} | "
                     f"{max(f.get('peak_rss_mb') or 0 for f in finals):.0f} | "
                     f"{', '.join(f['device'] for f in finals)} |")
    table = "\n".join(lines)
    click.echo("\n" + table)
    (out_dir / "table.md").write_text(table + "\n")
    if "none" in results:
        base = [f["miou"] for f in results["none"]]
        for reg, finals in results.items():
            if reg != "none":
                gains = [100 * (f["miou"] - b) for f, b in zip(finals, base, strict=True)]
                click.echo(f"{reg} − none per seed: " + ", ".join(f"{g:+.2f}" for g in gains) +
                           f"; mean {statistics.mean(gains):+.2f} points")


if __name__ == "__main__":
    main()
