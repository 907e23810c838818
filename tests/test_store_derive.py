"""Stores made from stores: pack into one file (read in place, locally and over HTTP) and
unpack, subset, merge and upgrade, from local and remote sources; each checks before it
writes and leaves a complete store or nothing."""

import json
import signal
import subprocess
import time
import zipfile

import numpy as np
import pytest
import zarr

from precompute import store as st
from precompute.store.maintenance import check_store
from precompute.types import SamaugError
from tests.support.cli import SAMAUG
from tests.support.http import running
from tests.support.store_toys import (
    DATASET,
    MASKER,
    folder_dataset_store,
    same_images,
    toy_store,
    write,
)


def test_pack_reads_in_place_locally_and_over_http_and_unpacks_to_the_same_store(
    consolidated_toy, tmp_path
):
    path, data = consolidated_toy
    packed = tmp_path / "toy.zarr.zip"
    built = st.pack_store(path, packed)
    assert sorted(built.index) == ["a_1", "b_2", "c_3"] and built.left_out == []
    with zipfile.ZipFile(packed) as zf:
        members = zf.infolist()
        assert {m.compress_type for m in members} == {zipfile.ZIP_STORED}
        assert members[-1].filename == "zarr.json"  # the root last, consolidated
        assert "consolidated_metadata" in json.loads(zf.read("zarr.json"))
        assert zf.comment.startswith(b"samaug-zip 1 tail=")
    store = st.open_store(packed)
    assert store.consolidated and store.attrs == st.open_store(path).attrs
    same_images(path, packed)
    assert check_store(str(packed)).problems == []
    with running(tmp_path) as server:
        remote = st.open_store(f"{server.url}/toy.zarr.zip")
        ids = {i: remote.image_attrs(i)["shape"] for i in remote.ids()}
        assert len(server.reset()) == 1 and ids["c_3"] == [257, 513]
        window = remote.read("c_3", "image", (200, 200, 257, 300))
        np.testing.assert_array_equal(window, data["c_3"][0][200:, 200:300])
    unpacked = tmp_path / "again.zarr"
    st.unpack_store(packed, unpacked)
    same_images(path, unpacked)
    for key in st.open_store(path).keys("c_3"):  # byte for byte
        assert (unpacked / key).read_bytes() == (path / key).read_bytes()
    # The same store packs to the same bytes.
    st.pack_store(unpacked, tmp_path / "again.zarr.zip")
    assert (tmp_path / "again.zarr.zip").read_bytes() == packed.read_bytes()


def test_a_damaged_zip_is_one_line_and_loses_nothing_complete(consolidated_toy, tmp_path):
    path, data = consolidated_toy
    packed = tmp_path / "toy.zarr.zip"
    st.pack_store(path, packed)
    raw = packed.read_bytes()
    cut = tmp_path / "cut.zarr.zip"
    cut.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(st.DamagedStoreError, match="no end of central directory") as err:
        st.open_store(cut)
    assert "\n" not in str(err.value)
    # A zip missing a member: that array is damage, the others read.
    holey = tmp_path / "holey.zarr.zip"
    with zipfile.ZipFile(packed) as src, zipfile.ZipFile(holey, "w") as dst:
        for info in src.infolist():
            if info.filename != "images/a_1/priors/c/0/0/0":
                dst.writestr(info, src.read(info))
    store = st.open_store(holey)
    with pytest.raises(st.DamagedStoreError, match="priors: chunk c/0/0/0 is missing"):
        store.read("a_1", "seg_prior", (0, 0, 4, 4))
    np.testing.assert_array_equal(store.read("a_1", "image"), data["a_1"][0])
    problems = check_store(str(holey)).problems
    assert problems == ["a_1: priors: chunk c/0/0/0 is missing (every chunk was written)"]
    # A compressed zip (not made by pack) is refused with what to do.
    squeezed = tmp_path / "squeezed.zarr.zip"
    with (
        zipfile.ZipFile(packed) as src,
        zipfile.ZipFile(squeezed, "w", zipfile.ZIP_DEFLATED) as dst,
    ):
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info))
    with pytest.raises(SamaugError, match="is compressed; samaug reads zips whose members are"):
        st.open_store(squeezed)


