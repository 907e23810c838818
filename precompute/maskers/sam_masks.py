"""The sam masker's per-mask arithmetic: thresholds, stability scores, boxes, packing.

Each function gives exactly the values segment_anything's automatic mask generator computes
for the same logits (see ``masker_sam`` for why they are computed differently).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from precompute.types import MaskSet


@dataclass
class Candidates:
    """Masks kept so far: per-mask values, and where each mask's pixels are.

    Mask i is row[i] of ``chunks[chunk[i]]``, a list the masker keeps of (masks, crop_box):
    the masks of one upscaled sub-batch in its crop's frame, a (n, h, w) bool tensor or
    PackedMasks.
    """

    chunk: torch.Tensor  # (N,) int64, CPU
    row: torch.Tensor  # (N,) int64, CPU
    iou_preds: torch.Tensor  # (N,) float32
    stability_score: torch.Tensor  # (N,) float32
    boxes: torch.Tensor  # (N, 4) int64 XYXY, crop frame until uncropped
    points: torch.Tensor  # (N, 2) float64 XY, crop frame until uncropped
    area: torch.Tensor  # (N,) int64
    crop_boxes: torch.Tensor | None = None  # (N, 4) int64 XYXY, once uncropped

    def __len__(self) -> int:
        return int(self.chunk.shape[0])

    def select(self, keep: torch.Tensor) -> Candidates:
        """The candidates at keep (bool mask or indices), in keep's order."""
        values = {}
        for name, value in vars(self).items():
            if value is not None:
                value = value[keep.to(value.device)]
            values[name] = value
        return Candidates(**values)

    @staticmethod
    def empty(device: torch.device) -> Candidates:
        index = torch.zeros(0, dtype=torch.int64)
        return Candidates(
            chunk=index,
            row=index,
            iou_preds=torch.zeros(0, device=device),
            stability_score=torch.zeros(0, device=device),
            boxes=torch.zeros((0, 4), dtype=torch.int64, device=device),
            points=torch.zeros((0, 2), dtype=torch.float64),
            area=torch.zeros(0, dtype=torch.int64, device=device),
        )

    @staticmethod
    def cat(parts: list[Candidates]) -> Candidates:
        values = {}
        for name, first in vars(parts[0]).items():
            values[name] = None if first is None else torch.cat([getattr(p, name) for p in parts])
        return Candidates(**values)


@dataclass
class PackedMasks:
    """k masks of height x width pixels, 8 to a byte (``np.packbits`` order), on the CPU.

    Kept masks wait for the final NMS in this form: an eighth of the memory, so the
    masker's peak is little more than its output.
    """

    bits: np.ndarray  # (k, ceil(height * width / 8)) uint8
    height: int
    width: int

    @staticmethod
    def pack(masks: np.ndarray) -> PackedMasks:
        """(k, H, W) bool -> PackedMasks."""
        k, height, width = masks.shape
        bits = np.packbits(masks.reshape(k, height * width), axis=1)
        return PackedMasks(bits, height, width)

    def __len__(self) -> int:
        return len(self.bits)

    def __getitem__(self, index: torch.Tensor) -> PackedMasks:
        return PackedMasks(self.bits[index.numpy()], self.height, self.width)

    def unpack(self, rows: np.ndarray) -> np.ndarray:
        """The masks at rows, (n, H, W) bool."""
        pixels = self.height * self.width
        flat = np.unpackbits(self.bits[rows], axis=1, count=pixels).view(bool)
        return flat.reshape(len(rows), self.height, self.width)


def unpack_rows(masks: torch.Tensor | PackedMasks, rows: np.ndarray) -> np.ndarray:
    """Stored masks (a bool tensor on any device, or packed) at rows -> (n, H, W) bool."""
    if isinstance(masks, PackedMasks):
        return masks.unpack(rows)
    return masks[torch.from_numpy(rows).to(masks.device)].cpu().numpy()


@dataclass
class Thresholded:
    """What the j masks looked at in one upscaled sub-batch give, on the logits' device.

    stability_score: (j,) float32, as the reference computes it except 0 for 0 / 0.
    kept: (k,) int64 positions among the j of the masks that pass the stability threshold.
    binary: those masks at the mask threshold, (k, H, W) bool (a tensor from
        threshold_torch, PackedMasks from threshold_numpy). area: (k,) int64.
    rows, cols: (k, H) and (k, W) bool, whether a row / column holds a mask pixel.
    """

    stability_score: torch.Tensor
    kept: torch.Tensor
    binary: torch.Tensor | PackedMasks
    area: torch.Tensor
    rows: torch.Tensor
    cols: torch.Tensor


def _stability(intersections: torch.Tensor, unions: torch.Tensor, keep_at: float):
    """The reference's division of its int32 counts (0 / 0 gives 0 here, NaN there) and,
    as the reference filters, the positions of scores >= keep_at (all when keep_at <= 0)."""
    score = torch.nan_to_num(intersections.to(torch.int32) / unions.to(torch.int32), nan=0.0)
    if keep_at > 0.0:
        return score, torch.nonzero(score >= keep_at).flatten()
    return score, torch.arange(len(score), device=score.device)


