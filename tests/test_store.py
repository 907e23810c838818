import json
from pathlib import Path

import numpy as np
import pytest

from precompute import __version__
from precompute import store as st
from precompute.store.maintenance import verify
from precompute.types import SamaugError
from tests.support.http import serve
from tests.support.store_toys import DATASET, MASKER, chunk_file, rewrite, toy_store, write


@pytest.fixture(params=[1, 2])
def versioned(tmp_path, request):
    """The toy store in the layout of each schema version this samaug reads."""
    path = tmp_path / f"toy_v{request.param}.zarr"
    return path, toy_store(path, request.param)


def test_round_trip_values_and_provenance(versioned):
    path, data = versioned
    store = st.open_store(path)
    assert store.ids() == ["a_1", "b_2", "c_3"]
    assert store.ids(split="train") == ["a_1", "b_2"]
    assert store.splits() == {"test": 1, "train": 2}
    assert store.attrs["schema_version"] == int(path.name[-6])
    assert store.attrs["dataset"] == DATASET
    assert store.attrs["masker"] == MASKER
    assert store.attrs["priors"] == st.PRIOR_DEFINITIONS
    for image_id, (image, label, ms, seg, boundary) in data.items():
        np.testing.assert_array_equal(store.read(image_id, "image"), image)
        np.testing.assert_array_equal(store.read(image_id, "seg_prior"), seg)
        np.testing.assert_array_equal(store.read(image_id, "boundary_prior"), boundary)
        if label is not None:
            np.testing.assert_array_equal(store.read(image_id, "label"), label)
        else:
            assert not store.has(image_id, "label")
        masks, per_mask = store.masks(image_id)
        np.testing.assert_array_equal(masks, ms.masks)
        for name, values in ms.per_mask().items():
            np.testing.assert_array_equal(per_mask[name], values)
            assert per_mask[name].dtype == st.PER_MASK_DTYPES[name]
        attrs = store.image_attrs(image_id)
        assert attrs["complete"] is True
        assert attrs["shape"] == list(image.shape[:2])
        assert attrs["mask_count"] == len(ms)
        import hashlib

        assert attrs["image_sha256"] == hashlib.sha256(image.tobytes()).hexdigest()


def test_windows(versioned):
    path, data = versioned
    store = st.open_store(path)
    image, _, _, seg, _ = data["c_3"]
    np.testing.assert_array_equal(
        store.read("c_3", "image", (1, 250, 257, 513)), image[1:257, 250:513]
    )
    np.testing.assert_array_equal(store.read("c_3", "seg_prior", (0, 0, 1, 1)), seg[:1, :1])
    with pytest.raises(ValueError, match="outside image"):
        store.read("c_3", "seg_prior", (0, 0, 258, 10))
    with pytest.raises(KeyError, match="nope") as missing:
        store.read("nope", "image")
    assert str(missing.value) == f"{store.location}: no complete image 'nope' in the store"
    assert isinstance(missing.value, SamaugError)  # the CLI's one-line message
    with pytest.raises(ValueError, match="unknown array"):
        store.read("c_3", "masks")


