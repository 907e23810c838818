"""The samaug Zarr store: the only package that touches zarr. ``store_schema.md`` is its contract.

- ``schema``: the logical arrays, codecs, attributes, versions and size limits as checks.
- ``layout``: which Zarr arrays hold them in each schema version (version 2: sharded).
- ``writer``: ``write_image`` (one task, one image group), ``set_index`` (driver), through a
  ``Target``; ``resume``: ``prepare_store`` (driver), the signature, ``complete_ids``,
  ``unmark_images`` (repair).
- ``sharing``: ``attach_image`` (a store shared without its images gets them back).
- ``derive``: ``strip_images``, ``subset_store``, ``merge_stores``, ``pack_store``,
  ``unpack_store``, ``upgrade_store``: new stores from stores (``copying``: the engine;
  ``sinks``: a new folder or ``.zarr.zip``).
- ``location``: local folder, ``.zarr.zip`` (``zipstore``: read by byte ranges) or URL.
- ``reader``: ``open_store`` -> ``SamaugStore``, local or over fsspec, checking every claim;
  ``guarded`` (every read: errors, fetched ranges) and ``shards`` (a shard's index, ranges).
- ``links``: no writer goes through a symbolic link inside a store.
- ``target``: where a store is written (a folder, or an object store by URL); ``lock``: one
  writer at a time (``<store>.lock``).
- ``consolidated``: every node's metadata in the root ``zarr.json`` (one read to open).
- ``cache``: ``StoreCache``, a local disk cache of what is read from a URL.
- ``access``: ``StoreAccess``, how a store is reached (location, fsspec options, cache): the
  one value every reader of a store is handed.

Imports numpy and zarr only: no torch, no segment_anything.
"""

from precompute.store.access import StoreAccess, access_of
from precompute.store.cache import StoreCache
from precompute.store.consolidated import consolidate
from precompute.store.derive import (
    merge_stores,
    pack_store,
    read_ids,
    strip_images,
    subset_store,
    unpack_store,
    upgrade_store,
)
from precompute.store.guarded import GuardedStore, StoreUnreachableError
from precompute.store.layout import Layout, layout_of
from precompute.store.links import links_inside
from precompute.store.location import is_url, is_zip
from precompute.store.reader import SamaugStore, open_store
from precompute.store.resume import (
    PreparedStore,
    complete_ids,
    group_problem,
    prepare_store,
    signature,
    signature_differences,
    unmark_images,
)
from precompute.store.schema import (
    ARRAY_NAMES,
    EVERY_CHUNK_WRITTEN,
    MAP_NAMES,
    MASKS_PER_CHUNK,
    PER_MASK_DTYPES,
    PER_MASK_NAMES,
    PRIOR_DEFINITIONS,
    READABLE_VERSIONS,
    SCHEMA_VERSION,
    TILE,
    DamagedStoreError,
    pack_masks,
    unpack_masks,
)
from precompute.store.sharing import attach_image, mark_images_attached
from precompute.store.target import Target
from precompute.store.writer import (
    is_samaug_store,
    read_root_attrs,
    set_index,
    split_of,
    store_root_attrs,
    write_image,
)

from . import consolidated, lock

__all__ = [
    "ARRAY_NAMES",
    "EVERY_CHUNK_WRITTEN",
    "MAP_NAMES",
    "MASKS_PER_CHUNK",
    "PER_MASK_DTYPES",
    "PER_MASK_NAMES",
    "PRIOR_DEFINITIONS",
    "READABLE_VERSIONS",
    "SCHEMA_VERSION",
    "TILE",
    "DamagedStoreError",
    "GuardedStore",
    "Layout",
    "PreparedStore",
    "SamaugStore",
    "StoreAccess",
    "StoreCache",
    "StoreUnreachableError",
    "access_of",
    "Target",
    "attach_image",
    "complete_ids",
    "consolidate",
    "consolidated",
    "group_problem",
    "is_samaug_store",
    "layout_of",
    "is_url",
    "is_zip",
    "links_inside",
    "lock",
    "merge_stores",
    "mark_images_attached",
    "open_store",
    "pack_masks",
    "pack_store",
    "prepare_store",
    "set_index",
    "signature",
    "signature_differences",
    "split_of",
    "read_ids",
    "read_root_attrs",
    "store_root_attrs",
    "strip_images",
    "subset_store",
    "unmark_images",
    "unpack_masks",
    "unpack_store",
    "upgrade_store",
    "write_image",
]
