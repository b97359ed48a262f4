"""Forward+backward time and peak memory of every registered network (issue 3's benchmark).

Each network runs in its own process, because peak RSS only grows within a process: random
initialisation, the paper's Pascal crop (batch 2 at 321×321 by default), cross-entropy on random labels
in train mode (BatchNorm frozen where the paper froze it), one warm-up step, then the median of
``--steps`` timed forward+backward steps. Prints a markdown table and the machine it ran on.

    OMP_NUM_THREADS=2 python -m benchmarks.bench_architectures                 # from the repository root
    OMP_NUM_THREADS=2 python -m benchmarks.bench_architectures --arch deeplabv2_resnet101 --steps 5
    python -m benchmarks.bench_architectures --device cuda                      # GPU time and memory
"""
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import click
import torch
import torch.nn.functional as F

import cli_errors
from architectures import ARCHITECTURES, build_arch
from benchmarks.machine import cpu_model

REPO = Path(__file__).resolve().parents[1]


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux reports KiB


def measure(name: str, batch: int, size: int, steps: int, device: str, num_classes: int = 21) -> dict:
    """Time ``steps`` forward+backward passes of ``name`` after one warm-up step; runs in a fresh process."""
    torch.manual_seed(0)
    net = build_arch(name, num_classes).to(device).train()
    rss_built = peak_rss_gib()
    x = torch.randn(batch, 3, size, size, device=device)
    y = torch.randint(0, num_classes, (batch, size, size), device=device)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    times = []
    for step in range(steps + 1):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        loss = F.cross_entropy(net(x), y)  # logits (N, C, H, W), labels (N, H, W)
        loss.backward()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        if step > 0:
            times.append(time.perf_counter() - t0)
        net.zero_grad(set_to_none=True)
    return {
        "name": name,
        "params_m": sum(p.numel() for p in net.parameters()) / 1e6,
        "seconds": statistics.median(times),
        "rss_built_gib": rss_built,
        "peak_rss_gib": peak_rss_gib(),
        "gpu_peak_gib": torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None,
    }


def run_child(name: str, batch: int, size: int, steps: int, device: str) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.bench_architectures", "--child", name, "--batch", str(batch),
           "--size", str(size), "--steps", str(steps), "--device", device]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        last_line = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"
        return {"name": name, "error": last_line}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def markdown_table(rows: list[dict], gpu: bool) -> str:
    memory = "peak GPU memory (GiB)" if gpu else "peak RSS (GiB)"
    lines = [f"| network | params (M) | fwd+bwd (s/step, median) | RSS after build (GiB) | {memory} |",
             "|---|---:|---:|---:|---:|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['name']} | failed: {r['error']} | | | |")
            continue
        peak = r["gpu_peak_gib"] if gpu else r["peak_rss_gib"]
        lines.append(f"| {r['name']} | {r['params_m']:.1f} | {r['seconds']:.2f} | {r['rss_built_gib']:.2f} "
                     f"| {peak:.2f} |")
    return "\n".join(lines)


@click.command(cls=cli_errors.Command)
@click.option("--arch", "archs", multiple=True, help="network(s) to run (default: every registered one)")
@click.option("--batch", default=2, show_default=True)
@click.option("--size", default=321, show_default=True, help="square input side (the paper's Pascal crop)")
@click.option("--steps", default=3, show_default=True, help="timed steps after one warm-up step")
@click.option("--device", default="cpu", show_default=True)
@click.option("--child", default=None, hidden=True, help="measure this one network and print JSON")
def main(archs, batch, size, steps, device, child):
    if child is not None:
        print(json.dumps(measure(child, batch, size, steps, device)))
        return
    names = list(archs) or sorted(ARCHITECTURES)
    rows = []
    for name in names:
        rows.append(run_child(name, batch, size, steps, device))
        print(f"{name}: {rows[-1].get('seconds', 'failed')}", file=sys.stderr, flush=True)
    where = torch.cuda.get_device_name() if device.startswith("cuda") else cpu_model()
    omp = os.environ.get("OMP_NUM_THREADS", "unset")
    print(f"Machine: {where}; {os.cpu_count()} CPU cores visible; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads (OMP_NUM_THREADS={omp}); batch {batch} at {size}x{size}, "
          f"train mode, random init, median of {steps} steps after 1 warm-up.\n")
    print(markdown_table(rows, gpu=device.startswith("cuda")))
    failed = [r["name"] for r in rows if "error" in r]
    if failed:  # the table shows them; the exit status says so too
        raise click.ClickException(f"{len(failed)} network(s) failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
