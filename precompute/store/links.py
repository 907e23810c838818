"""Symbolic links in a local store: never written or deleted through.

A store received from someone else may hold links (``images/<id>`` -> a folder elsewhere);
writing or deleting through one would change files outside the store. Writers refuse a
store with any link below its root (the root itself may be a link: a store kept on another
disk); ``strip`` copies around them. A link created between the check and the write is not
guarded against: the checks are for stores as received, not for a concurrent attacker.
"""

from __future__ import annotations

import os
from pathlib import Path

from precompute.types import SamaugError


def links_inside(root: str | Path) -> list[Path]:
    """Every symbolic link below ``root`` (not ``root`` itself), sorted; links not followed.

    Uses the file types the directory listing gives (no stat per file): a store holds
    hundreds of thousands of chunk files.
    """
    found, folders = [], [Path(root)]
    while folders:
        with os.scandir(folders.pop()) as entries:
            for entry in entries:
                if entry.is_symlink():
                    found.append(Path(entry.path))
                elif entry.is_dir(follow_symlinks=False):
                    folders.append(Path(entry.path))
    return sorted(found)


def refuse_links(root: str | Path, action: str) -> None:
    """SamaugError naming the first link below ``root`` (and how many there are), if any.

    ``action`` says what was about to happen, e.g. "attach images to it".
    """
    links = links_inside(root)
    if links:
        more = f" and {len(links) - 1} more" if len(links) > 1 else ""
        raise SamaugError(
            f"{root}: will not {action}: {links[0]} is a symbolic link (to "
            f"{os.readlink(links[0])}){more}, and samaug never writes through links in a "
            "store; replace the links with the files they point to, or remove them"
        )


def refuse_link(path: Path, root: str | Path) -> None:
    """SamaugError if ``path`` (a folder the writer is about to use) is a symbolic link."""
    if path.is_symlink():
        raise SamaugError(
            f"{root}: {path} is a symbolic link (to {os.readlink(path)}); samaug never writes "
            "through links in a store; replace it with the folder it points to, or remove it"
        )


def is_within(path: str | Path, folder: str | Path) -> bool:
    """Whether ``path`` is ``folder`` or lies below it (both resolved, links followed)."""
    path, folder = Path(path).resolve(), Path(folder).resolve()
    return path == folder or folder in path.parents
