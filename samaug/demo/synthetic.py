"""Synthetic data made on the spot, deterministically: mask sets for prior tests and
benchmarks, and small gland- or nucleus-like datasets in the GlaS layout for tests, the
benchmark and the demo. Nothing here is for reporting results.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from skimage.draw import ellipse, polygon

from precompute.priors import boxes_from_masks
from precompute.types import MaskSet


def random_masks(height: int, width: int, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(N, H, W) bool masks and (N,) float32 scores in [0, 1).

    A mix of ellipses and polygons of many sizes (some cut by the image border), rectangles
    flush with the borders, one full-frame mask and one empty mask (when N >= 3): the
    shapes SAM's automatic generator produces on gland and nucleus images.
    """
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, height, width), bool)
    for i in range(n):
        kind = i % 10
        if kind == 0:
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
            pr, pc = polygon(
                cy + rng.normal(0, height / 8, k), cx + rng.normal(0, width / 8, k), (height, width)
            )
            masks[i, pr, pc] = True
    if n >= 3:
        masks[-1] = True  # full frame: touches all four borders
        masks[-2] = False  # empty
    scores = rng.uniform(0.0, 1.0, n).astype(np.float32)
    return masks, scores


def random_mask_set(height: int, width: int, n: int, seed: int = 0) -> MaskSet:
    """``random_masks`` as a full MaskSet: random predicted IoUs and prompt points, boxes
    and areas from the masks (what a masker hands the store)."""
    masks, scores = random_masks(height, width, n, seed=seed)
    rng = np.random.default_rng(seed)
    return MaskSet(
        masks=masks,
        stability_score=scores,
        predicted_iou=rng.random(n).astype(np.float32),
        box=boxes_from_masks(masks),
        point=(rng.random((n, 2)) * [width, height]).astype(np.float32),
        area=masks.sum(axis=(1, 2)),
    )


def tissue_image(
    height: int, width: int, objects: int, seed: int, radius: tuple[float, float] = (12, 40)
) -> tuple[np.ndarray, np.ndarray]:
    """An H&E-like RGB uint8 image with non-overlapping elliptical objects, and its HxW int32
    instance labels (1..K; objects that would overlap an earlier one are skipped).

    Gland-like with large radii (a dark epithelial rim around a pale lumen), nucleus-like
    with small ones (solid dark blobs).
    """
    rng = np.random.default_rng(seed)
    label = np.zeros((height, width), np.int32)
    background = np.array([232, 190, 215], float)  # eosin pink
    image = np.empty((height, width, 3))
    image[:] = background
    next_id = 1
    for _ in range(objects):
        r = rng.uniform(*radius)
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        rr, cc = ellipse(
            cy, cx, r, r * rng.uniform(0.6, 1.4), (height, width), rotation=rng.uniform(0, np.pi)
        )
        if rr.size == 0 or label[rr, cc].any():
            continue
        label[rr, cc] = next_id
        image[rr, cc] = [120, 60, 150]  # haematoxylin purple
        if r > 15:
            ir, ic = ellipse(cy, cx, r * 0.55, r * 0.55, (height, width))
            image[ir, ic] = [245, 235, 240]  # lumen
        next_id += 1
    image += rng.normal(0, 12, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8), label


def write_glas_like(
    root: str | Path,
    counts: dict[str, int],
    size: tuple[int, int] = (96, 128),
    seed: int = 0,
    kind: str = "glands",
) -> Path:
    """A small dataset in the GlaS layout (``<split>_<k>.bmp`` + ``<split>_<k>_anno.bmp``).

    kind: "glands" (few large objects) or "nuclei" (many small ones).
    """
    from PIL import Image

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    objects, radius = {"glands": (8, (10, 30)), "nuclei": (80, (3, 7))}[kind]
    for s, (split, n) in enumerate(sorted(counts.items())):
        for k in range(1, n + 1):
            image, label = tissue_image(*size, objects, seed * 1000 + s * 100 + k, radius)
            Image.fromarray(image).save(root / f"{split}_{k}.bmp")
            Image.fromarray(label.astype(np.uint8)).save(root / f"{split}_{k}_anno.bmp")
    return root
