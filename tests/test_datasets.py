"""Dataset readers and image decoding: the real MoNuSeg/Kvasir subsets, and tiny files written
in each dataset's exact layout."""

import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage.draw import polygon as draw_polygon

from precompute.listing import safe_id
from precompute.readers import DATASETS, get_reader, iter_records, normalise_reader_options
from precompute.types import InputError, SamaugError, image_id_problem
from tests.support.image_files import RNG, rgb, save

MONUSEG_TRAIN = Path("monuseg") / "MoNuSeg 2018 Training Data"


def aperio_xml(path: Path, polygons: list[list[tuple[float, float]]]) -> Path:
    regions = "".join(
        f'<Region Id="{i}" Type="0"><Vertices>'
        + "".join(f'<Vertex X="{x}" Y="{y}"/>' for x, y in vertices)
        + "</Vertices></Region>"
        for i, vertices in enumerate(polygons, 1)
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f'<Annotations><Annotation Id="1" Type="4"><Regions>{regions}</Regions>'
        "</Annotation></Annotations>"
    )
    return path


def square(x0: float, y0: float, x1: float, y1: float) -> list[tuple[float, float]]:
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]


# --------------------------------------------------------------------------- MoNuSeg (real)


@pytest.fixture(scope="module")
def monuseg(shared_data):
    reader = get_reader("monuseg", shared_data / "monuseg")
    return reader, list(iter_records(reader))


def test_monuseg_reads_three_tiles_with_ids_above_255(monuseg, shared_data):
    reader, records = monuseg
    assert [r.image_id for r in records] == [
        "TCGA-B0-5710-01Z-00-DX1",
        "TCGA-CH-5767-01Z-00-DX1",
        "TCGA-NH-A8F7-01A-01-TS1",
    ]
    assert reader.splits() == ["train"]
    for record in records:
        assert record.image.shape == (1000, 1000, 3) and record.image.dtype == np.uint8
        assert record.label.shape == (1000, 1000) and record.label.dtype == np.int32
        assert record.label.max() > 255
        assert record.source == {
            "image": f"MoNuSeg 2018 Training Data/Tissue Images/{record.image_id}.tif",
            "label": f"MoNuSeg 2018 Training Data/Annotations/{record.image_id}.xml",
        }
    # Pillow decodes these LZW tiles too: both decoders agree.
    tile = shared_data / MONUSEG_TRAIN / "Tissue Images" / f"{records[0].image_id}.tif"
    first = np.asarray(Image.open(tile))
    np.testing.assert_array_equal(records[0].image, first)


def expected_from_xml(path: Path, shape: tuple[int, int]):
    """Independent rasterisation: walk regions from the last one back, each claiming the pixels
    no later region has claimed. Returns the label map, the visible count, overlap pixels."""
    regions = []
    for region in ET.parse(path).getroot().iter("Region"):
        xy = [(float(v.get("X")), float(v.get("Y"))) for v in region.iter("Vertex")]
        if len(xy) >= 3:
            regions.append(np.array(xy))
    owner = np.full(shape, -1)
    count = np.zeros(shape, int)
    for index in reversed(range(len(regions))):
        rows, cols = draw_polygon(regions[index][:, 1], regions[index][:, 0], shape)
        count[rows, cols] += 1
        free = owner[rows, cols] == -1
        owner[rows[free], cols[free]] = index
    visible = np.unique(owner[owner >= 0])  # regions not fully hidden by later ones
    rank = np.zeros(len(regions) + 1, np.int32)
    rank[visible + 1] = np.arange(1, len(visible) + 1)
    return rank[owner + 1], len(visible), count


