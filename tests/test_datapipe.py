import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import datapipe
from datapipe.loaders import AugmentedViews, PairedViews
from datapipe.synthetic import CLASS_NAMES

ROOT = Path(__file__).resolve().parents[1]


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


def test_authors_split_by_hand():
    """datapipe/datasets.py of the authors' release: RandomState(12345).permutation(10) = 0 7 3 9 6 4 1 8 5 2,
    RandomState(131).permutation(10) = 5 0 4 6 9 2 8 1 7 3, RandomState(12345).permutation(8) = 7 3 4 0 1 6 5 2."""
    split = datapipe.authors_split(10, 3, 12345)
    assert split.labelled.tolist() == [0, 7, 3]  # in the permutation's order
    assert split.unlabelled.tolist() == list(range(10)) and split.held_out.tolist() == []
    # --n-unsup: the images after the labelled ones in the permutation, never a labelled one
    assert datapipe.authors_split(10, 3, 12345, n_unsup=4).unlabelled.tolist() == [1, 4, 6, 9]
    # everything labelled: --n-unsup takes the first ones of the permutation
    assert datapipe.authors_split(10, None, 12345, n_unsup=4).unlabelled.tolist() == [0, 3, 7, 9]
    # --n-val: the last 2 of the val-seed permutation are held out; the split permutes the other 8 in that order
    split = datapipe.authors_split(10, 3, 12345, n_val=2)
    assert split.held_out.tolist() == [3, 7] and split.labelled.tolist() == [1, 6, 9]
    assert split.unlabelled.tolist() == [0, 1, 2, 4, 5, 6, 8, 9]
    assert datapipe.authors_split(10, 3, 12345, n_val=2, val_seed=5).held_out.tolist() != [3, 7]
    assert split.labelled.tolist() != datapipe.random_split(10, 3, 12345, n_val=2).labelled.tolist()
    with pytest.raises(datapipe.DataError, match="--n-sup 9 must be between 1 and the 8 training images"):
        datapipe.authors_split(10, 9, 0, n_val=2)
    with pytest.raises(datapipe.DataError, match="--n-unsup 8 must be between 1 and the 7 training images"):
        datapipe.authors_split(10, 3, 0, n_unsup=8)
    with pytest.raises(datapipe.DataError, match="--n-val 10 holds out every one"):
        datapipe.authors_split(10, None, 0, n_val=10)


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


WORKERS_IGNORING_SIGTERM = """import multiprocessing, os, signal, sys, time
import datapipe
bundle = datapipe.build_dataset("synthetic", n_train=12)
params = datapipe.AugParams(crop_size=(32, 32))
it = datapipe.stream_loader(bundle.train, params, 4, 0, 1, False, (0.5,) * 3, (0.25,) * 3, 1,
                            ignored_signals=(signal.SIGTERM,))
next(it)
workers = list(datapipe.loaders.SIGNAL_IGNORING_WORKERS)
assert len(workers) == 1
os.kill(workers[0].pid, signal.SIGTERM)  # as a batch system signals every process of a job
time.sleep(0.5)
next(it)  # the worker lives on
assert workers[0].is_alive()
print("worker alive", flush=True)
pool = multiprocessing.Pool(1)  # other daemonic processes are left to multiprocessing (a killed one would hang it)
raise RuntimeError("an error after the workers started")
"""


