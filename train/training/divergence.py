"""Weights and losses that are numbers: a diverged run stops, a diverged model is not used.

A training step whose loss is NaN or infinite (too high a learning rate, a ``--seg-scale`` of
-1e308) would go on training, and save, weights that are no longer numbers; a model of such
weights predicts nothing (every probability NaN) without a word. So ``check_losses`` stops a
run at the first such step, and ``check_weights`` refuses weights that hold a NaN or an
infinity, or a tensor of a type no model of samaug has, both before a checkpoint is written
(the run's ``last.pt`` stays the last finite one) and when a run or bundle is loaded.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import torch

from precompute.types import SamaugError

# The types of a model's state: its weights (any float precision a run or an export may
# use) and its integer counters (BatchNorm's num_batches_tracked).
WEIGHT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int64)
REMEDY = "lower --lr, check --seg-scale and the other settings, and train again"


def check_losses(losses: list[float], out: Path, epoch: int, batch: int) -> list[float]:
    """``losses`` (one batch's, of epoch ``epoch`` and batch ``batch``, both from 0) when
    all are finite; else the SamaugError that stops the run, saying what ``out`` keeps."""
    bad = next((loss for loss in losses if not math.isfinite(loss)), None)
    if bad is None:
        return losses
    raise SamaugError(
        f"training diverged: the loss of epoch {epoch + 1}, batch {batch + 1} is {bad}; "
        f"{_kept(out)}; {REMEDY}"
    )


def check_weights(
    weights: Mapping[str, object], source: str | Path, training: bool = False
) -> None:
    """SamaugError naming ``source`` and the first tensor of ``weights`` (a state dict) that
    is not a tensor of ``WEIGHT_DTYPES`` or holds a NaN or an infinity. ``training``: the
    weights a run is about to save (``source`` its directory), said as a diverged run."""
    for name, tensor in weights.items():
        if not isinstance(tensor, torch.Tensor) or tensor.dtype not in WEIGHT_DTYPES:
            what = type(tensor).__name__ if not isinstance(tensor, torch.Tensor) else tensor.dtype
            raise SamaugError(
                f"{source}: weight {name} is of type {what}, not one of a model's "
                "(float, int64); it was not written by samaug"
            )
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            if training:
                raise SamaugError(
                    f"training diverged: weight {name} is no longer finite; "
                    f"{_kept(Path(source))}; {REMEDY}"
                )
            raise SamaugError(
                f"{source}: weight {name} holds NaN or infinite values (its training "
                "diverged); use an earlier checkpoint, or train the run again"
            )


def _kept(out: Path) -> str:
    """What the run directory keeps of a run that diverged."""
    if (out / "last.pt").exists():
        return f"{out / 'last.pt'} keeps the last finite weights"
    return "nothing was saved"
