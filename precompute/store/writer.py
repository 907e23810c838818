"""Writing a store: ``prepare_store`` (driver, root metadata), ``write_image`` (one task, one
image group), ``set_index`` (driver), ``complete_ids`` (what a resumed run skips) and
``unmark_images`` (what ``samaug store repair`` does). A store is written on a local (or
shared) file system, or to an object store by URL (``Target``); see ``links`` for why no
writer goes through a symbolic link.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from .. import __version__
from ..files import atomic_write_json
from ..types import MaskSet, SamaugError, check_image_id, image_id_problem
from .consolidated import consolidate
from .layout import ArraySpec, Layout, layout_of, metadata_problem
from .links import refuse_link, refuse_links
from .schema import (
    EVERY_CHUNK_WRITTEN,
    MASKS_PER_CHUNK,
    PRIOR_DEFINITIONS,
    SCHEMA_VERSION,
    TILE,
    check_root_attrs,
    codecs,
    image_attrs_problem,
    pack_masks,
    sha256_of,
)
from .target import Target


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


def signature_differences(
    old: Mapping, new: Mapping, labels: tuple[str, str] = ("store", "this run")
) -> list[str]:
    """Differences between two stores' signatures, one 'a.b: store has X, this run Y' each
    (``labels`` name the two sides)."""
    diffs: list[str] = []

    def walk(a: Any, b: Any, key: str) -> None:
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            for k in sorted(set(a) | set(b)):
                walk(a.get(k, "<unset>"), b.get(k, "<unset>"), f"{key}.{k}" if key else k)
        elif _json_normal(a) != _json_normal(b):
            diffs.append(f"{key}: {labels[0]} has {a!r}, {labels[1]} {b!r}")

    walk(signature(old), signature(new), "")
    return diffs


def _json_normal(value: Any) -> Any:
    # Attributes come back from JSON: tuples become lists, so compare in that form.
    if isinstance(value, (list, tuple)):
        return [_json_normal(v) for v in value]
    return value


def read_json(path: Path) -> Any:
    """The parsed JSON file at ``path``, or None if it is missing or unreadable."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
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


@dataclass
class PreparedStore:
    """What ``prepare_store`` found: the images already complete, what ``--overwrite``
    replaced (a one-line description, or None) and the store's schema version."""

    complete: set[str]
    replaced: str | None = None
    version: int = SCHEMA_VERSION  # the schema version the run writes (the store's own)


def is_samaug_store(location: str | Path | Target, storage_options: dict | None = None) -> bool:
    """Whether ``location`` holds a Zarr group whose root attributes say samaug made it
    (``tool.name == "samaug"``), a folder when local. Reads only the root ``zarr.json``."""
    target = target_of(location, storage_options)
    if target.path is not None and not target.path.is_dir():
        return False
    tool = read_root_attrs(target).get("tool")
    return isinstance(tool, dict) and tool.get("name") == "samaug"


def _describe(target: Target) -> str:
    attrs = read_root_attrs(target)
    dataset, masker, index = (attrs.get(k) for k in ("dataset", "masker", "index"))
    dataset, masker = (d if isinstance(d, dict) else {} for d in (dataset, masker))
    count = len(index) if isinstance(index, dict) else 0
    return (
        f"{target} (dataset {dataset.get('name')!r}, masker {masker.get('kind')!r}, "
        f"{count} complete images, created {attrs.get('created')})"
    )


def _check_replaceable(target: Target, protect: Sequence[str | Path]) -> None:
    """SamaugError unless the store may be deleted by --overwrite: a samaug store that, when
    local, neither holds nor lies inside any of the ``protect`` paths (the dataset)."""
    if target.path is not None:
        resolved = target.path.resolve()
        for other in protect:
            other = Path(other).resolve()
            if resolved == other or resolved in other.parents or other in resolved.parents:
                raise SamaugError(
                    f"--overwrite would delete {target}, which holds or lies inside {other} "
                    "(the data root); choose a --store outside the dataset"
                )
        linked = target.path.is_symlink()
    else:
        linked = False
    if linked or not is_samaug_store(target):
        raise SamaugError(
            f"{target} is not a samaug store (its root zarr.json does not say samaug made "
            "it); --overwrite replaces only samaug stores. Choose another --store, or move it "
            "away"
        )


def prepare_store(
    location: str | Path | Target,
    attrs: dict,
    overwrite: bool = False,
    protect: Sequence[str | Path] = (),
    storage_options: dict | None = None,
) -> PreparedStore:
    """Create the store, or reopen it for resuming. Driver only.

    ``location``: a local folder or a URL (an object store: ``s3://bucket/prefix/x.zarr``).
    Refuses (SamaugError) a path that is a file, a location holding something that is not a
    samaug store, a store with a symbolic link inside, and a store made with another
    signature unless ``overwrite``, which deletes the old store first, but only if it is a
    samaug store and neither holds nor lies inside any path of ``protect`` (the data root).
    A new store records ``every_chunk_written: true``: its writers write every chunk.
    """
    target = target_of(location, storage_options)
    with target.reaching("opening the store"):
        return _prepare(target, attrs, overwrite, protect)


