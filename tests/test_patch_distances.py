"""Tests of patch_distances.py (supplement B): box-filter maps, FFT nearest-patch search, anchors, CLI."""
import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import patch_distances as pd
from datapipe import SegDataset


def brute_force_maps(image: np.ndarray, p: int):
    """Distances between explicitly extracted patches; NaN where a patch leaves the image."""
    h = p // 2
    height, width = image.shape[:2]
    dist_x, dist_y = np.full((height, width), np.nan), np.full((height, width), np.nan)
    for r in range(h, height - h):
        for c in range(h, width - h):
            a = image[r - h : r + h + 1, c - h : c + h + 1]
            if c + 1 + h < width:
                dist_x[r, c] = np.linalg.norm(image[r - h : r + h + 1, c + 1 - h : c + h + 2] - a)
            if r + 1 + h < height:
                dist_y[r, c] = np.linalg.norm(image[r + 1 - h : r + h + 2, c - h : c + h + 1] - a)
    return dist_x, dist_y


def brute_force_nearest(image, label, patch, cls):
    """Nearest window fully inside ``image`` whose centre has class ``cls``: (distance, row, col) of its centre."""
    h = patch.shape[0] // 2
    best = (np.inf, -1, -1)
    for r in range(h, image.shape[0] - h):
        for c in range(h, image.shape[1] - h):
            if label[r, c] == cls:
                d = np.linalg.norm(image[r - h : r + h + 1, c - h : c + h + 1] - patch)
                if d < best[0]:
                    best = (d, r, c)
    return best


@pytest.mark.parametrize("p", [1, 3, 5])
def test_box_filter_map_equals_brute_force(p):
    image = np.random.default_rng(p).random((11, 13, 3))
    fast, slow = pd.neighbour_distance_maps(image, p), brute_force_maps(image, p)
    for f, s in zip(fast, slow, strict=True):
        assert np.array_equal(np.isnan(f), np.isnan(s))  # border: NaN where either patch leaves the image
        np.testing.assert_allclose(f[~np.isnan(f)], s[~np.isnan(s)], rtol=1e-10, atol=1e-12)
    h = p // 2  # the defined region, counted by hand
    assert (~np.isnan(fast[0])).sum() == (11 - 2 * h) * (13 - 2 * h - 1)
    assert (~np.isnan(fast[1])).sum() == (11 - 2 * h - 1) * (13 - 2 * h)


def test_box_sum_by_hand():
    x = np.arange(12, dtype=float).reshape(3, 4)
    np.testing.assert_allclose(pd.box_sum(x, 2), [[0 + 1 + 4 + 5, 1 + 2 + 5 + 6, 2 + 3 + 6 + 7],
                                                  [4 + 5 + 8 + 9, 5 + 6 + 9 + 10, 6 + 7 + 10 + 11]])


