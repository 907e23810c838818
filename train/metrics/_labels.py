"""Label-map checks and the (gt id, pred id) overlap table every instance metric uses."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# A dense (gt x pred) count table is used up to this many cells (32 MiB of int64).
_DENSE_TABLE_CELLS = 1 << 22


def check_pair(gt: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    gt, pred = np.asarray(gt), np.asarray(pred)
    if gt.shape != pred.shape:
        raise ValueError(f"gt has shape {gt.shape} but pred has shape {pred.shape}")
    if gt.ndim != 2:
        raise ValueError(f"expected HxW arrays, got shape {gt.shape}")
    return gt, pred


def check_labels(name: str, x: np.ndarray) -> np.ndarray:
    if x.dtype == bool:
        return x.astype(np.uint8)
    if not np.issubdtype(x.dtype, np.integer):
        raise ValueError(
            f"{name} must be an integer label map (0 = background), got dtype {x.dtype}; "
            "label a binary mask first, e.g. with skimage.measure.label"
        )
    if x.size and x.min() < 0:
        raise ValueError(f"{name} has negative label {x.min()}; labels must be >= 0")
    return x


def relabel(x: np.ndarray) -> tuple[np.ndarray, int]:
    """Map the ids of a label map to 1..n in increasing order (0 stays 0); flat int64."""
    flat = x.ravel()
    top = int(flat.max()) if flat.size else 0
    if top <= 4 * flat.size + 1024:
        present = np.bincount(flat.astype(np.intp, copy=False), minlength=top + 1) > 0
        present[0] = False
        lut = np.cumsum(present, dtype=np.int64)
        return lut[flat], int(lut[-1])
    ids, inverse = np.unique(flat, return_inverse=True)
    has_background = ids[0] == 0
    return inverse.reshape(-1).astype(np.int64) + (not has_background), int(
        len(ids) - has_background
    )


@dataclass(frozen=True)
class OverlapTable:
    """Pixel counts of a pair of relabelled maps; pair arrays are sorted by (g, p)."""

    shape: tuple[int, ...]
    g_map: np.ndarray  # flat gt labels 0..n_gt
    p_map: np.ndarray  # flat pred labels 0..n_pred
    gt_area: np.ndarray  # (n_gt + 1,) pixel count per id, [0] = background
    pred_area: np.ndarray  # (n_pred + 1,)
    g: np.ndarray  # (K,) gt id of each overlapping (gt, pred) pair
    p: np.ndarray  # (K,) pred id
    inter: np.ndarray  # (K,) intersection pixel count, > 0

    @property
    def n_gt(self) -> int:
        return len(self.gt_area) - 1

    @property
    def n_pred(self) -> int:
        return len(self.pred_area) - 1

    @property
    def union(self) -> np.ndarray:
        return self.gt_area[self.g] + self.pred_area[self.p] - self.inter

    @property
    def iou(self) -> np.ndarray:
        return self.inter / self.union


def overlap_table(gt: np.ndarray, pred: np.ndarray) -> OverlapTable:
    gt, pred = check_pair(gt, pred)
    g, n_gt = relabel(check_labels("gt", gt))
    p, n_pred = relabel(check_labels("pred", pred))
    both = (g > 0) & (p > 0)
    codes = g[both] * (n_pred + 1) + p[both]
    if (n_gt + 1) * (n_pred + 1) <= _DENSE_TABLE_CELLS:
        table = np.bincount(codes, minlength=(n_gt + 1) * (n_pred + 1))
        codes = np.flatnonzero(table)
        counts = table[codes]
    else:
        codes, counts = np.unique(codes, return_counts=True)
    return OverlapTable(
        shape=gt.shape,
        g_map=g,
        p_map=p,
        gt_area=np.bincount(g, minlength=n_gt + 1),
        pred_area=np.bincount(p, minlength=n_pred + 1),
        g=codes // (n_pred + 1),
        p=codes % (n_pred + 1),
        inter=counts.astype(np.int64),
    )


def _first_per_group(group: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Indices (into the pair arrays) of the first pair of each group along ``order``."""
    sorted_group = group[order]
    keep = np.ones(len(order), bool)
    keep[1:] = sorted_group[1:] != sorted_group[:-1]
    return order[keep]


def best_per_gt(ov: OverlapTable, score: np.ndarray) -> np.ndarray:
    """For each gt id with an overlap: the pair of largest score, ties to the smaller pred id."""
    return _first_per_group(ov.g, np.lexsort((ov.p, -score, ov.g)))


def best_per_pred(ov: OverlapTable, score: np.ndarray) -> np.ndarray:
    """For each pred id with an overlap: the pair of largest score, ties to the smaller gt id."""
    return _first_per_group(ov.p, np.lexsort((ov.g, -score, ov.p)))
