"""Listing a dataset's files: image IDs, their order, images paired with annotations, refs.

The readers of ``precompute/readers`` find files with these and turn them into sorted
``ImageRef``s whose IDs are valid (``precompute.types.image_id_problem``) and unique ignoring
case.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from precompute.imageio import IMAGE_SUFFIXES
from precompute.types import MAX_ID_LENGTH, RESERVED_IDS, ImageRef, SamaugError, image_id_problem

_UNSAFE_ID_CHARS = re.compile(r"[^A-Za-z0-9._-]")
_DIGIT_RUNS = re.compile(r"(\d+)", re.ASCII)


def safe_id(name: str) -> str:
    """The image ID of a file named ``name`` (its stem): always a valid ID by
    ``precompute.types.image_id_problem``.

    Characters outside ``[A-Za-z0-9._-]`` and a leading ``.`` become ``_``; a name Zarr
    reserves (``zarr.json`` in any case, or one starting with ``__``) gets the prefix
    ``id_``; a name longer than the limit is cut and ends in ``_`` + the first 16 hex digits
    of the sha256 of ``name``, so that two long names stay apart.
    """
    image_id = _UNSAFE_ID_CHARS.sub("_", name) or "_"
    if image_id.startswith("."):
        image_id = "_" + image_id[1:]
    if image_id.lower() in RESERVED_IDS or image_id.startswith("__"):
        image_id = "id_" + image_id
    if len(image_id) > MAX_ID_LENGTH:
        digest = hashlib.sha256(name.encode()).hexdigest()[:16]
        image_id = f"{image_id[: MAX_ID_LENGTH - 17]}_{digest}"
    return image_id


def natural_key(text: str) -> tuple:
    """Sort key that orders digit runs by value: ``train_2`` before ``train_10``."""
    parts = _DIGIT_RUNS.split(text)
    return tuple(int(p) if i % 2 else p for i, p in enumerate(parts)), text


def image_files(folder: Path, suffixes: Iterable[str] = IMAGE_SUFFIXES) -> list[Path]:
    suffixes = tuple(suffixes)
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in suffixes
    )


def by_stem(files: Iterable[Path]) -> dict[str, Path]:
    """{stem: path}; two files with one stem (``a.png``, ``a.jpg``) are a SamaugError."""
    out: dict[str, Path] = {}
    for path in files:
        if path.stem in out:
            raise SamaugError(
                f"{out[path.stem]} and {path} have the same name stem {path.stem!r}; "
                "keep one of them"
            )
        out[path.stem] = path
    return out


@dataclass(frozen=True)
class Missing:
    """An annotation the layout expects at ``expected`` but that is not there: the image is
    listed without a label and with a warning naming the file (``make_refs``)."""

    expected: Path


def pair(
    images: dict[str, Path],
    labels: dict[str, Path],
    label_dir: Path,
    expected: bool,
    label_name: str = "{stem}.*",
) -> dict[str, tuple[Path, Path | Missing | None]]:
    """{stem: (image, label)}. A label without an image is an error. An image without a
    label gets ``Missing(label_dir / label_name)`` when the layout ``expected`` one (the
    fixed datasets), else None (a folder whose masks are optional)."""
    orphans = sorted(set(labels) - set(images))
    if orphans:
        raise SamaugError(
            f"{labels[orphans[0]]} has no matching image ({len(orphans)} such annotations)"
        )
    pairs: dict[str, tuple[Path, Path | Missing | None]] = {}
    for stem, image in images.items():
        label = labels.get(stem)
        if label is None and expected:
            label = Missing(label_dir / label_name.format(stem=stem))
        pairs[stem] = (image, label)
    return pairs


def unlabelled_warning(image: Path, missing: Missing) -> str:
    """The warning of an image listed without its expected annotation."""
    return (
        f"{image} has no annotation {missing.expected}: read without a label (its priors "
        "are computed; training and scoring leave it out, or refuse it by name)"
    )


def make_refs(
    entries: Iterable[tuple[str, str, Path, Path | Missing | None]],
) -> list[ImageRef]:
    """Refs from (name, split, image, label) entries: IDs from ``safe_id``, checked unique
    ignoring case (the error names both files), sorted by split then natural ID order. A
    ``Missing`` label makes an unlabelled ref with a warning naming the expected file."""
    refs: list[ImageRef] = []
    seen: dict[str, Path] = {}
    for name, split, image, label in entries:
        image_id = _unique_id(name, image, seen)
        if isinstance(label, Missing):
            ref = ImageRef(image_id, split, str(image), None, (unlabelled_warning(image, label),))
        else:
            ref = ImageRef(image_id, split, str(image), None if label is None else str(label))
        refs.append(ref)
    return sorted(refs, key=lambda r: (r.split, natural_key(r.image_id)))


def _unique_id(name: str, path: Path, seen: dict[str, Path]) -> str:
    """``safe_id(name)``, checked valid and not yet in ``seen`` (lower-case ID -> file)."""
    image_id = safe_id(name)
    problem = image_id_problem(image_id)
    if problem:
        raise SamaugError(f"{path}: {problem}; rename the file")
    other = seen.setdefault(image_id.lower(), path)
    if other != path:
        raise SamaugError(
            f"{other} and {path} both map to image ID {image_id!r} (IDs are file names "
            "with characters outside [A-Za-z0-9._-] replaced by '_', compared ignoring "
            "case); rename one of them"
        )
    return image_id
