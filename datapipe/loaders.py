"""Seeded, endless training streams and full-image evaluation loaders.

Reproducibility does not depend on ``num_workers``: a stream yields ``(index, draw)`` pairs, the
order of epoch e is a permutation drawn from ``(seed, stream, e)``, and the augmentation of draw k
uses its own generator ``np.random.default_rng([seed, stream, k])``. Restarting a stream at draw k
(``start``) therefore continues it exactly, which is what an exact resume needs.

Several processes (``rank`` of ``world``, each with batches of ``batch_size``) split one stream: batch t
of the whole stream is draws t·B … t·B + B − 1 with B = world · batch_size, and process r takes the r-th
``batch_size`` of them, so the processes' batches, in rank order, are one process's batches of B.

Batches: labelled ``image`` (N, 3, H, W) float normalised with the network's mean/std
and ``label`` (N, H, W) int64; unlabelled ``image`` and ``valid`` (N, 1, H, W) float 0/1; each
also carries ``matrix`` (N, 2, 3), the source → view affine matrix of its augmentation.

Paired views (``stream_loader(..., paired=True)``, for the standard-augmentation regularizer): the
teacher view ``image``/``valid``/``matrix``, the student view ``image_s``/``valid_s``/``matrix_s``, and
``theta`` (N, 2, 3), the ``F.affine_grid`` matrix (``align_corners=False``) that brings maps of the
teacher view into the student view's frame.

Strong colour augmentation (``colour``, a ``ColourJitter``; unlabelled streams only): the student's view
``image_s`` is colour-augmented and the teacher's ``image`` is not. Without paired views ``image_s`` is a
colour-augmented copy of ``image`` (same geometry, no ``valid_s``); with them, the student view is.
Padding pixels keep their values, the fill colour (with a reflected border, the mirrored pixels are
augmented like the image).

``ignored_signals``: signals the loader's worker processes ignore, for a main process that handles them
itself (a batch system sends its stop signal to every process of a job; a worker killed by it would fail
the main process wherever it is). A worker starts with them blocked (the main thread blocks them while it
starts workers) and ignores them from its set-up on. Since such workers
outlive SIGTERM, which is how ``multiprocessing`` ends daemonic workers when the main process exits (after
an error, say), they are killed instead, at exit (these workers only).
"""
from __future__ import annotations

import atexit
import functools
import signal
import threading
import weakref

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Sampler

from .base import DataError, SegDataset
from .colour import ColourJitter
from .transforms import AugParams, rotation, sample_matrix, scaling, warp


class StreamSampler(Sampler):
    """Endless ``(index, draw)`` pairs: one seeded permutation of ``range(n)`` per epoch.

    ``start``: draws already taken by this process. ``rank``, ``world``, ``batch_size``: this process's
    share of a stream split between ``world`` processes (see the module doc); one process takes every draw.
    """

    def __init__(self, n: int, seed: int, stream: int, start: int = 0, rank: int = 0, world: int = 1,
                 batch_size: int = 1):
        if n < 1:
            raise ValueError("cannot stream an empty dataset")
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} outside [0, {world})")
        self.n, self.seed, self.stream, self.start = n, seed, stream, start
        self.rank, self.world, self.batch_size = rank, world, batch_size

    def __iter__(self):
        taken = self.start
        epoch, order = None, None
        while True:
            batch, row = divmod(taken, self.batch_size)
            draw = (batch * self.world + self.rank) * self.batch_size + row
            if draw // self.n != epoch:
                epoch = draw // self.n
                order = np.random.default_rng([self.seed, self.stream, epoch]).permutation(self.n)
            yield int(order[draw % self.n]), draw
            taken += 1


def fill_value(mean) -> tuple[float, float, float]:
    """The padding colour: the network's mean colour rounded to 8 bits (images are uint8 until collated), so
    padding becomes about 0 after normalisation (within 0.5/255 of the mean: |x| < 0.01 for ImageNet's)."""
    return tuple(float(round(255 * m)) for m in mean)


def colour_view(colour: ColourJitter, view: np.ndarray, valid: np.ndarray, reflect: bool,
                rng: np.random.Generator) -> np.ndarray:
    """The student's colour-augmented copy of ``view``; padding pixels keep their values unless reflected."""
    augmented = colour(view, rng)
    if not reflect:
        augmented[valid == 0] = view[valid == 0]
    return augmented


