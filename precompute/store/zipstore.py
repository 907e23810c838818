"""One-file stores: a Zarr store inside a zip file (``.zarr.zip``), read by byte ranges.

``samaug store pack`` writes every key of a store as a zip member, stored (not compressed), so
that each chunk is a byte range of the file. ``ZipRangeStore`` reads such a file, locally or
through fsspec (``http(s)://``, ``s3://``), without downloading it: the end of the file (the
central directory, and the root ``zarr.json`` that ``pack`` writes last, just before it) in
one or two range requests, then each key as a range of its member.

``pack`` also writes a zip comment, ``samaug-zip 1 tail=<offset> flat``: where the root
member starts (so that the root and the central directory come in one request however large
the store), and that no member's local header carries extra fields (so that a member's data
starts at its header offset + 30 + the length of its name). A zip without that comment (made
by another tool) is read all the same, its local headers read once each.
"""

from __future__ import annotations

import asyncio
import os
import re
import struct
import zipfile
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

from zarr.abc.store import (
    ByteRequest,
    OffsetByteRequest,
    RangeByteRequest,
    Store,
    SuffixByteRequest,
)
from zarr.core.buffer import Buffer, BufferPrototype

# The first read takes this much of the end of the file: the central directory and the root
# metadata of a store of a few hundred images, in one request.
TAIL_BYTES = 1 << 20
COMMENT = re.compile(rb"samaug-zip 1 tail=(\d+)( flat)?$")
_EOCD = struct.Struct("<4s4H2LH")
_ZIP64_LOCATOR = struct.Struct("<4sLQL")
_ZIP64_EOCD = struct.Struct("<4sQ2H2L4Q")
_CENTRAL = struct.Struct("<4s6H3L5H2L")
_LOCAL = struct.Struct("<4s5H3L2H")


class ZipFormatError(ValueError):
    """A file that is not a zip samaug can read by ranges (truncated, compressed members)."""


@dataclass
class Member:
    offset: int  # of its local header
    size: int
    name_length: int
    data: int | None = None  # where its bytes start, once known
    limit: int = 0  # where the next member (or the central directory) starts