@pytest.mark.skipif(not hasattr(signal, "pthread_sigmask"), reason="POSIX signals")
def test_workers_ignoring_sigterm_do_not_outlive_an_error(tmp_path):
    """Loader workers with ``ignored_signals`` survive SIGTERM, and a process that fails after starting them
    still exits (multiprocessing ends daemonic workers at exit with SIGTERM and waits for them: it would
    wait forever), without a report of the killed worker."""
    script = tmp_path / "workers.py"
    script.write_text(WORKERS_IGNORING_SIGTERM)
    proc = subprocess.run([sys.executable, str(script)], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and proc.stdout == "worker alive\n", proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == "RuntimeError: an error after the workers started", proc.stderr


@pytest.mark.parametrize("params", [
    datapipe.AugParams(crop_size=(40, 48), scale_range=(0.7, 1.4), rot_mag=30, hflip=True, vflip=True),
    datapipe.AugParams(crop_size=(44, 44), scale_range=(0.5, 1.5), scale_step=0.1, rot_mag=10, hvflip=True),
])
def test_paired_views_share_scale_and_rotation_unless_free(params):
    """The linear part of a view's matrix is (transpose ·) flip · rotation · scale: with shared scale and
    rotation the two views' parts have the same singular values and differ by a signed permutation."""
    dataset = datapipe.build_dataset("synthetic", n_train=2).train
    scales = []
    for free in (False, True):
        views = PairedViews(dataset, params, seed=5, stream=1, offset_range=8, free_scale_rot=free)
        n_differ = 0
        for draw in range(12):
            sample = views[(draw % 2, draw)]
            lin_t, lin_s = (sample[key][:, :2].double().numpy() for key in ("matrix", "matrix_s"))
            sv_t, sv_s = np.linalg.svd(lin_t, compute_uv=False), np.linalg.svd(lin_s, compute_uv=False)
            relative = lin_s @ np.linalg.inv(lin_t)  # student ← teacher view: flips and a transpose at most
            same = (np.allclose(sv_s, sv_t, rtol=1e-5) and np.isclose(abs(np.linalg.det(lin_s)),
                                                                        abs(np.linalg.det(lin_t)), rtol=1e-5)
                    and np.allclose(relative, np.round(relative), atol=1e-5)
                    and set(np.round(np.abs(relative)).ravel()) == {0.0, 1.0})
            if not free:
                assert same, (draw, sv_t, sv_s, relative)
                np.testing.assert_allclose(sv_t[0], sv_t[1], rtol=1e-5)  # isotropic scale
                scales.append(sv_t[0])
            n_differ += not same
        if free:
            assert n_differ >= 6  # each view draws its own scale and rotation
    assert max(scales) / min(scales) > 1.2  # the shared scale itself varies between draws


def test_paired_views_with_the_teacher_unscaled():
    """--aug-teacher-unscaled: the teacher's view is the image at scale 1 without rotation (flips and a crop
    only), the student's draws its own scale and rotation."""
    params = datapipe.AugParams(crop_size=(40, 40), scale_range=(0.5, 1.5), rot_mag=20, hflip=True)
    views = PairedViews(datapipe.build_dataset("synthetic", n_train=2).train, params, seed=5, stream=1,
                        offset_range=8, teacher_unscaled=True)
    student_scales = []
    for draw in range(12):
        sample = views[(draw % 2, draw)]
        lin_t, lin_s = (sample[key][:, :2].double().numpy() for key in ("matrix", "matrix_s"))
        np.testing.assert_allclose(np.abs(lin_t), np.eye(2), atol=1e-6)  # identity up to a flip
        student_scales.append(math.sqrt(abs(np.linalg.det(lin_s))))
    assert max(student_scales) / min(student_scales) > 1.3


def test_held_out_images_come_from_outside_the_labelled_set():
    for seed in range(20):
        # 8 of 10 labelled, 2 held out: the held-out images can only be the 2 that are not labelled
        split = datapipe.random_split(10, 8, seed, n_val=2)
        np.testing.assert_array_equal(split.held_out, np.setdiff1d(np.arange(10), split.labelled))
        np.testing.assert_array_equal(split.unlabelled, np.sort(split.labelled))  # every image but the held-out
        # a subset of the unlabelled pool: never a held-out image
        split = datapipe.random_split(20, 5, seed, n_unsup=12, n_val=4)
        assert len(split.held_out) == 4 and not set(split.held_out) & set(split.labelled)
        assert len(split.unlabelled) == 12 == len(set(split.unlabelled))
        assert not set(split.unlabelled) & set(split.held_out) and set(split.unlabelled) <= set(range(20))


class Sizes(datapipe.SegDataset):
    """Images of different sizes with random colours and labels."""

    def __init__(self, sizes, seed=0):
        super().__init__(3)
        rng = np.random.default_rng(seed)
        self.images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in sizes]
        self.labels = [rng.integers(0, 3, (h, w)).astype(np.uint8) for h, w in sizes]
        for label in self.labels:
            label[0, 0] = 255

    def __len__(self):
        return len(self.images)

    def load_image(self, index):
        return self.images[index]

    def read_label(self, index):
        return self.labels[index]


