"""Reading prediction files back (``samaug score``), this project's
(``train.results.prediction_files`` layout) and other tools'.

``read_prediction`` takes label maps as 8- or 16-bit PNG or TIFF (any format
``precompute.imageio`` decodes), binary masks as any non-zero value, probability maps as npz
or float TIFF in [0, 1] or as integer images scaled by their type's maximum (8-bit: v / 255,
16-bit: v / 65535). ``match_predictions`` pairs files with image IDs by file stem made
safe (``safe_id``). Every problem is an InputError naming the file.
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np

from precompute.checks import choice
from precompute.imageio import (
    IMAGE_SUFFIXES,
    TIFF_SUFFIXES,
    labels_from_pixels,
    read_pixels,
    single_channel,
)
from precompute.limits import check_pixels
from precompute.listing import safe_id
from precompute.types import InputError
from train.results.prediction_files import (
    INDEX_NAME,
    KINDS,
    OVERLAY_SUFFIX,
    PROBABILITY_KEY,
    PROBABILITY_SUFFIX,
    Kind,
)

# numpy dtype kinds a probability map may have: bool, unsigned integer, float.
_PROBABILITY_KINDS = frozenset("buf")


def read_prediction(path: str | Path, kind: Kind | None = None) -> np.ndarray:
    """One prediction file as an array, by ``kind`` (conversions in the module doc):

    "labels": HxW int32 label map, 0 = background (PNG/TIFF/... integer images).
    "mask": HxW bool, True where the label map is non-zero.
    "probability": HxW float32 in [0, 1] (npz, float TIFF, or integer images / type max).
    None: as the file holds it: npz and float images give "probability", others "labels".
    Raises InputError naming the file when it cannot be read or holds the wrong kind.
    """
    if kind is not None:
        choice("kind", kind, KINDS)
    path = Path(path)
    if path.suffix.lower() == ".npz":
        if kind in ("labels", "mask"):
            raise InputError(f"{path}: holds a probability map, not {kind}; give a PNG or TIFF")
        return _read_npz(path)
    pixels = single_channel(read_pixels(path, expand_palette=False), path)
    floating = np.issubdtype(pixels.dtype, np.floating)
    if kind == "probability" or (kind is None and floating):
        return _as_probability(pixels, path)
    labels = labels_from_pixels(pixels, path)
    return labels > 0 if kind == "mask" else labels


def match_predictions(
    folder: str | Path, image_ids: list[str], kind: Kind = "labels"
) -> tuple[dict[str, Path], list[str], list[Path]]:
    """Pair the files of ``folder`` with ``image_ids`` by file stem made safe
    (``precompute.listing.safe_id``: ``a b.png`` is image ``a_b``'s).

    "labels"/"mask" take ``<id>`` + an image suffix (.png, .tif, ...); "probability" takes
    ``<id>.npz``, else ``<id>_probability.tif``, else ``<id>`` + an image suffix.
    Returns (found: {id: path}, missing: ids without a file, extra: files that belong to no
    given ID, sorted). Overlays, ``predictions.json`` and hidden files are never extra.
    InputError naming the folder when it is not one, or the files when one ID has two.
    """
    choice("kind", kind, KINDS)
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: no such prediction folder")
    wanted = set(image_ids)
    by_id: dict[str, list[tuple[Path, tuple[str, str]]]] = {}
    extra = []
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.name.startswith(".") or path.name == INDEX_NAME:
            continue
        owner = _owner(path, wanted)
        if owner is None:
            extra.append(path)
        else:
            by_id.setdefault(owner[0], []).append((path, owner[1]))
    found, missing = {}, []
    for image_id in image_ids:
        candidates = by_id.get(image_id, [])
        for roles in _preference(kind):
            tier = [path for path, role in candidates if role in roles]
            if len(tier) > 1:
                raise InputError(
                    f"{', '.join(map(str, tier))}: more than one {kind} file for image "
                    f"{image_id!r}; keep one"
                )
            if tier:
                found[image_id] = tier[0]
                break
        else:
            missing.append(image_id)
    return found, missing, extra


def check_shape(path: str | Path, array: np.ndarray, expected_hw: tuple[int, int]) -> np.ndarray:
    """``array`` if its height and width are ``expected_hw``, else InputError naming the file
    and both sizes (H x W)."""
    height, width = (int(n) for n in expected_hw)
    if tuple(array.shape[:2]) != (height, width):
        raise InputError(
            f"{path}: prediction is {array.shape[0]} x {array.shape[1]} (H x W) but its image "
            f"is {height} x {width}; predict at the image's own size"
        )
    return array


def _read_npz(path: Path) -> np.ndarray:
    member = f"{PROBABILITY_KEY}.npy"
    try:
        with zipfile.ZipFile(path) as archive:
            if member not in archive.namelist():
                raise InputError(
                    f"{path}: no {PROBABILITY_KEY!r} array (holds {archive.namelist()}); "
                    "write the probability map under that key"
                )
            # The header first: refuse an oversized claim before decompressing it.
            with archive.open(member) as f:
                version = np.lib.format.read_magic(f)
                read_header = (
                    np.lib.format.read_array_header_1_0
                    if version == (1, 0)
                    else np.lib.format.read_array_header_2_0
                )
                shape, _, dtype = read_header(f)
            _check_npy_header(path, shape, dtype)
            with archive.open(member) as f:
                values = np.lib.format.read_array(f, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as err:
        raise InputError(
            f"{path}: cannot read probability map ({type(err).__name__}: {err})"
        ) from err
    return _as_probability(values, path)


def _check_npy_header(path: Path, shape: tuple, dtype: np.dtype) -> None:
    """InputError unless the ``.npy`` header claims what a probability map can be: H x W, both
    at least 1, within the pixel limit, of bool, unsigned integers or floats of at most 8
    bytes; checked before a byte of the array is inflated."""
    if len(shape) != 2 or 0 in shape:
        raise InputError(f"{path}: probability has shape {shape}; expected H x W, both above 0")
    if dtype.kind not in _PROBABILITY_KINDS or dtype.itemsize > 8:
        raise InputError(
            f"{path}: {dtype.str} values cannot be a probability map; use floats in [0, 1] or "
            "8/16-bit integers"
        )
    check_pixels(shape[0], shape[1], str(path))


def _as_probability(values: np.ndarray, path: Path) -> np.ndarray:
    if values.ndim != 2 or values.size == 0:
        raise InputError(
            f"{path}: probability has shape {values.shape}; expected H x W, both above 0"
        )
    if values.dtype == bool:
        return values.astype(np.float32)
    if np.issubdtype(values.dtype, np.unsignedinteger):
        return (values / np.iinfo(values.dtype).max).astype(np.float32)
    if not np.issubdtype(values.dtype, np.floating):
        raise InputError(
            f"{path}: {values.dtype} values cannot be a probability map; "
            "use floats in [0, 1] or an 8/16-bit image"
        )
    values = values.astype(np.float32)
    if not (np.isfinite(values).all() and values.min() >= 0 and values.max() <= 1):
        raise InputError(
            f"{path}: probability values must be finite and in [0, 1], found "
            f"{np.nanmin(values):g}..{np.nanmax(values):g} or non-finite values"
        )
    return values


def _owner(path: Path, image_ids: set[str]) -> tuple[str, tuple[str, str]] | None:
    """(image ID, (role, lower-case suffix)) of a prediction file by the layout's names, or
    None: ``a b_probability.tif`` is ``("a_b", ("_probability", ".tif"))``, ``a.png`` is
    ``("a", ("", ".png"))``. A file's ID is its stem made safe, as samaug names its files."""
    stem, suffix = path.stem, path.suffix.lower()
    if suffix not in (*IMAGE_SUFFIXES, ".npz"):
        return None
    if safe_id(stem) in image_ids:
        return safe_id(stem), ("", suffix)
    for role, suffixes in ((OVERLAY_SUFFIX, IMAGE_SUFFIXES), (PROBABILITY_SUFFIX, TIFF_SUFFIXES)):
        base = safe_id(stem.removesuffix(role))
        if stem.endswith(role) and suffix in suffixes and base in image_ids:
            return base, (role, suffix)
    return None


def _preference(kind: str) -> list[set[tuple[str, str]]]:
    """The (role, suffix) pairs of the files that hold ``kind``, most preferred first."""
    images = {("", s) for s in IMAGE_SUFFIXES}
    if kind != "probability":
        return [images]
    tiffs = {(PROBABILITY_SUFFIX, s) for s in TIFF_SUFFIXES}
    return [{("", ".npz")}, tiffs, images]
