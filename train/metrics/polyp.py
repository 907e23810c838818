"""Polyp metrics: PraNet's Dice/IoU sweep and PySODMetrics' saliency measures."""

from __future__ import annotations

import numpy as np

from train.metrics._labels import check_pair


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
    gt, pred = check_pair(gt, pred)
    gt_mask = _polyp_gt(gt)
    pred_u8, prob = _polyp_pred(pred)
    gt_u8 = gt_mask.astype(np.uint8) * 255

    # Imported here: py_sod_metrics pulls in scikit-learn (seconds), which the trainer's
    # data workers, importing the task registry and so these metrics, never need.
    from py_sod_metrics import MAE, Emeasure, Smeasure, WeightedFmeasure

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
