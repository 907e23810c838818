"""The samaug Zarr store: the only module that touches zarr. ``store_schema.md`` is its contract.

Writers: ``prepare_store`` (driver, root metadata), ``write_image`` (one task, one image
group), ``set_index`` (driver). Readers: ``open_store`` -> ``SamaugStore``.

Imports numpy and zarr only: no torch, no segment_anything.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec, Crc32cCodec

from . import __version__
from .types import MaskSet, NotInStoreError, SamaugError

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


def _codecs(shuffle: str) -> tuple:
    return (BloscCodec(cname="zstd", clevel=5, shuffle=shuffle), Crc32cCodec())


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _sha256(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def pack_masks(masks: np.ndarray) -> np.ndarray:
    """(N, H, W) bool -> (N, H, ceil(W/8)) uint8, bit-packed along x."""
    return np.packbits(masks, axis=-1)


def unpack_masks(bits: np.ndarray, width: int) -> np.ndarray:
    """Inverse of ``pack_masks``: (N, H, ceil(W/8)) uint8 -> (N, H, W) bool."""
    return np.unpackbits(bits, axis=-1, count=width).astype(bool)


# --------------------------------------------------------------------------- writing


def store_root_attrs(dataset: dict, masker: dict) -> dict:
    """The root attributes of a new store (``index`` empty)."""
    now = _now()
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "samaug", "version": __version__},
        "created": now,
        "updated": now,
        "dataset": dataset,
        "masker": masker,
        "priors": PRIOR_DEFINITIONS,
        "chunking": {"tile": TILE, "masks_per_chunk": MASKS_PER_CHUNK},
        "index": {},
    }


def signature(attrs: Mapping) -> dict:
    """What must match for a run to add to an existing store (see store_schema.md).

    The dataset's name and reader options, the masker's provenance except the checkpoint's
    path (its sha256 counts), the prior definitions and the schema version.
    """
    dataset = attrs.get("dataset", {})
    masker = {k: v for k, v in attrs.get("masker", {}).items() if k != "checkpoint"}
    return {
        "schema_version": attrs.get("schema_version"),
        "dataset": {"name": dataset.get("name"), "reader_options": dataset.get("reader_options")},
        "masker": masker,
        "priors": attrs.get("priors"),
    }


def signature_differences(old: Mapping, new: Mapping) -> list[str]:
    """Differences between two stores' signatures, one 'a.b: store has X, this run Y' each."""
    diffs: list[str] = []

    def walk(a: Any, b: Any, key: str) -> None:
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            for k in sorted(set(a) | set(b)):
                walk(a.get(k, "<unset>"), b.get(k, "<unset>"), f"{key}.{k}" if key else k)
        elif _json_normal(a) != _json_normal(b):
            diffs.append(f"{key}: store has {a!r}, this run {b!r}")

    walk(signature(old), signature(new), "")
    return diffs


def _json_normal(value: Any) -> Any:
    # Attributes come back from JSON: tuples become lists, so compare in that form.
    if isinstance(value, (list, tuple)):
        return [_json_normal(v) for v in value]
    return value


@dataclass
class PreparedStore:
    """What ``prepare_store`` found: the images already complete, and what ``--overwrite``
    replaced (a one-line description, or None)."""

    complete: set[str]
    replaced: str | None = None


def is_samaug_store(path: str | Path) -> bool:
    """Whether ``path`` is a folder holding a Zarr group whose root attributes say samaug made
    it (``tool.name == "samaug"``). Reads only the root ``zarr.json``."""
    meta = Path(path) / "zarr.json"
    if not Path(path).is_dir() or not meta.is_file():
        return False
    try:
        attrs = json.loads(meta.read_text()).get("attributes", {})
    except (OSError, ValueError, AttributeError):
        return False
    return isinstance(attrs, dict) and (attrs.get("tool") or {}).get("name") == "samaug"


def _describe(path: Path) -> str:
    attrs = json.loads((path / "zarr.json").read_text()).get("attributes", {})
    dataset = attrs.get("dataset", {})
    masker = attrs.get("masker", {})
    return (
        f"{path} (dataset {dataset.get('name')!r}, masker {masker.get('kind')!r}, "
        f"{len(attrs.get('index', {}))} complete images, created {attrs.get('created')})"
    )


