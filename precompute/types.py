"""Plain data passed between readers, maskers, priors and the store."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np


class SamaugError(Exception):
    """A problem the user can fix: the message names the file or value and what to do.

    The CLI turns it into a one-line message and exit code 1.
    """


class InputError(SamaugError):
    """An input file (image or annotation) that cannot be read or is malformed."""


class NotInStoreError(SamaugError, KeyError):
    """An image, or an array of one, that the store does not hold (also a KeyError)."""

    def __str__(self) -> str:  # KeyError's would quote the message
        return str(self.args[0]) if self.args else ""


class SettingError(SamaugError, ValueError):
    """An option or setting with a value that cannot be used (also a ValueError)."""


# Image IDs (store_schema.md): safe as a file name and a Zarr key on any file system. Names
# Zarr gives a meaning to inside a group are reserved: its metadata file ``zarr.json`` (and
# v2's ``.zarray``/``.zgroup``/``.zattrs``, excluded by the leading-dot rule), and any name
# starting with "__" (reserved by the Zarr v3 spec). Compared ignoring case, since a store
# may live on a case-insensitive file system.
IMAGE_ID_PATTERN = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")
RESERVED_IDS = frozenset({"zarr.json"})
MAX_ID_LENGTH = 200


def image_id_problem(image_id: object) -> str | None:
    """Why ``image_id`` cannot be an image ID, or None if it can."""
    if not isinstance(image_id, str):
        return f"image ID {image_id!r} is not a string"
    if not IMAGE_ID_PATTERN.fullmatch(image_id):
        return (
            f"image ID {image_id!r} must be letters, digits, '.', '_' and '-', "
            "not starting with '.'"
        )
    if image_id.lower() in RESERVED_IDS or image_id.startswith("__"):
        return f"image ID {image_id!r} is a name Zarr reserves (zarr.json, or starting with '__')"
    if len(image_id) > MAX_ID_LENGTH:
        return f"image ID {image_id[:20]!r}... is longer than {MAX_ID_LENGTH} characters"
    return None


def check_image_id(image_id: object) -> str:
    """``image_id`` if it is a valid image ID (see ``image_id_problem``), else SamaugError."""
    problem = image_id_problem(image_id)
    if problem:
        raise SamaugError(problem)
    return image_id  # type: ignore[return-value]


@dataclass(frozen=True)
class ImageRef:
    """Where one image (and its annotation) lives, before it is read.

    image_id: stable, unique within the dataset, safe as a zarr key.
    split: e.g. "train", "test", "testA".
    image_path / label_path: files on disk; label_path None when unannotated.
    """

    image_id: str
    split: str
    image_path: str
    label_path: str | None = None


@dataclass
class Record:
    """One decoded image.

    image: HxWx3 uint8 RGB. label: HxW int32 instance label map (0 = background) or None.
    source: the files read, relative to the data root. warnings: problems the reader worked
    around (e.g. an annotation polygon left out), one line each, naming the file.
    """

    image_id: str
    split: str
    image: np.ndarray
    label: np.ndarray | None
    source: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


@dataclass
class MaskSet:
    """The masks one masker produced for one image, all in the image's pixel frame.

    masks: (N, H, W) bool.
    stability_score: (N,) float32 in [0, 1] (0 for a mask whose low-threshold union is empty).
    predicted_iou: (N,) float32, the masker's own quality estimate.
    box: (N, 4) int32 XYXY, inclusive pixel indices (x0, y0, x1, y1) as SAM's
        ``batched_mask_to_box``; all zeros for an empty mask.
    point: (N, 2) float32 XY pixel coordinates of the prompt that produced the mask
        (the region centroid for maskers without prompts).
    area: (N,) int64 pixel count.
    """

    masks: np.ndarray
    stability_score: np.ndarray
    predicted_iou: np.ndarray
    box: np.ndarray
    point: np.ndarray
    area: np.ndarray

    def __len__(self) -> int:
        return int(self.masks.shape[0])

    @staticmethod
    def empty(height: int, width: int) -> MaskSet:
        return MaskSet(
            masks=np.zeros((0, height, width), bool),
            stability_score=np.zeros(0, np.float32),
            predicted_iou=np.zeros(0, np.float32),
            box=np.zeros((0, 4), np.int32),
            point=np.zeros((0, 2), np.float32),
            area=np.zeros(0, np.int64),
        )

    def packed(self) -> np.ndarray:
        """The masks bit-packed as the store keeps them: (N, H, ceil(W / 8)) uint8."""
        return np.packbits(self.masks, axis=-1)

    def per_mask(self) -> dict[str, np.ndarray]:
        """The per-mask arrays by their store names."""
        return {
            "stability_score": self.stability_score,
            "predicted_iou": self.predicted_iou,
            "box": self.box,
            "point": self.point,
            "area": self.area,
        }


@dataclass
class PackedMaskSet:
    """A MaskSet whose masks are held bit-packed, as the store keeps them: what a masker
    that post-processes on a GPU copies back (an eighth of the bytes).

    bits: (N, H, ceil(W / 8)) uint8, ``np.packbits(masks, axis=-1)``. width: W. The other
    fields as MaskSet's; ``masks`` unpacks (N, H, W) bool on use.
    """

    bits: np.ndarray
    width: int
    stability_score: np.ndarray
    predicted_iou: np.ndarray
    box: np.ndarray
    point: np.ndarray
    area: np.ndarray

    def __len__(self) -> int:
        return int(self.bits.shape[0])

    @property
    def masks(self) -> np.ndarray:
        return np.unpackbits(self.bits, axis=-1, count=self.width).view(bool)

    def packed(self) -> np.ndarray:
        return self.bits

    per_mask = MaskSet.per_mask


@dataclass
class Masked:
    """One image's masks and both priors, from a masker that derives the priors itself.

    masks: a MaskSet or PackedMaskSet. seg_prior: (H, W) float32. boundary_prior: (H, W)
    uint8 in {0, 1} (``precompute.priors``' definitions). seconds: the masker's time by
    phase.
    """

    masks: MaskSet | PackedMaskSet
    seg_prior: np.ndarray
    boundary_prior: np.ndarray
    seconds: dict[str, float] = field(default_factory=dict)
