"""The sam masker's post-processing on the host: the survivors of each filter first.

Where the reference spends its time on a CPU (1000 x 1000 image, 32 x 32 prompts, tiny
SAM, ~1100 masks kept), and what is done here instead (the speed-up is ``make bench``'s
masker_speedup, measured by ``bench_masker``):

- it upscales every low-res mask of a 64-prompt batch at once (768 MB of fresh float
  memory per batch) and only then drops those whose predicted IoU is too low. Here the
  IoU filter runs first and the survivors are upscaled a few at a time into memory that
  stays in cache, each as its own 1-channel image (``upscale_logits``: torch's kernel
  for that rounds as its multi-threaded one for the reference's 3-channel batches);
- its stability score sums whole bool batches with torch (a third of its time); here
  numpy compares and counts one mask at a time, the same integer counts;
- it encodes each kept mask to an uncompressed RLE (Python list per mask), deep-copies
  those lists when it concatenates batches and crops, and decodes them again with a
  Python loop per run (about half its time); here kept masks wait bit-packed (on a GPU:
  as bool tensors on the device) and are unpacked once into the output array;
- it does all of this in the caller's thread (torch's upscaling on every core, numpy's
  counts on one). Here, on a CPU with n torch threads, n threads (``SamMasker.host_pool``)
  post-process a batch's sub-batches side by side, each running torch with one thread
  (an OpenMP thread count is per thread, and a 1-channel upscaling rounds alike at any
  count), and share the unpacking of the output; results come back in order.

Everything that decides which masks are kept (the model calls with the same point
batches, ``postprocess_masks``, the thresholds, ``is_box_near_crop_edge`` and torchvision's
``batched_nms`` per crop and across crops) is the reference's own code on the same inputs.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np
import torch
from segment_anything.utils.amg import is_box_near_crop_edge

from precompute.maskers.sam_masks import (
    Candidates,
    PackedMasks,
    mask_boxes,
    unpack_rows,
    upscale_logits,
)
from precompute.types import MaskSet

# Masks unpacked at a time into the output: a few megabytes, in cache.
UNPACK_ROWS = 8

if TYPE_CHECKING:
    from precompute.maskers.sam import Encoded, SamMasker


@functools.cache
def threads_per_thread() -> bool:
    """Whether ``torch.set_num_threads`` sets the calling thread's count only (OpenMP)."""
    return "parallel backend: OpenMP" in torch.__config__.parallel_info()


def _one_torch_thread() -> None:
    """This thread's torch runs single-threaded (asked once, so torch's first use in the
    thread does not set it again from the process-wide count)."""
    torch.set_num_threads(1)
    torch.get_num_threads()


def start_host_threads(threads: int) -> ThreadPoolExecutor:
    """``threads`` threads, each running torch with one thread, all started now.

    torch.set_num_threads also sets the count that threads started later take (and
    MKL's): every thread of the pool is started at once, then the process is given back
    the caller's count (``threads``)."""
    pool = ThreadPoolExecutor(threads, "samaug-postprocess", _one_torch_thread)
    started = threading.Barrier(threads)
    list(pool.map(lambda _: started.wait(), range(threads)))
    torch.set_num_threads(threads)
    return pool


def process_batch(
    masker: SamMasker,
    points: np.ndarray,
    encoded: Encoded,
    crop_box: list[int],
    orig_size: tuple[int, ...],
    chunks: list[tuple[torch.Tensor | PackedMasks, list[int]]],
    timings: dict[str, float],
) -> Candidates:
    """One decoder call on a batch of prompts (XY pixels in the crop, float64): the
    masks it keeps, in the reference's order."""
    model, s = masker.model, masker.settings
    start = time.perf_counter()
    low_res, iou_preds = masker.decode_points(points, encoded)
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
        return Candidates.empty(masker.device)
    # Only masks that pass the IoU filter are upscaled, a few at a time (each its own
    # 1-channel image: its upscaled logits depend on nothing but itself).
    crop_h, crop_w = encoded.original_size
    step = masker.masks_per_upscale(crop_h, crop_w)
    threshold, offset = model.mask_threshold, s.stability_score_offset
    orig_box = [0, 0, orig_size[1], orig_size[0]]
    low_res = low_res.flatten(0, 1)
    found: list[tuple[torch.Tensor, ...]] = []

    def survivors(index: torch.Tensor):
        logits = upscale_logits(model, low_res[index], encoded.input_size, encoded.original_size)
        t = masker.threshold(logits, threshold, offset, s.stability_score_thresh)
        del logits
        boxes = mask_boxes(t.rows, t.cols)
        binary, area, index, score = t.binary, t.area, index[t.kept], t.stability_score[t.kept]
        near_edge = is_box_near_crop_edge(boxes, crop_box, orig_box)
        if torch.any(near_edge):
            keep = torch.nonzero(~near_edge).flatten()
            binary, area, index, score, boxes = (
                v[keep] for v in (binary, area, index, score, boxes)
            )
        return binary, area, index, score, boxes

    parts = [candidates[first : first + step] for first in range(0, len(candidates), step)]
    for binary, area, index, score, boxes in masker.host_map(survivors, parts):
        if len(index) == 0:
            continue
        chunk = torch.full((len(index),), len(chunks))
        found.append((index, chunk, torch.arange(len(index)), score, boxes, area))
        chunks.append((binary, crop_box))
    timings["postprocess"] += time.perf_counter() - after_decoder
    if not found:
        return Candidates.empty(masker.device)
    # Candidates were upscaled in the reference's order: by prompt, then by output.
    index, chunk, row, score, boxes, area = (torch.cat(v) for v in zip(*found, strict=True))
    return Candidates(
        chunk=chunk,
        row=row,
        iou_preds=iou_preds[index],
        stability_score=score,
        boxes=boxes,
        points=torch.as_tensor(points)[(index // per_point).cpu()],
        area=area,
    )


def to_maskset(
    kept: Candidates,
    chunks: list[tuple[torch.Tensor | PackedMasks, list[int]]],
    orig_size: tuple[int, ...],
    host_map: Callable = map,
) -> MaskSet:
    """The kept masks as a MaskSet: one gather per upscaled sub-batch into the
    (N, H, W) output, placing each crop's masks in the image frame; ``host_map``
    (``SamMasker.host_map``) spreads the unpacking over threads."""
    height, width = orig_size
    n = len(kept)
    chunk = kept.chunk.numpy()
    row = kept.row.numpy()
    whole = [0, 0, width, height]
    if all(isinstance(m, PackedMasks) and list(box) == whole for m, box in chunks):
        # One crop (the default): gather the packed rows in order and unpack them once,
        # straight into the output (no zeroed array written twice).
        bits = np.empty((n, (height * width + 7) // 8), np.uint8)
        for c in np.unique(chunk):
            at = np.flatnonzero(chunk == c)
            bits[at] = chunks[c][0].bits[row[at]]
        flat = np.empty((n, height * width), np.uint8)

        def unpack(first: int) -> None:
            rows = slice(first, first + UNPACK_ROWS)
            flat[rows] = np.unpackbits(bits[rows], axis=1, count=height * width)

        # numpy unpacks without the GIL: the threads share the work (and the page faults
        # of the fresh output).
        list(host_map(unpack, range(0, n, UNPACK_ROWS)))
        masks = flat.view(bool).reshape(n, height, width)
    else:
        masks = np.zeros((n, height, width), bool)
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
