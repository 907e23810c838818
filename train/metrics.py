"""Segmentation metrics for GlaS (glands), MoNuSeg (nuclei) and the polyp benchmarks.

Every function takes ``(gt, pred)`` numpy arrays of the same HxW shape and returns plain
Python floats. A shape mismatch, a wrong dtype or an out-of-range value raises ValueError.

Instance metrics (``aji``, ``aji_plus``, ``pq``/``pq_parts``, ``pixel_f1``,
``glas_object_f1``, ``glas_object_dice``, ``glas_object_hausdorff``) take label maps: any
integer dtype (or bool, read as one object), 0 = background, every other value one object.
Ids may be non-contiguous and above 255; they are relabelled internally to 1..N keeping their
order, never cast to uint8 (the Python ports of the GlaS code cast to uint8, which silently
merges id 256 into the background). Overlaps come from one contingency table of
(gt id, pred id) pixel counts, so no metric loops over pairs of full-frame masks.

Sources followed, including their tie-breaks (ties go to the smaller id):

- ``aji``: Kumar et al. 2017, the MoNuSeg MATLAB/Python code: each gt object takes the pred
  object of largest IoU with it (strict ``>`` over ascending ids); a pred may be taken by
  several gt objects and is then counted in several unions; pred objects taken by no gt
  object and gt objects overlapping no pred object are added to the union.
- ``aji_plus``: hover_net ``get_fast_aji_plus``: one-to-one pairing maximising the summed IoU
  (Munkres), pairs of zero IoU dropped, the unpaired areas of both sides added to the
  union. The assignment runs per connected component of the overlap graph, which gives the
  same optimum as one global assignment; only a tie between two equally good pairings with
  different pixel counts could be broken differently.
- ``pq``/``pq_parts``: hover_net ``get_fast_pq`` with ``match_iou=0.5``: pairs with IoU > 0.5
  (unique by construction), ``dq = TP / (TP + FP/2 + FN/2)``, ``sq`` = mean IoU of the pairs,
  ``pq = dq * sq``. hover_net divides ``sq`` by ``TP + 1e-6``; here it is exact.
- ``glas_object_f1``, ``glas_object_dice``, ``glas_object_hausdorff``: the GlaS 2015 MATLAB code
  (Sirinukunwattana, ``F1score.m``, ``ObjectDice.m``, ``ObjectHausdorff.m``). F1: each pred
  object is matched to the gt object it overlaps most and is a true positive when the overlap
  covers *more than* 50% of that gt object's area; two disjoint pred objects cannot both
  cover more than half of one gt object, so each gt object is matched at most once;
  ``FN = #gt - TP``. Dice/Hausdorff: each object of either side is matched to the object of
  the other side it overlaps most, weighted by its share of its side's foreground area, and
  the two sides are averaged. An object overlapping nothing scores Dice 0; for Hausdorff it
  is matched to the object of the other side at the smallest *Hausdorff* distance (the
  official code, not the smallest point-to-point distance). Hausdorff distances are exact
  Euclidean distances between all pixels of the two objects (distance transforms on the
  pair's bounding box), like the official ``knnsearch`` over pixel coordinates.
- ``glas_parts``/``glas_pooled``: the challenge's scores of a whole test part (its
  evaluation page and Sirinukunwattana et al. 2017 define them over the sets of all
  objects of all images): F1 from TP, FP and FN summed over the images; object Dice and
  Hausdorff with each object weighted by its share of the foreground area of the whole
  part, not of its image. Over one image they equal the three per-image functions.
- ``pixel_f1``: Dice of the binarised foregrounds (hover_net ``get_dice_1``).
- ``polyp_scores``: the PraNet evaluation (``main.m``/``Fmeasure_calu.m``, also used by
  Polyp-PVT): the gt is binarised at > 128, the prediction min-max normalised
  (``mapminmax``); ``mean_dice``/``mean_iou`` average Dice/IoU of ``pred >= k/255`` over the
  256 thresholds k = 0..255, with the same 8-bit quantisation as PySODMetrics' dynamic
  curves. ``s_measure``, ``mean_e_measure``/``max_e_measure`` (over the same 256 thresholds),
  ``weighted_f`` and ``mae`` are PySODMetrics' ``Smeasure``, ``Emeasure``,
  ``WeightedFmeasure`` and ``MAE`` on the uint8 prediction and the 0/255 gt. ``dice`` is the
  Dice of the *un-normalised* probability ``>= 0.5``: the mask the model would output.

Edge cases (each is tested):

==============================  ====================================  ==============
case                            F1, Dice, AJI, AJI+, PQ, polyp Dice    Hausdorff
==============================  ====================================  ==============
gt and pred both empty          1.0                                   0.0
only one of them empty          0.0                                   inf
==============================  ====================================  ==============

For ``mean_dice``/``mean_iou`` the rule applies per threshold; threshold 0 marks every pixel,
so an empty gt scores at most 255/256 there, as in PraNet.

What the official code does there: GlaS F1/Dice return 1 and 0 as above and ObjectHausdorff
returns 0 when both are empty; with one side empty it fails (it indexes an empty candidate
list), and inf is what its ``Hausdorff`` helper returns against an empty set. Kumar's AJI and
hover_net's AJI/AJI+ give 0/0 = NaN and hover_net's PQ raises ZeroDivisionError when both are
empty; with one side empty they give 0 as here. The GlaS F1 with no true positive is 0/0 =
NaN in MATLAB and 0.0 here (as the Python ports). PraNet sets Dice and IoU to 0 at a
threshold whenever TP = 0, including when gt and binarised prediction are both empty; here
that one case scores 1.0, every other case is identical.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import astuple, dataclass

import numpy as np
from py_sod_metrics import MAE, Emeasure, Smeasure, WeightedFmeasure
from scipy import ndimage
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

__all__ = [
    "aji",
    "aji_plus",
    "glas_object_dice",
    "glas_object_f1",
    "glas_object_hausdorff",
    "glas_parts",
    "glas_pooled",
    "GlasParts",
    "pixel_f1",
    "polyp_scores",
    "pq",
    "pq_parts",
]

# A dense (gt x pred) count table is used up to this many cells (32 MiB of int64).
_DENSE_TABLE_CELLS = 1 << 22


def _check_pair(gt: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    gt, pred = np.asarray(gt), np.asarray(pred)
    if gt.shape != pred.shape:
        raise ValueError(f"gt has shape {gt.shape} but pred has shape {pred.shape}")
    if gt.ndim != 2:
        raise ValueError(f"expected HxW arrays, got shape {gt.shape}")
    return gt, pred


def _check_labels(name: str, x: np.ndarray) -> np.ndarray:
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


def _relabel(x: np.ndarray) -> tuple[np.ndarray, int]:
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
class _Overlap:
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


def _overlap(gt: np.ndarray, pred: np.ndarray) -> _Overlap:
    gt, pred = _check_pair(gt, pred)
    g, n_gt = _relabel(_check_labels("gt", gt))
    p, n_pred = _relabel(_check_labels("pred", pred))
    both = (g > 0) & (p > 0)
    codes = g[both] * (n_pred + 1) + p[both]
    if (n_gt + 1) * (n_pred + 1) <= _DENSE_TABLE_CELLS:
        table = np.bincount(codes, minlength=(n_gt + 1) * (n_pred + 1))
        codes = np.flatnonzero(table)
        counts = table[codes]
    else:
        codes, counts = np.unique(codes, return_counts=True)
    return _Overlap(
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


def _best_per_gt(ov: _Overlap, score: np.ndarray) -> np.ndarray:
    """For each gt id with an overlap: the pair of largest score, ties to the smaller pred id."""
    return _first_per_group(ov.g, np.lexsort((ov.p, -score, ov.g)))


def _best_per_pred(ov: _Overlap, score: np.ndarray) -> np.ndarray:
    """For each pred id with an overlap: the pair of largest score, ties to the smaller gt id."""
    return _first_per_group(ov.p, np.lexsort((ov.g, -score, ov.p)))


def _aggregated_jaccard(ov: _Overlap, chosen: np.ndarray) -> float:
    inter = ov.inter[chosen].sum()
    union = ov.union[chosen].sum()
    union += ov.gt_area[1:].sum() - ov.gt_area[np.unique(ov.g[chosen])].sum()
    union += ov.pred_area[1:].sum() - ov.pred_area[np.unique(ov.p[chosen])].sum()
    return float(inter / union)


def aji(gt: np.ndarray, pred: np.ndarray) -> float:
    """Aggregated Jaccard Index (Kumar et al. 2017), as the MoNuSeg code.

    gt, pred: HxW integer instance label maps, 0 = background. Returns a float in [0, 1].
    """
    ov = _overlap(gt, pred)
    if ov.n_gt == 0 and ov.n_pred == 0:
        return 1.0
    return _aggregated_jaccard(ov, _best_per_gt(ov, ov.iou))


def _max_iou_pairing(ov: _Overlap) -> np.ndarray:
    """One-to-one pairing maximising the summed IoU; returns indices into the pair arrays."""
    if len(ov.g) == 0:
        return np.zeros(0, np.int64)
    nodes = ov.n_gt + ov.n_pred
    graph = coo_matrix((np.ones(len(ov.g)), (ov.g - 1, ov.n_gt + ov.p - 1)), (nodes, nodes))
    _, component = connected_components(graph, directed=False)
    pair_component = component[ov.g - 1]
    pairs_in = np.bincount(pair_component)
    single = pairs_in[pair_component] == 1
    chosen = [np.flatnonzero(single)]
    iou = ov.iou
    order = np.argsort(pair_component, kind="stable")
    order = order[~single[order]]
    bounds = np.flatnonzero(np.diff(pair_component[order])) + 1
    for idx in np.split(order, bounds) if len(order) else []:
        rows, row_of = np.unique(ov.g[idx], return_inverse=True)
        cols, col_of = np.unique(ov.p[idx], return_inverse=True)
        weight = np.zeros((len(rows), len(cols)))
        weight[row_of, col_of] = iou[idx]
        pair_at = np.full((len(rows), len(cols)), -1, np.int64)
        pair_at[row_of, col_of] = idx
        r, c = linear_sum_assignment(weight, maximize=True)
        picked = pair_at[r, c]
        chosen.append(picked[picked >= 0])
    return np.concatenate(chosen)


def aji_plus(gt: np.ndarray, pred: np.ndarray) -> float:
    """AJI+ (hover_net ``get_fast_aji_plus``): AJI with a one-to-one maximal-IoU pairing.

    gt, pred: HxW integer instance label maps, 0 = background. Returns a float in [0, 1].
    """
    ov = _overlap(gt, pred)
    if ov.n_gt == 0 and ov.n_pred == 0:
        return 1.0
    return _aggregated_jaccard(ov, _max_iou_pairing(ov))


def pq_parts(gt: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """Panoptic quality parts (hover_net ``get_fast_pq``, IoU > 0.5 matching).

    gt, pred: HxW integer instance label maps, 0 = background.
    Returns ``{"dq": ..., "sq": ..., "pq": ...}``, each a float in [0, 1].
    """
    ov = _overlap(gt, pred)
    if ov.n_gt == 0 and ov.n_pred == 0:
        return {"dq": 1.0, "sq": 1.0, "pq": 1.0}
    iou = ov.iou
    matched = iou > 0.5
    tp = int(matched.sum())
    dq = tp / (tp + 0.5 * (ov.n_pred - tp) + 0.5 * (ov.n_gt - tp))
    sq = float(iou[matched].sum() / tp) if tp else 0.0
    return {"dq": dq, "sq": sq, "pq": dq * sq}


def pq(gt: np.ndarray, pred: np.ndarray) -> float:
    """Panoptic quality ``dq * sq``; see ``pq_parts``."""
    return pq_parts(gt, pred)["pq"]


def pixel_f1(gt: np.ndarray, pred: np.ndarray) -> float:
    """F1 (Dice) of the foregrounds ``gt > 0`` and ``pred > 0``; a float in [0, 1].

    gt, pred: HxW integer label maps or bool masks.
    """
    gt, pred = _check_pair(gt, pred)
    g = _check_labels("gt", gt) > 0
    p = _check_labels("pred", pred) > 0
    total = int(g.sum()) + int(p.sum())
    if total == 0:
        return 1.0
    return 2 * int(np.count_nonzero(g & p)) / total


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
    ov = _overlap(gt, pred)
    parts = {"gt_area": int(ov.gt_area[1:].sum()), "pred_area": int(ov.pred_area[1:].sum())}
    if ov.n_gt == 0 or ov.n_pred == 0:
        parts.update(fp=ov.n_pred, fn=ov.n_gt)
        if hausdorff:  # objects of one side with nothing on the other to be matched to
            parts.update(
                hausdorff_gt=math.inf if ov.n_gt else 0.0,
                hausdorff_pred=math.inf if ov.n_pred else 0.0,
            )
        return GlasParts(**parts)
    by_pred = _best_per_pred(ov, ov.inter)
    by_gt = _best_per_gt(ov, ov.inter)
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
    """The GlaS challenge's scores of a test part from its images' GlaSParts: F1 from the
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

    def __init__(self, ov: _Overlap):
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


