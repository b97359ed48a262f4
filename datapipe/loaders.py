"""Seeded, endless training streams and full-image evaluation loaders.

Reproducibility does not depend on ``num_workers``: a stream yields ``(index, draw)`` pairs, the
order of epoch e is a permutation drawn from ``(seed, stream, e)``, and the augmentation of draw k
uses its own generator ``np.random.default_rng([seed, stream, k])``. Restarting a stream at draw k
(``start``) therefore continues it exactly, which is what an exact resume needs.

Batches (SPEC §10): labelled ``image`` (N, 3, H, W) float normalised with the network's mean/std
and ``label`` (N, H, W) int64; unlabelled ``image`` and ``valid`` (N, 1, H, W) float 0/1; each
also carries ``matrix`` (N, 2, 3), the source → view affine matrix of its augmentation.
"""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from .base import SegDataset
from .transforms import AugParams, sample_matrix, warp


class StreamSampler(Sampler):
    """Endless ``(index, draw)`` pairs: one seeded permutation of ``range(n)`` per epoch."""

    def __init__(self, n: int, seed: int, stream: int, start: int = 0):
        if n < 1:
            raise ValueError("cannot stream an empty dataset")
        self.n, self.seed, self.stream, self.start = n, seed, stream, start

    def __iter__(self):
        draw = self.start
        epoch, order = None, None
        while True:
            if draw // self.n != epoch:
                epoch = draw // self.n
                order = np.random.default_rng([self.seed, self.stream, epoch]).permutation(self.n)
            yield int(order[draw % self.n]), draw
            draw += 1


def fill_value(mean) -> tuple[float, float, float]:
    """The padding colour that becomes 0 after normalisation (the dataset mean)."""
    return tuple(float(round(255 * m)) for m in mean)


class AugmentedViews(Dataset):
    """Draw ``(index, draw)`` → one augmented view of sample ``index`` as uint8/int tensors."""

    def __init__(self, dataset: SegDataset, params: AugParams, seed: int, stream: int, with_label: bool,
                 fill=(0, 0, 0)):
        self.dataset, self.params, self.seed, self.stream = dataset, params, seed, stream
        self.with_label, self.fill = with_label, fill

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key):
        index, draw = key
        rng = np.random.default_rng([self.seed, self.stream, draw])
        image = self.dataset.load_image(index)
        label = self.dataset.load_label(index) if self.with_label else None
        m, out_hw, _ = sample_matrix(self.params, image.shape[:2], rng)
        image, label, valid = warp(image, m, out_hw, label, fill=self.fill, ignore_index=self.dataset.ignore_index)
        sample = {"image": torch.from_numpy(image).permute(2, 0, 1), "valid": torch.from_numpy(valid)[None],
                  "matrix": torch.from_numpy(m[:2].astype(np.float32))}
        if label is not None:
            sample["label"] = torch.from_numpy(label.astype(np.int64))
        return sample


class Normalise:
    """Collate a list of samples and normalise images: uint8 (3, H, W) → (x/255 − mean) / std."""

    def __init__(self, mean, std):
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)

    def __call__(self, samples: list[dict]) -> dict:
        batch = {key: torch.stack([s[key] for s in samples]) for key in samples[0]}
        batch["image"] = (batch["image"].float() / 255.0 - self.mean) / self.std
        if "valid" in batch:
            batch["valid"] = batch["valid"].float()
        return batch


def stream_loader(dataset: SegDataset, params: AugParams, batch_size: int, seed: int, stream: int,
                  with_label: bool, mean, std, num_workers: int = 0, start: int = 0):
    """An endless iterator of augmented batches; ``start`` = number of samples already drawn."""
    views = AugmentedViews(dataset, params, seed, stream, with_label, fill_value(mean))
    loader = DataLoader(views, batch_size=batch_size, sampler=StreamSampler(len(dataset), seed, stream, start),
                        num_workers=num_workers, collate_fn=Normalise(mean, std),
                        persistent_workers=num_workers > 0, drop_last=True)
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


def eval_loader(dataset: SegDataset, batch_size: int, mean, std, num_workers: int = 0) -> DataLoader:
    """Full images in order; use ``batch_size=1`` when image sizes differ."""
    return DataLoader(FullImages(dataset), batch_size=batch_size, shuffle=False, num_workers=num_workers,
                      collate_fn=Normalise(mean, std))
