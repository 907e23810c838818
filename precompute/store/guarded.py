"""``GuardedStore``: the layer every read of a store goes through.

It turns a missing chunk (in a store that says every chunk was written) into a
DamagedStoreError, and any transport failure into a StoreUnreachableError naming the store
and the key: never zeros, never a traceback. It also remembers, in a bounded memory, the
shard indexes and the byte ranges the reader fetched ahead (``fetch``), so that Zarr's own
reads of a shard (its index, then each inner chunk) are answered without a request each.
A server that ignores Range (it answers a ranged request with the whole object) is read
correctly: the range is cut from the object, which is kept for the next reads.
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from dataclasses import dataclass

from zarr.abc.store import OffsetByteRequest, RangeByteRequest, SuffixByteRequest
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync
from zarr.storage import WrapperStore

from precompute.received import check_bounds
from precompute.store.schema import damaged
from precompute.store.zipstore import ZipFormatError
from precompute.types import InputError, SamaugError

MEMORY_BYTES = 32 << 20


class StoreUnreachableError(SamaugError):
    """Reading the store failed for a reason outside it: the network, the server, the disk."""


def transport_errors() -> tuple[type[BaseException], ...]:
    # OSError covers connection refused/reset, timeouts (TimeoutError) and disk errors;
    # aiohttp's own errors (a dropped connection, an HTTP 5xx) come in where it is installed.
    errors: tuple[type[BaseException], ...] = (OSError,)
    try:
        import aiohttp
    except ImportError:
        return errors
    return (*errors, aiohttp.ClientError)


def unreachable(location: str, key: str, err: BaseException) -> StoreUnreachableError:
    return StoreUnreachableError(
        f"{location}: reading {key} failed ({type(err).__name__}: {err}); check the "
        "connection or the server, then run the same command again (training resumes from "
        "its last checkpoint)"
    )


@dataclass
class _Held:
    start: int
    data: bytes
    whole: bool  # the entire object, not a range of it

    def answer(self, byte_range) -> bytes | None:
        """The bytes ``byte_range`` asks for, if this entry holds them."""
        end = self.start + len(self.data)
        if byte_range is None or isinstance(byte_range, OffsetByteRequest):
            offset = 0 if byte_range is None else byte_range.offset
            return self.data[offset:] if self.whole else None
        if isinstance(byte_range, SuffixByteRequest):
            return self.data[-byte_range.suffix :] if self.whole else None
        if isinstance(byte_range, RangeByteRequest):
            # A whole object answers any range (clipped at its end, as a store does).
            if self.whole or self.start <= byte_range.start and byte_range.end <= end:
                if byte_range.start >= self.start:
                    return self.data[byte_range.start - self.start : byte_range.end - self.start]
        return None


class RangeMemory:
    """Recently fetched bytes, by key, least recently used dropped beyond ``limit`` bytes.
    Safe to use from Zarr's event-loop thread and the caller's thread at once."""

    def __init__(self, limit: int = MEMORY_BYTES) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[str, int, int, bool], _Held] = OrderedDict()
        self._suffixes: OrderedDict[tuple[str, int], bytes] = OrderedDict()
        self._size = 0

    def put(self, key: str, start: int, data: bytes, whole: bool = False) -> None:
        with self._lock:
            slot = (key, start, len(data), whole)
            if slot not in self._entries:
                self._entries[slot] = _Held(start, bytes(data), whole)
                self._size += len(data)
            self._entries.move_to_end(slot)
            while self._size > self.limit and len(self._entries) > 1:
                _, dropped = self._entries.popitem(last=False)
                self._size -= len(dropped.data)

    def put_suffix(self, key: str, suffix: int, data: bytes) -> None:
        """Keep a suffix read (a shard's index: small, read once per shard and process)."""
        with self._lock:
            self._suffixes[(key, suffix)] = bytes(data)
            self._suffixes.move_to_end((key, suffix))
            while len(self._suffixes) > 4096:
                self._suffixes.popitem(last=False)

    def get(self, key: str, byte_range) -> bytes | None:
        with self._lock:
            if isinstance(byte_range, SuffixByteRequest):
                found = self._suffixes.get((key, byte_range.suffix))
                if found is not None:
                    return found
            for slot, held in reversed(self._entries.items()):
                if slot[0] == key:
                    found = held.answer(byte_range)
                    if found is not None:
                        self._entries.move_to_end(slot)
                        return found
        return None

    def forget(self, prefix: str) -> None:
        """Drop everything held for keys starting with ``prefix``."""
        with self._lock:
            for slot in [s for s in self._entries if s[0].startswith(prefix)]:
                self._size -= len(self._entries.pop(slot).data)
            for slot in [s for s in self._suffixes if s[0].startswith(prefix)]:
                del self._suffixes[slot]


class GuardedStore(WrapperStore):
    """A zarr store wrapper for reading: a chunk key that is missing is damage when
    ``strict`` (the store says every chunk was written), and any transport error becomes a
    StoreUnreachableError naming ``location`` and the key. Bytes ``fetch`` brought ahead
    answer later reads of them."""

    def __init__(
        self, store, location: str = "", strict: bool = False, memory: RangeMemory | None = None
    ) -> None:
        super().__init__(store)
        self.location, self.strict = location, strict
        self.memory = memory if memory is not None else RangeMemory()
        self._errors = transport_errors()

    def _with_store(self, store):
        return type(self)(store, self.location, self.strict, self.memory)

    async def _inner_get(self, key, prototype, byte_range):
        try:
            value = await self._store.get(key, prototype, byte_range)
        except ZipFormatError as err:  # a packed store cut short or altered
            raise damaged_at(self.location, key, str(err)) from err
        except self._errors as err:
            raise unreachable(self.location, key, err) from err
        if value is None and self.strict and not key.endswith("zarr.json"):
            raise missing_chunk(self.location, key)
        if value is not None and key.endswith("zarr.json"):
            _check_metadata(self.location, key, value.to_bytes())
        if value is not None and len(value) > _asked(byte_range):
            value = prototype.buffer.from_bytes(self._range_of_whole(key, value, byte_range))
        return value

    def _range_of_whole(self, key: str, value, byte_range) -> bytes:
        """The bytes ``byte_range`` asked for, from the whole object a server that ignores
        Range sent (``python -m http.server``: 200 and every byte). The object is kept
        (``memory``), so the next reads of it make no request; nothing is damaged."""
        data = value.to_bytes()
        self.memory.put(key, 0, data, whole=True)
        return _Held(0, data, True).answer(byte_range)

    async def get(self, key, prototype, byte_range=None):
        held = self.memory.get(key, byte_range)
        if held is not None:
            return prototype.buffer.from_bytes(held)
        value = await self._inner_get(key, prototype, byte_range)
        if value is not None and isinstance(byte_range, SuffixByteRequest):
            self.memory.put_suffix(key, byte_range.suffix, value.to_bytes())
        return value

    def read(self, key: str, byte_range=None) -> bytes | None:
        """The bytes of ``key`` (all, or ``byte_range``) from memory or the store; None for a
        missing key (when not ``strict``)."""
        value = sync(self.get(key, default_buffer_prototype(), byte_range))
        return None if value is None else value.to_bytes()

    def read_many(self, keys: list[str]) -> list[bytes | None]:
        """The bytes of every key (whole), read concurrently: a store's worth of requests
        costs about one round trip per batch."""

        async def all_of() -> list:
            prototype = default_buffer_prototype()
            return await asyncio.gather(*(self.get(key, prototype) for key in keys))

        return [None if v is None else v.to_bytes() for v in sync(all_of())]

    def fetch(self, key: str, start: int | None = None, stop: int | None = None) -> bytes | None:
        """Read ``key`` (whole, or bytes [start, stop)) from the store now and keep it, so
        that the reads Zarr makes next are answered from memory."""
        whole = start is None
        byte_range = None if whole else RangeByteRequest(start, stop)
        held = self.memory.get(key, byte_range)
        if held is not None:
            return held
        value = sync(self._inner_get(key, default_buffer_prototype(), byte_range))
        if value is None:
            return None
        data = value.to_bytes()
        self.memory.put(key, 0 if whole else start, data, whole)
        return data


def _asked(byte_range) -> float:
    """The most bytes an answer to ``byte_range`` holds (infinite: the rest of the object)."""
    if isinstance(byte_range, RangeByteRequest):
        return byte_range.end - byte_range.start
    if isinstance(byte_range, SuffixByteRequest):
        return byte_range.suffix
    return float("inf")


def _check_metadata(location: str, key: str, data: bytes) -> None:
    """Metadata is parsed by zarr, whose JSON parser recurses: bounded first (size, nesting;
    ``precompute.received``), so a crafted zarr.json is damage in one line, never a
    RecursionError."""
    try:
        check_bounds(data, key)
    except InputError as err:
        problem = str(err).removeprefix(f"{key}: ")
        if key == "zarr.json":
            raise damaged(location, None, f"zarr.json: {problem}") from None
        raise damaged_at(location, key, problem) from None


def _where(key: str) -> tuple[str | None, str]:
    """(image ID or None, "<array>: chunk c/<i>/<j>") of a key "images/<id>/<array>/c/..."."""
    head, _, coords = key.partition("/c/")
    parts = head.split("/")
    image_id = parts[1] if len(parts) > 2 and parts[0] == "images" else None
    array = "/".join(parts[2:]) if image_id else head
    return image_id, (f"{array}: chunk c/{coords}" if coords else (array or key))


def damaged_at(location: str, key: str, problem: str) -> SamaugError:
    """The DamagedStoreError for ``problem`` at ``key``, naming the image, array and chunk."""
    image_id, where = _where(key)
    return damaged(location, image_id, f"{where}: {problem}")


def missing_chunk(location: str, key: str) -> SamaugError:
    image_id, where = _where(key)
    return damaged(location, image_id, f"{where} is missing (every chunk was written)")
