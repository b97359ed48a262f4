"""The table of ``benchmarks/fashion_B_replication.sh``'s runs: protocol B on new seeds (issue 5).

Reads ``OUT_DIR/<method>-s<seed>/final.json`` for the baseline (``none``), ``cutmix`` and ``cutmix_colour``,
and prints, per method, each seed's validation / test mIoU, the mean ± sample std over the finished seeds,
each seed's gain over the baseline, and the issue's targets for each CutMix variant on these seeds alone:
ahead of the baseline on every seed, by at least 3 points on average, and every run at most 15 minutes
(the training process's own ``seconds``, which sum the parts of a resumed run). A seed counts only where
all three of its runs have finished; the others are listed.

    python -m benchmarks.fashion_replication_table runs/fashion_B_replication
"""
import json
import re
import statistics
import sys
from pathlib import Path

import click

import cli_errors
from benchmarks.fashion_canvas import TARGET_GAIN, TARGET_SECONDS, mean_std

METHODS = ("none", "cutmix", "cutmix_colour")
NAMES = {"none": "baseline (`--reg none`)", "cutmix": "CutMix", "cutmix_colour": "CutMix + `--aug-strong-colour`"}


def read_runs(out_dir: Path) -> tuple[dict, list[str]]:
    """{(method, seed): final.json} of the finished runs, and the names of the unfinished ones."""
    runs, unfinished = {}, []
    for run in sorted(p for p in out_dir.iterdir() if p.is_dir()):
        match = re.fullmatch(r"(none|cutmix|cutmix_colour)-s(\d+)", run.name)
        if match is None:
            continue
        try:
            runs[match[1], int(match[2])] = json.loads((run / "final.json").read_text())
        except FileNotFoundError:
            unfinished.append(run.name)
        except (ValueError, OSError) as err:
            raise click.ClickException(f"{run / 'final.json'} cannot be read ({err}); move the run away or "
                                       f"run it again") from None
    return runs, unfinished


def complete_seeds(runs: dict) -> list[int]:
    """The seeds whose three runs have all finished."""
    return sorted({seed for _, seed in runs if all((m, seed) in runs for m in METHODS)})


def table(runs: dict) -> tuple[list[str], dict]:
    """Markdown lines, and {variant: {check: passed}} for the CutMix variants."""
    seeds = complete_seeds(runs)
    if not seeds:
        return [], {}
    lines = ["| method | " + " | ".join(f"seed {s} val / test" for s in seeds)
             + " | val mIoU mean ± std | test mIoU mean ± std | − baseline, val, per seed | minutes/run |",
             "|---|" + "---|" * (len(seeds) + 4)]
    checks = {}
    for method in METHODS:
        rows = [runs[method, s] for s in seeds]
        gains = [runs[method, s]["miou"] - runs["none", s]["miou"] for s in seeds]
        minutes = [r["seconds"] / 60 for r in rows]
        cells = " | ".join(f"{100 * r['miou']:.2f} / {100 * r['test_miou']:.2f}" for r in rows)
        gain_text = "" if method == "none" else ", ".join(f"{100 * g:+.2f}" for g in gains) + \
            f" (mean {100 * statistics.mean(gains):+.2f})"
        lines.append(f"| {NAMES[method]} | {cells} | {mean_std([r['miou'] for r in rows])} | "
                     f"{mean_std([r['test_miou'] for r in rows])} | {gain_text} | "
                     f"{min(minutes):.1f}–{max(minutes):.1f} |")
        if method != "none":
            checks[method] = {
                "ahead of the baseline on every seed": all(g > 0 for g in gains),
                f"mean gain ≥ {100 * TARGET_GAIN:.0f} points (got {100 * statistics.mean(gains):.2f})":
                    statistics.mean(gains) >= TARGET_GAIN,
                f"every run ≤ {TARGET_SECONDS // 60} min (slowest {max(minutes):.1f})":
                    max(minutes) * 60 <= TARGET_SECONDS,
            }
    return lines, checks


@click.command(cls=cli_errors.Command, context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("out_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
def main(out_dir: Path):
    """Print the replication's table and its targets from the runs in OUT_DIR."""
    runs, unfinished = read_runs(out_dir)
    lines, checks = table(runs)
    if not lines:
        raise click.ClickException(f"no seed in {out_dir} has all of {', '.join(METHODS)} finished yet; run "
                                   f"benchmarks/fashion_B_replication.sh {out_dir}")
    click.echo("\n".join(lines))
    for method, results in checks.items():
        click.echo(f"\n{NAMES[method]}:")
        for text, ok in results.items():
            click.echo(f"{'PASS' if ok else 'FAIL'}  {text}")
    incomplete = [f"{m}-s{s}" for m, s in sorted(runs) if s not in complete_seeds(runs)]
    if unfinished or incomplete:
        click.echo(f"\nnot in the table: {', '.join(unfinished + incomplete)} (unfinished, or their seed is)")
    if not all(ok for results in checks.values() for ok in results.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