@pytest.mark.parametrize("index", range(3))
def test_monuseg_instances_follow_the_xml_later_region_wins(monuseg, shared_data, index):
    _, records = monuseg
    record = records[index]
    expected, visible, count = expected_from_xml(
        shared_data / "monuseg" / record.source["label"], (1000, 1000)
    )
    labels = np.unique(record.label)
    np.testing.assert_array_equal(labels, np.arange(visible + 1))  # 0 and 1..N, no gaps
    np.testing.assert_array_equal(record.label, expected)
    # Overlapping pixels: the counts the data README gives, each owned by the later region.
    assert int((count >= 2).sum()) == [1524, 1741, 31][index]
    row, col = np.argwhere(count >= 2)[0]
    assert record.label[row, col] == expected[row, col] > 0


def test_monuseg_split_from_test_folder_or_option(tmp_path, shared_data):
    tile = shared_data / MONUSEG_TRAIN / "Tissue Images" / "TCGA-NH-A8F7-01A-01-TS1.tif"
    flat = tmp_path / "MoNuSegTestData"
    flat.mkdir()
    shutil.copy(tile, flat / tile.name)
    aperio_xml(flat / f"{tile.stem}.xml", [square(10.5, 20.5, 30.5, 40.5)])
    assert [(r.image_id, r.split) for r in get_reader("monuseg", tmp_path).refs()] == [
        (tile.stem, "test")
    ]
    assert get_reader("monuseg", tmp_path, split="val").splits() == ["val"]
    record = get_reader("monuseg", flat).load(get_reader("monuseg", flat).refs()[0])
    assert record.label.sum() == 20 * 20 and record.split == "test"
    plain = tmp_path / "tiles"
    shutil.copytree(flat, plain)
    with pytest.raises(SamaugError, match="split option"):
        get_reader("monuseg", plain).refs()


def test_monuseg_rasterisation_rules_on_hand_made_polygons(tmp_path):
    folder = tmp_path / "MoNuSegTestData"
    save(folder / "t.tif", rgb(10, 12))
    aperio_xml(
        folder / "t.xml",
        [
            square(0.5, 0.5, 3.5, 3.5),  # A: rows/cols 1..3
            [(1.0, 1.0), (8.0, 8.0)],  # 2 vertices: skipped
            square(3.5, 3.5, 4.5, 4.5),  # pixel (4, 4) only, hidden by the next one
            square(2.5, 2.5, 5.5, 5.5),  # C: rows/cols 3..5, over A at (3, 3)
            square(-3.5, 6.5, 2.5, 12.7),  # D: outside the image on two sides
        ],
    )
    reader = get_reader("monuseg", tmp_path)
    label = reader.load(reader.refs()[0]).label
    expected = np.zeros((10, 12), np.int32)
    expected[1:4, 1:4] = 1
    expected[3:6, 3:6] = 2
    expected[7:10, 0:3] = 3
    np.testing.assert_array_equal(label, expected)


def test_monuseg_bad_xml(tmp_path):
    folder = tmp_path / "MoNuSegTestData"
    save(folder / "t.tif", rgb(10, 12))
    (folder / "t.xml").write_text("<Annotations><Region><Vertices><Vertex X='1' ")
    reader = get_reader("monuseg", tmp_path)
    with pytest.raises(InputError, match=r"t\.xml: cannot read annotation XML"):
        reader.load(reader.refs()[0])
    aperio_xml(folder / "t.xml", [[(1, 1), (2, "x"), (3, 1)]])
    with pytest.raises(InputError, match=r"t\.xml: Region Id=1 has a vertex"):
        reader.load(reader.refs()[0])


# --------------------------------------------------------------------------- Kvasir (real)


def test_kvasir_twenty_binary_masks(shared_data):
    root = shared_data / "kvasir-seg"
    records = list(iter_records(get_reader("kvasir", root)))
    assert len(records) == 20 and {r.split for r in records} == {"train"}
    assert records[0].image_id == "cju0qkwl35piu0993l0dewei2"
    fractions = []
    for record in records:
        assert record.image.dtype == np.uint8 and record.image.shape[2] == 3
        assert set(np.unique(record.label)) == {0, 1}
        fractions.append(record.label.mean())
    # Per image the polyp covers 0.5% to 34% here; over the set, 15%.
    assert 0.05 < np.mean(fractions) < 0.35 and max(fractions) < 0.35
    assert records[0].source == {
        "image": "Kvasir-SEG/images/cju0qkwl35piu0993l0dewei2.jpg",
        "label": "Kvasir-SEG/masks/cju0qkwl35piu0993l0dewei2.jpg",
    }
    inner = get_reader("kvasir", root / "Kvasir-SEG", split="test").refs()
    assert len(inner) == 20 and inner[0].split == "test"