def _hausdorff_sums(ov: _Overlap) -> tuple[float, float]:
    """Sum over the gt objects, and over the pred objects, of area x Hausdorff distance to
    the matched object (both sides non-empty)."""
    hd = _Hausdorff(ov)
    gt_match = np.zeros(ov.n_gt + 1, np.int64)
    by_gt = _best_per_gt(ov, ov.inter)
    gt_match[ov.g[by_gt]] = ov.p[by_gt]
    pred_match = np.zeros(ov.n_pred + 1, np.int64)
    by_pred = _best_per_pred(ov, ov.inter)
    pred_match[ov.p[by_pred]] = ov.g[by_pred]
    gt_side = sum(
        ov.gt_area[a] * hd(a, int(gt_match[a]) or hd.nearest_pred(a)) for a in range(1, ov.n_gt + 1)
    )
    pred_side = sum(
        ov.pred_area[b] * hd(int(pred_match[b]) or hd.nearest_gt(b), b)
        for b in range(1, ov.n_pred + 1)
    )
    return float(gt_side), float(pred_side)


def _polyp_gt(gt: np.ndarray) -> np.ndarray:
    if gt.dtype == bool:
        return gt
    if not np.issubdtype(gt.dtype, np.integer) or (gt.size and (gt.min() < 0 or gt.max() > 255)):
        raise ValueError(
            f"polyp gt must be a bool mask or a 0/255 integer mask, got dtype {gt.dtype}"
            + (f" with values {gt.min()}..{gt.max()}" if gt.size else "")
        )
    if gt.size and gt.max() == 1:
        raise ValueError("polyp gt looks like a 0/1 mask; pass gt.astype(bool) or 0/255")
    return gt > 128


