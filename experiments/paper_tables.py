"""The paper's segmentation tables: the commands of their runs, running them, and a table of the results.

    python -m experiments.paper_tables commands --table cityscapes --data-dir data/cityscapes_half
    python -m experiments.paper_tables run --table cityscapes --data-dir data/cityscapes_half -- --device cuda:0
    python -m experiments.paper_tables run --table cityscapes --data-dir data/cityscapes_half --shard 1/4
    python -m experiments.paper_tables summarize runs/paper

``commands`` prints one training command per line (for a job array or ``xargs -P``); ``run`` runs them one
at a time, skipping the finished ones (whose settings must be this invocation's) and resuming the ones that
stopped; ``summarize`` reads the runs under a folder — these or any others — and prints mIoU mean ± std over
seeds per data set, network, perturbation and labelled count, beside the published number where the paper
has one. Each table is the paper's protocol: its data set's recipe (train_seg_semisup.py), the labelled
counts, the seeds and split seeds of the paper or of the authors' scripts. Options after ``--`` go to every
training run (``--device``, ``--threads``...); the ones that name a run (data set, network, perturbation,
labels, seeds, run directory) are this script's own.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import shlex
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

try:
    import fcntl  # one process per run (Unix); elsewhere runs are not locked
except ImportError:  # pragma: no cover
    fcntl = None

import click

import architectures
import cli_errors
import train_seg_semisup

ROOT = Path(__file__).resolve().parents[1]
ALL = None  # the labelled count "every training image"


@dataclass(frozen=True)
class Table:
    dataset: str
    arch: str  # the paper's network; --arch chooses another
    labels: tuple  # labelled counts of the table; ALL = every training image
    seeds: tuple  # --seed (= --split-seed) of each repeat
    authors_split: bool  # the authors' RandomState draw of the labelled images (their seeds, their images)
    needs_split_file: bool  # the labelled images are the first N lines of a public order file


TABLES = {
    # Pascal VOC aug: the Mittal et al. order (one split; --seeds for repeats)
    "pascal_aug": Table("pascal_aug", "deeplabv2_resnet101", (106, 212, 529, 1323, ALL), (0,), False, True),
    # Cityscapes, the half-resolution copy: the authors' five split seeds
    "cityscapes": Table("cityscapes", "deeplabv2_resnet101", (100, 372, 744, ALL),
                        (12345, 23456, 34567, 45678, 56789), True, False),
    # ISIC 2017, the 248×248 copy: the seeds of the authors' script
    "isic2017": Table("isic2017", "densenet161_unet", (50,), (12345, 23456, 78901, 89012, 90123), True, False),
}
# the training-set sizes, for runs that recorded no split.json: "all" labelled
FULL_COUNTS = {"pascal_aug": 10582, "cityscapes": 2975}

# Published mIoU (%): (dataset, arch, reg) → {labelled count: mIoU}; the paper's tables, supplement Table 1
_PASCAL_COUNTS = (106, 212, 529, 1323, 10582)
PUBLISHED = {
    ("pascal_aug", arch, reg): dict(zip(_PASCAL_COUNTS, values, strict=True))
    for (arch, reg), values in {
        ("deeplabv2_resnet101", "none"): (33.09, 43.15, 52.05, 60.56, 72.59),
        ("deeplabv2_resnet101", "cutmix"): (53.79, 64.81, 66.48, 67.60, 72.54),
        ("deeplabv3plus_resnet101", "none"): (37.95, 48.35, 59.19, 66.58, 76.70),
        ("deeplabv3plus_resnet101", "cutmix"): (59.52, 67.05, 69.57, 72.45, 76.73),
        ("densenet161_unet", "none"): (29.22, 39.92, 50.31, 60.65, 72.30),
        ("densenet161_unet", "cutmix"): (54.19, 63.81, 66.57, 66.78, 72.02),
        ("pspnet_resnet101", "none"): (36.69, 46.96, 59.02, 66.67, 77.59),
        ("pspnet_resnet101", "cutmix"): (67.20, 68.80, 73.33, 74.11, 77.42),
    }.items()
} | {
    ("cityscapes", "deeplabv2_resnet101", "cutmix"): {100: 51.20, 372: 60.34, 744: 63.87, 2975: 67.68},
    ("isic2017", "densenet161_unet", "cutmix"): {50: 74.57},
}



def option_spellings(*names: str) -> set[str]:
    """Every spelling (aliases, --no- forms) of the training script's options with these parameter names."""
    return {opt for param in train_seg_semisup.main.params if param.name in names
            for opt in [*param.opts, *param.secondary_opts]}


