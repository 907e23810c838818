"""Version 2's sharded layout: a shard's index tells a written inner chunk from a missing one,
a truncated or altered shard is damage (never zeros, never values read at wrong offsets),
and a window is read in a few range requests, locally and over HTTP."""

from pathlib import Path

import google_crc32c
import numpy as np
import pytest

from precompute import store as st
from precompute.store import shards
from precompute.store.maintenance import check_store
from tests.support.http import running


def shard(path: Path, image_id: str, array: str) -> Path:
    ndim = {"image": 3, "priors": 3, "mask_bits": 3}.get(array, 2)
    return path.joinpath("images", image_id, array, "c", *["0"] * ndim)


def forget_inner_chunk(file: Path, grid: tuple[int, ...], number: int) -> None:
    """Mark inner chunk ``number`` as never written in the shard's index (a valid index: its
    crc32c is recomputed), as a writer that skipped empty chunks would have left it."""
    raw = bytearray(file.read_bytes())
    size = shards.index_nbytes(grid)
    table = np.frombuffer(bytes(raw[-size:-4]), "<u8").reshape(-1, 2).copy()
    table[number] = shards.MISSING
    body = table.astype("<u8").tobytes()
    raw[-size:] = body + np.uint32(google_crc32c.value(body)).tobytes()
    file.write_bytes(bytes(raw))


def test_a_missing_inner_chunk_is_damage_and_other_windows_still_read(toy):
    path, data = toy
    image = data["c_3"][0]  # 257 x 513: a 2 x 3 grid of 256 x 256 inner chunks
    forget_inner_chunk(shard(path, "c_3", "image"), (2, 3, 1), 4)  # chunk (1, 1)
    store = st.open_store(path)
    with pytest.raises(st.DamagedStoreError, match=r"image: shard c/0/0/0: inner chunk 1/1/0 is"):
        store.read("c_3", "image", (250, 250, 257, 260))
    with pytest.raises(st.DamagedStoreError, match="inner chunk 1/1/0 is missing"):
        store.read("c_3", "image")
    np.testing.assert_array_equal(store.read("c_3", "image", (0, 0, 256, 513)), image[:256])
    np.testing.assert_array_equal(store.read("c_3", "image", (256, 0, 257, 256)), image[256:, :256])
    assert check_store(str(path)).problems == [
        "c_3: image: shard c/0/0/0: inner chunk 1/1/0 is missing (every chunk was written)"
    ]


def test_a_truncated_or_altered_shard_is_damage(toy):
    path, data = toy
    priors = shard(path, "a_1", "priors")
    priors.write_bytes(priors.read_bytes()[:-100])  # cut inside the index
    bits = shard(path, "c_3", "mask_bits")
    raw = bytearray(bits.read_bytes())
    raw[-10] ^= 0x01  # one bit of an offset in the index
    bits.write_bytes(bytes(raw))
    label = shard(path, "a_1", "label")
    raw = label.read_bytes()
    size = shards.index_nbytes((2, 2))
    label.write_bytes(raw[: len(raw) - size - 50] + raw[-size:])  # data cut, index intact
    store = st.open_store(path)
    with pytest.raises(st.DamagedStoreError, match="priors: shard c/0/0/0: its index fails its"):
        store.read("a_1", "seg_prior", (0, 0, 8, 8))
    with pytest.raises(st.DamagedStoreError, match="mask_bits: shard c/0/0/0: its index fails"):
        store.masks("c_3")
    with pytest.raises(st.DamagedStoreError, match="label: shard c/0/0: is shorter than its"):
        store.read("a_1", "label")
    problems = check_store(str(path)).problems
    assert [p.split(": ")[:2] for p in problems] == [
        ["a_1", "label"],
        ["a_1", "priors"],
        ["c_3", "mask_bits"],
    ]
    # The undamaged arrays read as written.
    np.testing.assert_array_equal(store.read("a_1", "image"), data["a_1"][0])


def test_a_window_over_http_takes_two_requests_per_array_then_one(toy):
    path, data = toy
    image, label, _, seg, boundary = data["c_3"]
    with running(path.parent) as server:
        store = st.open_store(f"{server.url}/{path.name}")
        assert all(store.has("c_3", name) for name in ("image", "label", "seg_prior"))
        server.reset()
        window = (200, 200, 257, 300)  # four inner chunks of each map
        np.testing.assert_array_equal(store.read("c_3", "image", window), image[200:, 200:300])
        np.testing.assert_array_equal(store.read("c_3", "label", window), label[200:, 200:300])
        np.testing.assert_array_equal(store.read("c_3", "seg_prior", window), seg[200:, 200:300])
        np.testing.assert_array_equal(
            store.read("c_3", "boundary_prior", window), boundary[200:, 200:300]
        )
        # The shard's index and then one range of its chunks; both priors share one shard.
        assert [(r.path.split("/")[4], r.range[:7]) for r in server.reset()] == [
            ("image", "bytes=-"),
            ("image", "bytes=0"),
            ("label", "bytes=-"),
            ("label", "bytes=0"),
            ("priors", "bytes=-"),
            ("priors", "bytes=0"),
        ]
        np.testing.assert_array_equal(store.read("c_3", "image", (0, 400, 9, 513)), image[:9, 400:])
        later = server.reset()  # at most the chunk's range: the index is kept
        assert len(later) <= 1 and not any(r.range.startswith("bytes=-") for r in later)
