"""Semi-supervised semantic segmentation with mean teacher and a consistency regularizer.

French et al., "Semi-supervised semantic segmentation needs strong, varied perturbations", BMVC 2020.
One training loop for every experiment; the perturbation is a plug-in (``--reg``):

    python train_seg_semisup.py --dataset=synthetic --reg=cutmix
    python train_seg_semisup.py --dataset=synthetic --reg=none        # supervised baseline

Every option defaults to None and is resolved in this order: command line > the dataset's
recipe > the regularizer's defaults > the network's default learning rate > GLOBAL_DEFAULTS.
"""
from __future__ import annotations

import os

# Before torch loads OpenMP: busy-waiting threads slowed training up to 17× on a shared 2-core machine.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import contextlib
import ctypes
import json
import math
import platform
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import click
import cv2
import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
import torchvision
from PIL import Image

try:
    import fcntl  # run directories are locked on Unix; elsewhere they are not
except ImportError:
    fcntl = None

try:
    import resource  # peak memory; Unix only
except ImportError:
    resource = None

import architectures
import cli_errors
import datapipe
import evaluation
import provenance
import regularizers

# --aug-colour-* option → ColourJitter field (the authors' values are ColourJitter's defaults)
COLOUR_OPTIONS = {"aug_colour_brightness": "brightness", "aug_colour_contrast": "contrast",
                  "aug_colour_saturation": "saturation", "aug_colour_hue": "hue", "aug_colour_prob": "prob",
                  "aug_colour_greyscale_prob": "greyscale_prob"}

GLOBAL_DEFAULTS = {
    "dataset": "synthetic",
    "arch": "unet_small",
    "reg": "cutmix",
    "n_sup": None,  # None: every training image is labelled
    "n_unsup": None,  # None: every training image is also unlabelled (the paper's protocol)
    "n_val": 0,
    "split_seed": None,  # None: --seed
    "split_file": None,  # text list of training images matched by id; the first --n-sup are labelled
    "authors_split": False,  # draw the split with the authors' RandomState permutations
    "val_seed": None,  # --authors-split: seed of --n-val's hold-out (None: the authors' 131, set when resolved)
    "iters": 40000,  # the paper: 40 epochs × 1000 iterations
    "eval_every": 1000,
    "checkpoint_every": 0,  # 0: a checkpoint with each evaluation (and at the end) only
    "batch_size": 10,
    "unsup_batch_ratio": 1,
    "mix_partner": "stream",  # mixing partner: a second unlabelled batch (the authors') or the same batch
    "eval_batch_size": 1,
    "eval_pad_batch": False,  # pad each evaluation batch's images centrally to its largest (the authors')
    "crop_size": None,  # None: whole images
    "aug_scale_range": (1.0, 1.0),
    "aug_scale_hung": False,
    "aug_max_scale": None,
    "aug_rot_mag": 0.0,
    "aug_hflip": False,
    "aug_vflip": False,
    "aug_hvflip": False,
    "optimizer": "adam",
    "fused_optimizer": True,  # torch's fused Adam/SGD kernels; False: the multi-tensor path (runs up to 2026-11-27)
    "keep_freed_memory": True,  # glibc malloc keeps freed blocks: no page faults per step (see keep_freed_memory)
    "lr": None,  # None: the network's default (supplement Table 2)
    "lr_sched": "none",
    "lr_milestones": None,  # stepped: iterations at which the lr is multiplied by lr_step_gamma (None: ½ and ¾)
    "lr_step_gamma": 0.1,
    "lr_poly_power": 0.9,
    "momentum": 0.9,
    "nesterov": False,
    "weight_decay": 0.0,
    "pretrained_lr_scale": 0.1,
    "model": "mean_teacher",
    "teacher_alpha": 0.99,
    "teacher_bn_mode": "train",
    "cons_loss": "var",
    "cons_weight": None,  # None: the regularizer's paper weight
    "conf_thresh": 0.97,
    "conf_per_pixel": False,
    "rampup": 0,
    "mask_prop_range": None,  # None: the regularizer's default (CutMix 0.5, Cutout 0:1)
    "boxmask_n_boxes": 1,
    "boxmask_fixed_aspect_ratio": False,
    "boxmask_by_size": False,
    "boxmask_outside_bounds": False,
    "boxmask_invert": True,
    "cowmix_sigma_range": "4:16",  # CowOut/CowMix: Gaussian σ in px, log-uniform
    "aug_offset_range": 16,  # aug: the student crop centre moves up to this many px from the teacher's
    "aug_free_scale_rot": False,  # aug: scale and rotation drawn per view (default: shared)
    "aug_centre_small": False,  # an image smaller than the crop sits in its centre (the authors' padding)
    "aug_reflect_border": False,  # view pixels outside the image mirrored in (still invalid; the authors' ISIC)
    "aug_authors_interp": False,  # the authors' interpolation of warped crops (labelled nearest; unlabelled random)
    "aug_teacher_unscaled": False,  # aug: teacher view at scale 1, the student's scaled (the authors' Pascal pair)
    "aug_strong_colour": False,  # MoCo v2 colour augmentation of the student's unlabelled view (authors' later release)
    # --aug-colour-*: ColourJitter's own defaults (added below, from COLOUR_OPTIONS)
    "ict_alpha": 0.1,
    "ict_mix_confidences": False,  # ict: confidence = λ-mix of the two confidences (the authors' script)
    "vat_radius": 1.0,
    "adaptive_vat_radius": True,
    "vat_dir_from_student": False,  # the authors' default: the direction from the teacher
    "vat_finite_diff": False,  # the authors' literal finite difference (float32 rounding noise; see vat.py)
    "freeze_bn": None,  # None: the network's paper setting
    "freeze_bn_affine": False,  # BatchNorm weights and biases not trained (statistics still are)
    "pretrained": None,  # None: ImageNet weights where the network has them (the paper's setting)
    "weights": None,
    "channels_last": True,
    "seed": 0,
    "device": None,  # None: cuda if available, else cpu
    "num_workers": 0,
    "threads": None,
    "data_dir": None,
    "num_classes": None,  # folder: number of classes (other datasets: their own)
    "ignore_index": 255,  # folder: the label value that means "ignore"
    "bin_fill_holes": False,  # fill holes in two-class predictions before scoring (ISIC)
    "fill_holes_padded": False,  # ... on the prediction of the padded input (the authors' evaluation)
    "fashion_n_train": 4000,
    "fashion_n_val": 1000,
    "fashion_seed": 0,
    "fashion_canvas_size": 64,
    "synthetic_n_train": 4000,
    "synthetic_n_val": 500,
    "synthetic_seed": 0,
    "out_dir": None,
    "overwrite": False,
    "resume": False,
    "save_model": False,
    "save_preds": False,
    "processes": 1,  # not an option: torchrun's process count (WORLD_SIZE), recorded for --resume
}
GLOBAL_DEFAULTS.update({key: getattr(datapipe.ColourJitter, field) for key, field in COLOUR_OPTIONS.items()})


class ConfigError(click.ClickException):
    """A bad combination of options: one line, exit code 1, no traceback."""


# ----------------------------------------------------------------------------- configuration

def load_dataset(cfg: dict) -> datapipe.DataBundle:
    """Build ``cfg["dataset"]`` with its options (``--data-dir`` and the dataset-specific ones)."""
    def get(key):
        return cfg.get(key, GLOBAL_DEFAULTS[key])

    options = ("data_dir", "synthetic_seed", "num_classes", "ignore_index", "fashion_n_train", "fashion_n_val",
               "fashion_seed", "fashion_canvas_size")
    return datapipe.build_dataset(get("dataset"), n_train=get("synthetic_n_train"), n_val=get("synthetic_n_val"),
                                  **{key: get(key) for key in options})


def epochs_to_iters(given: dict) -> dict:
    """The authors' --num_epochs × --iters_per_epoch as --iters, with an evaluation after each epoch (and their
    --lr_step_epochs as --lr-milestones in iterations)."""
    epochs, per_epoch = given.pop("num_epochs", None), given.pop("iters_per_epoch", None)
    step_epochs = given.pop("lr_step_epochs", None)
    if step_epochs is not None:
        if per_epoch is None:
            raise ConfigError("--lr-step-epochs counts epochs of --iters-per-epoch iterations; give --num-epochs and "
                              "--iters-per-epoch, or --lr-milestones in iterations")
        if "lr_milestones" in given:
            raise ConfigError("--lr-step-epochs and --lr-milestones both set the milestones; give one of them")
        # kept beside the milestones so that errors name the option given
        given = {**given, "lr_milestones": tuple(e * per_epoch for e in step_epochs), "lr_step_epochs": step_epochs}
    if epochs is None and per_epoch is None:
        return given
    if epochs is None or per_epoch is None:
        raise ConfigError("--num-epochs and --iters-per-epoch go together (iterations = their product); "
                          "give both, or --iters instead")
    if "iters" in given or "eval_every" in given:
        raise ConfigError("give either --iters/--eval-every or --num-epochs × --iters-per-epoch, not both")
    return {**given, "iters": epochs * per_epoch, "eval_every": per_epoch}


