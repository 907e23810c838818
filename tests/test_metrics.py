import math

import numpy as np
import py_sod_metrics as sod
import pytest
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist, directed_hausdorff

from train.metrics import (
    aji,
    aji_plus,
    glas_object_dice,
    glas_object_f1,
    glas_object_hausdorff,
    glas_parts,
    glas_pooled,
    pixel_f1,
    polyp_scores,
    pq,
    pq_parts,
)

INSTANCE_METRICS = [
    aji,
    aji_plus,
    pq,
    pixel_f1,
    glas_object_f1,
    glas_object_dice,
    glas_object_hausdorff,
]


def all_scores(gt, pred):
    scores = {f.__name__: f(gt, pred) for f in INSTANCE_METRICS}
    scores.update(pq_parts(gt, pred))
    return scores


# ---------------------------------------------------------------------------------------
# Reference: the official per-object loops, written out plainly on full-frame masks.


def _ids(x):
    return [int(i) for i in np.unique(x) if i != 0]


def _mode_nonzero(values):
    """MATLAB ``mode`` of the non-zero values: most frequent, ties to the smallest."""
    values = values[values != 0]
    if values.size == 0:
        return None
    ids, counts = np.unique(values, return_counts=True)
    return int(ids[np.argmax(counts)])


def ref_aji(gt, pred):  # Kumar et al. MATLAB loop
    inter_total = union_total = 0
    used = set()
    for g in _ids(gt):
        gm = gt == g
        best, best_iou = None, 0.0
        for p in _ids(pred[gm]):
            pm = pred == p
            iou = (gm & pm).sum() / (gm | pm).sum()
            if iou > best_iou:
                best, best_iou = p, iou
        if best is None:
            union_total += gm.sum()
            continue
        pm = pred == best
        inter_total += (gm & pm).sum()
        union_total += (gm | pm).sum()
        used.add(best)
    union_total += sum((pred == p).sum() for p in _ids(pred) if p not in used)
    return inter_total / union_total


def ref_aji_plus(gt, pred):  # hover_net get_fast_aji_plus with a global Munkres
    gids, pids = _ids(gt), _ids(pred)
    inter = np.array([[((gt == g) & (pred == p)).sum() for p in pids] for g in gids], float)
    union = np.array([[((gt == g) | (pred == p)).sum() for p in pids] for g in gids], float)
    iou = inter / union
    rows, cols = linear_sum_assignment(-iou)
    keep = iou[rows, cols] > 0
    rows, cols = rows[keep], cols[keep]
    total_union = union[rows, cols].sum()
    total_union += sum((gt == g).sum() for i, g in enumerate(gids) if i not in rows)
    total_union += sum((pred == p).sum() for j, p in enumerate(pids) if j not in cols)
    return inter[rows, cols].sum() / total_union


def ref_pq(gt, pred):  # hover_net get_fast_pq, match_iou = 0.5
    gids, pids = _ids(gt), _ids(pred)
    ious = []
    for g in gids:
        for p in pids:
            gm, pm = gt == g, pred == p
            iou = (gm & pm).sum() / (gm | pm).sum()
            if iou > 0.5:
                ious.append(iou)
    tp = len(ious)
    dq = tp / (tp + 0.5 * (len(pids) - tp) + 0.5 * (len(gids) - tp))
    return dq * (sum(ious) / tp if tp else 0.0)


def ref_glas_f1(gt, pred):  # F1score.m
    tp = 0
    for s in _ids(pred):
        g = _mode_nonzero(gt[pred == s])
        if g is not None and ((pred == s) & (gt == g)).sum() / (gt == g).sum() > 0.5:
            tp += 1
    fp, fn = len(_ids(pred)) - tp, len(_ids(gt)) - tp
    return 2 * tp / (2 * tp + fp + fn)


def ref_glas_dice(gt, pred):  # ObjectDice.m
    def side(a, b):
        total = 0.0
        for i in _ids(a):
            ai = a == i
            j = _mode_nonzero(b[ai])
            bj = (b == j) if j is not None else np.zeros_like(ai)
            total += ai.sum() / (a > 0).sum() * 2 * (ai & bj).sum() / (ai.sum() + bj.sum())
        return total

    return (side(pred, gt) + side(gt, pred)) / 2


