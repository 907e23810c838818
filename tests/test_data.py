import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from precompute import store as st
from precompute.types import MaskSet, SamaugError, SettingError
from samaug.demo.synthetic import tissue_image
from tests.support.http import serve
from train import fusion as tf
from train import targets as tt
from train import tasks as tk
from train.data import augment as ta
from train.data import datasets as td
from train.data import loader as tl

PATCH = 64
DATASET = {"name": "toy", "reader_options": {}, "splits": {"train": 4, "test": 1}}
MASKER = {"kind": "superpixel", "settings": {}}
STILL = ta.AugmentSettings(enabled=False)
# Geometry only: jitter ranges of 0 leave the pixels bit-exact (see train.data.augment.jitter).
NO_JITTER = dict(brightness=0.0, contrast=0.0, color=0.0)


def put(path, image_id, split, image, label, seg, boundary):
    height, width = image.shape[:2]
    st.write_image(
        path,
        image_id,
        split,
        image,
        label,
        MaskSet.empty(height, width),
        seg,
        boundary,
        {"image": f"{image_id}.png"},
        {"read": 0.0},
    )


def coded(shape, seed, block):
    """Maps that encode one another: image ch0 = 200 * label, label 0/1 in blocks,
    ch1 a position code, seg_prior = ch1 / 255, boundary_prior = label."""
    rng = np.random.default_rng(seed)
    height, width = shape
    cells = rng.integers(0, 2, (height // block + 1, width // block + 1))
    label = np.kron(cells, np.ones((block, block), int))[:height, :width].astype(np.int32)
    yy, xx = np.mgrid[:height, :width]
    image = np.stack([label * 200, (yy * 7 + xx * 3) % 256, (yy * xx) % 256], axis=-1).astype(
        np.uint8
    )
    seg = image[..., 1].astype(np.float32) / 255
    return image, label, seg, label.astype(np.uint8)


@pytest.fixture(scope="module")
def coded_store(tmp_path_factory):
    """A store of ``coded`` maps (and one of nuclei), with images smaller and larger than
    the patch (and than one 256 chunk); tests only read it."""
    path = tmp_path_factory.mktemp("data") / "toy.zarr"
    st.prepare_store(path, st.store_root_attrs(DATASET, MASKER))
    maps = {
        "small": coded((40, 50), 1, 8),
        "wide": coded((70, 300), 2, 8),
        "large": coded((270, 260), 3, 8),
    }
    image, label = tissue_image(150, 170, 60, seed=4, radius=(3, 9))
    rng = np.random.default_rng(5)
    maps["nuclei"] = (image, label, rng.random(label.shape, np.float32) * 3, label > 0)
    for image_id, (image, label, seg, boundary) in maps.items():
        put(path, image_id, "train", image, label, seg, boundary.astype(np.uint8))
    blank = np.zeros((20, 30, 3), np.uint8)
    put(path, "unlabelled", "test", blank, None, blank[..., 0] * 0.0, blank[..., 0])
    st.set_index(path, {**dict.fromkeys(maps, "train"), "unlabelled": "test"})
    return path, maps


def test_an_epoch_tiles_every_image_once_unless_told_its_length(coded_store):
    path, _ = coded_store
    ids = ["large", "small", "wide"]
    ds = td.PatchDataset(path, ids, PATCH, "binary", STILL)
    tiles = {"large": 5 * 5, "small": 1 * 1, "wide": 2 * 5}  # ceil(H / 64) * ceil(W / 64)
    assert ds.tiles == len(ds) == sum(tiles.values()) == 36
    drawn = [ds.image_of(i) for i in range(len(ds))]
    assert drawn == ["large"] * 25 + ["small"] + ["wide"] * 10
    assert [ds[i]["image_id"] for i in (0, 24, 25, 26, 35)] == ["large"] * 2 + ["small"] + [
        "wide"
    ] * 2
    with pytest.raises(IndexError):
        ds[36]
    told = td.PatchDataset(path, ids, PATCH, "binary", STILL, samples_per_epoch=5)
    assert len(told) == 5 and [told.image_of(i) for i in range(5)] == [*ids, *ids[:2]]
    assert td.tile_count((256, 257), 256) == 2 and td.tile_count((1000, 1000), 224) == 25


def test_items_shapes_dtypes_and_padding(coded_store):
    path, maps = coded_store
    ds = td.PatchDataset(path, ["small", "large"], PATCH, "binary", STILL)
    assert len(ds) == 1 + 5 * 5  # 64-pixel tiles of 40 x 50 and of 270 x 260
    item = ds[0]
    assert set(item) == {"image", "seg_prior", "boundary_prior", "target", "image_id", "window"}
    assert item["image_id"] == "small"
    for key, shape, dtype in [
        ("image", (3, PATCH, PATCH), torch.float32),
        ("seg_prior", (1, PATCH, PATCH), torch.float32),
        ("boundary_prior", (1, PATCH, PATCH), torch.float32),
        ("target", (PATCH, PATCH), torch.int64),
    ]:
        assert item[key].shape == shape and item[key].dtype == dtype, key
    image, label, seg, boundary = maps["small"]
    assert item["window"].tolist() == [0, 0, 40, 50]
    # Data in the top-left, padding (0 / IGNORE_INDEX) at the bottom and right.
    np.testing.assert_array_equal(
        item["image"][:, :40, :50].numpy() * 255, image.transpose(2, 0, 1)
    )
    np.testing.assert_array_equal(item["seg_prior"][0, :40, :50].numpy(), seg)
    np.testing.assert_array_equal(item["boundary_prior"][0, :40, :50].numpy(), boundary)
    np.testing.assert_array_equal(item["target"][:40, :50].numpy(), label)
    for key in ("image", "seg_prior", "boundary_prior"):
        assert item[key][..., 40:, :].abs().sum() == 0 and item[key][..., 50:].abs().sum() == 0
    assert (item["target"][40:] == tt.IGNORE_INDEX).all()
    assert (item["target"][:, 50:] == tt.IGNORE_INDEX).all()
    # A large image gives a full patch read from inside it.
    item = ds[1]
    y0, x0, y1, x1 = item["window"].tolist()
    assert (y1 - y0, x1 - x0) == (PATCH, PATCH)
    np.testing.assert_array_equal(item["seg_prior"][0].numpy(), maps["large"][2][y0:y1, x0:x1])
    assert (item["target"] >= 0).all()


def check_coded(item, exact):
    """The relations of ``coded`` hold on the valid pixels of an augmented item.

    Returns (pixels checked, valid pixels).
    """
    image, seg, boundary = item["image"], item["seg_prior"][0], item["boundary_prior"][0]
    target = item["target"]
    valid = target != tt.IGNORE_INDEX
    # Priors are never jittered and are resampled with the image: ch1 == seg_prior.
    torch.testing.assert_close(seg, image[1], rtol=0, atol=0 if exact else 1e-6)
    expected = (target.clamp(min=0) * 200).float() / 255
    inner = valid
    if not exact:
        # Bilinear image vs nearest target agree away from label edges: where the target
        # is uniform over 3x3 (enough for scales >= 0.5 and 8-px blocks).
        pool = torch.nn.functional.max_pool2d
        padded = torch.nn.functional.pad(target[None, None].float(), (1, 1, 1, 1), value=-1)
        inner = valid & (pool(padded, 3, 1)[0, 0] == -pool(-padded, 3, 1)[0, 0])
    atol = 0 if exact else 1e-5
    torch.testing.assert_close(image[0][inner], expected[inner], rtol=0, atol=atol)
    torch.testing.assert_close(boundary[inner], target[inner].float(), rtol=0, atol=atol)
    for channel in (image, item["seg_prior"], item["boundary_prior"]):
        assert channel[:, ~valid].abs().sum() == 0
    return int(inner.sum()), int(valid.sum())


@pytest.mark.parametrize("scale", [(1.0, 1.0), (0.5, 2.0)])
def test_augmentation_keeps_image_priors_and_target_aligned(coded_store, scale):
    path, _ = coded_store
    augment = ta.AugmentSettings(scale=scale, **NO_JITTER)
    ds = td.PatchDataset(path, ["small", "wide", "large"], PATCH, "binary", augment, 48, seed=3)
    orientations, checked, valid = set(), 0, 0
    for index in range(len(ds)):
        item = ds[index]
        counts = check_coded(item, exact=scale == (1.0, 1.0))
        checked, valid = checked + counts[0], valid + counts[1]
        # ch1 = (7y + 3x) mod 256 tells the orientation of a full patch.
        if (item["target"] != tt.IGNORE_INDEX).all() and scale == (1.0, 1.0):
            code = item["image"][1] * 255
            step_x = round(float(code[0, 1] - code[0, 0])) % 256
            step_y = round(float(code[1, 0] - code[0, 0])) % 256
            orientations.add((step_x, step_y))
    assert checked > 0.5 * valid
    if scale == (1.0, 1.0):
        assert len(orientations) >= 6  # most of the 8 flips/rotations happened


def test_jitter_changes_the_image_only(coded_store):
    path, _ = coded_store
    jittered = td.PatchDataset(path, "train", PATCH, "glands", ta.AugmentSettings(), 8)
    plain = td.PatchDataset(path, "train", PATCH, "glands", ta.AugmentSettings(**NO_JITTER), 8)
    for index in range(len(plain)):
        a, b = jittered[index], plain[index]
        for key in ("seg_prior", "boundary_prior", "target", "window"):
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
        assert (a["image"] - b["image"]).abs().max() > 0.01
        assert 0 <= a["image"].min() and a["image"].max() <= 1


def test_instance_target_by_hand():
    label = np.zeros((12, 12), np.int32)
    label[1:7, 1:7] = 1  # a 6x6 square
    label[1:7, 7:10] = 2  # touching it on the right
    label[9, 9] = 3  # one pixel
    label[8:12, 0:6] = 4  # on the bottom-left image border
    expected = np.zeros_like(label, dtype=np.int64)
    expected[1:7, 1:7] = 2
    expected[3:5, 3:5] = 1  # 2-px band inside the square
    expected[1:7, 7:10] = 2  # 3 px wide: all band
    expected[9, 9] = 2
    expected[8:12, 0:6] = 2
    expected[10:12, 0:4] = 1  # the image border is no boundary
    target = tt.instance_target(label)
    np.testing.assert_array_equal(target, expected)
    one = tt.instance_target(label, boundary_width=1)
    assert one[2, 2] == 1 and one[1, 2] == 2 and one[2, 6] == 2 and one[2, 7] == 2
    np.testing.assert_array_equal(one > 0, label > 0)
    np.testing.assert_array_equal(
        tt.binary_target(np.array([[0, 3], [7, 0]])), np.array([[0, 1], [1, 0]])
    )


def test_patch_targets_equal_the_whole_image_target(coded_store):
    path, maps = coded_store
    label = maps["nuclei"][1]
    whole = tt.instance_target(label)
    assert (whole == 1).any() and (whole == 2).any()
    ds = td.PatchDataset(path, ["nuclei"], PATCH, "glands", STILL, 24)
    binary = td.PatchDataset(path, ["nuclei"], PATCH, "binary", STILL, 24)
    for index in range(len(ds)):
        item = ds[index]
        y0, x0, y1, x1 = item["window"].tolist()
        np.testing.assert_array_equal(item["target"].numpy(), whole[y0:y1, x0:x1])
        np.testing.assert_array_equal(binary[index]["target"].numpy(), label[y0:y1, x0:x1] > 0)


def test_determinism_epochs_and_seeds(coded_store):
    path, _ = coded_store

    def items(seed=0, epoch=0):
        ds = td.PatchDataset(path, "train", PATCH, "glands", samples_per_epoch=6, seed=seed)
        ds.set_epoch(epoch)
        return [ds[i] for i in range(len(ds))]

    def same(a, b):
        return all(
            torch.equal(x[k], y[k]) for x, y in zip(a, b, strict=True) for k in ("image", "target")
        )

    first = items()
    assert same(first, items())
    assert not same(first, items(epoch=1))
    assert not same(first, items(seed=1))
    ds = td.PatchDataset(path, "train", PATCH, "glands", samples_per_epoch=6)
    assert torch.equal(ds[(1, 2)]["image"], items(epoch=1)[2]["image"])
    with pytest.raises(IndexError):
        ds[6]


def test_spawn_workers_give_the_same_batches(coded_store):
    path, _ = coded_store
    ds = td.PatchDataset(path, "train", PATCH, "glands", samples_per_epoch=8, seed=2)
    serial = tl.make_loader(ds, batch_size=3, workers=0, shuffle=True)
    parallel = tl.make_loader(ds, batch_size=3, workers=2, shuffle=True)
    assert parallel.multiprocessing_context.get_start_method() == "spawn"
    assert parallel.persistent_workers
    seen = []
    for epoch in (0, 1):
        ds.set_epoch(epoch)
        expected, got = list(serial), list(parallel)
        assert len(got) == len(expected) == 3
        for a, b in zip(expected, got, strict=True):
            assert a["image_id"] == b["image_id"]
            for key in ("image", "seg_prior", "boundary_prior", "target", "window"):
                assert torch.equal(a[key], b[key]), key
        seen.append(got[0]["image"])
    assert not torch.equal(seen[0], seen[1])  # the epoch reached the persistent workers
    with pytest.raises(ValueError, match="fork"):
        tl.make_loader(ds, 2, workers=1, context="fork")


def test_http_reads_the_same_patches(coded_store):
    path, _ = coded_store
    local = td.PatchDataset(path, "train", PATCH, "glands", samples_per_epoch=4)
    with serve(Path(path).parent) as url:
        remote = td.PatchDataset(
            f"{url}/{Path(path).name}", "train", PATCH, "glands", samples_per_epoch=4
        )
        for index in range(len(local)):
            a, b = local[index], remote[index]
            for key in ("image", "seg_prior", "boundary_prior", "target", "window"):
                assert torch.equal(a[key], b[key]), key
        whole = next(td.iter_images(f"{url}/{Path(path).name}", ["large"]))
    np.testing.assert_array_equal(
        whole["seg_prior"][0].numpy(), local.store.read("large", "seg_prior")
    )


def test_whole_images(coded_store):
    path, maps = coded_store
    items = list(td.iter_images(path, "train", task="glands"))
    assert [i["image_id"] for i in items] == ["large", "nuclei", "small", "wide"]
    for item in items:
        image, label, seg, boundary = maps[item["image_id"]]
        np.testing.assert_array_equal(item["image"].numpy() * 255, image.transpose(2, 0, 1))
        np.testing.assert_array_equal(item["seg_prior"][0].numpy(), seg)
        np.testing.assert_array_equal(item["boundary_prior"][0].numpy(), boundary)
        np.testing.assert_array_equal(item["label"].numpy(), label)
        np.testing.assert_array_equal(item["target"].numpy(), tt.instance_target(label))
    (unlabelled,) = td.iter_images(path, "test")
    assert "label" not in unlabelled and unlabelled["image"].shape == (3, 20, 30)
    with pytest.raises(SamaugError, match="has no label"):
        td.PatchDataset(path, "test", PATCH, "binary")[0]


def test_tasks_and_errors(coded_store):
    path, _ = coded_store
    names = ("glas", "monuseg", "kvasir", "polyp", "folder")
    assert [tk.task_for_dataset(n) for n in names] == [
        "glands",
        "nuclei",
        "binary",
        "binary",
        "binary",
    ]
    # One record per task: target, outputs, activation and loss agree with each other.
    outputs = {name: tk.get_task(name).num_outputs for name in tk.list_tasks()}
    assert outputs == {"binary": 1, "glands": 3, "nuclei": 3}
    assert tk.get_task("binary").activation == "sigmoid"
    assert tk.get_task("glands").target is tt.instance_target
    with pytest.raises(SamaugError, match="known: folder, glas"):
        tk.task_for_dataset("isic")
    with pytest.raises(SettingError, match="valid: binary, glands, nuclei"):
        td.PatchDataset(path, "train", task="semantic")
    with pytest.raises(SamaugError, match="split 'val'"):
        td.PatchDataset(path, "val")
    with pytest.raises(SamaugError, match="nope"):
        td.PatchDataset(path, ["small", "nope"])
    with pytest.raises(ValueError, match="scale"):
        ta.AugmentSettings(scale=(2.0, 1.0))


def test_fusions_on_a_tiny_batch():
    image = torch.rand(2, 3, 4, 5)
    seg = torch.rand(2, 1, 4, 5) * 3
    boundary = (torch.rand(2, 1, 4, 5) > 0.5).float()
    add = tf.FusionSettings()
    assert (add.kind, add.seg_scale, tf.in_channels(add)) == ("add", 1.0, 3)
    out = tf.fuse(image, seg, boundary, dataclasses.replace(add, seg_scale=0.5))
    torch.testing.assert_close(out[:, 0], image[:, 0])
    torch.testing.assert_close(out[:, 1], image[:, 1] + 0.5 * seg[:, 0])
    torch.testing.assert_close(out[:, 2], image[:, 2] + boundary[:, 0])
    assert torch.equal(tf.raw(image, add), image)
    concat = tf.FusionSettings("concat", seg_scale=2.0)
    assert tf.in_channels(concat) == 5
    out = tf.fuse(image, seg, boundary, concat)
    assert out.shape == (2, 5, 4, 5)
    torch.testing.assert_close(out, torch.cat([image, 2 * seg, boundary], 1))
    raw = tf.raw(image, concat)
    assert raw.shape == (2, 5, 4, 5) and torch.equal(raw[:, :3], image)
    assert raw[:, 3:].abs().sum() == 0
    # Unbatched items work too, and the inputs are left alone.
    before = image[0].clone()
    assert tf.fuse(image[0], seg[0], boundary[0], add).shape == (3, 4, 5)
    assert torch.equal(image[0], before)
    assert tf.list_fusions() == ["add", "concat"]
    with pytest.raises(ValueError, match="--fusion 'mul': no such fusion; valid: add, concat"):
        tf.FusionSettings("mul")
    with pytest.raises(ValueError, match="does not go with image"):
        tf.fuse(image, seg[:, :, :3], boundary, add)


def test_importing_the_data_modules_does_not_import_sam():
    code = (
        "import json, sys, train.data.datasets, train.fusion; "
        "print(json.dumps('segment_anything' in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parents[1],
    )
    assert json.loads(out.stdout) is False