def resolve_config(given: dict) -> dict:
    """Merge the command line over the dataset recipe, regularizer and network defaults."""
    given = epochs_to_iters({k: v for k, v in given.items() if v is not None})
    dataset = given.get("dataset", GLOBAL_DEFAULTS["dataset"])
    bundle = load_dataset(given)
    recipe = bundle.recipe
    arch = given.get("arch", recipe.get("arch", GLOBAL_DEFAULTS["arch"]))
    reg = given.get("reg", recipe.get("reg", GLOBAL_DEFAULTS["reg"]))
    arch_spec = architectures.get_arch_spec(arch)
    reg_defaults = regularizers.regularizer_defaults(reg)
    # a recipe may carry the paper's weight per regularizer for its dataset (e.g. ISIC's)
    recipe = {k: v for k, v in recipe.items() if k != "reg_weights"}
    if reg in bundle.recipe.get("reg_weights", {}):
        recipe["cons_weight"] = bundle.recipe["reg_weights"][reg]
    arch_defaults = {"lr": arch_spec.default_lr, "freeze_bn": arch_spec.freeze_bn,
                     "pretrained": arch_spec.has_pretrained}
    cfg = {**GLOBAL_DEFAULTS, **arch_defaults, **reg_defaults,
           **recipe, **given, "dataset": dataset, "arch": arch, "reg": reg}
    if cfg["split_seed"] is None:
        cfg["split_seed"] = cfg["seed"]
    if cfg["device"] is None:
        cfg["device"] = "cuda" if torch.cuda.is_available() else "cpu"
    check_device(cfg["device"])
    if "split_file" in given and "n_sup" not in given:  # a split file labels all its lines unless --n-sup
        cfg["n_sup"] = None
    if cfg["out_dir"] is None:
        n_sup = "all" if cfg["n_sup"] is None else cfg["n_sup"]
        cfg["out_dir"] = f"runs/{dataset}-{reg}-{arch}-n{n_sup}-s{cfg['seed']}"
    # the scale distribution is set by one of three options: the one on the command line replaces the recipe's
    scale_off = {"aug_scale_range": (1.0, 1.0), "aug_max_scale": None, "aug_scale_hung": False}
    scale_given = [key for key in scale_off if given.get(key) not in (None, False)]
    if len(scale_given) > 1:
        names = " and ".join("--" + key.replace("_", "-") for key in scale_given)
        raise ConfigError(f"{names} each set the scale augmentation; give only one of them")
    if scale_given:
        cfg.update({key: off for key, off in scale_off.items() if key != scale_given[0]})
    if given.get("num_classes", bundle.num_classes) != bundle.num_classes:
        raise ConfigError(f"--num-classes {given['num_classes']} does not match the {bundle.num_classes} classes of "
                          f"{dataset}; drop it (it is for --dataset=folder)")
    if cfg["fill_holes_padded"] and not cfg["bin_fill_holes"]:
        raise ConfigError("--fill-holes-padded says where --bin-fill-holes fills holes, which is off; add "
                          "--bin-fill-holes or drop it")
    if cfg["bin_fill_holes"] and bundle.num_classes != 2:
        raise ConfigError(f"--bin-fill-holes needs a two-class dataset; {dataset} has {bundle.num_classes} classes")
    crop = cfg["crop_size"]
    if cfg["aug_hvflip"] and crop is not None and crop[0] != crop[1]:
        raise ConfigError(f"--aug-hvflip transposes the crop, which needs a square --crop-size (got "
                          f"{crop[0]},{crop[1]}); drop --aug-hvflip or give a square crop")
    if cfg["authors_split"] and cfg["split_file"] is not None:
        raise ConfigError("--authors-split draws the split from --split-seed, but --split-file already fixes it; "
                          "drop one of them")
    if cfg["val_seed"] is not None and not (cfg["authors_split"] and cfg["n_val"]):
        raise ConfigError("--val-seed orders the images --n-val holds out with --authors-split; give both of those "
                          "or drop --val-seed")
    if cfg["authors_split"] and cfg["val_seed"] is None:
        cfg["val_seed"] = datapipe.AUTHORS_VAL_SEED  # saved resolved
    milestones_option = "lr_step_epochs" if "lr_step_epochs" in given else "lr_milestones"
    for keys, sched in (((milestones_option, "lr_step_gamma"), "stepped"), (("lr_poly_power",), "poly")):
        for key in keys:
            if key in given and cfg["lr_sched"] != sched:
                raise ConfigError(f"--{key.replace('_', '-')} sets the {sched} schedule, but --lr-sched is "
                                  f"{cfg['lr_sched']}; add --lr-sched {sched} or drop it")
    if cfg["lr_milestones"] is not None and not all(0 < m < cfg["iters"] for m in cfg["lr_milestones"]):
        if milestones_option == "lr_step_epochs":
            raise ConfigError(f"--lr-step-epochs {','.join(map(str, given['lr_step_epochs']))} must lie inside the "
                              f"run's {cfg['iters'] // cfg['eval_every']} epochs (between 0 and --num-epochs)")
        raise ConfigError(f"--lr-milestones {','.join(map(str, cfg['lr_milestones']))} must lie between 0 and "
                          f"--iters {cfg['iters']} (iterations; --lr-step-epochs counts epochs)")
    if cfg["aug_authors_interp"] and (cfg["aug_scale_hung"] or (cfg["aug_max_scale"] is None
                                                                and not cfg["aug_rot_mag"])):
        raise ConfigError("--aug-authors-interp is the interpolation of the authors' rotate-and-scale crop, which "
                          "they used with --aug-max-scale or --aug-rot-mag (the ISIC recipe) and not with the Hung "
                          "scale; their other crops were bilinear, as ours: drop it or give one of those")
    colour_given = [key for key in COLOUR_OPTIONS if key in given]
    if colour_given and not cfg["aug_strong_colour"]:
        raise ConfigError(f"--{colour_given[0].replace('_', '-')} sets the colour augmentation, which is off; add "
                          f"--aug-strong-colour or drop it")
    if cfg["aug_strong_colour"] and reg == "none":
        raise ConfigError("--aug-strong-colour augments the student's view of unlabelled images, which --reg none "
                          "does not use (in the authors' baseline runs it had no effect); drop it or pick a "
                          "regularizer")
    cfg["num_classes"] = bundle.num_classes
    for key in ("crop_size", "aug_scale_range"):
        if cfg[key] is not None:
            cfg[key] = tuple(cfg[key])
    return cfg, bundle


# what --resume may set
RESUME_OPTIONS = {"resume", "out_dir", "iters", "device", "threads", "num_workers", "processes", "data_dir",
                  "checkpoint_every"}


def resume_config(given: dict):
    """The saved configuration of the run in ``--out-dir``; only ``--iters`` (to extend it), where it runs
    (``--device``, ``--threads``, ``--num-workers``, and ``--data-dir``: the same data in another folder) and
    ``--checkpoint-every`` may change."""
    if given["out_dir"] is None:
        raise ConfigError("--resume needs --out-dir, the run directory to continue")
    path = Path(given["out_dir"]) / "config.json"
    if not path.is_file():
        raise ConfigError(f"--resume: {path} not found; start a new run instead")
    changed = [key for key, value in given.items() if value is not None and key not in RESUME_OPTIONS]
    if changed:
        names = ", ".join("--" + key.replace("_", "-") for key in changed)
        raise ConfigError(f"--resume continues the saved configuration in {path}; drop {names} (only --iters, "
                          f"--device, --threads, --num-workers, --data-dir and --checkpoint-every may be given)")
    try:
        saved = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(f"--resume: cannot read {path} ({err}); the run cannot be continued, start a new "
                          f"one") from None
    cfg = {**GLOBAL_DEFAULTS, **saved}  # options added since the run started: defaults
    cfg.update({key: given[key] for key in ("device", "threads", "num_workers", "data_dir", "checkpoint_every")
                if given[key] is not None})
    cfg.update(resume=True, out_dir=given["out_dir"], iters=given["iters"] or cfg["iters"])
    check_device(cfg["device"])
    for key in ("crop_size", "aug_scale_range"):
        if cfg[key] is not None:
            cfg[key] = tuple(cfg[key])
    return cfg, load_dataset(cfg)


def aug_params(cfg: dict) -> datapipe.AugParams:
    scale_range, step, log_uniform = cfg["aug_scale_range"], 0.0, False
    if cfg["aug_scale_hung"]:  # Hung et al.: 0.5 to 1.5 in steps of 0.1
        scale_range, step = (0.5, 1.5), 0.1
    elif cfg["aug_max_scale"] is not None:  # the authors: exp(U(−log s, log s))
        scale_range, log_uniform = (1.0 / cfg["aug_max_scale"], cfg["aug_max_scale"]), True
    return datapipe.AugParams(crop_size=cfg["crop_size"], scale_range=scale_range, scale_step=step,
                              scale_log_uniform=log_uniform,
                              rot_mag=cfg["aug_rot_mag"], hflip=cfg["aug_hflip"], vflip=cfg["aug_vflip"],
                              hvflip=cfg["aug_hvflip"], centre_small=cfg["aug_centre_small"],
                              reflect_border=cfg["aug_reflect_border"], authors_interp=cfg["aug_authors_interp"])




def colour_jitter(cfg: dict) -> datapipe.ColourJitter | None:
    """The student's colour augmentation of unlabelled views (``--aug-strong-colour``), or None."""
    if not cfg["aug_strong_colour"]:
        return None
    return datapipe.ColourJitter(**{field: cfg[key] for key, field in COLOUR_OPTIONS.items()})


def make_optimizer(cfg: dict, net: architectures.SegNet) -> torch.optim.Optimizer:
    groups = net.param_groups()
    param_groups = [{"params": groups["new"], "lr_scale": 1.0},
                    {"params": groups["pretrained"], "lr_scale": cfg["pretrained_lr_scale"]}]
    param_groups = [g for g in param_groups if g["params"]]
    # torch's fused kernels: one pass per tensor instead of several, the same update up to rounding (about
    # 3x faster on a CPU: unet_small Adam 1.1 -> 0.35 ms); other devices keep the multi-tensor path, and so
    # does --no-fused-optimizer (the rounding of every table recorded up to 2026-11-27)
    fused = cfg.get("fused_optimizer", True) and all(
        p.device.type in ("cpu", "cuda") and p.dtype in (torch.float32, torch.float64)
        for g in param_groups for p in g["params"])
    if cfg["optimizer"] == "adam":
        return torch.optim.Adam(param_groups, lr=cfg["lr"], weight_decay=cfg["weight_decay"], fused=fused or None)
    return torch.optim.SGD(param_groups, lr=cfg["lr"], momentum=cfg["momentum"], nesterov=cfg["nesterov"],
                           weight_decay=cfg["weight_decay"], fused=fused or None)


