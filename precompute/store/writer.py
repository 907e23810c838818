"""Writing a store: the root attributes of a new store, ``write_image`` (one task, one image
group, marker last), ``set_index`` (driver), and the reads a writer needs (root attributes,
an image's split). A store is written on a local (or shared) file system, or to an object
store by URL (``Target``); see ``links`` for why no writer goes through a symbolic link, and
``resume`` for creating, reopening and repairing a store.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from precompute import __version__
from precompute.received import parse_or_none
from precompute.store.layout import ArraySpec, Layout, layout_of
from precompute.store.links import refuse_link
from precompute.store.schema import (
    MASKS_PER_CHUNK,
    PRIOR_DEFINITIONS,
    SCHEMA_VERSION,
    TILE,
    codecs,
    sha256_of,
)
from precompute.store.target import Target
from precompute.types import MaskSet, check_image_id


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def store_root_attrs(dataset: dict, masker: dict, version: int = SCHEMA_VERSION) -> dict:
    """The root attributes of a new store (``index`` empty) of schema ``version`` (an older
    one only to write stores as an older samaug did, e.g. for tests of reading them)."""
    stamp = now()
    return {
        "schema_version": version,
        "tool": {"name": "samaug", "version": __version__},
        "created": stamp,
        "updated": stamp,
        "dataset": dataset,
        "masker": masker,
        "priors": PRIOR_DEFINITIONS,
        "chunking": {"tile": TILE, "masks_per_chunk": MASKS_PER_CHUNK},
        "index": {},
    }


def read_json(path: Path) -> Any:
    """The parsed JSON file at ``path``, or None if it is missing or unreadable."""
    try:
        return parse_or_none(path.read_bytes())
    except OSError:
        return None


def target_of(location: str | Path | Target, storage_options: dict | None = None) -> Target:
    """``location`` as a Target (a local folder or a URL to write)."""
    return location if isinstance(location, Target) else Target(location, storage_options)


def read_root_attrs(location: str | Path | Target, storage_options: dict | None = None) -> dict:
    """The root attributes of the store at ``location`` as stored (unchecked), or {} when
    there is no readable root ``zarr.json``."""
    meta = target_of(location, storage_options).read_json("zarr.json")
    attrs = meta.get("attributes") if isinstance(meta, dict) else None
    return attrs if isinstance(attrs, dict) else {}


def is_samaug_store(location: str | Path | Target, storage_options: dict | None = None) -> bool:
    """Whether ``location`` holds a Zarr group whose root attributes say samaug made it
    (``tool.name == "samaug"``), a folder when local. Reads only the root ``zarr.json``."""
    target = target_of(location, storage_options)
    if target.path is not None and not target.path.is_dir():
        return False
    tool = read_root_attrs(target).get("tool")
    return isinstance(tool, dict) and tool.get("name") == "samaug"


def open_root(location: str | Path | Target) -> zarr.Group:
    """The root group for writing, read without consolidated metadata: an update then writes
    the root ``zarr.json`` without it (so a run under way never leaves a stale copy)."""
    store = target_of(location).store
    return zarr.open_group(store, mode="r+", zarr_format=3, use_consolidated=False)


def set_index(location: str | Path | Target, index: Mapping[str, str]) -> None:
    """Record the complete images in the root attributes. Driver only. Drops consolidated
    metadata (``consolidate`` writes it again at the end of a run)."""
    root = open_root(location)
    root.attrs.update({"index": dict(sorted(index.items())), "updated": now()})


def split_of(location: str | Path | Target, image_id: str) -> str:
    """The split of a complete image group (one that ``complete_ids`` lists)."""
    meta = target_of(location).read_json(f"images/{image_id}/zarr.json")
    return meta["attributes"]["split"]


def create_array(group: zarr.Group, name: str, spec: ArraySpec, data: np.ndarray) -> None:
    """Write ``data`` as array ``name`` of ``group`` following ``spec``, every chunk written
    (chunks equal to the fill value too, inner chunks of a shard as well: a missing chunk
    then always means damage)."""
    group.create_array(
        name,
        shape=spec.shape,
        dtype=spec.dtype,
        chunks=spec.chunks,
        shards=spec.shards,
        compressors=codecs(spec.shuffle),
        fill_value=0,
        config={"write_empty_chunks": True},
    )[...] = np.asarray(data, spec.dtype)


def write_arrays(
    group: zarr.Group,
    layout: Layout,
    height: int,
    width: int,
    mask_count: int,
    physical: dict[str, np.ndarray],
) -> None:
    """Create the physical arrays of an image group (``layout.physical``'s output)."""
    specs = layout.specs(height, width, mask_count)
    if any(name.startswith("masks/") for name in physical):
        group.create_group("masks")
    for name, data in physical.items():
        create_array(group, name, specs[name], data)


def write_image(
    location: str | Path | Target,
    image_id: str,
    split: str,
    image: np.ndarray,
    label: np.ndarray | None,
    masks: MaskSet,
    seg_prior: np.ndarray,
    boundary_prior: np.ndarray,
    source: Mapping[str, str],
    seconds: Mapping[str, float],
    storage_options: dict | None = None,
    made_on: Mapping[str, object] | None = None,
) -> None:
    """Write one image group, completion marker last. One task owns one group.

    image (H, W, 3) uint8, label (H, W) int32 or None, seg_prior (H, W) float32,
    boundary_prior (H, W) uint8. made_on: how the masker ran (``workers.made_on``), kept
    when given. Any earlier, incomplete group of this ID is deleted first.
    Refuses (SamaugError) an ID that is not an image ID and a group folder that is a link.
    On an object store the marker (the group's ``zarr.json`` with ``complete: true``) is
    the last object written: its existence commits the image.
    """
    check_image_id(image_id)
    height, width = image.shape[:2]
    target = target_of(location, storage_options)
    if target.path is not None:
        refuse_link(target.path / "images", target.path)
        refuse_link(target.path / "images" / image_id, target.path)
    # An earlier attempt's group may have unreadable metadata: removed as files (objects),
    # not through zarr. Locally, links inside the group are unlinked, never followed.
    target.remove(f"images/{image_id}")
    layout = layout_of(read_root_attrs(target).get("schema_version", SCHEMA_VERSION))
    group = zarr.open_group(target.store, path="images", mode="r+").create_group(image_id)
    arrays = {
        "image": image,
        "label": label,
        "seg_prior": seg_prior,
        "boundary_prior": boundary_prior,
        "masks/bits": masks.packed(),
        **{f"masks/{name}": values for name, values in masks.per_mask().items()},
    }
    # Hashes are of the logical arrays, whatever the layout stores them as.
    arrays = {
        name: None if data is None else np.asarray(data, layout.source(name).dtype)
        for name, data in arrays.items()
    }
    checksums = {name: sha256_of(data) for name, data in arrays.items() if data is not None}
    write_arrays(group, layout, height, width, len(masks), layout.physical(arrays))

    group.attrs.update(
        {
            "split": split,
            "shape": [int(height), int(width)],
            "image_sha256": checksums["image"],
            "mask_count": len(masks),
            "source": dict(source),
            "sha256": checksums,
            "seconds": {k: round(float(v), 4) for k, v in seconds.items()},
            **({"made_on": dict(made_on)} if made_on else {}),
        }
    )
    # The marker goes in its own, last metadata write: a crash before it leaves no marker.
    group.attrs["complete"] = True
