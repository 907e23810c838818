"""Prediction files: what ``samaug predict`` writes and ``samaug score`` reads back.

Layout (version 1). One output folder; every file is named after the image ID and written
atomically (a reader sees the old file or the new one, never a part):

- ``<id>.png`` -- the decision for instance tasks (glands, nuclei): the instance label map,
  a 16-bit grayscale PNG (uint16, 0 = background, 1..N one value per object).
- ``<id>.tif`` -- the same label map as a zlib-compressed uint32 TIFF, written instead of
  the PNG when the largest label is above 65535 (more than 65535 objects). Labels are at
  most 2**31 - 1.
- ``<id>.png`` -- the decision for binary tasks (polyps): an 8-bit grayscale PNG, 255 on
  the foreground and 0 elsewhere.
- ``<id>.npz`` -- optional, the foreground probability: a compressed numpy archive holding
  one HxW float16 array under the key ``probability``, values in [0, 1] (float16 keeps
  them to within 0.0005).
- ``<id>_probability.tif`` -- the alternative probability format: an HxW float32
  zlib-compressed TIFF, values in [0, 1].
- ``<id>_overlay.png`` -- optional, an RGB PNG of the image with the predicted contours
  drawn in ``OVERLAY_COLOUR`` (pure green): the pixels of each object that touch another
  label or the background (``skimage.segmentation.find_boundaries(mode="inner")``), one
  pixel wide, two where objects touch; every other pixel is the image's own.
- ``predictions.json`` -- written last: ``{"layout": "samaug-predictions", "version": 1,
  "made_by": {...}, "images": [entry, ...]}``. ``made_by`` is what the caller says made
  the predictions (model, provenance, strategy, settings); each entry is
  ``{"image_id", "shape": [H, W], "objects", "files": {role: file name}}`` with roles
  ``labels`` or ``mask``, and ``probability`` and ``overlay`` where written. ``objects``
  counts the distinct non-zero labels of a label map, or the 8-connected foreground
  regions of a mask.

Reading them back, and predictions from other tools, is ``train.results.prediction_reader``'s.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Literal

import numpy as np
import tifffile
from PIL import Image

from precompute.checks import choice
from precompute.files import atomic_file, atomic_save, atomic_write_bytes, atomic_write_json
from precompute.received import INTEGER, OBJECT, STRING, check_schema, read_json_file
from precompute.types import InputError, SettingError, check_image_id
from train.choices import PROBABILITY_FORMATS

LAYOUT = "samaug-predictions"
LAYOUT_VERSION = 1
INDEX_NAME = "predictions.json"
OVERLAY_SUFFIX = "_overlay"
PROBABILITY_SUFFIX = "_probability"
PROBABILITY_KEY = "probability"
PROB_FORMATS = PROBABILITY_FORMATS
OVERLAY_COLOUR = (0, 255, 0)
PNG_MAX_LABEL = 65535
MAX_LABEL = 2**31 - 1  # read back as int32 (precompute.imageio)

# What reading an index relies on (``precompute.received``); file names are checked apart.
INDEX_SCHEMA = {
    "type": "object",
    "required": ["images"],
    "properties": {
        "made_by": OBJECT,
        "images": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["image_id", "files"],
                "properties": {
                    "image_id": STRING,
                    "shape": {"type": "array", "items": INTEGER},
                    "objects": INTEGER,
                    "files": {**OBJECT, "additionalProperties": STRING},
                },
            },
        },
    },
}

Kind = Literal["labels", "mask", "probability"]
KINDS = ("labels", "mask", "probability")


def write_prediction(
    folder: str | Path,
    image_id: str,
    *,
    labels: np.ndarray | None = None,
    mask: np.ndarray | None = None,
    probability: np.ndarray | None = None,
    image: np.ndarray | None = None,
    overlay: bool = False,
    prob_format: str = "npz",
) -> dict:
    """Write one image's prediction files into ``folder`` (layout in the module doc).

    labels: HxW integer (or bool) instance label map, 0 = background, at most 2**31 - 1;
        or mask: HxW bool (or integer 0/1), True = foreground. Exactly one of the two.
    probability: HxW float foreground probability in [0, 1], or None.
    image: HxWx3 uint8 RGB, needed when ``overlay``.
    prob_format: "npz" (float16) or "tif" (float32).
    Returns the image's entry for ``write_index``. Everything is checked before a file is
    written: caller mistakes (shapes, values) are ValueErrors, a bad ``prob_format`` a
    SettingError, an unusable ``image_id`` a SamaugError.
    """
    check_image_id(image_id)
    choice("prob_format", prob_format, PROB_FORMATS)
    if (labels is None) == (mask is None):
        raise ValueError("give exactly one of labels (instance tasks) or mask (binary tasks)")
    decision = _check_decision("labels", labels) if mask is None else _check_decision("mask", mask)
    height, width = decision.shape
    if probability is not None:
        probability = _check_probability(probability, (height, width))
    if overlay:
        _check_image(image, (height, width))

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    files: dict[str, str] = {}
    if labels is not None:
        files["labels"] = _write_labels(folder, image_id, decision)
        objects = int(np.count_nonzero(np.unique(decision)))
    else:
        files["mask"] = _write_png(folder / f"{image_id}.png", decision.astype(np.uint8) * 255)
        objects = _count_regions(decision)
    if probability is not None:
        files["probability"] = _write_probability(folder, image_id, probability, prob_format)
    if overlay:
        files["overlay"] = _write_png(
            folder / f"{image_id}{OVERLAY_SUFFIX}.png", draw_contours(image, decision)
        )
    return {"image_id": image_id, "shape": [height, width], "objects": objects, "files": files}


def output_names(image_id: str, prob_format: str | None = None, overlay: bool = False) -> list[str]:
    """Every file name ``write_prediction`` may write for ``image_id``: the decision as PNG
    or TIFF, the probability in ``prob_format`` (None: none), the overlay when ``overlay``."""
    names = [f"{image_id}.png", f"{image_id}.tif"]
    if prob_format == "tif":
        names.append(f"{image_id}{PROBABILITY_SUFFIX}.tif")
    elif prob_format is not None:
        names.append(f"{image_id}.npz")
    if overlay:
        names.append(f"{image_id}{OVERLAY_SUFFIX}.png")
    return names


def check_output_names(
    image_ids: list[str], prob_format: str | None = None, overlay: bool = False
) -> None:
    """SettingError when two images would write one file (e.g. ``x``'s overlay and
    ``x_overlay``'s mask are both ``x_overlay.png``; names compared ignoring case, as a
    case-insensitive file system does), naming both images and the file."""
    owners: dict[str, str] = {}
    for image_id in image_ids:
        for name in output_names(image_id, prob_format, overlay):
            other = owners.setdefault(name.lower(), image_id)
            if other != image_id:
                raise SettingError(
                    f"images {other!r} and {image_id!r} would both write {name}; rename one "
                    "of the image files, or leave out the option that writes it (--overlay, "
                    "--probability-format tif)"
                )


def write_index(folder: str | Path, info: dict, entries: list[dict]) -> Path:
    """Write ``predictions.json`` (atomically): ``info`` (a JSON-serialisable dict saying what
    made the predictions) and the entries ``write_prediction`` returned, in the given order.
    """
    ids = [entry["image_id"] for entry in entries]
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise ValueError(f"image IDs with more than one entry: {', '.join(repeated)}")
    path = Path(folder) / INDEX_NAME
    index = {"layout": LAYOUT, "version": LAYOUT_VERSION, "made_by": info, "images": entries}
    atomic_write_json(path, index)
    return path


def read_index(folder: str | Path) -> dict:
    """The ``predictions.json`` of ``folder``; InputError naming it when absent, not one
    (``INDEX_SCHEMA``, within the bounds of ``precompute.received``), or listing a name
    that is no prediction file of the folder (``.``, ``..``, a path, the index itself)."""
    path = Path(folder) / INDEX_NAME
    index = read_json_file(path)
    if not isinstance(index, dict) or index.get("layout") != LAYOUT:
        raise InputError(f"{path}: not a samaug prediction index (no layout {LAYOUT!r})")
    if index.get("version") != LAYOUT_VERSION:
        raise InputError(
            f"{path}: prediction layout version {index.get('version')!r}; this samaug reads "
            f"version {LAYOUT_VERSION}"
        )
    check_schema(index, INDEX_SCHEMA, str(path))
    for entry in index["images"]:
        for name in entry["files"].values():
            if not _is_file_name(name):
                raise InputError(
                    f"{path}: lists {name!r}, which is no file name of a prediction in this "
                    "folder; not an index samaug wrote"
                )
    return index


def prepare_folder(folder: str | Path) -> Path:
    """Make ``folder`` ready for a prediction run, before any work, and return it.

    A missing folder is created. A folder holding a previous run's ``predictions.json``
    loses the files that index lists (and the index), so no stale prediction outlives the
    new run; files it does not list are left alone. The index is checked whole first
    (``read_index``; every name it lists a file, not a folder) and nothing is deleted if it
    is not one samaug wrote. Any other non-empty folder, or a file, is a SettingError naming
    it: predictions never mix with files samaug did not write.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise SettingError(f"{folder} is a file; give a folder for the predictions")
    if not folder.exists():
        folder.mkdir(parents=True)
        return folder
    if (folder / INDEX_NAME).exists():
        listed = [
            folder / name
            for entry in read_index(folder)["images"]
            for name in entry["files"].values()
        ]
        for path in listed:
            if path.is_dir() and not path.is_symlink():
                raise SettingError(
                    f"{path}: listed in {folder / INDEX_NAME} as a prediction file, but a "
                    "folder; nothing was removed: give another --out, or remove the index"
                )
        for path in listed:
            path.unlink(missing_ok=True)
        (folder / INDEX_NAME).unlink()
        return folder
    others = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
    if others:
        raise SettingError(
            f"{folder} holds other files ({', '.join(others[:3])}{', ...' if others[3:] else ''}"
            "); give an empty folder or one that samaug predict wrote"
        )
    return folder


