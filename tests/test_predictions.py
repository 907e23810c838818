"""Prediction files (train/predictions.py): written, read back, matched to image IDs."""

import json

import numpy as np
import pytest
import tifffile
from PIL import Image

from precompute.imageio import read_pixels
from precompute.types import InputError, SamaugError, SettingError
from train.results.prediction_files import (
    OVERLAY_COLOUR,
    prepare_folder,
    read_index,
    write_index,
    write_prediction,
)
from train.results.prediction_reader import check_shape, match_predictions, read_prediction


def numbered(height: int, width: int) -> np.ndarray:
    """A label map whose every pixel is its own object, 1..H*W, in a shuffled order."""
    labels = np.arange(1, height * width + 1, dtype=np.int64)
    return np.random.default_rng(0).permutation(labels).reshape(height, width)


def test_label_map_with_more_than_255_objects_is_a_16_bit_png(tmp_path):
    labels = numbered(20, 20)  # 400 objects
    labels[0, :5] = 0
    entry = write_prediction(tmp_path, "img-1", labels=labels)
    assert entry == {
        "image_id": "img-1",
        "shape": [20, 20],
        "objects": 395,
        "files": {"labels": "img-1.png"},
    }
    assert read_pixels(tmp_path / "img-1.png").dtype == np.uint16
    back = read_prediction(tmp_path / "img-1.png", "labels")
    assert back.dtype == np.int32 and np.array_equal(back, labels)
    assert np.array_equal(read_prediction(tmp_path / "img-1.png", "mask"), labels > 0)


def test_label_map_with_more_than_65535_objects_is_a_compressed_uint32_tiff(tmp_path):
    labels = numbered(260, 260)  # 67600 objects
    entry = write_prediction(tmp_path, "big", labels=labels)
    assert entry["files"] == {"labels": "big.tif"} and entry["objects"] == 260 * 260
    assert not (tmp_path / "big.png").exists()
    with tifffile.TiffFile(tmp_path / "big.tif") as tif:
        page = tif.pages.first
        assert page.dtype == np.uint32
        assert page.compression == tifffile.COMPRESSION.ADOBE_DEFLATE
    assert np.array_equal(read_prediction(tmp_path / "big.tif"), labels)


def test_binary_mask_is_a_0_255_png_and_counts_8_connected_regions(tmp_path):
    mask = np.zeros((8, 8), bool)
    mask[1:3, 1:3] = True
    mask[3, 3] = True  # touches the first square only at a corner: the same region
    mask[6:, 6:] = True
    entry = write_prediction(tmp_path, "polyp", mask=mask.astype(np.uint8))
    assert entry["files"] == {"mask": "polyp.png"} and entry["objects"] == 2
    stored = read_pixels(tmp_path / "polyp.png")
    assert stored.dtype == np.uint8 and set(np.unique(stored)) == {0, 255}
    assert np.array_equal(stored == 255, mask)
    assert np.array_equal(read_prediction(tmp_path / "polyp.png", "mask"), mask)


@pytest.mark.parametrize(
    ("prob_format", "name", "tolerance"),
    [("npz", "p.npz", 5e-4), ("tif", "p_probability.tif", 0.0)],
)
def test_probability_round_trip(tmp_path, prob_format, name, tolerance):
    probability = np.random.default_rng(1).random((9, 7))
    probability[0, 0], probability[0, 1] = 0.0, 1.0
    entry = write_prediction(
        tmp_path, "p", mask=probability > 0.5, probability=probability, prob_format=prob_format
    )
    assert entry["files"]["probability"] == name
    back = read_prediction(tmp_path / name)  # the file says it holds a probability map
    assert back.dtype == np.float32 and back.shape == (9, 7)
    assert np.abs(back - probability.astype(np.float32)).max() <= tolerance
    assert back[0, 0] == 0.0 and back[0, 1] == 1.0
    if prob_format == "npz":
        with np.load(tmp_path / name) as archive:
            assert archive.files == ["probability"]
            assert archive["probability"].dtype == np.float16


