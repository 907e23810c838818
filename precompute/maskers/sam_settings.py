"""The ``sam`` masker's settings, checked when they are made (no torch needed).

Kept apart from ``masker_sam`` so that a run's settings are validated, and recorded in the
store, before torch or segment_anything is imported.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import ClassVar

from precompute import checks
from precompute.types import SettingError

# The model's arithmetic: fp32 (exactly the reference's output), or bf16 / fp16 autocast.
PRECISIONS = ("fp32", "bf16", "fp16")


@dataclass(frozen=True)
class SamMaskerSettings:
    """SamAutomaticMaskGenerator's settings; the defaults are the SAMAug paper's.

    points_per_side: the prompt grid is points_per_side x points_per_side per crop layer 0
        (>= 1).
    points_per_batch: prompts per decoder call (>= 1), or "auto": on a GPU as many as its
        free memory holds (at most 1024), elsewhere 64. Memory and speed only; the output
        equals the reference's run with the same batches.
    pred_iou_thresh: keep masks whose predicted IoU is above it; in [0, 1], 0 = no filter.
    stability_score_thresh: keep masks whose stability score is at least it; in [0, 1],
        0 = no filter.
    stability_score_offset: the logit offset of the stability score's two thresholds
        (finite, > 0).
    box_nms_thresh: box IoU above which NMS drops the lower-IoU mask within a crop; in
        [0, 1], 1 = no NMS.
    crop_n_layers (>= 0), crop_nms_thresh (in [0, 1]), crop_overlap_ratio (in [0, 1)),
        crop_n_points_downscale_factor (>= 1): SAM's multi-crop mode (0 layers = the whole
        image only).
    precision: "fp32" (default: exactly SamAutomaticMaskGenerator's output), "bf16" or
        "fp16" (the image encoder and mask decoder under autocast; masks agree with fp32's
        only approximately, ``samaug store compare`` measures by how much). It changes the
        results, so it is recorded and part of a store's signature.

    A value of the wrong type or out of range is a SettingError naming the setting; the
    thresholds and ratios are stored as floats.
    """

    points_per_side: int = 32
    points_per_batch: int | str = 64
    pred_iou_thresh: float = 0.5
    stability_score_thresh: float = 0.95
    stability_score_offset: float = 1.0
    box_nms_thresh: float = 0.5
    crop_n_layers: int = 0
    crop_nms_thresh: float = 0.5
    crop_overlap_ratio: float = 512 / 1500
    crop_n_points_downscale_factor: int = 1
    precision: str = "fp32"

    # Settings added after stores were made, with the value those stores were made with:
    # a recorded provenance without one is read as having it (see portable_provenance).
    added_later: ClassVar[dict] = {"precision": "fp32"}

    def __post_init__(self) -> None:
        def name(setting: str) -> str:
            return f"sam setting {setting}"

        checks.choice(name("precision"), self.precision, PRECISIONS)
        if self.points_per_batch != "auto":
            checks.integer(name("points_per_batch"), self.points_per_batch, minimum=1)
        for setting, low in (
            ("points_per_side", 1),
            ("crop_n_layers", 0),
            ("crop_n_points_downscale_factor", 1),
        ):
            checks.integer(name(setting), getattr(self, setting), minimum=low)
        checked = {
            setting: checks.fraction(name(setting), getattr(self, setting))
            for setting in (
                "pred_iou_thresh",
                "stability_score_thresh",
                "box_nms_thresh",
                "crop_nms_thresh",
                "crop_overlap_ratio",
            )
        }
        if checked["crop_overlap_ratio"] == 1:
            raise SettingError(f"{name('crop_overlap_ratio')} must be below 1, not 1")
        checked["stability_score_offset"] = checks.number(
            name("stability_score_offset"), self.stability_score_offset, positive=True
        )
        for setting, value in checked.items():
            object.__setattr__(self, setting, value)


def generator_settings(settings: SamMaskerSettings) -> dict:
    """The settings ``SamAutomaticMaskGenerator`` takes (all but precision), as a dict."""
    values = asdict(settings)
    values.pop("precision")
    return values
