"""Limits on sizes that a file or a store claims, checked before anything is allocated.

A hostile or broken input can claim any size in a few bytes (a TIFF header saying 60000 x
60000, array metadata saying 1e6 x 1e6); decoding it would exhaust memory first. Every
reader of images and stores checks the claimed size against these limits and refuses, naming
the file and the limit, before it allocates.

- ``max_pixels()``: pixels of one image (H * W). Default 178,956,970, the size at which
  Pillow's decompression-bomb check refuses an image, so PNG/JPEG (Pillow) and TIFF
  (tifffile) obey the same rule. Set ``SAMAUG_MAX_PIXELS`` for larger images.
- ``max_masks()``: masks of one image in a store. Default 100,000 (SAM's 32 x 32 grid with
  crops gives a few thousand at most). Set ``SAMAUG_MAX_MASKS``.
- ``max_parameters()``: parameters of one segmentation model, counted before it is built for
  real (options given on the command line or read from a bundle). Default 500,000,000 (2 GB
  of float32; the models here have 2 to 35 million). Set ``SAMAUG_MAX_PARAMETERS``.
- ``max_patch_size()``: the side of a training patch or of the square images are resized
  to. Default 2048 (the recipes use 224 to 512). Set ``SAMAUG_MAX_PATCH_SIZE``.
- ``max_json_bytes()``: one JSON file received from elsewhere (a bundle's members, a
  prediction index, a store's metadata). Default 64 MiB. Set ``SAMAUG_MAX_JSON_BYTES``.
"""

from __future__ import annotations

import os

from precompute.types import SamaugError

DEFAULT_MAX_PIXELS = 2 * 89_478_485  # Pillow's Image.MAX_IMAGE_PIXELS * 2: its error threshold
DEFAULT_MAX_MASKS = 100_000
DEFAULT_MAX_PARAMETERS = 500_000_000
DEFAULT_MAX_PATCH_SIZE = 2048
DEFAULT_MAX_JSON_BYTES = 64 * 2**20


def _from_env(variable: str, default: int) -> int:
    raw = os.environ.get(variable)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SamaugError(f"{variable}={raw!r} is not a whole number") from None
    if value < 1:
        raise SamaugError(f"{variable}={raw!r} must be at least 1")
    return value


def max_pixels() -> int:
    """The most pixels (H * W) one image may have (``SAMAUG_MAX_PIXELS``)."""
    return _from_env("SAMAUG_MAX_PIXELS", DEFAULT_MAX_PIXELS)


def max_masks() -> int:
    """The most masks one image in a store may have (``SAMAUG_MAX_MASKS``)."""
    return _from_env("SAMAUG_MAX_MASKS", DEFAULT_MAX_MASKS)


def max_parameters() -> int:
    """The most parameters one model may have (``SAMAUG_MAX_PARAMETERS``)."""
    return _from_env("SAMAUG_MAX_PARAMETERS", DEFAULT_MAX_PARAMETERS)


def max_patch_size() -> int:
    """The largest training patch side (``SAMAUG_MAX_PATCH_SIZE``)."""
    return _from_env("SAMAUG_MAX_PATCH_SIZE", DEFAULT_MAX_PATCH_SIZE)


def max_json_bytes() -> int:
    """The most bytes of one received JSON file (``SAMAUG_MAX_JSON_BYTES``)."""
    return _from_env("SAMAUG_MAX_JSON_BYTES", DEFAULT_MAX_JSON_BYTES)


def check_pixels(height: int, width: int, where: str) -> None:
    """SamaugError naming ``where`` if an image of ``height`` x ``width`` is over the limit."""
    limit = max_pixels()
    if height * width > limit:
        raise SamaugError(
            f"{where}: claims {height} x {width} = {height * width:,} pixels, more than the "
            f"limit of {limit:,} (set SAMAUG_MAX_PIXELS to allow larger images)"
        )
