"""A local disk cache for stores read from a URL (``open_store(url, cache=DIR)``,
``samaug train --cache DIR``): what is fetched once is kept, so later epochs read no byte
over the network.

``CachingStore`` sits under the reader's ``GuardedStore``. The first read of an object (a
chunk, a shard, a zip member, a metadata file) fetches it whole, once, and writes it to
``DIR/<store identity>/<key>`` atomically (a temporary file renamed), so that any number of
processes (spawned DataLoader workers) can share one cache: each sees a whole entry or none.
Later reads, of the object or of any byte range of it, are answered from the file.

The identity is a sha256 of the URL and of the root metadata's ``created``, ``updated`` and
signature: two stores never share entries, and a store that samaug changed (a resumed run,
a repair, an attach all update ``updated``) starts a fresh one. The root ``zarr.json`` itself
is fetched once per ``StoreCache`` object (it travels, pickled, to the DataLoader workers).

An entry is checked before its first use in a process: a chunk by its crc32c (every chunk of
the schema ends with one), a shard by its index's crc32c and each inner chunk's, metadata by
parsing. An entry that fails is discarded and fetched again; ``forget`` lets the reader do
the same when a chunk from the cache fails to decode later.

A crc32c says a chunk is whole, not whose it is: a shard of another image copied over this
one's (a poisoned cache) passes it. So before the reader uses an image's array read through
the cache (once per process), ``check_against_record`` decodes it whole and compares each
logical array it holds with the sha256 the store records for it; on a mismatch the cached
objects are discarded and fetched again, and a store whose own bytes still differ is damage.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
from collections.abc import Callable
from pathlib import Path

import google_crc32c
import numpy as np
from zarr.abc.store import ByteRequest
from zarr.core.buffer import Buffer, BufferPrototype
from zarr.storage import WrapperStore

from precompute.files import atomic_write_bytes
from precompute.received import parse_or_none
from precompute.store.zipstore import _span
from precompute.types import SamaugError, SettingError


class StoreCache:
    """Where cached objects go (``directory``), and the root metadata already fetched per
    store location in this run (``roots``, carried to worker processes when pickled)."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.roots: dict[str, bytes] = {}
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise SettingError(
                f"--cache {directory}: cannot create the cache folder ({err}); choose a "
                "writable folder"
            ) from err
        if not os.access(self.directory, os.W_OK):
            raise SettingError(f"--cache {directory}: the folder is not writable")

    @classmethod
    def of(cls, cache: StoreCache | str | Path) -> StoreCache:
        return cache if isinstance(cache, StoreCache) else cls(cache)