def _check_replaceable(path: Path, protect: Sequence[str | Path]) -> None:
    """SamaugError unless ``path`` may be deleted by --overwrite: a samaug store that neither
    holds nor lies inside any of the ``protect`` paths (the dataset)."""
    resolved = path.resolve()
    for other in protect:
        other = Path(other).resolve()
        if resolved == other or resolved in other.parents or other in resolved.parents:
            raise SamaugError(
                f"--overwrite would delete {path}, which holds or lies inside {other} (the "
                "data root); choose a --store outside the dataset"
            )
    if path.is_symlink() or not is_samaug_store(path):
        raise SamaugError(
            f"{path} is not a samaug store (its root zarr.json does not say samaug made it); "
            "--overwrite replaces only samaug stores. Choose another --store, or move it away"
        )


def prepare_store(
    path: str | Path, attrs: dict, overwrite: bool = False, protect: Sequence[str | Path] = ()
) -> PreparedStore:
    """Create the store, or reopen it for resuming. Driver only.

    Refuses (SamaugError) a path that is a file, and a store made with another signature
    unless ``overwrite``, which deletes the old store first, but only if it is a samaug
    store and neither holds nor lies inside any path of ``protect`` (the data root).
    """
    path = Path(path)
    replaced = None
    if path.exists() and not path.is_dir():
        raise SamaugError(f"{path} is a file, not a store; choose a folder for --store")
    if path.exists() and overwrite:
        _check_replaceable(path, protect)
        replaced = _describe(path)
        shutil.rmtree(path)
    if path.exists():
        try:
            root = zarr.open_group(path, mode="r+", zarr_format=3)
        except (FileNotFoundError, ValueError, KeyError) as err:
            raise SamaugError(
                f"{path} exists but is not a samaug store ({err}); pick another --store"
            ) from err
        old = dict(root.attrs)
        diffs = signature_differences(old, attrs)
        if diffs:
            raise SamaugError(
                f"{path} was made with other settings:\n  "
                + "\n  ".join(diffs)
                + "\nUse another --store, the store's settings, or --overwrite to replace it."
            )
        root.attrs.update({"dataset": attrs["dataset"], "updated": _now()})
        root.require_group("images")
        return PreparedStore(complete_ids(path))
    root = zarr.open_group(path, mode="w-", zarr_format=3)
    root.attrs.update(attrs)
    root.require_group("images")
    return PreparedStore(set(), replaced)


def complete_ids(path: str | Path) -> set[str]:
    """IDs of the image groups that carry the completion marker (scans the local store)."""
    done = set()
    for entry in (Path(path) / "images").iterdir():
        if not entry.is_dir():
            continue
        try:
            group = zarr.open_group(path, path=f"images/{entry.name}", mode="r")
        except (FileNotFoundError, ValueError, KeyError):
            continue  # unreadable metadata: an incomplete group, redone on this run
        if group.attrs.get("complete") is True:
            done.add(entry.name)
    return done


def set_index(path: str | Path, index: Mapping[str, str]) -> None:
    """Record the complete images in the root attributes. Driver only."""
    root = zarr.open_group(path, mode="r+")
    root.attrs.update({"index": dict(sorted(index.items())), "updated": _now()})


def split_of(path: str | Path, image_id: str) -> str:
    return zarr.open_group(path, path=f"images/{image_id}", mode="r").attrs["split"]


