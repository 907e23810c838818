"""A store folder replaced by a new one under its name, readable under it at every moment.

``store upgrade`` in place builds the new store beside the old one, in
``.<NAME>.upgraded.<pid>`` (itself built in a ``.partial`` folder, ``copying.build``), then
swaps the two: one ``renameat2(RENAME_EXCHANGE)`` where the system has it (Linux), so that
``NAME`` is the old store or the new one whatever moment the process is killed at, never
missing; then the old one, now under the hidden name, is removed. Where the exchange is not
available, the old store is moved to ``.<NAME>.version-<V>.<pid>`` and the new one to
``NAME``: a kill between the two leaves ``NAME`` missing for a moment.

Whatever a killed upgrade left is recovered by the next command (``recover``): a missing
``NAME`` is given back (the new store when complete, else the old one), and the hidden
folders of dead processes, and their ``.partial`` folders, are removed
(``remove_leftovers``, with the store's lock held).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import glob
import os
import shutil
from pathlib import Path

RENAME_EXCHANGE = 2  # linux/fs.h
_AT_FDCWD = -100


def upgraded_name(folder: Path) -> Path:
    """Where the new store of ``folder`` is built by this process."""
    return folder.parent / f".{folder.name}.upgraded.{os.getpid()}"


def swap_in(fresh: Path, folder: Path, version: int) -> None:
    """Put the complete store ``fresh`` under ``folder``'s name and remove the old store."""
    if _exchange(fresh, folder):
        shutil.rmtree(fresh)  # the old store, now under the hidden name
        return
    old = folder.parent / f".{folder.name}.version-{version}.{os.getpid()}"
    os.rename(folder, old)
    os.rename(fresh, folder)
    shutil.rmtree(old)


def _exchange(a: Path, b: Path) -> bool:
    """Swap the names ``a`` and ``b`` in one step; False where the system cannot."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError, TypeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p]
    renameat2.argtypes += [ctypes.c_uint]
    result = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE)
    if result == 0:
        return True
    errno = ctypes.get_errno()
    if errno in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: not on this system or file system
        return False
    raise OSError(errno, os.strerror(errno), str(b))


def leftovers(folder: Path) -> list[tuple[Path, int | None]]:
    """(path, pid or None) of what killed upgrades of ``folder`` may have left beside it."""
    name = glob.escape(folder.name)
    found = []
    for pattern in (f".{name}.upgraded.*", f".{name}.version-*"):
        for path in sorted(folder.parent.glob(pattern)):
            fields = path.name[len(folder.name) + 2 :].split(".")
            pid = fields[1] if len(fields) > 1 else ""
            found.append((path, int(pid) if pid.isdigit() else None))
    for path in sorted(folder.parent.glob(f"..{name}.upgraded.*.partial")):
        pid = path.name[len(folder.name) + 3 :].split(".")[1]
        found.append((path, int(pid) if pid.isdigit() else None))
    return found


def _complete(path: Path) -> bool:
    return path.is_dir() and not path.name.endswith(".partial") and (path / "zarr.json").is_file()


def recover(folder: Path) -> bool:
    """Give ``folder`` back its store when a killed upgrade left it missing (the new store
    when it was complete, else the old one); whether it did."""
    if folder.exists() or folder.is_symlink():
        return False
    stores = [path for path, pid in leftovers(folder) if _complete(path) and not _alive(pid)]
    upgraded = [path for path in stores if ".upgraded." in path.name]
    for path in (*upgraded, *stores):
        with contextlib.suppress(OSError):
            os.rename(path, folder)
            return True
    return False


def remove_leftovers(folder: Path) -> list[Path]:
    """Remove what killed upgrades of ``folder`` left beside it (their process gone); the
    paths removed. Call with the store's lock held."""
    removed = []
    for path, pid in leftovers(folder):
        if _alive(pid):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        removed.append(path)
    return removed


def _alive(pid: int | None) -> bool:
    """Whether process ``pid`` of this machine runs (None, as with old names: not)."""
    if pid is None or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # gone, or not a process ID (a time)
        return False
    except PermissionError:
        return True
    return True