# --------------------------------------------------------------------------- GlaS, PraNet, folder


def test_glas_ids_splits_natural_order_and_labels(tmp_path):
    labels = {}
    for name in ["train_10", "train_2", "train_1", "testB_3", "testA_1"]:
        save(tmp_path / f"{name}.bmp", rgb(6, 8))
        labels[name] = RNG.integers(0, 40, (6, 8)).astype(np.uint8)
    save(tmp_path / "train_1_anno.bmp", labels["train_1"])  # 8-bit grayscale
    palette = Image.fromarray(labels["train_2"], mode="L").convert("P")
    palette.putpalette(RNG.integers(0, 256, 768, dtype=np.uint8).tobytes())  # not gray
    palette.save(tmp_path / "train_2_anno.bmp")
    save(tmp_path / "train_10_anno.bmp", np.repeat(labels["train_10"][..., None], 3, axis=2))
    save(tmp_path / "testA_1_anno.bmp", labels["testA_1"])
    save(tmp_path / "testB_3_anno.bmp", labels["testB_3"])
    (tmp_path / "Grade.csv").write_text("name,grade\n")
    reader = get_reader("glas", tmp_path)
    refs = reader.refs()
    assert [(r.image_id, r.split) for r in refs] == [
        ("testA_1", "testA"),
        ("testB_3", "testB"),
        ("train_1", "train"),
        ("train_2", "train"),
        ("train_10", "train"),
    ]
    assert reader.splits() == ["testA", "testB", "train"]
    for ref in refs:
        record = reader.load(ref)
        assert record.label.dtype == np.int32
        np.testing.assert_array_equal(record.label, labels[ref.image_id])
        np.testing.assert_array_equal(
            record.image, np.asarray(Image.open(tmp_path / f"{ref.image_id}.bmp"))
        )
        assert record.source == {
            "image": f"{ref.image_id}.bmp",
            "label": f"{ref.image_id}_anno.bmp",
        }


def test_glas_colour_annotation(tmp_path):
    save(tmp_path / "train_1.bmp", rgb(6, 8))
    save(tmp_path / "train_1_anno.bmp", rgb(6, 8))
    reader = get_reader("glas", tmp_path)
    with pytest.raises(InputError, match=r"train_1_anno\.bmp: annotation is a colour image"):
        reader.load(reader.refs()[0])


def test_polyp_ids_prefixed_by_split_and_masks_thresholded(tmp_path):
    mask = np.array([[0, 100, 127, 128], [200, 255, 0, 0]], np.uint8)  # anti-aliased edges
    for folder in ["TrainDataset/image", "TestDataset/Kvasir/images", "TestDataset/CVC-300/images"]:
        save(tmp_path / folder / "case 1.png", rgb(2, 4))
        save(tmp_path / folder.replace("image", "mask") / "case 1.png", mask)
    reader = get_reader("polyp", tmp_path)
    assert [(r.image_id, r.split) for r in reader.refs()] == [
        ("CVC-300__case_1", "CVC-300"),
        ("Kvasir__case_1", "Kvasir"),
        ("train__case_1", "train"),
    ]
    for record in iter_records(reader, split="Kvasir"):
        np.testing.assert_array_equal(record.label, [[0, 0, 0, 1], [1, 1, 0, 0]])
        assert record.source["label"] == "TestDataset/Kvasir/masks/case 1.png"


