"""Ground-truth folders read by the dataset readers' rules (`samaug score --labels DIR
--labels-format NAME`): a dataset's own files score as the store made from it."""

import shutil
from pathlib import Path

import numpy as np
import pytest

from precompute.imageio import read_pixels
from precompute.pipeline import PriorsConfig, run
from precompute.readers import get_reader, iter_records
from precompute.readers.label_files import LABEL_FORMATS, read_label_file
from precompute.store import open_store
from precompute.types import InputError, SettingError
from samaug.demo.synthetic import write_glas_like
from tests.support.cli import one_error_line, samaug
from tests.support.image_files import rgb, save
from train.results.prediction_files import write_prediction
from train.results.scoring import prepare_scoring, score_folder

KVASIR = Path("kvasir-seg") / "Kvasir-SEG"
MONUSEG_TRAIN = Path("monuseg") / "MoNuSeg 2018 Training Data"


def predicted(label: np.ndarray, shift: int) -> np.ndarray:
    """A foreground probability that overlaps ``label`` in part: the mask moved down."""
    moved = np.roll(label > 0, shift, axis=0).astype(np.float32)
    return np.clip(0.85 * moved + 0.1, 0, 1)


@pytest.fixture(scope="module")
def kvasir_three(shared_data, tmp_path_factory) -> Path:
    """The first three Kvasir-SEG pairs (byte-identical copies) and their superpixel store."""
    root = tmp_path_factory.mktemp("kvasir")
    for sub in ("images", "masks"):
        (root / "Kvasir-SEG" / sub).mkdir(parents=True)
        for path in sorted((shared_data / KVASIR / sub).iterdir())[:3]:
            shutil.copyfile(path, root / "Kvasir-SEG" / sub / path.name)
    config = PriorsConfig(
        dataset="kvasir",
        data_root=str(root),
        store=str(root / "kvasir.zarr"),
        masker="superpixel",
        masker_settings=(("method", "slic"), ("scales", (20, 10))),
        workers=0,
        device="cpu",
    )
    assert run(config).done == 3
    return root


def test_kvasir_seg_own_masks_score_as_the_store_labels(kvasir_three, tmp_path):
    store = open_store(kvasir_three / "kvasir.zarr")
    masks = kvasir_three / "Kvasir-SEG" / "masks"
    # The masks' JPEG noise: read as stored, pixels of 1..127 would be foreground.
    noise = read_pixels(next(masks.iterdir()))[..., 0]
    assert ((noise > 0) & (noise < 128)).sum() > 100
    for k, image_id in enumerate(store.ids()):
        label = store.read(image_id, "label")
        write_prediction(tmp_path, image_id, mask=label > 0, probability=predicted(label, 9 + k))
    by_store = score_folder(prepare_scoring(tmp_path, store=str(store.location), task="binary"))
    by_masks = score_folder(
        prepare_scoring(
            tmp_path, labels=masks, task="binary", labels_format="polyp", out=tmp_path / "m"
        )
    )
    assert by_masks["labels"] == by_store["train"]
    assert 0.3 < by_store["train"]["dice"] < 0.99
    # Without a rule the JPEG masks are refused, naming the file and the format to give.
    result = samaug("score", tmp_path, "--labels", masks, "--task", "binary")
    line = one_error_line(result)
    assert f"{masks / store.ids()[0]}.jpg: a JPEG label file (lossy" in line
    assert "give --labels-format polyp" in line


def test_glas_annotations_read_as_the_reader_reads_them(tmp_path):
    folder = write_glas_like(tmp_path / "glas", {"train": 2, "testA": 1}, size=(30, 40))
    files = LABEL_FORMATS.get("glas").files(folder)
    assert sorted(files) == ["testA_1", "train_1", "train_2"]
    for record in iter_records(get_reader("glas", folder)):
        label, warnings = read_label_file("glas", files[record.image_id], (30, 40))
        assert warnings == [] and label.dtype == np.int32
        np.testing.assert_array_equal(label, record.label)
    # Read as plain label maps, the same files have other IDs.
    assert "train_1_anno" in LABEL_FORMATS.get("labels").files(folder)


def test_monuseg_xml_read_as_the_reader_reads_it(shared_data, tmp_path):
    annotations = shared_data / MONUSEG_TRAIN / "Annotations"
    files = LABEL_FORMATS.get("monuseg").files(annotations)
    records = list(iter_records(get_reader("monuseg", shared_data / "monuseg")))
    assert sorted(files) == [r.image_id for r in records]
    for record in records:  # sized by the tile in ../Tissue Images/, not by the prediction
        label, _ = read_label_file("monuseg", files[record.image_id], (7, 7))
        np.testing.assert_array_equal(label, record.label)
    # An XML without its image: rasterised at the prediction's size.
    alone = tmp_path / records[0].image_id
    shutil.copyfile(files[records[0].image_id], alone.with_suffix(".xml"))
    label, _ = read_label_file("monuseg", alone.with_suffix(".xml"), (500, 500))
    np.testing.assert_array_equal(label > 0, records[0].label[:500, :500] > 0)


def test_colour_and_jpeg_label_files_are_refused_naming_the_format(tmp_path):
    colour = save(tmp_path / "a.png", rgb(6, 8))
    with pytest.raises(InputError, match=r"a\.png: annotation is a colour image.*--labels-format"):
        read_label_file("labels", colour, (6, 8))
    jpeg = save(tmp_path / "b.png", np.full((6, 8), 255, np.uint8))  # a PNG name, JPEG bytes
    shutil.copyfile(save(tmp_path / "j.jpg", np.full((6, 8), 255, np.uint8)), jpeg)
    with pytest.raises(InputError, match=r"b\.png: a JPEG label file"):
        read_label_file("labels", jpeg, (6, 8))
    assert read_label_file("polyp", jpeg, (6, 8))[0].sum() == 48
    gray = save(tmp_path / "c.png", np.array([[0, 1], [300 % 256, 2]], np.uint8))
    np.testing.assert_array_equal(read_label_file("labels", gray, (2, 2))[0], [[0, 1], [44, 2]])


def test_label_format_settings_are_checked_before_reading(tmp_path):
    write_prediction(tmp_path / "pred", "a", labels=np.ones((4, 4), np.int32))
    (tmp_path / "gt").mkdir()
    with pytest.raises(SettingError, match=r"--labels-format 'png': no such label format; valid"):
        prepare_scoring(tmp_path / "pred", labels=tmp_path / "gt", labels_format="png")
    with pytest.raises(SettingError, match="no label files of --labels-format monuseg"):
        prepare_scoring(
            tmp_path / "pred", labels=tmp_path / "gt", task="nuclei", labels_format="monuseg"
        )
    with pytest.raises(SettingError, match="--labels-format says how --labels files are read"):
        prepare_scoring(tmp_path / "pred", store="x.zarr", labels_format="polyp")
