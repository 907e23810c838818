"""What ``store_schema.md`` says, as data and checks: arrays, codecs, attributes and limits.

Every claim a store makes about itself (attribute types, image shapes, mask counts, array
shapes, dtypes and chunks) is checked here before anything is allocated or written, by the
reader and the writer alike, so both agree on what a sound store is. The checks are pure
functions of already-parsed metadata; they return a problem (a short phrase) or None.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from zarr.codecs import BloscCodec, Crc32cCodec

from ..limits import max_masks, max_pixels
from ..types import SamaugError, image_id_problem

SCHEMA_VERSION = 1
TILE = 256
MASKS_PER_CHUNK = 64
MAP_NAMES = ("image", "label", "seg_prior", "boundary_prior")
PER_MASK_DTYPES = {
    "stability_score": np.float32,
    "predicted_iou": np.float32,
    "box": np.int32,
    "point": np.float32,
    "area": np.int64,
}
PER_MASK_NAMES = tuple(PER_MASK_DTYPES)
PRIOR_DEFINITIONS = {
    "seg_prior": "sum over masks covering the pixel of the mask's stability score",
    "boundary_prior": "1 where skimage.segmentation.find_boundaries(mask, mode='thick') "
    "is true for any mask, else 0",
    "seg_prior_dtype": "float32",
    "boundary_prior_dtype": "uint8",
}
# Root attribute of stores whose writer wrote every chunk (empty ones too): there, a missing
# chunk is damage. Older stores skipped chunks equal to the fill value, so there it is not.
EVERY_CHUNK_WRITTEN = "every_chunk_written"
# Every array of an image group, in the order they are written and checked.
ARRAY_NAMES = (*MAP_NAMES, "masks/bits", *(f"masks/{name}" for name in PER_MASK_NAMES))
# Arrays every complete group holds; "image" too unless the store is stripped, "label" where
# the group's ``sha256`` lists it (annotated images).
REQUIRED_ARRAYS = tuple(n for n in ARRAY_NAMES if n not in ("image", "label"))

_SHA256 = re.compile(r"[0-9a-f]{64}")


class DamagedStoreError(SamaugError):
    """A store that does not hold what it claims: unreadable or forged metadata, an array that
    does not match its image's attributes, a missing or undecodable chunk.

    ``image_id`` (None for the root) and ``problem`` (a phrase such as "seg_prior: chunk c/1/0
    is missing") let ``samaug store verify`` report it as one line and go on. Made by
    ``damaged``; constructible from the message alone, as DataLoader workers re-raise it.
    """

    def __init__(self, message: str, image_id: str | None = None, problem: str | None = None):
        super().__init__(message)
        self.image_id = image_id
        self.problem = message if problem is None else problem


def damaged(location: str, image_id: str | None, problem: str) -> DamagedStoreError:
    """The DamagedStoreError for ``problem`` of image ``image_id`` (None: the root)."""
    if image_id is None:
        message = f"{location}: {problem} (the store is damaged or not a samaug store)"
    else:
        message = (
            f"{location}: image {image_id!r}: {problem} (the store is damaged: `samaug store "
            "verify` lists what is, `samaug store repair` marks it to be redone)"
        )
    return DamagedStoreError(message, image_id, problem)


def codecs(shuffle: str) -> tuple:
    return (BloscCodec(cname="zstd", clevel=5, shuffle=shuffle), Crc32cCodec())


def sha256_of(array: np.ndarray) -> str:
    """sha256 of an array's bytes in C order (what ``sha256`` and ``image_sha256`` record)."""
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def pack_masks(masks: np.ndarray) -> np.ndarray:
    """(N, H, W) bool -> (N, H, ceil(W/8)) uint8, bit-packed along x."""
    return np.packbits(masks, axis=-1)


def unpack_masks(bits: np.ndarray, width: int) -> np.ndarray:
    """Inverse of ``pack_masks``: (N, H, ceil(W/8)) uint8 -> (N, H, W) bool."""
    return np.unpackbits(bits, axis=-1, count=width).astype(bool)


# --------------------------------------------------------------------------- arrays


@dataclass(frozen=True)
class ArraySpec:
    """Shape, dtype, chunk shape and blosc shuffle of one array of an image group."""

    shape: tuple[int, ...]
    dtype: np.dtype
    chunks: tuple[int, ...]
    shuffle: str


def array_specs(height: int, width: int, mask_count: int) -> dict[str, ArraySpec]:
    """The schema's arrays of an H x W image with ``mask_count`` masks, by array path."""
    tile = (min(TILE, height), min(TILE, width))
    packed = math.ceil(width / 8)
    n = mask_count

    def spec(shape, dtype, chunks, shuffle="shuffle") -> ArraySpec:
        # A dimension of length 0 still gets a chunk length of 1 (Zarr needs one).
        return ArraySpec(tuple(shape), np.dtype(dtype), tuple(max(c, 1) for c in chunks), shuffle)

    specs = {
        "image": spec((height, width, 3), np.uint8, (*tile, 3)),
        "label": spec((height, width), np.int32, tile),
        "seg_prior": spec((height, width), np.float32, tile),
        "boundary_prior": spec((height, width), np.uint8, tile, "bitshuffle"),
        "masks/bits": spec(
            (n, height, packed), np.uint8, (MASKS_PER_CHUNK, height, packed), "bitshuffle"
        ),
    }
    for name, dtype in PER_MASK_DTYPES.items():
        width_of = {"box": (4,), "point": (2,)}.get(name, ())
        specs[f"masks/{name}"] = spec((n, *width_of), dtype, (n, *width_of))
    return specs


def array_problem(name: str, shape: Any, dtype: Any, chunks: Any, spec: ArraySpec) -> str | None:
    """Why an array whose metadata claims ``shape``/``dtype``/``chunks`` is not ``spec``."""
    try:
        claimed = tuple(int(v) for v in shape), np.dtype(dtype), tuple(int(v) for v in chunks)
    except (TypeError, ValueError):
        return f"{name}: metadata claims shape {shape!r}, dtype {dtype!r}, chunks {chunks!r}"
    if claimed[0] != spec.shape:
        return f"{name}: shape {claimed[0]} does not match the image's attributes {spec.shape}"
    if claimed[1] != spec.dtype:
        return f"{name}: dtype {claimed[1]} is not {spec.dtype}"
    if claimed[2] != spec.chunks:
        return f"{name}: chunks {claimed[2]} are not the schema's {spec.chunks}"
    return None


# --------------------------------------------------------------------------- attributes


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _string_map(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(v, str) for v in value.values())


def root_attrs_problem(attrs: Mapping) -> tuple[str, str] | None:
    """(key, problem) for the first root attribute the code cannot use, or None."""
    for key in ("tool", "dataset", "masker", "index"):
        if not isinstance(attrs.get(key), dict):
            return key, f"is {type(attrs.get(key)).__name__}, not a mapping"
    dataset, masker = attrs["dataset"], attrs["masker"]
    checks = [
        ("dataset.name", isinstance(dataset.get("name"), str), "a string"),
        (
            "dataset.reader_options",
            isinstance(dataset.get("reader_options", {}), dict),
            "a mapping",
        ),
        ("dataset.splits", isinstance(dataset.get("splits", {}), dict), "a mapping"),
        ("masker.kind", isinstance(masker.get("kind"), str), "a string"),
        ("masker.settings", isinstance(masker.get("settings", {}), dict), "a mapping"),
        ("images_stripped", isinstance(attrs.get("images_stripped", False), bool), "true or false"),
        (
            EVERY_CHUNK_WRITTEN,
            isinstance(attrs.get(EVERY_CHUNK_WRITTEN, False), bool),
            "true or false",
        ),
    ]
    for key, ok, what in checks:
        if not ok:
            return key, f"must be {what}"
    for image_id, split in attrs["index"].items():
        problem = image_id_problem(image_id)
        if problem:
            return "index", problem
        if not isinstance(split, str) or not split:
            return "index", f"image {image_id!r} has split {split!r}, not a name"
    return None


def check_root_attrs(attrs: Mapping, location: str) -> None:
    """SamaugError for another schema version, DamagedStoreError naming the store and the key
    for a root attribute the code cannot use."""
    if attrs.get("schema_version") != SCHEMA_VERSION:
        raise SamaugError(
            f"{location}: schema_version {attrs.get('schema_version')!r} is not "
            f"{SCHEMA_VERSION}; this samaug reads version {SCHEMA_VERSION} stores"
        )
    found = root_attrs_problem(attrs)
    if found:
        key, problem = found
        raise damaged(location, None, f"root attribute {key!r} {problem}")


def image_attrs_problem(attrs: Any) -> str | None:
    """Why an image group's attributes are not usable (see store_schema.md), or None."""
    if not isinstance(attrs, dict):
        return "attributes are not a mapping"
    if attrs.get("complete") is not True:
        return "has no completion marker (complete: true)"
    shape, count = attrs.get("shape"), attrs.get("mask_count")
    if not isinstance(attrs.get("split"), str):
        return f"attribute 'split' is {attrs.get('split')!r}, not a name"
    if not (isinstance(shape, list) and len(shape) == 2 and all(_whole(v) for v in shape)):
        return f"attribute 'shape' is {shape!r}, not [height, width]"
    if min(shape) < 1 or shape[0] * shape[1] > max_pixels():
        return (
            f"attribute 'shape' claims {shape[0]} x {shape[1]} pixels, outside 1 .. "
            f"{max_pixels():,} (SAMAUG_MAX_PIXELS sets the limit)"
        )
    if not _whole(count) or not 0 <= count <= max_masks():
        return (
            f"attribute 'mask_count' is {count!r}, not a count in 0 .. {max_masks():,} "
            "(SAMAUG_MAX_MASKS sets the limit)"
        )
    sums = attrs.get("sha256")
    if not (_string_map(sums) and all(_SHA256.fullmatch(v) for v in sums.values())):
        return "attribute 'sha256' is not a map of array path to sha256 hex digest"
    unknown = sorted(set(sums) - set(ARRAY_NAMES))
    if unknown:
        return f"attribute 'sha256' lists {', '.join(unknown)}, not arrays of the schema"
    image_sum = attrs.get("image_sha256")
    if not (isinstance(image_sum, str) and _SHA256.fullmatch(image_sum)):
        return "attribute 'image_sha256' is not a sha256 hex digest"
    for key in ("source", "seconds"):
        if not isinstance(attrs.get(key, {}), dict):
            return f"attribute {key!r} is not a mapping"
    return None


def expected_arrays(attrs: Mapping, stripped: bool) -> dict[str, ArraySpec]:
    """The arrays a complete group with (checked) attributes ``attrs`` must hold, by path.

    ``image`` is optional in a stripped store (absent until attached); ``label`` is expected
    where ``sha256`` lists it.
    """
    height, width = attrs["shape"]
    specs = array_specs(height, width, attrs["mask_count"])
    wanted = [*REQUIRED_ARRAYS, *(["label"] if "label" in attrs["sha256"] else [])]
    if not stripped:
        wanted.append("image")
    return {name: specs[name] for name in ARRAY_NAMES if name in wanted}