class AugmentedViews(Dataset):
    """Draw ``(index, draw)`` → one augmented view of sample ``index`` as uint8/int tensors.

    ``colour``: also ``image_s``, a colour-augmented copy for the student (module doc).
    """

    def __init__(self, dataset: SegDataset, params: AugParams, seed: int, stream: int, with_label: bool,
                 fill=(0, 0, 0), colour: ColourJitter | None = None):
        self.dataset, self.params, self.seed, self.stream = dataset, params, seed, stream
        self.with_label, self.fill, self.colour = with_label, fill, colour

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key):
        index, draw = key
        rng = np.random.default_rng([self.seed, self.stream, draw])
        image = self.dataset.load_image(index)
        label = self.dataset.load_label(index) if self.with_label else None
        m, out_hw, _ = sample_matrix(self.params, image.shape[:2], rng)
        nearest = False
        if self.params.authors_interp:  # theirs: nearest for labelled images, a coin for unlabelled ones
            nearest = self.with_label or bool(rng.random() < 0.5)
        image, label, valid = warp(image, m, out_hw, label, fill=self.fill, ignore_index=self.dataset.ignore_index,
                                   reflect=self.params.reflect_border, nearest=nearest)
        sample = {"image": torch.from_numpy(image).permute(2, 0, 1), "valid": torch.from_numpy(valid)[None],
                  "matrix": torch.from_numpy(m[:2].astype(np.float32))}
        if self.colour is not None:  # drawn after the geometry: the views' geometry does not depend on it
            student = colour_view(self.colour, image, valid, self.params.reflect_border, rng)
            sample["image_s"] = torch.from_numpy(student).permute(2, 0, 1)
        if label is not None:
            sample["label"] = torch.from_numpy(label.astype(np.int64))
        return sample


def pixel_to_grid(height: int, width: int) -> np.ndarray:
    """3×3: pixel (x, y) → ``affine_grid`` normalised coordinates, align_corners=False: u = (2x + 1)/W − 1."""
    return np.array([[2.0 / width, 0.0, 1.0 / width - 1.0], [0.0, 2.0 / height, 1.0 / height - 1.0],
                     [0.0, 0.0, 1.0]])


def grid_theta(m_src: np.ndarray, src_hw: tuple[int, int], m_dst: np.ndarray, dst_hw: tuple[int, int]) -> np.ndarray:
    """The 2×3 ``F.affine_grid`` θ that resamples a map of view ``src`` into the frame of view ``dst``.

    m_src, m_dst: 3×3 source-image → view pixel matrices of two views of one image (OpenCV convention,
    pixel centres at integers); src_hw, dst_hw: the views' (H, W). With M = m_dst·m_src⁻¹ (src view →
    dst view pixels), θ = N_src·M⁻¹·N_dst⁻¹: ``affine_grid`` maps OUTPUT (dst) normalised
    coordinates to INPUT (src) ones. Use ``align_corners=False`` in ``affine_grid`` and ``grid_sample``;
    θ does not depend on the map's resolution, so it also warps predictions smaller than the view.
    """
    src_to_dst = m_dst @ np.linalg.inv(m_src)
    theta = pixel_to_grid(*src_hw) @ np.linalg.inv(src_to_dst) @ np.linalg.inv(pixel_to_grid(*dst_hw))
    return theta[:2]


def scaled_frame(scale: float, rot: float, src_hw: tuple[int, int]) -> np.ndarray:
    """3×3 source → scaled-and-rotated frame: the part of ``sample_matrix`` before the crop."""
    src_h, src_w = src_hw
    m = scaling(scale)
    return rotation(rot, (src_w * scale - 1) / 2, (src_h * scale - 1) / 2) @ m if rot else m


