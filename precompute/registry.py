"""One small registry, used by every table of named things (timm's ``_registry`` in spirit).

Datasets, maskers, models, fusions, tasks, protocols, recipes and training modes are each a
``Registry``: entries are added once under a name (``add``, or ``register`` as a decorator),
listed sorted (``names``), and looked up with ``get``. Every registry refuses a name given
twice in the same words, and every unknown name is the same ``SettingError``, naming the
option the user gave and the valid names. ``restored`` undoes the registrations made inside
a block, for tests that register a toy entry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Generic, TypeVar

from precompute.types import SettingError

T = TypeVar("T")


class Registry(Generic[T]):
    """Named entries of one kind.

    kind: what an entry is, for messages ("model", "masker", ...).
    option: how the command line names the choice ("--model"); default ``--<kind>``.
    """

    def __init__(self, kind: str, option: str | None = None) -> None:
        self.kind = kind
        self.option = option or f"--{kind.replace(' ', '-')}"
        self._entries: dict[str, T] = {}

    def add(self, name: str, entry: T) -> T:
        """Register ``entry`` as ``name``; ValueError if the name is taken (a programming
        error, found when the module defining the entry is imported)."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"a {self.kind} name must be a non-empty string, not {name!r}")
        if name in self._entries:
            raise ValueError(f"{self.kind} name {name!r} is taken; pick another name")
        self._entries[name] = entry
        return entry

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator form of ``add``: ``@models.register("unet")`` on a class or function."""
        return lambda entry: self.add(name, entry)

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._entries)

    def get(self, name: str) -> T:
        """The entry called ``name``; SettingError naming the option and the valid names."""
        if not isinstance(name, str) or name not in self._entries:
            raise SettingError(
                f"{self.option} {name!r}: no such {self.kind}; valid: {', '.join(self.names())}"
            )
        return self._entries[name]

    def check(self, name: str) -> str:
        """``name`` if it is registered (``get``'s error otherwise)."""
        self.get(name)
        return name

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def items(self) -> list[tuple[str, T]]:
        """(name, entry) pairs, sorted by name."""
        return [(name, self._entries[name]) for name in self.names()]

    @contextmanager
    def restored(self) -> Iterator[Registry[T]]:
        """A block after which the registry holds exactly what it held before: entries added
        inside it are removed again (for tests that register toy entries)."""
        before = dict(self._entries)
        try:
            yield self
        finally:
            self._entries.clear()
            self._entries.update(before)