def random_block_label(rng, height, width, n_classes=3):
    """Labels made of 3×3 blocks with random classes, upsampled and cropped (plus a few ignored pixels)."""
    blocks = rng.integers(0, n_classes, size=(height // 3 + 1, width // 3 + 1))
    label = np.repeat(np.repeat(blocks, 3, 0), 3, 1)[:height, :width].astype(np.uint8)
    label[rng.random((height, width)) < 0.05] = 255
    return label


@pytest.mark.parametrize("p", [1, 3, 5])
def test_fft_search_equals_brute_force(p, monkeypatch):
    rng = np.random.default_rng(10 + p)
    image = rng.random((10, 13, 3))
    label = random_block_label(rng, 10, 13)
    patches = rng.random((6, p, p, 3))
    h = p // 2
    patches[0] = image[:p, -p:]  # an exact copy of the top-right window, which touches two borders
    patches[1] = image[-p:, :p] + 0.01  # near-copy of the bottom-left window
    classes = rng.integers(0, 3, size=6)
    classes[0], classes[1] = label[h, 13 - 1 - h], label[10 - 1 - h, h]
    search = pd.PatchSearch(image, label, p)
    dist, rows, cols = search.nearest(patches, classes)
    for a in range(6):
        d, r, c = brute_force_nearest(image, label, patches[a], classes[a])
        assert (rows[a], cols[a]) == (r, c)
        np.testing.assert_allclose(dist[a], d, rtol=1e-12, atol=1e-12)
    assert dist[0] == 0 and (rows[0], cols[0]) == (h, 13 - 1 - h)
    assert (rows[1], cols[1]) == (10 - 1 - h, h)
    # precomputed spectra and one-anchor batches give the same answer
    spectra = pd.patch_spectrum(patches, search.shape)
    monkeypatch.setattr(pd, "BATCH_BYTES", 1)
    for got, want in zip(search.nearest(patches, classes, spectra), (dist, rows, cols), strict=True):
        np.testing.assert_array_equal(got, want)


def test_search_without_the_class_or_room_finds_nothing():
    rng = np.random.default_rng(0)
    image, label = rng.random((6, 6, 3)), np.zeros((6, 6), np.uint8)
    dist, rows, _ = pd.PatchSearch(image, label, 3).nearest(rng.random((2, 3, 3, 3)), np.array([1, 255]))
    assert np.isinf(dist).all() and (rows == -1).all()
    dist, rows, _ = pd.PatchSearch(image, label, 7).nearest(rng.random((1, 7, 7, 3)), np.array([0]))
    assert np.isinf(dist).all() and (rows == -1).all()


def test_boundary_pairs_by_hand():
    label = np.zeros((6, 6), np.uint8)
    label[:, 3:] = 1  # one vertical boundary between columns 2 and 3
    label[0] = 255  # ignored row
    assert len(pd.boundary_pairs(label, 1)) == 5 * 2  # rows 1..5, both directions
    pairs = pd.boundary_pairs(label, 3)  # centres need 1 px of margin: rows 1..4; ignore row 0 is fine
    assert len(pairs) == 4 * 2
    assert {tuple(x) for x in pairs[:, [1, 3]]} == {(2, 3), (3, 2)}
    assert len(pd.boundary_pairs(label, 7)) == 0  # no 7×7 patch fits beside the boundary


class ArrayDataset(SegDataset):
    """A list of (image, label) arrays as a SegDataset."""

    def __init__(self, images, labels, num_classes=3):
        super().__init__(num_classes)
        self.images, self.labels = images, labels

    def __len__(self):
        return len(self.images)

    def sample_id(self, index):
        return f"img{index}"

    def load_image(self, index):
        return self.images[index]

    def read_label(self, index):
        return self.labels[index]


def tiny_dataset(n=5, size=(12, 14), seed=0):
    rng = np.random.default_rng(seed)
    images = [rng.integers(0, 256, size=(*size, 3), dtype=np.uint8) for _ in range(n)]
    labels = [random_block_label(rng, *size) for _ in range(n)]
    return ArrayDataset(images, labels)


def test_anchors_lie_on_boundaries_and_negatives_across():
    data = tiny_dataset(n=4, size=(16, 16))
    p, h = 5, 2
    anchors = pd.sample_anchors(data.load_label, len(data), 40, p, np.random.default_rng(0))
    assert anchors.shape == (40, 5)
    for image, ra, ca, rn, cn in anchors.tolist():
        label = data.load_label(image)
        assert abs(ra - rn) + abs(ca - cn) == 1  # 4-neighbours
        assert label[ra, ca] != label[rn, cn] and 255 not in (label[ra, ca], label[rn, cn])
        assert all(h <= v < 16 - h for v in (ra, ca, rn, cn))  # both patches fully inside
    again = pd.sample_anchors(data.load_label, len(data), 40, p, np.random.default_rng(0))
    np.testing.assert_array_equal(anchors, again)  # the seed decides


def test_sample_anchors_refuses_when_nothing_fits():
    data = tiny_dataset(n=2, size=(8, 8))
    with pytest.raises(pd.DataError, match="smaller --patch-size"):
        pd.sample_anchors(data.load_label, 2, 3, 9, np.random.default_rng(0))


def test_triplets_match_brute_force_over_other_images():
    data = tiny_dataset(n=5)
    p = 3
    triplets = pd.find_triplets(data, n_anchors=8, patch_size=p, seed=1)
    assert len(triplets) == 8
    for t in triplets:
        image = pd.to_float(data.load_image(t["image_index"]))
        (ra, ca), (rn, cn) = t["anchor"], t["negative"]
        anchor = pd.patch_at(image, ra, ca, p)
        # d_neg is the neighbour distance map at the pair
        dist_x, dist_y = pd.neighbour_distance_maps(image, p)
        expected = dist_x[min(ra, rn), min(ca, cn)] if ra == rn else dist_y[min(ra, rn), min(ca, cn)]
        np.testing.assert_allclose(t["d_neg"], expected, rtol=1e-10)
        best = min((brute_force_nearest(pd.to_float(data.load_image(j)), data.load_label(j), anchor, t["class"])
                    + (j,) for j in range(len(data)) if j != t["image_index"]), key=lambda x: x[0])
        np.testing.assert_allclose(t["d_pos"], best[0], rtol=1e-10)
        assert t["positive"]["image_index"] == best[3] and t["positive"]["centre"] == [best[1], best[2]]
        assert t["ratio"] == pytest.approx(t["d_neg"] / t["d_pos"])
        assert t["images_searched"] == len(data) - 1


def test_search_images_limits_the_search():
    data = tiny_dataset(n=6)
    triplets = pd.find_triplets(data, n_anchors=5, patch_size=3, seed=2, search_images=2)
    assert all(t["images_searched"] == 2 for t in triplets)
    assert all(t["positive"]["image_index"] != t["image_index"] for t in triplets)


def test_chunks_partition_the_anchors():
    assert [pd.chunk_slice(10, i, 3) for i in (1, 2, 3)] == [slice(0, 3), slice(3, 6), slice(6, 10)]
    assert pd.parse_chunk("2/3", 10) == (2, 3) and pd.parse_chunk(None, 10) == (1, 1)
    for bad in ("0/3", "4/3", "a/b", "3", "1/20"):
        with pytest.raises(pd.DataError, match="--chunk"):
            pd.parse_chunk(bad, 10)


def test_render_helpers_give_images():
    ratios = np.array([0.2, 0.3, 0.35, np.inf, 2.5])
    hist = pd.render_histogram(ratios, "test")
    assert hist.shape == (410, 640, 3) and hist.dtype == np.uint8
    m = np.full((20, 20), np.nan)
    m[3:17, 3:16] = np.random.default_rng(0).random((14, 13))
    out = pd.render_map(m, float(np.nanmax(m)), "map")
    assert out.ndim == 3 and out.shape[0] >= 256


# ----------------------------------------------------------------------------------------------------
# Command line, on the synthetic dataset
# ----------------------------------------------------------------------------------------------------


def run_cli(args):
    return CliRunner().invoke(pd.cli, [str(a) for a in args])


TRIPLET_ARGS = ["--dataset", "synthetic", "--n-anchors", 6, "--patch-size", 7, "--search-images", 12, "--seed", 3]


def test_cli_maps_on_synthetic_and_on_files(tmp_path):
    result = run_cli(["maps", "--dataset", "synthetic", "--index", 2, "--patch-size", 15, "--patch-size", 5,
                      "--out-dir", tmp_path / "maps"])
    assert result.exit_code == 0, result.output
    for name in ("image.png", "maps.json", "dist_x_p15.png", "dist_y_p5.png"):
        assert (tmp_path / "maps" / name).stat().st_size > 0
    dist_x = np.load(tmp_path / "maps" / "dist_x_p15.npy")
    assert dist_x.shape == (64, 64) and np.isnan(dist_x[:, :7]).all() and np.isfinite(dist_x[7:57, 7:56]).all()

    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)).save(tmp_path / "im.png")
    Image.fromarray(np.repeat(np.arange(2, dtype=np.uint8), 15)[None].repeat(40, 0)).save(tmp_path / "lab.png")
    result = run_cli(["maps", "--image", tmp_path / "im.png", "--label", tmp_path / "lab.png", "--patch-size", 9,
                      "--out-dir", tmp_path / "maps2"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "maps2" / "maps.json").read_text())["patch_sizes"] == [9]