class PairedViews(Dataset):
    """Draw ``(index, draw)`` → a teacher view and a student view of unlabelled sample ``index``.

    Each view is one OpenCV warp with the dataset's augmentation (``params``). The student's crop is
    centred on the teacher's crop centre moved by up to ``offset_range`` px along each axis; scale and
    rotation are shared between the views unless ``free_scale_rot`` (then drawn for each view); with
    ``teacher_unscaled`` the teacher's view keeps scale 1 and no rotation and the student's draws its own
    (the authors' paired transform on Pascal: the teacher sees the unaugmented image, supplement D.1.1);
    flips are drawn independently. ``theta`` relates the views (``grid_theta``, teacher → student).
    ``colour``: the student view is colour-augmented (module doc).
    """

    def __init__(self, dataset: SegDataset, params: AugParams, seed: int, stream: int, offset_range: int = 16,
                 free_scale_rot: bool = False, fill=(0, 0, 0), teacher_unscaled: bool = False,
                 colour: ColourJitter | None = None):
        if offset_range < 0:
            raise ValueError(f"offset range must be >= 0, got {offset_range}")
        self.dataset, self.params, self.seed, self.stream = dataset, params, seed, stream
        self.offset_range, self.free_scale_rot, self.fill = offset_range, free_scale_rot, fill
        self.teacher_unscaled, self.colour = teacher_unscaled, colour

    def __len__(self) -> int:
        return len(self.dataset)

    def draw_scale_rot(self, rng: np.random.Generator) -> tuple[float, float]:
        rot = float(rng.uniform(-self.params.rot_mag, self.params.rot_mag)) if self.params.rot_mag > 0 else 0.0
        return self.params.draw_scale(rng), rot

    def __getitem__(self, key):
        index, draw = key
        rng = np.random.default_rng([self.seed, self.stream, draw])
        image = self.dataset.load_image(index)
        src_hw = image.shape[:2]
        scale_t, rot_t = (1.0, 0.0) if self.teacher_unscaled else self.draw_scale_rot(rng)
        m_t, hw_t, _ = sample_matrix(self.params, src_hw, rng, scale=scale_t, rot=rot_t)
        own = self.free_scale_rot or self.teacher_unscaled
        scale_s, rot_s = self.draw_scale_rot(rng) if own else (scale_t, rot_t)
        # the source point at the teacher view's centre, in the student's scaled frame
        centre_src = np.linalg.inv(m_t) @ np.array([(hw_t[1] - 1) / 2, (hw_t[0] - 1) / 2, 1.0])
        centre_s = scaled_frame(scale_s, rot_s, src_hw) @ centre_src
        m_s, hw_s, _ = sample_matrix(self.params, src_hw, rng, scale=scale_s, rot=rot_s,
                                     crop_offset_jitter=self.offset_range, centre=(centre_s[0], centre_s[1]))
        sample = {}
        for suffix, m, hw in (("", m_t, hw_t), ("_s", m_s, hw_s)):
            view, _, valid = warp(image, m, hw, fill=self.fill, reflect=self.params.reflect_border)
            if suffix and self.colour is not None:
                view = colour_view(self.colour, view, valid, self.params.reflect_border, rng)
            sample["image" + suffix] = torch.from_numpy(view).permute(2, 0, 1)
            sample["valid" + suffix] = torch.from_numpy(valid)[None]
            sample["matrix" + suffix] = torch.from_numpy(m[:2].astype(np.float32))
        sample["theta"] = torch.from_numpy(grid_theta(m_t, hw_t, m_s, hw_s).astype(np.float32))
        return sample


class Normalise:
    """Collate a list of samples and normalise images: uint8 (3, H, W) → (x/255 − mean) / std."""

    def __init__(self, mean, std):
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)

    def __call__(self, samples: list[dict]) -> dict:
        sizes = sorted({tuple(s["image"].shape[-2:]) for s in samples})
        if len(sizes) > 1:  # full images of different sizes (augmented crops all have the crop's size)
            raise DataError(f"images of different sizes in one evaluation batch ({sizes[0][0]}×{sizes[0][1]} and "
                            f"{sizes[-1][0]}×{sizes[-1][1]}); use --eval-batch-size 1, or --eval-pad-batch")
        batch = {key: torch.stack([s[key] for s in samples]) for key in samples[0]}
        for key in ("image", "image_s"):  # image_s: the student view of paired views
            if key in batch:
                batch[key] = (batch[key].float() / 255.0 - self.mean) / self.std
        for key in ("valid", "valid_s"):
            if key in batch:
                batch[key] = batch[key].float()
        return batch


def own_generator() -> torch.Generator:
    """A generator for a DataLoader's one draw per iterator (its workers' base seed), so that creating a
    loader leaves the global torch RNG alone: that RNG drives dropout, and a loader made for an
    evaluation would otherwise shift the training's dropout masks (and a resumed run's)."""
    return torch.Generator().manual_seed(0)


def ignore_signals(signums: tuple[int, ...], worker_id: int) -> None:
    """A DataLoader's ``worker_init_fn``: the worker ignores ``signums``, which were blocked while it started
    (module doc)."""
    for signum in signums:
        signal.signal(signum, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, signums)


SIGNAL_IGNORING_WORKERS = weakref.WeakSet()  # the worker processes of SignalSafeLoaders with ignored signals


def kill_workers_at_exit() -> None:
    """atexit: kill the loader workers that ignore signals, which ``multiprocessing`` would end with SIGTERM
    and then wait for, forever; torch's SIGCHLD watch goes first (it would report them)."""
    alive = [process for process in SIGNAL_IGNORING_WORKERS if process.is_alive()]
    if alive and hasattr(signal, "SIGCHLD"):
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    for process in alive:
        process.kill()


