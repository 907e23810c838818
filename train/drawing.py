"""Drawing helpers shared by the figures of runs and stores: a colour ramp for prior maps."""

from __future__ import annotations

import numpy as np

# Anchors of a viridis-like ramp (dark blue -> green -> yellow).
_RAMP = np.array([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], float)


def colour_ramp(values: np.ndarray, top: float) -> np.ndarray:
    """HxW float -> HxWx3 uint8 on the ramp, 0 -> first anchor, top -> last."""
    t = np.clip(values / top, 0, 1) if top > 0 else np.zeros_like(values)
    position = t * (len(_RAMP) - 1)
    low = np.floor(position).astype(int).clip(0, len(_RAMP) - 2)
    frac = (position - low)[..., None]
    return (_RAMP[low] * (1 - frac) + _RAMP[low + 1] * frac).round().astype(np.uint8)
