"""Decoding image and annotation files into numpy arrays, one documented way.

Images (``read_image``) become HxWx3 uint8 RGB:

- 8-bit RGB: as stored.
- grayscale: the one channel repeated to 3.
- alpha (RGBA, LA, PA, TIFF extra samples): the alpha channel is dropped, not composited
  over a background, so a transparent pixel keeps the colour the file stores for it.
- palette: looked up in the palette (Pillow's ``convert("RGB")``; a TIFF colormap likewise).
- 1-bit / bool: 0 -> 0, 1 -> 255.
- 16-bit (uint16): ``round(v / 257)``, the linear map of 0..65535 onto 0..255.
- float: only when every value is in [0, 1], then ``round(v * 255)``; any other float image
  (negative, above 1, NaN) is an InputError.
- CMYK, YCbCr, LAB, HSV (Pillow modes): Pillow's own conversion to RGB.
- other pixel types (int32, ...): an InputError.

The first frame or page of a multi-frame file is read. EXIF orientation is ignored (pixels as
stored), so an image and its mask stay aligned. ICC profiles are ignored.

TIFFs (.tif, .tiff) are decoded with tifffile (imagecodecs supplies LZW, PackBits, JPEG, ...),
everything else with Pillow. The exception is a 16-bit colour PNG: Pillow reads it as 8-bit by
keeping the high byte, which is not the 16-bit rule above, so it is decoded with imagecodecs.

Annotations (``read_label``) are integer maps, HxW int32, read as stored: palette images give
their palette indices (not colours), 8/16/32-bit values are kept, bool gives 0/1. A
multi-channel annotation whose R, G and B are equal gives that one channel (alpha dropped);
one whose channels differ is an InputError, since its colours are not labels. Negative values,
values above the int32 range and float annotations are InputErrors.

Every failure to read or decode raises ``InputError("<path>: cannot decode image (<reason>)")``.

Before anything is decoded, the size the file claims (PNG/JPEG/BMP header, TIFF page) is
checked against ``precompute.limits.max_pixels()`` (``SAMAUG_MAX_PIXELS``): a file claiming
more pixels is an InputError naming it, whatever its format. Pillow's own decompression-bomb
check (``Image.MAX_IMAGE_PIXELS``) is set to the same limit.
"""

from __future__ import annotations

import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

from precompute.limits import check_pixels, max_pixels
from precompute.types import InputError, SamaugError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
TIFF_SUFFIXES = (".tif", ".tiff")

# What Pillow, tifffile and the imagecodecs codecs raise on a missing, truncated or corrupt
# file. imagecodecs' codec errors (LzwError, PngError, ...) derive from RuntimeError only.
# UnidentifiedImageError is an OSError; tifffile.TiffFileError is a ValueError.
_DECODE_ERRORS = (
    OSError,
    ValueError,
    SyntaxError,
    EOFError,
    IndexError,
    KeyError,
    RuntimeError,
    struct.error,
    zlib.error,
    Image.DecompressionBombError,
)

# Pillow modes that numpy cannot take as pixels as they are; Pillow converts them to RGB.
_PILLOW_TO_RGB = {"CMYK", "YCbCr", "LAB", "HSV", "RGBa", "La"}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_INT32_MAX = np.iinfo(np.int32).max


def read_image(path: str | Path) -> np.ndarray:
    """The image at ``path`` as HxWx3 uint8 RGB, converted by the rules in the module doc."""
    path = Path(path)
    pixels = read_pixels(path, expand_palette=True)
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    if pixels.ndim != 3 or pixels.shape[2] not in (1, 2, 3, 4):
        raise InputError(f"{path}: cannot decode image (unsupported pixel layout {pixels.shape})")
    # 1 channel: gray; 2: gray + alpha; 3: RGB; 4: RGB + alpha (or TIFF RGB + extra sample).
    colour = pixels[..., :3] if pixels.shape[2] >= 3 else np.repeat(pixels[..., :1], 3, axis=2)
    return _to_uint8(colour, path)


def read_label(path: str | Path) -> np.ndarray:
    """The annotation at ``path`` as an HxW int32 label map, read as stored (module doc)."""
    path = Path(path)
    return labels_from_pixels(single_channel(read_pixels(path, expand_palette=False), path), path)


