"""The ``sam2`` masker's settings, checked when they are made (no torch needed)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from precompute import checks
from precompute.maskers.sam_settings import SamMaskerSettings
from precompute.types import SettingError


@dataclass(frozen=True)
class Sam2MaskerSettings(SamMaskerSettings):
    """``SAM2AutomaticMaskGenerator``'s settings, its own defaults (tuned for Hiera-L).

    As ``SamMaskerSettings`` (points_per_batch "auto": 64 off a GPU, 256 on one), with SAM
    2's defaults pred_iou_thresh 0.8, box_nms_thresh 0.7, crop_nms_thresh 0.7, and:
    mask_threshold: the logit the masks are cut at (finite). use_m2m: one refinement step
    with the previous mask as a prompt. multimask_output: three masks per prompt (else
    one).
    """

    pred_iou_thresh: float = 0.8
    box_nms_thresh: float = 0.7
    crop_nms_thresh: float = 0.7
    mask_threshold: float = 0.0
    use_m2m: bool = False
    multimask_output: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        threshold = checks.number("sam2 setting mask_threshold", self.mask_threshold)
        object.__setattr__(self, "mask_threshold", threshold)
        for name in ("use_m2m", "multimask_output"):
            if not isinstance(getattr(self, name), bool):
                raise SettingError(
                    f"sam2 setting {name} must be true or false, not {getattr(self, name)!r}"
                )


def sam2_generator_settings(settings: Sam2MaskerSettings, points_per_batch: int) -> dict:
    """The keyword arguments of ``SAM2AutomaticMaskGenerator`` (all but precision)."""
    values = asdict(settings)
    values.pop("precision")
    values["points_per_batch"] = points_per_batch
    return values
