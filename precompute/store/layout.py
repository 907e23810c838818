"""Which Zarr arrays hold an image's data, by schema version (store_schema.md, "Layout").

The *logical* arrays are the same in every version: ``image``, ``label``, ``seg_prior``,
``boundary_prior``, ``masks/bits`` and the per-mask arrays, with the same dtypes and the same
recorded sha256. How they are stored differs:

- version 1: one Zarr array per logical array, chunked in 256 x 256 tiles (a file per chunk);
- version 2: five arrays, each a single shard (one file) of 256 x 256 inner chunks: ``image``,
  ``label``, ``priors`` (seg and boundary prior stacked, float32), ``mask_bits`` and
  ``per_mask`` (the per-mask arrays as float64 columns, exact for every value they hold).

A ``Layout`` gives the physical arrays of an H x W image with N masks (``specs``), where each
logical array lives (``source``), and turns logical arrays into the physical ones to write.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from precompute.store.schema import ARRAY_NAMES, MASKS_PER_CHUNK, PER_MASK_DTYPES, TILE

# Arrays every complete group holds; "image" too unless the store is stripped, "label" where
# the group's ``sha256`` lists it (annotated images).
REQUIRED_ARRAYS = tuple(n for n in ARRAY_NAMES if n not in ("image", "label"))
# Version 2's per-mask table: columns of each per-mask array (box and point take several).
PER_MASK_COLUMNS = {
    "stability_score": slice(0, 1),
    "predicted_iou": slice(1, 2),
    "box": slice(2, 6),
    "point": slice(6, 8),
    "area": slice(8, 9),
}
TABLE_WIDTH = 9


@dataclass(frozen=True)
class ArraySpec:
    """Shape, dtype, (inner) chunk shape, blosc shuffle and shard shape (None: unsharded) of
    one physical array of an image group."""

    shape: tuple[int, ...]
    dtype: np.dtype
    chunks: tuple[int, ...]
    shuffle: str
    shards: tuple[int, ...] | None = None


def _spec(shape, dtype, chunks, shuffle="shuffle", sharded=False) -> ArraySpec:
    # A dimension of length 0 still gets a chunk length of 1 (Zarr needs one). A shard holds
    # whole inner chunks: each dimension rounded up to a multiple of the chunk.
    chunks = tuple(max(c, 1) for c in chunks)
    shards = None
    if sharded:
        shards = tuple(max(math.ceil(s / c), 1) * c for s, c in zip(shape, chunks, strict=True))
    return ArraySpec(tuple(shape), np.dtype(dtype), chunks, shuffle, shards)


@dataclass(frozen=True)
class Source:
    """Where a logical array lives: physical ``array``, the index ``lead`` put before a
    selection (a plane of ``priors``), the ``columns`` of a table, and the logical dtype."""

    array: str
    dtype: np.dtype
    lead: tuple[int, ...] = ()
    columns: slice | None = None

    def selection(self, selection: Any = Ellipsis) -> Any:
        """The physical selection for a logical one (a tuple of slices, or Ellipsis)."""
        if self.columns is not None:
            rows = selection[0] if isinstance(selection, tuple) else selection
            return (slice(None) if rows is Ellipsis else rows, self.columns)
        if not self.lead:
            return selection
        rest = () if selection is Ellipsis else selection
        rest = rest if isinstance(rest, tuple) else (rest,)
        return (*self.lead, *rest)

    def convert(self, raw: np.ndarray) -> np.ndarray:
        """Physical values -> the logical array (dtype, a single column squeezed)."""
        if self.columns is not None and self.columns.stop - self.columns.start == 1:
            raw = raw[:, 0]
        return np.asarray(raw).astype(self.dtype, copy=False)


class Layout:
    """The physical arrays of one schema version."""

    version: int
    sharded: bool

    def specs(self, height: int, width: int, mask_count: int) -> dict[str, ArraySpec]:
        raise NotImplementedError

    def source(self, name: str) -> Source:
        raise NotImplementedError

    def physical(self, arrays: Mapping[str, np.ndarray | None]) -> dict[str, np.ndarray]:
        """Logical arrays (by ARRAY_NAMES, None where absent) -> the physical ones to write."""
        raise NotImplementedError

    def expected(self, attrs: Mapping, stripped: bool) -> dict[str, ArraySpec]:
        """The physical arrays a complete group with (checked) attributes ``attrs`` holds.

        ``image`` is optional in a stripped store (absent until attached); ``label`` is
        expected where ``sha256`` lists it.
        """
        height, width = attrs["shape"]
        specs = self.specs(height, width, attrs["mask_count"])
        wanted = [*REQUIRED_ARRAYS, *(["label"] if "label" in attrs["sha256"] else [])]
        if not stripped:
            wanted.append("image")
        names = {self.source(name).array for name in wanted}
        return {name: spec for name, spec in specs.items() if name in names}

    def logical_names(self, physical: str) -> list[str]:
        """The logical arrays stored in physical array ``physical``."""
        return [name for name in ARRAY_NAMES if self.source(name).array == physical]


class Version1(Layout):
    version, sharded = 1, False

    def specs(self, height, width, mask_count):
        tile = (min(TILE, height), min(TILE, width))
        packed, n = math.ceil(width / 8), mask_count
        specs = {
            "image": _spec((height, width, 3), np.uint8, (*tile, 3)),
            "label": _spec((height, width), np.int32, tile),
            "seg_prior": _spec((height, width), np.float32, tile),
            "boundary_prior": _spec((height, width), np.uint8, tile, "bitshuffle"),
            "masks/bits": _spec(
                (n, height, packed), np.uint8, (MASKS_PER_CHUNK, height, packed), "bitshuffle"
            ),
        }
        for name, dtype in PER_MASK_DTYPES.items():
            width_of = {"box": (4,), "point": (2,)}.get(name, ())
            specs[f"masks/{name}"] = _spec((n, *width_of), dtype, (n, *width_of))
        return specs

    def source(self, name):
        return Source(name, _dtype(name))

    def physical(self, arrays):
        return {name: value for name, value in arrays.items() if value is not None}


class Version2(Layout):
    version, sharded = 2, True

    def specs(self, height, width, mask_count):
        tile = (min(TILE, height), min(TILE, width))
        packed, n = math.ceil(width / 8), mask_count
        return {
            "image": _spec((height, width, 3), np.uint8, (*tile, 3), sharded=True),
            "label": _spec((height, width), np.int32, tile, sharded=True),
            "priors": _spec((2, height, width), np.float32, (2, *tile), sharded=True),
            "mask_bits": _spec(
                (n, height, packed),
                np.uint8,
                (MASKS_PER_CHUNK, height, packed),
                "bitshuffle",
                sharded=True,
            ),
            "per_mask": _spec((n, TABLE_WIDTH), np.float64, (n, TABLE_WIDTH)),
        }

    def source(self, name):
        dtype = _dtype(name)
        if name in ("seg_prior", "boundary_prior"):
            return Source("priors", dtype, lead=(0 if name == "seg_prior" else 1,))
        if name == "masks/bits":
            return Source("mask_bits", dtype)
        if name.startswith("masks/"):
            return Source("per_mask", dtype, columns=PER_MASK_COLUMNS[name[len("masks/") :]])
        return Source(name, dtype)

    def physical(self, arrays):
        out = {name: arrays[name] for name in ("image", "label") if arrays.get(name) is not None}
        out["priors"] = np.stack(
            [np.asarray(arrays[name], np.float32) for name in ("seg_prior", "boundary_prior")]
        )
        out["mask_bits"] = arrays["masks/bits"]
        table = np.zeros((len(arrays["masks/bits"]), TABLE_WIDTH), np.float64)
        for name, columns in PER_MASK_COLUMNS.items():
            values = np.asarray(arrays[f"masks/{name}"], np.float64)
            table[:, columns] = values.reshape(len(table), columns.stop - columns.start)
        out["per_mask"] = table
        return out


def _dtype(name: str) -> np.dtype:
    if name.startswith("masks/") and name != "masks/bits":
        return np.dtype(PER_MASK_DTYPES[name[len("masks/") :]])
    return np.dtype(
        {"image": np.uint8, "label": np.int32, "seg_prior": np.float32}.get(name, np.uint8)
    )


LAYOUTS: dict[int, Layout] = {1: Version1(), 2: Version2()}


def layout_of(version: int) -> Layout:
    """The layout of schema ``version`` (one that ``schema.check_root_attrs`` accepted)."""
    return LAYOUTS[version]


# --------------------------------------------------------------------------- metadata checks


def array_problem(
    name: str, shape: Any, dtype: Any, chunks: Any, shards: Any, spec: ArraySpec
) -> str | None:
    """Why an array whose metadata claims ``shape``/``dtype``/``chunks`` (inner chunks of a
    sharded array) and ``shards`` (None: unsharded) is not ``spec``."""
    try:
        claimed = tuple(int(v) for v in shape), np.dtype(dtype), tuple(int(v) for v in chunks)
        claimed_shards = None if shards is None else tuple(int(v) for v in shards)
    except (TypeError, ValueError):
        return f"{name}: metadata claims shape {shape!r}, dtype {dtype!r}, chunks {chunks!r}"
    if claimed[0] != spec.shape:
        return f"{name}: shape {claimed[0]} does not match the image's attributes {spec.shape}"
    if claimed[1] != spec.dtype:
        return f"{name}: dtype {claimed[1]} is not {spec.dtype}"
    if claimed[2] != spec.chunks:
        return f"{name}: chunks {claimed[2]} are not the schema's {spec.chunks}"
    if claimed_shards != spec.shards:
        if spec.shards is None:  # inner chunks could go missing unseen
            return f"{name}: is sharded; this schema version's arrays are not"
        return f"{name}: shards {claimed_shards} are not the schema's {spec.shards}"
    return None


# The shard index as this schema writes it (Zarr's default): at the end of the shard, each
# inner chunk's (offset, length) as little-endian uint64, then its crc32c.
SHARD_INDEX_CODECS = [{"name": "bytes", "configuration": {"endian": "little"}}, {"name": "crc32c"}]


def metadata_problem(meta: Any, name: str, spec: ArraySpec) -> str | None:
    """Why the parsed ``zarr.json`` of array ``name`` does not describe ``spec``, or None.

    Reads the chunk grid and, for a sharded array, the sharding codec's inner chunks and
    index layout (which the reader relies on to find and check inner chunks).
    """
    if not isinstance(meta, dict) or meta.get("node_type") != "array":
        return f"{name}: array metadata (zarr.json) is missing or unreadable"
    grid = meta.get("chunk_grid")
    config = grid.get("configuration") if isinstance(grid, dict) else None
    outer = config.get("chunk_shape") if isinstance(config, dict) else None
    codecs = meta.get("codecs")  # a list as parsed from JSON, a tuple from zarr's to_dict
    first = codecs[0] if isinstance(codecs, (list, tuple)) and codecs else None
    if isinstance(first, dict) and first.get("name") == "sharding_indexed":
        inner = first.get("configuration")
        inner = inner if isinstance(inner, dict) else {}
        if spec.shards is not None and (
            inner.get("index_location", "end") != "end"
            or _as_lists(inner.get("index_codecs")) != SHARD_INDEX_CODECS
        ):
            return f"{name}: its shard index is not laid out as the schema says"
        return array_problem(
            name, meta.get("shape"), meta.get("data_type"), inner.get("chunk_shape"), outer, spec
        )
    return array_problem(name, meta.get("shape"), meta.get("data_type"), outer, None, spec)


def _as_lists(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_as_lists(v) for v in value]
    if isinstance(value, dict):
        return {k: _as_lists(v) for k, v in value.items()}
    return value
