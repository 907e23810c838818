"""Shards as the reader sees them: their index, which inner chunks a selection touches, and
the few byte ranges that hold them.

A version 2 array is one shard (one object, key ``<array>/c/0/0...``) of inner chunks,
followed by its index: each inner chunk's (offset, length) as little-endian uint64 in C order
of the chunk grid, then the crc32c of those bytes. Every inner chunk is written (empty ones
too), so an entry of all ones (Zarr's "no chunk") is damage, as a missing chunk file is in
version 1. The index's crc32c makes a truncated or altered shard fail here instead of being
read at wrong offsets.
"""

from __future__ import annotations

import math
from itertools import product
from typing import Any

import google_crc32c
import numpy as np
from zarr.abc.store import SuffixByteRequest

MISSING = np.uint64(2**64 - 1)
# Ranges closer than this are fetched as one: a request costs more than a few hundred
# kilobytes over any network a store is read across.
COALESCE_GAP = 1 << 20


def shard_key(array_path: str, ndim: int) -> str:
    """The key of the only shard of a version 2 array (``<array_path>/c/0/0``...)."""
    return f"{array_path}/c/" + "/".join("0" * ndim)


def chunks_per_shard(shards: tuple[int, ...], chunks: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(s // c for s, c in zip(shards, chunks, strict=True))


def index_nbytes(grid: tuple[int, ...]) -> int:
    """Bytes of the index of a shard with inner chunk grid ``grid``."""
    return 16 * math.prod(grid) + 4


def parse_index(raw: bytes, grid: tuple[int, ...]) -> np.ndarray:
    """The (n_chunks, 2) uint64 (offset, length) table of a shard, C order of ``grid``.

    ValueError when ``raw`` is not an index of that size or fails its crc32c.
    """
    size = index_nbytes(grid)
    if len(raw) != size:
        raise ValueError(f"its index is {len(raw)} bytes, not {size}")
    body, stored = raw[:-4], raw[-4:]
    if np.uint32(google_crc32c.value(body)).tobytes() != stored:
        raise ValueError("its index fails its checksum (the shard is truncated or altered)")
    return np.frombuffer(body, "<u8").reshape(-1, 2)


def touched(selection: Any, shape: tuple[int, ...], chunks: tuple[int, ...]) -> list[int]:
    """Flat (C order) numbers of the inner chunks a selection reads.

    selection: Ellipsis, or a tuple of ints and step-1 slices, one per leading dimension
    (missing trailing dimensions are whole).
    """
    if selection is Ellipsis:
        selection = ()
    selection = selection if isinstance(selection, tuple) else (selection,)
    ranges = []
    for axis, (length, chunk) in enumerate(zip(shape, chunks, strict=True)):
        item = selection[axis] if axis < len(selection) else slice(None)
        if isinstance(item, slice):
            start, stop, _ = item.indices(length)
        else:
            start = int(item) + (length if int(item) < 0 else 0)
            stop = start + 1
        if stop <= start:
            return []
        ranges.append(range(start // chunk, -(-stop // chunk)))
    grid = tuple(-(-length // chunk) for length, chunk in zip(shape, chunks, strict=True))
    return [int(np.ravel_multi_index(coords, grid)) for coords in product(*ranges)]


def missing(index: np.ndarray, numbers: list[int]) -> list[int]:
    """The chunk numbers among ``numbers`` that the index says were never written."""
    return [n for n in numbers if index[n, 0] == MISSING and index[n, 1] == MISSING]


def byte_ranges(index: np.ndarray, numbers: list[int], gap: int = COALESCE_GAP) -> list:
    """[(start, stop)] covering the inner chunks ``numbers``, ranges closer than ``gap``
    bytes joined, in file order."""
    spans = sorted((int(index[n, 0]), int(index[n, 0] + index[n, 1])) for n in numbers)
    joined: list[list[int]] = []
    for start, stop in spans:
        if joined and start - joined[-1][1] <= gap:
            joined[-1][1] = max(joined[-1][1], stop)
        else:
            joined.append([start, stop])
    return [(start, stop) for start, stop in joined]


def chunk_name(number: int, grid: tuple[int, ...]) -> str:
    """An inner chunk's coordinates as Zarr writes chunk keys, e.g. "0/1/2"."""
    return "/".join(str(int(c)) for c in np.unravel_index(number, grid))


def fetch(guarded, array_path: str, array: Any, selection: Any) -> str | None:
    """Bring the bytes of the inner chunks ``selection`` reads from the only shard of
    ``array`` (a zarr Array at ``array_path``) into ``guarded``'s memory (a ``GuardedStore``)
    in as few requests as the layout allows, after checking the shard's index: the whole
    shard in one request when every inner chunk is read, else the index (kept) and the
    joined ranges. Returns the problem (a phrase naming the shard) when the shard is missing,
    cut short, or its index fails its crc32c or lacks a chunk the read needs; else None."""
    key = shard_key(array_path, array.ndim)
    where = f"shard c/{key.rpartition('/c/')[2]}"
    grid = chunks_per_shard(array.shards, array.chunks)
    numbers = touched(selection, array.shape, array.chunks)
    if not numbers:
        return None
    size = index_nbytes(grid)
    whole = len(numbers) == math.prod(grid)
    data = guarded.fetch(key) if whole else None
    tail = data[-size:] if data is not None else None
    if not whole:
        tail = guarded.read(key, SuffixByteRequest(size))
    if tail is None:
        return f"{where} is missing"
    try:
        index = parse_index(tail, grid)
    except ValueError as err:
        return f"{where}: {err}"
    lost = missing(index, numbers)
    if lost:
        name = chunk_name(lost[0], grid)
        return f"{where}: inner chunk {name} is missing (every chunk was written)"
    for start, stop in byte_ranges(index, numbers):
        if whole:
            short = stop > len(data) - size
        else:
            got = guarded.fetch(key, start, stop)
            short = got is None or len(got) < stop - start
        if short:
            return f"{where}: is shorter than its index says"
    return None
