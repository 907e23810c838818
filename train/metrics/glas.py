"""GlaS object metrics: F1, object Dice and object Hausdorff, per image and pooled over a
test part."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import astuple, dataclass

import numpy as np
from scipy import ndimage

from train.metrics._labels import OverlapTable, best_per_gt, best_per_pred, overlap_table


@dataclass(frozen=True)
class GlasParts:
    """One image's share of the GlaS object metrics, to pool over a test part.

    tp, fp, fn: object counts of the F1 rule. gt_area, pred_area: foreground pixels of each
    side. dice_gt / dice_pred: the sum over that side's objects of area x Dice with its
    match; hausdorff_gt / hausdorff_pred: the same with the Hausdorff distance (inf when the
    other side of the image has no object).
    """

    tp: int = 0
    fp: int = 0
    fn: int = 0
    gt_area: int = 0
    pred_area: int = 0
    dice_gt: float = 0.0
    dice_pred: float = 0.0
    hausdorff_gt: float = 0.0
    hausdorff_pred: float = 0.0

    def __add__(self, other: GlasParts) -> GlasParts:
        return GlasParts(*(a + b for a, b in zip(astuple(self), astuple(other), strict=True)))


def glas_parts(gt: np.ndarray, pred: np.ndarray, hausdorff: bool = True) -> GlasParts:
    """The GlaS counts and area-weighted sums of one image (hausdorff=False: those left 0)."""
    ov = overlap_table(gt, pred)
    parts = {"gt_area": int(ov.gt_area[1:].sum()), "pred_area": int(ov.pred_area[1:].sum())}
    if ov.n_gt == 0 or ov.n_pred == 0:
        parts.update(fp=ov.n_pred, fn=ov.n_gt)
        if hausdorff:  # objects of one side with nothing on the other to be matched to
            parts.update(
                hausdorff_gt=math.inf if ov.n_gt else 0.0,
                hausdorff_pred=math.inf if ov.n_pred else 0.0,
            )
        return GlasParts(**parts)
    by_pred = best_per_pred(ov, ov.inter)
    by_gt = best_per_gt(ov, ov.inter)
    tp = int(np.count_nonzero(2 * ov.inter[by_pred] > ov.gt_area[ov.g[by_pred]]))
    dice = 2 * ov.inter / (ov.gt_area[ov.g] + ov.pred_area[ov.p])
    parts.update(
        tp=tp,
        fp=ov.n_pred - tp,
        fn=ov.n_gt - tp,
        dice_gt=float((ov.gt_area[ov.g[by_gt]] * dice[by_gt]).sum()),
        dice_pred=float((ov.pred_area[ov.p[by_pred]] * dice[by_pred]).sum()),
    )
    if hausdorff:
        parts.update(zip(("hausdorff_gt", "hausdorff_pred"), _hausdorff_sums(ov), strict=True))
    return GlasParts(**parts)


def glas_pooled(parts: Iterable[GlasParts]) -> dict[str, float]:
    """The GlaS challenge's scores of a test part from its images. GlasParts: F1 from the
    pooled counts, object Dice and Hausdorff weighted by each object's share of the
    foreground area of the whole part (the challenge's definition, not a mean of per-image
    scores). Keys: object_f1, object_dice, object_hausdorff."""
    total = sum(parts, GlasParts())
    return {
        "object_f1": _f1(total),
        "object_dice": _two_sided(total, total.dice_gt, total.dice_pred, empty=(1.0, 0.0)),
        "object_hausdorff": _two_sided(
            total, total.hausdorff_gt, total.hausdorff_pred, empty=(0.0, math.inf)
        ),
    }


def _f1(p: GlasParts) -> float:
    if p.tp + p.fp + p.fn == 0:
        return 1.0
    return 2 * p.tp / (2 * p.tp + p.fp + p.fn)


def _two_sided(p: GlasParts, gt_sum: float, pred_sum: float, empty: tuple[float, float]):
    """Mean of the two sides' area-weighted averages; empty = (both sides empty, one)."""
    if p.gt_area == 0 and p.pred_area == 0:
        return empty[0]
    if p.gt_area == 0 or p.pred_area == 0:
        return empty[1]
    return float(gt_sum / p.gt_area + pred_sum / p.pred_area) / 2


def glas_object_f1(gt: np.ndarray, pred: np.ndarray) -> float:
    """GlaS object-level F1 (``F1score.m``) of one image.

    gt, pred: HxW integer instance label maps, 0 = background. Returns a float in [0, 1].
    """
    return _f1(glas_parts(gt, pred, hausdorff=False))


