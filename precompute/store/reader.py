"""Reading a store: ``open_store`` -> ``SamaugStore``, from a local path or an fsspec URL.

Nothing a store claims is trusted before it is checked: the root attributes on open
(``schema``), an image's attributes on first access, each array's metadata against them
(``layout``) before any chunk is read. Every read goes through ``GuardedStore``: a missing
chunk is damage, a failing connection one StoreUnreachableError. A sharded array (schema
version 2) is read a few byte ranges at a time: its index (checked by its crc32c, kept), then
the inner chunks a read needs, ranges close together fetched as one (``shards``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from itertools import product
from pathlib import Path

import numpy as np
import zarr

from precompute.received import parse_or_none
from precompute.store.access import StoreAccess
from precompute.store.cache import CachingStore, StoreCache, check_against_record
from precompute.store.consolidated import stale_markers
from precompute.store.guarded import (
    GuardedStore,
    StoreUnreachableError,
    transport_errors,
    unreachable,
)
from precompute.store.layout import ArraySpec, layout_of, metadata_problem
from precompute.store.location import is_url, is_zip, read_store
from precompute.store.schema import (
    ARRAY_NAMES,
    EVERY_CHUNK_WRITTEN,
    MAP_NAMES,
    PER_MASK_NAMES,
    DamagedStoreError,
    check_root_attrs,
    damaged,
    image_attrs_problem,
    unpack_masks,
)
from precompute.store.zipstore import ZipFormatError
from precompute.types import NotInStoreError, SamaugError

from . import shards

__all__ = ["GuardedStore", "SamaugStore", "StoreUnreachableError", "open_store"]


class SamaugStore:
    """Read access to a samaug store (see store_schema.md). Open with ``open_store``."""

    def __init__(
        self,
        root: zarr.Group,
        location: str,
        guarded: GuardedStore,
        caching: CachingStore | None = None,
    ) -> None:
        self._root = root
        self._guarded = guarded
        self._caching = caching
        self.location = location
        self.storage_options: dict | None = None  # fsspec options it was opened with
        self.attrs: dict = dict(root.attrs)
        check_root_attrs(self.attrs, location)
        self.layout = layout_of(self.attrs["schema_version"])
        self._index: dict[str, str] = dict(self.attrs["index"])
        self.stripped = self.attrs.get("images_stripped", False)
        # Opening a group or array costs a metadata round trip (a request over HTTP); the
        # trainer reads the same few arrays over and over, so handles are kept.
        self._groups: dict[str, tuple[zarr.Group, dict, dict[str, ArraySpec]]] = {}
        self._arrays: dict[tuple[str, str], zarr.Array | None] = {}
        # Image groups whose consolidated metadata disagreed with their own (local stores):
        # it was ignored, and ``verify`` reports them.
        self.stale_consolidated: list[str] = []

    @property
    def access(self) -> StoreAccess:
        """How this store was reached, bound to its cache (``StoreAccess.open`` gives it
        again, in another process too, without fetching its root metadata again)."""
        return StoreAccess(self.location, self.storage_options, self.cache)

    @property
    def cache(self) -> StoreCache | None:
        """The disk cache this store reads through (None: none), to open it again with
        (``open_store(url, cache=store.cache)``: the root metadata is not fetched again)."""
        return None if self._caching is None else self._caching.cache

    @property
    def consolidated(self) -> bool:
        """Whether the store was opened from consolidated metadata (one read)."""
        return self._root.metadata.consolidated_metadata is not None

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

    def _damaged(self, image_id: str, problem: str) -> DamagedStoreError:
        return damaged(self.location, image_id, problem)

    def _group(self, image_id: str) -> tuple[zarr.Group, dict, dict[str, ArraySpec]]:
        """The image's group, its checked attributes and the physical arrays they call for."""
        if image_id not in self._index:
            raise NotInStoreError(f"{self.location}: no complete image {image_id!r} in the store")
        if image_id not in self._groups:
            try:
                group = self._root[f"images/{image_id}"]
            except KeyError:
                raise self._damaged(image_id, "listed in the index but has no group") from None
            except (ValueError, TypeError) as err:  # zarr.json not JSON, or not Zarr metadata
                raise self._damaged(image_id, f"group metadata is unreadable ({err})") from err
            if not isinstance(group, zarr.Group):
                raise self._damaged(image_id, "is an array, not a group")
            attrs = dict(group.attrs)
            problem = image_attrs_problem(attrs)
            if problem:
                raise self._damaged(image_id, problem)
            self._groups[image_id] = group, attrs, self.layout.expected(attrs, self.stripped)
        return self._groups[image_id]

    def _array(self, image_id: str, name: str) -> zarr.Array | None:
        """Physical array ``name``, its metadata checked against the image's attributes; None
        if the image has no such array (no label, or a stripped image)."""
        key = (image_id, name)
        if key not in self._arrays:
            group, attrs, expected = self._group(image_id)
            try:
                array = group[name]
            except KeyError:
                array = None
            except (ValueError, TypeError) as err:
                raise self._damaged(image_id, f"{name}: metadata is unreadable ({err})") from err
            if array is None and name in expected:
                raise self._damaged(image_id, f"{name}: array metadata is missing")
            if array is not None:
                spec = self.layout.specs(*attrs["shape"], attrs["mask_count"])[name]
                if not isinstance(array, zarr.Array):
                    problem = f"{name}: is a group, not an array"
                else:
                    problem = metadata_problem(array.metadata.to_dict(), name, spec)
                if problem:
                    raise self._damaged(image_id, problem)
            self._arrays[key] = array
        return self._arrays[key]

    def _get(self, image_id: str, name: str, selection=Ellipsis) -> np.ndarray:
        """Decode ``array[selection]`` of physical array ``name``; a chunk that is missing or
        fails its checksum is damage."""
        array = self._array(image_id, name)
        if self._caching is not None and self._caching.unchecked(image_id, name):
            check_against_record(self, image_id, name, self._forget)
        for attempt in (1, 2):
            if array.shards is not None:
                self._fetch_shard(image_id, name, array, selection)
            try:
                return array[selection]
            except (ValueError, RuntimeError) as err:  # crc32c mismatch, undecodable blosc
                if attempt == 1 and self._caching is not None:
                    # A cached copy damaged since it was checked: fetched again, once.
                    self._forget(f"images/{image_id}/{name}/")
                    continue
                raise self._damaged(image_id, f"{name}: cannot decode a chunk ({err})") from err
        raise AssertionError("unreachable")

    def _forget(self, prefix: str) -> None:
        """Drop the cached files and fetched bytes of the keys under ``prefix``."""
        self._caching.forget(prefix)
        self._guarded.memory.forget(prefix)

    def _fetch_shard(self, image_id: str, name: str, array: zarr.Array, selection) -> None:
        """Bring the inner chunks ``selection`` reads into memory, checked (``shards.fetch``);
        damage names the image and the array."""
        problem = shards.fetch(self._guarded, f"images/{image_id}/{name}", array, selection)
        if problem:
            raise self._damaged(image_id, f"{name}: {problem}")

    def own_metadata(self, node: str) -> dict | None:
        """The parsed ``<node>/zarr.json`` (``"."``: the root) as stored, None if missing or
        not JSON; read from the store each time, whatever the consolidated metadata says."""
        key = "zarr.json" if node in (".", "") else f"{node}/zarr.json"
        return parse_or_none(self._guarded.read(key))

    def keys(self, image_id: str) -> list[str]:
        """Every key of the image's group as the schema lays it out: its ``zarr.json`` (and
        version 1's ``masks`` group's), each array's ``zarr.json`` and chunks (a version 2
        array: its one shard). Array metadata is checked first (DamagedStoreError)."""
        group, attrs, _ = self._group(image_id)
        prefix = f"images/{image_id}"
        found = [f"{prefix}/zarr.json"]
        specs = self.layout.specs(*attrs["shape"], attrs["mask_count"])
        if any(name.startswith("masks/") for name in specs):
            found.append(f"{prefix}/masks/zarr.json")
        for name in specs:
            array = self._array(image_id, name)
            if array is None:
                continue
            found.append(f"{prefix}/{name}/zarr.json")
            if 0 in array.shape:  # no chunk at all (an image without masks)
                continue
            if array.shards is not None:
                found.append(shards.shard_key(f"{prefix}/{name}", array.ndim))
                continue
            grid = [
                range(-(-length // chunk))
                for length, chunk in zip(array.shape, array.chunks, strict=True)
            ]
            found += [f"{prefix}/{name}/c/" + "/".join(map(str, c)) for c in product(*grid)]
        return found

    def raw(self, keys: list[str]) -> list[bytes | None]:
        """The stored bytes of each key, as they are (fetched together); None for a key the
        store lacks where that is allowed (a version 1 store without ``every_chunk_written``),
        a DamagedStoreError where it is not."""
        return self._guarded.read_many(keys)

    def image_attrs(self, image_id: str) -> dict:
        """The image's attributes (store_schema.md), checked: ``shape`` [H, W] ints within
        the pixel limit, ``mask_count`` an int within the mask limit, ``sha256`` a map."""
        return dict(self._group(image_id)[1])

    def has(self, image_id: str, name: str) -> bool:
        """Whether the image holds array ``name`` (e.g. "label"; "image" in a stripped store)."""
        if name not in ARRAY_NAMES:
            raise ValueError(f"unknown array {name!r}; one of {', '.join(ARRAY_NAMES)}")
        return self._array(image_id, self.layout.source(name).array) is not None

    def _logical(self, image_id: str, name: str, selection=Ellipsis) -> np.ndarray:
        source = self.layout.source(name)
        return source.convert(self._get(image_id, source.array, source.selection(selection)))

    def read(
        self, image_id: str, name: str, window: tuple[int, int, int, int] | None = None
    ) -> np.ndarray:
        """One map of one image as numpy: whole, or the (y0, x0, y1, x1) window of it.

        name: "image" (H, W, 3) uint8, "label" (H, W) int32, "seg_prior" (H, W) float32,
        "boundary_prior" (H, W) uint8 (0 or 1).
        """
        if name not in MAP_NAMES:
            raise ValueError(f"unknown array {name!r}; one of {', '.join(MAP_NAMES)}")
        if self._array(image_id, self.layout.source(name).array) is None:
            if name == "image" and self.stripped:
                raise SamaugError(
                    f"{self.location} was shared without images; attach your copy with "
                    "`samaug store attach`"
                )
            raise NotInStoreError(f"{self.location}: image {image_id!r} has no {name!r}")
        if window is None:
            return self._logical(image_id, name)
        y0, x0, y1, x1 = (int(v) for v in window)
        height, width = self.image_attrs(image_id)["shape"]
        if not (0 <= y0 < y1 <= height and 0 <= x0 < x1 <= width):
            raise ValueError(
                f"window {window} is outside image {image_id!r} of shape {height}x{width}"
            )
        return self._logical(image_id, name, (slice(y0, y1), slice(x0, x1)))

    def array(self, image_id: str, name: str) -> np.ndarray:
        """Logical array ``name`` (any of store_schema.md's, e.g. "masks/bits" (N, H,
        ceil(W/8)) uint8, "masks/box" (N, 4) int32) whole, whatever the layout."""
        if not self.has(image_id, name):
            raise NotInStoreError(f"{self.location}: image {image_id!r} has no {name!r}")
        return self._logical(image_id, name)

    def per_mask(self, image_id: str) -> dict[str, np.ndarray]:
        """The per-mask arrays (store_schema.md): ``stability_score`` (N,) float32,
        ``predicted_iou`` (N,) float32, ``box`` (N, 4) int32 XYXY, ``point`` (N, 2) float32
        XY, ``area`` (N,) int64."""
        raw: dict[str, np.ndarray] = {}  # version 2 keeps them in one table: read it once
        out = {}
        for name in PER_MASK_NAMES:
            source = self.layout.source(f"masks/{name}")
            if source.array not in raw:
                raw[source.array] = self._get(image_id, source.array)
            out[name] = source.convert(raw[source.array][source.selection()])
        return out

    def masks(self, image_id: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """(N, H, W) bool masks and the per-mask arrays (see store_schema.md)."""
        width = self.image_attrs(image_id)["shape"][1]
        bits = self._logical(image_id, "masks/bits")
        return unpack_masks(bits, width), self.per_mask(image_id)

    def mask_blocks(self, image_id: str) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]:
        """The masks 64 (a chunk) at a time, in order: (n, H, W) bool and the per-mask
        arrays' rows of those masks. Memory is bounded by one block, not N x H x W."""
        width = self.image_attrs(image_id)["shape"][1]
        per_mask = self.per_mask(image_id)
        for start, bits in self._blocks(image_id, "masks/bits"):
            stop = start + len(bits)
            yield unpack_masks(bits, width), {k: v[start:stop] for k, v in per_mask.items()}

    def _blocks(self, image_id: str, name: str) -> Iterator[tuple[int, np.ndarray]]:
        """(first row, rows) of logical array ``name``, one row of chunks at a time."""
        source = self.layout.source(name)
        array = self._array(image_id, source.array)
        if source.columns is not None:  # a few numbers per mask: one block
            yield 0, source.convert(self._get(image_id, source.array, source.selection()))
            return
        axis = len(source.lead)
        step, length = array.chunks[axis], array.shape[axis]  # step >= 1 (checked)
        for start in range(0, length, step):
            yield start, self._logical(image_id, name, (slice(start, start + step),))

    def stored_bytes(self, image_id: str, name: str) -> int:
        """Bytes the physical array holding ``name`` takes in the store (compressed)."""
        return int(self._array(image_id, self.layout.source(name).array).nbytes_stored())

    def checksum(self, image_id: str, name: str) -> str:
        """sha256 of the decoded logical array ``name`` (e.g. "masks/bits") in C order, as
        recorded in ``sha256``; read one row of chunks at a time."""
        hasher = hashlib.sha256()
        for _, rows in self._blocks(image_id, name):
            hasher.update(np.ascontiguousarray(rows).tobytes())
        return hasher.hexdigest()


def open_store(
    path_or_url: str | Path,
    storage_options: dict | None = None,
    consolidated: bool = True,
    cache: StoreCache | str | Path | None = None,
) -> SamaugStore:
    """Open a store read-only from a local path or an fsspec URL (``http://``, ``s3://``).

    Uses the store's consolidated metadata when it has some (opening and listing every image
    is then one read), except on a local store where it disagrees with an image group's own
    metadata (``stale_consolidated`` names them). ``consolidated=False`` reads every node's
    own metadata (what ``verify`` checks). ``cache`` (a folder, or the ``StoreCache`` of a
    store opened before, e.g. ``store.cache``) keeps what is read from a URL on local disk
    (``cache.py``): read once, then never fetched again; a local store ignores it.

    Raises SamaugError for a missing path, a file, a folder or URL that is not a samaug
    store, a schema version this samaug does not read, and root attributes the reader cannot
    use (naming the key).
    """
    location = str(path_or_url)
    base = read_store(location, storage_options)
    caching = None
    if cache is not None and is_url(location):
        caching = CachingStore(base, StoreCache.of(cache), location)
        base = caching
    guarded = GuardedStore(base, location)
    root = _open_root(guarded, location, None if consolidated else False)
    tool = root.attrs.get("tool")
    if not (isinstance(tool, dict) and tool.get("name") == "samaug"):
        raise SamaugError(
            f"{location} is not a samaug store (its root attributes do not say samaug made it)"
        )
    stale: list[str] = []
    local_folder = not (is_url(location) or is_zip(location))
    if local_folder and root.metadata.consolidated_metadata is not None:
        stale = stale_markers(location)
        # The markers win: read each node's own metadata.
        if stale:
            root = _open_root(guarded, location, False)
    guarded.strict = root.attrs.get(EVERY_CHUNK_WRITTEN) is True
    opened = SamaugStore(root, location, guarded, caching)
    opened.storage_options = storage_options
    opened.stale_consolidated = stale
    return opened


def _open_root(guarded: GuardedStore, location: str, use_consolidated: bool | None) -> zarr.Group:
    try:
        return zarr.open_group(
            store=guarded, mode="r", zarr_format=3, use_consolidated=use_consolidated
        )
    except ZipFormatError as err:
        raise damaged(location, None, str(err)) from err
    except FileNotFoundError as err:  # an HTTP 404, a missing object: the address is wrong
        raise SamaugError(
            f"{location}: no such store (nothing found at this address); check the address"
        ) from err
    except transport_errors() as err:  # while opening, before any key was read
        raise unreachable(location, "zarr.json", err) from err
    except (ValueError, KeyError, TypeError) as err:
        raise SamaugError(
            f"{location} is not a samaug store (its root zarr.json cannot be read: "
            f"{type(err).__name__})"
        ) from err
