"""One writer at a time: ``<store>.lock``, beside the store, held by a ``samaug priors`` run.

The lock is a small JSON file (an object on an object store) created exclusively (``O_EXCL``
on a disk; a conditional PUT, ``If-None-Match: *``, on S3): whoever creates it writes the
store; a second run finds it and refuses, naming the host, the process and when it started.
It lies beside the store, not in it, so Zarr never sees it and `strip`, `pack` and the rest
never copy it. The run refreshes it as it goes (``refreshed``) and removes it at the end.

A lock left by a run that died is *stale*: on the same host, its process is gone (or is
another process with the same number), and the next run replaces it by itself, saying so;
from another host nothing can be told but its age, and ``--break-lock`` replaces it. A lock
whose run is alive on this host is never broken (stop that run first), and a lock file that
is not the JSON a run writes is described as such, never as a run of host None.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone

from precompute.files import atomic_write_bytes
from precompute.received import parse_or_none
from precompute.store.location import filesystem
from precompute.store.target import Target
from precompute.types import SamaugError

SUFFIX = ".lock"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _process_start(pid: int) -> str | None:
    """When process ``pid`` started (Linux clock ticks since boot), to tell it from a later
    process given the same number; None where unknown."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _alive(pid: int, start: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists
    return start is None or _process_start(pid) in (None, start)


@dataclass
class Lock:
    """A lock this process holds on ``target``."""

    target: Target
    record: dict
    replaced: str | None = None  # the lock it replaced and why it could, in words
    held: bool = field(default=True, repr=False)

    def refresh(self) -> None:
        """Say the run is alive (``refreshed``); SamaugError if someone broke the lock."""
        current = read(self.target)
        if current is None or current.get("run") != self.record["run"]:
            holder = describe(current) if current else "nobody"
            raise SamaugError(
                f"{self.target.beside(SUFFIX)}: this run's lock was broken (now held by "
                f"{holder}); stopping so that two runs do not write the store at once. The "
                "images done so far are kept"
            )
        self.record["refreshed"] = _now()
        _write(self.target, self.record, exclusive=False)

    def release(self) -> None:
        """Remove the lock if it is still this run's."""
        if not self.held:
            return
        self.held = False
        current = read(self.target)
        if current is not None and current.get("run") == self.record["run"]:
            _remove(self.target)


def describe(record: dict) -> str:
    """Who holds a lock, in words (a lock file that is not a run's JSON says so)."""
    if record.get("unreadable") or not any(record.get(k) for k in ("host", "pid", "command")):
        return "an unreadable lock file (not the JSON a samaug run writes)"
    return (
        f"{record.get('command', 'samaug')} on host {record.get('host', 'unknown')}, process "
        f"{record.get('pid', 'unknown')}, started "
        f"{record.get('started', 'unknown')}, last refreshed {record.get('refreshed', 'unknown')}"
    )


def read(target: Target) -> dict | None:
    """The lock record beside ``target``, or None."""
    where = target.beside(SUFFIX)
    if target.remote:
        fs, path = filesystem(where, {**(target.storage_options or {}), "asynchronous": False})
        try:
            raw = fs.cat_file(path)
        except FileNotFoundError:
            return None
    else:
        try:
            with open(where, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            return None
    found = parse_or_none(raw)
    return found if isinstance(found, dict) else {"unreadable": True}


def _write(target: Target, record: dict, exclusive: bool) -> None:
    """Write the lock; with ``exclusive``, FileExistsError if one is there."""
    data = json.dumps(record, indent=2).encode()
    where = target.beside(SUFFIX)
    if target.remote:
        fs, path = filesystem(where, {**(target.storage_options or {}), "asynchronous": False})
        fs.pipe_file(path, data, mode="create" if exclusive else "overwrite")
        return
    if exclusive:
        os.makedirs(os.path.dirname(os.path.abspath(where)), exist_ok=True)  # a new store's folder
        fd = os.open(where, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
    else:
        atomic_write_bytes(where, data)


def _remove(target: Target) -> None:
    where = target.beside(SUFFIX)
    if target.remote:
        fs, path = filesystem(where, {**(target.storage_options or {}), "asynchronous": False})
        with contextlib.suppress(FileNotFoundError):
            fs.rm_file(path)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(where)


@contextlib.contextmanager
def holding(target: Target, command: str, break_lock: bool = False) -> Iterator[Lock]:
    """The lock beside ``target`` (``acquire``) while the caller writes; released after."""
    lock = acquire(target, break_lock, command)
    try:
        yield lock
    finally:
        lock.release()


def acquire(target: Target, break_lock: bool = False, command: str = "samaug priors") -> Lock:
    """Take the lock beside ``target`` for this process, or SamaugError naming its holder.

    A stale lock of this host (its process gone) is replaced; any lock is replaced with
    ``break_lock``. Failures of the object store (no bucket, refused credentials) are one
    SamaugError each (``Target.reaching``).
    """
    pid = os.getpid()
    record = {
        "host": socket.gethostname(),
        "pid": pid,
        "process_start": _process_start(pid),
        "started": _now(),
        "refreshed": _now(),
        "run": uuid.uuid4().hex,
        "command": command,
    }
    replaced = None
    with target.reaching("taking the lock beside the store"):
        for _ in range(2):
            try:
                _write(target, record, exclusive=True)
                return Lock(target, record, replaced)
            except FileExistsError:
                pass
            current = read(target) or {}
            stale = _stale(current)
            if not (break_lock or stale) or _alive_here(current):
                raise SamaugError(_held_message(target, current))
            replaced = (
                f"the lock of a run that is no longer running ({describe(current)})"
                if stale
                else f"the lock of {describe(current)}, broken with --break-lock"
            )
            _remove(target)
    raise SamaugError(
        f"{target.beside(SUFFIX)}: another run took the lock at the same moment; wait for it"
    )


def _stale(record: dict) -> bool:
    """Whether a lock's run is known to be dead: same host, its process gone."""
    if record.get("host") != socket.gethostname() or not isinstance(record.get("pid"), int):
        return False
    return not _alive(record["pid"], record.get("process_start"))


def _alive_here(record: dict) -> bool:
    """Whether a lock's run is known to be alive: same host, its process running."""
    if record.get("host") != socket.gethostname() or not isinstance(record.get("pid"), int):
        return False
    return _alive(record["pid"], record.get("process_start"))


def _held_message(target: Target, record: dict) -> str:
    where = target.beside(SUFFIX)
    if describe(record).startswith("an unreadable"):
        return (
            f"{where} is there but cannot be read (not the JSON a samaug run writes); if no "
            f"run is writing {target.location}, run again with --break-lock"
        )
    if _alive_here(record):
        return (
            f"{target.location} is being written by {describe(record)} (lock {where}), which "
            "is still running on this host; wait for it to finish, or stop it, then run this "
            "again (--break-lock never breaks the lock of a live run of this host)"
        )
    if record.get("host") == socket.gethostname():
        return (
            f"{target.location} is being written by {describe(record)} (lock {where}); wait "
            "for that run to finish, or stop it, then run this again"
        )
    return (
        f"{target.location} is being written by {describe(record)} (lock {where}); if that "
        "run is no longer running (its host is not this one, so this cannot be checked), run "
        "again with --break-lock"
    )
