"""Nuclei instance metrics (MoNuSeg): AJI, AJI+, PQ and pixel F1."""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from train.metrics._labels import OverlapTable, best_per_gt, check_labels, check_pair, overlap_table


def _aggregated_jaccard(ov: OverlapTable, chosen: np.ndarray) -> float:
    inter = ov.inter[chosen].sum()
    union = ov.union[chosen].sum()
    union += ov.gt_area[1:].sum() - ov.gt_area[np.unique(ov.g[chosen])].sum()
    union += ov.pred_area[1:].sum() - ov.pred_area[np.unique(ov.p[chosen])].sum()
    return float(inter / union)


def aji(gt: np.ndarray, pred: np.ndarray) -> float:
    """Aggregated Jaccard Index (Kumar et al. 2017), as the MoNuSeg code.

    gt, pred: HxW integer instance label maps, 0 = background. Returns a float in [0, 1].
    """
    ov = overlap_table(gt, pred)
    if ov.n_gt == 0 and ov.n_pred == 0:
        return 1.0
    return _aggregated_jaccard(ov, best_per_gt(ov, ov.iou))


def _max_iou_pairing(ov: OverlapTable) -> np.ndarray:
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
    ov = overlap_table(gt, pred)
    if ov.n_gt == 0 and ov.n_pred == 0:
        return 1.0
    return _aggregated_jaccard(ov, _max_iou_pairing(ov))


def pq_parts(gt: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """Panoptic quality parts (hover_net ``get_fast_pq``, IoU > 0.5 matching).

    gt, pred: HxW integer instance label maps, 0 = background.
    Returns ``{"dq": ..., "sq": ..., "pq": ...}``, each a float in [0, 1].
    """
    ov = overlap_table(gt, pred)
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
    gt, pred = check_pair(gt, pred)
    g = check_labels("gt", gt) > 0
    p = check_labels("pred", pred) > 0
    total = int(g.sum()) + int(p.sum())
    if total == 0:
        return 1.0
    return 2 * int(np.count_nonzero(g & p)) / total
