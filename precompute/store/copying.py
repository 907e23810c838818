"""Stores made from stores: the one engine behind ``strip``, ``subset``, ``merge``, ``pack``,
``unpack`` and ``upgrade`` (``derive.py`` holds those operations).

``build`` copies chosen images of one or more source stores (local folders, ``.zarr.zip``
files, URLs of either) into a new folder or ``.zarr.zip`` (``sinks``), written under a
temporary name and renamed when complete. An image whose source has the destination's schema
version is copied key by key, as stored; one of an older version is re-encoded in the new
layout (its logical arrays, and so its sha256, unchanged). Keys come from the schema (the
image's metadata says which arrays and chunks it holds), never from listing the source, so
that only the store's own objects travel. In a local source nothing is read through a
symbolic link, and every file that is not part of a copied image is named as left out.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import zarr
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync
from zarr.storage import MemoryStore

from precompute.store.layout import Layout, layout_of
from precompute.store.links import is_within, links_inside
from precompute.store.location import is_url, is_zip
from precompute.store.reader import SamaugStore
from precompute.store.schema import ARRAY_NAMES
from precompute.store.sinks import FolderSink, ZipSink, group_document
from precompute.store.writer import write_arrays
from precompute.types import SamaugError


@dataclass
class Part:
    """The images to take from one source store."""

    store: SamaugStore
    image_ids: list[str]


@dataclass
class Built:
    """What ``build`` wrote: the index (image ID -> split) and what it left out."""

    index: dict[str, str] = field(default_factory=dict)
    left_out: list[str] = field(default_factory=list)


def check_destination(dst: str | Path, sources: Iterable[str], one_file: bool) -> Path:
    """The destination as a Path, or SamaugError: it must not exist, must lie in an existing
    folder, outside every local source (and not hold one), and be a ``.zip`` name exactly
    when ``one_file``."""
    if is_url(dst):
        raise SamaugError(
            f"{dst}: derived stores are written to this machine; write it here, then copy it "
            "to its place (e.g. `aws s3 cp --recursive` or any upload)"
        )
    path = Path(dst)
    if path.exists() or path.is_symlink():
        raise SamaugError(f"{dst} exists; choose a new destination")
    if one_file and not is_zip(path):
        raise SamaugError(f"{dst}: a one-file store is named like glas.zarr.zip; add .zarr.zip")
    if not one_file and is_zip(path):
        raise SamaugError(f"{dst} is a .zip name; `samaug store pack` writes one-file stores")
    for source in sources:
        if not is_url(source) and (is_within(path, source) or is_within(source, path)):
            raise SamaugError(
                f"{dst} and {source}: the destination must lie outside the store it copies "
                "(and not hold it); choose a destination elsewhere"
            )
    if not path.parent.is_dir():
        raise SamaugError(f"{path.parent}: no such folder for the destination")
    return path


def build(
    dst: Path,
    root_attrs: dict,
    parts: list[Part],
    version: int,
    one_file: bool = False,
    drop_image: bool = False,
) -> Built:
    """Write a new store at ``dst`` holding ``parts``' images in schema ``version``, with
    root attributes ``root_attrs`` (its ``index`` set here). ``drop_image`` leaves the
    ``image`` arrays out (strip). Nothing is left under ``dst``'s name unless it completes."""
    sink = ZipSink(dst) if one_file else FolderSink(dst)
    built = Built()
    layout = layout_of(version)
    try:
        sink.put("images/zarr.json", group_document({}))
        for part in parts:
            _copy_part(sink, part, layout, drop_image, built)
        sink.put(
            "zarr.json", group_document({**root_attrs, "index": dict(sorted(built.index.items()))})
        )
        sink.commit()
    except BaseException:
        sink.abort()
        raise
    built.left_out = sorted(set(built.left_out))
    return built


def _copy_part(sink, part: Part, layout: Layout, drop_image: bool, built: Built) -> None:
    store = part.store
    local = _local_folder(store.location)
    links = _links(local) if local else set()
    copied: set[str] = set()
    excluded: set[str] = set()
    for image_id in part.image_ids:
        keys = store.keys(image_id)
        dropped = [k for k in keys if drop_image and k.startswith(f"images/{image_id}/image/")]
        crossing = [k for k in keys if _crosses(k, links)]
        if crossing:
            built.left_out.append(
                f"images/{image_id} (left out whole: {crossing[0]} lies behind a symbolic link)"
            )
            continue
        if store.layout.version == layout.version:
            wanted = [k for k in keys if k not in dropped]
            for key, data in zip(wanted, store.raw(wanted), strict=True):
                if data is not None:  # absent: an all-zero chunk of an older store
                    sink.put(key, data)
        else:
            for key, data in reencode(store, image_id, layout, drop_image).items():
                sink.put(key, data)
        copied.update(keys)
        excluded.update(dropped)
        built.index[image_id] = store.image_attrs(image_id)["split"]
    if local:
        built.left_out += _strays(local, copied, excluded, store.ids())


def reencode(store: SamaugStore, image_id: str, layout: Layout, drop_image: bool) -> dict:
    """Every key (and its bytes) of the image's group written in ``layout``: the logical
    arrays read from ``store`` and written anew; attributes (sha256 included) unchanged."""
    attrs = store.image_attrs(image_id)
    memory = MemoryStore()
    root = zarr.open_group(memory, mode="w", zarr_format=3)
    group = root.require_group("images").create_group(image_id)
    arrays = {
        name: store.array(image_id, name) if store.has(image_id, name) else None
        for name in ARRAY_NAMES
    }
    if drop_image:
        arrays["image"] = None
    write_arrays(group, layout, *attrs["shape"], attrs["mask_count"], layout.physical(arrays))
    group.attrs.put(attrs)
    prefix = f"images/{image_id}/"

    async def collect() -> dict:
        prototype = default_buffer_prototype()
        keys = [key async for key in memory.list_prefix(prefix)]
        return {key: (await memory.get(key, prototype)).to_bytes() for key in sorted(keys)}

    return sync(collect())


def _local_folder(location: str) -> Path | None:
    return None if is_url(location) or is_zip(location) else Path(location)


def _links(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in links_inside(root)}


def _crosses(key: str, links: set[str]) -> bool:
    parts = key.split("/")
    return any("/".join(parts[:i]) in links for i in range(1, len(parts) + 1))


def _strays(root: Path, copied: set[str], excluded: set[str], indexed: list[str]) -> list[str]:
    """Paths below a local source that are not part of what was copied (or deliberately
    excluded): stray files, links, leftovers of interrupted writers, incomplete groups.
    Complete images that were not chosen (a subset) are not named."""
    known = copied | excluded | {"zarr.json", "images/zarr.json"}
    folders = {"/".join(k.split("/")[:i]) for k in known for i in range(1, k.count("/") + 1)}
    skipped = {f"images/{i}" for i in indexed} - folders
    found: list[str] = []

    def walk(folder: Path, rel: str) -> None:
        with os.scandir(folder) as entries:
            for entry in entries:
                path = f"{rel}{entry.name}"
                if entry.is_symlink():
                    found.append(path)
                elif entry.is_dir():
                    if path in folders:
                        walk(Path(entry.path), f"{path}/")
                    elif path not in skipped:
                        found.append(path)
                elif path not in known:
                    found.append(path)

    walk(root, "")
    return found
