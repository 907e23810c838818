"""`samaug export-dataset --format nnunet` (issue 16, item 12): a store as an nnU-Net v2 raw
dataset, checked against nnU-Net's documented layout (and its own integrity check where
``nnunetv2`` is installed); and nnU-Net's fixed folds for samaug's trainer (`--fold`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from precompute.store import open_store
from precompute.types import SettingError
from tests.support.cli import one_error_line, samaug
from train.folds import fold_ids, folds_of
from train.results.nnunet_export import PRIOR_SCALE
from train.targets import BOUNDARY_WIDTH
from train.tasks import get_task
from train.training.config import TrainConfig
from train.training.run_setup import split_ids


def read_png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


def check_nnunet_layout(folder: Path) -> dict:
    """nnU-Net v2's documented raw layout (documentation/dataset_format.md): dataset.json's
    required keys; for every training case, one file per channel, ``_0000`` upwards, and a
    label of the same size whose values are the dataset's labels; the same channels for
    every test case; ``numTraining`` cases. Returns dataset.json."""
    meta = json.loads((folder / "dataset.json").read_text())
    assert {"channel_names", "labels", "numTraining", "file_ending"} <= set(meta)
    channels, ending = len(meta["channel_names"]), meta["file_ending"]
    assert sorted(meta["channel_names"]) == [str(i) for i in range(channels)]
    assert sorted(meta["labels"].values()) == list(range(len(meta["labels"])))
    assert meta["labels"]["background"] == 0
    cases = sorted(p.name[: -len(ending)] for p in (folder / "labelsTr").iterdir())
    assert len(cases) == meta["numTraining"]
    for part, names in (("imagesTr", cases), ("imagesTs", None)):
        files = sorted(p.name for p in (folder / part).iterdir())
        if names is None:
            names = sorted({f[: -len(ending) - 5] for f in files})
        assert files == sorted(f"{c}_{k:04d}{ending}" for c in names for k in range(channels))
        for case in names:
            shapes = {
                read_png(folder / part / f"{case}_{k:04d}{ending}").shape for k in range(channels)
            }
            assert len(shapes) == 1 and len(next(iter(shapes))) == 2
            if part == "imagesTr":
                label = read_png(folder / "labelsTr" / f"{case}{ending}")
                assert {label.shape} == shapes
                assert set(np.unique(label)) <= set(meta["labels"].values())
    return meta


def nnunet_integrity(folder: Path) -> None:
    """nnU-Net's own check of a raw dataset, where nnunetv2 is installed."""
    try:
        from nnunetv2.experiment_planning.verify_dataset_integrity import (
            verify_dataset_integrity,
        )
    except ImportError:
        return
    verify_dataset_integrity(str(folder), num_processes=1)


def test_channels_export_is_an_nnunet_dataset_of_the_store(glas_store, tmp_path):
    result = samaug("export-dataset", glas_store, tmp_path, "--priors", "channels", "--folds", "4")
    assert result.returncode == 0, result.stderr
    folder = tmp_path / "Dataset500_glas_channels"
    assert str(folder) in result.stdout and "8 training and 4 test images" in result.stdout
    meta = check_nnunet_layout(folder)
    nnunet_integrity(folder)
    assert meta["channel_names"] == {
        "0": "R",
        "1": "G",
        "2": "B",
        "3": "seg_prior",
        "4": "boundary_prior",
    }
    assert meta["labels"] == {"background": 0, "interior": 1, "boundary": 2}
    store = open_store(glas_store)
    assert meta["numTraining"] == len(store.ids("train")) == 8
    assert sorted(p.name for p in (folder / "imagesTs").iterdir())[0].startswith("testA_")
    image_id = store.ids("train")[3]
    image = store.read(image_id, "image")
    for c in range(3):
        assert np.array_equal(
            read_png(folder / "imagesTr" / f"{image_id}_{c:04d}.png"), image[..., c]
        )
    seg = read_png(folder / "imagesTr" / f"{image_id}_0003.png")
    assert seg.dtype == np.uint16
    np.testing.assert_allclose(seg / PRIOR_SCALE, store.read(image_id, "seg_prior"), atol=5e-4)
    boundary = read_png(folder / "imagesTr" / f"{image_id}_0004.png")
    assert np.array_equal(boundary, store.read(image_id, "boundary_prior"))
    label = read_png(folder / "labelsTr" / f"{image_id}.png")
    target = get_task("glands").target(store.read(image_id, "label"), BOUNDARY_WIDTH)
    assert np.array_equal(label, target) and set(np.unique(label)) == {0, 1, 2}
    splits = json.loads((folder / "splits_final.json").read_text())
    assert splits == folds_of(store.ids("train"), 4)
    record = json.loads((folder / "samaug.json").read_text())
    assert record["settings"]["priors"] == "channels" and record["prior_scale"] == PRIOR_SCALE


