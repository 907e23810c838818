"""The sam masker's post-processing on the device: no host synchronisation per prompt batch.

``SamMasker``'s own post-processing (``sam.py``) selects the masks that survive each filter
as soon as it can (``torch.nonzero``, ``torch.any``): on a CPU that is free and spares the
upscaling of most masks; on a GPU each selection waits for the device (several host
synchronisations per prompt batch). Here every mask of a decoder batch is upscaled
(``upscale_logits``: its logits are the reference's, bit for bit), and its stability
score, box, area and bit-packed pixels computed, with whether it survives the IoU,
stability and crop-edge filters kept as a flag: all queued on the device without
waiting. Once per crop the flags select the survivors (one synchronisation) for
torchvision's NMS, as the reference; once per image the priors are derived from the packed
masks (``precompute.prior_tensors``) and only packed masks, per-mask values and priors are
copied back. The output equals ``SamMasker``'s host path (a test runs both on the CPU).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from torchvision.ops.boxes import batched_nms, box_area

from precompute.maskers.sam_masks import mask_boxes, upscale_logits
from precompute.prior_tensors import pack_rows, priors_from_bits, unpack_rows
from precompute.types import Masked, PackedMaskSet


@dataclass
class Survivors:
    """Masks of one crop (or, once crops are merged, of the image), on the device.

    bits: (N, h, ceil(w / 8)) uint8 row-packed masks in the crop's frame (``pack_rows``).
    iou, score: (N,) float32. boxes: (N, 4) int64 XYXY inclusive, image frame once
    uncropped. area: (N,) int64. points: (N, 2) float64 XY pixels, image frame once
    uncropped. crop: the crop box (x0, y0, x1, y1) in the image.
    """

    bits: torch.Tensor
    iou: torch.Tensor
    score: torch.Tensor
    boxes: torch.Tensor
    area: torch.Tensor
    points: torch.Tensor
    crop: tuple[int, int, int, int]

    def select(self, keep: torch.Tensor) -> Survivors:
        values = (getattr(self, name)[keep] for name in ("bits", *PER_MASK))
        return Survivors(*values, crop=self.crop)


PER_MASK = ("iou", "score", "boxes", "area", "points")  # Survivors' per-mask values


def _flags(logits: torch.Tensor, threshold: float, offset: float):
    """(m, H, W) float32 logits -> stability score (m,) float32 (0 for 0 / 0), packed
    binary masks, area (m,) int64 and boxes (m, 4) int64, as the reference computes them."""
    intersections = (logits > threshold + offset).sum((-2, -1)).to(torch.int32)
    unions = (logits > threshold - offset).sum((-2, -1)).to(torch.int32)
    score = torch.nan_to_num(intersections / unions, nan=0.0)
    binary = logits > threshold
    boxes = mask_boxes(binary.any(-1), binary.any(-2))
    return score, pack_rows(binary), binary.sum((-2, -1)), boxes


def _near_crop_edge(boxes: torch.Tensor, crop: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """``is_box_near_crop_edge`` with the crop's and image's boxes already on the device
    (crop-frame boxes in; crop and image as (4,) float32 XYXY)."""
    uncropped = (boxes + crop[[0, 1, 0, 1]].long()).float()
    near_crop = torch.isclose(uncropped, crop[None, :], atol=20.0, rtol=0)
    near_image = torch.isclose(uncropped, image[None, :], atol=20.0, rtol=0)
    return torch.any(near_crop & ~near_image, dim=1)


def _batch(masker, low_res, iou, encoded, edges, first: int) -> list[torch.Tensor]:
    """One decoder batch's masks, all of them: [keep, bits, iou, score, boxes, area,
    prompt index]; the upscaling a few masks at a time (``upscale_bytes``)."""
    s, model = masker.settings, masker.model
    per_point = low_res.shape[1]
    low_res = low_res.flatten(0, 1)
    height, width = encoded.original_size
    step = masker.masks_per_upscale(height, width)
    parts = []
    for row in range(0, len(low_res), step):
        logits = upscale_logits(
            model, low_res[row : row + step], encoded.input_size, encoded.original_size
        )
        parts.append(_flags(logits, model.mask_threshold, s.stability_score_offset))
        del logits
    score, bits, area, boxes = (torch.cat(v) for v in zip(*parts, strict=True))
    iou = iou.flatten(0, 1)
    keep = ~_near_crop_edge(boxes, *edges)
    if s.pred_iou_thresh > 0.0:  # as the reference: 0 filters nothing
        keep &= iou > s.pred_iou_thresh
    if s.stability_score_thresh > 0.0:
        keep &= score >= s.stability_score_thresh
    prompt = first + torch.arange(len(iou), device=iou.device) // per_point
    return [keep, bits, iou, score, boxes, area, prompt]


def _crop(masker, crop_box, layer: int, encoded, image_box, timings) -> Survivors:
    """The survivors of one crop after its NMS, boxes and points in the image frame."""
    device = masker.device
    points = masker.crop_points(encoded, layer)
    transformed = masker.transform.apply_coords(points, encoded.original_size)
    on_device = torch.as_tensor(transformed, device=device)  # one copy per crop
    edges = (
        torch.tensor(crop_box, dtype=torch.float, device=device),
        torch.tensor(image_box, dtype=torch.float, device=device),
    )
    batches = []
    for first in range(0, len(points), masker.points_per_batch):
        start = time.perf_counter()
        low_res, iou = masker.decode_points(
            on_device[first : first + masker.points_per_batch], encoded
        )
        middle = time.perf_counter()
        batches.append(_batch(masker, low_res, iou, encoded, edges, first))
        timings["decoder"] += middle - start
        timings["postprocess"] += time.perf_counter() - middle
    start = time.perf_counter()
    keep, bits, iou, score, boxes, area, prompt = (torch.cat(v) for v in zip(*batches, strict=True))
    kept = torch.nonzero(keep).flatten()  # the crop's one synchronisation
    prompt = prompt[kept]
    offset = torch.tensor(crop_box[:2], dtype=torch.float64, device=device)
    found = Survivors(
        bits[kept],
        iou[kept],
        score[kept],
        boxes[kept],
        area[kept],
        torch.as_tensor(points, device=device)[prompt] + offset,
        tuple(crop_box),
    )
    nms = batched_nms(
        found.boxes.float(),
        found.iou,
        torch.zeros(len(kept), device=device),
        iou_threshold=masker.settings.box_nms_thresh,
    )
    found = found.select(nms)
    found.boxes = found.boxes + offset.long()[[0, 1, 0, 1]]
    timings["postprocess"] += time.perf_counter() - start
    return found


def _in_image_frame(found: Survivors, height: int, width: int) -> torch.Tensor:
    """A crop's packed masks moved into the image's frame (as ``uncrop_masks`` pads)."""
    x0, y0, x1, y1 = found.crop
    if (x0, y0, x1, y1) == (0, 0, width, height):
        return found.bits
    masks = unpack_rows(found.bits, x1 - x0)
    padded = torch.nn.functional.pad(masks, (x0, width - x1, y0, height - y1))
    return pack_rows(padded)


def decode_on_device(masker, image: np.ndarray, encoded: list, encoder_s: float) -> Masked:
    """``SamMasker.decode`` with every step on the masker's device: the image's Masked
    (PackedMaskSet in the reference's order, and the priors)."""
    timings = {"encoder": encoder_s, "decoder": 0.0, "postprocess": 0.0}
    height, width = image.shape[:2]
    crops = masker.crops(image)
    found = [
        _crop(masker, box, layer, enc, [0, 0, width, height], timings)
        for (box, layer), enc in zip(crops, encoded, strict=True)
    ]
    start = time.perf_counter()
    merged = Survivors(
        torch.cat([_in_image_frame(f, height, width) for f in found]),
        *(torch.cat([getattr(f, name) for f in found]) for name in PER_MASK),
        crop=(0, 0, width, height),
    )
    if len(crops) > 1:
        # As the reference: prefer masks from smaller crops.
        crop_boxes = torch.tensor(
            [f.crop for f in found for _ in range(len(f.iou))], dtype=torch.int64
        ).reshape(-1, 4)
        scores = (1 / box_area(crop_boxes)).to(masker.device)
        nms = batched_nms(
            merged.boxes.float(),
            scores,
            torch.zeros(len(scores), device=masker.device),
            masker.settings.crop_nms_thresh,
        )
        merged = merged.select(nms)
    seg, boundary = priors_from_bits(merged.bits, width, merged.score)
    masks = PackedMaskSet(
        bits=merged.bits.cpu().numpy(),
        width=width,
        stability_score=merged.score.cpu().numpy().astype(np.float32),
        predicted_iou=merged.iou.cpu().numpy().astype(np.float32),
        box=merged.boxes.cpu().numpy().astype(np.int32).reshape(-1, 4),
        point=merged.points.cpu().numpy().astype(np.float32).reshape(-1, 2),
        area=merged.area.cpu().numpy().astype(np.int64),
    )
    result = Masked(masks, seg.cpu().numpy(), boundary.cpu().numpy(), timings)
    timings["postprocess"] += time.perf_counter() - start
    masker.last_timings = timings
    return result