def test_cli_triplets_chunks_and_merge_equal_one_run(tmp_path):
    result = run_cli(["triplets", *TRIPLET_ARGS, "--out-dir", tmp_path / "one"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "one" / "triplets_hist.png").stat().st_size > 0
    one = json.loads((tmp_path / "one" / "triplets.json").read_text())
    assert one["summary"]["n_triplets"] == 6 and one["summary"]["median_ratio"] > 0
    for i in (1, 2, 3):
        result = run_cli(["triplets", *TRIPLET_ARGS, "--chunk", f"{i}/3", "--out-dir", tmp_path / "chunks"])
        assert result.exit_code == 0, result.output
    result = run_cli(["merge", "--out-dir", tmp_path / "chunks"])
    assert result.exit_code == 0, result.output
    merged = json.loads((tmp_path / "chunks" / "triplets.json").read_text())
    assert merged["triplets"] == one["triplets"] and merged["summary"] == one["summary"]
    assert merged["config"] == one["config"]
    assert (tmp_path / "chunks" / "triplets_hist.png").stat().st_size > 0
    # running again into the same files is refused, and allowed with --overwrite
    again = run_cli(["triplets", *TRIPLET_ARGS, "--out-dir", tmp_path / "one"])
    assert again.exit_code != 0 and "--overwrite" in again.output
    again = run_cli(["triplets", *TRIPLET_ARGS, "--out-dir", tmp_path / "one", "--overwrite"])
    assert again.exit_code == 0, again.output


def test_merge_refuses_missing_chunks(tmp_path):
    result = run_cli(["triplets", *TRIPLET_ARGS, "--chunk", "1/2", "--out-dir", tmp_path])
    assert result.exit_code == 0, result.output
    result = run_cli(["merge", "--out-dir", tmp_path])
    assert result.exit_code != 0 and "2/2 missing" in result.output
    assert run_cli(["triplets", *TRIPLET_ARGS, "--chunk", "1/3", "--out-dir", tmp_path]).exit_code == 0
    result = run_cli(["merge", "--out-dir", tmp_path])
    assert result.exit_code != 0 and "different splits" in result.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["maps", "--image", "{missing}"], "image not found"),
        (["maps", "--dataset", "synthetic", "--patch-size", 14], "must be odd"),
        (["maps", "--dataset", "synthetic"], "--patch-size 225 is too large for the 64x64 image"),
        (["maps", "--dataset", "nosuchset"], "unknown dataset"),
        (["maps", "--dataset", "synthetic", "--index", 100000], "--index 100000"),
        (["maps", "--image", "{missing}", "--dataset", "synthetic"], "either --image"),
        (["triplets", *TRIPLET_ARGS, "--chunk", "4/3"], "--chunk"),
        (["triplets", "--dataset", "synthetic", "--patch-size", 65], "too large"),
        (["merge"], "no triplets_chunk"),
    ],
)
def test_bad_input_gives_one_line_error(tmp_path, args, message):
    args = [str(a).format(missing=tmp_path / "missing.png") for a in args]
    result = run_cli([*args, "--out-dir", tmp_path / "out"])
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)  # a clean exit, not a traceback
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:") and message in lines[0], result.output