def threshold_torch(
    logits: torch.Tensor, threshold: float, offset: float, keep_at: float
) -> Thresholded:
    """(j, H, W) float32 logits -> Thresholded, with torch ops (any device)."""
    intersections = (logits > threshold + offset).sum((-2, -1))
    unions = (logits > threshold - offset).sum((-2, -1))
    score, kept = _stability(intersections, unions, keep_at)
    binary = logits[kept] > threshold
    return Thresholded(
        stability_score=score,
        kept=kept,
        binary=binary,
        area=binary.sum((-2, -1)),
        rows=binary.any(-1),
        cols=binary.any(-2),
    )


def threshold_numpy(
    logits: torch.Tensor, threshold: float, offset: float, keep_at: float
) -> Thresholded:
    """The same as threshold_torch, for logits on the CPU, the kept masks packed.

    On a CPU numpy's comparisons and ``count_nonzero`` are several times faster than
    torch's. Each call is vectorised over one mask's pixels (``count_nonzero`` with an axis
    would be far slower), so a sub-batch stays in cache between the passes.
    """
    values = logits.numpy()
    height, width = values.shape[1:]
    # torch compares float32 logits with a Python number after rounding it to float32.
    high, low = np.float32(threshold + offset), np.float32(threshold - offset)
    counts = np.empty((2, len(values)), np.int64)
    # One scratch mask for every comparison: a fresh one per mask is a megabyte-sized
    # allocation (and, where malloc returns it to the system, page faults) each time.
    above = np.empty((height, width), bool)
    for i, mask in enumerate(values):
        counts[0, i] = np.count_nonzero(np.greater(mask, high, out=above))
        counts[1, i] = np.count_nonzero(np.greater(mask, low, out=above))
    score, kept = _stability(torch.from_numpy(counts[0]), torch.from_numpy(counts[1]), keep_at)
    binary = np.empty((len(kept), height, width), bool)
    area = np.empty(len(kept), np.int64)
    for j, i in enumerate(kept.tolist()):
        np.greater(values[i], np.float32(threshold), out=binary[j])
        area[j] = np.count_nonzero(binary[j])
    return Thresholded(
        stability_score=score,
        kept=kept,
        binary=PackedMasks.pack(binary),
        area=torch.from_numpy(area),
        rows=torch.from_numpy(binary.any(axis=2)),
        cols=torch.from_numpy(binary.any(axis=1)),
    )


def upscale_logits(
    model, low_res: torch.Tensor, input_size: tuple[int, int], original_size: tuple[int, int]
) -> torch.Tensor:
    """(k, h, w) low-res mask logits -> (k, H, W) float32 logits at ``original_size``:
    ``Sam.postprocess_masks``, each mask its own 1-channel image.

    The reference upscales (B, 3, h, w) batches. On a CPU with one torch thread, torch
    takes another kernel for 3-channel inputs (channels-last: different rounding, and
    2.5x the time); with two or more threads it takes the kernel that 1-channel inputs
    take with any thread count. So these logits are, bit for bit, the reference's with
    two or more threads, whatever this process's thread count; a single-threaded
    reference can differ in the last bits. (On a GPU, torch's kernel for contiguous
    inputs computes each output pixel alike whatever the channel count, by its source;
    no GPU has checked it here.)
    """
    return model.postprocess_masks(low_res[:, None], input_size, original_size)[:, 0]


def _first_last(present: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, L) bool -> (first, last) index of a True per row, each (n,) int64; meaningless
    (0 and L - 1) for a row without one."""
    as_int = present.to(torch.uint8)
    first = as_int.argmax(-1)
    last = present.shape[-1] - 1 - as_int.flip(-1).argmax(-1)
    return first, last


def mask_boxes(rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """Masks given by their rows (n, H) and columns (n, W) that hold a True pixel -> (n, 4)
    int64 XYXY inclusive boxes, zeros for an empty mask: ``batched_mask_to_box``'s values."""
    top, bottom = _first_last(rows)
    left, right = _first_last(cols)
    boxes = torch.stack([left, top, right, bottom], dim=-1)
    return boxes * rows.any(-1, keepdim=True)


def annotations_to_maskset(anns: list[dict], size: tuple[int, int]) -> MaskSet:
    """``SamAutomaticMaskGenerator``'s (or SAM 2's) ``binary_mask`` annotations -> MaskSet:
    XYWH boxes to XYXY inclusive, a NaN stability score (empty low-threshold union) to 0."""
    if not anns:
        return MaskSet.empty(*size)
    xywh = np.array([a["bbox"] for a in anns], np.int64).reshape(-1, 4)
    stability = np.array([a["stability_score"] for a in anns], np.float32)
    return MaskSet(
        masks=np.stack([a["segmentation"] for a in anns]).astype(bool),
        stability_score=np.nan_to_num(stability, nan=0.0),
        predicted_iou=np.array([a["predicted_iou"] for a in anns], np.float32),
        box=np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1).astype(np.int32),
        point=np.array([a["point_coords"][0] for a in anns], np.float32).reshape(-1, 2),
        area=np.array([a["area"] for a in anns], np.int64),
    )