# options that name a run: this script sets them, so they may not come after --
RUN_NAMING = option_spellings("dataset", "arch", "reg", "n_sup", "seed", "split_seed", "split_file", "authors_split",
                              "out_dir", "data_dir", "overwrite", "resume") | {"-h", "--help"}
# what --resume accepts (train_seg_semisup.RESUME_OPTIONS): --iters, and where the run continues
RESUME_FLAGS = option_spellings("iters", "device", "threads", "num_workers", "checkpoint_every")
# where (and how often checkpointed) a run ran: a finished or stopped run is kept whatever these were
WHERE_IT_RAN = {"device", "threads", "processes", "num_workers", "data_dir", "checkpoint_every"}


@dataclass(frozen=True)
class Run:
    out: Path
    args: tuple  # options of train_seg_semisup.py


def option_names(extra: list[str]) -> list[str]:
    return [token.split("=", 1)[0] for token in extra if token.startswith("--")]


def plan(table: Table, arch: str, regs: list[str], labels: list, seeds: list[int], data_dir: str | None,
         split_file: str | None, out_root: Path, extra: list[str]) -> list[Run]:
    """Every run of the table, in the order a table fills: labelled count, then perturbation, then seed."""
    runs = []
    for n in labels:
        for reg in regs:
            for seed in seeds:
                out = out_root / table.dataset / arch / f"{reg}-n{'all' if n is ALL else n}-s{seed}"
                args = [f"--dataset={table.dataset}", f"--arch={arch}", f"--reg={reg}", f"--seed={seed}"]
                if n is not ALL:
                    args.append(f"--n-sup={n}")
                    if table.needs_split_file:
                        args.append(f"--split-file={split_file}")
                    elif table.authors_split:
                        args += ["--authors-split", f"--split-seed={seed}"]
                if data_dir:
                    args.append(f"--data-dir={data_dir}")
                runs.append(Run(out, (*args, f"--out-dir={out}", *extra)))
    return runs


def parse_labels(text: str | None, table: Table) -> list:
    if text is None:
        return list(table.labels)
    labels = []
    for item in text.split(","):
        item = item.strip()
        if item == "all":
            labels.append(ALL)
        elif item.isascii() and item.isdigit() and int(item) > 0:
            labels.append(int(item))
        else:
            raise click.BadParameter(f"{item!r} is not a labelled count; give positive integers or 'all', "
                                     f"e.g. 100,372,all", param_hint="--labels")
    if len(set(labels)) < len(labels):
        raise click.BadParameter(f"{text!r} names a count twice; give each once", param_hint="--labels")
    return labels


def parse_regs(text: str) -> list[str]:
    regs = [r.strip() for r in text.split(",")]
    unknown = [r for r in regs if r not in train_seg_semisup.REG_CHOICES]
    if unknown:
        raise click.BadParameter(f"{', '.join(map(repr, unknown))}: not a perturbation; choose from "
                                 f"{', '.join(train_seg_semisup.REG_CHOICES)}", param_hint="--regs")
    if len(set(regs)) < len(regs):
        raise click.BadParameter(f"{text!r} names a perturbation twice; give each once", param_hint="--regs")
    return regs


def parse_shard(text: str | None) -> tuple[int, int]:
    if text is None:
        return 0, 1
    try:
        k, n = (int(part) for part in text.split("/"))
    except ValueError:
        k = n = -1
    if not 0 <= k < n:
        raise click.BadParameter(f"{text!r}: give K/N with 0 ≤ K < N, e.g. 0/4 … 3/4 on four GPUs",
                                 param_hint="--shard")
    return k, n