def draw_contours(image: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """HxWx3 uint8 copy of ``image`` with the inner boundary of every object of ``labels``
    (HxW integer or bool, 0 = background) set to ``OVERLAY_COLOUR``."""
    from skimage.segmentation import find_boundaries

    out = image.copy()
    out[find_boundaries(labels, mode="inner")] = OVERLAY_COLOUR
    return out


def _check_decision(name: str, array: np.ndarray) -> np.ndarray:
    """``labels`` as given, or ``mask`` as bool; ValueError if not HxW integers in range."""
    array = np.asarray(array)
    if array.ndim != 2 or not (array.dtype == bool or np.issubdtype(array.dtype, np.integer)):
        raise ValueError(f"{name} must be an HxW integer array, not {array.dtype} {array.shape}")
    top = 1 if name == "mask" else MAX_LABEL
    low, high = (int(array.min()), int(array.max())) if array.size else (0, 0)
    if low < 0 or high > top:
        raise ValueError(f"{name} values {low}..{high} are outside 0..{top}")
    return array.astype(bool) if name == "mask" else array


def _check_probability(probability: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    probability = np.asarray(probability)
    if probability.shape != shape or not np.issubdtype(probability.dtype, np.floating):
        raise ValueError(
            f"probability must be a float array of shape {shape}, not "
            f"{probability.dtype} {probability.shape}"
        )
    if not (np.isfinite(probability).all() and probability.min() >= 0 and probability.max() <= 1):
        raise ValueError("probability values must be finite and in [0, 1]")
    return probability


def _check_image(image: np.ndarray | None, shape: tuple[int, int]) -> None:
    if image is None:
        raise ValueError("an overlay needs the image")
    if image.shape != (*shape, 3) or image.dtype != np.uint8:
        raise ValueError(
            f"image must be {shape[0]}x{shape[1]}x3 uint8, not {image.dtype} {image.shape}"
        )


def _write_labels(folder: Path, image_id: str, labels: np.ndarray) -> str:
    if labels.size == 0 or int(labels.max()) <= PNG_MAX_LABEL:
        return _write_png(folder / f"{image_id}.png", labels.astype(np.uint16))
    return _write_tiff(folder / f"{image_id}.tif", labels.astype(np.uint32))


def _write_probability(folder: Path, image_id: str, probability: np.ndarray, fmt: str) -> str:
    if fmt == "tif":
        path = folder / f"{image_id}{PROBABILITY_SUFFIX}.tif"
        return _write_tiff(path, probability.astype(np.float32))
    path = folder / f"{image_id}.npz"
    values = probability.astype(np.float16)
    atomic_save(path, lambda f: np.savez_compressed(f, **{PROBABILITY_KEY: values}))
    return path.name


def _write_png(path: Path, pixels: np.ndarray) -> str:
    """uint8 HxW (gray), uint16 HxW (16-bit gray) or uint8 HxWx3 (RGB) as a PNG."""
    with atomic_file(path) as f:
        Image.fromarray(pixels).save(f, format="PNG")
    return path.name


def _write_tiff(path: Path, pixels: np.ndarray) -> str:
    buffer = io.BytesIO()  # tifffile wants a named file or a BytesIO, not a bare descriptor
    tifffile.imwrite(buffer, pixels, compression="zlib")
    atomic_write_bytes(path, buffer.getvalue())
    return path.name


def _count_regions(mask: np.ndarray) -> int:
    from scipy import ndimage

    return int(ndimage.label(mask, structure=np.ones((3, 3), bool))[1])


def _is_file_name(name: str) -> bool:
    """Whether ``name`` can be a prediction file of the folder: a plain, visible name."""
    return (
        bool(name)
        and not name.startswith(".")
        and "/" not in name
        and "\\" not in name
        and name != INDEX_NAME
    )
