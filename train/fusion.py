"""How the SAM priors enter a segmentation model: a small registry of fusions.

A fusion turns an image batch and its two priors into the network's input tensor, and the
image alone into the "raw" input of the same shape, so one network can be trained on raw and
augmented input alike (the paper's "joint" mode computes a loss on both each step).

- ``add`` (the paper's default): the image as float in [0, 1], ``seg_prior * seg_scale``
  added to the green channel and ``boundary_prior`` to the blue channel; 3 channels. The raw
  input is the image itself. The released SAMAug code does exactly this::

      tI = img_as_float(I); tI[:,:,1] += SegPrior; tI[:,:,2] += BoundaryPrior

- ``concat``: the image, ``seg_prior * seg_scale`` and ``boundary_prior`` as 5 channels; the
  raw input has zeros in the two prior channels.

``seg_scale`` weights the segmentation prior, which is a sum of stability scores and so is
unbounded (a pixel covered by k masks gets up to k). 1.0 is the paper: the prior is added
as is. Pick a smaller value, e.g. ``1 / typical max``, if the priors of a masker swamp the
image. The settings are recorded in every training config.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from precompute.registry import Registry

_FuseFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, float], torch.Tensor]
_RawFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class _Fusion:
    in_channels: int
    fuse: _FuseFn
    raw: _RawFn


# The fusions by name (``precompute.registry``).
FUSIONS: Registry[_Fusion] = Registry("fusion")
list_fusions = FUSIONS.names  # the registered names, sorted


def register_fusion(name: str, in_channels: int) -> Callable[[_FuseFn], _FuseFn]:
    """Decorator on a ``fuse(image, seg, boundary, seg_scale)`` function; the raw input is
    that function with both priors zero, so the two can never disagree on layout."""

    def add(fuse: _FuseFn) -> _FuseFn:
        def raw(image: torch.Tensor) -> torch.Tensor:
            zero = torch.zeros_like(image[..., :1, :, :])
            return fuse(image, zero, zero, 1.0)

        FUSIONS.add(name, _Fusion(in_channels, fuse, raw))
        return fuse

    return add


@dataclass(frozen=True)
class FusionSettings:
    """How priors are fused into the input.

    kind: a name from ``list_fusions()`` ("add", the paper's, or "concat").
    seg_scale: factor on ``seg_prior`` before fusing (1.0 = the paper: no scaling).
    """

    kind: str = "add"
    seg_scale: float = 1.0

    def __post_init__(self) -> None:
        FUSIONS.check(self.kind)
        if not math.isfinite(self.seg_scale):
            raise ValueError(f"seg_scale must be a finite number, not {self.seg_scale!r}")


def in_channels(settings: FusionSettings) -> int:
    """Channels of the tensors ``fuse`` and ``raw`` return (what the model takes)."""
    return FUSIONS.get(settings.kind).in_channels


def _check(image: torch.Tensor, *priors: torch.Tensor) -> None:
    if image.dim() < 3 or image.shape[-3] != 3:
        raise ValueError(f"image must be (B, 3, H, W) or (3, H, W), not {tuple(image.shape)}")
    for prior in priors:
        expected = (*image.shape[:-3], 1, *image.shape[-2:])
        if tuple(prior.shape) != expected:
            raise ValueError(
                f"prior of shape {tuple(prior.shape)} does not go with image of shape "
                f"{tuple(image.shape)}; expected {expected}"
            )


def fuse(
    image: torch.Tensor,
    seg: torch.Tensor,
    boundary: torch.Tensor,
    settings: FusionSettings,
) -> torch.Tensor:
    """The augmented input.

    image: (B, 3, H, W) (or (3, H, W)) float RGB in [0, 1].
    seg: (B, 1, H, W) float ``seg_prior`` (>= 0, unbounded). boundary: (B, 1, H, W) float
    ``boundary_prior`` (0/1, fractional after a scale augmentation).
    Returns (B, in_channels(settings), H, W) in the image's dtype; the inputs are not changed.
    """
    _check(image, seg, boundary)
    return FUSIONS.get(settings.kind).fuse(
        image, seg.to(image.dtype), boundary.to(image.dtype), float(settings.seg_scale)
    )


def raw(image: torch.Tensor, settings: FusionSettings) -> torch.Tensor:
    """The un-augmented input of the same layout as ``fuse``'s: (B, 3, H, W) float [0, 1]
    -> (B, in_channels(settings), H, W), as if both priors were zero."""
    _check(image)
    return FUSIONS.get(settings.kind).raw(image)


@register_fusion("add", in_channels=3)
def _add(image: torch.Tensor, seg: torch.Tensor, boundary: torch.Tensor, seg_scale: float):
    red, green, blue = image.split(1, dim=-3)
    return torch.cat([red, green + seg * seg_scale, blue + boundary], dim=-3)


@register_fusion("concat", in_channels=5)
def _concat(image: torch.Tensor, seg: torch.Tensor, boundary: torch.Tensor, seg_scale: float):
    return torch.cat([image, seg * seg_scale, boundary], dim=-3)


def model_input(batch: dict, fusion: FusionSettings, augmented: bool, device) -> torch.Tensor:
    """The network input of a batch of items (``train.data.datasets``): ``fuse`` of the image
    and both priors when ``augmented``, else ``raw`` of the image; ``(B, in_channels, H, W)``
    float on ``device``."""
    image = batch["image"].to(device, non_blocking=True)
    if not augmented:
        return raw(image, fusion)
    seg = batch["seg_prior"].to(device, non_blocking=True)
    boundary = batch["boundary_prior"].to(device, non_blocking=True)
    return fuse(image, seg, boundary, fusion)
