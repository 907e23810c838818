"""How a store is reached: one value for its location, the fsspec options of a URL and a cache.

Every command that reads a store builds one ``StoreAccess`` from its command line
(``--store``, ``--storage-option``, ``--cache``) and hands it down; whatever reads the store
(training data, validation, evaluation, prediction) opens it from that value, or takes the
opened store, which knows how it was reached (``SamaugStore.access``) and so can be opened
again in another process (a DataLoader worker) without a new request for its root metadata.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from precompute.store.cache import StoreCache

if TYPE_CHECKING:
    from precompute.store.reader import SamaugStore


@dataclass(frozen=True)
class StoreAccess:
    """Where a store is and how to read it.

    location: a local folder or ``.zarr.zip``, or an fsspec URL of either; None where the
      command line named no store and the command takes one it knows (a run's training
      store, ``or_location``).
    storage_options: fsspec options for a URL (credentials, endpoint): never saved.
    cache: a folder keeping what is read from a URL on local disk, or the ``StoreCache`` of
      a store opened before (its root metadata is then not fetched again); ignored for a
      local store.
    """

    location: str | None
    storage_options: dict | None = field(default=None, compare=False)
    cache: StoreCache | str | Path | None = None

    def __post_init__(self) -> None:
        if self.location is not None:
            object.__setattr__(self, "location", str(self.location))

    def open(self, consolidated: bool = True) -> SamaugStore:
        """The store, opened read-only (``open_store``)."""
        from precompute.store.reader import open_store

        if self.location is None:
            raise ValueError("StoreAccess without a location: give one with or_location")
        return open_store(self.location, self.storage_options, consolidated, cache=self.cache)

    def or_location(self, location: str | Path) -> StoreAccess:
        """This access, at ``location`` where it names none."""
        return self if self.location is not None else replace(self, location=str(location))

    def elsewhere(self, location: str | Path, cache: bool = True) -> StoreAccess:
        """Another store reached the same way (the same options; the same cache folder, or
        none without ``cache``)."""
        folder = self.cache.directory if isinstance(self.cache, StoreCache) else self.cache
        return replace(self, location=str(location), cache=folder if cache else None)


def access_of(store: SamaugStore | StoreAccess | str | Path) -> StoreAccess:
    """A ``StoreAccess`` for an opened store, an access, or a bare location (no options)."""
    if isinstance(store, StoreAccess):
        return store
    if isinstance(store, (str, Path)):
        return StoreAccess(str(store))
    return store.access
