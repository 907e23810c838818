"""Random augmentation of training patches: geometric on image, priors and target alike,
photometric on the image channels only. Every draw comes from the generator passed in."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentSettings:
    """Random augmentation of training patches. ``AugmentSettings(enabled=False)``: none.

    Geometric (the same on image, priors and target):
      flip: horizontal and vertical flips, each with probability 0.5.
      rotate90: rotation by k * 90 degrees, k uniform in 0..3.
      scale: (low, high) zoom factor, log-uniform; (1, 1) turns it off. Image and priors
        are resampled bilinearly (antialiased when shrinking), the target by nearest
        neighbour; the window read is ``patch_size / scale`` pixels, so the patch stays
        filled wherever the image is large enough.
    Photometric (image channels only, never the priors), then clipped to [0, 1]:
      color: each RGB channel multiplied by uniform(1 - color, 1 + color) (a stain/hue shift).
      contrast: the patch scaled about its mean by uniform(1 - contrast, 1 + contrast).
      brightness: uniform(-brightness, brightness) added.
    """

    enabled: bool = True
    flip: bool = True
    rotate90: bool = True
    scale: tuple[float, float] = (0.8, 1.25)
    brightness: float = 0.1
    contrast: float = 0.1
    color: float = 0.05

    def __post_init__(self) -> None:
        low, high = self.scale
        if not 0 < low <= high:
            raise ValueError(f"scale must be (low, high) with 0 < low <= high, not {self.scale}")
        for name in ("brightness", "contrast", "color"):
            value = getattr(self, name)
            if not 0 <= value < 1:
                raise ValueError(f"{name} must be in [0, 1), not {value}")


def draw_scale(rng: np.random.Generator, settings: AugmentSettings) -> float:
    low, high = settings.scale
    if not settings.enabled or (low == high == 1.0):
        return 1.0
    return float(math.exp(rng.uniform(math.log(low), math.log(high))))


def jitter(image: np.ndarray, rng: np.random.Generator, settings: AugmentSettings):
    """(3, h, w) float32 [0, 1] -> the same, colour-, contrast- and brightness-jittered.

    All three factors are drawn even when their range is 0, so turning one off leaves every
    other random choice of the item unchanged; a range of 0 leaves the pixels bit-exact.
    """
    gain = rng.uniform(1 - settings.color, 1 + settings.color, 3).astype(np.float32)
    contrast = np.float32(rng.uniform(1 - settings.contrast, 1 + settings.contrast))
    brightness = np.float32(rng.uniform(-settings.brightness, settings.brightness))
    if settings.color:
        image = image * gain[:, None, None]
    if settings.contrast:
        mean = image.mean(dtype=np.float32)
        image = (image - mean) * contrast + mean
    if settings.brightness:
        image = image + brightness
    return np.clip(image, 0.0, 1.0)


def flip_rotate(arrays: list[np.ndarray], rng: np.random.Generator, settings):
    """The same random flips and 90-degree rotation on each (..., h, w) array."""
    axes = [a for a in (-1, -2) if rng.random() < 0.5] if settings.flip else []
    k = int(rng.integers(4)) if settings.rotate90 else 0
    out = []
    for a in arrays:
        if axes:
            a = np.flip(a, axes)
        out.append(np.ascontiguousarray(np.rot90(a, k, axes=(-2, -1))))
    return out


def resize(maps: np.ndarray, target: np.ndarray, size: tuple[int, int]):
    """(C, h, w) float32 bilinearly (antialiased when shrinking) and (h, w) int64 by nearest
    neighbour to ``size``, both sampling at pixel centres so they stay aligned."""
    shrink = size[0] < maps.shape[-2] or size[1] < maps.shape[-1]
    maps = F.interpolate(
        torch.from_numpy(maps)[None], size, mode="bilinear", align_corners=False, antialias=shrink
    )[0].numpy()
    # torch's "nearest-exact": source index floor((i + 0.5) * in / out), as bilinear's centres.
    rows, cols = (
        np.minimum(((np.arange(n) + 0.5) * (old / n)).astype(np.int64), old - 1)
        for n, old in zip(size, target.shape, strict=True)
    )
    return maps, target[rows[:, None], cols[None, :]]
