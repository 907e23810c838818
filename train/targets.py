"""Training targets by task: what a model learns from a stored instance label map.

``instance`` (glas, monuseg): 0 background, 1 object interior, 2 object boundary.
``binary`` (kvasir, polyp, folder): 0 background, 1 foreground.
Pixels outside the image (padding) are ``IGNORE_INDEX``, the default ``ignore_index`` of
``torch.nn.CrossEntropyLoss``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from skimage.segmentation import find_boundaries

from precompute.types import SamaugError

IGNORE_INDEX = -100
BOUNDARY_WIDTH = 2


def instance_target(label: np.ndarray, boundary_width: int = BOUNDARY_WIDTH) -> np.ndarray:
    """Three-class target from an instance label map.

    label: (H, W) integer instance labels, 0 = background.
    Returns (H, W) int64: 0 background, 1 object interior, 2 object boundary.

    The boundary is ``find_boundaries(label, mode="inner")`` (object pixels next to another
    label, background included, so two touching objects are split on both sides) dilated
    ``boundary_width - 1`` times (4-connected) and kept inside the objects: a band
    ``boundary_width`` pixels wide. Two pixels keep nuclei of radius 3-7 px separable with
    an interior left. The boundary stays inside objects, so classes 1 and 2 together are
    exactly ``label > 0``. The image border is not a boundary (skimage reflects there).
    Each pixel depends on the labels within ``boundary_width`` pixels of it, so a window
    read with that margin gives the same target as the whole image, cropped.
    """
    if boundary_width < 1:
        raise ValueError(f"boundary_width must be at least 1, not {boundary_width}")
    foreground = label > 0
    edge = find_boundaries(label, mode="inner")
    if boundary_width > 1:
        edge = ndi.binary_dilation(edge, iterations=boundary_width - 1) & foreground
    target = foreground.astype(np.int64)
    target[edge] = 2
    return target


def binary_target(label: np.ndarray, boundary_width: int = BOUNDARY_WIDTH) -> np.ndarray:
    """(H, W) integer labels -> (H, W) int64: 1 where ``label > 0``, else 0.

    ``boundary_width`` is unused; it is there so every task's target has one signature.
    """
    return (label > 0).astype(np.int64)


@dataclass(frozen=True)
class Task:
    num_classes: int
    target: Callable[[np.ndarray, int], np.ndarray]  # (label, boundary_width) -> target
    needs_context: bool  # whether the target of a pixel depends on its neighbours


_TASKS = {
    "instance": Task(3, instance_target, True),
    "binary": Task(2, binary_target, False),
}
_DATASET_TASKS = {
    "glas": "instance",
    "monuseg": "instance",
    "kvasir": "binary",
    "polyp": "binary",
    "folder": "binary",
}


def task_spec(task: str) -> Task:
    if task not in _TASKS:
        raise ValueError(f"unknown task {task!r}; one of {', '.join(sorted(_TASKS))}")
    return _TASKS[task]


def task_for_dataset(name: str) -> str:
    """The task a dataset reader's data is trained for: "instance" or "binary"."""
    if name not in _DATASET_TASKS:
        raise SamaugError(
            f"no task known for dataset {name!r}; known: {', '.join(sorted(_DATASET_TASKS))}"
            " (or pass the task explicitly)"
        )
    return _DATASET_TASKS[name]


def num_classes(task: str) -> int:
    """Classes of the target (and channels of the model's logits): instance 3, binary 2."""
    return task_spec(task).num_classes