@contextlib.contextmanager
def one_cpu_thread(device: torch.device):
    """Run the weight updates (optimizer step, EMA) on one CPU thread. They are elementwise and
    memory-bound: waking the other OpenMP threads costs more than they save (unet_small on 2 cores:
    2.8 → 1.4 ms per step; DeepLab v2: 100 → 78 ms), and each value is computed the same way whatever
    the thread count, so results do not change (tested bit for bit)."""
    threads = torch.get_num_threads()
    if device.type != "cpu" or threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def keep_freed_memory(max_block: int = 1 << 30) -> bool:
    """Make glibc's malloc keep freed memory in the process instead of giving it back to the kernel.
    By default a freed block above the mmap threshold (128 KiB, raised as blocks are freed up to 32 MiB)
    is unmapped at once and the top of the heap is trimmed, so the next step's activations are
    page-faulted in afresh, a few microseconds per 4 KiB page: ~8,000 faults per unet_small training step
    on the CPU. With blocks up to `max_block` served from the heap and no trimming, a step reuses the
    memory of the previous one. Memory is then not returned to the system until the process ends (its
    size settles at the training step's peak). Changes no result. Returns False where there is no glibc
    (macOS, Windows, musl): nothing changes there."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's <malloc.h>
    return bool(libc.mallopt(m_mmap_threshold, max_block)) and bool(libc.mallopt(m_trim_threshold, 2**31 - 1))


def lr_factor(sched: str, it: int, iters: int, milestones=None, gamma: float = 0.1, power: float = 0.9) -> float:
    """Learning-rate multiplier at iteration ``it`` (0-based) of ``iters``. stepped: × ``gamma`` from each of
    ``milestones`` (iterations; None: half and three quarters of training) on; poly: (1 − it/iters)^``power``."""
    t = it / max(iters, 1)
    if sched == "none":
        return 1.0
    if sched == "stepped":
        if milestones is None:
            return gamma ** ((t >= 0.5) + (t >= 0.75))
        return gamma ** sum(it >= m for m in milestones)
    if sched == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * t))
    if sched == "poly":  # power 0.9, as for ISIC
        return (1.0 - t) ** power
    raise ConfigError(f"unknown --lr-sched {sched!r}")


def rampup_factor(it: int, rampup: int) -> float:
    """Sigmoid ramp-up exp(−5(1 − t)²) over ``rampup`` iterations (0 = off)."""
    if rampup <= 0 or it >= rampup:
        return 1.0
    return math.exp(-5.0 * (1.0 - it / rampup) ** 2)


def pair_within(batch: dict, rng: np.random.Generator) -> dict:
    """``--mix-partner batch``: each image's partner is another image of the same batch, following one
    random cycle through the batch, so that no image is mixed with itself."""
    order = rng.permutation(len(batch["image"]))
    partner = np.empty_like(order)
    partner[order] = np.roll(order, -1)
    index = torch.from_numpy(partner).to(batch["image"].device)
    return {key: value.index_select(0, index) for key, value in batch.items()}


# ----------------------------------------------------------------------------- outputs

def check_out_dir(cfg: dict) -> Path:
    """The run directory, refused if it cannot be used; nothing is deleted or written yet."""
    out = Path(cfg["out_dir"])
    if cfg["resume"]:
        if not (out / "checkpoint.pt").is_file():
            raise ConfigError(f"--resume: no checkpoint at {out / 'checkpoint.pt'}; start a new run instead")
        return out
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out-dir {out} is a file; choose a directory")
    if out.exists() and any(out.iterdir()):
        if not cfg["overwrite"]:
            raise ConfigError(f"run directory {out} already exists; pass --overwrite to replace it, "
                              f"--resume to continue it, or choose another --out-dir")
        if not (out / "config.json").is_file():  # --overwrite replaces runs, never other folders
            raise ConfigError(f"--overwrite: {out} is not a run directory (it has no config.json), so it is left "
                              f"as it is; choose another --out-dir")
    return out


def make_out_dir(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"cannot create --out-dir {out} ({err.strerror}); choose another directory") from None


def start_out_dir(out: Path) -> None:
    """Empty the run directory (``--overwrite``, checked by ``check_out_dir``): called once every input has
    been read and checked, so that a bad option never costs the run it would replace. The directory itself
    stays (its lock, held by this process, with it)."""
    for entry in out.iterdir():
        try:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        except OSError as err:
            raise ConfigError(f"--overwrite: cannot delete {err.filename or entry} ({err.strerror}), so {out} "
                              f"is only partly emptied; make it writable, or choose another --out-dir") from None


LOCK_FDS: set[int] = set()  # descriptors of the run-directory locks this process holds
# a lock descriptor inherited from the process that started this one (experiments/paper_tables.py's per-run
# lock): kept open here, closed in forked children like this process's own
INHERITED_LOCK_ENV = "SEMISUP_INHERITED_LOCK_FD"


def close_lock_fds() -> None:
    """In a forked child (a DataLoader worker): close the parent's lock descriptors, so that the lock, which
    belongs to the open file and not to the process, does not outlive the parent in an orphaned worker."""
    for fd in LOCK_FDS:
        with contextlib.suppress(OSError):
            os.close(fd)
    LOCK_FDS.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=close_lock_fds)


@contextlib.contextmanager
def run_dir_lock(out: Path):
    """Hold an exclusive lock on the run directory itself while this process trains into it (flock on the
    directory: the kernel drops it when the process ends, however it ends). A second process that would
    write into the same directory (``--resume`` twice, a requeued job, ``--overwrite`` of a running run) is
    refused in one line before it changes anything."""
    if fcntl is None:
        yield
        return
    try:
        fd = os.open(out, os.O_RDONLY)
    except OSError as err:
        raise ConfigError(f"cannot open the run directory {out} ({err.strerror}); check that it exists and that "
                          f"you may read it") from None
    LOCK_FDS.add(fd)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(f"run directory {out} is in use by another training process (it holds the "
                              f"directory's lock); wait for that run to end, or choose another --out-dir") from None
        except OSError as err:  # a file system without locks (some network ones)
            warnings.warn(f"cannot lock {out} ({err.strerror}); nothing keeps a second process from writing into "
                          f"it", stacklevel=2)
        yield
    finally:
        LOCK_FDS.discard(fd)
        os.close(fd)


def check_device(name: str) -> None:
    """Refuse a device this machine does not have, before anything is written."""
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown --device {name!r}; use cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: no CUDA device is available on this machine; use --device cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"not supported: --device {name}; use cpu or cuda[:N]")


def peak_rss_mb() -> float | None:
    """Peak resident memory of this process in MB (Linux/macOS); None where unknown."""
    if resource is None:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 if sys.platform != "darwin" else peak / 2**20


def write_json(path: Path, obj) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)


def read_checkpoint(path: Path, device: torch.device) -> dict:
    try:
        return torch.load(path, map_location=device, weights_only=False)
    except Exception as err:  # a damaged file can fail anywhere in torch.load's unpickler
        raise ConfigError(f"--resume: cannot read {path} ({type(err).__name__}); the run cannot be continued "
                          f"from it, start a new one") from None


def save_checkpoint(path: Path, **state) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def torch_rng_state(device: torch.device) -> dict:
    """The global torch RNG (and the device's, on CUDA): after initialisation it drives only dropout."""
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_torch_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["cpu"].cpu())
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)


def environment_record(device: torch.device, start_iter: int, procs: Processes) -> dict:
    """What ran this part of a run (one entry of environment.json per start or --resume): the code's commit,
    the process's command line, the library versions and the machine. Not settings: --reuse and --resume ignore it."""
    return {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "start_iter": start_iter,
            "command": [Path(sys.argv[0]).name, *sys.argv[1:]], **provenance.code_version(),
            "python": platform.python_version(), "torch": torch.__version__, "torchvision": torchvision.__version__,
            "numpy": np.__version__, "opencv": cv2.__version__, "host": platform.node(),
            "platform": platform.platform(), "cpu": provenance.cpu_model(),
            "cpu_count": os.cpu_count(), "usable_cpus": provenance.usable_cpus(),
            "torch_threads": torch.get_num_threads(),
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "processes": procs.world}


def final_iters(out: Path) -> int | None:
    """The iterations of the run whose final.json is in ``out`` (None: none, or unreadable)."""
    try:
        return json.loads((out / "final.json").read_text()).get("iters")
    except (ValueError, OSError, AttributeError):
        return None


def append_environment(out: Path, record: dict) -> None:
    """Add ``record`` to ``out/environment.json`` (a list: the first start, then each --resume). A file that
    is not such a list (damaged) is kept aside under a new name, never overwritten."""
    path = out / "environment.json"
    records = []
    if path.is_file():
        try:
            records = json.loads(path.read_text())
        except (ValueError, OSError):  # not JSON, not UTF-8, unreadable
            records = None
        if not isinstance(records, list):
            aside = path.with_name(f"environment.damaged-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.json")
            os.replace(path, aside)
            warnings.warn(f"{path} was not a list of records; kept as {aside.name}, a new one started",
                          stacklevel=2)
            records = []
    write_json(path, [*records, record])


def trim_metrics(out: Path, start_iter: int, final_pending: bool = False) -> None:
    """Before ``--resume`` continues from the checkpoint of ``start_iter``: the lines of ``metrics.jsonl``
    written after it (a run killed between an evaluation's record and its checkpoint, or mid-line) are of
    training that is about to be done again, so they move to ``metrics.after-checkpoint-<time>-<pid>.jsonl``
    and the resumed run writes them anew; the log never holds an iteration twice. ``final_pending``: the
    checkpoint precedes the final evaluation, whose record (if one was written) is about to be written again."""
    path = out / "metrics.jsonl"
    if not path.is_file():
        return
    lines = [line if line.endswith("\n") else line + "\n"
             for line in path.read_text(errors="replace").splitlines(keepends=True)]
    end = 0  # after the last record of an iteration up to the checkpoint's: what follows it is redone
    for i, line in enumerate(lines):
        try:
            logged = json.loads(line)["iter"]
            if logged < start_iter or (logged == start_iter and not final_pending):
                end = i + 1
        except (ValueError, TypeError, KeyError):  # a torn line, or not a record of ours
            pass
    kept, later = lines[:end], lines[end:]
    if not later:
        return
    aside = path.with_name(f"metrics.after-checkpoint-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.jsonl")
    aside.write_text("".join(later))
    tmp = path.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(kept))
    os.replace(tmp, path)
    warnings.warn(f"{path.name}: {len(later)} line(s) written after the checkpoint of iteration {start_iter} "
                  f"(the run stopped before that checkpoint was saved) moved to {aside.name}; the resumed run "
                  f"writes them again", stacklevel=2)


def jsonable(cfg: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()}


# ----------------------------------------------------------------------------- several processes (torchrun)

