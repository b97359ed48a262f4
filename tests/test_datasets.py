"""Datasets on disk in their official layouts, split files, bad input, and the data commands.

Every dataset here is a handful of tiny files written into ``tmp_path``: it loads, its labels are mapped
correctly, and it trains for two iterations through the training script. The public split lists are read
from ``../shared/data/splits`` when that folder exists; Fashion-MNIST from /usr/share/datasets/fashion-mnist.
"""
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import datapipe
import evaluation
import prepare_data
import train_seg_semisup
from datapipe import camvid, cityscapes, fashion_canvas, files, folder, isic, pascal

SPLITS = Path(__file__).resolve().parents[2] / "shared" / "data" / "splits"
FASHION = Path(fashion_canvas.SYSTEM_DIR)
needs_splits = pytest.mark.skipif(not SPLITS.is_dir(), reason=f"public split lists not found at {SPLITS}")
needs_fashion = pytest.mark.skipif(not fashion_canvas.has_files(FASHION), reason="Fashion-MNIST IDX files absent")
# the notes that a root is not the prepared copy the paper used (checked once, below)
pytestmark = pytest.mark.filterwarnings("ignore:.*(half-resolution|248×248) copy:UserWarning")
TINY = ["--iters", "2", "--batch-size", "2", "--crop-size", "32,32", "--arch", "unet_small", "--no-pretrained",
        "--eval-every", "0", "--threads", "2"]


# ----------------------------------------------------------------------------- writing tiny datasets

