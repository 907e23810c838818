"""How far two mask sets of the same image agree: what bf16, fp16 or a compiled model
changes against fp32, and what ``samaug store compare`` reports for two stores.

Mask i of A is matched when some mask of B covers it at IoU >= ``iou`` (0.9); B's masks
without such a partner in A are gained, A's without one in B lost. The priors are compared
pixel by pixel (the largest absolute difference of the segmentation prior, the fraction of
pixels whose boundary prior differs).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


def best_ious(a: np.ndarray, b: np.ndarray, chunk: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """(N, H, W) and (M, H, W) bool masks -> each mask's best IoU with the other set,
    (N,) and (M,) float64 (0 where the other set is empty or both masks are)."""
    n, m = len(a), len(b)
    best_a, best_b = np.zeros(n), np.zeros(m)
    if n == 0 or m == 0:
        return best_a, best_b
    # Pixel counts are exact in float64 matrix products (any image below 2**53 pixels).
    flat_b = torch.from_numpy(b.reshape(m, -1)).to(torch.float64)
    area_b = flat_b.sum(1)
    for start in range(0, n, chunk):
        flat_a = torch.from_numpy(a[start : start + chunk].reshape(-1, flat_b.shape[1]))
        flat_a = flat_a.to(torch.float64)
        inter = flat_a @ flat_b.T
        union = flat_a.sum(1)[:, None] + area_b[None, :] - inter
        iou = torch.where(union > 0, inter / union.clamp(min=1), 0.0).numpy()
        best_a[start : start + len(iou)] = iou.max(1)
        best_b = np.maximum(best_b, iou.max(0))
    return best_a, best_b


@dataclass
class Agreement:
    """Totals over the images compared (see the module docstring)."""

    images: int = 0
    masks_a: int = 0
    masks_b: int = 0
    matched: int = 0  # masks of A with a partner in B
    gained: int = 0  # masks of B without a partner in A
    lost: int = 0  # masks of A without a partner in B
    max_seg_prior_difference: float = 0.0
    boundary_pixels_differing: float = 0.0  # fraction, over every pixel compared
    pixels: int = 0

    @property
    def matched_fraction(self) -> float:
        return self.matched / self.masks_a if self.masks_a else 1.0

    def add(self, masks_a, masks_b, priors_a, priors_b, iou: float = 0.9) -> None:
        """One image: (N, H, W) and (M, H, W) bool masks, (seg, boundary) priors of each."""
        best_a, best_b = best_ious(masks_a, masks_b)
        matched = int((best_a >= iou).sum())
        self.images += 1
        self.masks_a += len(best_a)
        self.masks_b += len(best_b)
        self.matched += matched
        self.lost += len(best_a) - matched
        self.gained += int((best_b < iou).sum())
        seg = np.abs(priors_a[0].astype(np.float64) - priors_b[0].astype(np.float64))
        self.max_seg_prior_difference = max(self.max_seg_prior_difference, float(seg.max()))
        pixels = priors_a[1].size
        differing = np.count_nonzero(priors_a[1] != priors_b[1])
        total = self.pixels + pixels
        self.boundary_pixels_differing = (
            self.boundary_pixels_differing * self.pixels + differing
        ) / total
        self.pixels = total

    def lines(self) -> list[tuple[str, object]]:
        """(name, value) of every figure, as ``samaug store compare`` prints them."""
        return [
            ("images", self.images),
            ("masks_a", self.masks_a),
            ("masks_b", self.masks_b),
            ("matched_fraction_iou_0.9", round(self.matched_fraction, 4)),
            ("masks_gained", self.gained),
            ("masks_lost", self.lost),
            ("max_seg_prior_difference", float(f"{self.max_seg_prior_difference:.4g}")),
            ("boundary_pixels_differing", float(f"{self.boundary_pixels_differing:.4g}")),
        ]
