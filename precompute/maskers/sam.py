"""The ``sam`` masker: SAM's automatic mask generator, exact and fast.

``SamMasker.generate`` returns exactly what ``segment_anything.SamAutomaticMaskGenerator``
(``output_mode="binary_mask"``, same settings) returns: the same masks, stability scores,
predicted IoUs, boxes and points, in the same order. ``reference_generate`` runs that
generator itself; the tests show the two agree and ``bench_masker`` times them.

Where the reference spends its time on a CPU (1000 x 1000 image, 32 x 32 prompts, tiny
SAM, ~1100 masks kept), and what is done here instead (the speed-up is ``make bench``'s
masker_speedup, measured by ``bench_masker``):

- it upscales every low-res mask of a 64-prompt batch at once (768 MB of fresh float
  memory per batch) and only then drops those whose predicted IoU is too low. Here the
  IoU filter runs first and the survivors are upscaled a few at a time into memory that
  stays in cache, each in the channel it has in the reference's batch (torch's choice
  of CPU kernel depends on the channel count; see ``upscaling_layout``);
- its stability score sums whole bool batches with torch (a third of its time); here
  numpy compares and counts one mask at a time, the same integer counts;
- it encodes each kept mask to an uncompressed RLE (Python list per mask), deep-copies
  those lists when it concatenates batches and crops, and decodes them again with a
  Python loop per run (about half its time); here kept masks wait bit-packed (on a GPU:
  as bool tensors on the device) for one gather per sub-batch into the output array.

Everything that decides which masks are kept (the model calls with the same point
batches, ``postprocess_masks``, the thresholds, ``is_box_near_crop_edge`` and torchvision's
``batched_nms`` per crop and across crops) is the reference's own code on the same inputs.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from segment_anything import SamAutomaticMaskGenerator, SamPredictor
from segment_anything.modeling import Sam
from segment_anything.utils.amg import (
    batch_iterator,
    build_all_layer_point_grids,
    generate_crop_boxes,
    is_box_near_crop_edge,
    uncrop_boxes_xyxy,
    uncrop_points,
)
from torchvision.ops.boxes import batched_nms, box_area

from precompute.maskers.sam_loader import (
    architecture_name,
    build_sam_from_checkpoint,
    infer_sam_config,
)
from precompute.maskers.sam_masks import (
    Candidates,
    PackedMasks,
    mask_boxes,
    threshold_numpy,
    threshold_torch,
    unpack_rows,
    upscaling_layout,
)
from precompute.maskers.sam_settings import SamMaskerSettings
from precompute.types import MaskSet, SamaugError


def _check_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise SamaugError(
            f"the sam masker takes HxWx3 uint8 RGB images, got shape {image.shape} "
            f"dtype {image.dtype}"
        )
    if min(image.shape[:2]) < 1:
        raise SamaugError(f"the sam masker got an empty image of shape {image.shape}")
    return image


class SamMasker:
    """SAM's automatic mask generator, with exactly the reference's output, faster.

    model: a SAM (any architecture), moved to ``device`` and put in eval mode.
    settings: the generator's settings. info: what identifies the checkpoint
        ({"checkpoint", "checkpoint_sha256", "architecture", "config"}); inferred from
        the model, without a checkpoint path or hash, when not given.
    upscale_bytes: memory for the float logits upscaled at once, at least one prompt's
        masks (default: 24 MiB on a CPU, to stay in its last-level cache, 1 GiB on a
        GPU); results do not depend on it.

    One deliberate difference: the reference divides by zero for a mask whose
    low-threshold union is empty (stability score NaN); here its score is 0. With
    stability_score_thresh > 0 both drop such a mask; with 0 it is kept by both, and
    only the score differs. ``reference_generate`` maps the NaN to 0 as well.

    After each ``generate``, ``last_timings`` holds the seconds spent in the image
    encoder, the prompt encoder + mask decoder, and everything else ("postprocess").
    """

    def __init__(
        self,
        model: Sam,
        settings: SamMaskerSettings | None = None,
        device: str | torch.device | None = None,
        *,
        info: dict[str, Any] | None = None,
        upscale_bytes: int | None = None,
    ) -> None:
        self.settings = settings if settings is not None else SamMaskerSettings()
        self.model = (model if device is None else model.to(device)).eval()
        self.device = self.model.device
        self.predictor = SamPredictor(self.model)
        s = self.settings
        self.point_grids = build_all_layer_point_grids(
            s.points_per_side, s.crop_n_layers, s.crop_n_points_downscale_factor
        )
        if info is None:
            config = infer_sam_config(self.model.state_dict())
            info = {
                "checkpoint": None,
                "checkpoint_sha256": None,
                "architecture": architecture_name(config),
                "config": config,
            }
        self.info = info
        if upscale_bytes is None:
            upscale_bytes = (1 << 30) if self.device.type == "cuda" else (24 << 20)
        self.upscale_bytes = upscale_bytes
        self.last_timings: dict[str, float] = {}
        self._threshold = threshold_numpy if self.device.type == "cpu" else threshold_torch

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        settings: SamMaskerSettings | None = None,
        device: str | torch.device = "cpu",
    ) -> SamMasker:
        """A masker with the SAM stored at path (architecture inferred, see sam_loader)."""
        model, info = build_sam_from_checkpoint(path, str(device))
        return cls(model, settings, device, info=info)

    def provenance(self) -> dict[str, Any]:
        """What the store records: kind, every setting, and the checkpoint's identity."""
        return {"kind": "sam", "settings": asdict(self.settings), **self.info}

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    @torch.no_grad()
    def generate(self, image: np.ndarray) -> MaskSet:
        """HxWx3 uint8 RGB -> MaskSet in the image's pixel frame, in the reference's order.

        box: (N, 4) int32 XYXY inclusive. point: (N, 2) float32 XY pixel coordinates of the
        prompt. stability_score, predicted_iou: (N,) float32. area: (N,) int64.
        """
        image = _check_image(image)
        timings = {"encoder": 0.0, "decoder": 0.0, "postprocess": 0.0}
        orig_size = image.shape[:2]
        s = self.settings
        crop_boxes, layer_idxs = generate_crop_boxes(
            orig_size, s.crop_n_layers, s.crop_overlap_ratio
        )
        chunks: list[tuple[torch.Tensor | PackedMasks, list[int]]] = []
        parts = [
            self._process_crop(image, crop_box, layer_idx, chunks, timings)
            for crop_box, layer_idx in zip(crop_boxes, layer_idxs, strict=True)
        ]
        start = time.perf_counter()
        kept = Candidates.cat(parts)
        if len(crop_boxes) > 1:
            # As the reference: prefer masks from smaller crops.
            scores = (1 / box_area(kept.crop_boxes)).to(kept.boxes.device)
            keep = batched_nms(
                kept.boxes.float(), scores, torch.zeros(len(kept)), s.crop_nms_thresh
            )
            kept = kept.select(keep)
        result = self._to_maskset(kept, chunks, orig_size)
        timings["postprocess"] += time.perf_counter() - start
        self.last_timings = timings
        return result

    def _process_crop(
        self,
        image: np.ndarray,
        crop_box: list[int],
        layer_idx: int,
        chunks: list[tuple[torch.Tensor | PackedMasks, list[int]]],
        timings: dict[str, float],
    ) -> Candidates:
        x0, y0, x1, y1 = crop_box
        cropped = image[y0:y1, x0:x1, :]
        start = time.perf_counter()
        self.predictor.set_image(cropped)
        self._sync()
        timings["encoder"] += time.perf_counter() - start

        crop_size = cropped.shape[:2]
        points_for_image = self.point_grids[layer_idx] * np.array(crop_size)[None, ::-1]
        parts = [
            self._process_batch(points, crop_box, image.shape[:2], chunks, timings)
            for (points,) in batch_iterator(self.settings.points_per_batch, points_for_image)
        ]
        self.predictor.reset_image()

        start = time.perf_counter()
        data = Candidates.cat(parts)
        keep = batched_nms(
            data.boxes.float(),
            data.iou_preds,
            torch.zeros(len(data)),
            iou_threshold=self.settings.box_nms_thresh,
        )
        data = data.select(keep)
        data.boxes = uncrop_boxes_xyxy(data.boxes, crop_box)
        data.points = uncrop_points(data.points, crop_box)
        data.crop_boxes = torch.tensor([crop_box], dtype=torch.int64).expand(len(data), 4)
        timings["postprocess"] += time.perf_counter() - start
        return data

    def _process_batch(
        self,
        points: np.ndarray,
        crop_box: list[int],
        orig_size: tuple[int, ...],
        chunks: list[tuple[torch.Tensor | PackedMasks, list[int]]],
        timings: dict[str, float],
    ) -> Candidates:
        """One decoder call on a batch of prompts (XY pixels in the crop, float64): the
        masks it keeps, in the reference's order."""
        model, predictor, s = self.model, self.predictor, self.settings
        start = time.perf_counter()
        low_res, iou_preds = self._decode(points)
        after_decoder = time.perf_counter()
        timings["decoder"] += after_decoder - start

        per_point = low_res.shape[1]
        iou_preds = iou_preds.flatten(0, 1)
        if s.pred_iou_thresh > 0.0:  # as the reference: 0 filters nothing
            candidates = torch.nonzero(iou_preds > s.pred_iou_thresh).flatten()
        else:
            candidates = torch.arange(len(iou_preds), device=iou_preds.device)
        if len(candidates) == 0:
            timings["postprocess"] += time.perf_counter() - after_decoder
            return Candidates.empty(self.device)
        # Only masks that pass the IoU filter are upscaled, a few rows at a time: a mask's
        # upscaled logits depend on nothing but itself and its channel.
        slot_row, slot_channel = upscaling_layout(candidates, per_point)
        n_rows = int(slot_row.max()) + 1
        crop_h, crop_w = predictor.original_size
        step = max(1, self.upscale_bytes // (4 * per_point * crop_h * crop_w))
        threshold, offset = model.mask_threshold, s.stability_score_offset
        orig_box = [0, 0, orig_size[1], orig_size[0]]
        low_res = low_res.flatten(0, 1)
        found: list[tuple[torch.Tensor, ...]] = []
        for first in range(0, n_rows, step):
            here = torch.nonzero((slot_row >= first) & (slot_row < first + step)).flatten()
            row, channel, index = slot_row[here] - first, slot_channel[here], candidates[here]
            stacked = low_res.new_zeros((int(row.max()) + 1, per_point, *low_res.shape[-2:]))
            stacked[row, channel] = low_res[index]
            logits = model.postprocess_masks(
                stacked, predictor.input_size, predictor.original_size
            ).flatten(0, 1)
            t = self._threshold(
                logits, row * per_point + channel, threshold, offset, s.stability_score_thresh
            )
            del logits
            boxes = mask_boxes(t.rows, t.cols)
            binary, area, index, score = t.binary, t.area, index[t.kept], t.stability_score[t.kept]
            near_edge = is_box_near_crop_edge(boxes, crop_box, orig_box)
            if torch.any(near_edge):
                keep = torch.nonzero(~near_edge).flatten()
                binary, area, index, score, boxes = (
                    v[keep] for v in (binary, area, index, score, boxes)
                )
            if len(index) == 0:
                continue
            chunk = torch.full((len(index),), len(chunks))
            found.append((index, chunk, torch.arange(len(index)), score, boxes, area))
            chunks.append((binary, crop_box))
        timings["postprocess"] += time.perf_counter() - after_decoder
        if not found:
            return Candidates.empty(self.device)
        index, chunk, row, score, boxes, area = (torch.cat(v) for v in zip(*found, strict=True))
        # Back to the reference's order: by prompt, then by output.
        order = torch.argsort(index)
        index, score, boxes, area = index[order], score[order], boxes[order], area[order]
        order = order.cpu()
        return Candidates(
            chunk=chunk[order],
            row=row[order],
            iou_preds=iou_preds[index],
            stability_score=score,
            boxes=boxes,
            points=torch.as_tensor(points)[(index // per_point).cpu()],
            area=area,
        )

    def _decode(self, points: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """``predict_torch`` without its upscaling, on the very same inputs: the low-res
        mask logits (B, 3, h, w) and predicted IoUs (B, 3) of a batch of point prompts."""
        model, predictor = self.model, self.predictor
        transformed = predictor.transform.apply_coords(points, predictor.original_size)
        in_points = torch.as_tensor(transformed, device=self.device)
        in_labels = torch.ones(in_points.shape[0], dtype=torch.int, device=self.device)
        sparse, dense = model.prompt_encoder(
            points=(in_points[:, None, :], in_labels[:, None]), boxes=None, masks=None
        )
        low_res, iou_preds = model.mask_decoder(
            image_embeddings=predictor.features,
            image_pe=model.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=True,
        )
        self._sync()
        return low_res, iou_preds

    @staticmethod
    def _to_maskset(
        kept: Candidates,
        chunks: list[tuple[torch.Tensor | PackedMasks, list[int]]],
        orig_size: tuple[int, ...],
    ) -> MaskSet:
        """The kept masks as a MaskSet: one gather per upscaled sub-batch into the
        (N, H, W) output, placing each crop's masks in the image frame."""
        height, width = orig_size
        n = len(kept)
        masks = np.zeros((n, height, width), bool)
        chunk = kept.chunk.numpy()
        row = kept.row.numpy()
        for c in np.unique(chunk):
            at = np.flatnonzero(chunk == c)
            source, (x0, y0, x1, y1) = chunks[c]
            masks[at, y0:y1, x0:x1] = unpack_rows(source, row[at])
        return MaskSet(
            masks=masks,
            stability_score=kept.stability_score.cpu().numpy().astype(np.float32),
            predicted_iou=kept.iou_preds.cpu().numpy().astype(np.float32),
            box=kept.boxes.cpu().numpy().astype(np.int32).reshape(n, 4),
            point=kept.points.cpu().numpy().astype(np.float32).reshape(n, 2),
            area=kept.area.cpu().numpy().astype(np.int64),
        )


def reference_generate(
    model: Sam, image: np.ndarray, settings: SamMaskerSettings | None = None
) -> MaskSet:
    """segment_anything's own SamAutomaticMaskGenerator, its output as a MaskSet.

    The reference for tests and the benchmark: slow, but the definition of the output.
    image: HxWx3 uint8 RGB. Boxes come back from XYWH to XYXY inclusive; a NaN stability
    score (empty low-threshold union, see SamMasker) becomes 0.
    """
    settings = settings if settings is not None else SamMaskerSettings()
    image = _check_image(image)
    generator = SamAutomaticMaskGenerator(model, output_mode="binary_mask", **asdict(settings))
    anns = generator.generate(image)
    if not anns:
        return MaskSet.empty(*image.shape[:2])
    xywh = np.array([a["bbox"] for a in anns], np.int64).reshape(-1, 4)
    stability = np.array([a["stability_score"] for a in anns], np.float32)
    return MaskSet(
        masks=np.stack([a["segmentation"] for a in anns]),
        stability_score=np.nan_to_num(stability, nan=0.0),
        predicted_iou=np.array([a["predicted_iou"] for a in anns], np.float32),
        box=np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1).astype(np.int32),
        point=np.array([a["point_coords"][0] for a in anns], np.float32).reshape(-1, 2),
        area=np.array([a["area"] for a in anns], np.int64),
    )