def test_subset_by_split_and_ids_from_a_url_records_where_it_came_from(consolidated_toy, tmp_path):
    path, _ = consolidated_toy
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("# chosen\nc_3\n\nb_2  # no masks\n")
    assert st.read_ids(ids_file) == ["c_3", "b_2"]
    with running(tmp_path) as server:
        url = f"{server.url}/toy.zarr"
        built = st.subset_store(url, tmp_path / "test.zarr", splits=["test"])
        assert built.index == {"c_3": "test"}
        st.subset_store(url, tmp_path / "some.zarr", ids=["c_3", "b_2"])
        with pytest.raises(SamaugError, match="holds no complete image nope, zz_9"):
            st.subset_store(url, tmp_path / "x.zarr", ids=["b_2", "nope", "zz_9"])
        with pytest.raises(SamaugError, match=r"no complete image in split\(s\) val"):
            st.subset_store(url, tmp_path / "x.zarr", splits=["val"])
    assert not (tmp_path / "x.zarr").exists()
    same_images(path, tmp_path / "some.zarr", ["b_2", "c_3"])
    subset = st.open_store(tmp_path / "some.zarr")
    assert subset.ids() == ["b_2", "c_3"] and subset.consolidated
    (step,) = subset.attrs["lineage"]
    assert step["operation"] == "subset" and step["sources"][0]["store"] == url
    assert step["sources"][0]["images"] == ["b_2", "c_3"]
    assert subset.attrs["masker"] == MASKER and subset.attrs["dataset"] == DATASET
    assert check_store(str(tmp_path / "some.zarr")).problems == []


def test_merge_joins_matching_stores_and_refuses_what_does_not_match(consolidated_toy, tmp_path):
    path, _ = consolidated_toy
    st.subset_store(path, tmp_path / "train.zarr", splits=["train"])
    st.subset_store(path, tmp_path / "test.zarr", splits=["test"], ids=["a_1"])  # a_1 twice
    built = st.merge_stores([tmp_path / "train.zarr", tmp_path / "test.zarr"], tmp_path / "m.zarr")
    assert built.index == {"a_1": "train", "b_2": "train", "c_3": "test"}
    same_images(path, tmp_path / "m.zarr")
    merged = st.open_store(tmp_path / "m.zarr")
    (step,) = merged.attrs["lineage"]
    assert [s["images"] for s in step["sources"]] == [["a_1", "b_2"], ["c_3"]]
    assert step["sources"][1]["lineage"][0]["operation"] == "subset"
    assert check_store(str(tmp_path / "m.zarr")).problems == []
    # Other settings: refused, naming the setting.
    other = tmp_path / "other.zarr"
    st.prepare_store(other, st.store_root_attrs(DATASET, {**MASKER, "settings": {"scales": [4]}}))
    with pytest.raises(SamaugError, match=r"masker.settings.scales: .*toy.zarr has \[1, 2\]"):
        st.merge_stores([path, other], tmp_path / "x.zarr")
    # The same image ID with other pixels: refused, naming it.
    clash = tmp_path / "clash.zarr"
    toy_store(clash)
    write(clash, "c_3", "test", shape=(257, 513), n=70, seed=99)
    with pytest.raises(
        SamaugError, match=r"image c_3 differs between .* \(image: sha256 differs\)"
    ):
        st.merge_stores([path, clash], tmp_path / "x.zarr")
    with pytest.raises(SamaugError, match="at least two stores"):
        st.merge_stores([path], tmp_path / "x.zarr")
    assert not (tmp_path / "x.zarr").exists()