def write_image(path: Path, h: int, w: int, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
    return path


def write_label(path: Path, label: np.ndarray, palette: np.ndarray | None = None) -> Path:
    """A grey PNG of ``label``, or a palette ('P') PNG when ``palette`` (256, 3) is given."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(label.astype(np.uint8), mode="L" if palette is None else "P")
    if palette is not None:
        image.putpalette(palette.reshape(-1).tolist())
    image.save(path)
    return path


def stripes(h: int, w: int, values) -> np.ndarray:
    """(h, w) label with vertical stripes of ``values`` (every value present)."""
    return np.asarray(values, np.uint8)[np.arange(w) * len(values) // w][None].repeat(h, 0)


VOC_VALUES = [0, 15, 7, 255]  # background, person, car, boundary


def make_voc(root: Path, n_train: int = 4, n_val: int = 2, h: int = 36, w: int = 44) -> Path:
    """VOC2012 with both label sets: grey SegmentationClassAug and palette SegmentationClass."""
    voc = root / "VOCdevkit" / "VOC2012"
    train = [f"2007_{i:06d}" for i in range(n_train)]
    val = [f"2008_{i:06d}" for i in range(n_val)]
    for k, sample in enumerate(train + val):
        write_image(voc / "JPEGImages" / f"{sample}.jpg", h, w, k)
        label = stripes(h, w, VOC_VALUES)
        write_label(voc / "SegmentationClassAug" / f"{sample}.png", label)
        write_label(voc / "SegmentationClass" / f"{sample}.png", label, files.voc_palette())
    for list_dir, train_name in (("SegmentationAug", "train_aug.txt"), ("Segmentation", "train.txt")):
        (voc / "ImageSets" / list_dir).mkdir(parents=True)
        (voc / "ImageSets" / list_dir / train_name).write_text("\n".join(train) + "\n")
        (voc / "ImageSets" / list_dir / "val.txt").write_text("\n".join(val) + "\n")
    return voc


CITY_IDS = [7, 26, 0, 33]  # road, car, unlabeled, bicycle → train ids 0, 13, 255, 18


def make_cityscapes(root: Path, h: int = 32, w: int = 64, n_train: int = 3, n_val: int = 2, ids=CITY_IDS) -> Path:
    for split, n, city in (("train", n_train, "aachen"), ("val", n_val, "lindau")):
        for i in range(n):
            stem = f"{city}_{i:06d}_000019"
            write_image(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", h, w, i)
            write_label(root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png", stripes(h, w, ids))
    return root


def make_isic(root: Path, h: int = 40, w: int = 48, counts=(("Training", 4), ("Validation", 2), ("Test_v2", 2))):
    for part, n in counts:
        for i in range(n):
            sample = f"ISIC_{hash(part) % 1000:03d}{i:04d}"
            write_image(root / f"ISIC-2017_{part}_Data" / f"{sample}.jpg", h, w, i)
            write_image(root / f"ISIC-2017_{part}_Data" / f"{sample}_superpixels.png", h, w, i)  # to be skipped
            mask = np.zeros((h, w), np.uint8)
            mask[h // 4: 3 * h // 4, w // 4: 3 * w // 4] = 255
            write_label(root / f"ISIC-2017_{part}_Part1_GroundTruth" / f"{sample}_segmentation.png", mask)
    return root


def make_camvid(root: Path, h: int = 36, w: int = 48) -> Path:
    for split, n in (("train", 4), ("val", 2), ("test", 2)):
        for i in range(n):
            write_image(root / split / f"0001TP_{i:06d}.png", h, w, i)
            write_label(root / f"{split}annot" / f"0001TP_{i:06d}.png", stripes(h, w, [0, 3, 8, 11]))
    return root


def make_folder(root: Path, h: int = 36, w: int = 40, val: bool = True) -> Path:
    for i in range(4):
        write_image(root / "images" / f"img{i}.jpg", h, w, i)
        write_label(root / "labels" / f"img{i}.png", stripes(h, w, [0, 1, 2, 9]))
    for i in range(3):
        write_image(root / "unlabelled" / f"extra{i}.png", h + 4, w, 10 + i)  # no labels needed
    if val:
        for i in range(2):
            write_image(root / "val" / "images" / f"v{i}.png", h, w, 20 + i)
            write_label(root / "val" / "labels" / f"v{i}.png", stripes(h, w, [0, 2, 9]))
    return root


def run(args):
    return CliRunner().invoke(train_seg_semisup.main, [*TINY, *args], catch_exceptions=False)


def train_ok(tmp_path: Path, args) -> dict:
    out = tmp_path / "run"
    result = run([*args, "--out-dir", str(out)])
    assert result.exit_code == 0, result.output
    return json.loads((out / "final.json").read_text())


def fails_one_line(args, message: str):
    """Exit code 1 and one ``Error:`` line holding ``message`` (after the progress bar's label, if training began)."""
    result = CliRunner().invoke(train_seg_semisup.main, [*TINY, *args])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    lines = result.output.strip().splitlines()
    assert lines[-1].startswith("Error: ") and message in lines[-1], result.output
    assert lines[:-1] in ([], ["training"]), result.output
    return result


# ----------------------------------------------------------------------------- each dataset loads and trains

def test_pascal_aug_loads_and_trains(tmp_path):
    voc = make_voc(tmp_path)
    bundle = datapipe.build_dataset("pascal_aug", data_dir=str(voc))
    assert (len(bundle.train), len(bundle.val), bundle.num_classes) == (4, 2, 21)
    assert bundle.train.sample_id(1) == "2007_000001"
    assert bundle.train.load_image(0).shape == (36, 44, 3)
    assert sorted(np.unique(bundle.train.load_label(0)).tolist()) == sorted(VOC_VALUES)
    assert bundle.recipe["arch"] == "deeplabv2_resnet101" and bundle.recipe["crop_size"] == (321, 321)
    final = train_ok(tmp_path, ["--dataset", "pascal_aug", "--data-dir", str(voc)])
    assert len(final["per_class_iou"]) == 21


def test_pascal_reads_palette_indices_not_colours(tmp_path):
    voc = make_voc(tmp_path, n_train=2, n_val=1)
    path = voc / "SegmentationClass" / "2007_000000.png"
    with Image.open(path) as image:
        assert image.mode == "P" and image.convert("RGB").getpixel((20, 0)) == tuple(pascal.PALETTE[15])
    label = datapipe.build_dataset("pascal", data_dir=str(voc)).train.load_label(0)
    np.testing.assert_array_equal(label, stripes(36, 44, VOC_VALUES))
    train_ok(tmp_path, ["--dataset", "pascal", "--data-dir", str(voc), "--reg", "none"])


def test_pascal_root_from_environment(tmp_path, monkeypatch):
    voc = make_voc(tmp_path, n_train=2, n_val=1)
    monkeypatch.setenv("SEMISUP_PASCAL_DIR", str(voc))
    assert len(datapipe.build_dataset("pascal_aug").train) == 2


def test_cityscapes_maps_label_ids_to_train_ids_and_trains(tmp_path):
    root = make_cityscapes(tmp_path / "cityscapes")
    with pytest.warns(UserWarning, match="not a half-resolution copy"):
        bundle = datapipe.build_dataset("cityscapes", data_dir=str(root))
    assert (len(bundle.train), len(bundle.val), bundle.num_classes) == (3, 2, 19)
    assert bundle.train.sample_id(0) == "aachen_000000_000019"
    np.testing.assert_array_equal(bundle.train.load_label(0), stripes(32, 64, [0, 13, 255, 18]))
    # every labelId against the official table (cityscapesScripts' labels.py); the rest, and 255, are ignored
    official = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12, 26: 13,
                27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
    label_ids = [*range(34), 255]
    every_id = make_cityscapes(tmp_path / "every_id", h=2, w=len(label_ids), n_train=1, n_val=1, ids=label_ids)
    label = datapipe.build_dataset("cityscapes", data_dir=str(every_id)).train.load_label(0)
    assert label[0].tolist() == [official.get(i, 255) for i in label_ids]
    train_ok(tmp_path, ["--dataset", "cityscapes", "--data-dir", str(root)])


def test_authors_split_picks_their_images_on_cityscapes(tmp_path):
    """The authors' Cityscapes samples are their zip's names "train/<city>/<stem>" sorted; RandomState(seed)
    permutes those. Our training order is the same, so --authors-split labels the same images."""
    root = tmp_path / "cityscapes"
    stems = [("bremen", "bremen_000001_000019"), ("aachen", "aachen_000010_000019"), ("bochum", "bochum_000000_000313"),
             ("aachen", "aachen_000002_000019"), ("zurich", "zurich_000000_000019"), ("bremen", "bremen_000000_000019")]
    for city, stem in stems + [("lindau", "lindau_000000_000019")]:
        split = "val" if city == "lindau" else "train"
        write_image(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", 32, 64)
        write_label(root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png", stripes(32, 64, [7, 8]))
    theirs = sorted(f"train/{city}/{stem}" for city, stem in stems)
    perm = np.random.RandomState(23456).permutation(len(theirs))
    expected = [theirs[i].rsplit("/", 1)[1] for i in perm[:2]]
    with pytest.warns(UserWarning, match="not a half-resolution copy"):
        train = datapipe.build_dataset("cityscapes", data_dir=str(root)).train
    assert [train.sample_id(i) for i in range(len(train))] == [name.rsplit("/", 1)[1] for name in theirs]
    train_ok(tmp_path, ["--dataset", "cityscapes", "--data-dir", str(root), "--reg", "none", "--n-sup", "2",
                        "--authors-split", "--split-seed", "23456"])
    labelled = json.loads((tmp_path / "run" / "split.json").read_text())["labelled"]
    assert [train.sample_id(i) for i in labelled] == expected
    assert json.loads((tmp_path / "run" / "config.json").read_text())["authors_split"] is True


def test_authors_split_option_errors(tmp_path):
    fails_one_line(["--val-seed", "3", "--n-val", "5", "--out-dir", str(tmp_path / "a")],
                   "--val-seed orders the images --n-val holds out with --authors-split")
    fails_one_line(["--authors-split", "--val-seed", "3", "--out-dir", str(tmp_path / "b")],
                   "--val-seed orders the images --n-val holds out with --authors-split")
    split_file = tmp_path / "split.txt"
    split_file.write_text("img_00000\n")
    fails_one_line(["--authors-split", "--split-file", str(split_file), "--out-dir", str(tmp_path / "c")],
                   "--split-file already fixes it")
    assert not any((tmp_path / name).exists() for name in "abc")


def test_isic_masks_test_set_jaccard_and_hole_filling(tmp_path):
    root = make_isic(tmp_path / "isic")
    bundle = datapipe.build_dataset("isic2017", data_dir=str(root))
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (4, 2, 2)  # superpixel files skipped
    label = bundle.train.load_label(0)
    assert sorted(np.unique(label).tolist()) == [0, 1] and label[20, 24] == 1 and label[0, 0] == 0
    assert bundle.recipe["reg_weights"]["cutmix"] == 1.0 and bundle.recipe["optimizer"] == "sgd"
    final = train_ok(tmp_path, ["--dataset", "isic2017", "--data-dir", str(root), "--n-sup", "2"])
    assert {"test_miou", "jaccard", "test_jaccard"} <= set(final) and 0 <= final["jaccard"] <= 1
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["bin_fill_holes"] is True and config["nesterov"] is True and config["lr_sched"] == "poly"
    assert config["cons_weight"] == 1.0 and config["n_sup"] == 2 and config["arch"] == "unet_small"


def test_fill_holes_padded_reaches_the_evaluation(tmp_path, monkeypatch):
    root = make_isic(tmp_path / "isic")
    seen = []
    evaluate = train_seg_semisup.evaluation.evaluate

    def spy(*args, **kwargs):
        seen.append((kwargs["postprocess"] is not None, kwargs["postprocess_padded"]))
        return evaluate(*args, **kwargs)

    monkeypatch.setattr(train_seg_semisup.evaluation, "evaluate", spy)
    for name, extra in (("plain", ["--no-bin-fill-holes"]), ("filled", []), ("padded", ["--fill-holes-padded"])):
        result = run(["--dataset", "isic2017", "--data-dir", str(root), "--n-sup", "2", "--out-dir",
                      str(tmp_path / name), *extra])
        assert result.exit_code == 0, result.output
    assert sorted(set(seen)) == [(False, False), (True, False), (True, True)]


def test_camvid_void_is_ignored_and_test_set_scored(tmp_path):
    root = make_camvid(tmp_path / "CamVid")
    bundle = datapipe.build_dataset("camvid", data_dir=str(root))
    assert (len(bundle.train), len(bundle.val), len(bundle.test), bundle.num_classes) == (4, 2, 2, 11)
    np.testing.assert_array_equal(bundle.val.load_label(1), stripes(36, 48, [0, 3, 8, 255]))
    final = train_ok(tmp_path, ["--dataset", "camvid", "--data-dir", str(root)])
    assert "test_miou" in final and final["eval_set"] == "val"


def test_folder_ignore_index_and_unlabelled_images(tmp_path):
    root = make_folder(tmp_path / "mine")
    bundle = datapipe.build_dataset("folder", data_dir=str(root), num_classes=3, ignore_index=9)
    np.testing.assert_array_equal(bundle.train.load_label(0), stripes(36, 40, [0, 1, 2, 255]))
    assert len(bundle.unlabelled) == 3 and not bundle.unlabelled.has_labels
    final = train_ok(tmp_path, ["--dataset", "folder", "--data-dir", str(root), "--num-classes", "3",
                                "--ignore-index", "9"])
    assert len(final["per_class_iou"]) == 3
    split = json.loads((tmp_path / "run" / "split.json").read_text())
    assert len(split["unlabelled"]) == 4  # training images; the 3 extra images join them in the loop


def test_eval_pad_batch_scores_and_saves_images_of_different_sizes(tmp_path):
    """--eval-pad-batch: the folder's val images differ in size; they are scored two at a time, padded, and
    their predictions saved at each image's own size."""
    root = make_folder(tmp_path / "mine")
    write_image(root / "val" / "images" / "v2.png", 30, 46, 22)
    write_label(root / "val" / "labels" / "v2.png", stripes(30, 46, [0, 1, 9]))
    args = ["--dataset", "folder", "--data-dir", str(root), "--num-classes", "3", "--ignore-index", "9",
            "--save-preds", "--eval-batch-size", "2", "--eval-pad-batch"]
    final = train_ok(tmp_path, args)
    assert 0.0 <= final["miou"] <= 1.0
    sizes = {p.stem: Image.open(p).size for p in (tmp_path / "run" / "preds").glob("*.png")}
    assert sizes == {"v0": (40, 36), "v1": (40, 36), "v2": (46, 30)}
    fails_one_line([*args[:-1], "--eval-batch-size", "3", "--out-dir", str(tmp_path / "b")],
                   "images of different sizes in one evaluation batch (30×46 and 36×40); use --eval-batch-size 1")


def test_folder_without_val_needs_n_val(tmp_path):
    root = make_folder(tmp_path / "mine", val=False)
    args = ["--dataset", "folder", "--data-dir", str(root), "--num-classes", "3", "--ignore-index", "9"]
    fails_one_line([*args, "--out-dir", str(tmp_path / "a")], "no validation set")
    (root / "val").mkdir()  # an empty leftover val/ is still no validation set
    fails_one_line([*args, "--out-dir", str(tmp_path / "a")], "no validation set")
    write_image(root / "val" / "v0.png", 36, 40, 20)  # images put straight into val/: refused, not ignored
    fails_one_line([*args, "--out-dir", str(tmp_path / "a")], f"{root / 'val' / 'images'} not found")
    (root / "val" / "v0.png").unlink()
    (root / "val").rmdir()
    final = train_ok(tmp_path, [*args, "--n-val", "1", "--n-sup", "2"])
    assert final["eval_set"] == "held_out" and "test_miou" not in final


def test_network_lr_and_scale_options_on_the_command_line_win_over_the_recipe(tmp_path):
    voc, isic_root = make_voc(tmp_path / "voc"), make_isic(tmp_path / "isic")

    def resolved(dataset, root, **given):
        return train_seg_semisup.resolve_config({"dataset": dataset, "data_dir": str(root), **given})[0]

    # Pascal: each network's own lr (supplement Table 2's values are Pascal's); ISIC keeps its SGD lr
    assert resolved("pascal_aug", voc)["lr"] == 3e-5
    assert resolved("pascal_aug", voc, arch="deeplabv3plus_resnet101")["lr"] == 1e-5
    assert resolved("pascal_aug", voc, arch="pspnet_resnet101")["lr"] == 1e-4
    assert resolved("isic2017", isic_root, arch="unet_small")["lr"] == 0.05
    # the scale augmentation: the option given replaces the recipe's (Pascal: Hung's steps; ISIC: max scale)
    params = train_seg_semisup.aug_params(resolved("pascal_aug", voc))
    assert (params.scale_range, params.scale_step) == ((0.5, 1.5), 0.1)
    assert params.centre_small  # the authors' crop: a small image padded centrally
    assert not train_seg_semisup.aug_params(resolved("pascal_aug", voc, aug_centre_small=False)).centre_small
    assert not train_seg_semisup.aug_params(resolved("isic2017", isic_root)).centre_small
    assert train_seg_semisup.aug_params(resolved("isic2017", isic_root)).reflect_border  # the authors' ISIC warp
    assert not train_seg_semisup.aug_params(resolved("pascal_aug", voc)).reflect_border
    for dataset, root in [("pascal_aug", voc), ("isic2017", isic_root)]:
        params = train_seg_semisup.aug_params(resolved(dataset, root, aug_scale_range=(0.8, 1.2)))
        assert (params.scale_range, params.scale_step) == ((0.8, 1.2), 0.0)
    params = train_seg_semisup.aug_params(resolved("pascal_aug", voc, aug_max_scale=1.25))
    assert (params.scale_range, params.scale_step) == ((0.8, 1.25), 0.0)
    fails_one_line(["--dataset", "pascal_aug", "--data-dir", str(voc), "--aug-scale-range", "0.8,1.2",
                    "--aug-max-scale", "1.1"], "--aug-scale-range and --aug-max-scale each set the scale")


@pytest.mark.parametrize("module", [pascal, cityscapes, isic, camvid, folder, fashion_canvas])
def test_recipes_only_set_known_options(module):
    unknown = set(module.RECIPE) - set(train_seg_semisup.GLOBAL_DEFAULTS) - {"reg_weights"}
    assert not unknown, f"{module.__name__} recipe sets unknown options {unknown}"


# ----------------------------------------------------------------------------- bad input: one line each

def test_bad_inputs_through_the_script(tmp_path):
    voc = make_voc(tmp_path / "a", n_train=3, n_val=1)
    base = ["--dataset", "pascal_aug", "--out-dir", str(tmp_path / "run")]
    fails_one_line([*base, "--data-dir", str(tmp_path / "nowhere")], "dataset root")
    fails_one_line([*base, "--data-dir", str(voc), "--n-sup", "9"], "more than the 3 training images")
    fails_one_line(["--dataset", "cityscapes", "--data-dir", str(voc), "--out-dir", str(tmp_path / "r")],
                   "leftImg8bit")
    fails_one_line([*base, "--data-dir", str(voc), "--num-classes", "5"], "does not match the 21 classes")
    fails_one_line([*base, "--data-dir", str(voc), "--bin-fill-holes"], "two-class dataset")
    (voc / "JPEGImages" / "2007_000001.jpg").unlink()
    fails_one_line([*base, "--data-dir", str(voc)], "2007_000001.jpg not found")
    (voc / "ImageSets" / "SegmentationAug" / "train_aug.txt").unlink()
    fails_one_line([*base, "--data-dir", str(voc)], "train_aug.txt not found")


@pytest.mark.parametrize("problem, message", [
    ("label_missing", "SegmentationClassAug/2007_000000.png not found"),
    ("label_values", "label values [30, 40] outside [0, 21)"),
    ("size_mismatch", "is 44×30 but image"),
    ("corrupt_image", "cannot read image"),
    ("rgb_label", "RGB colour image"),
])
def test_bad_files_are_named(tmp_path, problem, message):
    voc = make_voc(tmp_path, n_train=2, n_val=1)
    label_path = voc / "SegmentationClassAug" / "2007_000000.png"
    if problem == "label_missing":
        label_path.unlink()
    elif problem == "label_values":
        write_label(label_path, stripes(36, 44, [0, 30, 40]))
    elif problem == "size_mismatch":
        write_label(label_path, stripes(30, 44, [0, 1]))
    elif problem == "corrupt_image":
        (voc / "JPEGImages" / "2007_000000.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    else:
        Image.fromarray(np.zeros((36, 44, 3), np.uint8)).save(label_path)
    with pytest.raises(datapipe.DataError, match="2007_000000") as err:
        bundle = datapipe.build_dataset("pascal_aug", data_dir=str(voc))
        bundle.train.load_image(0)
        bundle.train.load_label(0)
    assert message in str(err.value) and "\n" not in str(err.value)
    if problem != "label_missing":  # loading errors surface as one line from the script too
        fails_one_line(["--dataset", "pascal_aug", "--data-dir", str(voc), "--reg", "none", "--out-dir",
                        str(tmp_path / "run")], message)
    if problem == "label_values":  # also when a loader worker meets it (torch wraps it in the worker's traceback)
        fails_one_line(["--dataset", "pascal_aug", "--data-dir", str(voc), "--reg", "none", "--num-workers", "1",
                        "--out-dir", str(tmp_path / "run_workers")], message)


def test_cityscapes_bad_label_values_name_the_raw_values(tmp_path):
    root = make_cityscapes(tmp_path / "cs", n_train=1, n_val=1, ids=[7, 40, 50])
    with pytest.raises(datapipe.DataError, match=r"gtFine_labelIds.png: unexpected values \[40, 50\]"):
        datapipe.build_dataset("cityscapes", data_dir=str(root)).train.load_label(0)


def test_folder_option_errors(tmp_path):
    root = make_folder(tmp_path / "mine")
    with pytest.raises(datapipe.DataError, match="pass --num-classes"):
        datapipe.build_dataset("folder", data_dir=str(root))
    with pytest.raises(datapipe.DataError, match=r"unexpected values \[9\].*--ignore-index"):
        datapipe.build_dataset("folder", data_dir=str(root), num_classes=3).train.load_label(0)
    with pytest.raises(datapipe.DataError, match="no dataset root given"):
        datapipe.build_dataset("folder", num_classes=3)


# ----------------------------------------------------------------------------- split files

def test_split_file_formats_match_by_id(tmp_path):
    ids = ["2007_000032", "2007_000039", "jena_000078_000019", "ISIC_0000001", "a.b"]
    lines = ["# a comment", "2007_000039", "JPEGImages/2007_000032.jpg SegmentationClass/2007_000032.png", "",
             "leftImg8bit/train/jena/jena_000078_000019_leftImg8bit.png "
             "gtFine/train/jena/jena_000078_000019_gtFine_labelTrainIds.png", "ISIC_0000001_segmentation.png", "a.b"]
    path = tmp_path / "split.txt"
    path.write_text("\n".join(lines))
    np.testing.assert_array_equal(datapipe.read_split_file(path, ids), [1, 0, 2, 3, 4])
    path.write_text("2007_000039\nnot_an_image\n2007_000032\n")
    with pytest.raises(datapipe.DataError, match=r"1 of 3 lines name no training image.*line 2 'not_an_image'"):
        datapipe.read_split_file(path, ids)
    path.write_text("2007_000039\n2007_000039\n")
    with pytest.raises(datapipe.DataError, match="line 2 repeats image '2007_000039'"):
        datapipe.read_split_file(path, ids)
    with pytest.raises(datapipe.DataError, match="not found"):
        datapipe.read_split_file(tmp_path / "missing.txt", ids)
    path.write_text("2007_000039\n2007_000032\n")
    split = datapipe.split_from_file(path, ids, None, None, 1, split_seed=0)
    assert split.labelled.tolist() == [1, 0] and len(split.held_out) == 1 and split.held_out[0] not in (0, 1)
    with pytest.raises(datapipe.DataError, match="--n-sup 3 is more than the 2 images listed"):
        datapipe.split_from_file(path, ids, 3, None, 0, split_seed=0)
    path.write_bytes("\ufeff2007_000039\r\n2007_000032\r\n".encode())  # a Windows editor's BOM and CRLF
    np.testing.assert_array_equal(datapipe.read_split_file(path, ids), [1, 0])
    path.write_bytes(bytes(range(256)))
    with pytest.raises(datapipe.DataError, match="is not a text file"):
        datapipe.read_split_file(path, ids)


@needs_splits
def test_public_pascal_lists_match_train_aug():
    train_aug = (SPLITS / "pascal_aug" / "train_aug.txt").read_text().split()
    assert len(train_aug) == 10582
    order = datapipe.read_split_file(SPLITS / "pascal_aug" / "mittal_split0_order.txt", train_aug)
    assert sorted(order.tolist()) == list(range(10582))
    assert [train_aug[i] for i in order[:3]] == (SPLITS / "pascal_aug" / "mittal_split0_order.txt").read_text(
    ).split()[:3]
    for n in (92, 183, 366, 732, 1464):
        path = SPLITS / "pascal_classic" / str(n) / "labeled.txt"
        lines = [line for line in path.read_text().splitlines() if line.strip()]
        matched = datapipe.read_split_file(path, train_aug)
        assert len(matched) == len(lines) == n
        assert [train_aug[i] for i in matched] == [Path(line.split()[0]).stem for line in lines]


@needs_splits
def test_public_cityscapes_lists_match_by_id():
    lists = {f: (SPLITS / "cityscapes" / f / "labeled.txt").read_text().splitlines() for f in ("1_16", "1_8", "1_4",
                                                                                              "1_2")}
    ids = sorted({Path(line.split()[0]).name.replace("_leftImg8bit.png", "") for v in lists.values() for line in v
                  if line.strip()})
    for name, lines in lists.items():
        lines = [line for line in lines if line.strip()]
        matched = datapipe.read_split_file(SPLITS / "cityscapes" / name / "labeled.txt", ids)
        assert len(matched) == len(lines) == {"1_16": 186, "1_8": 372, "1_4": 744, "1_2": 1488}[name]
        assert all(ids[i] in line for i, line in zip(matched, lines, strict=True))


def test_split_file_through_the_script(tmp_path):
    voc = make_voc(tmp_path / "d", n_train=4, n_val=1)
    split_file = tmp_path / "labelled.txt"
    split_file.write_text("JPEGImages/2007_000003.jpg SegmentationClass/2007_000003.png\n"
                          "JPEGImages/2007_000001.jpg SegmentationClass/2007_000001.png\n")
    train_ok(tmp_path, ["--dataset", "pascal_aug", "--data-dir", str(voc), "--split_path", str(split_file)])
    split = json.loads((tmp_path / "run" / "split.json").read_text())
    assert split["labelled"] == [3, 1] and split["unlabelled"] == [0, 1, 2, 3]
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["n_sup"] is None and config["split_file"] == str(split_file)
    split_file.write_text("2007_000003\n2099_000000\n")
    fails_one_line(["--dataset", "pascal_aug", "--data-dir", str(voc), "--split-file", str(split_file),
                    "--out-dir", str(tmp_path / "r2")], "name no training image")


# ----------------------------------------------------------------------------- prepare, check, splits

def test_half_resolution_majority_vote_by_hand():
    label_ids = np.array([[7, 7, 26, 24],
                          [7, 26, 26, 24],
                          [11, 21, 0, 0],
                          [21, 11, 23, 33]], np.uint8)
    # blocks: [7,7,7,26] → 7; [26,24,26,24] tie → lower 24; [11,21,21,11] tie → 11; [0,0,23,33] → 0
    np.testing.assert_array_equal(cityscapes.half_resolution_label(label_ids), [[7, 24], [11, 0]])
    image = np.zeros((4, 4, 3), np.uint8)
    image[:2, :2, 0] = [[0, 1], [1, 1]]  # mean 0.75 → 1
    image[:2, 2:, 0] = [[0, 0], [1, 1]]  # 0.5 → 1 (halves round up)
    image[2:, :2, 0] = [[0, 0], [0, 1]]  # 0.25 → 0
    image[2:, 2:, 0] = [[255, 255], [255, 254]]  # 254.75 → 255
    np.testing.assert_array_equal(cityscapes.half_resolution_image(image)[..., 0], [[1, 1], [0, 255]])
    # the authors' copy: downscale_local_mean(...).astype(uint8), i.e. rounded down
    np.testing.assert_array_equal(cityscapes.half_resolution_image(image, truncate=True)[..., 0], [[0, 0], [0, 254]])


def test_prepare_cityscapes_is_resumable_and_loads(tmp_path, monkeypatch):
    src = make_cityscapes(tmp_path / "cityscapes", h=4, w=4, n_train=2, n_val=1, ids=[7])
    label_ids = np.array([[7, 7, 26, 24], [7, 26, 26, 24], [11, 21, 0, 0], [21, 11, 23, 33]], np.uint8)
    write_label(src / "gtFine" / "train" / "aachen" / "aachen_000000_000019_gtFine_labelIds.png", label_ids)
    runner = CliRunner()
    decoded, read = [], files.read_label_png  # each source label is decoded once: checked and halved from it

    def counting_read(path):
        decoded.append(path)
        return read(path)

    monkeypatch.setattr(prepare_data, "read_label_png", counting_read)
    monkeypatch.setattr(files, "read_label_png", counting_read)
    result = runner.invoke(prepare_data.main, ["prepare", "cityscapes", "--data-dir", str(src)])
    assert result.exit_code == 0, result.output
    assert len(decoded) == len(set(decoded)) == 3, decoded
    monkeypatch.undo()
    dst = tmp_path / "cityscapes_half"
    assert json.loads((dst / "prepared.json").read_text())["samples"] == 3
    bundle = datapipe.build_dataset("cityscapes", data_dir=str(dst))
    np.testing.assert_array_equal(bundle.train.load_label(0), [[0, 11], [2, 255]])  # labelIds [[7,24],[11,0]]
    assert bundle.train.load_image(0).shape == (2, 2, 3)
    result = runner.invoke(prepare_data.main, ["prepare", "cityscapes", "--data-dir", str(src)])
    assert "already prepared" in result.output
    # an interrupted run: no prepared.json, the unfinished mark, one file missing → only that one is redone
    (dst / "prepared.json").unlink()
    (dst / "prepare_unfinished.json").write_text(json.dumps({"dataset": "cityscapes", "source": str(src)}))
    next(dst.glob("leftImg8bit/val/*/*.png")).unlink()
    with pytest.raises(datapipe.DataError, match="unfinished prepared copy") as err:
        datapipe.build_dataset("cityscapes", data_dir=str(dst))
    assert f"prepare cityscapes --data-dir {src} --out-dir {dst}`" in str(err.value)  # the fix, runnable as is
    (dst / "prepare_unfinished.json").write_text("{}")  # a mark without its source: the fix says what to add
    with pytest.raises(datapipe.DataError, match="--data-dir <the original data> --out-dir"):
        datapipe.build_dataset("cityscapes", data_dir=str(dst))
    result = runner.invoke(prepare_data.main, ["prepare", "cityscapes", "--data-dir", str(src), "--out-dir",
                                               str(dst)])
    assert result.exit_code == 0 and "3 samples, 2 already done" in result.output, result.output
    assert len(datapipe.build_dataset("cityscapes", data_dir=str(dst)).val) == 1


def test_prepare_cityscapes_truncated_means_and_no_mixed_resume(tmp_path):
    src = make_cityscapes(tmp_path / "cityscapes", h=4, w=4, n_train=2, n_val=1, ids=[7])
    runner = CliRunner()
    rounded, truncated = tmp_path / "rounded", tmp_path / "truncated"
    for out, extra in ((rounded, []), (truncated, ["--truncate-mean"])):
        result = runner.invoke(prepare_data.main, ["prepare", "cityscapes", "--data-dir", str(src), "--out-dir",
                                                   str(out), *extra])
        assert result.exit_code == 0, result.output
    assert "rounded down" in json.loads((truncated / "prepared.json").read_text())["images"]
    # a finished copy made the other way is not taken for this one
    result = runner.invoke(prepare_data.main, ["prepare", "cityscapes", "--data-dir", str(src), "--out-dir",
                                               str(rounded), "--truncate-mean"])
    assert result.exit_code == 1 and "choose another --out-dir" in result.output, result.output
    result = runner.invoke(prepare_data.main, ["prepare", "cityscapes", "--data-dir", str(src), "--out-dir",
                                               str(truncated), "--truncate-mean"])
    assert result.exit_code == 0 and "already prepared" in result.output, result.output
    source = datapipe.build_dataset("cityscapes", data_dir=str(src)).train.load_image(0).astype(int)
    means = source.reshape(2, 2, 2, 2, 3).sum(axis=(1, 3))
    assert ((means % 4) != 0).any()  # some means are not whole: the two roundings differ
    for out, expected in ((rounded, (means + 2) // 4), (truncated, means // 4)):
        np.testing.assert_array_equal(datapipe.build_dataset("cityscapes", data_dir=str(out)).train.load_image(0),
                                      expected)
    # an interrupted truncated copy is not finished with rounded means (nor the other way round)
    (truncated / "prepared.json").unlink()
    (truncated / "prepare_unfinished.json").write_text(json.dumps(
        {"dataset": "cityscapes", "source": str(src), "images": "2×2 box average, rounded down (the authors')"}))
    result = runner.invoke(prepare_data.main, ["prepare", "cityscapes", "--data-dir", str(src), "--out-dir",
                                               str(truncated)])
    assert result.exit_code == 1 and "resume it with --truncate-mean" in result.output, result.output
    result = runner.invoke(prepare_data.main, ["prepare", "isic2017", "--data-dir", str(src), "--truncate-mean"])
    assert result.exit_code == 1 and "--truncate-mean is for cityscapes" in result.output, result.output


def test_prepare_isic_resizes_and_thresholds(tmp_path):
    src = make_isic(tmp_path / "isic", h=60, w=80, counts=(("Training", 2), ("Validation", 1)))
    result = CliRunner().invoke(prepare_data.main, ["prepare", "isic2017", "--data-dir", str(src), "--out-dir",
                                                    str(tmp_path / "out"), "--workers", "2"])
    assert result.exit_code == 0, result.output
    bundle = datapipe.build_dataset("isic2017", data_dir=str(tmp_path / "out"))
    assert bundle.test is None and len(bundle.train) == 2
    assert bundle.train.load_image(0).shape == (248, 248, 3)
    label = bundle.train.load_label(1)
    assert label.shape == (248, 248) and set(np.unique(label)) == {0, 1} and label[124, 124] == 1
    mask = np.array([[255, 0, 255, 255],
                     [0, 0, 0, 255],
                     [255, 0, 0, 0],
                     [255, 0, 0, 0]], np.uint8)  # 2×2 blocks hold 1, 3, 2 and 0 lesion pixels
    _, small = prepare_data.resize_isic(np.zeros((4, 4, 3), np.uint8), mask, size=2)
    np.testing.assert_array_equal(small, [[0, 255], [255, 0]])  # area means 64, 191, 128 (≥ 127), 0
    _, same = prepare_data.resize_isic(np.zeros((2, 2, 3), np.uint8), np.array([[127, 126], [0, 255]], np.uint8), 2)
    np.testing.assert_array_equal(same, [[255, 0], [0, 255]])  # 127 is lesion, as the authors' ">= 127"


@pytest.mark.parametrize("bad", ["values", "size"])
def test_prepare_checks_source_masks_and_refuses_a_prepared_copy(tmp_path, bad):
    src = make_isic(tmp_path / "isic", h=60, w=80, counts=(("Training", 2), ("Validation", 1)))
    mask_path = sorted((src / "ISIC-2017_Training_Part1_GroundTruth").glob("*.png"))[0]
    mask = np.array(Image.open(mask_path))
    broken = (mask // 255).astype(np.uint8) if bad == "values" else mask[:-2]  # 0/1 values; 2 rows short
    Image.fromarray(broken).save(mask_path)
    out = tmp_path / "out"
    result = CliRunner().invoke(prepare_data.main, ["prepare", "isic2017", "--data-dir", str(src), "--out-dir",
                                                    str(out)])
    assert result.exit_code != 0 and str(mask_path) in result.output and "Traceback" not in result.output
    lines = result.output.strip().splitlines()  # the count, the progress bar, then the error on one line
    assert len(lines) <= 3 and lines[-1].startswith("Error: label ") and str(mask_path) in lines[-1], lines
    assert not (out / "prepared.json").exists()
    Image.fromarray(mask).save(mask_path)  # repaired: the copy is made; preparing the copy itself is refused
    assert CliRunner().invoke(prepare_data.main, ["prepare", "isic2017", "--data-dir", str(src), "--out-dir",
                                                  str(out)]).exit_code == 0
    again = CliRunner().invoke(prepare_data.main, ["prepare", "isic2017", "--data-dir", str(out)])
    assert again.exit_code != 0 and "itself a prepared copy" in again.output


def test_check_lists_every_bad_file(tmp_path):
    voc = make_voc(tmp_path, n_train=3, n_val=1)
    runner = CliRunner()
    result = runner.invoke(prepare_data.main, ["check", "--dataset", "pascal_aug", "--data-dir", str(voc)])
    assert result.exit_code == 0 and "all 4 samples read correctly" in result.output, result.output
    (voc / "JPEGImages" / "2007_000001.jpg").write_bytes(b"garbage")
    write_label(voc / "SegmentationClassAug" / "2008_000000.png", stripes(36, 44, [0, 99]))
    result = runner.invoke(prepare_data.main, ["check", "--dataset", "pascal_aug", "--data-dir", str(voc)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "cannot read image" in result.output and "2008_000000.png: label values [99]" in result.output
    assert "2 bad files among 4 samples" in result.output
    result = runner.invoke(prepare_data.main, ["check", "--dataset", "camvid", "--data-dir", str(tmp_path / "no")])
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1 and "dataset root" in result.output


class Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_splits_command_uses_a_numpy_only_unpickler(tmp_path):
    names = [f"2007_{i:06d}" for i in range(6)]
    (tmp_path / "train_aug.txt").write_text("\n".join(names) + "\n")
    perm = np.array([4, 0, 5, 1, 3, 2])
    runner = CliRunner()
    for protocol, obj in ((2, perm), (4, perm), (5, perm), (4, perm.tolist())):  # numpy arrays, or a list of ints
        (tmp_path / "split_0.pkl").write_bytes(pickle.dumps(obj, protocol=protocol))
        result = runner.invoke(prepare_data.main, ["splits", str(tmp_path / "split_0.pkl"), "--train-list",
                                                   str(tmp_path / "train_aug.txt"), "--out", str(tmp_path / "o.txt")])
        assert result.exit_code == 0, result.output
        assert (tmp_path / "o.txt").read_text().split() == [names[i] for i in perm]
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps(Evil()))
    result = runner.invoke(prepare_data.main, ["splits", str(tmp_path / "evil.pkl"), "--train-list",
                                               str(tmp_path / "train_aug.txt"), "--out", str(tmp_path / "e.txt")])
    assert result.exit_code == 1 and "refused to load builtins.print" in result.output
    assert "never run" not in result.output and not (tmp_path / "e.txt").exists()
    (tmp_path / "big.pkl").write_bytes(pickle.dumps(np.arange(7)))
    result = runner.invoke(prepare_data.main, ["splits", str(tmp_path / "big.pkl"), "--train-list",
                                               str(tmp_path / "train_aug.txt"), "--out", str(tmp_path / "b.txt")])
    assert result.exit_code == 1 and "has 6 names" in result.output


@needs_splits
def test_splits_command_reproduces_the_public_mittal_order(tmp_path):
    train_aug = (SPLITS / "pascal_aug" / "train_aug.txt").read_text().split()
    mittal = (SPLITS / "pascal_aug" / "mittal_split0_order.txt").read_text().split()
    position = {name: i for i, name in enumerate(train_aug)}
    (tmp_path / "split_0.pkl").write_bytes(pickle.dumps(np.array([position[n] for n in mittal]), protocol=2))
    result = CliRunner().invoke(prepare_data.main, ["splits", str(tmp_path / "split_0.pkl"), "--train-list",
                                                    str(SPLITS / "pascal_aug" / "train_aug.txt"), "--out",
                                                    str(tmp_path / "order.txt")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "order.txt").read_text().split() == mittal


# ----------------------------------------------------------------------------- evaluation helpers used by ISIC

def test_fill_holes_and_per_image_jaccard():
    pred = torch.zeros(1, 5, 5, dtype=torch.int64)
    pred[0, 1:4, 1:4] = 1
    pred[0, 2, 2] = 0  # a hole
    filled = evaluation.fill_holes(pred)
    assert filled[0, 2, 2] == 1 and filled.sum() == 9 and pred[0, 2, 2] == 0
    label = torch.zeros(2, 5, 5, dtype=torch.int64)
    label[0, 1:4, 1:4] = 1
    both = torch.cat([filled, torch.zeros(1, 5, 5, dtype=torch.int64)])
    np.testing.assert_allclose(evaluation.image_iou(both, label, 1).numpy(), [1.0, 1.0])  # empty vs empty = 1
    np.testing.assert_allclose(evaluation.image_iou(pred, label[:1], 1).numpy(), [8 / 9])
    # each image on its own: filled as one 3-D volume, the hole would meet image 2's open background
    batch = evaluation.fill_holes(torch.cat([pred, torch.zeros(1, 5, 5, dtype=torch.int64)]))
    assert batch[0, 2, 2] == 1 and batch[1].sum() == 0


# ----------------------------------------------------------------------------- Fashion-MNIST canvases

@needs_fashion
def test_fashion_canvas_is_deterministic_and_labelled_by_garment():
    bundle = datapipe.build_dataset("fashion_canvas", fashion_n_train=30, fashion_n_val=10)
    again = datapipe.build_dataset("fashion_canvas", fashion_n_train=30, fashion_n_val=10)
    assert bundle.num_classes == 11 and len(bundle.test) == 10
    image, label = bundle.train.load_image(3), bundle.train.load_label(3)
    assert image.shape == (64, 64, 3) and label.shape == (64, 64) and label.max() <= 10
    np.testing.assert_array_equal(image, again.train.load_image(3))
    assert not np.array_equal(image, bundle.val.load_image(3))
    labels = np.stack([bundle.train.load_label(i) for i in range(30)])
    assert len(np.unique(labels)) == 11 and 0.5 < (labels == 0).mean() < 0.85
    garment = label > 0  # garments are brighter than their dim background on average
    assert image[garment].mean() > image[~garment].mean()


@needs_fashion
def test_fashion_canvas_trains_and_reports_test_miou(tmp_path):
    final = train_ok(tmp_path, ["--dataset", "fashion_canvas", "--fashion-n-train", "8", "--fashion-n-val", "4",
                                "--n-sup", "4", "--eval-batch-size", "4"])
    assert len(final["per_class_iou"]) == 11 and "test_miou" in final
    fails_one_line(["--dataset", "fashion_canvas", "--data-dir", str(tmp_path), "--out-dir", str(tmp_path / "x")],
                   "does not hold the Fashion-MNIST IDX files")


def test_fashion_idx_reader_rejects_bad_files(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x00\x00\x08\x03" + (2).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2 + b"x")
    with pytest.raises(datapipe.DataError, match="truncated"):
        fashion_canvas.read_idx(tmp_path / "bad")
    (tmp_path / "good").write_bytes(b"\x00\x00\x08\x01" + (3).to_bytes(4, "big") + bytes([1, 2, 9]))
    np.testing.assert_array_equal(fashion_canvas.read_idx(tmp_path / "good"), [1, 2, 9])
    header_cut = b"\x00\x00\x08\x03" + (2).to_bytes(4, "big") + b"\x00\x00"  # 3-D, cut inside its shape
    for name, content in (("empty", b""), ("short", b"\x00\x00"), ("corrupt.gz", b"\x1f\x8b\x08\x00" + bytes(20)),
                          ("header_cut", header_cut)):
        (tmp_path / name).write_bytes(content)
        with pytest.raises(datapipe.DataError, match=name.replace(".", r"\.")):
            fashion_canvas.read_idx(tmp_path / name)


# ----------------------------------------------------------------------------- splits: bad input, files kept

def splits_fails(args, message: str):
    """Exit code 1, one ``Error:`` line holding ``message``, no traceback."""
    result = CliRunner().invoke(prepare_data.main, ["splits", *map(str, args)])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert result.output.strip().splitlines() == [result.output.strip()], result.output
    assert result.output.startswith("Error: ") and message in result.output, result.output


def test_splits_command_keeps_existing_files_and_refuses_bad_input(tmp_path):
    names = [f"2007_{i:06d}" for i in range(3)]
    train_list = tmp_path / "train_aug.txt"
    train_list.write_text("\n".join(names) + "\n")
    (tmp_path / "split_0.pkl").write_bytes(pickle.dumps(np.array([2, 0, 1])))
    (tmp_path / "short.pkl").write_bytes(pickle.dumps(np.array([2, 0])))
    (tmp_path / "mine.txt").write_text("my own order\n")
    (tmp_path / "binary.txt").write_bytes(bytes(range(256)))
    args = [tmp_path / "split_0.pkl", "--train-list", train_list, "--out"]
    splits_fails([*args, train_list], "is --train-list itself; choose another file")
    splits_fails([*args, train_list, "--overwrite"], "is --train-list itself")
    splits_fails([*args, tmp_path / "mine.txt"], f"--out {tmp_path / 'mine.txt'} exists with other contents; pass "
                                                 f"--overwrite to replace it")
    splits_fails([*args, tmp_path / "mine.txt" / "x.txt"], "cannot write --out")
    splits_fails([tmp_path / "short.pkl", "--train-list", train_list, "--out", tmp_path / "o.txt"],
                 "holds 2 indices but the training list has 3 names")
    splits_fails([tmp_path / "split_0.pkl", "--train-list", tmp_path / "binary.txt", "--out", tmp_path / "o.txt"],
                 "is not a text file; pass train_aug.txt")
    for damaged in (b"\x80\x04garbage", pickle.dumps(np.array([2, 0, 1]))[:-5], b"\x80\x02X\x01\x00\x00\x00"):
        (tmp_path / "damaged.pkl").write_bytes(damaged)
        splits_fails([tmp_path / "damaged.pkl", "--train-list", train_list, "--out", tmp_path / "o.txt"],
                     "cannot read")
    assert train_list.read_text() == "\n".join(names) + "\n" and (tmp_path / "mine.txt").read_text() == "my own order\n"
    assert not (tmp_path / "o.txt").exists()
    result = CliRunner().invoke(prepare_data.main, ["splits", *map(str, args), str(tmp_path / "mine.txt"),
                                                    "--overwrite"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "mine.txt").read_text().split() == [names[2], names[0], names[1]]
    train_list.write_bytes(("\ufeff" + "\r\n".join(names) + "\r\n").encode())  # a Windows editor's BOM and CRLF
    result = CliRunner().invoke(prepare_data.main, ["splits", *map(str, args), str(tmp_path / "bom.txt")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "bom.txt").read_text().split() == [names[2], names[0], names[1]]
