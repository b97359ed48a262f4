"""Training-step time of every regularizer against the bare network passes it needs (issue 4's benchmark).

A training step here is what the loop in ``train_seg_semisup.py`` does between two batches: supervised
cross-entropy, the regularizer's call, backward, optimizer step (Adam), EMA update. Its "bare passes"
are the network work that step cannot avoid, timed without anything else: student forward+backward on
the labelled and the unlabelled batch, the teacher's forward pass(es) (two for regularizers with a
mixing partner), and for VAT its direction passes (a forward-mode JVP and a forward+backward to the
input, in eval mode). Data loading is excluded (batches are made once, up front) and timed separately
for the synthetic set. One process; each repeat is one round over the regularizers (so every row sees
the same mix of machine states), and within it step and bare passes alternate (step first in even
repeats, bare first in odd ones, so that neither always follows the other) and so see the same load; medians
of wall-clock time and of the process's CPU time (all threads; on a shared machine the CPU time is the
steadier measure of the work done), the ratio of the fastest step to the fastest bare passes (the least
disturbed repeat of each: interference from other processes only adds time), and the median over the
repeats of step / bare within a repeat ("paired": the two were timed back to back, so slow drifts of
the machine's load cancel), for wall-clock and for CPU time, each with a 95 % percentile-bootstrap interval
of that median (how far it could move with other repeats). Target: step / bare ≤ 1.05.

    OMP_NUM_THREADS=2 python -m benchmarks.bench_regularizers                 # unet_small (+ deeplabv2 if registered)
    OMP_NUM_THREADS=2 python -m benchmarks.bench_regularizers --arch unet_small --repeats 10 --reg cutmix --reg vat
"""
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import statistics
import sys
import time

import click
import numpy as np
import torch
import torch.nn.functional as F

import architectures
import cli_errors
import datapipe
import regularizers
from benchmarks.bench_architectures import cpu_model
from train_seg_semisup import keep_freed_memory, make_optimizer, one_cpu_thread

# network → (crop side, batch, classes, default repeats): the synthetic recipe and the paper's Pascal crop
SETTINGS = {"unet_small": (64, 16, 6, 9), "deeplabv2_resnet101": (321, 2, 21, 2)}


def make_batches(size: int, batch: int, n_classes: int, device, memory_format):
    """Labelled, unlabelled (with paired-view fields) and partner batches of random normalised images."""
    g = torch.Generator().manual_seed(0)

    def images():
        return torch.randn(batch, 3, size, size, generator=g).to(device).contiguous(memory_format=memory_format)

    ones = torch.ones(batch, 1, size, size, device=device)
    shift = torch.tensor([[1.0, 0.0, 0.05], [0.0, 1.0, -0.05]], device=device)  # a small offset between the views
    sup = {"image": images(), "label": torch.randint(0, n_classes, (batch, size, size), generator=g).to(device)}
    unsup = {"image": images(), "valid": ones, "image_s": images(), "valid_s": ones,
             "theta": shift.expand(batch, 2, 3).contiguous()}
    partner = {"image": images(), "valid": ones}
    return sup, unsup, partner


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def training_step(student, mean_teacher, optimizer, reg, sup, unsup, partner) -> None:
    """What the loop of ``train_seg_semisup.py`` does for one iteration, batches given."""
    labels = sup["label"]
    n_labelled = (labels != 255).sum().clamp(min=1)
    loss = F.cross_entropy(student(sup["image"]), labels, ignore_index=255, reduction="sum") / n_labelled
    if reg is not None:
        cons, _ = reg(student, mean_teacher.teacher, unsup, partner if reg.needs_partner else None)
        loss = loss + 1.0 * cons
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    with one_cpu_thread(labels.device):
        optimizer.step()
        mean_teacher.update(student)


def bare_passes(student, teacher, name: str, reg, sup, unsup, partner) -> None:
    """The network passes the step of regularizer ``name`` needs, in the step's order, and nothing else."""
    out = student(sup["image"]).mean()
    if reg is not None:
        x = unsup["image"]
        if name == "vat":  # the direction: JVP and a forward+backward to the input, in eval mode
            direction_net = student if reg.dir_from_student else teacher
            direction_net.eval()
            with torch.no_grad():
                torch.func.jvp(direction_net, (x,), (torch.randn(x.shape, device=x.device),))
            x_in = x.detach().requires_grad_(True)
            torch.autograd.grad(direction_net(x_in).sum(), x_in)
            direction_net.train()
        if name == "aug":  # the step's order: the student's view first, then the teacher's
            out = out + student(x).mean()
        with torch.no_grad():
            for _ in range(2 if reg.needs_partner else 1):
                teacher(x)
        if name != "aug":
            out = out + student(x).mean()
    student.zero_grad(set_to_none=True)
    out.backward()


