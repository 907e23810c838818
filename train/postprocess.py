"""Probability maps to masks: binary masks and instance label maps.

Instance segmentation (glands, nuclei) is trained as three classes, background / interior /
boundary (channels 0, 1, 2). ``instances_from_probs`` turns their probabilities into a label
map: interior components are the seeds, and a watershed grows them over the predicted
foreground, so two touching objects whose interiors are kept apart by a predicted boundary
band come out as two objects that together cover the foreground.

Label maps are HxW int32, 0 = background, objects 1..N (contiguous); never uint8, since an
image of nuclei often holds more than 255 objects.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.segmentation import watershed

# 4-connectivity for seeds and for the watershed: two interiors that touch only at a corner
# through a thin diagonal boundary band stay two objects.
_FOUR_CONNECTED = ndimage.generate_binary_structure(2, 1)


def binary_from_probs(p_fg: np.ndarray, thresh: float = 0.5) -> np.ndarray:
    """Binary mask of a foreground probability map.

    ``p_fg``: HxW float in [0, 1]. Returns HxW uint8, 1 where ``p_fg >= thresh`` (the same
    rule as the ``dice`` of ``train.metrics.polyp_scores``), else 0.
    """
    p_fg = np.asarray(p_fg)
    if p_fg.ndim != 2:
        raise ValueError(f"p_fg must be an HxW map, got shape {p_fg.shape}")
    return (p_fg >= thresh).astype(np.uint8)


def instances_from_probs(
    probs: np.ndarray,
    min_size: int = 10,
    interior_thresh: float = 0.5,
    fg_thresh: float = 0.5,
) -> np.ndarray:
    """Instance label map from background/interior/boundary probabilities.

    Arguments:
      probs: 3xHxW float in [0, 1], channels (background, interior, boundary), e.g. a softmax.
      min_size: objects of fewer pixels (after growing) are removed, set to background.
      interior_thresh: seeds are the 4-connected components of ``interior > interior_thresh``
        inside the foreground.
      fg_thresh: the foreground is ``1 - background > fg_thresh`` (interior + boundary for a
        softmax output).

    The seeds are grown by a watershed on ``-interior`` restricted to the foreground, so
    two seeds meet where the interior probability is lowest (in the boundary band).
    Foreground components holding no seed stay background: without interior evidence there
    is no object to grow. Labels are renumbered 1..N in raster order of the seeds.

    Returns HxW int32, 0 = background, objects 1..N.
    """
    probs = np.asarray(probs)
    if probs.ndim != 3 or probs.shape[0] != 3:
        raise ValueError(
            f"probs must be 3xHxW (background, interior, boundary), got shape {probs.shape}"
        )
    if min_size < 0:
        raise ValueError(f"min_size must be >= 0, got {min_size}")
    interior = probs[1].astype(np.float64)
    foreground = (1.0 - probs[0]) > fg_thresh
    seeds, n = ndimage.label((interior > interior_thresh) & foreground, _FOUR_CONNECTED)
    if n == 0:
        return np.zeros(foreground.shape, np.int32)
    labels = watershed(-interior, seeds.astype(np.int32), mask=foreground, connectivity=1)

    # One lookup table both drops small objects and renumbers the rest 1..N in order.
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    keep = sizes >= min_size
    keep[0] = False
    lut = np.zeros(n + 1, np.int32)
    lut[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
    return lut[labels]


__all__ = ["binary_from_probs", "instances_from_probs"]
