"""Where a derived store is written: a new folder, or a new ``.zarr.zip`` file.

Either is built under a temporary name beside the destination and renamed to it only once
complete, consolidated metadata included: a process killed at any moment leaves no folder or
file under the destination's name, so nothing that looks complete and is not.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import time
import zipfile
from pathlib import Path

import zarr
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync
from zarr.storage import MemoryStore

from precompute.store.consolidated import consolidate

# Members carry a fixed time stamp: the same store packs to the same bytes.
_EPOCH = (1980, 1, 1, 0, 0, 0)


def _beside(dst: Path) -> Path:
    """A new temporary name beside ``dst``; leftovers of killed writers of ``dst`` on this
    machine (their process is gone) are removed first."""
    for old in dst.parent.glob(f".{glob.escape(dst.name)}.*.partial"):
        pid = old.name[len(dst.name) + 2 :].split(".")[0]
        if pid.isdigit() and not _alive(int(pid)):
            if old.is_dir() and not old.is_symlink():
                shutil.rmtree(old, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    old.unlink()
    return dst.parent / f".{dst.name}.{os.getpid()}.{time.time_ns()}.partial"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


class FolderSink:
    """A new store folder at ``dst``, built in a hidden folder beside it."""

    def __init__(self, dst: str | Path) -> None:
        self.dst = Path(dst)
        self.partial = _beside(self.dst)
        self.partial.mkdir()

    def put(self, key: str, data: bytes) -> None:
        path = self.partial / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def commit(self) -> None:
        consolidate(self.partial)
        os.rename(self.partial, self.dst)

    def abort(self) -> None:
        shutil.rmtree(self.partial, ignore_errors=True)


class ZipSink:
    """A new one-file store at ``dst``: members stored (not compressed), every key but the
    root ``zarr.json`` as it comes, then the root (with the consolidated metadata) last, just
    before the central directory, and the zip comment ``zipstore`` reads (see there)."""

    def __init__(self, dst: str | Path) -> None:
        self.dst = Path(dst)
        self.partial = _beside(self.dst)
        self._zip = zipfile.ZipFile(self.partial, "w", zipfile.ZIP_STORED, allowZip64=True)
        self._metadata = MemoryStore()  # every zarr.json, to consolidate without re-reading
        self._flat = True

    def put(self, key: str, data: bytes) -> None:
        if key.endswith("zarr.json"):
            buffer = default_buffer_prototype().buffer.from_bytes(data)
            sync(self._metadata.set(key, buffer))
        if key != "zarr.json":
            self._write(key, data)

    def _write(self, key: str, data: bytes) -> None:
        info = zipfile.ZipInfo(key, date_time=_EPOCH)
        info.compress_type = zipfile.ZIP_STORED
        info.external_attr = 0o644 << 16
        self._zip.writestr(info, data)
        # Near this size zipfile puts a ZIP64 field in the member's local header (it allows
        # 5 % for compression): its data then no longer starts at header + 30 + name length.
        self._flat &= len(data) * 1.05 <= zipfile.ZIP64_LIMIT

    def commit(self) -> None:
        consolidate(self._metadata)
        root = sync(self._metadata.get("zarr.json", default_buffer_prototype()))
        self._write("zarr.json", root.to_bytes())
        tail = self._zip.getinfo("zarr.json").header_offset
        self._zip.comment = f"samaug-zip 1 tail={tail}{' flat' if self._flat else ''}".encode()
        self._zip.close()
        with open(self.partial, "rb") as f:
            os.fsync(f.fileno())
        os.rename(self.partial, self.dst)

    def abort(self) -> None:
        with contextlib.suppress(ValueError, OSError):
            self._zip.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.partial)


def group_document(attributes: dict) -> bytes:
    """The ``zarr.json`` of a group with ``attributes``, as zarr writes it."""
    group = zarr.open_group(MemoryStore(), mode="w", zarr_format=3, attributes=attributes)
    return sync(group.store.get("zarr.json", default_buffer_prototype())).to_bytes()
