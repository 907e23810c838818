"""Where a store is: a local folder, a ``.zarr.zip`` file, or an fsspec URL of either
(``http(s)://``, ``s3://``, ...), and the zarr Store that reads or writes it there.

Credentials and client settings for a URL come from ``storage_options`` (``--storage-option
KEY=VALUE`` on the command line) or from the usual sources of the fsspec back end (for S3:
the environment, ``~/.aws``, an instance profile); never from the store.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from zarr.storage import FsspecStore, LocalStore

from precompute.store.in_place import recover
from precompute.store.zipstore import FileSource, FsspecSource, ZipRangeStore
from precompute.types import SamaugError

_PACKAGES = {
    "s3": "s3fs",
    "s3a": "s3fs",
    "gs": "gcsfs",
    "gcs": "gcsfs",
    "az": "adlfs",
    "abfs": "adlfs",
    "http": "aiohttp",
    "https": "aiohttp",
}


def is_url(location: str | Path) -> bool:
    return "://" in str(location)


def is_zip(location: str | Path) -> bool:
    """Whether ``location`` names a one-file store (``.zip``, e.g. ``glas.zarr.zip``)."""
    return str(location).rstrip("/").lower().endswith(".zip")


def url_problem(url: str, err: BaseException) -> SamaugError:
    """The SamaugError for a URL fsspec cannot open (naming a missing back end)."""
    scheme = url.split("://", 1)[0].lower()
    if isinstance(err, ImportError):
        package = _PACKAGES.get(scheme, "that implements it for fsspec")
        hint = " (pip install 'samaug[s3]')" if package == "s3fs" else ""
        return SamaugError(
            f"{url}: {scheme}:// needs the package {package}{hint}; install it and run the "
            "same command again"
        )
    if isinstance(err, OSError):
        return SamaugError(
            f"{url}: cannot reach it ({type(err).__name__}: {err}); check the address and that "
            "the server is up"
        )
    return SamaugError(f"{url}: cannot open this URL ({err})")


def check_storage_options(storage_options: dict | None) -> None:
    """SamaugError for an fsspec option samaug sets itself: ``asynchronous`` (the store is
    read from zarr's event loop, so the file system must be asynchronous where it can be)."""
    if storage_options and "asynchronous" in storage_options:
        raise SamaugError(
            "--storage-option asynchronous: samaug sets it itself (stores are read "
            "asynchronously); leave it out"
        )


def filesystem(url: str, storage_options: dict | None = None) -> tuple[Any, str]:
    """(fsspec file system, path within it) for ``url``, made for use from zarr's event loop
    (asynchronous, its session created there, as ``FsspecStore`` makes its own); SamaugError
    when it cannot be opened."""
    import fsspec

    try:
        return fsspec.core.url_to_fs(url, **{"asynchronous": True, **(storage_options or {})})
    except (ImportError, ValueError, TypeError, OSError) as err:
        raise url_problem(url, err) from err


def check_local_store(path: Path, location: str) -> None:
    """SamaugError unless ``path`` is a local folder holding a root zarr.json, or a file
    named like a one-file store."""
    if not path.exists() and not recover(path):  # a killed `store upgrade` may have moved it
        raise SamaugError(f"{location}: no such store; create it with `samaug priors`")
    if is_zip(path):
        if not path.is_file():
            raise SamaugError(f"{location} is a folder, not a packed store (.zarr.zip file)")
        return
    if not path.is_dir():
        raise SamaugError(
            f"{location} is a file, not a store (a store is a folder, or a .zarr.zip file)"
        )
    if not (path / "zarr.json").is_file():
        raise SamaugError(f"{location} is not a samaug store (it has no zarr.json)")


def http_options(url: str, storage_options: dict | None) -> dict | None:
    """``storage_options`` for an ``http(s)://`` URL with a number of seconds given as
    ``client_kwargs.timeout`` (all JSON can say, e.g. on the command line) turned into the
    aiohttp timeout it means: a read that stalls longer fails."""
    kwargs = (storage_options or {}).get("client_kwargs")
    timeout = kwargs.get("timeout") if isinstance(kwargs, dict) else None
    if not url.lower().startswith("http") or not isinstance(timeout, (int, float)):
        return storage_options
    import aiohttp

    client = {**kwargs, "timeout": aiohttp.ClientTimeout(total=float(timeout))}
    return {**storage_options, "client_kwargs": client}


def read_store(location: str | Path, storage_options: dict | None = None):
    """A read-only zarr Store for the store at ``location`` (checked to exist when local)."""
    location = str(location)
    check_storage_options(storage_options)
    storage_options = http_options(location, storage_options)
    if is_zip(location):
        if is_url(location):
            fs, path = filesystem(location, storage_options)
            return ZipRangeStore(FsspecSource(fs, path, location))
        check_local_store(Path(location), location)
        return ZipRangeStore(FileSource(location))
    if is_url(location):
        try:
            return FsspecStore.from_url(
                location, storage_options=storage_options or None, read_only=True
            )
        except (ImportError, ValueError, TypeError, OSError) as err:
            raise url_problem(location, err) from err
    check_local_store(Path(location), location)
    return LocalStore(location, read_only=True)
