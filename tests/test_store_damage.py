"""Damaged and hostile stores: every claim is checked before it is used, every problem is one
line (a SamaugError, or a verify line per image), and verify goes on past each of them."""

import json
from pathlib import Path

import numpy as np
import pytest
import zarr

from precompute import store as st
from precompute.store.maintenance import check_store, info_lines, repair, verify
from precompute.types import SamaugError
from tests.support.http import serve
from tests.support.store_toys import rewrite, toy_store, write


def edit_json(path: Path, change) -> None:
    meta = json.loads(path.read_text())
    change(meta)
    path.write_text(json.dumps(meta))


def one_line(err: pytest.ExceptionInfo) -> str:
    text = str(err.value)
    assert "\n" not in text
    return text


# --------------------------------------------------------------------------- missing chunks


def test_a_missing_chunk_is_damage_not_zeros_in_a_version_1_store(tmp_path):
    path = tmp_path / "v1.zarr"
    data = toy_store(path, version=1)
    assert st.open_store(path).attrs[st.EVERY_CHUNK_WRITTEN] is True
    # b_2 has no mask: its priors are all zeros, and their chunk is written all the same.
    (path / "images" / "b_2" / "seg_prior" / "c" / "0" / "0").unlink()
    (path / "images" / "c_3" / "image" / "c" / "1" / "0" / "0").unlink()
    store = st.open_store(path)
    with pytest.raises(st.DamagedStoreError, match=r"seg_prior: chunk c/0/0 is missing") as err:
        store.read("b_2", "seg_prior")
    assert one_line(err).startswith(f"{path}: image 'b_2': ")
    with pytest.raises(st.DamagedStoreError, match=r"image: chunk c/1/0/0 is missing"):
        store.read("c_3", "image", (200, 0, 257, 10))
    # Windows that avoid the missing chunk still read.
    np.testing.assert_array_equal(
        store.read("c_3", "image", (0, 0, 256, 10)), data["c_3"][0][:256, :10]
    )
    result = check_store(str(path))
    assert result.problems == [
        "b_2: seg_prior: chunk c/0/0 is missing (every chunk was written)",
        "c_3: image: chunk c/1/0/0 is missing (every chunk was written)",
    ]
    assert (result.checked, result.flagged, result.notes) == (3, ["b_2", "c_3"], [])


def test_training_stops_at_a_missing_chunk_with_one_line(toy):
    from train.data.datasets import PatchDataset

    path, _ = toy
    (path / "images" / "a_1" / "priors" / "c" / "0" / "0" / "0").unlink()
    dataset = PatchDataset(path, ["a_1"], patch_size=64, task="binary")
    with pytest.raises(st.DamagedStoreError, match=r"image 'a_1': priors: chunk c/0/0/0 is") as err:
        dataset[0]
    one_line(err)
    # A DataLoader worker re-raises an error from its message alone: it must stay the same type.
    assert type(type(err.value)(str(err.value))) is st.DamagedStoreError


def test_a_chunk_that_goes_missing_on_a_server_is_damage(toy, tmp_path):
    path, data = toy
    with serve(tmp_path) as url:
        store = st.open_store(f"{url}/{path.name}")
        np.testing.assert_array_equal(store.read("a_1", "seg_prior"), data["a_1"][3])
        (path / "images" / "a_1" / "label" / "c" / "0" / "0").unlink()
        with pytest.raises(st.DamagedStoreError, match="label: chunk c/0/0 is missing"):
            store.read("a_1", "label", (0, 0, 5, 5))
        assert verify(f"{url}/{path.name}")[0] == [
            "a_1: label: chunk c/0/0 is missing (every chunk was written)"
        ]


def test_an_older_store_reads_missing_chunks_as_zeros_and_verify_says_it_cannot_tell(tmp_path):
    path = tmp_path / "v1.zarr"
    toy_store(path, version=1)
    root = zarr.open_group(path, mode="r+")
    root.attrs.pop(st.EVERY_CHUNK_WRITTEN)  # as written before the attribute existed
    (path / "images" / "b_2" / "seg_prior" / "c" / "0" / "0").unlink()  # all zeros anyway
    assert not st.open_store(path).read("b_2", "seg_prior").any()
    result = check_store(str(path))
    assert (result.problems, result.checked) == ([], 3)
    assert len(result.notes) == 1 and "cannot tell whether chunks" in result.notes[0]


def test_losing_the_server_after_open_is_one_error_that_says_rerun(toy, tmp_path):
    path, _ = toy
    with serve(tmp_path) as url:
        location = f"{url}/{path.name}"
        store = st.open_store(location)
        store.image_attrs("a_1")
    with pytest.raises(st.StoreUnreachableError) as err:
        store.read("a_1", "seg_prior")
    message = one_line(err)
    assert message.startswith(f"{location}: reading images/a_1/")
    assert "run the same command again" in message
    with pytest.raises(SamaugError, match="no readable|cannot be read|reading"):
        st.open_store(location)