def identity(location: str, root: dict) -> str:
    """The cache folder name of the store at ``location`` whose root metadata is ``root``."""
    from precompute.store.resume import signature

    attrs = root.get("attributes", {}) if isinstance(root, dict) else {}
    attrs = attrs if isinstance(attrs, dict) else {}
    text = json.dumps(
        [location, attrs.get("created"), attrs.get("updated"), signature(attrs)],
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(text.encode()).hexdigest()[:32]


# A shard of this schema holds at most a few thousand inner chunks (the pixel and mask
# limits): the index length is searched up to this many entries.
_MAX_INNER_CHUNKS = 4096


def entry_problem(key: str, data: bytes) -> str | None:
    """Why a cached object cannot be what the store holds at ``key``, or None: metadata must
    parse; a chunk must end with the crc32c of the rest; a shard (key ``.../c/0/0[/0]``) must
    end with an index that passes its crc32c, listing inner chunks that pass their own."""
    if key.endswith("zarr.json"):
        return "metadata that does not parse" if parse_or_none(data) is None else None
    if _crc_ok(data):
        return None
    coords = key.rpartition("/c/")[2].split("/")
    if coords and all(c == "0" for c in coords) and _shard_ok(data):
        return None
    return "a chunk or shard that fails its crc32c"


def _crc_ok(data: bytes) -> bool:
    return len(data) >= 4 and np.uint32(google_crc32c.value(data[:-4])).tobytes() == data[-4:]


def _shard_ok(data: bytes) -> bool:
    # The index holds 16 bytes per inner chunk plus its crc32c; its length is not known
    # here, and an index passes its crc32c only at its true length.
    for count in range(1, min((len(data) - 4) // 16, _MAX_INNER_CHUNKS) + 1):
        index = data[len(data) - 16 * count - 4 :]
        if not _crc_ok(index):
            continue
        body = len(data) - len(index)
        table = np.frombuffer(index[:-4], "<u8").reshape(-1, 2)
        return all(
            offset + length <= body and _crc_ok(data[offset : offset + length])
            for offset, length in (map(int, row) for row in table)
            if offset != 2**64 - 1
        )
    return False


class CachingStore(WrapperStore):
    """Whole objects of the wrapped (remote) store kept under ``cache``; see module doc."""

    def __init__(self, store, cache: StoreCache, location: str) -> None:
        super().__init__(store)
        self.cache, self.location = cache, location
        self.folder: Path | None = None
        self._checked: set[str] = set()
        self._arrays_checked: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
        root = cache.roots.get(location)
        if root is not None:
            self._bind(root)

    def _with_store(self, store):
        return type(self)(store, self.cache, self.location)

    def _bind(self, root: bytes) -> None:
        parsed = parse_or_none(root)
        if parsed is None:
            return  # not a store: the reader says so
        self.cache.roots[self.location] = root
        self.folder = self.cache.directory / identity(self.location, parsed)

    def unchecked(self, image_id: str, array: str) -> bool:
        """Whether the image's physical ``array`` is still to be checked against the store's
        recorded sha256 in this process; marks it checked (``check_against_record``)."""
        with self._lock:
            if (image_id, array) in self._arrays_checked:
                return False
            self._arrays_checked.add((image_id, array))
            return True

    def path(self, key: str) -> Path | None:
        """The cache file of ``key`` (None until the root metadata is known)."""
        return None if self.folder is None else self.folder / key

    def forget(self, prefix: str) -> None:
        """Discard the cached objects whose keys start with ``prefix``."""
        with self._lock:
            self._checked = {k for k in self._checked if not k.startswith(prefix)}
        folder = self.path(prefix)
        if folder is not None and folder.is_dir():
            for file in folder.rglob("*"):
                with contextlib.suppress(FileNotFoundError, IsADirectoryError):
                    file.unlink()
        elif folder is not None:
            with contextlib.suppress(FileNotFoundError):
                folder.unlink()

    async def get(
        self, key: str, prototype: BufferPrototype, byte_range: ByteRequest | None = None
    ) -> Buffer | None:
        if key == "zarr.json" and self.location in self.cache.roots:
            return _answer(self.cache.roots[self.location], byte_range, prototype)
        path = self.path(key)
        if path is not None and self._usable(key, path):
            try:
                return prototype.buffer.from_bytes(_read(path, byte_range))
            except OSError:
                pass  # gone meanwhile: fetched again
        value = await self._store.get(key, prototype)
        if value is None:
            return None
        data = value.to_bytes()
        if key == "zarr.json":
            self._bind(data)
        elif path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                atomic_write_bytes(path, data)
            except OSError as err:  # a full or read-only disk: the cache's, not the store's
                raise SamaugError(
                    f"--cache {self.cache.directory}: cannot keep {key} there ({err}); free "
                    "some space or choose another folder"
                ) from err
            with self._lock:
                self._checked.add(key)
        return _answer(data, byte_range, prototype)

    def _usable(self, key: str, path: Path) -> bool:
        """Whether the cache holds ``key`` whole and sound (checked once per process; an
        entry that fails the check is removed)."""
        with self._lock:
            if key in self._checked:
                return path.is_file()
        try:
            data = path.read_bytes()
        except OSError:
            return False
        if entry_problem(key, data) is not None:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()  # damaged on disk: fetched again
            return False
        with self._lock:
            self._checked.add(key)
        return True


def _read(path: Path, byte_range: ByteRequest | None) -> bytes:
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        start, stop = _span(byte_range, size)
        return os.pread(f.fileno(), stop - start, start)


def _answer(data: bytes, byte_range: ByteRequest | None, prototype: BufferPrototype) -> Buffer:
    start, stop = _span(byte_range, len(data))
    return prototype.buffer.from_bytes(data[start:stop])


def check_against_record(store, image_id: str, array: str, forget: Callable[[str], None]) -> None:
    """Decode physical ``array`` of an image of ``store`` (a ``SamaugStore`` reading through
    a cache) whole and compare every logical array it holds with the sha256 the image
    records; on a mismatch ``forget`` the cached objects (a key prefix) and compare again
    with what the store itself holds; DamagedStoreError if that differs too (module doc)."""
    from precompute.store.schema import ARRAY_NAMES, damaged

    recorded = store.image_attrs(image_id)["sha256"]
    held = [n for n in ARRAY_NAMES if store.layout.source(n).array == array and n in recorded]
    for attempt in (1, 2):
        wrong = [name for name in held if store.checksum(image_id, name) != recorded[name]]
        if not wrong:
            return
        if attempt == 1:
            forget(f"images/{image_id}/{array}/")
    raise damaged(store.location, image_id, f"{wrong[0]}: sha256 differs from the recorded one")