def test_integer_images_read_as_probability_are_scaled_by_their_type_maximum(tmp_path):
    Image.fromarray(np.array([[0, 51, 255]], np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(np.array([[0, 65535, 13107]], np.uint16)).save(tmp_path / "b.png")
    assert np.allclose(read_prediction(tmp_path / "a.png", "probability"), [[0, 0.2, 1]])
    assert np.allclose(read_prediction(tmp_path / "b.png", "probability"), [[0, 1, 0.2]])
    # Read as stored, the 8-bit PNG is a label map.
    assert np.array_equal(read_prediction(tmp_path / "a.png"), [[0, 51, 255]])


def test_overlay_draws_contours_in_colour_and_leaves_other_pixels(tmp_path):
    image = np.full((10, 12, 3), (120, 40, 90), np.uint8)
    labels = np.zeros((10, 12), np.int32)
    labels[2:7, 1:5] = 1
    labels[2:7, 5:9] = 2  # touches object 1: a line two pixels wide between them
    entry = write_prediction(tmp_path, "o", labels=labels, image=image, overlay=True)
    assert entry["files"]["overlay"] == "o_overlay.png"
    drawn = np.array(Image.open(tmp_path / "o_overlay.png"))
    assert drawn.shape == (10, 12, 3) and drawn.dtype == np.uint8
    contour = np.zeros((10, 12), bool)
    for left, right in ((1, 4), (5, 8)):  # each object's outermost ring of pixels
        contour[2:7, left : right + 1] = True
        contour[3:6, left + 1 : right] = False
    assert np.all(drawn[contour] == OVERLAY_COLOUR)
    assert np.all(drawn[~contour] == (120, 40, 90))


@pytest.mark.parametrize("name", ["t.png", "t.tif", "t.npz"])
def test_truncated_file_is_an_input_error_naming_it(tmp_path, name):
    labels = numbered(64, 64) + (70000 if name == "t.tif" else 0)  # 70000+: a TIFF
    probability = np.random.default_rng(2).random((64, 64))
    write_prediction(tmp_path, "t", labels=labels, probability=probability)
    path = tmp_path / name
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(InputError, match=str(path)):
        read_prediction(path)


def test_reading_the_wrong_kind_names_the_file(tmp_path):
    write_prediction(tmp_path, "x", mask=np.ones((3, 3), bool), probability=np.ones((3, 3)))
    with pytest.raises(InputError, match=r"x\.npz: holds a probability map, not labels"):
        read_prediction(tmp_path / "x.npz", "labels")
    tifffile.imwrite(tmp_path / "y.tif", np.full((3, 3), 1.5, np.float32))
    with pytest.raises(InputError, match=r"y\.tif: probability values must be .* 1\.5"):
        read_prediction(tmp_path / "y.tif")


def test_check_shape_names_the_file_and_both_sizes(tmp_path):
    array = np.zeros((4, 6))
    assert check_shape(tmp_path / "a.png", array, (4, 6)) is array
    with pytest.raises(InputError) as caught:
        check_shape(tmp_path / "a.png", array, (5, 6))
    assert str(caught.value).startswith(f"{tmp_path / 'a.png'}: prediction is 4 x 6")
    assert "its image is 5 x 6" in str(caught.value)


def test_bad_inputs_are_refused_before_any_file_is_written(tmp_path):
    out = tmp_path / "out"
    labels = np.ones((4, 4), np.int32)
    with pytest.raises(ValueError, match="probability must be a float array of shape"):
        write_prediction(out, "a", labels=labels, probability=np.ones((4, 5)))
    with pytest.raises(ValueError, match="an overlay needs the image"):
        write_prediction(out, "a", labels=labels, overlay=True)
    with pytest.raises(ValueError, match=r"mask values 2..2 are outside 0..1"):
        write_prediction(out, "a", mask=labels * 2)
    with pytest.raises(SettingError, match="prob_format must be one of npz, tif, not 'png'"):
        write_prediction(out, "a", labels=labels, prob_format="png")
    with pytest.raises(SamaugError, match="image ID '../a'"):
        write_prediction(out, "../a", labels=labels)
    assert not out.exists()


def test_match_predictions_by_stem(tmp_path):
    for name in ("a.png", "a_overlay.png", "a.npz", "b.tif", "b_probability.tif", "stray.png"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "predictions.json").write_text("{}")
    (tmp_path / ".a.png.123.tmp").write_bytes(b"")
    (tmp_path / "sub").mkdir()
    found, missing, extra = match_predictions(tmp_path, ["a", "b", "c"])
    assert found == {"a": tmp_path / "a.png", "b": tmp_path / "b.tif"}
    assert missing == ["c"] and extra == [tmp_path / "stray.png"]
    found, missing, _ = match_predictions(tmp_path, ["a", "b", "stray"], "probability")
    assert found == {
        "a": tmp_path / "a.npz",
        "b": tmp_path / "b_probability.tif",
        "stray": tmp_path / "stray.png",
    }
    assert missing == []


def test_match_predictions_refuses_two_files_for_one_id_and_a_missing_folder(tmp_path):
    (tmp_path / "a.png").write_bytes(b"")
    (tmp_path / "a.tif").write_bytes(b"")
    with pytest.raises(InputError, match=r"a\.png, .*a\.tif: more than one labels file"):
        match_predictions(tmp_path, ["a"])
    with pytest.raises(InputError, match="nowhere: no such prediction folder"):
        match_predictions(tmp_path / "nowhere", ["a"])


def test_index_round_trip_and_rejections(tmp_path):
    entries = [write_prediction(tmp_path, i, mask=np.eye(3, dtype=bool)) for i in ("a", "b")]
    info = {"model": "unet", "strategy": "samaug", "settings": {"threshold": 0.5}}
    path = write_index(tmp_path, info, entries)
    index = json.loads(path.read_text())
    assert index == read_index(tmp_path)
    assert index["made_by"] == info and [e["files"] for e in index["images"]] == [
        {"mask": "a.png"},
        {"mask": "b.png"},
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "b.png", "predictions.json"]
    with pytest.raises(ValueError, match="more than one entry: a"):
        write_index(tmp_path, info, [entries[0], entries[0]])
    path.write_text('{"layout": "other"}')
    with pytest.raises(InputError, match="predictions.json: not a samaug prediction index"):
        read_index(tmp_path)


def test_prepare_folder_replaces_only_a_previous_runs_files(tmp_path):
    out = prepare_folder(tmp_path / "new")
    assert out.is_dir()
    entry = write_prediction(
        out, "a", labels=numbered(3, 3), image=np.zeros((3, 3, 3), np.uint8), overlay=True
    )
    (out / "notes.txt").write_text("mine")
    # An index naming anything but a file of the folder (a hand-edited one) is refused
    # before a file is removed.
    listed = dict(entry["files"])
    entry["files"]["elsewhere"] = "../outside.png"
    write_index(out, {}, [entry])
    (tmp_path / "outside.png").write_bytes(b"keep")
    before = sorted(p.name for p in out.iterdir())
    with pytest.raises(InputError, match=r"lists '\.\./outside\.png', which is no file name"):
        prepare_folder(out)
    assert sorted(p.name for p in out.iterdir()) == before
    assert (tmp_path / "outside.png").read_bytes() == b"keep"
    write_index(out, {}, [{**entry, "files": listed}])
    prepare_folder(out)
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    with pytest.raises(SettingError, match=r"new holds other files \(notes\.txt\)"):
        prepare_folder(out)
    with pytest.raises(SettingError, match="notes.txt is a file"):
        prepare_folder(out / "notes.txt")
