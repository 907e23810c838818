"""Split list files: a text file that gives images their split (the ``split_file`` option of
the ``kvasir`` and ``polyp`` readers), so one store holds every split of a published split.

The format, one image per line (blank lines and ``#`` comments are skipped):

- ``NAME``: the image goes to the split named by the list file's own stem (every line of
  ``test.txt`` puts its image in split ``test``), as PraNet-style lists of one image name
  per line are written;
- ``NAME SPLIT`` (a space, tab or comma between): the image goes to split ``SPLIT``, so one
  file can hold a whole split (``cju0qkwl35piu0993l0dewei2 test``).

``NAME`` is the image's file name (``cju0qkwl35piu0993l0dewei2.jpg``), its stem or its image
ID. Images the file does not list keep the split the reader gives them (``kvasir``: its
``split`` option, default ``train``; ``polyp``: their folder's). A name no image has, a name
that fits several images (PraNet's test sets reuse names: give the ID, ``Kvasir__1``), an
image listed twice with different splits and a split name that is not a plain word are
SamaugErrors naming the file and the line.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

from precompute.listing import natural_key
from precompute.types import ImageRef, SamaugError

_SEPARATOR = re.compile(r"[\s,]+")
_SPLIT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def read_split_list(path: Path) -> dict[str, tuple[str, int]]:
    """{name: (split, line number)} of a split list file (module doc)."""
    try:
        lines = Path(path).read_text().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise SamaugError(f"{path}: cannot read the split list ({err})") from err
    default = Path(path).stem
    listed: dict[str, tuple[str, int]] = {}
    for number, line in enumerate(lines, 1):
        fields = [f for f in _SEPARATOR.split(line.split("#", 1)[0].strip()) if f]
        if not fields:
            continue
        if len(fields) > 2:
            raise SamaugError(
                f"{path}, line {number}: {line.strip()!r} has {len(fields)} fields; a line is "
                "NAME or NAME SPLIT"
            )
        name, split = fields[0], fields[1] if len(fields) == 2 else default
        if not _SPLIT_NAME.fullmatch(split):
            raise SamaugError(
                f"{path}, line {number}: split {split!r} must be letters, digits, '.', '_' and '-'"
            )
        before = listed.get(name)
        if before is not None and before[0] != split:
            raise SamaugError(
                f"{path}, line {number}: {name!r} is listed in split {split!r} and, on line "
                f"{before[1]}, in split {before[0]!r}"
            )
        listed[name] = (split, number)
    return listed


def assign_splits(refs: list[ImageRef], path: Path) -> list[ImageRef]:
    """``refs`` with the splits the list file at ``path`` gives them, sorted again by split
    then natural ID order."""
    listed = read_split_list(path)
    by_name: dict[str, list[int]] = {}
    for index, ref in enumerate(refs):
        image = Path(ref.image_path)
        for name in {ref.image_id, image.name, image.stem}:
            by_name.setdefault(name, []).append(index)
    chosen: dict[int, str] = {}
    for name, (split, number) in listed.items():
        matches = sorted(set(by_name.get(name, [])))
        if not matches:
            raise SamaugError(f"{path}, line {number}: no image is called {name!r}")
        if len(matches) > 1:
            ids = ", ".join(refs[i].image_id for i in matches)
            raise SamaugError(
                f"{path}, line {number}: {name!r} fits {len(matches)} images ({ids}); list "
                "the image ID instead"
            )
        (index,) = matches
        if chosen.setdefault(index, split) != split:
            raise SamaugError(
                f"{path}, line {number}: image {refs[index].image_id!r} is listed twice, "
                f"in splits {chosen[index]!r} and {split!r}"
            )
    assigned = [replace(ref, split=chosen.get(i, ref.split)) for i, ref in enumerate(refs)]
    return sorted(assigned, key=lambda r: (r.split, natural_key(r.image_id)))