def test_add_export_is_the_augmented_image_and_a_rerun_keeps_what_is_written(glas_store, tmp_path):
    args = ("export-dataset", glas_store, tmp_path, "--task", "binary", "--test-split", "testA")
    assert samaug(*args).returncode == 0
    folder = tmp_path / "Dataset500_glas_add"
    meta = check_nnunet_layout(folder)
    assert meta["labels"] == {"background": 0, "foreground": 1}
    assert len(list((folder / "imagesTs").iterdir())) == 2 * 3  # testA only, 3 channels
    store = open_store(glas_store)
    image_id = store.ids("train")[0]
    image = store.read(image_id, "image") / 255
    expected = [
        image[..., 0],
        image[..., 1] + store.read(image_id, "seg_prior"),
        image[..., 2] + store.read(image_id, "boundary_prior"),
    ]
    for c, values in enumerate(expected):
        stored = read_png(folder / "imagesTr" / f"{image_id}_{c:04d}.png") / PRIOR_SCALE
        np.testing.assert_allclose(stored, values, atol=5e-4)
    label = read_png(folder / "labelsTr" / f"{image_id}.png")
    assert np.array_equal(label, (store.read(image_id, "label") > 0).astype(np.uint8))

    # An interrupted export goes on: a lost file is written again, the rest kept.
    (folder / "imagesTr" / f"{image_id}_0002.png").unlink()
    again = samaug(*args)
    assert again.returncode == 0, again.stderr
    assert "1 written, 9 kept from an earlier run" in again.stdout
    np.testing.assert_allclose(
        read_png(folder / "imagesTr" / f"{image_id}_0002.png") / PRIOR_SCALE,
        expected[2],
        atol=5e-4,
    )
    # Other settings into the same folder are refused in one line.
    line = one_error_line(samaug("export-dataset", glas_store, tmp_path, "--test-split", "testB"))
    assert str(folder) in line and "other settings" in line


def test_export_refuses_bad_settings_in_one_line(glas_store, tmp_path):
    line = one_error_line(samaug("export-dataset", glas_store, tmp_path, "--split", "nope"))
    assert "nope" in line
    line = one_error_line(
        samaug("export-dataset", glas_store, tmp_path, "--split", "train", "--test-split", "train")
    )
    assert "'train' is given both" in line
    line = one_error_line(samaug("export-dataset", glas_store, tmp_path, "--name", "a b"))
    assert "--name" in line
    assert not any(tmp_path.iterdir())


def test_folds_are_nnunets_generate_crossval_split():
    kfold = pytest.importorskip("sklearn.model_selection").KFold
    ids = [f"img{i:02d}" for i in range(13)]
    shuffled = list(reversed(ids))  # the order given does not matter: the IDs are sorted
    ours = folds_of(shuffled, 5)
    for fold, (train, val) in zip(
        ours, kfold(5, shuffle=True, random_state=12345).split(ids), strict=True
    ):
        assert fold == {"train": [ids[i] for i in train], "val": [ids[i] for i in val]}
    assert sorted(sum((f["val"] for f in ours), [])) == ids
    assert [len(f["val"]) for f in ours] == [3, 3, 3, 2, 2]
    with pytest.raises(SettingError, match="cannot make 5 folds"):
        folds_of(ids[:4], 5)


def test_train_fold_validates_on_that_fold(glas_store):
    store = open_store(glas_store)
    config = TrainConfig(store=str(glas_store), fold=2, folds=4)
    train, val = split_ids(store, config)
    assert (train, val) == fold_ids(store.ids("train"), 2, 4)
    assert sorted(train + val) == store.ids("train") and len(val) == 2
    with pytest.raises(SettingError, match="at most 3"):
        TrainConfig(store=str(glas_store), fold=4, folds=4)
    with pytest.raises(SettingError, match="leave out --val-split"):
        TrainConfig(store=str(glas_store), fold=0, val_split="testA")
    with pytest.raises(SettingError, match="leave out --val-fraction 0.2"):
        TrainConfig(store=str(glas_store), fold=0, val_fraction=0.2)
    line = one_error_line(samaug("train", "--store", glas_store, "--fold", "5", "--folds", "5"))
    assert "--fold 5" in line and "at most 4" in line