def measure(arch: str, names: list[str], repeats: int, device: torch.device) -> list[dict]:
    size, batch, n_classes, default_repeats = SETTINGS.get(arch, (64, 16, 6, 5))
    repeats = repeats or default_repeats
    memory_format = torch.channels_last
    torch.manual_seed(0)
    student = architectures.build_arch(arch, n_classes).to(device, memory_format=memory_format).train()
    mean_teacher = regularizers.MeanTeacher(student, 0.99)
    optimizer = make_optimizer({"optimizer": "adam", "lr": 1e-5, "weight_decay": 0.0, "pretrained_lr_scale": 0.1},
                               student)  # the loop's optimizer (fused Adam)
    sup, unsup, partner = make_batches(size, batch, n_classes, device, memory_format)
    regs = {}
    for name in names:
        regs[name] = None
        if name != "none":
            cons_loss = regularizers.ConsistencyLoss("var", conf_thresh=0.97)
            options = dict(regularizers.get_regularizer_class(name).defaults)
            regs[name] = regularizers.build_regularizer(name, cons_loss, np.random.default_rng(0), options)
    times = {name: {"step": [], "bare": [], "step_cpu": [], "bare_cpu": []} for name in names}
    # round-robin: every repeat times each regularizer once, so the rows see the same mix of machine states
    for i in range(repeats + 1):  # the first round is a warm-up
        for name, reg in regs.items():
            for kind in ("step", "bare") if i % 2 == 0 else ("bare", "step"):  # ABBA: order effects cancel
                sync(device)
                t0, c0 = time.perf_counter(), time.process_time()
                if kind == "step":
                    training_step(student, mean_teacher, optimizer, reg, sup, unsup, partner)
                else:
                    bare_passes(student, mean_teacher.teacher, name, reg, sup, unsup, partner)
                sync(device)
                if i > 0:
                    times[name][kind].append(time.perf_counter() - t0)
                    times[name][kind + "_cpu"].append(time.process_time() - c0)
    rows = []
    for name, t in times.items():
        row = {"arch": arch, "size": size, "batch": batch, "reg": name, "repeats": repeats,
               **{k: statistics.median(v) for k, v in t.items()}}
        paired = [s / b for s, b in zip(t["step"], t["bare"], strict=True)]
        paired_cpu = [s / b for s, b in zip(t["step_cpu"], t["bare_cpu"], strict=True)]
        row.update(ratio=row["step"] / row["bare"], ratio_cpu=row["step_cpu"] / row["bare_cpu"],
                   ratio_min=min(t["step"]) / min(t["bare"]),
                   ratio_paired=statistics.median(paired), ratio_paired_ci=median_ci(paired),
                   ratio_cpu_paired=statistics.median(paired_cpu), ratio_cpu_paired_ci=median_ci(paired_cpu))
        rows.append(row)
        print(f"{arch} {name}: wall {row['step']:.3f} / {row['bare']:.3f} s = {row['ratio']:.3f}; "
              f"cpu {row['step_cpu']:.3f} / {row['bare_cpu']:.3f} s = {row['ratio_cpu']:.3f}; "
              f"fastest {row['ratio_min']:.3f}; paired {row['ratio_paired']:.3f} {fmt_ci(row['ratio_paired_ci'])}; "
              f"cpu paired {row['ratio_cpu_paired']:.3f} {fmt_ci(row['ratio_cpu_paired_ci'])}", file=sys.stderr,
              flush=True)
    return rows


