"""Runs that resume: the signature a run must match (``signature``), ``prepare_store`` (the
driver creates the store, or reopens it to go on), which image groups are complete
(``group_problem``, ``complete_ids``: what a resumed run skips) and ``unmark_images`` (what
``samaug store repair`` does: the next run redoes exactly those images).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zarr

from precompute.files import atomic_write_json
from precompute.maskers import portable_provenance
from precompute.store.consolidated import consolidate
from precompute.store.layout import Layout, layout_of, metadata_problem
from precompute.store.links import refuse_links
from precompute.store.schema import (
    EVERY_CHUNK_WRITTEN,
    SCHEMA_VERSION,
    check_root_attrs,
    image_attrs_problem,
)
from precompute.store.target import Target
from precompute.store.writer import (
    is_samaug_store,
    now,
    open_root,
    read_json,
    read_root_attrs,
    target_of,
)
from precompute.types import SamaugError, check_image_id, image_id_problem


def signature(attrs: Mapping) -> dict:
    """What must match for a run to add to an existing store (see store_schema.md).

    The dataset's name and reader options, the masker's provenance except the checkpoint's
    path (its sha256 counts), the prior definitions and the schema version.
    """
    dataset = attrs.get("dataset", {})
    masker = portable_provenance(attrs.get("masker", {}))
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


@dataclass
class PreparedStore:
    """What ``prepare_store`` found: the images already complete, what ``--overwrite``
    replaced (a one-line description, or None) and the store's schema version."""

    complete: set[str]
    replaced: str | None = None
    version: int = SCHEMA_VERSION  # the schema version the run writes (the store's own)


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
