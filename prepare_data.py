"""Prepare, check and split the datasets on disk.

    python prepare_data.py prepare cityscapes --data-dir data/cityscapes --out-dir data/cityscapes_half
    python prepare_data.py prepare isic2017 --data-dir data/isic2017 --out-dir data/isic2017_248
    python prepare_data.py check --dataset pascal_aug --data-dir data/VOCdevkit/VOC2012
    python prepare_data.py splits split_0.pkl --train-list train_aug.txt --out mittal_split0_order.txt

``prepare`` makes what the paper trained on, in the official layout, into a cache folder: Cityscapes at
half resolution (1024×512; images by 2×2 box averaging, labels by 2×2 majority vote with ties going to the
lower labelId) and ISIC 2017 at 248×248 (area interpolation, masks thresholded at 127). It works once per
file, shows a progress bar, and resumes where it stopped: finished files are skipped, each file is
written under a temporary name and renamed, and ``prepared.json`` marks a complete copy.

``check`` reads every image and label of a dataset up front and lists every bad file, one per line.

``splits`` converts the authors' released ``split_0.pkl`` (a numpy permutation of ``train_aug.txt``) to a
text order file; it unpickles with a restricted unpickler that accepts numpy arrays and nothing else.
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import codecs
import functools
import io
import json
import pickle
import warnings
from multiprocessing import Pool
from pathlib import Path

import click
import cv2
import numpy as np
from PIL import Image

import cli_errors
import datapipe
from datapipe import cityscapes, isic
from datapipe.files import PREPARED_MARK, UNFINISHED_MARK, FileDataset, find_root, read_image, read_label_png

try:  # numpy ≥ 2 moved the pickling helpers to numpy._core
    from numpy._core import multiarray as _multiarray
    from numpy._core import numeric as _numeric
except ImportError:  # pragma: no cover
    from numpy.core import multiarray as _multiarray
    from numpy.core import numeric as _numeric

ISIC_SIZE = 248
MASK_THRESHOLD = 127  # mask pixels at or above this value after area resizing are lesion (the authors' >= 127)


class DataCommandError(click.ClickException):
    """One line, exit code 1, no traceback."""


# ----------------------------------------------------------------------------- prepare: pure helpers

def write_png(array: np.ndarray, path: Path) -> None:
    """Write atomically: a temporary name, then rename (an interrupted run leaves no half-written file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    Image.fromarray(array).save(tmp, format="PNG")
    os.replace(tmp, path)


def cityscapes_jobs(src: Path, dst: Path) -> list[tuple[Path, Path, Path, Path]]:
    """(image in, label in, image out, label out) for every train and val sample."""
    jobs = []
    for split in ("train", "val"):
        ids, images, labels = cityscapes.split_files(src, split)
        for image, label in zip(images, labels, strict=True):
            jobs.append((image, label, dst / image.relative_to(src), dst / label.relative_to(src)))
    return jobs


def read_source_label(module, image_in: Path, label_in: Path) -> np.ndarray:
    """The source label as its file holds it, after the dataset's check (one-line error for values outside
    the dataset's or a size ≠ its image's) before anything is made from it: a prepared copy must not hide a
    bad download. The file is decoded once."""
    raw = read_label_png(label_in)
    FileDataset([label_in.stem], [image_in], [label_in], len(module.CLASS_NAMES), module.LABEL_MAP,
                fix=module.LABEL_FIX).load_label(0, raw)
    return raw


def prepare_cityscapes_sample(job, truncate_mean: bool = False) -> None:
    image_in, label_in, image_out, label_out = job
    label = read_source_label(cityscapes, image_in, label_in)
    write_png(cityscapes.half_resolution_label(label.astype(np.uint8)), label_out)
    image = cityscapes.half_resolution_image(read_image(image_in), truncate=truncate_mean)
    write_png(image, image_out)  # the image last: it marks the sample done


def isic_jobs(src: Path, dst: Path) -> list[tuple[Path, Path, Path, Path]]:
    jobs = []
    for split, (image_dir, mask_dir) in isic.SPLITS.items():
        data = isic.split_dataset(src, split)
        if data is None:
            continue
        for image, mask, sample in zip(data.images, data.labels, data.ids, strict=True):
            jobs.append((image, mask, dst / image_dir / f"{sample}.png", dst / mask_dir / mask.name))
    return jobs


def resize_isic(image: np.ndarray, mask: np.ndarray, size: int = ISIC_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Area-resize to size×size; the mask (0/255) is resized the same way and thresholded at 127 → 0/255."""
    image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
    mask = cv2.resize(mask.astype(np.uint8), (size, size), interpolation=cv2.INTER_AREA)
    return image, np.where(mask >= MASK_THRESHOLD, 255, 0).astype(np.uint8)


def prepare_isic_sample(job) -> None:
    image_in, mask_in, image_out, mask_out = job
    mask = read_source_label(isic, image_in, mask_in)
    image, mask = resize_isic(read_image(image_in), mask)
    write_png(mask, mask_out)
    write_png(image, image_out)


PREPARERS = {
    "cityscapes": (cityscapes, cityscapes_jobs, prepare_cityscapes_sample, "_half",
                   {"resolution": "half (2×2 blocks)", "images": "2×2 box average, rounded to nearest",
                    "labels": "2×2 majority vote of labelIds, ties to the lower labelId"}),
    "isic2017": (isic, isic_jobs, prepare_isic_sample, "_248",
                 {"size": [ISIC_SIZE, ISIC_SIZE], "images": "cv2.INTER_AREA",
                  "masks": f"cv2.INTER_AREA, then >= {MASK_THRESHOLD} → 255 else 0"}),
}


def images_made(mark: Path, dataset: str) -> str:
    """How the images of the copy that ``mark`` (prepared.json or the unfinished mark) belongs to were made; a
    mark that does not say (written before it recorded this, or unreadable) means the default."""
    default = PREPARERS[dataset][4]["images"]
    try:
        made = json.loads(mark.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return default
    return made.get("images", default) if isinstance(made, dict) else default


# ----------------------------------------------------------------------------- splits: restricted unpickling

class NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays (and plain containers); any other global is refused, so no code can run."""

    SAFE = {("numpy.core.multiarray", "_reconstruct"): _multiarray._reconstruct,
            ("numpy._core.multiarray", "_reconstruct"): _multiarray._reconstruct,
            ("numpy.core.multiarray", "scalar"): _multiarray.scalar,
            ("numpy._core.multiarray", "scalar"): _multiarray.scalar,
            ("numpy", "ndarray"): np.ndarray,
            ("numpy", "dtype"): np.dtype,
            ("numpy.core.numeric", "_frombuffer"): _numeric._frombuffer,  # protocol 5: an array from its bytes
            ("numpy._core.numeric", "_frombuffer"): _numeric._frombuffer,
            ("_codecs", "encode"): codecs.encode}  # protocol-2 pickles store bytes through it

    def find_class(self, module: str, name: str):
        if (module, name) not in self.SAFE:
            raise pickle.UnpicklingError(f"refused to load {module}.{name}: only numpy arrays are accepted")
        return self.SAFE[(module, name)]


def load_numpy_pickle(path: Path):
    try:
        return NumpyOnlyUnpickler(io.BytesIO(path.read_bytes()), encoding="latin1").load()
    except FileNotFoundError:
        raise DataCommandError(f"{path} not found; pass the authors' split_0.pkl") from None
    except OSError as err:
        raise DataCommandError(f"cannot read {path} ({err.strerror}); pass the authors' split_0.pkl") from None
    except Exception as err:  # noqa: BLE001 (a damaged pickle fails in many ways; only numpy arrays are ever built)
        raise DataCommandError(f"cannot read {path}: {' '.join(str(err).split()) or type(err).__name__}; pass the "
                               f"authors' split_0.pkl") from None


def order_from_permutation(perm, names: list[str], source: str) -> list[str]:
    """``names`` in the order of ``perm`` (a permutation of range(len(names)): 1-D, integer, each index once)."""
    if isinstance(perm, (list, tuple)) and all(type(i) is int for i in perm):  # the authors only index with it
        perm = np.asarray(perm, dtype=np.int64)
    if not isinstance(perm, np.ndarray):
        raise DataCommandError(f"{source} holds a {type(perm).__name__}; expected a numpy integer array "
                               f"(a permutation of the {len(names)} training names)")
    if perm.ndim != 1 or not np.issubdtype(perm.dtype, np.integer):
        raise DataCommandError(f"{source} holds an array of shape {perm.shape} and dtype {perm.dtype}; expected a "
                               f"1-D integer permutation")
    if len(perm) and (perm.min() < 0 or perm.max() >= len(names)):
        raise DataCommandError(f"{source} indexes up to {int(perm.max())} but the training list has {len(names)} "
                               f"names; pass the list it was made for (train_aug.txt)")
    if len(np.unique(perm)) != len(perm):
        raise DataCommandError(f"{source} repeats indices; expected a permutation")
    if len(perm) != len(names):
        raise DataCommandError(f"{source} holds {len(perm)} indices but the training list has {len(names)} names; "
                               f"pass the list it is a permutation of (train_aug.txt)")
    return [names[i] for i in perm]


# ----------------------------------------------------------------------------- check

def check_dataset(bundle: datapipe.DataBundle, on_item=None) -> tuple[int, list[str]]:
    """Load every image and label of ``bundle``; (number of images read, one message per bad file)."""
    parts = [(bundle.train, True), (bundle.val, True), (bundle.test, True), (bundle.unlabelled, False)]
    problems, n = [], 0
    for dataset, with_label in parts:
        if dataset is None:
            continue
        for i in range(len(dataset)):
            n += 1
            try:
                dataset.load_image(i)
                if with_label:
                    dataset.load_label(i)
            except datapipe.DataError as err:
                problems.append(str(err))
            if on_item is not None:
                on_item()
    return n, problems


# ----------------------------------------------------------------------------- command line

@click.group(cls=cli_errors.Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
def main():
    """Prepare, check and split the datasets on disk."""
    warnings.showwarning = lambda message, *_, **__: click.echo(f"warning: {message}", err=True)


@main.command()
@click.argument("dataset", type=click.Choice(sorted(PREPARERS)))
@click.option("--data-dir", type=click.Path(), help="the downloaded dataset [$SEMISUP_<NAME>_DIR, data/<name>]")
@click.option("--out-dir", type=click.Path(file_okay=False), help="the prepared copy [<data-dir>_half / _248]")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True, help="processes")
@click.option("--truncate-mean/--no-truncate-mean", default=False,
              help="cityscapes: 2×2 means rounded down, as the authors' copy (half a grey level darker on average) "
                   "[off: rounded to nearest]")
def prepare(dataset, data_dir, out_dir, workers, truncate_mean):
    """Make the copy the paper trained on (Cityscapes at half resolution, ISIC 2017 at 248×248)."""
    module, make_jobs, work, suffix, recipe = PREPARERS[dataset]
    if truncate_mean:
        if dataset != "cityscapes":
            raise DataCommandError(f"--truncate-mean is for cityscapes' 2×2 means; {dataset} has none, drop it")
        work = functools.partial(work, truncate_mean=True)
        recipe = {**recipe, "images": "2×2 box average, rounded down (the authors')"}
    try:
        src = find_root(data_dir, module.ENV_VAR, module.DEFAULT_ROOT, dataset, module.LAYOUT)
        dst = Path(out_dir) if out_dir else src.parent / (src.name + suffix)
        if dst.resolve() == src.resolve():
            raise DataCommandError(f"--out-dir {dst} is the source folder; choose another folder for the copy")
        if (dst / PREPARED_MARK).is_file():
            made = images_made(dst / PREPARED_MARK, dataset)
            if made != recipe["images"]:
                flag = "--no-truncate-mean" if truncate_mean else "--truncate-mean"
                raise DataCommandError(f"{dst} is a finished copy whose images were made {made!r}, not "
                                       f"{recipe['images']!r}; choose another --out-dir for this one, or pass "
                                       f"{flag} to use it as it is")
            click.echo(f"{dst} is already prepared ({PREPARED_MARK} exists)")
            return
        if (src / PREPARED_MARK).is_file():
            raise DataCommandError(f"{src} is itself a prepared copy ({PREPARED_MARK} exists); train on it as it "
                                   f"is, or pass the original download as --data-dir")
        unfinished = {"dataset": dataset, "source": str(src), "images": recipe["images"]}
        if (dst / UNFINISHED_MARK).is_file():  # resuming: the samples made so far must match the rest
            made = images_made(dst / UNFINISHED_MARK, dataset)
            if made != recipe["images"]:
                flag = "--no-truncate-mean" if truncate_mean else "--truncate-mean"
                raise DataCommandError(f"{dst} is an unfinished copy whose images were made {made!r}; "
                                       f"resume it with {flag}, or choose another --out-dir")
        jobs = make_jobs(src, dst)
        dst.mkdir(parents=True, exist_ok=True)
        (dst / UNFINISHED_MARK).write_text(json.dumps(unfinished) + "\n")
        todo = [job for job in jobs if not (job[2].is_file() and job[3].is_file())]
        click.echo(f"{dataset}: {len(jobs)} samples, {len(jobs) - len(todo)} already done → {dst}")
        with click.progressbar(length=len(todo), label="preparing", show_pos=True) as bar:
            if workers == 1:
                for job in todo:
                    work(job)
                    bar.update(1)
            else:
                with Pool(workers) as pool:
                    for _ in pool.imap_unordered(work, todo, chunksize=4):
                        bar.update(1)
        (dst / PREPARED_MARK).write_text(json.dumps({"dataset": dataset, "source": str(src), "samples": len(jobs),
                                                     **recipe}, indent=2) + "\n")
        (dst / UNFINISHED_MARK).unlink()
    except datapipe.DataError as err:
        raise DataCommandError(str(err)) from None
    env_var = module.ENV_VAR
    click.echo(f"done: train with --dataset={dataset} --data-dir {dst} (or {env_var}={dst})")


@main.command()
@click.option("--dataset", type=click.Choice(sorted(datapipe.DATASETS)), required=True)
@click.option("--data-dir", type=click.Path(), help="dataset root [the dataset's environment variable / default]")
@click.option("--num-classes", type=click.IntRange(min=2), help="folder: number of classes")
@click.option("--ignore-index", type=click.IntRange(0, 255), default=255, show_default=True,
              help="folder: label value to ignore")
def check(dataset, data_dir, num_classes, ignore_index):
    """Read every image and label of a dataset and report each bad file on one line."""
    try:
        bundle = datapipe.build_dataset(dataset, data_dir=data_dir, num_classes=num_classes,
                                        ignore_index=ignore_index)
    except datapipe.DataError as err:
        raise DataCommandError(str(err)) from None
    total = sum(len(d) for d in (bundle.train, bundle.val, bundle.test, bundle.unlabelled) if d is not None)
    with click.progressbar(length=total, label=f"checking {dataset}", show_pos=True, file=None) as bar:
        n, problems = check_dataset(bundle, on_item=lambda: bar.update(1))
    for problem in problems:
        click.echo(problem)
    if problems:
        raise DataCommandError(f"{dataset}: {len(problems)} bad files among {n} samples (listed above)")
    click.echo(f"{dataset}: all {n} samples read correctly")


@main.command()
@click.argument("pickle_path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--train-list", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="the list the permutation indexes (train_aug.txt, 10,582 names)")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="text order file")
@click.option("--overwrite/--no-overwrite", default=False, show_default=True, help="replace an existing --out file")
def splits(pickle_path, train_list, out, overwrite):
    """Convert the authors' split_0.pkl (a numpy permutation of train_aug.txt) to a text order file."""
    if not train_list.is_file():
        raise DataCommandError(f"training list {train_list} not found; pass train_aug.txt")
    for option, given in (("--train-list", train_list), ("the pickle", pickle_path)):
        if out.resolve() == given.resolve():
            raise DataCommandError(f"--out {out} is {option} itself; choose another file for the order")
    try:
        names = [line.split()[0] for line in train_list.read_text(encoding="utf-8-sig").splitlines() if line.strip()]
    except UnicodeDecodeError:
        raise DataCommandError(f"training list {train_list} is not a text file; pass train_aug.txt "
                               f"(one name per line)") from None
    except OSError as err:
        raise DataCommandError(f"cannot read training list {train_list} ({err.strerror}); pass train_aug.txt") from None
    names = [Path(n).stem for n in names]
    text = "\n".join(order_from_permutation(load_numpy_pickle(pickle_path), names, str(pickle_path))) + "\n"
    if out.is_file() and not overwrite and out.read_bytes() != text.encode():  # the same order again is harmless
        raise DataCommandError(f"--out {out} exists with other contents; pass --overwrite to replace it")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
    except OSError as err:
        raise DataCommandError(f"cannot write --out {out} ({err.strerror}); choose a folder you can write to") from None
    click.echo(f"wrote {len(names)} names to {out}; the first N lines are the labelled images (--split-file)")


if __name__ == "__main__":
    main()
