"""Sharing a store without its images: ``attach_image`` puts each receiver's own copy back,
one image at a time (``derive.strip_images`` made the store). See store_schema.md, "Sharing
a store without the images".
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

import numpy as np
import zarr

from precompute.store.layout import layout_of
from precompute.store.schema import sha256_of
from precompute.store.writer import create_array, now, open_root
from precompute.types import SamaugError

# An attached image is written under this name in its group and renamed to "image" once all
# of it is written: a reader never sees part of an image.
PARTIAL_IMAGE = "image.partial"
# The image being replaced by a rerun of attach, for the moment between two renames.
REPLACED_IMAGE = "image.replaced"


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
