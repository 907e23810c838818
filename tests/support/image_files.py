"""Image files written for reader tests: random RGB pixels, saved with PIL."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

RNG = np.random.default_rng(0)


def rgb(height: int, width: int) -> np.ndarray:
    """Random (height, width, 3) uint8 RGB pixels from the module's generator."""
    return RNG.integers(0, 256, (height, width, 3), dtype=np.uint8)


def save(path: Path, array: np.ndarray, mode: str | None = None) -> Path:
    """Save ``array`` as an image at ``path`` (folders made), converted to PIL ``mode``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(array) if mode is None else Image.fromarray(array).convert(mode)
    image.save(path)
    return path