def labels_from_pixels(pixels: np.ndarray, path: Path) -> np.ndarray:
    """HxW pixels as int32 labels: bool -> 0/1, integers kept; floats, negative values and
    values above the int32 range are an InputError naming ``path``."""
    if pixels.dtype == bool:
        return pixels.astype(np.int32)
    if not np.issubdtype(pixels.dtype, np.integer):
        raise InputError(f"{path}: annotation has {pixels.dtype} values; labels must be integers")
    low, high = (int(pixels.min()), int(pixels.max())) if pixels.size else (0, 0)
    if low < 0 or high > _INT32_MAX:
        raise InputError(f"{path}: annotation values {low}..{high} are outside 0..{_INT32_MAX}")
    return pixels.astype(np.int32)


def read_mask(path: str | Path, threshold: int = 128) -> np.ndarray:
    """A binary mask: HxW int32, 1 where channel 0 of ``read_image(path)`` is >= threshold.

    For masks that are binary in intent but noisy (JPEG artefacts, anti-aliased edges).
    """
    return (read_image(path)[..., 0] >= threshold).astype(np.int32)


def single_channel(pixels: np.ndarray, path: Path) -> np.ndarray:
    """HxW from HxW or HxWxC pixels whose colour channels are equal (alpha dropped)."""
    if pixels.ndim == 2:
        return pixels
    if pixels.ndim != 3 or pixels.shape[2] not in (1, 2, 3, 4):
        raise InputError(f"{path}: annotation has unsupported pixel layout {pixels.shape}")
    if pixels.shape[2] <= 2:
        return pixels[..., 0]
    colour = pixels[..., :3]
    if not (
        np.array_equal(colour[..., 0], colour[..., 1])
        and np.array_equal(colour[..., 0], colour[..., 2])
    ):
        raise InputError(
            f"{path}: annotation is a colour image (its R, G, B channels differ); "
            "expected a single-channel integer label map"
        )
    return colour[..., 0]


def read_pixels(path: str | Path, expand_palette: bool = True) -> np.ndarray:
    """The first frame of ``path`` as stored: HxW or HxWxC, in the file's own dtype.

    expand_palette: palette images give RGB (True) or their indices (False).
    Raises InputError naming the file when it cannot be read or decoded.
    """
    path = Path(path)
    try:
        if path.suffix.lower() in TIFF_SUFFIXES:
            pixels = _read_tiff(path, expand_palette)
        elif _is_16bit_colour_png(path):
            import imagecodecs

            pixels = imagecodecs.png_decode(path.read_bytes())
        else:
            pixels = _read_pillow(path, expand_palette)
    except Image.DecompressionBombError as err:
        # Pillow refuses at twice MAX_IMAGE_PIXELS, before the check in _read_pillow.
        raise InputError(
            f"{path}: {err} (the limit is {max_pixels():,} pixels; set SAMAUG_MAX_PIXELS to "
            "allow larger images)"
        ) from None
    except _DECODE_ERRORS as err:
        raise InputError(f"{path}: cannot decode image ({type(err).__name__}: {err})") from err
    if pixels.ndim < 2 or pixels.shape[0] == 0 or pixels.shape[1] == 0:
        raise InputError(f"{path}: cannot decode image (empty, shape {pixels.shape})")
    return pixels


def read_size(path: str | Path) -> tuple[int, int]:
    """(H, W) of the image at ``path`` from its header (TIFF: the first page), nothing
    decoded; InputError naming the file when it cannot be read."""
    path = Path(path)
    try:
        if path.suffix.lower() in TIFF_SUFFIXES:
            with tifffile.TiffFile(path) as tif:
                if not tif.pages:
                    raise ValueError("no readable image page")
                page = tif.pages.first
                return int(page.imagelength), int(page.imagewidth)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                return int(image.height), int(image.width)
    except _DECODE_ERRORS as err:
        raise InputError(f"{path}: cannot decode image ({type(err).__name__}: {err})") from err


def is_jpeg(path: str | Path) -> bool:
    """Whether the file at ``path`` is a JPEG (its first bytes, whatever its name)."""
    with open(path, "rb") as f:
        return f.read(3) == b"\xff\xd8\xff"