class Processes:
    """This process's place in a run of several processes (``--processes N`` or ``torchrun
    --nproc_per_node=N``, which set ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``); otherwise rank 0 of 1.

    Every process trains on its share of each batch (``--batch-size`` is the whole batch); after backward
    the gradients are averaged over the processes, so all of them hold the same weights, and the buffers
    (BatchNorm statistics) of student and teacher are copied from process 0 after each step, as
    ``DistributedDataParallel`` does. Averaging after backward, rather than wrapping the student in DDP,
    lets the regularizers call the networks any number of times per step (VAT's power iteration
    differentiates with respect to the input). Process 0 writes the run directory.
    """

    def __init__(self, environ=os.environ):
        self.world = int(environ.get("WORLD_SIZE", "1"))
        self.rank = int(environ.get("RANK", "0"))
        self.local_rank = int(environ.get("LOCAL_RANK", "0"))

    @property
    def main(self) -> bool:
        return self.rank == 0

    def device(self, name: str) -> torch.device:
        """The device of this process: with several processes, CUDA process k of a machine uses GPU k."""
        device = torch.device(name)
        if self.world == 1 or device.type != "cuda":
            return device
        if device.index is not None:
            raise ConfigError(f"--device {name}: with several processes each uses the GPU of its local rank; "
                              f"give --device cuda (choose GPUs with CUDA_VISIBLE_DEVICES)")
        if self.local_rank >= torch.cuda.device_count():
            raise ConfigError(f"more processes on this machine than its {torch.cuda.device_count()} CUDA "
                              f"device(s); lower --processes (torchrun: --nproc_per_node)")
        return torch.device("cuda", self.local_rank)

    def start(self, device: torch.device) -> None:
        """Join the process group: NCCL between GPUs, Gloo between CPU processes."""
        if self.world > 1 and not dist.is_initialized():
            if device.type == "cuda":
                torch.cuda.set_device(device)
                dist.init_process_group("nccl", device_id=device)
            else:
                dist.init_process_group("gloo")

    def stop(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def flat_op(self, tensors: list[torch.Tensor], op) -> None:
        """Apply ``op`` (an in-place collective) to ``tensors`` as one flat tensor per dtype, in place."""
        for dtype in dict.fromkeys(t.dtype for t in tensors):
            group = [t for t in tensors if t.dtype == dtype]
            flat = torch.cat([t.reshape(-1) for t in group])
            op(flat)
            for t, part in zip(group, flat.split([t.numel() for t in group]), strict=True):
                t.copy_(part.view(t.shape))

    def sum_(self, *tensors: torch.Tensor) -> None:
        """In place: each tensor becomes its sum over the processes."""
        if self.world > 1:
            self.flat_op(list(tensors), dist.all_reduce)

    def average_gradients(self, module: torch.nn.Module) -> None:
        """In place: every gradient of ``module`` becomes its mean over the processes."""
        def average(flat: torch.Tensor) -> None:
            dist.all_reduce(flat)
            flat.div_(self.world)

        grads = [p.grad for p in module.parameters() if p.grad is not None]
        if self.world > 1 and grads:
            self.flat_op(grads, average)

    def copy_from_main(self, *tensors: torch.Tensor) -> None:
        """In place: every process gets process 0's values."""
        if self.world > 1 and tensors:
            self.flat_op(list(tensors), lambda flat: dist.broadcast(flat, 0))

    def on_main(self, fn) -> None:
        """Run ``fn`` in process 0 only. A ConfigError it raises is raised in every process (the same line
        from each, which the launcher prints once), instead of in process 0 alone while the others wait."""
        error = None
        if self.main:
            try:
                fn()
            except ConfigError as err:
                error = err.message
        error = self.gather(error)[0]
        if error is not None:
            raise ConfigError(error)

    def gather(self, obj) -> list:
        """``obj`` of every process, in rank order (on every process)."""
        if self.world == 1:
            return [obj]
        objs = [None] * self.world
        dist.all_gather_object(objs, obj)
        return objs

    def shard(self, dataset: datapipe.SegDataset) -> datapipe.SegDataset:
        """This process's images of an evaluation set: every world-th one, from its rank."""
        if self.world == 1:
            return dataset
        return datapipe.Subset(dataset, range(self.rank, len(dataset), self.world))


# signals that stop a training run at the end of its current iteration, checkpointed: what batch systems
# send before a time limit or a preemption (SLURM: SIGTERM, or the signal of its --signal option)
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGUSR1") if hasattr(signal, name))


class StopRequest:
    """While entered, a signal of STOP_SIGNALS is noted (``signum``, the first one's) instead of ending the
    process; the training loop stops at the end of its iteration. Signals can only be handled in the main
    thread: in another, nothing is installed and the signals keep their handlers."""

    signals = STOP_SIGNALS  # the signals noted

    def __init__(self):
        self.signum = 0
        self.previous = {}

    def note(self, signum, frame) -> None:
        self.signum = self.signum or signum

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            self.previous = {sig: signal.signal(sig, self.note) for sig in self.signals}
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


class TrainingStopped(click.ClickException):
    """A run stopped by a signal of STOP_SIGNALS, its checkpoint saved: one line, exit code 128 + the signal."""

    def __init__(self, signum: int, done: int, iters: int, out: Path):
        super().__init__(f"stopped by {signal.Signals(signum).name} after iteration {done} of {iters}, with a "
                         f"checkpoint: continue with python train_seg_semisup.py --resume --out-dir "
                         f"{shlex.quote(str(out))}")
        self.exit_code = 128 + signum


def launch_processes(n: int, args: list[str]) -> int:
    """Run this script with ``args`` in ``n`` processes on this machine, as ``torchrun --standalone
    --nproc_per_node=n`` would (with its default of one OpenMP thread per process unless OMP_NUM_THREADS is
    set); returns the exit status of the first process to fail (0 if none does), after killing the others,
    which would wait for it forever. SIGTERM, SIGHUP or SIGUSR1 sent to the launcher goes on to the
    processes (SIGUSR1 as itself, the others as SIGTERM), which stop together after their current iteration,
    checkpointed (StopRequest), with status 128 + the signal, which is then the launcher's (0 where they
    finished anyway); Ctrl-C kills them at once. A process stopped that way alone (a batch system signals
    every process) stops the others with it.

    The processes' standard error comes through this one, as one process would write it: the k-th
    occurrence of a line is written when the first process writes it, so an error that every process finds
    (a bad option) is one line.
    """
    with socket.socket() as probe:  # a free port for the processes' rendezvous
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {"OMP_NUM_THREADS": "1", **os.environ, "WORLD_SIZE": str(n), "LOCAL_WORLD_SIZE": str(n),
           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    children = [subprocess.Popen([sys.executable, str(Path(__file__).resolve()), *args], text=True,
                                 stderr=subprocess.PIPE, env={**env, "RANK": str(r), "LOCAL_RANK": str(r)})
                for r in range(n)]
    counts, lock = {}, threading.Lock()  # line → how often each process has written it

    def relay(rank: int, stream) -> None:
        for line in stream:
            with lock:
                seen = counts.setdefault(line, [0] * n)
                seen[rank] += 1
                if seen[rank] > max(seen[:rank] + seen[rank + 1:]):
                    sys.stderr.write(line)
                    sys.stderr.flush()

    received = []  # signals sent to the launcher, passed on by its loop (a handler only notes them)

    def note(signum, frame):
        received.append(signum)

    relays = [threading.Thread(target=relay, args=(r, c.stderr), daemon=True) for r, c in enumerate(children)]
    for thread in relays:
        thread.start()
    handlers = {sig: signal.signal(sig, note) for sig in dict.fromkeys((signal.SIGTERM, signal.SIGHUP, *STOP_SIGNALS))}
    forwarded = None  # the signal passed on to the processes, which stop after their iteration

    def forward(signum: int) -> None:
        nonlocal forwarded
        forwarded = forwarded or signum
        for c in children:
            if c.poll() is None:
                c.send_signal(signum)

    status = 0
    try:
        while True:
            while received:  # passed on, each time (a process notes it once); they end in their time
                signum = received.pop(0)
                forward(signum if signum in STOP_SIGNALS else signal.SIGTERM)
            codes = [c.poll() for c in children]
            stopped = [code for code in codes if code is not None and code - 128 in STOP_SIGNALS]
            failed = [(r, code) for r, code in enumerate(codes) if code not in (None, 0, *stopped)]
            if failed:  # the others fail only because it is gone, or wait for it forever: killed below
                rank, status = failed[0]
                if status < 0:
                    click.echo(f"Error: process {rank} was stopped by {signal.Signals(-status).name}", err=True)
                    status = 128 - status
                break
            if None not in codes:  # all ended: finished (0), or stopped after an iteration, checkpointed
                status = stopped[0] if stopped else 0
                break
            if stopped and forwarded is None:  # one was signalled alone (a batch system signals every
                forward(stopped[0] - 128)  # process): the others stop after the same iteration
            time.sleep(0.1)
    except KeyboardInterrupt:  # Ctrl-C: killed at once
        status = 130
    finally:
        interrupt = signal.signal(signal.SIGINT, signal.SIG_IGN)  # not interrupted while the processes are
        for sig in handlers:  # killed and reaped
            signal.signal(sig, signal.SIG_IGN)
        for c in children:
            if c.poll() is None:
                c.kill()
        for c, thread in zip(children, relays, strict=True):
            c.wait()
            thread.join()
        signal.signal(signal.SIGINT, interrupt)
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    return status


def saved_processes(out_dir: str | None) -> int:
    """The number of processes of the run in ``out_dir`` (1 where unknown; --resume reports what is wrong)."""
    try:
        return int(json.loads((Path(out_dir) / "config.json").read_text()).get("processes", 1))
    except (TypeError, OSError, ValueError, AttributeError):
        return 1


# ----------------------------------------------------------------------------- evaluation

def run_evaluation(model, dataset, cfg, net_mean, net_std, palette=None, preds_dir: Path | None = None,
                   procs: Processes | None = None) -> dict:
    """Scores of ``model`` on ``dataset``; several processes each score a share and sum their counts."""
    procs = procs or Processes({})
    dataset = procs.shard(dataset)
    loader = datapipe.eval_loader(dataset, cfg["eval_batch_size"], net_mean, net_std, cfg["num_workers"],
                                  pad_batch=cfg["eval_pad_batch"], ignored_signals=STOP_SIGNALS)

    def save_preds(batch, pred):
        preds = pred.cpu().numpy().astype(np.uint8)
        if "crop" in batch:  # --eval-pad-batch: each image's own pixels
            preds = [p[top:top + h, left:left + w]
                     for p, (top, left, h, w) in zip(preds, batch["crop"].tolist(), strict=True)]
        for index, p in zip(batch["index"].tolist(), preds, strict=True):
            image = Image.fromarray(p, mode="P")
            image.putpalette(palette.reshape(-1).tolist())
            image.save(preds_dir / f"{dataset.sample_id(index)}.png")

    if preds_dir is not None:
        preds_dir.mkdir(parents=True, exist_ok=True)
    jaccards = []  # two classes: per-image IoU of class 1 (the ISIC challenge's Jaccard index)

    def on_prediction(batch, pred):
        if cfg["num_classes"] == 2:
            label = batch["label"].to(pred.device)
            jaccards.extend(evaluation.image_iou(pred, label, 1, dataset.ignore_index).tolist())
        if preds_dir is not None:
            save_preds(batch, pred)

    memory_format = torch.channels_last if cfg["channels_last"] else torch.contiguous_format
    batches = ({**b, "image": b["image"].to(memory_format=memory_format)} for b in loader)
    confusion = evaluation.evaluate(model, batches, cfg["num_classes"], dataset.ignore_index, cfg["device"],
                                    on_prediction=on_prediction,
                                    postprocess=evaluation.fill_holes if cfg["bin_fill_holes"] else None,
                                    postprocess_padded=cfg["fill_holes_padded"])
    jaccard_sum = torch.tensor([sum(jaccards), len(jaccards)], dtype=torch.float64, device=confusion.matrix.device)
    procs.sum_(confusion.matrix, jaccard_sum)
    scores = {"miou": confusion.miou(), "per_class_iou": confusion.per_class_iou()}
    if jaccard_sum[1] > 0:
        scores["jaccard"] = float(jaccard_sum[0] / jaccard_sum[1])
    return scores


# ----------------------------------------------------------------------------- training

def train(cfg: dict, bundle: datapipe.DataBundle, procs: Processes | None = None,
          stop: StopRequest | None = None) -> dict:
    """Train the run ``cfg`` describes (a new one, or ``--resume``); its final scores. ``stop``: an entered
    StopRequest that the training loop heeds (by default one entered for the call)."""
    with contextlib.ExitStack() as held:  # the run directory's lock, released when training ends
        stop = stop if stop is not None else held.enter_context(StopRequest())
        return train_locked(cfg, bundle, procs or Processes({}), held, stop)


def train_locked(cfg: dict, bundle: datapipe.DataBundle, procs: Processes, held: contextlib.ExitStack,
                 stop: StopRequest) -> dict:
    if cfg["resume"] and cfg["processes"] != procs.world:
        raise ConfigError(f"--resume: the run in {cfg['out_dir']} trained in {cfg['processes']} process(es); "
                          f"continue it with as many (--processes {cfg['processes']})")
    cfg["processes"] = procs.world
    if cfg["batch_size"] % procs.world:
        raise ConfigError(f"--batch-size {cfg['batch_size']} is the whole batch, split between {procs.world} "
                          f"processes; give a multiple of {procs.world}")
    if cfg["mix_partner"] == "batch" and cfg["batch_size"] // procs.world * cfg["unsup_batch_ratio"] < 2:
        raise ConfigError(f"--mix-partner batch pairs images within each process's unlabelled batch, which "
                          f"needs at least 2; raise --batch-size to {2 * procs.world} or more")
    device = procs.device(cfg["device"])
    procs.start(device)
    out = check_out_dir(cfg)
    locked = procs.gather(out.is_dir())[0]  # process 0's view: every process takes the same path below
    if locked:  # an existing run (--resume, --overwrite): no other process may be in it
        procs.on_main(lambda: held.enter_context(run_dir_lock(out)))
    procs.barrier()  # every process has checked the run directory before process 0 replaces it
    if cfg["threads"]:
        torch.set_num_threads(cfg["threads"])
    if cfg.get("keep_freed_memory", True):
        keep_freed_memory()  # glibc only; elsewhere a no-op
    torch.manual_seed(cfg["seed"])  # the global RNG initialises the weights and nothing else

    # data: labelled subset, unlabelled pool, held-out validation
    if cfg["authors_split"]:  # numpy's RandomState permutations, as datapipe/datasets.py of the authors' release
        split = datapipe.authors_split(len(bundle.train), cfg["n_sup"], cfg["split_seed"], cfg["n_unsup"],
                                       cfg["n_val"], cfg["val_seed"])
    elif cfg["split_file"] is not None:  # lines matched to training images by id
        ids = [bundle.train.sample_id(i) for i in range(len(bundle.train))]
        split = datapipe.split_from_file(cfg["split_file"], ids, cfg["n_sup"], cfg["n_unsup"], cfg["n_val"],
                                         cfg["split_seed"])
    else:
        split = datapipe.random_split(len(bundle.train), cfg["n_sup"], cfg["split_seed"], cfg["n_unsup"],
                                      cfg["n_val"])
    labelled = datapipe.Subset(bundle.train, split.labelled)
    unlabelled = datapipe.Subset(bundle.train, split.unlabelled)
    if bundle.unlabelled is not None:  # extra unlabelled-only images join the training images
        unlabelled = datapipe.Concat([unlabelled, bundle.unlabelled])
    eval_set = datapipe.Subset(bundle.train, split.held_out) if cfg["n_val"] else bundle.val
    if eval_set is None:
        raise datapipe.DataError(f"{bundle.name}: no validation set; hold out training images with --n-val K "
                                 f"(folder: or add val/images and val/labels)")

    # networks: student, teacher (mean teacher: EMA copy; Π-model: the student itself)
    memory_format = torch.channels_last if cfg["channels_last"] else torch.contiguous_format
    student = architectures.build_arch(cfg["arch"], cfg["num_classes"], pretrained=cfg["pretrained"],
                                       freeze_bn=cfg["freeze_bn"], weights=cfg["weights"])
    crop = cfg["crop_size"]
    if crop is not None and min(crop) < student.min_input:
        raise ConfigError(f"--crop-size {crop[0]},{crop[1]} is too small for {cfg['arch']}, which needs at least "
                          f"{student.min_input}×{student.min_input} px; give a larger --crop-size")
    if cfg["freeze_bn_affine"]:  # the authors' DeepLab v2 never trained BatchNorm's weights
        student.freeze_bn_affine()
    student = student.to(device, memory_format=memory_format)
    procs.copy_from_main(*student.state_dict().values())  # the same start everywhere
    mean_teacher = regularizers.MeanTeacher(student, cfg["teacher_alpha"]) if cfg["model"] == "mean_teacher" else None
    teacher = mean_teacher.teacher if mean_teacher else student
    optimizer = make_optimizer(cfg, student)

    cons_loss = regularizers.ConsistencyLoss(cfg["cons_loss"], cfg["conf_thresh"], cfg["conf_per_pixel"])
    # masks and dropout: a stream of each process's own (one process: the single-process streams)
    mask_rng = np.random.default_rng([cfg["seed"], 1000] + ([procs.rank] if procs.world > 1 else []))
    if procs.world > 1:
        torch.manual_seed(int(np.random.SeedSequence([cfg["seed"], 2000, procs.rank]).generate_state(1)[0]))
    reg = None if cfg["reg"] == "none" else regularizers.build_regularizer(cfg["reg"], cons_loss, mask_rng, cfg)

    start_iter = 0
    if cfg["resume"]:
        ckpt = read_checkpoint(out / "checkpoint.pt", device)
        student.load_state_dict(ckpt["student"])
        teacher.load_state_dict(ckpt["teacher"])
        optimizer.load_state_dict(ckpt["optimizer"])
        mask_rng.bit_generator.state = ckpt["mask_rng"][procs.rank] if procs.world > 1 else ckpt["mask_rng"]
        start_iter = ckpt["iter"]
        # stopped after the checkpoint of its last iteration, before its final.json (a final.json of an
        # earlier, shorter part does not count): only the final evaluation is left to do
        at_end = start_iter == cfg["iters"] == ckpt.get("config", {}).get("iters")
        if cfg["iters"] <= start_iter and not (at_end and final_iters(out) != start_iter):
            raise ConfigError(f"--resume: the run in {out} has already trained {start_iter} iterations"
                              f"{' and written final.json' if at_end else ''}; give --iters above {start_iter} "
                              f"to extend it")

    params = aug_params(cfg)
    mean, std = student.mean, student.std
    batch_size = cfg["batch_size"] // procs.world  # this process's share
    unsup_batch_size = batch_size * cfg["unsup_batch_ratio"]
    # this process's share of each stream; its loader workers leave the stop signals to it (StopRequest)
    shard = {"rank": procs.rank, "world": procs.world, "ignored_signals": STOP_SIGNALS}
    sup_stream = datapipe.stream_loader(labelled, params, batch_size, cfg["seed"], 0, True, mean, std,
                                        cfg["num_workers"], start=start_iter * batch_size, **shard)
    unsup_streams = []
    if reg is not None:
        n_streams = 2 if reg.needs_partner and cfg["mix_partner"] == "stream" else 1
        unsup_streams = [datapipe.stream_loader(unlabelled, params, unsup_batch_size, cfg["seed"], 1 + k, False,
                                                mean, std, cfg["num_workers"], start=start_iter * unsup_batch_size,
                                                paired=reg.needs_views, offset_range=cfg["aug_offset_range"],
                                                free_scale_rot=cfg["aug_free_scale_rot"],
                                                teacher_unscaled=cfg["aug_teacher_unscaled"],
                                                colour=colour_jitter(cfg), **shard)
                         for k in range(n_streams)]

    if cfg["resume"] and "torch_rng" in ckpt:  # dropout's stream, where the checkpointed run left it
        set_torch_rng_state(ckpt["torch_rng"][procs.rank] if procs.world > 1 else ckpt["torch_rng"], device)

    def to_device(batch):
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        for key in ("image", "image_s"):  # image_s: the student view of paired views
            if key in batch:
                batch[key] = batch[key].contiguous(memory_format=memory_format)
        return batch

    def start_run_dir() -> None:  # every input is read and checked: now the run directory may be replaced
        if not locked:  # it did not exist: made and locked now, and checked again under the lock, since
            make_out_dir(out)  # another run may have started in it while this one read its data
            held.enter_context(run_dir_lock(out))
            check_out_dir(cfg)
        start_out_dir(out)
        write_json(out / "config.json", jsonable(cfg))
        write_json(out / "split.json", split.as_dict())

    def continue_run_dir() -> None:
        trim_metrics(out, start_iter, ckpt.get("final_pending", False))
        # --resume --iters N: the run is N iterations long from now on (and --checkpoint-every M: checkpointed
        # so often)
        saved = json.loads((out / "config.json").read_text())
        now = {key: cfg[key] for key in ("iters", "checkpoint_every")}
        if {key: saved.get(key, GLOBAL_DEFAULTS[key]) for key in now} != now:
            write_json(out / "config.json", {**saved, **now})

    procs.on_main(continue_run_dir if cfg["resume"] else start_run_dir)
    if procs.main:
        append_environment(out, environment_record(device, start_iter, procs))
    procs.barrier()  # no process writes into the run directory before process 0 has made it anew
    seconds_before = ckpt.get("seconds", 0.0) if cfg["resume"] else 0.0
    t0 = time.time()
    # training means since the last evaluation, summed on the device: no host sync per iteration
    running = {"sums": torch.zeros(3, dtype=torch.float64, device=device), "n": 0, "shown": float("nan")}
    if cfg["resume"] and "running" in ckpt:  # a checkpoint between evaluations: the means it had summed so far
        sums = ckpt["running"]["sums"]
        running["sums"].copy_(sums[procs.rank] if procs.world > 1 else sums)
        running["n"] = ckpt["running"]["n"]

    def log_evaluation(scores: dict, done: int) -> dict:
        """Append one record to metrics.jsonl (training means since the last one, over the processes) and
        print it."""
        procs.sum_(running["sums"])
        means = (running["sums"] / max(running["n"] * procs.world, 1)).tolist()
        if running["n"] == 0:  # no training step since the last record (--iters 0, an evaluation at start)
            means = [None] * 3
        elif reg is None:  # no consistency term: no loss and no confident fraction to report
            means[1:] = [None, None]
        record = {"iter": done, **scores, **dict(zip(("sup_loss", "cons_loss", "conf_frac"), means, strict=True)),
                  "seconds": seconds_before + time.time() - t0}
        running["sums"].zero_()
        running["n"] = 0
        if not procs.main:
            return record
        with open(out / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        shown = [f"mIoU {100 * scores['miou']:.2f}%"] + [
            f"{label} {record[key]:{spec}}" for label, key, spec in
            (("sup loss", "sup_loss", ".4f"), ("cons loss", "cons_loss", ".4f"), ("confident", "conf_frac", ".3f"))
            if record[key] is not None]
        click.echo(f"\n[iter {done}] " + "  ".join(shown))
        return record

    def save_state(done: int, final_pending: bool = False) -> None:
        """Process 0 writes the checkpoint; the random streams of every process go into it. ``final_pending``:
        the end of training, saved before the final evaluation (a run stopped in it resumes at it)."""
        mask_states, torch_states = procs.gather(mask_rng.bit_generator.state), procs.gather(torch_rng_state(device))
        sums = procs.gather(running["sums"].cpu())  # each process's training sums since the last record
        if not procs.main:
            return
        streams = {"mask_rng": mask_states, "torch_rng": torch_states, "running": {"sums": sums, "n": running["n"]}} \
            if procs.world > 1 else {"mask_rng": mask_states[0], "torch_rng": torch_states[0],
                                     "running": {"sums": sums[0], "n": running["n"]}}
        save_checkpoint(out / "checkpoint.pt", student=student.state_dict(), teacher=teacher.state_dict(),
                        optimizer=optimizer.state_dict(), **streams, iter=done, final_pending=final_pending,
                        seconds=seconds_before + time.time() - t0, config=jsonable(cfg))

    if cfg["resume"] and ckpt.get("final_pending", False) and start_iter < cfg["iters"]:
        # extended after it stopped at its end: first the final evaluation it was stopped before
        log_evaluation(run_evaluation(teacher, eval_set, cfg, mean, std, procs=procs), start_iter)
    student.train()
    if mean_teacher is not None:  # the Π-model's teacher is the student, which stays in train mode
        teacher.train(cfg["teacher_bn_mode"] == "train")
    iters = cfg["iters"]
    # the buffers (BatchNorm statistics) that process 0 hands to the others after each step
    buffers = list(dict.fromkeys([*student.buffers(), *teacher.buffers()]))
    progress = click.progressbar(range(start_iter, iters), label="training", show_pos=True,
                                 item_show_func=lambda _: None if math.isnan(running["shown"]) else
                                 f"sup {running['shown']:.3f}") if procs.main else \
        contextlib.nullcontext(range(start_iter, iters))
    # SIGTERM or SIGUSR1 (a batch system's warning), noted by ``stop`` since the run began, stops it after the
    # current iteration, checkpointed; one that arrives during the final evaluation lets the run finish
    # several processes: whether any of them was signalled, summed on the device at the start of each step and
    # read at its end; on a GPU through a pinned copy and an event, so that the host waits for that early
    # point of the step only, not for the whole step
    stop_votes = torch.zeros((), dtype=torch.int64, device=device)
    votes_read = torch.zeros((), dtype=torch.int64, pin_memory=device.type == "cuda")
    votes_copied = torch.cuda.Event() if device.type == "cuda" else None
    with progress as bar:
        for it in bar:
            # learning rate
            factor = lr_factor(cfg["lr_sched"], it, iters, cfg["lr_milestones"], cfg["lr_step_gamma"],
                               cfg["lr_poly_power"])
            for group in optimizer.param_groups:
                group["lr"] = cfg["lr"] * group["lr_scale"] * factor

            # supervised cross-entropy (255 = ignore)
            sup = to_device(next(sup_stream))
            logits = student(sup["image"])
            n_labelled = (sup["label"] != 255).sum()
            if procs.world > 1:  # whether any process was asked to stop: all of them stop after this iteration
                stop_votes.fill_(stop.signum > 0)
            procs.sum_(n_labelled, stop_votes)  # the labelled pixels of the whole batch: the mean of one process
            if procs.world > 1:
                votes_read.copy_(stop_votes, non_blocking=True)
                if votes_copied is not None:
                    votes_copied.record()
            loss = F.cross_entropy(logits, sup["label"], ignore_index=255, reduction="sum") * procs.world \
                / n_labelled.clamp(min=1)
            step_stats = [loss.detach()]

            # consistency on unlabelled data
            if reg is not None:
                batch = to_device(next(unsup_streams[0]))
                partner = None
                if reg.needs_partner:  # a second, independent batch, or the same batch paired up anew
                    partner = to_device(next(unsup_streams[1]) if len(unsup_streams) == 2 else
                                        pair_within(batch, mask_rng))
                cons, stats = reg(student, teacher, batch, partner)
                loss = loss + cfg["cons_weight"] * rampup_factor(it, cfg["rampup"]) * cons
                step_stats += [cons.detach(), torch.as_tensor(stats["conf_frac"], device=device).to(cons.dtype)]

            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            procs.average_gradients(student)
            with one_cpu_thread(device):
                optimizer.step()
                if mean_teacher is not None:
                    mean_teacher.update(student)
            procs.copy_from_main(*buffers)
            running["sums"][: len(step_stats)] += torch.stack(step_stats)
            running["n"] += 1
            if running["n"] % 50 == 0:  # the progress bar's loss: one host sync every 50 iterations
                running["shown"] = running["sums"][0].item() / running["n"]

            # evaluate, log and checkpoint (the final evaluation follows the loop)
            done = it + 1
            evaluate = done < iters and cfg["eval_every"] and done % cfg["eval_every"] == 0
            if evaluate:
                log_evaluation(run_evaluation(teacher, eval_set, cfg, mean, std, procs=procs), done)
            saved = evaluate or (done < iters and cfg["checkpoint_every"] and done % cfg["checkpoint_every"] == 0)
            if saved:
                save_state(done)
            elif done == iters:  # a run killed or stopped in its final evaluation resumes at that evaluation
                save_state(done, final_pending=True)
                saved = True
            if procs.world > 1 and votes_copied is not None:
                votes_copied.synchronize()
            if votes_read.item() if procs.world > 1 else stop.signum:
                if not saved:
                    save_state(done)
                procs.barrier()  # the checkpoint is written before any process ends
                raise TrainingStopped(next(s for s in procs.gather(stop.signum) if s), done, iters, out)

    # the final teacher is what is reported (no best-iteration picking)
    preds_dir = out / "preds" if cfg["save_preds"] else None
    final_scores = run_evaluation(teacher, eval_set, cfg, mean, std, bundle.palette, preds_dir, procs)
    if not (cfg["resume"] and start_iter == iters and not ckpt.get("final_pending", False)):
        seconds = log_evaluation(final_scores, iters)["seconds"]
        save_state(iters)
    else:  # --resume of a run stopped after its final checkpoint: its record of this evaluation is written
        seconds = seconds_before + time.time() - t0
    final = {**final_scores, "iters": iters, "seconds": seconds, "eval_set": "held_out" if cfg["n_val"] else "val",
             "peak_rss_mb": peak_rss_mb()}
    if device.type == "cuda":
        final["peak_gpu_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    # with --n-val the official val set is the test set (test_*); a dataset's own test set is test_* and
    # then the official val set, if held out from, is val_*
    tests = {"test": bundle.test} if bundle.test is not None else {}
    if cfg["n_val"] and bundle.val is not None:
        tests = {"val" if tests else "test": bundle.val, **tests}
    for name, test_set in tests.items():
        final.update({f"{name}_{k}": v for k, v in
                      run_evaluation(teacher, test_set, cfg, mean, std, procs=procs).items()})
    if not procs.main:
        return final
    write_json(out / "final.json", final)
    if cfg["save_model"]:
        torch.save(teacher.state_dict(), out / "model.pt")
    test_text = f", test mIoU {100 * final['test_miou']:.2f}%" if "test_miou" in final else ""
    click.echo(f"final mIoU {100 * final['miou']:.2f}%{test_text} after {iters} iterations, {seconds:.0f} s → {out}")
    return final


# ----------------------------------------------------------------------------- command line

def parse_pair(kind, what: str, ordered: bool = False):
    """A click callback for ``a`` or ``a,b``: positive numbers (``a`` ≤ ``b`` if ``ordered``)."""
    def parse(ctx, param, value):
        if value is None:
            return None
        try:
            parts = [kind(v) for v in str(value).replace(":", ",").split(",")]
        except ValueError:
            parts = []
        if len(parts) not in (1, 2):
            raise click.BadParameter(f"expected one value or two separated by ',', got {value!r}")
        if min(parts) <= 0:
            raise click.BadParameter(f"{what} must be positive, got {value!r}")
        if ordered and parts[0] > parts[-1]:
            raise click.BadParameter(f"expected low,high with low <= high, got {value!r}")
        return (parts[0], parts[-1])

    return parse


def parse_increasing(what: str):
    """A click callback for ``a,b,...`` (the authors' ``[a, b]`` too): strictly increasing positive integers."""
    def parse(ctx, param, value):
        if value is None:
            return None
        try:
            parts = [int(v) for v in str(value).strip().strip("[]()").replace(" ", "").split(",")]
        except ValueError:
            raise click.BadParameter(f"expected {what} as comma-separated integers, e.g. 20,30; got {value!r}") \
                from None
        if min(parts) <= 0 or any(b <= a for a, b in zip(parts, parts[1:], strict=False)):
            raise click.BadParameter(f"{what} must be positive and increasing, got {value!r}")
        return tuple(parts)

    return parse


def range_checker(parse):
    """A click callback that validates a range option with ``parse`` (value kept as given)."""
    def check(ctx, param, value):
        if value is not None:
            try:
                parse(value)
            except ValueError as err:
                raise click.BadParameter(str(err)) from None
        return value

    return check


def option(*names, **kwargs):
    """click.option with default None, so that unset options fall through to the recipe and defaults."""
    kwargs.setdefault("default", None)
    return click.option(*names, **kwargs)


def flag(name: str, dest: str, help: str, alias: str | None = None):
    """A boolean option settable both ways (``--x/--no-x``), with the authors' spelling as an alias."""
    names = [f"--{name}/--no-{name}"]
    if alias:
        names.append(f"--{alias}/--no_{alias}")
    return option(*names, dest, help=help)


def one_line(err: Exception) -> str:
    """The message of ``err``; from a loader worker (``--num-workers``) torch wraps it in the worker's
    traceback, whose last line is "<module>.DataError: <message>"."""
    message = str(err)
    if "Original Traceback" in message:
        message = message.strip().splitlines()[-1].split(f"{type(err).__name__}: ", 1)[-1]
    return message


REG_CHOICES = ["none", *sorted(regularizers.REGULARIZERS)]


@click.command(cls=cli_errors.Command,
               context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
# experiment
@option("--dataset", type=click.Choice(sorted(datapipe.DATASETS)), help="dataset [synthetic]")
@option("--data-dir", type=click.Path(), help="dataset root (datasets on disk)")
@option("--synthetic-n-train", type=click.IntRange(min=1), help="synthetic: training images [4000]")
@option("--synthetic-n-val", type=click.IntRange(min=1), help="synthetic: validation images [500]")
@option("--synthetic-seed", type=int, help="synthetic: seed of the generated images [0]")
@option("--num-classes", type=click.IntRange(min=2), help="folder: number of classes (labels 0 … C−1)")
@option("--ignore-index", type=click.IntRange(0, 255), help="folder: label value to ignore [255]")
@option("--fashion-n-train", type=click.IntRange(min=1), help="fashion_canvas: training canvases [4000]")
@option("--fashion-n-val", type=click.IntRange(min=1), help="fashion_canvas: validation and test canvases [1000]")
@option("--fashion-seed", type=int, help="fashion_canvas: seed of the canvases [0]")
@option("--fashion-canvas-size", type=click.IntRange(min=28), help="fashion_canvas: canvas side in pixels [64]")
@option("--arch", type=click.Choice(sorted(architectures.ARCHITECTURES)), help="network [dataset recipe]")
@option("--reg", type=click.Choice(REG_CHOICES), help="perturbation; none = supervised baseline [cutmix]")
@option("--model", type=click.Choice(["mean_teacher", "pi"]), help="teacher = EMA of student, or the student")
# splits
@option("--n-sup", "--n_sup", "n_sup", type=click.IntRange(min=1), help="labelled images [recipe; all]")
@option("--n-unsup", "--n_unsup", "n_unsup", type=click.IntRange(min=1), help="unlabelled images [all]")
@option("--n-val", "--n_val", "n_val", type=click.IntRange(min=0), help="training images held out for validation [0]")
@option("--split-seed", "--split_seed", "split_seed", type=int, help="seed of the labelled subset [--seed]")
@option("--split-file", "--split_path", "split_file", type=click.Path(dir_okay=False),
        help="text list of training images (ids or paths), matched by id; the first --n-sup are labelled")
@flag("authors-split", "authors_split", "draw the labelled subset (and --n-val's hold-out) as the authors' code did, "
      "with numpy's RandomState: their images for their seeds on Cityscapes and ISIC [off]")
@option("--val-seed", "--val_seed", "val_seed", type=int,
        help=f"--authors-split with --n-val: seed of the hold-out [the authors' {datapipe.AUTHORS_VAL_SEED}]")
# schedule and batches
@option("--iters", type=click.IntRange(min=0),
        help="training iterations; 0 = only evaluate the network as built (e.g. from --weights) [recipe; 40000]")
@option("--eval-every", type=click.IntRange(min=0), help="evaluate every N iterations, 0 = only at the end")
@option("--checkpoint-every", type=click.IntRange(min=0),
        help="also write checkpoint.pt every N iterations between evaluations, so that a killed run loses at most "
             "N; 0 = with each evaluation and at the end only [0]")
@option("--num-epochs", "--num_epochs", "num_epochs", type=click.IntRange(min=1),
        help="the authors' spelling: --iters = num-epochs × iters-per-epoch, evaluating after each epoch")
@option("--iters-per-epoch", "--iters_per_epoch", "iters_per_epoch", type=click.IntRange(min=1),
        help="with --num-epochs (the paper: 40 × 1000)")
@option("--batch-size", "--batch_size", "batch_size", type=click.IntRange(min=1), help="labelled batch [recipe]")
@option("--unsup-batch-ratio", "--unsup_batch_ratio", "unsup_batch_ratio", type=click.IntRange(min=1),
        help="unlabelled batch = ratio × batch size [1]")
@option("--mix-partner", type=click.Choice(["stream", "batch"]),
        help="mixing regularizers' second image: from a second unlabelled batch (the authors') or another "
        "image of the same batch [stream]")
@option("--eval-batch-size", type=click.IntRange(min=1), help="evaluation batch (1 when image sizes differ)")
@flag("eval-pad-batch", "eval_pad_batch", "evaluate images of different sizes in batches, each padded centrally "
      "to the batch's largest (image: the mean colour, label: ignored), as the authors' evaluation did [off]")
@flag("bin-fill-holes", "bin_fill_holes", "fill holes in two-class predictions before scoring [recipe; off]",
      "bin_fill_holes")
@flag("fill-holes-padded", "fill_holes_padded", "--bin-fill-holes on the prediction of the padded input, then "
      "cropped, as the authors' evaluation (padding predicted as lesion can enclose background at an image's edge) "
      "[off: on each image's own pixels]")
# augmentation
@option("--crop-size", "--crop_size", "crop_size", callback=parse_pair(int, "a crop size"),
        help="crop H,W [recipe]")
@option("--aug-scale-range", callback=parse_pair(float, "a scale range", ordered=True),
        help="random scale low,high [recipe]")
@flag("aug-scale-hung", "aug_scale_hung", "scale 0.5–1.5 in steps of 0.1 (Hung et al.; Pascal)", "aug_scale_hung")
@option("--aug-max-scale", "--aug_max_scale", "aug_max_scale", type=click.FloatRange(min=1), help="scale in [1/s, s]")
@option("--aug-rot-mag", "--aug_rot_mag", "aug_rot_mag", type=click.FloatRange(0, 180), help="rotation ±degrees [0]")
@flag("aug-hflip", "aug_hflip", "random horizontal flips", "aug_hflip")
@flag("aug-vflip", "aug_vflip", "random vertical flips", "aug_vflip")
@flag("aug-hvflip", "aug_hvflip", "random diagonal flips (transpose)", "aug_hvflip")
@flag("aug-reflect-border", "aug_reflect_border", "view pixels from outside the image are the image mirrored at its "
      "border (still invalid, labels ignored) instead of the mean colour (the authors' ISIC augmentation) "
      "[recipe: on for isic2017, else off]")
@flag("aug-authors-interp", "aug_authors_interp", "the authors' interpolation of warped crops (their rotate-and-scale "
      "crop: ISIC): labelled images nearest-neighbour, each single unlabelled view nearest or bilinear at random; "
      "paired views bilinear [off: every image bilinear]")
@flag("aug-centre-small", "aug_centre_small", "an image (scaled) smaller than the crop sits in the crop's centre "
      "instead of at a random position (the authors' central padding) [recipe: on for pascal_aug/pascal, else off]")
@flag("aug-strong-colour", "aug_strong_colour", "colour-augment the student's view of unlabelled images (MoCo v2's "
      "colour jitter, then greyscale), not the teacher's: the authors' later release, beyond the paper [off]",
      "aug_strong_colour")
@option("--aug-colour-brightness", "--aug_colour_brightness", "aug_colour_brightness", type=click.FloatRange(min=0),
        help="colour: brightness factor in [max(0, 1 − b), 1 + b] [0.4]")
@option("--aug-colour-contrast", "--aug_colour_contrast", "aug_colour_contrast", type=click.FloatRange(min=0),
        help="colour: contrast factor in [max(0, 1 − c), 1 + c] [0.4]")
@option("--aug-colour-saturation", "--aug_colour_saturation", "aug_colour_saturation", type=click.FloatRange(min=0),
        help="colour: saturation factor in [max(0, 1 − s), 1 + s] [0.4]")
@option("--aug-colour-hue", "--aug_colour_hue", "aug_colour_hue", type=click.FloatRange(0, 0.5),
        help="colour: hue shift in [−h, h] (fraction of the hue circle) [0.1]")
@option("--aug-colour-prob", "--aug_colour_prob", "aug_colour_prob", type=click.FloatRange(0, 1),
        help="colour: probability of the jitter [0.8]")
@option("--aug-colour-greyscale-prob", "--aug_colour_greyscale_prob", "aug_colour_greyscale_prob",
        type=click.FloatRange(0, 1), help="colour: probability of greyscale, after the jitter [0.2]")
# optimisation
@option("--optimizer", "--opt_type", "optimizer", type=click.Choice(["adam", "sgd"]), help="[recipe; adam]")
@flag("fused-optimizer", "fused_optimizer",
      "torch's fused optimizer kernels [on]; --no-fused-optimizer: the multi-tensor path (tables up to 2026-11-27)")
@flag("keep-freed-memory", "keep_freed_memory",
      "glibc malloc keeps freed memory for the next step instead of returning it to the kernel [on]; "
      "--no-keep-freed-memory: the C library's default (page faults every step)")
@option("--lr", "--learning_rate", "lr", type=click.FloatRange(min=0, min_open=True),
        help="learning rate of new layers [recipe; network default]")
@option("--lr-sched", "--lr_sched", "lr_sched", type=click.Choice(["none", "stepped", "cosine", "poly"]),
        help="learning-rate schedule [none]")
@option("--lr-milestones", "lr_milestones", callback=parse_increasing("milestones"),
        help="stepped: iterations at which the lr is multiplied by --lr-step-gamma, e.g. 20000,30000 [½ and ¾ of "
             "--iters]")
@option("--lr-step-epochs", "--lr_step_epochs", "lr_step_epochs", callback=parse_increasing("epochs"),
        help="stepped: the milestones in epochs of --iters-per-epoch iterations (the authors' option) [½ and ¾]")
@option("--lr-step-gamma", "--lr_step_gamma", "lr_step_gamma", type=click.FloatRange(0, 1, min_open=True),
        help="stepped: the lr's factor at each milestone [0.1]")
@option("--lr-poly-power", "--lr_poly_power", "lr_poly_power", type=click.FloatRange(min=0, min_open=True),
        help="poly: the power of (1 − t) [0.9]")
@option("--momentum", "--sgd_momentum", "momentum", type=click.FloatRange(0, 1, max_open=True),
        help="SGD momentum [0.9]")
@flag("nesterov", "nesterov", "Nesterov momentum (SGD)", "sgd_nesterov")
@option("--weight-decay", "--sgd_weight_decay", "weight_decay", type=click.FloatRange(min=0), help="weight decay [0]")
@option("--pretrained-lr-scale", type=click.FloatRange(min=0), help="lr factor of pretrained layers [0.1]")
# network
@flag("pretrained", "pretrained", "ImageNet-pretrained backbone [on where the network has one]")
@option("--weights", type=click.Path(dir_okay=False), help="state dict to start from (network or backbone)")
@flag("freeze-bn", "freeze_bn", "keep BatchNorm frozen [network's paper setting]", "freeze_bn")
@flag("freeze-bn-affine", "freeze_bn_affine", "never train BatchNorm's weights and biases, while its statistics "
      "follow --freeze-bn: what the authors' DeepLab v2 did with --no-freeze-bn [off]")
@flag("channels-last", "channels_last", "channels-last memory format (faster convolutions on CPU) [on]")
# consistency
@option("--cons-loss", "--cons_loss_fn", "cons_loss", type=click.Choice(regularizers.CONS_LOSSES),
        help="consistency loss [var; kld for --reg vat, as the authors' VAT runs]")
@option("--cons-weight", "--cons_weight", "cons_weight", type=click.FloatRange(min=0),
        help="consistency weight [regularizer's paper value]")
@option("--conf-thresh", "--conf_thresh", "conf_thresh", type=click.FloatRange(0, 1),
        help="teacher confidence threshold, 0 = off [0.97]")
@flag("conf-per-pixel", "conf_per_pixel", "mask the loss per pixel instead of scaling by the confident fraction",
      "conf_per_pixel")
@option("--rampup", type=click.IntRange(min=0), help="sigmoid ramp-up iterations, 0 = off [0]")
@option("--teacher-alpha", "--teacher_alpha", "teacher_alpha", type=click.FloatRange(0, 1), help="EMA rate [0.99]")
@option("--teacher-bn-mode", type=click.Choice(["train", "eval"]),
        help="teacher BatchNorm on unlabelled batches: batch statistics (authors) or running [train]")
# masks
@option("--mask-prop-range", "--mask_prop_range", "mask_prop_range",
        callback=range_checker(regularizers.masks.parse_prop_range),
        help="mask proportion (box area; cow masks: kept share), p or a:b [cutmix/cowmix 0.5, cutout/cowout 0:1]")
@option("--boxmask-n-boxes", "--boxmask_n_boxes", "boxmask_n_boxes", type=click.IntRange(min=1),
        help="boxes per mask, combined by XOR [1]")
@flag("boxmask-fixed-aspect-ratio", "boxmask_fixed_aspect_ratio", "square boxes", "boxmask_fixed_aspect_ratio")
@flag("boxmask-by-size", "boxmask_by_size", "proportion range gives side lengths, not area", "boxmask_by_size")
@flag("boxmask-outside-bounds", "boxmask_outside_bounds", "boxes may leave the image", "boxmask_outside_bounds")
@option("--boxmask-invert/--no-boxmask-invert", "--boxmask_invert/--no_boxmask_invert", " /--boxmask-no-invert",
        " /--boxmask_no_invert", "boxmask_invert",  # the original's switch is --boxmask_no_invert
        help="boxes are 1 (the original's default); --boxmask-no-invert: boxes are 0")
@option("--cowmix-sigma-range", "--cowmix_sigma_range", "cowmix_sigma_range",
        callback=range_checker(regularizers.cow_masks.parse_sigma_range),
        help="cowout/cowmix: Gaussian σ in px, s or a:b, drawn log-uniformly [4:16]")
# perturbation-specific
@option("--aug-offset-range", "--aug_offset_range", "aug_offset_range", type=click.IntRange(min=0),
        help="aug: max offset in px between the teacher's and the student's crop centres [16]")
@flag("aug-free-scale-rot", "aug_free_scale_rot", "aug: draw scale and rotation per view instead of sharing them",
      "aug_free_scale_rot")
@flag("aug-teacher-unscaled", "aug_teacher_unscaled", "aug: the teacher's view at scale 1 without rotation, the "
      "student's with its own scale and rotation (the authors' Pascal pair transform) [off]")
@option("--ict-alpha", "--ict_alpha", "ict_alpha", type=click.FloatRange(min=0, min_open=True),
        help="ict: λ ~ Beta(α, α) [0.1]")
@flag("ict-mix-confidences", "ict_mix_confidences", "ict: confidence = the λ-mix of the teacher's confidences on the "
      "two images (the authors' script) instead of the confidence of the mixed prediction [off]")
@option("--vat-radius", "--vat_radius", "vat_radius", type=click.FloatRange(min=0),
        help="vat: radius r; × the image-gradient magnitude if adaptive, else × sqrt(C·H·W) [1]")
@flag("adaptive-vat-radius", "adaptive_vat_radius", "vat: radius relative to each image's gradient magnitude [on]",
      "adaptive_vat_radius")
@flag("vat-dir-from-student", "vat_dir_from_student", "vat: adversarial direction from the student, not the teacher",
      "vat_dir_from_student")
@flag("vat-finite-diff", "vat_finite_diff", "vat: the authors' literal finite-difference power iteration "
      "(paper-era; mostly float32 rounding noise) instead of the exact first-order direction [off]")
# run
@option("--seed", type=int, help="seed of initialisation, augmentation and masks [0]")
@option("--processes", type=click.IntRange(min=1),
        help="processes on this machine, one per GPU with --device cuda (or use torchrun) [1; --resume: the run's]")
@option("--device", help="cpu, cuda, cuda:1, ... [cuda if available]")
@option("--num-workers", "--num_workers", "num_workers", type=click.IntRange(min=0), help="loader workers [0]")
@option("--threads", type=click.IntRange(min=1), help="torch CPU threads [torch default]")
@option("--out-dir", type=click.Path(file_okay=False), help="run directory [runs/<dataset>-<reg>-<arch>-n<n>-s<seed>]")
@flag("overwrite", "overwrite", "replace an existing run directory")
@flag("resume", "resume", "continue the run in --out-dir from its checkpoint")
@flag("save-model", "save_model", "write the final teacher's state dict to model.pt", "save_model")
@flag("save-preds", "save_preds", "write prediction PNGs of the evaluation set to preds/", "save_preds")
def main(**given):
    """Train a segmentation network with mean teacher and a consistency regularizer."""
    inherited = os.environ.pop(INHERITED_LOCK_ENV, None)  # popped: this process's own children do not hold it
    with contextlib.suppress(ValueError, OSError):
        fd = int(inherited or "")
        os.fstat(fd)  # open here
        LOCK_FDS.add(fd)
    warnings.showwarning = lambda message, *_, **__: click.echo(f"warning: {message}", err=True)  # one line each
    procs = Processes()
    if "WORLD_SIZE" not in os.environ:  # not started by torchrun or by --processes: start the processes here
        n = given["processes"] or (saved_processes(given["out_dir"]) if given["resume"] else 1)
        if n > 1:
            return launch_processes(n, sys.argv[1:])
    elif given["processes"] not in (None, procs.world):
        raise ConfigError(f"--processes {given['processes']} differs from the {procs.world} process(es) that "
                          f"torchrun started; drop --processes")
    given = {**given, "processes": None}  # the count is the processes' own, set by train()
    # from here until the process ends, SIGTERM and SIGUSR1 are noted: one that comes while the run starts
    # stops it after its first iteration, and one that comes as it ends leaves its end (and exit status) alone
    with StopRequest() as stop:
        try:
            cfg, bundle = resume_config(given) if given["resume"] else resolve_config(given)
            train(cfg, bundle, procs, stop)
        except (datapipe.DataError, architectures.WeightsError) as err:
            raise click.ClickException(one_line(err)) from None
        finally:
            procs.stop()


# ----------------------------------------------------------------------------- reusing finished runs

# config entries that do not change what a run computes
NOT_SETTINGS = {"out_dir", "overwrite", "resume", "num_workers", "checkpoint_every"}
# config entries holding paths: the same file by another spelling (relative, a link) is the same setting
PATH_SETTINGS = {"data_dir", "split_file", "weights"}


def resolved_config(args: list[str]) -> dict:
    """The configuration ``train_seg_semisup.py ARGS`` trains with, as its ``config.json`` holds it (a run in
    one process; the data set's notes are left to the run itself)."""
    try:
        ctx = main.make_context("train_seg_semisup.py", list(args))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cfg, _ = resolve_config({**ctx.params, "processes": None})
    except click.ClickException as err:
        raise click.ClickException(f"the training options {' '.join(args)}: {err.format_message()}") from None
    except (datapipe.DataError, architectures.WeightsError) as err:
        raise click.ClickException(f"the training options {' '.join(args)}: {one_line(err)}") from None
    cfg["processes"] = 1  # what a run in one process records
    return json.loads(json.dumps(jsonable(cfg)))


def read_run_json(path: Path, what: str = "a JSON object"):
    """A run's JSON file; a damaged one is a one-line error naming it."""
    try:
        return json.loads(path.read_text())
    except (ValueError, OSError) as err:
        raise click.ClickException(f"cannot read {path} ({type(err).__name__}: {one_line(err)}); it should hold "
                                   f"{what}: move the run away or repair the file") from None


def same_setting(key: str, have, want) -> bool:
    if key in PATH_SETTINGS and isinstance(have, str) and isinstance(want, str):
        return Path(have).expanduser().resolve() == Path(want).expanduser().resolve()
    return have == want


def config_conflicts(out: Path, wanted: dict, ignore: frozenset | set = frozenset()) -> list[str]:
    """The settings of the run in ``out`` that differ from ``wanted``, the resolved configuration this
    invocation would train with (empty: it may be reused), besides NOT_SETTINGS and ``ignore``. An option the
    run's config.json lacks was added since; the run had its default."""
    config_path = out / "config.json"
    if not config_path.is_file():
        return [f"{config_path} is missing"]
    config = read_run_json(config_path, "the run's resolved options")
    differ = []
    for key, value in wanted.items():
        have = config.get(key, GLOBAL_DEFAULTS.get(key))
        if key not in NOT_SETTINGS | set(ignore) and not same_setting(key, have, value):
            differ.append(f"{key}={have} (this invocation: {value})")
    return differ


def commit_note(out: Path) -> str | None:
    """A line saying that the run in ``out`` ran with other code than this checkout's (another commit,
    uncommitted changes, or no record of its commit); None when it ran at this checkout's clean commit."""
    now = provenance.code_version()
    path = out / "environment.json"
    try:
        records = json.loads(path.read_text()) if path.is_file() else []
    except (ValueError, OSError) as err:
        return f"cannot read {path} ({type(err).__name__}): which code made {out} is unknown"
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        return f"{path} is not a list of records: which code made {out} is unknown"
    ran = sorted({r.get("commit") or "unknown" for r in records} |
                 ({"uncommitted changes"} if any(r.get("uncommitted_changes") for r in records) else set()))
    if records and ran == [now["commit"]] and not now["uncommitted_changes"]:
        return None
    return (f"{out} ran with code {', '.join(ran) if records else 'not recorded (before environment.json)'}; "
            f"this checkout is {now['commit'] or 'not a git checkout'}"
            f"{' with uncommitted changes' if now['uncommitted_changes'] else ''}: settings are compared, code is not")


if __name__ == "__main__":
    main()