def _polyp_pred(pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Returns the uint8 0..255 prediction and the probability map it stands for."""
    if pred.dtype == bool:
        return pred.astype(np.uint8) * 255, pred
    if np.issubdtype(pred.dtype, np.floating):
        if not np.isfinite(pred).all():
            raise ValueError("polyp pred contains NaN or inf")
        if pred.size and (pred.min() < 0 or pred.max() > 1):
            raise ValueError(
                f"polyp pred of dtype {pred.dtype} must be a probability map in [0, 1], "
                f"got values {pred.min()}..{pred.max()}"
            )
        return np.rint(pred * 255).astype(np.uint8), pred
    if np.issubdtype(pred.dtype, np.integer):
        if pred.size and (pred.min() < 0 or pred.max() > 255):
            raise ValueError(
                f"polyp pred of dtype {pred.dtype} must hold 0..255, got {pred.min()}..{pred.max()}"
            )
        if pred.size and pred.max() == 1:
            raise ValueError("polyp pred looks like a 0/1 mask; pass it as bool, float or 0..255")
        return pred.astype(np.uint8), pred / 255
    raise ValueError(f"polyp pred must be a float, integer or bool array, got dtype {pred.dtype}")


def _dice_iou_sweep(pred_u8: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dice and IoU of ``normalised pred >= k/255`` for k = 255..0, as PraNet's sweep."""
    norm = pred_u8 / 255
    if norm.max() != norm.min():
        norm = (norm - norm.min()) / (norm.max() - norm.min())
    # The same truncation to 8-bit levels as PySODMetrics' dynamic curves.
    levels = (norm * 255).astype(np.uint8)
    tp = np.cumsum(np.bincount(levels[gt], minlength=256)[::-1])
    fp = np.cumsum(np.bincount(levels[~gt], minlength=256)[::-1])
    fn = int(gt.sum()) - tp
    dice_den, iou_den = 2 * tp + fp + fn, tp + fp + fn
    dice = np.where(dice_den > 0, 2 * tp / np.maximum(dice_den, 1), 1.0)
    iou = np.where(iou_den > 0, tp / np.maximum(iou_den, 1), 1.0)
    return dice, iou


def polyp_scores(gt: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """Polyp benchmark scores of one image (PraNet / Polyp-PVT evaluation).

    gt: HxW bool mask, or integer 0/255 mask (binarised at > 128).
    pred: HxW probability map, float in [0, 1], or integer 0..255 levels, or bool.
    Returns a dict of floats: ``mean_dice``, ``mean_iou`` (256-threshold sweep), ``dice`` (at
    probability 0.5), ``s_measure``, ``mean_e_measure``, ``max_e_measure``, ``weighted_f``,
    ``mae``. Dataset scores are the means of these over images.
    """
    gt, pred = _check_pair(gt, pred)
    gt_mask = _polyp_gt(gt)
    pred_u8, prob = _polyp_pred(pred)
    gt_u8 = gt_mask.astype(np.uint8) * 255

    s_measure, e_measure, weighted_f, mae = Smeasure(), Emeasure(), WeightedFmeasure(), MAE()
    for metric in (s_measure, e_measure, weighted_f, mae):
        metric.step(pred_u8, gt_u8)
    e_curve = e_measure.get_results()["em"]["curve"]

    dice_curve, iou_curve = _dice_iou_sweep(pred_u8, gt_mask)
    binary = prob >= 0.5
    total = int(gt_mask.sum()) + int(binary.sum())
    dice = 2 * int(np.count_nonzero(binary & gt_mask)) / total if total else 1.0
    return {
        "mean_dice": float(dice_curve.mean()),
        "mean_iou": float(iou_curve.mean()),
        "dice": dice,
        "s_measure": float(s_measure.get_results()["sm"]),
        "mean_e_measure": float(e_curve.mean()),
        "max_e_measure": float(e_curve.max()),
        "weighted_f": float(weighted_f.get_results()["wfm"]),
        "mae": float(mae.get_results()["mae"]),
    }
