"""The SAMAug priors computed with torch on any device, from bit-packed masks.

The same definitions and the same values as ``precompute.priors.compute_priors`` (a test
shows them equal), for a masker that keeps its masks on a GPU: the masks never come back
to the host unpacked, and the priors come back as two (H, W) arrays.

- segmentation prior: the stability scores of the masks covering each pixel, added in
  float64 in mask order. Every mask adds over the whole frame (0 outside it, and x + 0 is
  x), so each pixel sees the very additions of the reference, in its order.
- boundary prior: as ``compute_priors``, a pixel is on a thick boundary when the set of
  masks covering it differs from a 4-neighbour's; sets of 64 masks are int64 bit sets.
"""

from __future__ import annotations

import torch

_SHIFTS = torch.arange(7, -1, -1, dtype=torch.uint8)  # np.packbits' bit order, MSB first


def pack_rows(masks: torch.Tensor) -> torch.Tensor:
    """(N, H, W) bool -> (N, H, ceil(W / 8)) uint8, ``np.packbits(masks, axis=-1)``."""
    n, height, width = masks.shape
    padded = torch.nn.functional.pad(masks.to(torch.uint8), (0, (-width) % 8))
    bits = padded.view(n, height, padded.shape[-1] // 8, 8) << _SHIFTS.to(masks.device)
    return bits.sum(-1, dtype=torch.uint8)


def unpack_rows(bits: torch.Tensor, width: int) -> torch.Tensor:
    """(N, H, ceil(W / 8)) uint8 -> (N, H, W) bool; the inverse of ``pack_rows``."""
    n, height, packed = bits.shape
    values = (bits[..., None] >> _SHIFTS.to(bits.device)) & 1
    return values.view(n, height, packed * 8)[..., :width].bool()


def _mark_changes(words: torch.Tensor, out: torch.Tensor) -> None:
    """Set out[p] where words[p] differs from a 4-neighbour's (the image edge replicated)."""
    vertical = words[1:] != words[:-1]
    out[1:] |= vertical
    out[:-1] |= vertical
    horizontal = words[:, 1:] != words[:, :-1]
    out[:, 1:] |= horizontal
    out[:, :-1] |= horizontal


@torch.no_grad()
def priors_from_bits(
    bits: torch.Tensor, width: int, scores: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Segmentation and boundary priors of one image, on the masks' device.

    bits: (N, H, ceil(W / 8)) uint8 packed masks (``pack_rows``). width: W. scores: (N,)
    stability scores (any float dtype, taken at float64). Returns seg_prior (H, W) float32
    and boundary_prior (H, W) uint8 in {0, 1}, equal to ``compute_priors``'.
    """
    n, height = bits.shape[:2]
    device = bits.device
    scores = scores.to(device=device, dtype=torch.float64)
    seg = torch.zeros((height, width), dtype=torch.float64, device=device)
    boundary = torch.zeros((height, width), dtype=torch.bool, device=device)
    for start in range(0, n, 64):
        masks = unpack_rows(bits[start : start + 64], width)
        words = torch.zeros((height, width), dtype=torch.int64, device=device)
        for j in range(len(masks)):
            seg.add_(torch.where(masks[j], scores[start + j], 0.0))
            words.bitwise_or_(masks[j].to(torch.int64) << j)
        _mark_changes(words, boundary)
    return seg.to(torch.float32), boundary.to(torch.uint8)
