"""Datasets as downloaded: GlaS's official archive folder, images without annotations read
for priors (every reader), training that refuses unlabelled images by name."""

from pathlib import Path

import numpy as np
import pytest

from precompute.pipeline import PriorsConfig, run
from precompute.readers import get_reader, iter_records
from precompute.store import open_store
from precompute.types import SamaugError, SettingError
from samaug.demo.synthetic import write_glas_like
from tests.support.cli import samaug
from tests.support.image_files import rgb, save
from tests.support.train_helpers import quiet, tiny

GLAS_ARCHIVE = "Warwick QU Dataset (Released 2016_07_08)"


def priors(dataset: str, data_root: Path, store: Path, **options) -> object:
    """The superpixel priors of a dataset, written in this process."""
    return run(
        PriorsConfig(
            dataset=dataset,
            data_root=str(data_root),
            store=str(store),
            masker="superpixel",
            reader_options=tuple(options.items()),
            workers=0,
            device="cpu",
        )
    )


def test_glas_reads_the_official_archive_folder_and_images_without_annotations(tmp_path):
    folder = write_glas_like(tmp_path / GLAS_ARCHIVE, {"train": 3, "testA": 2}, size=(40, 48))
    (folder / "Grade.csv").write_text("name,grade\n")
    (folder / "testA_2_anno.bmp").unlink()
    reader = get_reader("glas", tmp_path)  # the folder the archive unpacks to
    records = {r.image_id: r for r in iter_records(reader)}
    assert sorted(records) == ["testA_1", "testA_2", "train_1", "train_2", "train_3"]
    assert records["testA_2"].label is None
    assert records["testA_2"].warnings == [
        f"{folder / 'testA_2.bmp'} has no annotation {folder / 'testA_2_anno.bmp'}: read "
        "without a label (its priors are computed; training and scoring leave it out, or "
        "refuse it by name)"
    ]
    assert records["testA_1"].label.max() > 0 and records["testA_1"].warnings == []
    assert records["train_1"].source == {
        "image": f"{GLAS_ARCHIVE}/train_1.bmp",
        "label": f"{GLAS_ARCHIVE}/train_1_anno.bmp",
    }


def test_glas_in_two_subfolders_is_refused_naming_both(tmp_path):
    write_glas_like(tmp_path / "a", {"train": 1}, size=(20, 24))
    write_glas_like(tmp_path / "b", {"train": 1}, size=(20, 24))
    with pytest.raises(SamaugError, match=r"GlaS images in 2 subfolders \(a, b\)"):
        get_reader("glas", tmp_path).refs()


def test_polyp_readers_read_images_without_masks(tmp_path):
    kvasir = tmp_path / "kvasir" / "Kvasir-SEG"
    for name in ("a", "b"):
        save(kvasir / "images" / f"{name}.jpg", rgb(8, 10))
    save(kvasir / "masks" / "a.jpg", np.full((8, 10), 255, np.uint8))
    records = {r.image_id: r for r in iter_records(get_reader("kvasir", tmp_path / "kvasir"))}
    assert records["a"].label.sum() == 80 and records["a"].warnings == []
    assert records["b"].label is None
    assert (
        records["b"]
        .warnings[0]
        .startswith(f"{kvasir / 'images' / 'b.jpg'} has no annotation {kvasir / 'masks' / 'b.*'}")
    )
    pranet = tmp_path / "pranet" / "TestDataset" / "CVC-300"
    save(pranet / "images" / "1.png", rgb(8, 10))
    (pranet / "masks").mkdir()
    (record,) = iter_records(get_reader("polyp", tmp_path / "pranet"))
    assert record.image_id == "CVC-300__1" and record.label is None and record.warnings


def write_monuseg(root: Path, names: list[str], xml: set[str]) -> Path:
    """The flat MoNuSeg test layout: ``<name>.tif`` tiles, an XML (one square nucleus)
    for the names in ``xml``."""
    folder = root / "MoNuSegTestData"
    for k, name in enumerate(names):
        save(folder / f"{name}.tif", rgb(40, 48))
        if name in xml:
            (folder / f"{name}.xml").write_text(
                '<Annotations><Annotation Id="1"><Regions><Region Id="1"><Vertices>'
                + "".join(f'<Vertex X="{x}" Y="{y}"/>' for x, y in square(4 + k, 4, 20, 20))
                + "</Vertices></Region></Regions></Annotation></Annotations>"
            )
    return folder


def square(x0, y0, x1, y1):
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]