class FileSource:
    """Byte ranges of a local file."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.name = path

    def _read(self, start: int, stop: int) -> bytes:
        with open(self.path, "rb") as f:
            return os.pread(f.fileno(), max(stop - start, 0), start)

    async def read(self, start: int, stop: int) -> bytes:
        return await asyncio.to_thread(self._read, start, stop)

    async def suffix(self, n: int) -> bytes:
        size = os.path.getsize(self.path)
        return await self.read(max(size - n, 0), size)


class FsspecSource:
    """Byte ranges of a file of an fsspec file system (HTTP, S3, ...)."""

    def __init__(self, fs: Any, path: str, name: str) -> None:
        self.fs, self.path, self.name = fs, path, name

    async def read(self, start: int, stop: int) -> bytes:
        if self.fs.async_impl:
            return await self.fs._cat_file(self.path, start=start, end=stop)
        return await asyncio.to_thread(self.fs.cat_file, self.path, start=start, end=stop)

    async def suffix(self, n: int) -> bytes:
        if self.fs.async_impl:
            return await self.fs._cat_file(self.path, start=-n)
        return await asyncio.to_thread(self.fs.tail, self.path, n)


def _eocd(tail: bytes) -> int:
    at = tail.rfind(b"PK\x05\x06", max(0, len(tail) - 22 - 0xFFFF))
    while at >= 0:
        if at + _EOCD.size <= len(tail):
            comment = _EOCD.unpack_from(tail, at)[-1]
            if at + _EOCD.size + comment == len(tail):
                return at
        at = tail.rfind(b"PK\x05\x06", 0, at)
    raise ZipFormatError("no end of central directory: not a zip file, or a truncated one")


def _directory_span(tail: bytes) -> tuple[int, int, int, bytes]:
    """(central directory offset, its size, the file offset where ``tail`` starts, the zip
    comment) from the end of a zip file."""
    at = _eocd(tail)
    _, _, _, _, entries, size, offset, comment_length = _EOCD.unpack_from(tail, at)
    comment = tail[at + _EOCD.size : at + _EOCD.size + comment_length]
    end_of_directory = at  # where the central directory ends, in ``tail``
    if 0xFFFF in (entries,) or 0xFFFFFFFF in (size, offset):
        locator = at - _ZIP64_LOCATOR.size
        if locator < 0 or tail[locator : locator + 4] != b"PK\x06\x07":
            raise ZipFormatError("a ZIP64 file without its ZIP64 locator (truncated?)")
        record = locator - _ZIP64_EOCD.size
        if record < 0 or tail[record : record + 4] != b"PK\x06\x06":
            raise ZipFormatError("a ZIP64 file without its ZIP64 end record (truncated?)")
        fields = _ZIP64_EOCD.unpack_from(tail, record)
        size, offset = fields[-2], fields[-1]
        end_of_directory = record
    return offset, size, offset + size - end_of_directory, comment


def _parse_directory(raw: bytes) -> dict[str, Member]:
    members, at = {}, 0
    while at < len(raw):
        if raw[at : at + 4] != b"PK\x01\x02":
            raise ZipFormatError(f"central directory entry {len(members)} is damaged")
        fields = _CENTRAL.unpack_from(raw, at)
        flags, method = fields[3], fields[4]
        compressed, size = fields[8], fields[9]
        name_length, extra_length, comment_length = fields[10], fields[11], fields[12]
        offset = fields[16]
        start = at + _CENTRAL.size
        name_bytes = raw[start : start + name_length]
        name = name_bytes.decode("utf-8" if flags & 0x800 else "cp437")
        extra = raw[start + name_length : start + name_length + extra_length]
        size, compressed, offset = _zip64_fields(extra, size, compressed, offset)
        at = start + name_length + extra_length + comment_length
        if name.endswith("/"):
            continue
        if method != zipfile.ZIP_STORED or compressed != size:
            raise ZipFormatError(
                f"member {name} is compressed; samaug reads zips whose members are stored "
                "(`samaug store pack` writes them so)"
            )
        members[name] = Member(offset, size, name_length)
    return members


def _check_disjoint(members: dict[str, Member], directory: int) -> None:
    """Every member's header and bytes lie before the next member's header, and the last
    before the central directory at ``directory``: ``pack`` never writes members that share
    bytes, and a zip whose entries point into each other (one member's bytes read as every
    image's) is refused. Sets each member's ``limit``, checked again once the start of its
    bytes is known (``_data_offset``)."""
    ordered = sorted(members.items(), key=lambda item: item[1].offset)
    for k, (name, member) in enumerate(ordered):
        member.limit = ordered[k + 1][1].offset if k + 1 < len(ordered) else directory
        if member.offset + _LOCAL.size + member.name_length + member.size > member.limit:
            raise ZipFormatError(
                f"member {name} overlaps the next member or the central directory; a zip "
                "whose members share bytes is not one `samaug store pack` wrote"
            )


def _zip64_fields(extra: bytes, size: int, compressed: int, offset: int) -> tuple[int, int, int]:
    at = 0
    while at + 4 <= len(extra):
        tag, length = struct.unpack_from("<2H", extra, at)
        if tag == 0x0001:
            values = list(struct.unpack_from(f"<{length // 8}Q", extra, at + 4))
            if size == 0xFFFFFFFF and values:
                size = values.pop(0)
            if compressed == 0xFFFFFFFF and values:
                compressed = values.pop(0)
            if offset == 0xFFFFFFFF and values:
                offset = values.pop(0)
        at += 4 + length
    return size, compressed, offset


class ZipRangeStore(Store):
    """A read-only zarr Store over a zip file whose members are stored, by byte ranges.

    ``source``: a ``FileSource`` or ``FsspecSource``. Opening reads the end of the file (one
    request, two for a store whose central directory and root metadata exceed 1 MiB).
    """

    supports_writes = False
    supports_deletes = False
    supports_partial_writes = False
    supports_listing = True

    def __init__(self, source: FileSource | FsspecSource) -> None:
        super().__init__(read_only=True)
        self.source = source
        self._members: dict[str, Member] = {}
        self._held: tuple[int, bytes] = (0, b"")  # bytes read at open, from their offset
        self._flat = False

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ZipRangeStore) and other.source.name == self.source.name

    def __repr__(self) -> str:
        return f"ZipRangeStore({self.source.name!r})"

    async def _open(self) -> None:
        if self._is_open:
            return
        tail = await self.source.suffix(TAIL_BYTES)
        offset, size, tail_start, comment = _directory_span(tail)
        found = COMMENT.match(comment)
        wanted = min(offset, int(found.group(1))) if found else offset
        if wanted < tail_start:  # the rest of what is needed, in one more request
            tail = await self.source.read(wanted, tail_start) + tail
            tail_start = wanted
        directory = tail[offset - tail_start : offset - tail_start + size]
        if offset < tail_start or len(directory) != size:
            raise ZipFormatError("the central directory lies outside the file (truncated?)")
        self._members = _parse_directory(directory)
        _check_disjoint(self._members, offset)
        self._held = (tail_start, tail)
        self._flat = bool(found and found.group(2))
        self._is_open = True

    async def _data_offset(self, member: Member) -> int:
        if member.data is None:
            if self._flat:
                member.data = member.offset + _LOCAL.size + member.name_length
            else:
                header = await self._read(member.offset, member.offset + _LOCAL.size)
                if len(header) < _LOCAL.size or header[:4] != b"PK\x03\x04":
                    raise ZipFormatError(f"a member's local header at {member.offset} is damaged")
                name_length, extra_length = struct.unpack_from("<2H", header, 26)
                start = member.offset + _LOCAL.size + name_length + extra_length
                if start + member.size > member.limit:
                    raise ZipFormatError(
                        f"the member at {member.offset} overlaps the next member; a zip whose "
                        "members share bytes is not one `samaug store pack` wrote"
                    )
                member.data = start
        return member.data

    async def _read(self, start: int, stop: int) -> bytes:
        held_start, held = self._held
        if held_start <= start and stop <= held_start + len(held):
            return held[start - held_start : stop - held_start]
        return await self.source.read(start, stop)

    async def get(
        self, key: str, prototype: BufferPrototype, byte_range: ByteRequest | None = None
    ) -> Buffer | None:
        if not self._is_open:
            await self._open()
        member = self._members.get(key)
        if member is None:
            return None
        begin = await self._data_offset(member)
        start, stop = _span(byte_range, member.size)
        data = await self._read(begin + start, begin + stop)
        if len(data) != stop - start:
            raise ZipFormatError(f"member {key} is cut short (a truncated zip)")
        return prototype.buffer.from_bytes(data)

    async def get_partial_values(
        self, prototype: BufferPrototype, key_ranges: Iterable[tuple[str, ByteRequest | None]]
    ) -> list[Buffer | None]:
        return [await self.get(key, prototype, byte_range) for key, byte_range in key_ranges]

    async def exists(self, key: str) -> bool:
        if not self._is_open:
            await self._open()
        return key in self._members

    async def set(self, key: str, value: Buffer) -> None:
        raise ValueError(f"{self.source.name} is a packed store: read-only")

    async def delete(self, key: str) -> None:
        raise ValueError(f"{self.source.name} is a packed store: read-only")

    async def list(self) -> AsyncIterator[str]:
        if not self._is_open:
            await self._open()
        for key in list(self._members):
            yield key

    async def list_prefix(self, prefix: str) -> AsyncIterator[str]:
        async for key in self.list():
            if key.startswith(prefix):
                yield key

    async def list_dir(self, prefix: str) -> AsyncIterator[str]:
        prefix = prefix.rstrip("/") + "/" if prefix else ""
        seen = set()
        async for key in self.list_prefix(prefix):
            child = key[len(prefix) :].split("/", 1)[0]
            if child not in seen:
                seen.add(child)
                yield child


def _span(byte_range: ByteRequest | None, size: int) -> tuple[int, int]:
    """[start, stop) within a member of ``size`` bytes, clipped as a store clips."""
    if byte_range is None:
        return 0, size
    if isinstance(byte_range, RangeByteRequest):
        return min(byte_range.start, size), min(byte_range.end, size)
    if isinstance(byte_range, OffsetByteRequest):
        return min(byte_range.offset, size), size
    if isinstance(byte_range, SuffixByteRequest):
        return max(size - byte_range.suffix, 0), size
    raise ValueError(f"unexpected byte range {byte_range!r}")
