"""Consolidated metadata: every writer ends with it, a store opened over HTTP lists every
image's split and attributes in one request, a writer at work leaves no stale copy, and a
local store trusts its completion markers over a copy that disagrees (verify says so, repair
writes it again)."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr

from precompute import store as st
from precompute.pipeline import PriorsConfig, run
from precompute.store.maintenance import attach_images, check_store, repair
from samaug.demo.synthetic import write_glas_like
from tests.support.http import running
from tests.support.store_toys import folder_dataset_store, write


def has_copy(path: Path) -> bool:
    return "consolidated_metadata" in json.loads((path / "zarr.json").read_text())


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A store made by `run` from a tiny GlaS-like dataset (3 train, 2 testA images)."""
    tmp = tmp_path_factory.mktemp("made")
    glas = write_glas_like(tmp / "glas", {"train": 3, "testA": 2}, size=(64, 80))
    config = PriorsConfig("glas", str(glas), str(tmp / "glas.zarr"), masker="superpixel", workers=0)
    assert run(config).done == 5
    return tmp / "glas.zarr", config


def test_a_run_ends_consolidated_and_a_remote_open_lists_everything_in_one_request(made):
    path, _ = made
    assert has_copy(path)
    with running(path.parent) as server:
        store = st.open_store(f"{server.url}/{path.name}")
        listing = {
            i: (store.image_attrs(i)["split"], store.image_attrs(i)["shape"]) for i in store.ids()
        }
        assert [(r.method, r.path) for r in server.reset()] == [("GET", "/glas.zarr/zarr.json")]
        assert store.consolidated and store.splits() == {"testA": 2, "train": 3}
        assert listing["train_1"] == ("train", [64, 80])
        # Array metadata comes with it: a read fetches chunks only.
        window = store.read("train_1", "seg_prior", (0, 0, 8, 8))
        np.testing.assert_array_equal(
            window, st.open_store(path).read("train_1", "seg_prior")[:8, :8]
        )
        assert all("/c/" in r.path for r in server.reset())


def test_writers_drop_the_copy_while_they_work_and_write_it_again(made, tmp_path):
    path, config = made
    copy = tmp_path / "copy.zarr"
    shutil.copytree(path, copy)
    attrs = st.read_root_attrs(copy)
    st.prepare_store(copy, {**attrs, "index": {}})  # what a run does first
    assert not has_copy(copy) and not st.open_store(copy).consolidated
    st.set_index(copy, attrs["index"])
    assert not has_copy(copy)
    st.consolidate(copy)
    st.unmark_images(copy, ["train_2"])  # repair's step: ends consolidated
    assert has_copy(copy) and st.open_store(copy).ids() == [
        "testA_1",
        "testA_2",
        "train_1",
        "train_3",
    ]
    # A resumed run redoes train_2 and ends consolidated, the copy agreeing with every node.
    summary = run(
        PriorsConfig(config.dataset, config.data_root, str(copy), masker="superpixel", workers=0)
    )
    assert [r.image_id for r in summary.results] == ["train_2"] and has_copy(copy)
    assert check_store(str(copy)).problems == []


def test_strip_and_attach_end_consolidated(tmp_path):
    data, full, shared = tmp_path / "data", tmp_path / "full.zarr", tmp_path / "shared.zarr"
    folder_dataset_store(data, full, [(32, 40), (24, 20)])
    st.strip_images(full, shared)
    assert has_copy(shared) and st.open_store(shared).consolidated
    assert attach_images(shared, data) == (2, [])
    store = st.open_store(shared)
    assert has_copy(shared) and store.consolidated and not store.stripped
    assert check_store(str(shared)).problems == []


def test_a_local_store_trusts_its_markers_over_a_copy_that_disagrees(made, tmp_path):
    path, _ = made
    copy = tmp_path / "copy.zarr"
    shutil.copytree(path, copy)
    # After consolidation, train_1 loses its marker and a new group appears (as a crash of
    # some other tool would leave them): the copy still says train_1 is complete.
    meta_path = copy / "images" / "train_1" / "zarr.json"
    meta = json.loads(meta_path.read_text())
    del meta["attributes"]["complete"]
    meta_path.write_text(json.dumps(meta))
    write(copy, "extra_1", "train", shape=(20, 24), n=2, seed=3)
    store = st.open_store(copy)
    assert not store.consolidated
    assert store.stale_consolidated == [
        "images/extra_1 is not in the consolidated metadata",
        "images/train_1: the consolidated metadata differs from its zarr.json",
    ]
    with pytest.raises(st.DamagedStoreError, match="train_1': has no completion marker"):
        store.read("train_1", "image")
    result = check_store(str(copy))
    assert result.flagged == ["train_1"]
    assert [p.split(" (")[0].split(": ", 1)[-1] for p in result.problems] == [
        "images/extra_1 is not in the consolidated metadata",
        "images/train_1: the consolidated metadata differs from its zarr.json",
        "has no completion marker",
    ]
    repair(str(copy))
    store = st.open_store(copy)
    assert store.consolidated and store.stale_consolidated == [] and "train_1" not in store.ids()
    assert check_store(str(copy)).problems == []


def test_a_copy_that_disagrees_is_reported_by_verify_over_http(made, tmp_path):
    path, _ = made
    copy = tmp_path / "served" / "glas.zarr"
    shutil.copytree(path, copy)
    zarr.open_group(copy, path="images/testA_2", mode="r+").attrs["split"] = "testB"
    with running(copy.parent) as server:
        url = f"{server.url}/glas.zarr"
        assert st.open_store(url).image_attrs("testA_2")["split"] == "testA"  # the copy, trusted
        problems = check_store(url).problems
    assert problems == [
        "consolidated metadata: images/testA_2: the consolidated metadata differs from its "
        "zarr.json (`samaug store repair` on the machine that holds the store folder writes it "
        "again)"
    ]