def test_monuseg_tile_without_xml_is_unlabelled_and_the_run_warns(tmp_path):
    folder = write_monuseg(tmp_path / "data", ["t1", "t2", "t3"], xml={"t1", "t3"})
    store = tmp_path / "monuseg.zarr"
    result = samaug(
        "priors", "monuseg", "--data-root", tmp_path / "data", "--store", store,
        "--masker", "superpixel", "--workers", "0", "--device", "cpu",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "warnings (1):" in result.stderr
    assert f"  t2: {folder / 't2.tif'} has no annotation {folder / 't2.xml'}: read" in (
        result.stderr
    )
    opened = open_store(store)
    assert opened.ids("test") == ["t1", "t2", "t3"]
    assert [opened.has(i, "label") for i in ("t1", "t2", "t3")] == [True, False, True]
    assert opened.read("t1", "label").max() == 1


def test_training_refuses_unlabelled_training_images_by_name(tmp_path):
    data = write_glas_like(tmp_path / "glas", {"train": 4, "testA": 1}, size=(64, 64))
    for k in (2, 4):
        (data / f"train_{k}_anno.bmp").unlink()
    summary = priors("glas", data, tmp_path / "glas.zarr")
    assert summary.done == 5 and [i for i, _ in summary.warnings()] == ["train_2", "train_4"]
    from train.training.loop import train

    config = tiny(tmp_path / "glas.zarr", tmp_path / "run", val_fraction=0)
    with pytest.raises(
        SettingError,
        match=r"the training split 'train': 2 of its 4 images have no label \(train_2, train_4\)",
    ):
        train(config, log=quiet)
    assert not (tmp_path / "run" / "last.pt").exists()


# --------------------------------------------------------------------------- split lists


def write_kvasir(root: Path, names: list[str]) -> Path:
    """Kvasir-SEG as downloaded: ``Kvasir-SEG/{images,masks}/<name>.jpg``."""
    for k, name in enumerate(names):
        save(root / "Kvasir-SEG" / "images" / f"{name}.jpg", rgb(32, 40))
        mask = np.zeros((32, 40), np.uint8)
        mask[4 : 12 + k, 6:20] = 255
        save(root / "Kvasir-SEG" / "masks" / f"{name}.jpg", mask)
    return root


def splits_of(reader) -> dict[str, str]:
    return {ref.image_id: ref.split for ref in reader.refs()}


def test_a_split_list_gives_one_store_both_splits(tmp_path):
    data = write_kvasir(tmp_path / "data", ["a", "b", "c", "d", "e"])
    (data / "test.txt").write_text("# PraNet-style: one name per line\nb.jpg\nd\n\n")
    reader = get_reader("kvasir", data, split_file="test.txt")
    assert splits_of(reader) == {"b": "test", "d": "test", "a": "train", "c": "train", "e": "train"}
    (data / "lists.csv").write_text("a,val\nc test  # a comment\n")
    assert splits_of(get_reader("kvasir", data, split_file=data / "lists.csv", split="rest")) == {
        "c": "test", "a": "val", "b": "rest", "d": "rest", "e": "rest",
    }  # fmt: skip
    summary = priors("kvasir", data, tmp_path / "k.zarr", split_file="test.txt")
    assert summary.done == 5
    store = open_store(tmp_path / "k.zarr")
    assert store.splits() == {"test": 2, "train": 3}
    assert store.attrs["dataset"]["reader_options"] == {"split_file": "test.txt"}


@pytest.mark.parametrize(
    "text, message",
    [
        ("zz\n", r"test\.txt, line 1: no image is called 'zz'"),
        ("a\nb x y\n", r"test\.txt, line 2: 'b x y' has 3 fields"),
        ("a test\na val\n", r"test\.txt, line 2: 'a' is listed in split 'val' and, on line 1"),
        ("a.jpg\na val\n", r"line 2: image 'a' is listed twice, in splits 'test' and 'val'"),
        ("a ../x\n", r"line 1: split '../x' must be letters"),
    ],
)
def test_a_bad_split_list_names_the_file_and_line(tmp_path, text, message):
    data = write_kvasir(tmp_path, ["a", "b"])
    (data / "test.txt").write_text(text)
    with pytest.raises(SamaugError, match=message):
        get_reader("kvasir", data, split_file="test.txt").refs()


def test_a_split_list_of_pranet_names_a_reused_name_by_id(tmp_path):
    for folder in ("TrainDataset/image", "TestDataset/Kvasir/images", "TestDataset/CVC-300/images"):
        save(tmp_path / folder / "1.png", rgb(8, 10))
        save(tmp_path / folder.replace("image", "mask") / "1.png", np.zeros((8, 10), np.uint8))
    (tmp_path / "val.txt").write_text("1\n")
    with pytest.raises(SamaugError, match=r"'1' fits 3 images \(CVC-300__1, Kvasir__1, train__1"):
        get_reader("polyp", tmp_path, split_file="val.txt").refs()
    (tmp_path / "val.txt").write_text("train__1\n")
    assert splits_of(get_reader("polyp", tmp_path, split_file="val.txt")) == {
        "CVC-300__1": "CVC-300", "Kvasir__1": "Kvasir", "train__1": "val",
    }  # fmt: skip
    with pytest.raises(SamaugError, match=r"split_file=nowhere.txt: no such file"):
        get_reader("polyp", tmp_path, split_file="nowhere.txt")


def test_stores_made_with_other_split_options_merge(tmp_path):
    from precompute.store import merge_stores

    write_kvasir(tmp_path / "train", ["a", "b"])
    write_kvasir(tmp_path / "test", ["c"])
    priors("kvasir", tmp_path / "train", tmp_path / "train.zarr")
    priors("kvasir", tmp_path / "test", tmp_path / "test.zarr", split="test")
    merge_stores([tmp_path / "train.zarr", tmp_path / "test.zarr"], tmp_path / "all.zarr")
    merged = open_store(tmp_path / "all.zarr")
    assert merged.splits() == {"test": 1, "train": 2}
    assert merged.attrs["dataset"]["reader_options"] == {}  # the sources differ: none kept
    sources = merged.attrs["lineage"][-1]["sources"]
    assert [s["reader_options"] for s in sources] == [{}, {"split": "test"}]
    # The same image in two splits is still refused, naming it.
    priors("kvasir", tmp_path / "train", tmp_path / "val.zarr", split="val")
    with pytest.raises(SamaugError, match=r"image a is in split 'train' in .* but 'val'"):
        merge_stores([tmp_path / "train.zarr", tmp_path / "val.zarr"], tmp_path / "no.zarr")
    # Options that choose more than splits still keep stores apart.
    priors("folder", tmp_path / "test" / "Kvasir-SEG" / "images", tmp_path / "f.zarr")
    with pytest.raises(SamaugError, match="dataset.name"):
        merge_stores([tmp_path / "train.zarr", tmp_path / "f.zarr"], tmp_path / "no2.zarr")