def ref_hausdorff(a, b):  # knnsearch over all pixel coordinates
    d = cdist(np.argwhere(a), np.argwhere(b))
    return max(d.min(axis=1).max(), d.min(axis=0).max())


def ref_glas_hausdorff(gt, pred):  # ObjectHausdorff.m
    def side(a, b):
        total = 0.0
        for i in _ids(a):
            ai = a == i
            j = _mode_nonzero(b[ai])
            if j is None:
                dists = [ref_hausdorff(ai, b == k) for k in _ids(b)]
                j = _ids(b)[int(np.argmin(dists))]
            total += ai.sum() / (a > 0).sum() * ref_hausdorff(ai, b == j)
        return total

    return (side(pred, gt) + side(gt, pred)) / 2


def random_pair(seed, shape=(40, 44), n=7):
    """A gt of overlapping random rectangles and disks with scattered ids, and a prediction
    that shifts it and adds splits, merges, misses and false positives."""
    rng = np.random.default_rng(seed)
    gt = np.zeros(shape, np.int64)
    rr, cc = np.mgrid[: shape[0], : shape[1]]
    ids = rng.choice(np.arange(1, 100_000), n, replace=False)
    for i in ids:
        r, c = rng.integers(0, shape[0]), rng.integers(0, shape[1])
        h, w = rng.integers(3, 12, 2)
        if rng.random() < 0.5:
            gt[r : r + h, c : c + w] = i
        else:
            gt[(rr - r) ** 2 + (cc - c) ** 2 <= (h // 2 + 1) ** 2] = i
    pred = np.roll(gt, tuple(rng.integers(-2, 3, 2)), axis=(0, 1)) * 3 + 5
    pred[pred == 5] = 0
    pids = _ids(pred)
    if len(pids) >= 3:
        pred[pred == pids[0]] = 0  # miss
        pred[pred == pids[1]] = pids[2]  # merge (possibly disconnected)
    for p in _ids(pred)[:2]:
        rows = np.nonzero((pred == p).any(axis=1))[0]
        cut = pred[rows[len(rows) // 2] :]
        cut[cut == p] = 777_777 + p  # split
    for _ in range(2):
        r, c = rng.integers(0, shape[0] - 3), rng.integers(0, shape[1] - 3)
        pred[r : r + 3, c : c + 3] = rng.integers(1, 2**40)  # false positive
    return gt, pred


@pytest.mark.parametrize("seed", range(8))
def test_fast_metrics_equal_the_official_loops(seed):
    gt, pred = random_pair(seed)
    assert len(_ids(gt)) > 2 and len(_ids(pred)) > 2
    assert aji(gt, pred) == pytest.approx(ref_aji(gt, pred), abs=1e-12)
    assert aji_plus(gt, pred) == pytest.approx(ref_aji_plus(gt, pred), abs=1e-12)
    assert pq(gt, pred) == pytest.approx(ref_pq(gt, pred), abs=1e-12)
    assert glas_object_f1(gt, pred) == pytest.approx(ref_glas_f1(gt, pred), abs=1e-12)
    assert glas_object_dice(gt, pred) == pytest.approx(ref_glas_dice(gt, pred), abs=1e-12)
    assert glas_object_hausdorff(gt, pred) == pytest.approx(ref_glas_hausdorff(gt, pred))
    # Swapping roles exercises the "no overlap: nearest by Hausdorff" branch on both sides.
    assert glas_object_hausdorff(pred, gt) == pytest.approx(ref_glas_hausdorff(pred, gt))


def mosaic(maps, gap=80):
    """Label maps side by side, ids made distinct, with a background gap wider than any
    map's diagonal: the official per-image loops on the mosaic are the challenge's pooled
    definition (every match, and every nearest object, stays inside its own map)."""
    height = max(m.shape[0] for m in maps)
    tiles, offset = [], 0
    for m in maps:
        tile = np.zeros((height, m.shape[1] + gap), np.int64)
        tile[: m.shape[0], : m.shape[1]] = np.where(m > 0, m.astype(np.int64) + offset, 0)
        offset += int(m.max()) + 1
        tiles.append(tile)
    return np.concatenate(tiles, axis=1)


def test_glas_pooled_is_the_official_definition_over_all_images_of_a_part():
    pairs = [random_pair(seed) for seed in (11, 12, 13)]
    pooled = glas_pooled(glas_parts(g, p) for g, p in pairs)
    gt, pred = mosaic([g for g, _ in pairs]), mosaic([p for _, p in pairs])
    assert pooled["object_f1"] == pytest.approx(ref_glas_f1(gt, pred), abs=1e-12)
    assert pooled["object_dice"] == pytest.approx(ref_glas_dice(gt, pred), abs=1e-12)
    assert pooled["object_hausdorff"] == pytest.approx(ref_glas_hausdorff(gt, pred))
    # Not the mean of the per-image scores: images weigh by their objects' areas.
    mean_dice = np.mean([glas_object_dice(g, p) for g, p in pairs])
    assert abs(pooled["object_dice"] - mean_dice) > 1e-4


def test_glas_pooled_over_one_image_is_the_per_image_score():
    for seed in range(3):
        gt, pred = random_pair(seed)
        pooled = glas_pooled([glas_parts(gt, pred)])
        assert pooled == {
            "object_f1": glas_object_f1(gt, pred),
            "object_dice": glas_object_dice(gt, pred),
            "object_hausdorff": glas_object_hausdorff(gt, pred),
        }


def test_glas_pooled_with_an_image_predicted_empty():
    (g1, p1), (g2, _) = random_pair(21), random_pair(22)
    empty = np.zeros_like(g2)
    pooled = glas_pooled([glas_parts(g1, p1), glas_parts(g2, empty)])
    gt, pred = mosaic([g1, g2]), mosaic([p1, empty])
    # Its objects are false negatives and add their area with Dice 0 ...
    assert pooled["object_f1"] == pytest.approx(ref_glas_f1(gt, pred), abs=1e-12)
    assert pooled["object_dice"] == pytest.approx(ref_glas_dice(gt, pred), abs=1e-12)
    assert pooled["object_dice"] < glas_object_dice(g1, p1)
    # ... and have no object to measure a distance to (the per-image convention).
    assert pooled["object_hausdorff"] == math.inf
    assert glas_pooled([]) == {"object_f1": 1.0, "object_dice": 1.0, "object_hausdorff": 0.0}
    assert glas_pooled([glas_parts(empty, empty)])["object_hausdorff"] == 0.0


# ---------------------------------------------------------------------------------------
# Hand-made cases. Maps are drawn on small grids; areas in the comments are pixel counts.


def square_pair():
    gt = np.zeros((8, 10), np.int32)
    gt[1:5, 1:5] = 1  # 16 px
    return gt


def test_perfect_prediction_with_other_ids():
    gt = np.zeros((10, 12), np.int32)
    gt[1:4, 1:5] = 1
    gt[5:9, 6:11] = 2
    pred = np.where(gt == 1, 40, np.where(gt == 2, 9, 0))
    scores = all_scores(gt, pred)
    assert scores.pop("glas_object_hausdorff") == 0.0
    assert scores == dict.fromkeys(scores, 1.0)


def test_split_object():
    gt = square_pair()
    pred = np.zeros_like(gt)
    pred[1:5, 1:3] = 1  # left half, 8 px
    pred[1:5, 3:5] = 2  # right half, 8 px
    # AJI: both halves have IoU 8/16, the tie goes to id 1: inter 8, union 16, plus the
    # unused half 8 -> 8/24. AJI+ pairs the same way.
    assert aji(gt, pred) == 8 / 24
    assert aji_plus(gt, pred) == 8 / 24
    # PQ: IoU exactly 0.5 is not a match (> 0.5): TP 0, FP 2, FN 1.
    assert pq_parts(gt, pred) == {"dq": 0.0, "sq": 0.0, "pq": 0.0}
    assert pixel_f1(gt, pred) == 1.0
    # GlaS F1: each half covers exactly 50% of the gland, not more: TP 0.
    assert glas_object_f1(gt, pred) == 0.0
    # Object Dice: each half (weight 1/2) has Dice 2*8/(8+16) = 2/3; the gland's best half
    # (tie -> id 1) also 2/3.
    assert glas_object_dice(gt, pred) == pytest.approx(2 / 3, abs=1e-15)
    # Hausdorff: the far column of the gland is 2 px from either half.
    assert glas_object_hausdorff(gt, pred) == 2.0


def test_glas_f1_more_than_half_rule():
    gt = square_pair()
    pred = np.zeros_like(gt)
    pred[1:5, 1:3] = 1  # 8 px of 16: not > 50%
    pred[1, 3] = 1  # 9 px: > 50%, a true positive
    pred[2:5, 3:5] = 2  # 7 px: false positive
    # TP 1, FP 1, FN 0 -> 2 / (2 + 1 + 0)
    assert glas_object_f1(gt, pred) == 2 / 3


def test_glas_f1_matches_each_pred_to_its_largest_overlap():
    gt = np.zeros((4, 30), np.int32)
    gt[0, 0:4] = 1  # small gland, 4 px
    gt[1:4, 0:20] = 2  # large gland, 60 px
    pred = np.zeros_like(gt)
    pred[0:2, 0:10] = 5  # covers 4/4 of gland 1 but 10 px of gland 2
    # The pred goes to gland 2 (10 px > 4 px), where 10/60 is no match, so even gland 1,
    # fully covered, counts as a miss: TP 0.
    assert glas_object_f1(gt, pred) == 0.0


def test_merged_objects_aji_counts_a_reused_prediction_twice():
    gt = np.zeros((3, 8), np.int32)
    gt[:, 0:4] = 1  # 12 px
    gt[:, 4:8] = 2  # 12 px
    pred = (gt > 0).astype(np.int32)  # one 24 px object over both
    # AJI: each gland takes the merged pred (IoU 1/2): inter 12 + 12, union 24 + 24.
    assert aji(gt, pred) == 24 / 48
    # AJI+: one-to-one, the pred pairs with gland 1 (inter 12, union 24) and gland 2 is
    # missed (+12): 12 / 36.
    assert aji_plus(gt, pred) == 12 / 36
    assert pq(gt, pred) == 0.0  # IoU 1/2 is not > 1/2
    # GlaS F1: the pred -> gland 1 (tie), 12/12 > 50%: TP 1, FP 0, FN 1.
    assert glas_object_f1(gt, pred) == 2 / 3


def test_aji_and_aji_plus_differ_when_a_fragment_is_best_for_two_glands():
    gt = np.zeros((1, 20), np.int32)
    gt[0, 0:10] = 1  # A, 10 px
    gt[0, 10:20] = 2  # B, 10 px
    pred = np.zeros_like(gt)
    pred[0, 0:2] = 3  # P3, 2 px: IoU(A) = 2/10
    pred[0, 2:17] = 1  # P1, 15 px: IoU(A) = 8/17, IoU(B) = 7/18
    pred[0, 17:20] = 2  # P2, 3 px: IoU(B) = 3/10
    # AJI: A -> P1 (8/17), B -> P1 (7/18 > 3/10): inter 8 + 7, union 17 + 18, plus the
    # unused P2 (3) and P3 (2): 15/40.
    assert aji(gt, pred) == 15 / 40
    # AJI+: A-P1 + B-P2 (IoU sum 8/17 + 3/10) beats B-P1 + A-P3 (7/18 + 2/10): inter 8 + 3,
    # union 17 + 10, plus the unpaired P3 (2): 11/29.
    assert aji_plus(gt, pred) == 11 / 29


def test_missed_object():
    gt = np.zeros((6, 10), np.int32)
    gt[1:3, 1:3] = 1  # 4 px, found
    gt[1:3, 6:8] = 2  # 4 px, missed
    pred = np.where(gt == 1, 1, 0)
    assert aji(gt, pred) == 4 / 8  # the missed gland adds its 4 px to the union
    assert aji_plus(gt, pred) == 4 / 8
    assert pq_parts(gt, pred) == {"dq": 1 / 1.5, "sq": 1.0, "pq": 1 / 1.5}  # TP 1, FN 1
    assert pixel_f1(gt, pred) == 8 / 12
    assert glas_object_f1(gt, pred) == 2 / 3
    # Object Dice: pred side 1 * 1; gt side 1/2 * 1 + 1/2 * 0.
    assert glas_object_dice(gt, pred) == 3 / 4
    # Hausdorff: pred side 0; gt side 1/2 * 0 + 1/2 * H(missed gland, nearest pred) where
    # the nearest pred is 5 columns away: H = 5.
    assert glas_object_hausdorff(gt, pred) == (0 + 0.5 * 5) / 2


def test_false_positive():
    gt = np.zeros((6, 10), np.int32)
    gt[1:3, 1:3] = 1
    pred = gt.copy()
    pred[1:3, 6:8] = 2  # 4 px false positive
    assert aji(gt, pred) == 4 / 8
    assert aji_plus(gt, pred) == 4 / 8
    assert pq(gt, pred) == 1 / 1.5
    assert glas_object_f1(gt, pred) == 2 / 3
    assert glas_object_dice(gt, pred) == 3 / 4
    assert glas_object_hausdorff(gt, pred) == (0.5 * 5 + 0) / 2


def test_pq_iou_borderline():
    gt = np.zeros((3, 12), np.int32)
    gt[0, 0:6] = 1
    pred = np.zeros_like(gt)
    pred[0, 2:8] = 1  # IoU 4/8 = 0.5: not a match
    assert pq_parts(gt, pred) == {"dq": 0.0, "sq": 0.0, "pq": 0.0}
    pred[0, 1] = 1  # inter 5, union 8: IoU 5/8 > 0.5, a match
    assert pq_parts(gt, pred) == {"dq": 1.0, "sq": 5 / 8, "pq": 5 / 8}


def test_hausdorff_of_shifted_squares_is_the_shift_length():
    gt = np.zeros((16, 16), np.int32)
    gt[2:7, 2:7] = 1
    pred = np.roll(gt, (1, 2), axis=(0, 1)) * 4
    expected = math.sqrt(1**2 + 2**2)
    assert glas_object_hausdorff(gt, pred) == pytest.approx(expected, abs=1e-15)
    u, v = np.argwhere(gt), np.argwhere(pred)
    assert expected == pytest.approx(max(directed_hausdorff(u, v)[0], directed_hausdorff(v, u)[0]))
    # Not overlapping at all: matched through the nearest-by-Hausdorff rule.
    far = np.roll(gt, (3, 6), axis=(0, 1))
    assert glas_object_hausdorff(gt, far) == pytest.approx(math.sqrt(3**2 + 6**2), abs=1e-15)


def test_object_dice_and_hausdorff_are_area_weighted():
    gt = np.zeros((10, 12), np.int32)
    gt[1:5, 1:5] = 1  # 16 px, predicted exactly
    gt[6:8, 7:9] = 2  # 4 px, predicted one column to the right
    pred = np.zeros_like(gt)
    pred[1:5, 1:5] = 1
    pred[6:8, 8:10] = 2
    # Dice of the small pair 2*2/(4+4) = 1/2; each side: (16 * 1 + 4 * 1/2) / 20 = 9/10.
    assert glas_object_dice(gt, pred) == pytest.approx(9 / 10, abs=1e-15)
    # Hausdorff of the small pair 1; each side: (16 * 0 + 4 * 1) / 20 = 1/5.
    assert glas_object_hausdorff(gt, pred) == pytest.approx(1 / 5, abs=1e-15)


def test_hausdorff_nearest_rule_keeps_the_smaller_id_on_ties():
    gt = np.zeros((5, 15), np.int32)
    gt[2, 7] = 1
    pred = np.zeros_like(gt)
    pred[2, 3] = 9
    pred[2, 11] = 4  # both 4 px away
    # Gland -> pred 4 (smaller id, H 4); each pred -> the gland (H 4): 4 either way.
    assert glas_object_hausdorff(gt, pred) == 4.0


# ---------------------------------------------------------------------------------------
# Ids, dtypes and edge cases.


def two_objects(a, b, dtype):
    x = np.zeros((8, 9), dtype)
    x[1:4, 1:5] = a
    x[5:8, 2:8] = b
    return x


def test_large_and_non_contiguous_ids_match_small_ones():
    gt = two_objects(1, 2, np.int32)
    pred = np.roll(two_objects(1, 2, np.int32), 1, axis=1)
    pred[0, 0] = 3
    expected = all_scores(gt, pred)
    assert 0 < expected["aji"] < 1
    for g_ids, p_ids, dtype in [
        ((300, 7000), (300, 7000, 9), np.uint16),
        ((256, 512), (512, 1024, 768), np.int64),  # all 0 as uint8
        ((5, 40), (2**33, 2**34, 2**35), np.uint64),
        ((3, 9), (4, 17, 70), np.int8),
    ]:
        g = two_objects(*g_ids, dtype)
        p = np.roll(two_objects(*p_ids[:2], dtype), 1, axis=1)
        p[0, 0] = p_ids[2]
        assert all_scores(g, p) == expected, (g_ids, p_ids, dtype)


def test_bool_masks_are_single_objects():
    gt = square_pair()
    assert aji(gt > 0, gt.astype(np.uint8) * 200) == 1.0
    assert pixel_f1(gt > 0, gt > 0) == 1.0


def test_empty_inputs_follow_the_documented_convention():
    empty = np.zeros((6, 7), np.int32)
    obj = empty.copy()
    obj[1:3, 1:4] = 12
    both_empty = all_scores(empty, empty)
    assert both_empty.pop("glas_object_hausdorff") == 0.0
    assert both_empty == dict.fromkeys(both_empty, 1.0)
    for gt, pred in [(empty, obj), (obj, empty)]:
        one_empty = all_scores(gt, pred)
        assert one_empty.pop("glas_object_hausdorff") == math.inf
        assert one_empty == dict.fromkeys(one_empty, 0.0)


@pytest.mark.parametrize("metric", [*INSTANCE_METRICS, pq_parts, polyp_scores])
def test_shape_mismatch_is_refused(metric):
    with pytest.raises(ValueError, match=r"shape \(4, 5\) but pred has shape \(5, 4\)"):
        metric(np.zeros((4, 5), np.uint8), np.zeros((5, 4), np.uint8))


@pytest.mark.parametrize("metric", [*INSTANCE_METRICS, pq_parts])
def test_bad_label_maps_are_refused(metric):
    with pytest.raises(ValueError, match="integer label map"):
        metric(np.zeros((4, 5), np.float32), np.zeros((4, 5), np.int32))
    with pytest.raises(ValueError, match="negative label -1"):
        metric(np.zeros((4, 5), np.int32), np.full((4, 5), -1))
    with pytest.raises(ValueError, match="HxW"):
        metric(np.zeros((2, 4, 5), np.int32), np.zeros((2, 4, 5), np.int32))


# ---------------------------------------------------------------------------------------
# Polyp scores.


def polyp_case(seed=0, shape=(48, 56)):
    rng = np.random.default_rng(seed)
    rr, cc = np.mgrid[: shape[0], : shape[1]]
    gt = ((rr - 20) ** 2 / 120 + (cc - 30) ** 2 / 200) <= 1
    blur = np.exp(-(((rr - 22) ** 2) / 150 + ((cc - 27) ** 2) / 260))
    prob = np.clip(blur + rng.normal(0, 0.08, shape), 0, 1)
    return gt, prob


def direct_sod(pred_u8, gt_u8):
    results = {}
    for key, metric, pick in [
        ("s_measure", sod.Smeasure(), lambda r: r["sm"]),
        ("mean_e_measure", sod.Emeasure(), lambda r: r["em"]["curve"].mean()),
        ("max_e_measure", sod.Emeasure(), lambda r: r["em"]["curve"].max()),
        ("weighted_f", sod.WeightedFmeasure(), lambda r: r["wfm"]),
        ("mae", sod.MAE(), lambda r: r["mae"]),
    ]:
        metric.step(pred_u8, gt_u8)
        results[key] = pick(metric.get_results())
    sweep = sod.FmeasureV2(
        {"dice": sod.DICEHandler(True, False), "iou": sod.IOUHandler(True, False)}
    )
    sweep.step(pred_u8, gt_u8)
    curves = sweep.get_results()
    results["mean_dice"] = curves["dice"]["dynamic"].mean()
    results["mean_iou"] = curves["iou"]["dynamic"].mean()
    return results


def test_polyp_scores_equal_direct_pysodmetrics_calls():
    gt, prob = polyp_case()
    pred_u8 = np.rint(prob * 255).astype(np.uint8)
    gt_u8 = gt.astype(np.uint8) * 255
    expected = direct_sod(pred_u8, gt_u8)
    for g, p in [(gt, prob), (gt_u8, pred_u8), (gt, pred_u8.astype(np.int64))]:
        scores = polyp_scores(g, p)
        assert all(type(v) is float for v in scores.values())
        for key, value in expected.items():
            assert scores[key] == pytest.approx(value, abs=1e-12), key
        binary = prob >= 0.5 if p is prob else pred_u8 >= 128
        assert scores["dice"] == 2 * (binary & gt).sum() / (binary.sum() + gt.sum())
    assert 0.3 < scores["dice"] < 1 and 0.3 < scores["mean_dice"] < 1


def test_polyp_perfect_prediction():
    gt, _ = polyp_case()
    scores = polyp_scores(gt, gt.astype(np.float64))
    assert scores["dice"] == 1.0
    assert scores["mae"] == 0.0
    assert scores["s_measure"] == pytest.approx(1.0, abs=1e-12)
    assert scores["weighted_f"] == pytest.approx(1.0, abs=1e-12)
    # Every threshold k >= 1 gives the gt exactly; k = 0 marks the whole image.
    fg, n = gt.sum(), gt.size
    assert scores["mean_dice"] == pytest.approx((255 + 2 * fg / (fg + n)) / 256, abs=1e-15)
    assert scores["mean_iou"] == pytest.approx((255 + fg / n) / 256, abs=1e-15)


def test_polyp_threshold_sweep_by_hand():
    gt = np.zeros((4, 4), np.uint8)
    gt[:, :2] = 255  # left half
    pred = np.zeros((4, 4), np.uint8)
    pred[:2] = 200  # top half, the rest 0: overlap 4 px of 8 and 8
    # Thresholds k = 1..255 give the top half: Dice 8/16, IoU 4/12; k = 0 gives the whole
    # image: Dice 16/24, IoU 8/16. Min-max normalisation maps 200 to 255 first.
    scores = polyp_scores(gt, pred)
    assert scores["mean_dice"] == pytest.approx((255 * 1 / 2 + 2 / 3) / 256, abs=1e-15)
    assert scores["mean_iou"] == pytest.approx((255 * 1 / 3 + 1 / 2) / 256, abs=1e-15)
    assert scores["dice"] == 1 / 2  # 200/255 >= 0.5
    # The sweep sees the min-max normalised map, the 0.5 Dice the probability as given.
    low = np.where(pred > 0, 100, 50).astype(np.uint8)
    low_scores = polyp_scores(gt, low)
    assert low_scores["mean_dice"] == scores["mean_dice"]
    assert low_scores["dice"] == 0.0


def test_polyp_empty_cases():
    empty = np.zeros((8, 8), bool)
    both = polyp_scores(empty, np.zeros((8, 8)))
    assert both["dice"] == 1.0
    # Thresholds k >= 1 leave both empty (1.0); k = 0 marks every pixel (0.0).
    assert both["mean_dice"] == both["mean_iou"] == 255 / 256
    assert both["mae"] == 0.0
    full = np.ones((8, 8))
    assert polyp_scores(empty, full)["dice"] == 0.0
    only_gt = polyp_scores(~empty, np.zeros((8, 8)))
    assert only_gt["dice"] == 0.0
    assert only_gt["mean_dice"] == 1 / 256  # only k = 0, marking every pixel, finds the gt


@pytest.mark.parametrize(
    "gt,pred,message",
    [
        (np.zeros((4, 4), bool), np.full((4, 4), 1.5), r"probability map in \[0, 1\]"),
        (np.zeros((4, 4), bool), np.full((4, 4), np.nan), "NaN or inf"),
        (np.zeros((4, 4), bool), np.full((4, 4), 300), "must hold 0..255"),
        (np.zeros((4, 4), bool), np.ones((4, 4), np.uint8), "looks like a 0/1 mask"),
        (np.ones((4, 4), np.uint8), np.zeros((4, 4)), "looks like a 0/1 mask"),
        (np.zeros((4, 4), np.float32), np.zeros((4, 4)), "bool mask or a 0/255"),
    ],
)
def test_polyp_bad_inputs_are_refused(gt, pred, message):
    with pytest.raises(ValueError, match=message):
        polyp_scores(gt, pred)