def median_ci(values: list[float], level: float = 0.95, resamples: int = 2000) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval of the median (seeded, so a table is reproducible from its
    timings): how far the median of the paired ratios could move with other repeats of the same run."""
    values = np.asarray(values, dtype=np.float64)
    draws = np.random.default_rng(0).choice(values, size=(resamples, values.size), replace=True)
    medians = np.median(draws, axis=1)
    tail = 100.0 * (1.0 - level) / 2.0
    return float(np.percentile(medians, tail)), float(np.percentile(medians, 100.0 - tail))


def fmt_ci(ci: tuple[float, float]) -> str:
    return f"[{ci[0]:.3f}, {ci[1]:.3f}]"


def data_loading(repeats: int = 20) -> list[dict]:
    """Median seconds per unlabelled synthetic batch (64×64, batch 16), plain and paired views."""
    bundle = datapipe.build_dataset("synthetic", n_train=400)
    params = datapipe.AugParams(crop_size=(64, 64), scale_range=(0.75, 1.25), hflip=True)
    rows = []
    for paired in (False, True):
        stream = datapipe.stream_loader(bundle.train, params, 16, 0, 1, False, (0.5,) * 3, (0.25,) * 3,
                                        paired=paired)
        for _ in range(25):  # render (and cache) the images first: rendering is not loading
            next(stream)
        stream = datapipe.stream_loader(bundle.train, params, 16, 0, 1, False, (0.5,) * 3, (0.25,) * 3,
                                        paired=paired)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            next(stream)
            times.append(time.perf_counter() - t0)
        rows.append({"views": "paired (aug)" if paired else "single", "seconds": statistics.median(times)})
    return rows


def markdown(rows: list[dict], loading: list[dict]) -> str:
    lines = ["| network | crop, batch | --reg | repeats | step wall (s) | bare wall (s) | wall ratio | step CPU (s) "
             "| bare CPU (s) | CPU ratio | wall ratio, fastest | wall ratio, paired [95 % CI] "
             "| CPU ratio, paired [95 % CI] |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['arch']} | {r['size']}×{r['size']}, {r['batch']} | {r['reg']} | {r['repeats']} "
                     f"| {r['step']:.3f} | {r['bare']:.3f} | {r['ratio']:.3f} | {r['step_cpu']:.3f} "
                     f"| {r['bare_cpu']:.3f} | {r['ratio_cpu']:.3f} | {r['ratio_min']:.3f} "
                     f"| {r['ratio_paired']:.3f} {fmt_ci(r['ratio_paired_ci'])} "
                     f"| {r['ratio_cpu_paired']:.3f} {fmt_ci(r['ratio_cpu_paired_ci'])} |")
    if loading:
        lines += ["", "| data loading, synthetic 64×64, batch 16, num_workers 0 | s per batch (median) |", "|---|---:|"]
        lines += [f"| {r['views']} | {r['seconds']:.4f} |" for r in loading]
    return "\n".join(lines)


@click.command(cls=cli_errors.Command)
@click.option("--arch", "archs", multiple=True,
              help="network(s) [unet_small, and deeplabv2_resnet101 if registered]")
@click.option("--reg", "regs", multiple=True, help="regularizer(s) [none and every registered one]")
@click.option("--repeats", type=int, default=0, help="timed repeats after one warm-up [9 unet_small, 2 deeplab]")
@click.option("--device", default="cpu", show_default=True)
@click.option("--threads", type=int, default=None, help="torch threads [torch default]")
@click.option("--keep-freed-memory/--no-keep-freed-memory", "keep_memory", default=True, show_default=True,
              help="as the training loop: glibc malloc keeps freed memory (no page faults every step)")
def main(archs, regs, repeats, device, threads, keep_memory):
    if threads:
        torch.set_num_threads(threads)
    kept = keep_memory and keep_freed_memory()
    archs = list(archs) or [a for a in SETTINGS if a in architectures.ARCHITECTURES]
    names = list(regs) or ["none", *sorted(regularizers.REGULARIZERS)]
    device = torch.device(device)
    rows = [row for arch in archs for row in measure(arch, names, repeats, device)]
    loading = data_loading() if device.type == "cpu" else []
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model()
    print(f"Machine: {where}; {os.cpu_count()} CPU cores visible; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads (OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}); "
          f"loss var, confidence 0.97, fused Adam, channels-last, freed memory kept: {'yes' if kept else 'no'}; "
          f"medians of the repeats after one warm-up, the fastest step / the fastest bare passes, and the "
          f"median of step / bare within a repeat with its 95 % bootstrap interval.\n")
    print(markdown(rows, loading))


if __name__ == "__main__":
    main()