# --------------------------------------------------------------------------- claimed sizes


def test_claimed_sizes_are_checked_before_anything_is_allocated(toy):
    path, _ = toy
    # An array claiming 1e6 x 1e6 pixels (2.73 TiB): refused from its metadata alone.
    edit_json(
        path / "images" / "a_1" / "image" / "zarr.json",
        lambda m: m.update(shape=[1_000_000, 1_000_000, 3]),
    )
    # An image whose attributes claim that size, or more masks than the limit.
    group = zarr.open_group(path, path="images/c_3", mode="r+")
    group.attrs["mask_count"] = 10**9
    store = st.open_store(path)
    with pytest.raises(st.DamagedStoreError, match=r"image: shape \(1000000, 1000000, 3\) does"):
        store.read("a_1", "image")
    with pytest.raises(st.DamagedStoreError, match="'mask_count' is 1000000000, not a count"):
        store.masks("c_3")
    problems, checked = verify(str(path))
    assert checked == 3 and [p.split(":")[0] for p in problems] == ["a_1", "c_3"]
    zarr.open_group(path, path="images/b_2", mode="r+").attrs["shape"] = [10**6, 10**6]
    with pytest.raises(st.DamagedStoreError, match="claims 1000000 x 1000000 pixels"):
        st.open_store(path).image_attrs("b_2")


def test_masks_shape_must_match_the_mask_count(toy):
    path, data = toy
    group = zarr.open_group(path, path="images/a_1", mode="r+")
    group.attrs["mask_count"] = 11  # the arrays hold 12
    store = st.open_store(path)
    with pytest.raises(st.DamagedStoreError, match=r"mask_bits: shape \(12, 300, 34\) does not"):
        store.masks("a_1")
    # verify reads masks a block at a time and still recomputes the priors exactly.
    masks, _ = store.masks("c_3")
    np.testing.assert_array_equal(masks, data["c_3"][2].masks)
    blocks = list(store.mask_blocks("c_3"))
    assert [len(b[0]) for b in blocks] == [64, 6]
    np.testing.assert_array_equal(np.concatenate([b[0] for b in blocks]), masks)
    problems = verify(str(path))[0]
    assert problems == [
        "a_1: mask_bits: shape (12, 300, 34) does not match the image's attributes (11, 300, 34)",
        "a_1: per_mask: shape (12, 9) does not match the image's attributes (11, 9)",
    ]


# --------------------------------------------------------------------------- hostile attributes


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("index", {"..": "train"}, "'index' image ID '..' must be letters"),
        ("index", {"../../x": "train"}, "'index' image ID '../../x' must be"),
        ("index", {"/abs": "train"}, "'index' image ID '/abs' must be"),
        ("index", {"zarr.json": "train"}, "'index' image ID 'zarr.json' is a name Zarr reserves"),
        ("index", ["a_1"], "'index' is list, not a mapping"),
        ("index", {"a_1": 3}, "'index' image 'a_1' has split 3"),
        ("dataset", "glas", "'dataset' is str, not a mapping"),
        ("masker", {"kind": 1}, "'masker.kind' must be a string"),
        ("images_stripped", "yes", "'images_stripped' must be true or false"),
    ],
)
def test_hostile_root_attributes_are_one_error_on_open(toy, key, value, message):
    path, _ = toy
    zarr.open_group(path, mode="r+").attrs[key] = value
    with pytest.raises(SamaugError, match=message) as err:
        st.open_store(path)
    assert one_line(err).startswith(f"{path}: root attribute")


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("shape", "300x270", "'shape' is '300x270', not \\[height, width\\]"),
        ("shape", [300.5, 270], "'shape' is \\[300.5, 270\\]"),
        ("mask_count", -1, "'mask_count' is -1, not a count"),
        ("sha256", ["x"], "'sha256' is not a map"),
        ("sha256", {"../../etc": "0" * 64}, "'sha256' lists ../../etc, not arrays"),
        ("split", None, "'split' is None"),
        ("made_on", ["cpu", 2], "'made_on' is not a mapping"),
        ("complete", "true", "no completion marker"),
    ],
)
def test_hostile_image_attributes_are_one_error_and_verify_goes_on(toy, key, value, message):
    path, _ = toy
    zarr.open_group(path, path="images/a_1", mode="r+").attrs[key] = value
    store = st.open_store(path)
    with pytest.raises(st.DamagedStoreError, match=message) as err:
        store.image_attrs("a_1")
    assert one_line(err).startswith(f"{path}: image 'a_1': ")
    with pytest.raises(st.DamagedStoreError, match=message):
        store.read("a_1", "seg_prior", (0, 0, 8, 8))
    problems, checked = verify(str(path))
    assert checked == 3 and len(problems) == 1 and problems[0].startswith("a_1: ")
    assert any(line.startswith("damaged    1 images") for line in info_lines(str(path)))


