"""Random but realistic mask sets for prior tests and benchmarks (no SAM needed)."""

from __future__ import annotations

import numpy as np
from skimage.draw import ellipse, polygon


def random_masks(height: int, width: int, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(N, H, W) bool masks and (N,) float32 scores.

    A mix of ellipses and polygons of many sizes (some cut by the image border), a few
    rectangles flush with each border, one full-frame mask and one empty mask: the shapes
    SAM's automatic generator produces on gland and nucleus images.
    """
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, height, width), bool)
    for i in range(n):
        kind = i % 10
        if kind == 0:
            # Rectangle flush with one or two borders.
            y0, x0 = rng.integers(0, max(height // 2, 1)), rng.integers(0, max(width // 2, 1))
            y1 = height if rng.random() < 0.5 else rng.integers(y0 + 1, height + 1)
            x1 = width if rng.random() < 0.5 else rng.integers(x0 + 1, width + 1)
            masks[i, 0 if rng.random() < 0.5 else y0 : y1, x0:x1] = True
        elif kind < 7:
            r = rng.uniform(2, max(min(height, width) / (4 if kind < 3 else 12), 3))
            cy, cx = rng.uniform(-r / 2, height + r / 2), rng.uniform(-r / 2, width + r / 2)
            rr, cc = ellipse(
                cy,
                cx,
                r,
                r * rng.uniform(0.4, 1.6),
                (height, width),
                rotation=rng.uniform(0, np.pi),
            )
            masks[i, rr, cc] = True
        else:
            k = rng.integers(3, 9)
            cy, cx = rng.uniform(0, height), rng.uniform(0, width)
            rr = cy + rng.normal(0, height / 8, k)
            cc = cx + rng.normal(0, width / 8, k)
            pr, pc = polygon(rr, cc, (height, width))
            masks[i, pr, pc] = True
    if n >= 3:
        masks[-1] = True  # full frame: touches all four borders
        masks[-2] = False  # empty
    scores = rng.uniform(0.0, 1.0, n).astype(np.float32)
    return masks, scores
