"""What ``store_schema.md`` says, as data and checks: arrays, codecs, attributes and limits.

Every claim a store makes about itself (attribute types, image shapes, mask counts, array
shapes, dtypes and chunks) is checked here before anything is allocated or written, by the
reader and the writer alike, so both agree on what a sound store is. The checks are pure
functions of already-parsed metadata; they return a problem (a short phrase) or None.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

import numpy as np
from zarr.codecs import BloscCodec, Crc32cCodec

from precompute.limits import max_masks, max_pixels
from precompute.store.location import is_url, is_zip
from precompute.types import SamaugError, image_id_problem

# The version this samaug writes, and every version it reads (store_schema.md, "Versions").
SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)
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


def repair_advice(location: str, what: str = "marks it to be redone") -> str:
    """How a damaged store at ``location`` is mended: ``samaug store repair`` (which ``what``)
    changes a store folder in place; a packed store is read-only and a URL is not a folder
    here, so for those the advice names what to do instead."""
    if is_zip(location):
        return (
            "a packed store is read-only: pack it again from its source, or `samaug store "
            f"unpack` it and run `samaug store repair` on the folder, which {what}"
        )
    if is_url(location):
        return f"`samaug store repair` on the machine that holds the store folder {what}"
    return f"`samaug store repair` {what}"


def damaged(location: str, image_id: str | None, problem: str) -> DamagedStoreError:
    """The DamagedStoreError for ``problem`` of image ``image_id`` (None: the root)."""
    if image_id is None:
        message = f"{location}: {problem} (the store is damaged or not a samaug store)"
    else:
        message = (
            f"{location}: image {image_id!r}: {problem} (the store is damaged: `samaug store "
            f"verify` lists what is; {repair_advice(location)})"
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


# --------------------------------------------------------------------------- attributes


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _mappings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, dict) for v in value)


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
        ("lineage", _mappings(attrs.get("lineage", [])), "a list of mappings"),
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


def version_problem(attrs: Mapping, location: str) -> str | None:
    """Why this samaug cannot read a store whose root attributes are ``attrs`` (a schema
    version it does not know), naming the samaug that wrote it; None if it can."""
    version = attrs.get("schema_version")
    if _whole(version) and version in READABLE_VERSIONS:
        return None
    tool = attrs.get("tool")
    writer = tool.get("version") if isinstance(tool, dict) else None
    known = ", ".join(map(str, READABLE_VERSIONS))
    if _whole(version) and version > SCHEMA_VERSION:
        made = f"samaug {writer}" if isinstance(writer, str) else "a newer samaug"
        return (
            f"{location}: schema_version {version} is newer than this samaug reads ({known}); "
            f"it was written by {made}: install that version or later "
            "(pip install -U samaug) to read it"
        )
    return f"{location}: schema_version {version!r} is not one this samaug reads ({known})"


def check_root_attrs(attrs: Mapping, location: str) -> None:
    """SamaugError for a schema version this samaug does not read, DamagedStoreError naming
    the store and the key for a root attribute the code cannot use."""
    problem = version_problem(attrs, location)
    if problem:
        raise SamaugError(problem)
    found = root_attrs_problem(attrs)
    if found:
        key, problem = found
        raise damaged(location, None, f"root attribute {key!r} {problem}")
    if attrs["schema_version"] >= 2 and attrs.get(EVERY_CHUNK_WRITTEN) is not True:
        raise damaged(
            location,
            None,
            f"root attribute {EVERY_CHUNK_WRITTEN!r} must be true in a version "
            f"{attrs['schema_version']} store",
        )


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
    for key in ("source", "seconds", "made_on"):
        if not isinstance(attrs.get(key, {}), dict):
            return f"attribute {key!r} is not a mapping"
    return None