def write_image(
    path: str | Path,
    image_id: str,
    split: str,
    image: np.ndarray,
    label: np.ndarray | None,
    masks: MaskSet,
    seg_prior: np.ndarray,
    boundary_prior: np.ndarray,
    source: Mapping[str, str],
    seconds: Mapping[str, float],
) -> None:
    """Write one image group, completion marker last. One task owns one group.

    Any earlier, incomplete group of this ID is deleted first.
    """
    height, width = image.shape[:2]
    # Stores are written on a local (or shared) file system; an earlier attempt's group may
    # have unreadable metadata, so it is removed as files, not through zarr.
    shutil.rmtree(Path(path) / "images" / image_id, ignore_errors=True)
    group = zarr.open_group(path, path="images", mode="r+").create_group(image_id)
    tile = (min(TILE, height), min(TILE, width))
    checksums: dict[str, str] = {}

    def put(key: str, data: np.ndarray, chunks: tuple, shuffle: str) -> None:
        group.create_array(
            key,
            shape=data.shape,
            dtype=data.dtype,
            chunks=tuple(max(c, 1) for c in chunks),
            compressors=_codecs(shuffle),
            fill_value=0,
        )[...] = data
        checksums[key] = _sha256(data)

    put("image", np.asarray(image, np.uint8), (*tile, 3), "shuffle")
    if label is not None:
        put("label", np.asarray(label, np.int32), tile, "shuffle")
    put("seg_prior", np.asarray(seg_prior, np.float32), tile, "shuffle")
    put("boundary_prior", np.asarray(boundary_prior, np.uint8), tile, "bitshuffle")
    group.create_group("masks")
    bits = pack_masks(masks.masks)
    put("masks/bits", bits, (MASKS_PER_CHUNK, *bits.shape[1:]), "bitshuffle")
    for name, values in masks.per_mask().items():
        values = np.asarray(values, PER_MASK_DTYPES[name])
        put(f"masks/{name}", values, values.shape, "shuffle")

    group.attrs.update(
        {
            "split": split,
            "shape": [int(height), int(width)],
            "image_sha256": checksums["image"],
            "mask_count": len(masks),
            "source": dict(source),
            "sha256": checksums,
            "seconds": {k: round(float(v), 4) for k, v in seconds.items()},
        }
    )
    # The marker goes in its own, last metadata write: a crash before it leaves no marker.
    group.attrs["complete"] = True


def strip_images(src: str | Path, dst: str | Path) -> None:
    """Copy a store without its ``image`` arrays, for sharing where images may not be.

    Everything else stays, ``image_sha256`` included, so the receiver can attach their own
    copy of the images and prove they are the same pixels.
    """
    src, dst = Path(src), Path(dst)
    if dst.exists():
        raise SamaugError(f"{dst} exists; choose a new destination")

    def skip(directory: str, names: list[str]) -> list[str]:
        in_image_group = Path(directory).parent == src / "images"
        return ["image"] if in_image_group and "image" in names else []

    shutil.copytree(src, dst, ignore=skip)
    zarr.open_group(dst, mode="r+").attrs.update({"images_stripped": True, "updated": _now()})


def attach_image(path: str | Path, image_id: str, image: np.ndarray) -> None:
    """Put an image back into a stripped store after checking its pixels' sha256."""
    group = zarr.open_group(path, path=f"images/{image_id}", mode="r+")
    expected = group.attrs["image_sha256"]
    actual = _sha256(np.asarray(image, np.uint8))
    if actual != expected:
        raise SamaugError(
            f"image {image_id}: your copy's pixels have sha256 {actual[:12]}..., the store "
            f"expects {expected[:12]}...; it is not the image the priors were made from"
        )
    height, width = image.shape[:2]
    group.create_array(
        "image",
        shape=image.shape,
        dtype=np.uint8,
        chunks=(min(TILE, height), min(TILE, width), 3),
        compressors=_codecs("shuffle"),
        fill_value=0,
        overwrite=True,
    )[...] = image


def mark_images_attached(path: str | Path) -> None:
    zarr.open_group(path, mode="r+").attrs.update({"images_stripped": False, "updated": _now()})


# --------------------------------------------------------------------------- reading