def _prepare(target: Target, attrs: dict, overwrite: bool, protect) -> PreparedStore:
    path = target.path
    replaced = None
    if path is not None and path.exists() and not path.is_dir():
        raise SamaugError(f"{path} is a file, not a store; choose a folder for --store")
    if overwrite and target.exists():
        _check_replaceable(target, protect)
        replaced = _describe(target)
        target.remove()
    if target.exists():
        if not is_samaug_store(target):
            raise SamaugError(
                f"{target} exists but is not a samaug store (its root zarr.json does not say "
                "samaug made it); pick another --store"
            )
        if path is not None:
            refuse_links(path, "add images to it")
        root = open_root(target)  # its update below drops any consolidated metadata
        old = dict(root.attrs)
        check_root_attrs(old, str(target))
        # A run into an older store goes on in that store's layout (`samaug store upgrade`
        # converts it): the schema version is not a difference of settings.
        attrs = {**attrs, "schema_version": old["schema_version"]}
        diffs = signature_differences(old, attrs)
        if diffs:
            raise SamaugError(
                f"{target} was made with other settings:\n  "
                + "\n  ".join(diffs)
                + "\nUse another --store, the store's settings, or --overwrite to replace it."
            )
        root.attrs.update({"dataset": attrs["dataset"], "updated": now()})
        root.require_group("images")
        return PreparedStore(complete_ids(target), version=old["schema_version"])
    root = zarr.open_group(target.store, mode="w-", zarr_format=3)
    root.attrs.update({**attrs, EVERY_CHUNK_WRITTEN: True})
    root.require_group("images")
    return PreparedStore(set(), replaced)


def group_problem(
    read: Callable[[str], Any], image_id: str, stripped: bool, layout: Layout
) -> str | None:
    """Why the group ``images/<image_id>`` is not complete, or None if it is.

    ``read(key)`` gives a parsed metadata file of the store (None: missing or unreadable).
    Complete: readable group metadata whose attributes pass the schema's checks, marker
    included, and readable metadata of every array the schema expects, matching the
    attributes (shape, dtype, chunks, shards). Reads metadata only, no chunk.
    """
    meta = read(f"images/{image_id}/zarr.json")
    if not isinstance(meta, dict) or meta.get("node_type") != "group":
        return "group metadata (zarr.json) is missing or unreadable"
    attrs = meta.get("attributes", {})
    problem = image_attrs_problem(attrs)
    if problem:
        return problem
    for name, spec in layout.expected(attrs, stripped).items():
        problem = metadata_problem(read(f"images/{image_id}/{name}/zarr.json"), name, spec)
        if problem:
            return problem
    return None


def complete_ids(location: str | Path | Target, storage_options: dict | None = None) -> set[str]:
    """IDs of the image groups that are complete (see ``group_problem``). A group with a
    marker but missing or unreadable metadata is not complete. On an object store the
    metadata is read concurrently, in two rounds (groups, then their arrays)."""
    target = target_of(location, storage_options)
    attrs = read_root_attrs(target)
    stripped = attrs.get("images_stripped") is True
    layout = layout_of(attrs.get("schema_version", SCHEMA_VERSION))
    names = [n for n in target.group_names() if not image_id_problem(n)]
    known = target.read_many_json(f"images/{n}/zarr.json" for n in names)
    arrays = []
    for name in names:
        meta = known[f"images/{name}/zarr.json"]
        group_attrs = meta.get("attributes") if isinstance(meta, dict) else None
        if image_attrs_problem(group_attrs) is None:
            expected = layout.expected(group_attrs, stripped)
            arrays += [f"images/{name}/{array}/zarr.json" for array in expected]
    known.update(target.read_many_json(arrays))
    return {n for n in names if group_problem(known.get, n, stripped, layout) is None}


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
) -> None:
    """Write one image group, completion marker last. One task owns one group.

    image (H, W, 3) uint8, label (H, W) int32 or None, seg_prior (H, W) float32,
    boundary_prior (H, W) uint8. Any earlier, incomplete group of this ID is deleted first.
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
        "masks/bits": pack_masks(masks.masks),
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
        }
    )
    # The marker goes in its own, last metadata write: a crash before it leaves no marker.
    group.attrs["complete"] = True


def unmark_images(path: str | Path, image_ids: Iterable[str]) -> None:
    """Remove the completion marker of each image and drop it from the index, so that the
    next ``samaug priors`` with the store's settings redoes exactly these images. Ends with
    the store's metadata consolidated.

    A group whose metadata cannot be read loses that metadata file (it has no usable marker
    either way); the rest of the group is left for the next run to replace.
    """
    path = Path(path)
    refuse_links(path, "repair it")
    ids = sorted(set(image_ids))
    for image_id in ids:
        check_image_id(image_id)
        meta_path = path / "images" / image_id / "zarr.json"
        meta = read_json(meta_path)
        if isinstance(meta, dict) and isinstance(meta.get("attributes"), dict):
            meta["attributes"].pop("complete", None)
            atomic_write_json(meta_path, meta)
        elif meta_path.exists():
            meta_path.unlink()
    root = open_root(path)
    index = {k: v for k, v in dict(root.attrs).get("index", {}).items() if k not in ids}
    root.attrs.update({"index": index, "updated": now()})
    consolidate(path)