def test_chunking_follows_the_schema_of_each_version(tmp_path):
    import zarr

    toy_store(tmp_path / "v1.zarr", version=1)
    group = zarr.open_group(tmp_path / "v1.zarr", mode="r")
    assert group["images/c_3/image"].chunks == (256, 256, 3)
    assert group["images/c_3/seg_prior"].chunks == (256, 256)
    assert group["images/b_2/seg_prior"].chunks == (40, 33)
    assert group["images/c_3/masks/bits"].chunks == (64, 257, 65)
    assert group["images/c_3/masks/bits"].shape == (70, 257, 65)
    assert group["images/c_3/image"].shards is None
    # Version 2: one shard per array, inner chunks of 256 x 256 tiles and 64 masks.
    toy_store(tmp_path / "v2.zarr", version=2)
    group = zarr.open_group(tmp_path / "v2.zarr", mode="r")
    image, priors = group["images/c_3/image"], group["images/c_3/priors"]
    assert (image.chunks, image.shards) == ((256, 256, 3), (512, 768, 3))
    assert (priors.shape, priors.chunks, priors.shards) == (
        (2, 257, 513),
        (2, 256, 256),
        (2, 512, 768),
    )
    bits = group["images/c_3/mask_bits"]
    assert (bits.shape, bits.chunks, bits.shards) == ((70, 257, 65), (64, 257, 65), (128, 257, 65))
    assert group["images/c_3/per_mask"].shape == (70, 9)
    assert group["images/b_2/priors"].chunks == (2, 40, 33)
    files = sorted(
        p.relative_to(tmp_path / "v2.zarr/images/c_3").as_posix()
        for p in (tmp_path / "v2.zarr/images/c_3").rglob("*")
        if p.is_file()
    )
    assert files == [
        "image/c/0/0/0",
        "image/zarr.json",
        "label/c/0/0",
        "label/zarr.json",
        "mask_bits/c/0/0/0",
        "mask_bits/zarr.json",
        "per_mask/c/0/0",
        "per_mask/zarr.json",
        "priors/c/0/0/0",
        "priors/zarr.json",
        "zarr.json",
    ]


def test_other_settings_are_refused_with_the_difference(toy):
    path, _ = toy
    other = {**MASKER, "settings": {**MASKER["settings"], "scales": [1, 3]}}
    with pytest.raises(
        SamaugError, match=r"masker\.settings\.scales: store has \[1, 2\], this run \[1, 3\]"
    ):
        st.prepare_store(path, st.store_root_attrs(DATASET, other))
    # The same settings resume: the complete images are reported done.
    done = st.prepare_store(path, st.store_root_attrs(DATASET, MASKER)).complete
    assert done == {"a_1", "b_2", "c_3"}
    # A moved checkpoint (same sha256) or a grown dataset still resumes.
    grown = {**DATASET, "splits": {"train": 5, "test": 1}}
    moved = {**MASKER, "checkpoint": "/elsewhere/sam.pth"}
    assert len(st.prepare_store(path, st.store_root_attrs(grown, moved)).complete) == 3
    prepared = st.prepare_store(path, st.store_root_attrs(DATASET, other), overwrite=True)
    assert prepared.complete == set()
    assert prepared.replaced.startswith(f"{path} (dataset 'toy', masker 'superpixel', 3 complete")
    assert st.open_store(path).ids() == []


def test_overwrite_replaces_only_a_samaug_store_outside_the_data(tmp_path):
    attrs = st.store_root_attrs(DATASET, MASKER)
    notes = tmp_path / "r" / "notes.txt"
    notes.parent.mkdir()
    notes.write_text("x")
    with pytest.raises(SamaugError, match="is not a samaug store"):
        st.prepare_store(notes.parent, attrs, overwrite=True)
    assert notes.read_text() == "x"
    # A store that holds the data root, or lies inside it, is never deleted.
    base = tmp_path / "ow" / "base"
    st.prepare_store(base, attrs)
    (base / "imgs").mkdir()
    (base / "imgs" / "a.png").write_bytes(b"png")
    with pytest.raises(SamaugError, match="holds or lies inside"):
        st.prepare_store(base, attrs, overwrite=True, protect=[base / "imgs"])
    inner = tmp_path / "data" / "s.zarr"
    st.prepare_store(inner, attrs)
    with pytest.raises(SamaugError, match="holds or lies inside"):
        st.prepare_store(inner, attrs, overwrite=True, protect=[tmp_path / "data"])
    assert (base / "imgs" / "a.png").read_bytes() == b"png" and (inner / "zarr.json").is_file()
    # A file is no store, overwrite or not.
    with pytest.raises(SamaugError, match="is a file, not a store"):
        st.prepare_store(notes, attrs, overwrite=True)


def test_incomplete_group_is_not_complete_and_is_replaced(toy):
    import zarr

    path, data = toy
    group = zarr.open_group(path, path="images/a_1", mode="r+")
    group.attrs["complete"] = False  # as if killed before the marker
    assert st.complete_ids(path) == {"b_2", "c_3"}
    (Path(path) / "images" / "b_2" / "zarr.json").write_text("{truncated")
    assert st.complete_ids(path) == {"c_3"}
    write(path, "a_1", "train", seed=1)
    assert st.complete_ids(path) == {"a_1", "c_3"}
    np.testing.assert_array_equal(st.open_store(path).read("a_1", "image"), data["a_1"][0])