# --------------------------------------------------------------------------- verify goes on


def damage_every_way(path: Path) -> dict[str, str]:
    """Damage four of the five images of a store, each another way; the expected problems."""
    import shutil

    shutil.rmtree(path / "images" / "d_4")  # the folder is gone
    (path / "images" / "c_3" / "priors" / "zarr.json").unlink()  # array metadata gone
    (path / "images" / "b_2" / "zarr.json").write_text("{truncated")  # invalid group JSON
    # A forged marker: complete, but the arrays are not what the attributes record.
    rewrite(path, "e_5", "seg_prior", lambda seg: seg.__setitem__((0, 0), 7.0))
    return {
        "b_2": "group metadata is unreadable",
        "c_3": "priors: array metadata is missing",
        "d_4": "listed in the index but has no group",
        "e_5": "seg_prior: sha256",
    }


@pytest.fixture
def five(tmp_path):
    path = tmp_path / "five.zarr"
    toy_store(path)
    write(path, "d_4", "test", shape=(64, 64), n=3, seed=4)
    write(path, "e_5", "test", shape=(64, 80), n=4, seed=5)
    st.set_index(path, {i: "train" for i in ("a_1", "b_2", "c_3", "d_4", "e_5")})
    return path


def test_verify_reports_each_damaged_image_on_one_line_and_goes_on(five):
    expected = damage_every_way(five)
    result = check_store(str(five))
    assert result.checked == 5 and result.flagged == sorted(expected)
    assert len(result.problems) == 4
    for line, (image_id, problem) in zip(result.problems, sorted(expected.items()), strict=True):
        assert line.startswith(f"{image_id}: {problem}"), line


def test_complete_ids_does_not_count_groups_with_missing_or_unreadable_array_metadata(five):
    assert st.complete_ids(five) == {"a_1", "b_2", "c_3", "d_4", "e_5"}
    (five / "images" / "a_1" / "priors" / "zarr.json").unlink()
    (five / "images" / "c_3" / "mask_bits" / "zarr.json").write_text("[1, 2")
    edit_json(five / "images" / "d_4" / "label" / "zarr.json", lambda m: m.update(shape=[9, 9]))
    assert st.complete_ids(five) == {"b_2", "e_5"}


def test_repair_unmarks_exactly_the_flagged_images(five):
    damage_every_way(five)
    result = repair(str(five))
    assert result.flagged == ["b_2", "c_3", "d_4", "e_5"]
    assert st.complete_ids(five) == {"a_1"}
    assert st.open_store(five).ids() == ["a_1"]
    assert verify(str(five)) == ([], 1)
    # The next run writes them again (here by hand; test_repair_then_priors_redoes_them runs
    # `samaug priors` itself), and the store is whole.
    for image_id, shape in (("b_2", (40, 33)), ("c_3", (257, 513)), ("d_4", (64, 64))):
        write(five, image_id, "train", shape=shape, n=3, seed=9)
    assert st.complete_ids(five) == {"a_1", "b_2", "c_3", "d_4"}


def test_repair_then_priors_redoes_exactly_those_images(tmp_path):
    from precompute.pipeline import PriorsConfig, run
    from samaug.demo.synthetic import write_glas_like

    glas = write_glas_like(tmp_path / "glas", {"train": 4}, size=(48, 64))
    config = PriorsConfig(
        "glas", str(glas), str(tmp_path / "s.zarr"), masker="superpixel", workers=0, device="cpu"
    )
    assert run(config).done == 4
    store_path = tmp_path / "s.zarr"
    (store_path / "images" / "train_2" / "priors" / "zarr.json").unlink()
    rewrite(store_path, "train_3", "boundary_prior", lambda b: b.__setitem__((0, 0), 1 - b[0, 0]))
    problems = verify(str(store_path))[0]
    assert [p.split(":")[0] for p in problems] == ["consolidated metadata", "train_2", "train_3"]
    assert problems[0].startswith(
        "consolidated metadata: images/train_2/priors is in the consolidated metadata but has no"
    )
    assert repair(str(store_path)).flagged == ["train_2", "train_3"]
    again = run(config)
    assert (again.skipped, sorted(r.image_id for r in again.results)) == (2, ["train_2", "train_3"])
    assert verify(str(store_path)) == ([], 4)