def glas_object_dice(gt: np.ndarray, pred: np.ndarray) -> float:
    """GlaS object-level Dice (``ObjectDice.m``) of one image, area-weighted both ways.

    gt, pred: HxW integer instance label maps, 0 = background. Returns a float in [0, 1].
    """
    p = glas_parts(gt, pred, hausdorff=False)
    return _two_sided(p, p.dice_gt, p.dice_pred, empty=(1.0, 0.0))


class _Hausdorff:
    """Exact pixel Hausdorff distances between gt object a and pred object b, cached."""

    def __init__(self, ov: OverlapTable):
        self._g = ov.g_map.reshape(ov.shape)
        self._p = ov.p_map.reshape(ov.shape)
        self.g_box = _boxes(self._g, ov.n_gt)
        self.p_box = _boxes(self._p, ov.n_pred)
        self._cache: dict[tuple[int, int], float] = {}

    def __call__(self, a: int, b: int) -> float:
        if (a, b) not in self._cache:
            lo = np.minimum(self.g_box[a, :2], self.p_box[b, :2])
            hi = np.maximum(self.g_box[a, 2:], self.p_box[b, 2:])
            window = (slice(lo[0], hi[0]), slice(lo[1], hi[1]))
            in_a = self._g[window] == a
            in_b = self._p[window] == b
            # Both objects lie inside the window, so distances to them are exact there.
            to_a = ndimage.distance_transform_edt(~in_a)
            to_b = ndimage.distance_transform_edt(~in_b)
            self._cache[a, b] = float(max(to_b[in_a].max(), to_a[in_b].max()))
        return self._cache[a, b]

    def nearest_pred(self, a: int) -> int:
        return self._nearest(self.g_box[a], self.p_box, lambda b: self(a, b))

    def nearest_gt(self, b: int) -> int:
        return self._nearest(self.p_box[b], self.g_box, lambda a: self(a, b))

    @staticmethod
    def _nearest(box: np.ndarray, others: np.ndarray, distance) -> int:
        """Id of the object of smallest Hausdorff distance, ties to the smaller id.

        The largest gap between matching bounding-box sides is a lower bound of the
        Hausdorff distance (the extreme pixel on that side is at least that far from every
        pixel of the other object), so candidates are visited by bound and most are skipped.
        """
        bound = np.abs(others[1:] - box).max(axis=1)
        best, best_id = np.inf, -1
        for i in np.lexsort((np.arange(len(bound)), bound)):
            if bound[i] > best:
                break
            d = distance(int(i) + 1)
            if d < best or (d == best and i + 1 < best_id):
                best, best_id = d, int(i) + 1
        return best_id


def _boxes(labels: np.ndarray, n: int) -> np.ndarray:
    """(n + 1, 4) int64 boxes [row0, col0, row1, col1) per id; row 0 unused."""
    boxes = np.zeros((n + 1, 4), np.int64)
    for i, sl in enumerate(ndimage.find_objects(labels, max_label=n), start=1):
        boxes[i] = (sl[0].start, sl[1].start, sl[0].stop, sl[1].stop)
    return boxes


def glas_object_hausdorff(gt: np.ndarray, pred: np.ndarray) -> float:
    """GlaS object-level Hausdorff distance in pixels (``ObjectHausdorff.m``) of one image.

    gt, pred: HxW integer instance label maps, 0 = background. Returns a float >= 0,
    0.0 when both are empty and inf when exactly one is.
    """
    p = glas_parts(gt, pred)
    return _two_sided(p, p.hausdorff_gt, p.hausdorff_pred, empty=(0.0, math.inf))


def _hausdorff_sums(ov: OverlapTable) -> tuple[float, float]:
    """Sum over the gt objects, and over the pred objects, of area x Hausdorff distance to
    the matched object (both sides non-empty)."""
    hd = _Hausdorff(ov)
    gt_match = np.zeros(ov.n_gt + 1, np.int64)
    by_gt = best_per_gt(ov, ov.inter)
    gt_match[ov.g[by_gt]] = ov.p[by_gt]
    pred_match = np.zeros(ov.n_pred + 1, np.int64)
    by_pred = best_per_pred(ov, ov.inter)
    pred_match[ov.p[by_pred]] = ov.g[by_pred]
    gt_side = sum(
        ov.gt_area[a] * hd(a, int(gt_match[a]) or hd.nearest_pred(a)) for a in range(1, ov.n_gt + 1)
    )
    pred_side = sum(
        ov.pred_area[b] * hd(int(pred_match[b]) or hd.nearest_gt(b), b)
        for b in range(1, ov.n_pred + 1)
    )
    return float(gt_side), float(pred_side)
