"""The tests' SAM: ``precompute.maskers.random_sam``'s tiny shape, and the generator settings
that let its random weights keep many masks."""

from __future__ import annotations

from pathlib import Path

from precompute.maskers.random_sam import build_random_sam, save_random_sam

# Generator settings that let a random tiny SAM keep many masks (see build_random_sam).
TINY_SAM_SETTINGS = {
    "points_per_side": 8,
    "pred_iou_thresh": 0.0,
    "stability_score_thresh": 0.0,
    "box_nms_thresh": 1.0,
}


def build_tiny_sam(**kwargs):
    """A tiny random SAM in eval mode (``build_random_sam("tiny", ...)``)."""
    return build_random_sam("tiny", **kwargs)


def save_tiny_sam(path: Path, **kwargs) -> Path:
    """Save a tiny random SAM's state dict as a checkpoint file at ``path``."""
    return save_random_sam(path, "tiny", **kwargs)
