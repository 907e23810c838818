"""Files replaced atomically: a reader (or a process killed mid-write) sees the old file or the
new one, never a part of either.

Write to a temporary file in the same folder, flush it to disk, then ``os.replace`` it over
the target (atomic on POSIX and Windows within one file system).
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

# What ``torch.load(path, weights_only=True)`` of an arbitrary file fails with (its unpickler,
# its zip reader, a truncated file, a file that is not torch's at all).
TORCH_LOAD_ERRORS = (
    pickle.UnpicklingError,
    RuntimeError,
    OSError,
    EOFError,
    ValueError,
    KeyError,
    IndexError,
    TypeError,
)


@contextlib.contextmanager
def atomic_file(path: str | Path, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside ``path`` for writing; on success it replaces ``path``.

    On an exception the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp makes the file 0600 whatever the umask; the finished file gets what open()
        # would have given it, so a colleague in the group can read a shared bundle.
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, mode, **({} if "b" in mode else {"newline": ""})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def current_umask() -> int:
    """The process's umask (Linux reports it; elsewhere it is set and restored at once)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_file(path, "wb") as f:
        f.write(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_file(path, "w") as f:
        f.write(text)


def atomic_write_json(path: str | Path, value) -> None:
    """``value`` as indented JSON with a final newline."""
    atomic_write_text(path, json.dumps(value, indent=2) + "\n")


def atomic_save(path: str | Path, save: Callable[[IO], None]) -> None:
    """``save(f)`` writes the file through an open binary file (e.g. ``torch.save(obj, f)``)."""
    with atomic_file(path, "wb") as f:
        save(f)
