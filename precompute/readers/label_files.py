"""Folders of ground-truth label files, read by the rules the dataset readers use
(``samaug score --labels DIR --labels-format NAME``).

Each format names a rule: which files of the folder are labels, the image ID of each (its
name made safe by ``precompute.listing.safe_id``, as the readers make IDs), and how one is
decoded into an HxW int32 label map (0 = background):

- ``labels`` (the default): ``<id>.png`` / ``.tif`` / ``.tiff`` / ``.bmp``, integer label maps
  read as stored (``precompute.imageio.read_label``: gray or palette indices, 8 to 32 bits).
  A lossy (JPEG) or colour file has no rule here and is refused, naming the file and the
  format to give: JPEG noise (values 1..127 along every edge) would be scored as objects.
- ``polyp``: ``<id>.jpg`` / ``.png`` / ..., binary masks: 1 where channel 0 >= 128 (the
  ``kvasir`` and ``polyp`` readers' rule for Kvasir-SEG's JPEG masks and PraNet's PNGs).
- ``glas``: ``<id>_anno.bmp``, GlaS's instance maps read as stored (the ``glas`` reader's).
- ``monuseg``: ``<id>.xml``, MoNuSeg's Aperio XML rasterised by the ``monuseg`` reader's
  rules (``aperio.py``) at the size of the image ``<id>.tif`` beside it or in
  ``../Tissue Images/`` (the training zip's layout), else at the size of the prediction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from precompute.imageio import (
    IMAGE_SUFFIXES,
    TIFF_SUFFIXES,
    is_jpeg,
    labels_from_pixels,
    read_mask,
    read_pixels,
    read_size,
    single_channel,
)
from precompute.listing import safe_id
from precompute.readers.aperio import read_aperio_label
from precompute.registry import Registry
from precompute.types import InputError, SamaugError

# (label file, the prediction's (H, W)) -> (HxW int32 labels, warnings naming the file).
ReadFn = Callable[[Path, tuple[int, int]], tuple[np.ndarray, list[str]]]


@dataclass(frozen=True)
class LabelFormat:
    """A rule for a folder of label files.

    suffixes: the file endings it reads (lower case). ending: what follows the image ID in
      a file's stem (``_anno`` for GlaS). read: the decoder. help: one line for the docs.
    """

    suffixes: tuple[str, ...]
    read: ReadFn
    help: str
    ending: str = ""

    def files(self, folder: Path) -> dict[str, Path]:
        """{image ID: file} of the label files in ``folder``; SamaugError for two files of
        one ID (named)."""
        found: dict[str, Path] = {}
        for path in sorted(folder.iterdir()):
            stem = path.stem
            if (
                not path.is_file()
                or path.name.startswith(".")
                or path.suffix.lower() not in self.suffixes
                or not stem.endswith(self.ending)
            ):
                continue
            image_id = safe_id(stem[: len(stem) - len(self.ending)])
            if image_id in found:
                raise SamaugError(
                    f"{found[image_id]} and {path} are both labels of image {image_id!r}; keep one"
                )
            found[image_id] = path
        return found


# The label formats by name (``precompute.registry``).
LABEL_FORMATS: Registry[LabelFormat] = Registry("label format", option="--labels-format")
DEFAULT_LABEL_FORMAT = "labels"


def read_label_file(name: str, path: Path, shape: tuple[int, int]) -> tuple[np.ndarray, list[str]]:
    """Label file ``path`` decoded by format ``name``: (HxW int32 labels, warnings).

    shape: the (H, W) of the prediction it is scored against, for a format whose files do
    not say their size. InputError naming the file when it cannot be read by the rule."""
    return LABEL_FORMATS.get(name).read(Path(path), shape)


def _as_stored(path: Path, shape: tuple[int, int]) -> tuple[np.ndarray, list[str]]:
    hint = (
        "give --labels-format polyp for Kvasir-SEG or PraNet masks (channel 0 >= 128 is "
        "foreground), or save the labels losslessly as integer maps (PNG)"
    )
    if is_jpeg(path):
        raise InputError(
            f"{path}: a JPEG label file (lossy: its noise, values near 0 and 255 along every "
            f"edge, would be scored as objects); {hint}"
        )
    pixels = read_pixels(path, expand_palette=False)
    try:
        channel = single_channel(pixels, path)  # refuses colour: no rule reads it as labels
    except InputError as err:
        raise InputError(f"{err}; {hint}") from None
    return labels_from_pixels(channel, path), []


def _thresholded(path: Path, shape: tuple[int, int]) -> tuple[np.ndarray, list[str]]:
    return read_mask(path, threshold=128), []


def _aperio(path: Path, shape: tuple[int, int]) -> tuple[np.ndarray, list[str]]:
    for folder in (path.parent, path.parent.parent / "Tissue Images"):
        for suffix in TIFF_SUFFIXES:
            image = folder / f"{path.stem}{suffix}"
            if image.is_file():
                return read_aperio_label(path, read_size(image))
    return read_aperio_label(path, shape)


LABEL_FORMATS.add(
    "labels",
    LabelFormat(
        (".png", ".tif", ".tiff", ".bmp", ".jpg", ".jpeg"),
        _as_stored,
        "integer label maps as stored (<id>.png/.tif/.bmp); JPEG and colour files refused",
    ),
)
LABEL_FORMATS.add(
    "polyp",
    LabelFormat(
        IMAGE_SUFFIXES,
        _thresholded,
        "binary masks, channel 0 >= 128 (Kvasir-SEG's masks/, PraNet's mask(s)/)",
    ),
)
LABEL_FORMATS.add(
    "glas",
    LabelFormat((".bmp",), _as_stored, "GlaS's <id>_anno.bmp instance maps", ending="_anno"),
)
LABEL_FORMATS.add(
    "monuseg",
    LabelFormat(
        (".xml",),
        _aperio,
        "MoNuSeg's Aperio <id>.xml, at the size of <id>.tif beside it or in ../Tissue Images/",
    ),
)