def test_upgrade_rewrites_a_version_1_store_with_the_same_arrays(tmp_path):
    old = tmp_path / "old.zarr"
    toy_store(old, version=1)
    st.upgrade_store(old, tmp_path / "new.zarr")
    new = st.open_store(tmp_path / "new.zarr")
    assert new.attrs["schema_version"] == 2 and new.attrs[st.EVERY_CHUNK_WRITTEN] is True
    assert new.attrs["lineage"][-1]["operation"] == "upgrade"
    same_images(old, tmp_path / "new.zarr")
    assert check_store(str(tmp_path / "new.zarr")).problems == []
    # In place: the folder becomes version 2, nothing else is left beside it.
    assert st.upgrade_store(old) is not None
    assert st.open_store(old).attrs["schema_version"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new.zarr", "old.zarr"]
    same_images(tmp_path / "new.zarr", old)
    assert st.upgrade_store(old) is None  # already current
    # A resumed run of version 1 goes on in version 1 (upgrade is a choice, not a surprise).
    v1 = tmp_path / "v1.zarr"
    toy_store(v1, version=1)
    assert st.prepare_store(v1, st.store_root_attrs(DATASET, MASKER)).version == 1
    write(v1, "d_4", "train", shape=(20, 30), n=2, seed=4)
    assert zarr.open_array(v1, path="images/d_4/seg_prior", mode="r").shape == (20, 30)


def test_derived_stores_refuse_bad_destinations(consolidated_toy, tmp_path):
    path, _ = consolidated_toy
    with pytest.raises(SamaugError, match="add .zarr.zip"):
        st.pack_store(path, tmp_path / "toy.zarr.tar")
    with pytest.raises(SamaugError, match="is a .zip name"):
        st.subset_store(path, tmp_path / "t.zarr.zip", splits=["test"])
    with pytest.raises(SamaugError, match="derived stores are written to this machine"):
        st.pack_store(path, "s3://bucket/toy.zarr.zip")
    with pytest.raises(SamaugError, match="exists"):
        st.pack_store(path, path)
    with pytest.raises(SamaugError, match="not a .zarr.zip file"):
        st.unpack_store(path, tmp_path / "u.zarr")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["toy.zarr"]


def test_a_killed_pack_leaves_no_file_that_looks_complete(tmp_path):
    data, store = tmp_path / "data", tmp_path / "big.zarr"
    folder_dataset_store(data, store, [(1024, 1024)] * 6)
    packed = tmp_path / "big.zarr.zip"
    args = [*SAMAUG, "store", "pack", str(store), str(packed)]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    partial = []
    while not partial and proc.poll() is None:
        assert time.monotonic() < deadline, "pack wrote nothing within a minute"
        partial = [p for p in tmp_path.glob(".big.zarr.zip.*.partial") if p.stat().st_size]
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert partial, "pack finished before it could be killed"
    assert not packed.exists()
    with pytest.raises(SamaugError, match="no such store"):
        st.open_store(packed)
    # The next pack clears the killed one's leftover and writes the whole file.
    done = subprocess.run(args, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.zarr", "big.zarr.zip", "data"]
    assert check_store(str(packed)).problems == []


def test_strip_and_pack_take_a_url_as_source(consolidated_toy, tmp_path):
    path, data = consolidated_toy
    with running(tmp_path) as server:
        url = f"{server.url}/toy.zarr"
        assert st.strip_images(url, tmp_path / "shared.zarr") == []
        st.pack_store(url, tmp_path / "toy.zarr.zip")
    shared = st.open_store(tmp_path / "shared.zarr")
    assert shared.stripped and not shared.has("a_1", "image")
    np.testing.assert_array_equal(shared.read("c_3", "label"), data["c_3"][1])
    assert check_store(str(tmp_path / "shared.zarr")).problems == []
    same_images(path, tmp_path / "toy.zarr.zip")