class SignalSafeLoader(DataLoader):
    """A DataLoader whose workers ignore ``ignored_signals`` (module doc)."""

    def __init__(self, *args, ignored_signals: tuple[int, ...] = (), **kwargs):
        self.ignored_signals = tuple(ignored_signals)
        if self.ignored_signals and kwargs.get("worker_init_fn") is not None:
            raise ValueError("ignored_signals sets the workers' worker_init_fn; give one or the other")
        if self.ignored_signals:
            kwargs["worker_init_fn"] = functools.partial(ignore_signals, self.ignored_signals)
            if kwargs.get("num_workers", 0) > 0:
                register_kill_at_exit()
        super().__init__(*args, **kwargs)

    def __iter__(self):
        block = bool(self.ignored_signals) and self.num_workers > 0 and hasattr(signal, "pthread_sigmask") \
            and threading.current_thread() is threading.main_thread()
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, self.ignored_signals) if block else None
        try:
            iterator = super().__iter__()  # the workers start here
        finally:
            if block:
                signal.pthread_sigmask(signal.SIG_SETMASK, blocked)  # one that came meanwhile is delivered here
        if self.ignored_signals:
            SIGNAL_IGNORING_WORKERS.update(getattr(iterator, "_workers", ()))  # torch's worker processes
        return iterator


@functools.cache
def register_kill_at_exit() -> None:
    atexit.register(kill_workers_at_exit)  # after multiprocessing's own atexit, so run before it


def stream_loader(dataset: SegDataset, params: AugParams, batch_size: int, seed: int, stream: int,
                  with_label: bool, mean, std, num_workers: int = 0, start: int = 0, paired: bool = False,
                  offset_range: int = 16, free_scale_rot: bool = False, rank: int = 0, world: int = 1,
                  teacher_unscaled: bool = False, colour: ColourJitter | None = None,
                  ignored_signals: tuple[int, ...] = ()):
    """An endless iterator of augmented batches; ``start`` = number of samples this process already drew.

    ``paired``: unlabelled teacher/student views of each image (see ``PairedViews``).
    ``colour``: the student's view colour-augmented (module doc; unlabelled streams).
    ``rank``, ``world``: this process's share of a stream split between processes (module doc).
    ``ignored_signals``: signals the workers ignore (module doc).
    """
    if paired:
        views = PairedViews(dataset, params, seed, stream, offset_range, free_scale_rot, fill_value(mean),
                            teacher_unscaled, colour)
    else:
        views = AugmentedViews(dataset, params, seed, stream, with_label, fill_value(mean), colour)
    sampler = StreamSampler(len(dataset), seed, stream, start, rank, world, batch_size)
    loader = SignalSafeLoader(views, batch_size=batch_size, sampler=sampler,
                              num_workers=num_workers, collate_fn=Normalise(mean, std),
                              persistent_workers=num_workers > 0, drop_last=True, generator=own_generator(),
                              ignored_signals=ignored_signals)
    return iter(loader)


class FullImages(Dataset):
    """Whole evaluation images with their labels (no augmentation)."""

    def __init__(self, dataset: SegDataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        image = self.dataset.load_image(index)
        return {"image": torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1),
                "label": torch.from_numpy(self.dataset.load_label(index).astype(np.int64)),
                "index": torch.tensor(index)}


class PadToLargest:
    """Collate full images of different sizes as the authors' evaluation did: each image normalised, then
    padded centrally (the extra row or column at the bottom or right) to the batch's largest height and
    width with 0 (the mean colour) and its label with ``ignore_index``; ``crop`` (N, 4) holds each image's
    top, left, height and width inside the padded batch."""

    def __init__(self, mean, std, ignore_index: int):
        self.normalise, self.ignore_index = Normalise(mean, std), ignore_index

    def __call__(self, samples: list[dict]) -> dict:
        height = max(s["image"].shape[-2] for s in samples)
        width = max(s["image"].shape[-1] for s in samples)
        images, labels, crops = [], [], []
        for sample in samples:
            h, w = sample["image"].shape[-2:]
            top, left = (height - h) // 2, (width - w) // 2
            pad = (left, width - w - left, top, height - h - top)
            images.append(F.pad(self.normalise([{"image": sample["image"]}])["image"][0], pad, value=0.0))
            labels.append(F.pad(sample["label"], pad, value=self.ignore_index))
            crops.append(torch.tensor([top, left, h, w]))
        return {"image": torch.stack(images), "label": torch.stack(labels),
                "index": torch.stack([s["index"] for s in samples]), "crop": torch.stack(crops)}


def eval_loader(dataset: SegDataset, batch_size: int, mean, std, num_workers: int = 0,
                pad_batch: bool = False, ignored_signals: tuple[int, ...] = ()) -> DataLoader:
    """Full images in order; use ``batch_size=1`` when image sizes differ, or ``pad_batch`` (``PadToLargest``).
    ``ignored_signals``: signals the workers ignore (module doc)."""
    collate = PadToLargest(mean, std, dataset.ignore_index) if pad_batch else Normalise(mean, std)
    return SignalSafeLoader(FullImages(dataset), batch_size=batch_size, shuffle=False, num_workers=num_workers,
                            collate_fn=collate, generator=own_generator(), ignored_signals=ignored_signals)