def test_pad_to_largest_pads_centrally_with_the_mean_and_ignored_labels():
    dataset = Sizes([(4, 5), (7, 3)])
    mean, std = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)
    batch = next(iter(datapipe.eval_loader(dataset, 2, mean, std, pad_batch=True)))
    assert batch["image"].shape == (2, 3, 7, 5) and batch["label"].shape == (2, 7, 5)
    np.testing.assert_array_equal(batch["crop"].numpy(), [[1, 0, 4, 5], [0, 1, 7, 3]])  # (7-4)//2, (5-3)//2
    singles = list(datapipe.eval_loader(dataset, 1, mean, std))
    for i, alone in enumerate(singles):
        top, left, h, w = batch["crop"][i].tolist()
        inside = (slice(top, top + h), slice(left, left + w))
        torch.testing.assert_close(batch["image"][i][:, inside[0], inside[1]], alone["image"][0])
        torch.testing.assert_close(batch["label"][i][inside], alone["label"][0])
        outside = torch.ones(7, 5, dtype=torch.bool)
        outside[inside] = False
        assert (batch["image"][i][:, outside] == 0).all() and (batch["label"][i][outside] == 255).all()


def test_padded_batches_score_a_pixelwise_network_as_single_images():
    """Padding only adds ignored pixels: a network that looks at one pixel at a time scores the same."""
    from evaluation import evaluate

    dataset = Sizes([(6, 9), (8, 5), (3, 4), (9, 9), (5, 7)], seed=1)
    torch.manual_seed(0)
    net = torch.nn.Conv2d(3, 3, 1)
    single = evaluate(net, datapipe.eval_loader(dataset, 1, (0.5,) * 3, (0.25,) * 3), 3)
    padded = evaluate(net, datapipe.eval_loader(dataset, 2, (0.5,) * 3, (0.25,) * 3, pad_batch=True), 3)
    torch.testing.assert_close(padded.matrix, single.matrix)
    assert single.matrix.sum() == sum(label.size - 1 for label in dataset.labels)


def test_authors_interpolation_nearest_for_labelled_a_coin_for_unlabelled():
    """--aug-authors-interp: their rotate-and-scale crop warped labelled images with nearest-neighbour sampling and
    each single unlabelled view with nearest or bilinear at random; off, every image is bilinear."""
    dataset = datapipe.build_dataset("synthetic", n_train=4).train
    params = datapipe.AugParams(crop_size=(40, 40), scale_range=(0.6, 1.6), scale_log_uniform=True, rot_mag=30,
                                hflip=True)
    authors = datapipe.AugParams(**{**vars(params), "authors_interp": True})

    def kind(sample, index):
        """Which OpenCV interpolation reproduces the view from its source image and recorded matrix (stored in
        float32, so up to rounding: the right one is far closer than the other)."""
        source, m = dataset.load_image(index), sample["matrix"].double().numpy()
        view = sample["image"].permute(1, 2, 0).numpy().astype(float)
        error = {name: np.abs(cv2.warpAffine(source, m, (40, 40), flags=flag, borderValue=0) - view).mean()
                 for name, flag in (("nearest", cv2.INTER_NEAREST), ("linear", cv2.INTER_LINEAR))}
        best = min(error, key=error.get)
        assert error[best] < 0.5 < max(error.values()), error
        return best

    draws = [(i % 4, i) for i in range(40)]
    for with_label, own, theirs in ((True, {"linear"}, {"nearest"}), (False, {"linear"}, {"nearest", "linear"})):
        ours = AugmentedViews(dataset, params, seed=1, stream=0, with_label=with_label)
        them = AugmentedViews(dataset, authors, seed=1, stream=0, with_label=with_label)
        kinds = [kind(them[key], key[0]) for key in draws]
        assert {kind(ours[key], key[0]) for key in draws} == own and set(kinds) == theirs
        if not with_label:
            assert 10 <= kinds.count("nearest") <= 30  # a fair coin over 40 views
        for key in draws[:5]:  # the geometry (and the label) are the same draws either way
            torch.testing.assert_close(them[key]["matrix"], ours[key]["matrix"])
            torch.testing.assert_close(them[key]["valid"], ours[key]["valid"])
            if with_label:
                torch.testing.assert_close(them[key]["label"], ours[key]["label"])