def _to_uint8(pixels: np.ndarray, path: Path) -> np.ndarray:
    if pixels.dtype == np.uint8:
        return np.ascontiguousarray(pixels)
    if pixels.dtype == bool:
        return np.where(pixels, 255, 0).astype(np.uint8)
    if pixels.dtype == np.uint16:
        # Integer form of round(v / 257): v / 257 is never exactly k + 0.5, so no ties.
        return ((pixels.astype(np.uint32) + 128) // 257).astype(np.uint8)
    if np.issubdtype(pixels.dtype, np.floating):
        values = pixels.astype(np.float64)
        if not np.isfinite(values).all() or values.min() < 0 or values.max() > 1:
            raise InputError(
                f"{path}: cannot decode image (float pixels must lie in [0, 1], "
                f"found {np.nanmin(values):g}..{np.nanmax(values):g} or non-finite values)"
            )
        return np.rint(values * 255).astype(np.uint8)
    raise InputError(
        f"{path}: cannot decode image (unsupported pixel type {pixels.dtype}; "
        "expected 8- or 16-bit unsigned, bool, or float in [0, 1])"
    )


def _check_claimed_size(height: int, width: int, path: Path) -> None:
    """InputError naming ``path`` if a header's ``height`` x ``width`` is over the limit."""
    try:
        check_pixels(height, width, str(path))
    except SamaugError as err:
        raise InputError(str(err)) from None


def _read_pillow(path: Path, expand_palette: bool) -> np.ndarray:
    Image.MAX_IMAGE_PIXELS = max_pixels()  # Pillow's bomb check, on the same limit
    with warnings.catch_warnings():
        # Pillow warns between the limit and twice it; the check below refuses those.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        image = Image.open(path)  # reads the header only
    with image:
        _check_claimed_size(image.height, image.width, path)
        image.load()  # decode now: a truncated file fails here, not later
        if image.mode in ("P", "PA") and expand_palette:
            image = image.convert("RGBA" if image.mode == "PA" else "RGB")
        elif image.mode in _PILLOW_TO_RGB:
            image = image.convert("RGB")
        pixels = np.array(image)
    # "I;16B" gives big-endian uint16; make every dtype native.
    return pixels.astype(pixels.dtype.newbyteorder("="), copy=False)


def _read_tiff(path: Path, expand_palette: bool) -> np.ndarray:
    with tifffile.TiffFile(path) as tif:
        if not tif.pages:
            raise ValueError("no readable image page (truncated, or not an image TIFF)")
        page = tif.pages.first
        _check_claimed_size(page.imagelength, page.imagewidth, path)
        pixels = page.asarray()
        axes, photometric = page.axes, page.photometric
        colormap, compression = page.colormap, page.compression
    if axes == "SYX":  # planar configuration: samples first
        pixels = np.moveaxis(pixels, 0, -1)
    elif axes not in ("YX", "YXS"):
        raise ValueError(f"unsupported TIFF layout (axes {axes}); expected a 2-D image")
    kind = tifffile.PHOTOMETRIC
    if photometric == kind.MINISWHITE:
        pixels = ~pixels if pixels.dtype == bool else np.iinfo(pixels.dtype).max - pixels
    elif photometric == kind.PALETTE and expand_palette:
        if colormap is None:
            raise ValueError("palette TIFF without a colormap")
        # The TIFF colormap is 16-bit; some writers store 8-bit values in it.
        colormap = colormap.astype(np.uint16) * (257 if colormap.max() < 256 else 1)
        pixels = np.moveaxis(colormap[:, pixels], 0, -1)
    elif photometric == kind.YCBCR and compression != tifffile.COMPRESSION.JPEG:
        # Only JPEG-compressed YCbCr is turned into RGB by the decoder.
        raise ValueError("uncompressed YCbCr TIFF is not supported; convert it to RGB")
    elif photometric not in (kind.MINISBLACK, kind.RGB, kind.PALETTE, kind.YCBCR):
        raise ValueError(f"unsupported TIFF photometric interpretation {photometric.name}")
    return pixels


def _is_16bit_colour_png(path: Path) -> bool:
    """True for a PNG of bit depth 16 and colour type RGB, gray+alpha or RGBA (IHDR bytes);
    its claimed size (IHDR width and height) is checked here, as Pillow does not read it."""
    with open(path, "rb") as f:
        head = f.read(26)
    found = (
        head[:8] == _PNG_SIGNATURE and len(head) == 26 and head[24] == 16 and head[25] in (2, 4, 6)
    )
    if found:
        width, height = struct.unpack(">II", head[16:24])
        _check_claimed_size(height, width, path)
    return found
