import numpy as np
import pytest
import torch

import datapipe
from datapipe.synthetic import CLASS_NAMES


def test_synthetic_is_deterministic_and_well_formed():
    bundle = datapipe.build_dataset("synthetic", n_train=20, n_val=5)
    again = datapipe.build_dataset("synthetic", n_train=20, n_val=5)
    other_seed = datapipe.build_dataset("synthetic", n_train=20, n_val=5, synthetic_seed=1)
    assert bundle.num_classes == len(CLASS_NAMES) >= 5
    image, label = bundle.train.load_image(3), bundle.train.load_label(3)
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8 and label.shape == (64, 64)
    np.testing.assert_array_equal(image, again.train.load_image(3))
    assert not np.array_equal(image, other_seed.train.load_image(3))
    assert not np.array_equal(image, bundle.val.load_image(3))
    labels = np.stack([bundle.train.load_label(i) for i in range(20)])
    assert labels.max() < bundle.num_classes
    assert len(np.unique(labels)) == bundle.num_classes  # every class occurs in 20 images


def test_synthetic_colour_does_not_tell_the_class():
    """Mean colour of object pixels is about the same for every class (the class is the shape)."""
    bundle = datapipe.build_dataset("synthetic", n_train=200)
    sums = np.zeros((bundle.num_classes, 3))
    counts = np.zeros(bundle.num_classes)
    for i in range(200):
        image, label = bundle.train.load_image(i), bundle.train.load_label(i)
        for c in range(bundle.num_classes):
            sums[c] += image[label == c].sum(axis=0)
            counts[c] += (label == c).sum()
    means = sums / counts[:, None]
    assert np.abs(means - means.mean(axis=0)).max() < 20


def test_bad_label_is_reported_with_its_source():
    class Broken(datapipe.SegDataset):
        def __len__(self):
            return 1

        def read_label(self, index):
            return np.array([[0, 9]], np.uint8)

    with pytest.raises(datapipe.DataError, match=r"label values \[9\] outside \[0, 3\)"):
        Broken(3).load_label(0)


def test_random_split():
    split = datapipe.random_split(100, 10, split_seed=3, n_val=5)
    assert len(split.labelled) == 10 and len(set(split.labelled)) == 10
    assert len(split.held_out) == 5 and not set(split.held_out) & set(split.labelled)
    assert len(split.unlabelled) == 95 and not set(split.unlabelled) & set(split.held_out)
    np.testing.assert_array_equal(split.labelled, datapipe.random_split(100, 10, split_seed=3).labelled)
    assert not np.array_equal(split.labelled, datapipe.random_split(100, 10, split_seed=4).labelled)
    assert len(datapipe.random_split(100, 10, 0, n_unsup=30).unlabelled) == 30
    with pytest.raises(datapipe.DataError, match="--n-val 100 holds out every one of the 100 training images"):
        datapipe.random_split(100, None, 0, n_val=100)
    with pytest.raises(datapipe.DataError, match="more than the 100 training images"):
        datapipe.random_split(100, 101, 0)


def test_stream_sampler_epochs_and_restart():
    sampler = datapipe.StreamSampler(5, seed=0, stream=1)
    it = iter(sampler)
    draws = [next(it) for _ in range(12)]
    assert [d for _, d in draws] == list(range(12))
    assert sorted(i for i, _ in draws[:5]) == list(range(5)) and sorted(i for i, _ in draws[5:10]) == list(range(5))
    restarted = iter(datapipe.StreamSampler(5, seed=0, stream=1, start=7))
    assert [next(restarted) for _ in range(5)] == draws[7:12]


def test_stream_loader_is_reproducible_and_resumable():
    bundle = datapipe.build_dataset("synthetic", n_train=12)
    params = datapipe.AugParams(crop_size=(48, 48), scale_range=(0.5, 1.5), hflip=True)

    def batches(start, n, workers=0):
        it = datapipe.stream_loader(bundle.train, params, 4, 0, 1, False, (0.5,) * 3, (0.25,) * 3, workers, start)
        return [next(it) for _ in range(n)]

    full = batches(0, 3)
    assert full[0]["image"].shape == (4, 3, 48, 48) and full[0]["valid"].shape == (4, 1, 48, 48)
    assert "label" not in full[0]
    resumed = batches(8, 1)  # two batches of 4 already drawn
    torch.testing.assert_close(resumed[0]["image"], full[2]["image"])
    with_workers = batches(0, 3, workers=2)
    for a, b in zip(full, with_workers, strict=True):
        torch.testing.assert_close(a["image"], b["image"])
        torch.testing.assert_close(a["matrix"], b["matrix"])
