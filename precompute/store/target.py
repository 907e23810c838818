"""A store being written: a local folder, or a URL of an object store (``s3://``, any fsspec
back end that writes).

The writer (``writer.py``) does everything through a ``Target``: zarr on its ``store``, and
the few operations zarr has no word for (read a metadata file as it is, remove an image
group, list the groups, write a file beside the store). On an object store there is no
rename: each object is replaced whole by a PUT, so an image's completion marker (its group
``zarr.json`` with ``complete: true``, written last) commits it by existing. Credentials
come from ``storage_options`` or the back end's usual sources, never from the store.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync
from zarr.storage import FsspecStore, LocalStore

from precompute.files import atomic_write_text
from precompute.received import parse_or_none
from precompute.store.location import (
    check_storage_options,
    filesystem,
    is_url,
    is_zip,
    url_problem,
)
from precompute.types import SamaugError


def remote_problem(location: str, err: BaseException, action: str) -> SamaugError:
    """One line for a failure of an object store: a missing bucket or path, refused
    credentials, or anything else on the way."""
    detail = f"{type(err).__name__}: {err}"
    if isinstance(err, FileNotFoundError):
        return SamaugError(
            f"{location}: {action} failed: the bucket or path does not exist ({detail}); "
            "create the bucket, or check the URL"
        )
    if isinstance(err, PermissionError):
        return SamaugError(
            f"{location}: {action} failed: access refused ({detail}); check the credentials "
            "(--storage-option key=... secret=..., the AWS_* environment variables, the "
            "profile) and the bucket's permissions"
        )
    return SamaugError(
        f"{location}: {action} failed ({detail}); check the URL, the network and the "
        "credentials, then run the same command again"
    )


def _remote_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [OSError]
    try:
        from botocore.exceptions import BotoCoreError, ClientError

        errors += [BotoCoreError, ClientError]
    except ImportError:
        pass
    try:
        import aiohttp

        errors.append(aiohttp.ClientError)
    except ImportError:
        pass
    return tuple(errors)


class Target:
    """Where a store is written: ``location`` a local folder or a URL, ``storage_options``
    the fsspec options of a URL. ``store`` is the zarr Store over it (read-write)."""

    def __init__(self, location: str | Path, storage_options: dict | None = None) -> None:
        check_storage_options(storage_options)
        self.location = str(location)
        self.storage_options = storage_options or None
        self.remote = is_url(self.location)
        if is_zip(self.location):
            raise SamaugError(
                f"{location}: a .zarr.zip store is read-only; write a folder (or a URL), "
                "then `samaug store pack` it"
            )
        if self.remote:
            # Other processes (the Dask workers) add objects while the driver works: a listing
            # must never come from fsspec's cache (a consolidation would miss the new groups).
            fresh = {"use_listings_cache": False, **(self.storage_options or {})}
            try:
                self.store = FsspecStore.from_url(
                    self.location, storage_options=fresh, read_only=False
                )
            except (ImportError, ValueError, TypeError) as err:
                raise url_problem(self.location, err) from err
            self.path = None
        else:
            self.path = Path(self.location)
            self.store = LocalStore(self.path)
        self._errors = _remote_errors() if self.remote else (OSError,)

    def __str__(self) -> str:
        return self.location

    def reaching(self, action: str):
        """A context that turns a failure of the object store into one SamaugError."""
        return _Reaching(self, action)

    def read_bytes(self, key: str) -> bytes | None:
        if self.path is not None:
            try:
                return (self.path / key).read_bytes()
            except OSError:
                return None
        value = sync(self.store.get(key, default_buffer_prototype()))
        return None if value is None else value.to_bytes()

    def read_json(self, key: str) -> Any:
        """The parsed JSON object at ``key``, or None if it is missing or not JSON."""
        return self.read_many_json([key])[key]

    def read_many_json(self, keys: Iterable[str]) -> dict[str, Any]:
        """Each key's parsed JSON (None: missing or not JSON), read concurrently."""
        keys = list(dict.fromkeys(keys))
        if self.path is not None:
            raw = [self.read_bytes(k) for k in keys]
        else:

            async def get_all() -> list:
                prototype = default_buffer_prototype()
                return await asyncio.gather(*(self.store.get(k, prototype) for k in keys))

            raw = [None if v is None else v.to_bytes() for v in sync(get_all())]
        return {k: _parse(v) for k, v in zip(keys, raw, strict=True)}

    def exists(self) -> bool:
        """Whether anything is at the location (a file or folder; objects under a prefix)."""
        if self.path is not None:
            return self.path.exists() or self.path.is_symlink()
        return bool(sync(_first(self.store.list())))

    def remove(self, prefix: str = "") -> None:
        """Delete everything under ``prefix`` ("" : the whole store). Locally a file or
        folder (links inside are removed, never followed)."""
        if self.path is not None:
            path = self.path / prefix if prefix else self.path
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()
            return
        if prefix:
            sync(self.store.delete_dir(prefix))
        else:
            sync(self.store.clear())

    def group_names(self) -> list[str]:
        """Names under ``images/`` (folders, or object prefixes)."""
        if self.path is not None:
            folder = self.path / "images"
            if not folder.is_dir():
                return []
            return [p.name for p in folder.iterdir() if p.is_dir() and not p.is_symlink()]

        async def names() -> list[str]:
            return [n async for n in self.store.list_dir("images") if n != "zarr.json"]

        return sync(names())

    def beside(self, suffix: str) -> str:
        """The location of a file beside the store (``<store><suffix>``, e.g. ".log")."""
        return self.location.rstrip("/") + suffix

    def write_beside(self, suffix: str, text: str) -> str:
        """Write ``text`` to ``<store><suffix>`` (atomically on a local disk); its location."""
        where = self.beside(suffix)
        if self.remote:
            fs, path = filesystem(where, {**(self.storage_options or {}), "asynchronous": False})
            fs.pipe_file(path, text.encode())
        else:
            atomic_write_text(where, text)
        return where


class _Reaching:
    def __init__(self, target: Target, action: str) -> None:
        self.target, self.action = target, action

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, err, trace) -> bool:
        if err is not None and self.target.remote and isinstance(err, self.target._errors):
            raise remote_problem(self.target.location, err, self.action) from err
        return False


async def _first(items) -> bool:
    async for _ in items:
        return True
    return False


def _parse(raw: bytes | None) -> Any:
    return parse_or_none(raw)