def test_folder_masks_labels_binary_colour_and_missing(tmp_path):
    for name in ["img_1", "img_2", "img_3", "img_10"]:
        save(tmp_path / f"{name}.png", rgb(3, 4))
    labels = np.array([[0, 1, 2, 3], [300, 300, 0, 7], [0, 0, 0, 1]], np.uint16)
    save(tmp_path / "m" / "img_1.png", labels)  # 16-bit, > 2 values: labels as stored
    save(tmp_path / "m" / "img_2.png", (labels > 2).astype(np.uint8) * 255)  # binary
    colour = np.zeros((3, 4, 3), np.uint8)
    colour[0, 0] = (255, 0, 0)
    colour[2, 3] = (0, 0, 9)
    save(tmp_path / "m" / "img_3.tif", colour)  # colour, matched by stem
    reader = get_reader("folder", tmp_path, masks="m", split="val")
    refs = reader.refs()
    assert [r.image_id for r in refs] == ["img_1", "img_2", "img_3", "img_10"]
    assert reader.splits() == ["val"]
    records = [reader.load(ref) for ref in refs]
    np.testing.assert_array_equal(records[0].label, labels.astype(np.int32))
    np.testing.assert_array_equal(records[1].label, (labels > 2).astype(np.int32))
    np.testing.assert_array_equal(records[2].label, [[1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 1]])
    assert records[3].label is None and records[3].source == {"image": "img_10.png"}
    save(tmp_path / "m" / "other.png", labels)
    with pytest.raises(SamaugError, match=r"other\.png has no matching image"):
        reader.refs()


def test_ids_are_sanitised_and_collisions_name_both_files(tmp_path):
    assert safe_id("my scan (1)") == "my_scan__1_" and safe_id(".x") == "_x"
    save(tmp_path / "a.png", rgb(2, 2))
    save(tmp_path / "a.jpg", rgb(2, 2))
    with pytest.raises(SamaugError, match=r"a\.(png|jpg) and .*a\.(png|jpg)"):
        get_reader("folder", tmp_path).refs()
    (tmp_path / "a.jpg").unlink()
    save(tmp_path / "A b.png", rgb(2, 2))
    save(tmp_path / "a_b.png", rgb(2, 2))
    with pytest.raises(SamaugError, match=r"A b\.png and .*a_b\.png both map to image ID"):
        get_reader("folder", tmp_path).refs()
    (tmp_path / "a_b.png").unlink()
    save(tmp_path / "._hidden.png", rgb(2, 2))  # macOS resource fork: skipped
    ids = [r.image_id for r in get_reader("folder", tmp_path).refs()]
    assert ids == ["A_b", "a"]


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize("name", DATASETS.names())
def test_every_reader_names_a_missing_root_and_its_layout(tmp_path, name):
    with pytest.raises(SamaugError, match=rf"{tmp_path / 'nope'} does not exist.*expects"):
        get_reader(name, tmp_path / "nope")


def test_unknown_reader_or_option_lists_the_valid_ones(tmp_path):
    with pytest.raises(
        SamaugError,
        match="DATASET .glass.: no such dataset; valid: folder, glas, kvasir, monuseg, polyp",
    ):
        get_reader("glass", tmp_path)
    with pytest.raises(SamaugError, match="no option mask; its options: masks, split"):
        get_reader("folder", tmp_path, mask="m")


