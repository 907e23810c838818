"""Test-time augmentation: flip the input, predict, flip back, average (nnU-Net's mirroring).

``predict`` wraps ``train.inference.predicting.predict_image``. With ``tta="flip"`` an image is
predicted four times, as it is, mirrored left-right, mirrored top-bottom and both, with the
priors mirrored with the image (a raw input ignores them); each prediction is mirrored back
and the four probability maps are averaged. nnU-Net's 2D mirroring over both axes does the
same: every combination of the mirror axes, the identity included, weighted equally.
``tta="none"`` is ``predict_image`` itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import Tensor, nn

from precompute import checks
from train.choices import TTAS
from train.fusion import FusionSettings
from train.inference.predicting import predict_image

if TYPE_CHECKING:
    from train.tasks import Task

# Tensor dims to mirror for each prediction of "flip": items are (C, H, W), so -1 is the
# width (left-right) and -2 the height (top-bottom).
FLIPS: tuple[tuple[int, ...], ...] = ((), (-1,), (-2,), (-2, -1))
INPUTS = ("image", "seg_prior", "boundary_prior")


def check_tta(tta: str) -> str:
    """``tta`` if it names one of ``TTAS`` ("none", "flip"), else a SettingError."""
    return checks.choice("--tta", tta, TTAS)


def mirror(item: dict, dims: tuple[int, ...]) -> dict:
    """A copy of a ``WholeImageDataset`` item with its image and priors mirrored along
    ``dims`` (other keys as they are)."""
    if not dims:
        return item
    return {**item, **{key: item[key].flip(dims) for key in INPUTS}}


def predict(
    model: nn.Module,
    item: dict,
    fusion: FusionSettings,
    augmented: bool,
    task: Task,
    window: int,
    overlap: float = 0.5,
    tta: str = "none",
    *,
    protocol: str = "patches",
) -> Tensor:
    """``predict_image`` of one item (under the run's ``protocol``), averaged over ``FLIPS``
    when ``tta == "flip"``.

    item: ``image`` (3, H, W), ``seg_prior`` and ``boundary_prior`` (1, H, W) float32.
    Returns ``(1, task.num_outputs, H, W)`` float32 probabilities in [0, 1] on the model's
    device, in the item's own orientation.
    """
    check_tta(tta)
    flips = FLIPS if tta == "flip" else ((),)
    total = None
    for dims in flips:
        probs = predict_image(
            model, mirror(item, dims), fusion, augmented, task, window, overlap, protocol=protocol
        )
        probs = probs.flip(dims) if dims else probs
        total = probs if total is None else total + probs
    return total / len(flips)