def table_options(command):
    """The options that choose a table's runs (shared by ``commands`` and ``run``)."""
    options = [
        click.option("--table", "table_name", required=True, type=click.Choice(sorted(TABLES)),
                     help="the paper's table"),
        click.option("--arch", type=click.Choice(list(architectures.ARCHITECTURES)),
                     help="network [the paper's: deeplabv2_resnet101; ISIC densenet161_unet]"),
        click.option("--regs", default="none,cutmix", show_default=True,
                     help="comma-separated --reg values (none = the supervised baseline)"),
        click.option("--labels", help="comma-separated labelled counts, 'all' for every image [the table's]"),
        click.option("--seeds", help="comma-separated seeds (= split seeds) [the table's]"),
        click.option("--data-dir", help="the data set's root (else its environment variable or default)"),
        click.option("--split-file", type=click.Path(exists=True, dir_okay=False),
                     help="pascal_aug: the Mittal et al. order file (prepare_data.py splits)"),
        click.option("--out-root", default="runs/paper", show_default=True, type=click.Path(file_okay=False),
                     help="runs go to OUT_ROOT/<dataset>/<arch>/<reg>-n<labels>-s<seed>"),
        click.option("--shard", help="K/N: only every N-th run, from the K-th (0-based): one share per GPU"),
        click.argument("extra", nargs=-1, type=click.UNPROCESSED),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def runs_of(table_name, arch, regs, labels, seeds, data_dir, split_file, out_root, shard, extra) -> list[Run]:
    table = TABLES[table_name]
    labels = parse_labels(labels, table)
    if table.needs_split_file and split_file is None and any(n is not ALL for n in labels):
        raise click.UsageError(f"--table {table_name}: its labelled images are the first N lines of the Mittal et "
                               f"al. order; give --split-file mittal_split0_order.txt (README \"Where to get the "
                               f"data\")")
    named = sorted(set(option_names(list(extra)) + [t for t in extra if t == "-h"]) & RUN_NAMING)
    if named:
        raise click.UsageError(f"{', '.join(named)} after --: this script names each run (and --help is its "
                               f"own); use its options --table, --arch, --regs, --labels, --seeds, --data-dir, "
                               f"--split-file, --out-root")
    try:
        seeds = [int(s) for s in seeds.split(",")] if seeds else list(table.seeds)
    except ValueError:
        raise click.BadParameter(f"{seeds!r}: give comma-separated integers", param_hint="--seeds") from None
    if len(set(seeds)) < len(seeds):
        raise click.BadParameter("a seed is named twice; give each once", param_hint="--seeds")
    runs = plan(table, arch or table.arch, parse_regs(regs), labels, seeds, data_dir, split_file, Path(out_root),
                list(extra))
    k, n = parse_shard(shard)
    for run in runs:  # every option after -- exists (the values are checked by run, which reads the data)
        try:
            train_seg_semisup.main.make_context("train_seg_semisup.py", list(run.args))
        except click.ClickException as err:
            raise click.UsageError(f"the training options after --: {err.format_message()}") from None
    return runs[k::n]


@click.group(cls=cli_errors.Group)
def main():
    """The paper's segmentation tables: commands, runs and results."""


@main.command("commands")
@table_options
def commands(**options):
    """Print the training command of every run of a table, one per line."""
    runs = runs_of(**options)
    if not runs:
        click.echo(f"no run in shard {options['shard']}", err=True)
    for run in runs:
        click.echo(shlex.join(["python", "train_seg_semisup.py", *run.args]))


def resume_args(extra: list[str]) -> list[str]:
    """The options of ``extra`` that ``--resume`` accepts (where the run continues, and --iters)."""
    kept, i = [], 0
    while i < len(extra):
        token = extra[i]
        name = token.split("=", 1)[0]
        takes_value = name in RESUME_FLAGS and "=" not in token
        if name in RESUME_FLAGS:
            kept += extra[i:i + 2] if takes_value else [token]
        i += 2 if takes_value else 1
    return kept


@main.command("run")
@table_options
def run_table(**options):
    """Run a table's runs one at a time (finished ones are kept, stopped ones resumed); each run's output goes
    to <run directory>.log beside it."""
    runs = runs_of(**options)
    extra = list(options["extra"])
    wanted = {run.out: train_seg_semisup.resolved_config(run.args) for run in runs}  # every run valid, up front
    if not runs:
        click.echo(f"no run in shard {options['shard']}")
    with SignalRelay() as relay:
        for i, run in enumerate(runs, 1):
            if relay.signum:  # came while the last run finished: no run starts after it
                raise stopped_error(f"stopped by {signal.Signals(relay.signum).name} before [{i}/{len(runs)}] "
                                    f"{run.out}: run this command again to continue", relay.signum)
            run_one(run, f"[{i}/{len(runs)}] {run.out}", wanted[run.out], options, extra, relay)


def run_one(run, label: str, wanted: dict, options: dict, extra: list[str], relay: SignalRelay) -> None:
    """Keep, resume or start one run of ``run_table`` (``wanted``: its resolved settings)."""
    with run_lock(run.out) as lock:
        if lock is None:
            click.echo(f"{label}: another process is running it; skipped")
            return
        if (run.out / "final.json").is_file() or (run.out / "checkpoint.pt").is_file():
            conflicts = train_seg_semisup.config_conflicts(run.out, wanted, ignore=WHERE_IT_RAN)
            if conflicts:
                raise click.ClickException(f"{run.out} ran with {'; '.join(conflicts)}; give the options it "
                                           f"ran with, or another --out-root")
            note = train_seg_semisup.commit_note(run.out)
            if note:
                click.echo(f"note: {note}")
        if (run.out / "final.json").is_file():
            final = final_scores(run.out)
            click.echo(f"{label}: finished before, mIoU {100 * final['miou']:.2f}%")
            return
        if (run.out / "checkpoint.pt").is_file():
            data = [f"--data-dir={options['data_dir']}"] if options["data_dir"] else []
            args = ["--resume", f"--out-dir={run.out}", *data, *resume_args(extra)]
            click.echo(f"{label}: resuming")
        else:
            args = [*run.args, "--overwrite"]  # the training script replaces only a run directory
            click.echo(f"{label}: starting")
        final = train(run.out, args, lock, relay)
    click.echo(f"{label}: mIoU {100 * final['miou']:.2f}% in {final['seconds'] / 60:.1f} min")


@contextlib.contextmanager
def run_lock(out: Path):
    """``OUT.lock`` held by this process (an exclusive lock: the open file, whose descriptor the training
    process inherits, so the lock lasts while either lives), or None if another process holds it: two
    invocations sharing runs (a requeued job, one shard started twice) never train the same run. Where
    there is no fcntl (not Unix) runs are not locked: the file is yielded unlocked."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.parent / f"{out.name}.lock", "a") as handle:
        if fcntl is None:
            yield handle
            return
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield None
            return
        try:
            yield handle
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def has_scores(final) -> bool:
    """Whether ``final`` (a parsed final.json) holds a numeric miou (and test_miou, where it has one)."""
    return isinstance(final, dict) and all(isinstance(final.get(key, 0.0), float | int) and not isinstance(
        final.get(key, 0.0), bool) for key in ("miou", "test_miou")) and "miou" in final


def final_scores(out: Path) -> dict:
    """The run's final.json, checked: a one-line error where it is not a run's final scores."""
    final = train_seg_semisup.read_run_json(out / "final.json", "the run's final scores")
    if not has_scores(final):
        raise click.ClickException(f"{out / 'final.json'} holds no mIoU; move the run away or repair the file")
    return final


class SignalRelay(train_seg_semisup.StopRequest):
    """While entered, SIGTERM and SIGUSR1 (the training script's STOP_SIGNALS) sent to this process are noted
    (``signum``, the first one's; SIGHUP as SIGTERM) and passed on to ``child``, the training process running
    now, if any: it stops after its iteration, checkpointed, and no further run starts. In another thread
    than the main one signals cannot be caught: nothing is installed."""

    signals = tuple(dict.fromkeys((*train_seg_semisup.STOP_SIGNALS, signal.SIGHUP)))

    def __init__(self):
        super().__init__()
        self.child: subprocess.Popen | None = None

    def note(self, signum, frame) -> None:
        signum = signum if signum in train_seg_semisup.STOP_SIGNALS else signal.SIGTERM
        super().note(signum, frame)
        if self.child is not None and self.child.poll() is None:
            self.child.send_signal(signum)

    def watch(self, child: subprocess.Popen | None) -> None:
        """``child`` is the training process now (None: none); a signal noted before it started goes to it."""
        self.child = child
        if child is not None and self.signum:
            child.send_signal(self.signum)


def stopped_error(message: str, signum: int) -> click.ClickException:
    error = click.ClickException(message)
    error.exit_code = 128 + signum
    return error


def train(out: Path, args: list[str], lock, relay: SignalRelay | None = None) -> dict:
    """One training process (inheriting ``lock``'s descriptor), its output appended to ``<out>.log``; its
    final scores. ``relay`` passes stop signals on to it."""
    log_path = out.parent / f"{out.name}.log"
    with open(log_path, "a") as log:
        log.write(f"\n# {time.strftime('%Y-%m-%d %H:%M:%S')} {shlex.join(args)}\n")
        log.flush()
        # the lock's descriptor goes to the training process, which keeps it out of its loader workers
        env = {**os.environ, train_seg_semisup.INHERITED_LOCK_ENV: str(lock.fileno())} if fcntl else None
        child = subprocess.Popen([sys.executable, str(ROOT / "train_seg_semisup.py"), *args], stdout=log,
                                 stderr=subprocess.STDOUT, env=env, pass_fds=(lock.fileno(),) if fcntl else ())
        try:
            if relay is not None:
                relay.watch(child)
            code = child.wait()
        except BaseException:  # Ctrl-C, say: the training process ends too (as Ctrl-C ends it: with several
            child.send_signal(signal.SIGINT)  # processes, its launcher kills them), not left holding the lock
            try:
                child.wait(timeout=60)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
            raise
        finally:
            if relay is not None:
                relay.watch(None)
    # stopped after an iteration, checkpointed (or ended by the signal before its training began)
    signum = code - 128 if code > 0 else -code
    if signum in train_seg_semisup.STOP_SIGNALS:
        raise stopped_error(f"{out} was stopped by {signal.Signals(signum).name}: run this command again to "
                            f"continue it (log: {log_path})", signum)
    if code != 0 or not (out / "final.json").is_file():
        last = (log_path.read_text().strip().splitlines() or [""])[-1]
        raise click.ClickException(f"{out} failed (exit {code}{', no final.json' if code == 0 else ''}): {last}  "
                                   f"(log: {log_path})")
    return final_scores(out)


# ----------------------------------------------------------------------------- summarize

# config entries that may differ between the runs of one row: the repeats' own, and where they ran (a data
# folder or weights file of another name is named under the table: it may hold other data)
REPEAT_KEYS = {"seed", "split_seed", "out_dir", "overwrite", "resume", "num_workers", "device", "threads",
               "processes", "checkpoint_every"}


@dataclass
class Result:
    key: tuple  # (dataset, arch, reg, labelled count)
    config: dict
    final: dict


def read_result(out: Path) -> Result:
    """The finished run in ``out``; ValueError or OSError where its files cannot be read as a run's."""
    config = json.loads((out / "config.json").read_text())
    final = json.loads((out / "final.json").read_text())
    if not isinstance(config, dict) or not has_scores(final):
        raise ValueError("config.json and final.json must be objects, final.json with a numeric miou")
    split = json.loads((out / "split.json").read_text()) if (out / "split.json").is_file() else {}
    if isinstance(split, dict) and isinstance(split.get("labelled"), list):
        n_labelled = len(split["labelled"])
    elif config.get("n_sup") is not None:
        n_labelled = config["n_sup"]
    else:  # every training image labelled, and no split.json to count them
        n_labelled = FULL_COUNTS.get(config.get("dataset"), "all")
    return Result((config.get("dataset"), config.get("arch"), config.get("reg"), n_labelled), config, final)


def read_results(roots: list[Path]) -> tuple[list[Result], list[Path], list[str]]:
    """Every finished run under ``roots`` (a folder holding config.json and final.json, and split.json), the
    run folders without final.json (unfinished), and the ones whose files cannot be read (with why)."""
    results, unfinished, unreadable = [], [], []
    for root in roots:
        for config_path in sorted(root.rglob("config.json")):
            out = config_path.parent
            if not (out / "final.json").is_file():
                unfinished.append(out)
                continue
            try:
                results.append(read_result(out))
            except (ValueError, OSError) as err:
                unreadable.append(f"{out} ({type(err).__name__}: {err})")
    return results, unfinished, unreadable


def mean_std(values: list[float]) -> str:
    if not values:
        return "—"
    std = statistics.stdev(values) if len(values) > 1 else float("nan")
    return f"{statistics.mean(values):.2f}" + ("" if math.isnan(std) else f" ± {std:.2f}")


def varying_settings(results: list[Result]) -> dict[str, list]:
    """The settings (besides the repeats' own) that differ between ``results``, with their values."""
    keys = set().union(*(r.config for r in results)) - REPEAT_KEYS
    varying = {}
    for key in sorted(keys):
        values = {json.dumps(r.config.get(key), sort_keys=True) for r in results}
        if len(values) > 1:
            varying[key] = sorted(values)
    return varying


def summary(results: list[Result]) -> tuple[list[dict], str]:
    """One row per (dataset, arch, reg, labelled count): the runs' mIoU and the published number; and the
    Markdown table of the rows."""
    groups: dict[tuple, list[Result]] = {}
    for result in results:
        groups.setdefault(result.key, []).append(result)
    rows = []

    def order(key):  # data set, network, labelled count, then the baseline before the perturbations
        dataset, arch, reg, n = key
        return str(dataset), str(arch), n if isinstance(n, int) else math.inf, reg != "none", str(reg)

    for key in sorted(groups, key=order):
        members = groups[key]
        dataset, arch, reg, n = key
        mious = [100 * r.final["miou"] for r in members]
        tests = [100 * r.final["test_miou"] for r in members if "test_miou" in r.final]
        published = PUBLISHED.get((dataset, arch, reg), {}).get(n)
        rows.append({"dataset": dataset, "arch": arch, "reg": reg, "labelled": n, "runs": len(members),
                     "seeds": sorted((r.config.get("seed") for r in members), key=str), "miou": mious,
                     "test_miou": tests, "published": published, "varying": varying_settings(members),
                     "iters": sorted({r.final.get("iters") for r in members}, key=str)})
    lines = ["| data set | network | perturbation | labelled | runs | mIoU % (mean ± std) | test mIoU % | "
             "published | ours − published |", "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        mean = statistics.mean(row["miou"])
        published, gap = ("—", "—") if row["published"] is None else \
            (f"{row['published']:.2f}", f"{mean - row['published']:+.2f}")
        mark = " *" if row["varying"] else ""
        lines.append(f"| {row['dataset']} | {row['arch']} | {row['reg']} | {row['labelled']} | {row['runs']} | "
                     f"{mean_std(row['miou'])}{mark} | {mean_std(row['test_miou'])} | "
                     f"{published} | {gap} |")
    return rows, "\n".join(lines)


@main.command("summarize")
@click.argument("roots", nargs=-1, type=click.Path(exists=True, file_okay=False))
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="also write the rows as JSON here")
@click.option("--overwrite", is_flag=True, help="replace an existing --json file")
def summarize(roots, json_path, overwrite):
    """Table of the finished runs under ROOTS (default runs/paper): mIoU over seeds beside the paper's."""
    roots = [Path(r) for r in roots] or [Path("runs/paper")]
    missing = [str(r) for r in roots if not r.is_dir()]
    if missing:
        raise click.ClickException(f"no run folder {', '.join(missing)}; give the folder holding the runs")
    if json_path and Path(json_path).exists() and not overwrite:
        raise click.ClickException(f"--json {json_path} exists; pass --overwrite to replace it or choose another")
    if json_path and not Path(json_path).resolve().parent.is_dir():
        raise click.ClickException(f"--json {json_path}: no folder {Path(json_path).parent}; create it first")
    results, unfinished, unreadable = read_results(roots)
    for line in unreadable:
        click.echo(f"warning: cannot read the run {line}; left out", err=True)
    if not results:
        raise click.ClickException(f"no finished run (a folder with config.json and final.json) under "
                                   f"{', '.join(map(str, roots))}")
    rows, table = summary(results)
    click.echo(table)
    for row in rows:
        if row["varying"]:
            click.echo(f"* {row['dataset']} {row['arch']} {row['reg']} n={row['labelled']}: its runs differ in "
                       + "; ".join(f"{k} ({', '.join(v)})" for k, v in row["varying"].items()))
    if unfinished:
        click.echo(f"unfinished (no final.json, left out): {', '.join(map(str, unfinished))}")
    if json_path:
        Path(json_path).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