def one_line_error(args, message: str):
    """Exit code 1 and exactly one line, ``Error: …`` holding ``message``; no traceback."""
    result = run_cli(args)
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:") and message in lines[0], result.output


def test_bad_files_give_one_line_errors_and_are_kept(tmp_path):
    (tmp_path / "notes.txt").write_text("keep me")
    one_line_error(["maps", "--dataset", "synthetic", "--patch-size", 5, "--out-dir", tmp_path / "notes.txt" / "sub"],
                   "cannot create --out-dir")
    (tmp_path / "c2.json").write_text(json.dumps({"config": {"chunk": [1, 1]}}))
    one_line_error(["merge", tmp_path / "c2.json", "--out-dir", tmp_path / "m2"],
                   "c2.json: not a triplets chunk file (no 'triplets' entry)")
    one_line_error(["merge", tmp_path / "missing.json", "--out-dir", tmp_path / "m2"], "missing.json does not exist")
    (tmp_path / "c3.json").write_text(json.dumps({"config": {"chunk": [1, 1]}, "seconds": 1, "triplets": [{}]}))
    one_line_error(["merge", tmp_path / "c3.json", "--out-dir", tmp_path / "m2"], "a triplet lacks ratio")
    assert (tmp_path / "notes.txt").read_text() == "keep me" and not (tmp_path / "m2").exists()