def test_verify_passes_then_catches_a_modified_chunk(versioned):
    path, _ = versioned
    problems, checked = verify(str(path))
    assert (problems, checked) == ([], 3)
    version = int(path.name[-6])
    chunk = chunk_file(path, "c_3", "seg_prior", version)
    raw = bytearray(chunk.read_bytes())
    raw[len(raw) // 3] ^= 0xFF
    chunk.write_bytes(bytes(raw))
    problems, _ = verify(str(path))
    name = "seg_prior" if version == 1 else "priors"
    assert len(problems) == 1 and problems[0].startswith(f"c_3: {name}: cannot decode"), problems


def test_verify_catches_rewritten_values(versioned):
    path, _ = versioned
    # A valid chunk with a changed value: sha256 catches it.
    rewrite(path, "a_1", "boundary_prior", lambda b: b.__setitem__((5, 5), 1 - b[5, 5]))
    problems, _ = verify(str(path))
    assert len(problems) == 1 and problems[0].startswith("a_1: boundary_prior: sha256"), problems


def test_verify_catches_priors_that_do_not_match_masks(versioned):
    import hashlib

    import zarr

    path, _ = versioned
    seg = rewrite(path, "a_1", "seg_prior", lambda s: s.__setitem__((0, 0), s[0, 0] + 1.0))
    group = zarr.open_group(path, path="images/a_1", mode="r+")
    sums = dict(group.attrs["sha256"])
    sums["seg_prior"] = hashlib.sha256(seg.tobytes()).hexdigest()  # a consistent forgery
    group.attrs["sha256"] = sums
    problems, _ = verify(str(path))
    assert problems == ["a_1: seg_prior differs from the prior recomputed from the stored masks"]


def test_missing_store_and_wrong_schema(tmp_path, toy):
    import zarr

    with pytest.raises(SamaugError, match="no such store"):
        st.open_store(tmp_path / "absent.zarr")
    path, _ = toy
    zarr.open_group(path, mode="r+").attrs["schema_version"] = 99
    with pytest.raises(
        SamaugError, match="schema_version 99 is newer than this samaug reads"
    ) as err:
        st.open_store(path)
    assert f"written by samaug {__version__}: install that version or later" in str(err.value)
    zarr.open_group(path, mode="r+").attrs["schema_version"] = "2"
    with pytest.raises(SamaugError, match="schema_version '2' is not one this samaug reads"):
        st.open_store(path)


def test_mask_bits_are_compact(toy):
    path, data = toy
    store = st.open_store(path)
    raw = data["c_3"][2].masks.size  # one byte per boolean
    assert store.stored_bytes("c_3", "masks/bits") < raw / 10


@pytest.fixture
def http_root(tmp_path):
    with serve(tmp_path) as url:
        yield url


def test_read_only_over_http(versioned, http_root):
    path, data = versioned
    store = st.open_store(f"{http_root}/{Path(path).name}")
    assert store.ids() == ["a_1", "b_2", "c_3"]
    image, _, ms, seg, _ = data["c_3"]
    np.testing.assert_array_equal(
        store.read("c_3", "image", (0, 256, 256, 512)), image[:256, 256:512]
    )
    masks, per_mask = store.masks("c_3")
    np.testing.assert_array_equal(masks, ms.masks)
    np.testing.assert_array_equal(per_mask["stability_score"], ms.stability_score)
    problems, checked = verify(f"{http_root}/{Path(path).name}")
    assert (problems, checked) == ([], 3)


def test_store_module_imports_neither_torch_nor_sam():
    import subprocess
    import sys

    code = (
        "import sys, precompute.store, precompute.store.maintenance; "
        "print(json.dumps(sorted(m for m in ('torch','segment_anything') if m in sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", "import json; " + code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parents[1],
    )
    assert json.loads(out.stdout) == []