class SamaugStore:
    """Read access to a samaug store (see store_schema.md). Open with ``open_store``."""

    def __init__(self, root: zarr.Group, location: str) -> None:
        self._root = root
        self.location = location
        self.attrs: dict = dict(root.attrs)
        if self.attrs.get("schema_version") != SCHEMA_VERSION:
            raise SamaugError(
                f"{location}: schema_version {self.attrs.get('schema_version')!r} is not "
                f"{SCHEMA_VERSION}; this samaug reads version {SCHEMA_VERSION} stores"
            )
        self._index: dict[str, str] = dict(self.attrs.get("index", {}))
        # Opening a group or array costs a metadata round trip (a request over HTTP); the
        # trainer reads the same few arrays over and over, so handles are kept.
        self._groups: dict[str, zarr.Group] = {}
        self._arrays: dict[tuple[str, str], zarr.Array | None] = {}

    def ids(self, split: str | Iterable[str] | None = None) -> list[str]:
        """Sorted IDs of the complete images, optionally of one split (or several)."""
        if split is None:
            return sorted(self._index)
        wanted = {split} if isinstance(split, str) else set(split)
        return sorted(i for i, s in self._index.items() if s in wanted)

    def splits(self) -> dict[str, int]:
        """Complete images per split."""
        counts: dict[str, int] = {}
        for s in self._index.values():
            counts[s] = counts.get(s, 0) + 1
        return dict(sorted(counts.items()))

    def _group(self, image_id: str) -> zarr.Group:
        if image_id not in self._index:
            raise NotInStoreError(f"{self.location}: no complete image {image_id!r} in the store")
        if image_id not in self._groups:
            self._groups[image_id] = self._root[f"images/{image_id}"]
        return self._groups[image_id]

    def _array(self, image_id: str, name: str) -> zarr.Array | None:
        key = (image_id, name)
        if key not in self._arrays:
            group = self._group(image_id)
            self._arrays[key] = group[name] if name in group else None
        return self._arrays[key]

    def image_attrs(self, image_id: str) -> dict:
        return dict(self._group(image_id).attrs)

    def has(self, image_id: str, name: str) -> bool:
        return self._array(image_id, name) is not None

    def read(
        self, image_id: str, name: str, window: tuple[int, int, int, int] | None = None
    ) -> np.ndarray:
        """One map of one image as numpy: whole, or the (y0, x0, y1, x1) window of it.

        name: "image" (H, W, 3) uint8, "label" (H, W) int32, "seg_prior" (H, W) float32,
        "boundary_prior" (H, W) uint8.
        """
        if name not in MAP_NAMES:
            raise ValueError(f"unknown array {name!r}; one of {', '.join(MAP_NAMES)}")
        array = self._array(image_id, name)
        if array is None:
            if name == "image" and self.attrs.get("images_stripped"):
                raise SamaugError(
                    f"{self.location} was shared without images; attach your copy with "
                    "`samaug store attach`"
                )
            raise NotInStoreError(f"{self.location}: image {image_id!r} has no {name!r}")
        if window is None:
            return array[...]
        y0, x0, y1, x1 = (int(v) for v in window)
        height, width = array.shape[:2]
        if not (0 <= y0 < y1 <= height and 0 <= x0 < x1 <= width):
            raise ValueError(
                f"window {window} is outside image {image_id!r} of shape {height}x{width}"
            )
        return array[y0:y1, x0:x1]

    def masks(self, image_id: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """(N, H, W) bool masks and the per-mask arrays (see store_schema.md)."""
        group = self._group(image_id)
        width = int(group.attrs["shape"][1])
        masks = unpack_masks(group["masks/bits"][...], width)
        return masks, {name: group[f"masks/{name}"][...] for name in PER_MASK_NAMES}

    def stored_bytes(self, image_id: str, name: str) -> int:
        """Bytes the array's chunks take in the store (compressed)."""
        return int(self._group(image_id)[name].nbytes_stored())

    def checksum(self, image_id: str, name: str) -> str:
        """sha256 of the decoded array ``name`` (e.g. "masks/bits")."""
        return _sha256(self._group(image_id)[name][...])


def open_store(path_or_url: str | Path, storage_options: dict | None = None) -> SamaugStore:
    """Open a store from a local path (read-write capable) or an fsspec URL (read-only)."""
    location = str(path_or_url)
    is_url = "://" in location
    if not is_url and not Path(location).exists():
        raise SamaugError(f"{location}: no such store; create it with `samaug priors`")
    try:
        root = zarr.open_group(
            location, mode="r", storage_options=storage_options if is_url else None
        )
    except (FileNotFoundError, ValueError, KeyError, OSError) as err:
        raise SamaugError(f"{location}: cannot open as a samaug store ({err})") from err
    return SamaugStore(root, location)
