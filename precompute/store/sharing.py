"""Sharing a store without its images: ``strip_images`` (sender) and ``attach_image`` (each
receiver, one image at a time). See store_schema.md, "Sharing a store without the images".
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from pathlib import Path

import numpy as np
import zarr

from ..types import SamaugError, image_id_problem
from .consolidated import consolidate
from .layout import layout_of
from .links import is_within
from .schema import SCHEMA_VERSION, sha256_of
from .writer import create_array, is_samaug_store, now, open_root, read_root_attrs

# An attached image is written under this name in its group and renamed to "image" once all
# of it is written: a reader never sees part of an image.
PARTIAL_IMAGE = "image.partial"
# The image being replaced by a rerun of attach, for the moment between two renames.
REPLACED_IMAGE = "image.replaced"


def strip_images(src: str | Path, dst: str | Path) -> list[str]:
    """Copy a store without its ``image`` arrays, for sharing where images may not be.

    Everything else of the store's layout stays, ``image_sha256`` included, so the receiver
    can attach their own copy of the images and prove they are the same pixels. Only regular
    files of the layout are copied (``zarr.json`` files and the chunk files of the schema's
    arrays), never through a symbolic link; returns what was left out (paths relative to
    ``src``). The copy is made beside ``dst`` and renamed to it when complete.
    """
    src, dst = Path(src), Path(dst)
    if not src.exists():
        raise SamaugError(f"{src}: no such store to strip")
    if not is_samaug_store(src):
        raise SamaugError(
            f"{src} is not a samaug store (no root zarr.json saying samaug made it); "
            "strip copies only samaug stores"
        )
    if dst.exists() or dst.is_symlink():
        raise SamaugError(f"{dst} exists; choose a new destination")
    if is_within(dst, src) or is_within(src, dst):
        raise SamaugError(
            f"{dst} and {src}: the destination must lie outside the store it copies (and not "
            "hold it); choose a destination elsewhere"
        )
    if not dst.parent.is_dir():
        raise SamaugError(f"{dst.parent}: no such folder for the destination")
    if (src / "zarr.json").is_symlink():
        raise SamaugError(f"{src / 'zarr.json'} is a symbolic link; strip copies no links")
    left_out: list[str] = []
    # A folder made like any other (permissions from the umask), renamed once complete.
    partial = dst.parent / f".{dst.name}.{os.getpid()}.{time.time_ns()}.partial"
    partial.mkdir()
    try:
        _copy_layout(src, partial, left_out)
        open_root(partial).attrs.update({"images_stripped": True, "updated": now()})
        consolidate(partial)
        os.rename(partial, dst)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return sorted(left_out)


def _copy_layout(src: Path, dst: Path, left_out: list[str]) -> None:
    version = read_root_attrs(src).get("schema_version", SCHEMA_VERSION)
    copied = [name for name in layout_of(version).specs(1, 1, 0) if name != "image"]
    _copy_file(src / "zarr.json", dst / "zarr.json", src, left_out)
    left_out += [
        p.name for p in src.iterdir() if p.name not in ("zarr.json", "images") or p.is_symlink()
    ]
    if not _is_folder(src / "images"):
        return  # a link is named above with the other strays; a missing folder is no loss
    _copy_file(src / "images" / "zarr.json", dst / "images" / "zarr.json", src, left_out)
    for entry in sorted((src / "images").iterdir()):
        if entry.name == "zarr.json":
            continue
        if not _is_folder(entry) or image_id_problem(entry.name):
            left_out.append(entry.relative_to(src).as_posix())
            continue
        _copy_group(entry, dst / "images" / entry.name, src, left_out, copied)


def _copy_group(group: Path, dst: Path, src: Path, left_out: list[str], copied: list) -> None:
    _copy_file(group / "zarr.json", dst / "zarr.json", src, left_out)
    entries = list(group.iterdir())
    if _is_folder(group / "masks"):
        _copy_file(group / "masks" / "zarr.json", dst / "masks" / "zarr.json", src, left_out)
        entries += list((group / "masks").iterdir())
    expected = {"zarr.json", "image", "masks/zarr.json", *copied}
    for path in entries:
        name = path.relative_to(group).as_posix()
        if path.is_symlink() or (name not in expected and not (name == "masks" and path.is_dir())):
            left_out.append(path.relative_to(src).as_posix())
    for name in copied:
        if _is_folder(group / name):
            _copy_array(group / name, dst / name, src, left_out)


def _copy_array(array: Path, dst: Path, src: Path, left_out: list[str]) -> None:
    for path in sorted(array.iterdir()):
        if path.name == "zarr.json":
            _copy_file(path, dst / "zarr.json", src, left_out)
        elif path.name == "c" and _is_folder(path):
            _copy_chunks(path, dst / "c", src, left_out)
        else:
            left_out.append(path.relative_to(src).as_posix())


def _copy_chunks(folder: Path, dst: Path, src: Path, left_out: list[str]) -> None:
    # Chunk keys are "c/<i>/<j>/...": folders and files named by digits only.
    for path in sorted(folder.iterdir()):
        if not path.name.isdigit() or path.is_symlink():
            left_out.append(path.relative_to(src).as_posix())
        elif path.is_dir():
            _copy_chunks(path, dst / path.name, src, left_out)
        else:
            _copy_file(path, dst / path.name, src, left_out)


def _is_folder(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink()


def _copy_file(path: Path, dst: Path, src: Path, left_out: list[str]) -> None:
    """Copy ``path`` if it is a regular file (not a link), else name it in ``left_out``."""
    if path.is_symlink() or not path.is_file():
        if path.is_symlink() or path.exists():
            left_out.append(path.relative_to(src).as_posix())
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, dst, follow_symlinks=False)


def attach_image(path: str | Path, image_id: str, image: np.ndarray, source: str) -> None:
    """Put an image back into a stripped store after checking its pixels' sha256.

    image: (H, W, 3) uint8, the receiver's copy read from ``source`` (named in the error when
    its sha256 differs from the store's ``image_sha256``). The array is written as
    ``image.partial`` and renamed to ``image`` once complete, so a process killed at any
    moment leaves either no ``image`` or all of it. The caller has checked the store (no
    links, a valid ``image_id``, usable attributes).
    """
    group_dir = Path(path) / "images" / image_id
    group = zarr.open_group(path, path=f"images/{image_id}", mode="r+")
    attrs = dict(group.attrs)
    image = np.asarray(image, np.uint8)
    version = zarr.open_group(path, mode="r").attrs["schema_version"]
    spec = layout_of(version).specs(*attrs["shape"], attrs["mask_count"])["image"]
    if image.shape != spec.shape:
        raise SamaugError(
            f"image {image_id}: your copy {source} has shape {image.shape}, the store's "
            f"image {spec.shape}; it is not the image the priors were made from"
        )
    actual, expected = sha256_of(image), attrs["image_sha256"]
    if actual != expected:
        raise SamaugError(
            f"image {image_id}: your copy's pixels have sha256 {actual[:12]}..., the store "
            f"expects {expected[:12]}...; {source} is not the image the priors were made from"
        )
    for leftover in (PARTIAL_IMAGE, REPLACED_IMAGE):
        shutil.rmtree(group_dir / leftover, ignore_errors=True)
    create_array(group, PARTIAL_IMAGE, spec, image)
    if (group_dir / "image").exists():
        os.rename(group_dir / "image", group_dir / REPLACED_IMAGE)
    os.rename(group_dir / PARTIAL_IMAGE, group_dir / "image")
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(group_dir / REPLACED_IMAGE)


def mark_images_attached(path: str | Path) -> None:
    """Record that every image is back (``images_stripped: false``)."""
    open_root(path).attrs.update({"images_stripped": False, "updated": now()})
