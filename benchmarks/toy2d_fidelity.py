"""Fidelity benchmark of the 2D toy experiments (issue 6).

Runs `toy2d.py figure1` (the four situations of the paper's Figure 1) for several seeds, prints a table of
error_rate and grid_error_rate (mean ± std over seeds, in %) and wall time, and checks the two targets:

1. mean teacher with a gap reaches at most half the error of supervised only (same gap data);
2. with no gap, constrained perturbation reaches at most half the error of isotropic perturbation.

Targets use `error_rate` (the error over the dataset's samples, as the authors report it). Exit status 0
when both pass, 1 otherwise.

    python benchmarks/toy2d_fidelity.py                                   # paper settings, seeds 0,1,2
    python benchmarks/toy2d_fidelity.py --seeds 0 --epochs 5 --out-dir runs/toy2d-fidelity-short
    python benchmarks/toy2d_fidelity.py --jobs 2 --reuse                  # 2 panels at a time; keep finished
    python benchmarks/toy2d_fidelity.py --jobs 12 --device cuda           # all 12 panel runs at once on a GPU
    python benchmarks/toy2d_fidelity.py --dataset curve --jobs 2          # on the open curve instead

Each panel of each seed runs in its own process (log in OUT/seed_<s>_<panel>.log, results in
OUT/seed_<s>/<panel>/); then `figure1 --reuse` composes each seed's figure1.png and summary.json. The table
goes to stdout, OUT/results.md and OUT/results.json.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import click
import numpy as np

import cli_errors
import toy2d

TOY2D = Path(__file__).resolve().parents[1] / "toy2d.py"
PANELS = ("a_supervised", "b_mean_teacher_gap", "c_no_gap_isotropic", "d_no_gap_constrained")
PANEL_ORDER = ("b", "c", "d", "a")  # longest first (a: 25 supervised epochs)


def figure1_command(seed: int, out: Path, epochs, device: str, threads: int, hidden_size: int,
                    panels: str = "a,b,c,d", reuse: bool = True, labels_from_gap: bool = True,
                    conf_avg: bool = False, dataset: str = "boundary") -> list[str]:
    cmd = [sys.executable, str(TOY2D), "figure1", "--seed", str(seed), "--out-dir", str(out), "--panels", panels]
    cmd += ["--dataset", dataset]
    cmd += ["--reuse" if reuse else "--overwrite", "--device", device, "--threads", str(threads)]
    cmd += ["--hidden-size", str(hidden_size), "--labels-from-gap" if labels_from_gap else "--labels-per-panel"]
    cmd += ["--conf-avg" if conf_avg else "--no-conf-avg"]
    return cmd + (["--epochs", str(epochs)] if epochs is not None else [])


def run_all(commands: dict[str, list[str]], out_dir: Path, jobs: int) -> dict[str, float]:
    """Run the commands (one process each, log in OUT/<key>.log), at most `jobs` at a time; wall seconds per key."""
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    pending, running, wall = list(commands.items()), {}, {}
    while pending or running:
        while pending and len(running) < jobs:
            key, cmd = pending.pop(0)
            log = open(out_dir / f"{key}.log", "w")
            click.echo(f"{key}: {' '.join(cmd)}")
            running[key] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env), log, time.time())
        for key, (proc, log, start) in list(running.items()):
            if proc.poll() is not None:
                log.close()
                del running[key]
                wall[key] = time.time() - start
                if proc.returncode != 0:
                    raise click.ClickException(f"{key} failed (exit {proc.returncode}): see {out_dir / key}.log")
                click.echo(f"{key}: done in {wall[key]:.0f}s")
        time.sleep(1.0)
    return wall


def mean_std(values: list[float]) -> tuple[float, float]:
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def summarise(summaries: dict[int, list[dict]]) -> dict:
    """Per panel: error rates (mean, std over seeds) and seconds; the two targets."""
    table = {}
    for i, name in enumerate(PANELS):
        entries = [summaries[seed][i] for seed in sorted(summaries)]
        assert all(e["name"] == name for e in entries), "unexpected panel order in summary.json"
        table[name] = {
            "title": entries[0]["title"],
            "epochs": entries[0]["settings"]["epochs"],
            "error_rate": mean_std([e["error_rate"] for e in entries]),
            "grid_error_rate": mean_std([e["grid_error_rate"] for e in entries]),
            "seconds": float(np.mean([e["seconds"] for e in entries])),
            "per_seed_error_rate": [e["error_rate"] for e in entries],
        }
    err = {name: row["error_rate"][0] for name, row in table.items()}
    targets = {
        "mean teacher with a gap <= 1/2 supervised": err["b_mean_teacher_gap"] <= 0.5 * err["a_supervised"],
        "no gap: constrained <= 1/2 isotropic": err["d_no_gap_constrained"] <= 0.5 * err["c_no_gap_isotropic"],
    }
    return {"panels": table, "targets": targets}


def markdown(result: dict, seeds: list[int], wall: float) -> str:
    lines = [
        f"seeds {','.join(map(str, seeds))}; wall time {wall / 60:.1f} min",
        "",
        "| panel | epochs | error_rate % (samples) | grid_error_rate % | s per run |",
        "|---|---|---|---|---|",
    ]
    for row in result["panels"].values():
        (em, es), (gm, gs) = row["error_rate"], row["grid_error_rate"]
        lines.append(
            f"| {row['title']} | {row['epochs']} | {100 * em:.2f} ± {100 * es:.2f}"
            f" | {100 * gm:.2f} ± {100 * gs:.2f} | {row['seconds']:.0f} |"
        )
    lines.append("")
    lines += [f"{'PASS' if ok else 'FAIL'}: {name}" for name, ok in result["targets"].items()]
    return "\n".join(lines) + "\n"


@click.command(cls=cli_errors.Command)
@click.option("--seeds", default="0,1,2", show_default=True, help="comma-separated seeds")
@click.option("--epochs", type=click.IntRange(min=0), default=None, help="epochs of every panel (default: paper's)")
@click.option(
    "--out-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("runs/toy2d-fidelity"),
    show_default=True,
)
@click.option("--device", default="cpu", show_default=True)
@click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True,
              help="panels run at once (each panel of each seed is one process)")
@click.option("--threads", type=click.IntRange(min=0), default=1, show_default=True, help="torch threads per run")
@click.option(
    "--hidden-size",
    type=click.IntRange(min=1),
    default=512,
    show_default=True,
    help="MLP width (512 = paper; smaller only for a quick proxy)",
)
@click.option(
    "--labels-from-gap/--labels-per-panel",
    default=True,
    show_default=True,
    help="every panel labels the same points, from the gap data (the authors'); or each its own (the first table)",
)
@click.option(
    "--reuse/--no-reuse",
    default=False,
    show_default=True,
    help="keep panels already finished in --out-dir with the same settings instead of running them again",
)
@click.option(
    "--conf-avg/--no-conf-avg",
    default=False,
    show_default=True,
    help="consistency panels scale the loss by the confident fraction (the paper's segmentation rule) instead "
    "of the authors' per-sample toy mask",
)
@click.option(
    "--dataset",
    default="boundary",
    show_default=True,
    help="toy2d's data: boundary (the shipped closed curve, toy2d's default) | curve (the shipped open curve) "
    "| img:PATH",
)
@click.option("--overwrite/--no-overwrite", default=False, show_default=True)
def main(seeds, epochs, out_dir, device, jobs, threads, hidden_size, labels_from_gap, conf_avg, dataset, reuse,
         overwrite):
    """Run toy2d figure1 for each seed and check the paper's two findings."""
    try:
        seed_list = [int(s) for s in seeds.split(",") if s.strip()]
    except ValueError:
        raise click.BadParameter(f"{seeds!r} is not a comma-separated list of integers", param_hint="--seeds") from None
    if not seed_list:
        raise click.BadParameter("no seed given", param_hint="--seeds")
    toy2d.check_dataset(dataset)  # a bad --dataset: one usage error here, not one per panel process
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (overwrite or reuse):
        raise click.UsageError(f"--out-dir {out_dir} is not empty (pass --reuse or --overwrite)")
    out_dir.mkdir(parents=True, exist_ok=True)

    # one process per (seed, panel), the long panels first; then one quick figure1 per seed that reuses
    # the four panels and composes figure1.png and summary.json
    commands = {}
    for seed in seed_list:
        for panel in PANEL_ORDER:
            commands[f"seed_{seed}_{panel}"] = figure1_command(
                seed, out_dir / f"seed_{seed}", epochs, device, threads, hidden_size, panel, reuse, labels_from_gap,
                conf_avg, dataset)
    start = time.time()
    run_all(commands, out_dir, jobs)
    run_all({f"seed_{seed}": figure1_command(seed, out_dir / f"seed_{seed}", epochs, device, threads, hidden_size,
                                             labels_from_gap=labels_from_gap, conf_avg=conf_avg, dataset=dataset)
             for seed in seed_list}, out_dir, jobs)
    wall = time.time() - start

    summaries = {s: json.loads((out_dir / f"seed_{s}" / "summary.json").read_text()) for s in seed_list}
    result = summarise(summaries)
    result.update(dataset=dataset, seeds=seed_list, epochs=epochs, hidden_size=hidden_size,
                  labels_from_gap=labels_from_gap, conf_avg=conf_avg, device=device, wall_seconds=wall)
    text = markdown(result, seed_list, wall)
    (out_dir / "results.md").write_text(text)
    (out_dir / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    click.echo(text)
    sys.exit(0 if all(result["targets"].values()) else 1)


if __name__ == "__main__":
    main()