def write_folder_dataset(root, n: int = 3, size: int = 24):
    """images/ and labels/ of the ``folder`` dataset: left half class 0, right half class 1 (first image) or
    2, the last two columns 9 (ignored with --ignore-index 9)."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(root / "images" / f"im{i}.png")
        label = np.zeros((size, size), np.uint8)
        label[:, size // 2 :] = 1 if i == 0 else 2
        label[:, -2:] = 9
        Image.fromarray(label).save(root / "labels" / f"im{i}.png")
    return root


def test_folder_dataset_with_num_classes_and_ignore_index(tmp_path):
    root = write_folder_dataset(tmp_path / "data")
    folder = ["--dataset", "folder", "--data-dir", root]
    one_line_error(["maps", *folder, "--patch-size", 5, "--out-dir", tmp_path / "x"], "pass --num-classes C")
    one_line_error(["maps", "--dataset", "synthetic", "--num-classes", 3, "--out-dir", tmp_path / "x"],
                   "drop it (it is for --dataset folder)")
    one_line_error(["maps", "--image", root / "images" / "im0.png", "--num-classes", 3, "--out-dir", tmp_path / "x"],
                   "drop them with --image")
    one_line_error(["triplets", *folder, "--num-classes", 3, "--patch-size", 5, "--out-dir", tmp_path / "x"],
                   "check --num-classes and --ignore-index")  # 9 is neither a class nor ignored

    result = run_cli(["maps", *folder, "--num-classes", 3, "--ignore-index", 9, "--index", 1, "--patch-size", 5,
                      "--out-dir", tmp_path / "maps"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "maps" / "maps.json").read_text())["source"]["image"] == "im1"
    result = run_cli(["triplets", *folder, "--num-classes", 3, "--ignore-index", 9, "--n-anchors", 8,
                      "--patch-size", 5, "--out-dir", tmp_path / "triplets"])
    assert result.exit_code == 0, result.output
    out = json.loads((tmp_path / "triplets" / "triplets.json").read_text())
    assert out["config"]["num_classes"] == 3 and out["config"]["ignore_index"] == 9
    # every anchor lies on the 0 | 1-or-2 boundary: the ignored columns make none
    for t in out["triplets"]:
        assert {t["class"], t["negative_class"]} in ({0, 1}, {0, 2}) and {t["anchor"][1], t["negative"][1]} == {11, 12}


def test_maps_accepts_a_one_bit_label(tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(tmp_path / "im.png")
    Image.fromarray(np.arange(32)[None].repeat(32, 0) >= 16).save(tmp_path / "lab.png")  # mode "1"
    with Image.open(tmp_path / "lab.png") as im:
        assert im.mode == "1"
    label = pd.read_image_file(tmp_path / "lab.png", "label")
    np.testing.assert_array_equal(label, np.arange(32)[None].repeat(32, 0) >= 16)
    assert label.dtype == np.uint8 and set(np.unique(label)) == {0, 1}  # 0/1: 255 would mean ignored
    result = run_cli(["maps", "--image", tmp_path / "im.png", "--label", tmp_path / "lab.png", "--patch-size", 5,
                      "--out-dir", tmp_path / "maps"])
    assert result.exit_code == 0, result.output
    picture = np.asarray(Image.open(tmp_path / "maps" / "image.png").convert("RGB"))
    assert (picture == (255, 0, 0)).all(-1).any()  # the boundary between the classes, drawn in red