def test_kvasir_missing_subfolder_names_the_layout(tmp_path):
    (tmp_path / "images").mkdir()
    with pytest.raises(SamaugError, match=r"masks: folder not found.*Kvasir-SEG: images"):
        get_reader("kvasir", tmp_path).refs()


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".bmp", ".tif"])
@pytest.mark.parametrize("damage", ["random", "truncated"])
def test_corrupt_image_is_an_input_error_naming_the_file(tmp_path, suffix, damage):
    path = save(tmp_path / f"x{suffix}", rgb(64, 64))
    raw = path.read_bytes()
    path.write_bytes(RNG.bytes(300) if damage == "random" else raw[: len(raw) // 2])
    reader = get_reader("folder", tmp_path)
    with pytest.raises(InputError, match=rf"{path}: cannot decode image \(.+\)"):
        reader.load(reader.refs()[0])


def test_label_shape_mismatch_names_both_files(tmp_path):
    save(tmp_path / "a.png", rgb(4, 5))
    save(tmp_path / "m" / "a.png", np.zeros((5, 4), np.uint8))
    reader = get_reader("folder", tmp_path, masks="m")
    with pytest.raises(InputError, match=r"m/a\.png: annotation is 5x4 but image .*a\.png is 4x5"):
        reader.load(reader.refs()[0])


# --------------------------------------------------------------------------- IDs, options, polygons


@pytest.mark.parametrize(
    "name",
    ["zarr.json", "ZARR.json", "__init__", "__", "", ".", "a" * 300, "x" * 250 + "é", "ok-1.2"],
)
def test_safe_id_is_always_a_valid_image_id(name):
    image_id = safe_id(name)
    assert image_id_problem(image_id) is None
    assert image_id == name or name not in ("ok-1.2",)


def test_long_names_keep_apart_and_reserved_names_get_a_prefix():
    assert safe_id("a" * 300) != safe_id("a" * 299 + "b")
    assert safe_id("zarr.json") == "id_zarr.json" and safe_id("__x") == "id___x"
    assert safe_id("ok-1.2") == "ok-1.2"


def test_a_file_named_zarr_json_png_gets_an_id_that_is_not_zarrs(tmp_path):
    save(tmp_path / "zarr.json.png", rgb(4, 4))
    save(tmp_path / "a.png", rgb(4, 4))
    refs = get_reader("folder", tmp_path).refs()
    assert [r.image_id for r in refs] == ["a", "id_zarr.json"]
    assert all(image_id_problem(r.image_id) is None for r in refs)


def test_reader_options_equal_to_the_defaults_are_dropped():
    assert normalise_reader_options("kvasir", {"split": "train"}) == {}
    assert normalise_reader_options("folder", {"split": "train", "masks": None}) == {}
    assert normalise_reader_options("folder", {"split": "val", "masks": "m"}) == {
        "split": "val",
        "masks": "m",
    }
    # MoNuSeg's default is "from the folder", so an explicit train is kept.
    assert normalise_reader_options("monuseg", {"split": "train"}) == {"split": "train"}


def test_polygons_far_outside_or_without_pixels_are_left_out_with_a_warning(tmp_path):
    folder = tmp_path / "MoNuSegTestData"
    save(folder / "t.tif", rgb(10, 12))
    aperio_xml(
        folder / "t.xml",
        [
            square(0.5, 0.5, 3.5, 3.5),  # kept: label 1
            [(1, 1), (8, 1), (8, 8), (1e300, 8)],  # a corrupt vertex: left out
            [(1e300, 1e300), (2e300, 1e300), (2e300, 2e300)],  # once an OverflowError
            square(12.5, 1.5, 14.5, 3.5),  # outside the image, but near: no pixel
            [(1.0, 1.0), (8.0, 8.0)],  # 2 vertices
            square(5.5, 5.5, 7.5, 7.5),  # kept: label 2
        ],
    )
    reader = get_reader("monuseg", tmp_path)
    record = reader.load(reader.refs()[0])
    expected = np.zeros((10, 12), np.int32)
    expected[1:4, 1:4] = 1
    expected[6:8, 6:8] = 2
    np.testing.assert_array_equal(record.label, expected)
    xml = folder / "t.xml"
    assert record.warnings == [
        f"{xml}: 1 region(s) left out, fewer than 3 vertices (12x10 image): Id=5",
        f"{xml}: 2 region(s) left out, a vertex farther outside the image than its own size "
        "(12x10 image): Id=2, 3",
        f"{xml}: 1 region(s) left out, no pixel inside the image (12x10 image): Id=4",
    ]
