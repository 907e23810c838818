"""The ``sam`` masker: SAM's automatic mask generator, exact and fast.

``SamMasker.generate`` returns exactly what ``segment_anything.SamAutomaticMaskGenerator``
(``output_mode="binary_mask"``, same settings) returns: the same masks, stability scores,
predicted IoUs, boxes and points, in the same order. ``reference_generate`` runs that
generator itself; the tests show the two agree and ``bench_masker`` times them.

How: the image encoder and the prompts are the reference's own calls on the same inputs;
the masks are post-processed by ``sam_host`` (survivors first: fastest on a CPU, where it
is 6-8x the reference's speed) or ``sam_device`` (flags on the device, no host
synchronisation per batch: for GPUs). ``stream`` runs many images with the encoder working
ahead on a thread (``sam_stream``).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from segment_anything import SamAutomaticMaskGenerator
from segment_anything.modeling import Sam
from segment_anything.utils.amg import (
    batch_iterator,
    build_all_layer_point_grids,
    generate_crop_boxes,
    uncrop_boxes_xyxy,
    uncrop_points,
)
from segment_anything.utils.transforms import ResizeLongestSide
from torchvision.ops.boxes import batched_nms, box_area

from precompute.maskers.sam_host import (
    process_batch,
    start_host_threads,
    threads_per_thread,
    to_maskset,
)
from precompute.maskers.sam_loader import (
    architecture_name,
    build_sam_from_checkpoint,
    infer_sam_config,
)
from precompute.maskers.sam_masks import (
    Candidates,
    PackedMasks,
    annotations_to_maskset,
    threshold_numpy,
    threshold_torch,
)
from precompute.maskers.sam_settings import SamMaskerSettings, generator_settings
from precompute.types import MaskSet, SamaugError

AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class Encoded:
    """One crop of an image after the image encoder: features (1, C, h, w) float32 on the
    model's device; input_size, the (H, W) of the crop resized to the encoder's longest
    side (before padding); original_size, the crop's own (H, W)."""

    features: torch.Tensor
    input_size: tuple[int, int]
    original_size: tuple[int, int]


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


def points_per_batch(setting: int | str, model: Sam, device: torch.device) -> int:
    """Prompts per decoder call: the setting, or for "auto" 64 off a GPU and on one as many
    as half its free memory holds at an estimated 16 copies of the image embedding per
    prompt (the decoder's attention activations), in steps of 64 up to 1024."""
    if setting != "auto":
        return int(setting)
    if device.type != "cuda":
        return 64
    free, _ = torch.cuda.mem_get_info(device)
    encoder = model.image_encoder
    side = encoder.img_size // encoder.patch_embed.proj.kernel_size[0]
    per_prompt = 16 * 4 * model.prompt_encoder.embed_dim * side * side
    return int(min(1024, max(64, (free // 2 // per_prompt) // 64 * 64)))


class SamMasker:
    """SAM's automatic mask generator, with exactly the reference's output, faster.

    model: a SAM (any architecture), moved to ``device`` and put in eval mode.
    settings: the generator's settings. info: what identifies the checkpoint
        ({"checkpoint", "checkpoint_sha256", "architecture", "config"}); inferred from
        the model, without a checkpoint path or hash, when not given.
    upscale_bytes: memory for the float logits upscaled at once, at least one mask's
        (default: 24 MiB on a CPU, to stay in its last-level cache, 1 GiB on a
        GPU); results do not depend on it.
    compile: run the image encoder and mask decoder through ``torch.compile`` (incidental:
        not recorded; its agreement with the eager model is ``make bench``'s).
    image_batch: crops the image encoder takes at once in ``stream`` (incidental).
    on_device: post-process the decoder's masks with ``sam_device`` (every mask of a batch
        kept on the device with a keep flag, no host synchronisation per batch, priors on
        the device, only bit-packed masks copied back) instead of this module's selection
        of survivors first (fastest on a CPU). Default: on a GPU. Both give the same output.

    One deliberate difference: the reference divides by zero for a mask whose
    low-threshold union is empty (stability score NaN); here its score is 0. With
    stability_score_thresh > 0 both drop such a mask; with 0 it is kept by both, and
    only the score differs. ``reference_generate`` maps the NaN to 0 as well. And on a
    CPU the masks are upscaled as the reference upscales them with two or more torch
    threads, whatever the thread count (``sam_masks.upscale_logits``; the reference with
    one thread rounds its upscaled logits differently). The model's own outputs on a
    CPU can depend on the thread count too (the matrix products of a ViT-B do).

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
        compile: bool = False,
        image_batch: int = 1,
        on_device: bool | None = None,
    ) -> None:
        self.settings = settings if settings is not None else SamMaskerSettings()
        self.model = (model if device is None else model.to(device)).eval()
        self.device = self.model.device
        self.transform = ResizeLongestSide(self.model.image_encoder.img_size)
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
        self.threshold = threshold_numpy if self.device.type == "cpu" else threshold_torch
        self._pool: ThreadPoolExecutor | None = None
        self._pool_threads = 0
        self.image_batch = image_batch
        self.on_device = self.device.type == "cuda" if on_device is None else on_device
        self.points_per_batch = points_per_batch(s.points_per_batch, self.model, self.device)
        self.encoder, self.decoder = self.model.image_encoder, self.model.mask_decoder
        if compile:
            self.encoder = torch.compile(self.encoder, dynamic=False)
            self.decoder = torch.compile(self.decoder, dynamic=False)
        # Started now, while no other thread of ours runs torch (see host_pool).
        self.host_pool()

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        settings: SamMaskerSettings | None = None,
        device: str | torch.device = "cpu",
        **options,
    ) -> SamMasker:
        """A masker with the SAM stored at path (architecture inferred, see sam_loader);
        ``options`` as the constructor's (compile, image_batch, on_device)."""
        model, info = build_sam_from_checkpoint(path, str(device))
        return cls(model, settings, device, info=info, **options)

    def provenance(self) -> dict[str, Any]:
        """What the store records: kind, every setting, and the checkpoint's identity."""
        return {"kind": "sam", "settings": asdict(self.settings), **self.info}

    def host_pool(self) -> ThreadPoolExecutor | None:
        """Threads that post-process a batch's sub-batches (and unpack the output) side by
        side on a CPU, one per torch thread of the caller, each running torch with one
        thread; None on a GPU, with one thread, or where torch's thread count is not per
        thread (a parallel backend other than OpenMP). Results do not depend on it."""
        threads = torch.get_num_threads()
        if self.device.type != "cpu" or threads < 2 or not threads_per_thread():
            return None
        if self._pool is None or self._pool_threads != threads:
            if self._pool is not None:
                self._pool.shutdown(wait=False)
            # The constructor starts them, before any encoding thread runs torch.
            self._pool, self._pool_threads = start_host_threads(threads), threads
        return self._pool

    def host_map(self, fn, items):
        """``map(fn, items)`` in order, on ``host_pool``'s threads where there are some."""
        pool = self.host_pool()
        return (pool.map if pool is not None else map)(fn, items)

    def masks_per_upscale(self, height: int, width: int) -> int:
        """How many masks of height x width float logits fit ``upscale_bytes`` (at least 1)."""
        return max(1, self.upscale_bytes // (4 * height * width))

    def _sync(self) -> None:
        if self.device.type == "cuda" and not self.on_device:
            torch.cuda.synchronize(self.device)

    def autocast(self):
        """The context the model runs in: autocast to the settings' precision, or none."""
        dtype = AUTOCAST.get(self.settings.precision)
        return torch.autocast(self.device.type, dtype) if dtype else nullcontext()

    # ----------------------------------------------------------------- the image encoder

    def crops(self, image: np.ndarray) -> list[tuple[list[int], int]]:
        """(crop_box XYXY, layer index) of every crop of an HxWx3 image, as the reference."""
        s = self.settings
        boxes, layers = generate_crop_boxes(image.shape[:2], s.crop_n_layers, s.crop_overlap_ratio)
        return list(zip(boxes, layers, strict=True))

    def prepare(self, image: np.ndarray, crop_box: list[int]) -> tuple[torch.Tensor, tuple]:
        """The CPU's part of encoding a crop (``SamPredictor.set_image``'s resize): the crop
        resized to the encoder's longest side, (1, 3, h, w) uint8 on the CPU, and the crop's
        (H, W)."""
        x0, y0, x1, y1 = crop_box
        cropped = image[y0:y1, x0:x1, :]
        resized = torch.as_tensor(self.transform.apply_image(cropped))
        return resized.permute(2, 0, 1).contiguous()[None], cropped.shape[:2]

    @torch.no_grad()
    def encode(self, prepared: list[tuple[torch.Tensor, tuple]]) -> list[Encoded]:
        """The image encoder on prepared crops (``prepare``'s), all in one batch: what
        ``SamPredictor.set_torch_image`` computes for each."""
        inputs = [self.model.preprocess(x.to(self.device)) for x, _ in prepared]
        with self.autocast():
            features = self.encoder(torch.cat(inputs)).float()
        return [
            Encoded(features[k : k + 1], tuple(x.shape[-2:]), tuple(size))
            for k, (x, size) in enumerate(prepared)
        ]

    # ----------------------------------------------------------------- one image

    @torch.no_grad()
    def generate(self, image: np.ndarray) -> MaskSet:
        """HxWx3 uint8 RGB -> MaskSet in the image's pixel frame, in the reference's order.

        box: (N, 4) int32 XYXY inclusive. point: (N, 2) float32 XY pixel coordinates of the
        prompt. stability_score, predicted_iou: (N,) float32. area: (N,) int64.
        """
        image = _check_image(image)
        encoded, seconds = [], 0.0
        for crop_box, _ in self.crops(image):
            start = time.perf_counter()
            encoded += self.encode([self.prepare(image, crop_box)])
            self._sync()
            seconds += time.perf_counter() - start
        return self.decode(image, encoded, seconds)

    def stream(self, items: Iterable[tuple[Any, np.ndarray]]) -> Iterator[tuple[Any, Any]]:
        """``(key, Masked or the exception it raised)`` for each ``(key, image)``, in order,
        the images encoded ahead (``image_batch`` crops at a time) on a thread while the
        masks of earlier ones are post-processed: see ``sam_stream``."""
        from precompute.maskers.sam_stream import stream

        return stream(self, items)

    @torch.no_grad()
    def decode(self, image: np.ndarray, encoded: list[Encoded], encoder_s: float = 0.0):
        """Masks of an image from its crops' encodings (``crops`` order): a MaskSet, or
        with ``on_device`` a Masked (bit-packed masks and the priors)."""
        if self.on_device:
            from precompute.maskers.sam_device import decode_on_device

            return decode_on_device(self, image, encoded, encoder_s)
        timings = {"encoder": encoder_s, "decoder": 0.0, "postprocess": 0.0}
        orig_size = image.shape[:2]
        crops = self.crops(image)
        chunks: list[tuple[torch.Tensor | PackedMasks, list[int]]] = []
        parts = [
            self._process_crop(crop, orig_size, layer_idx, enc, chunks, timings)
            for (crop, layer_idx), enc in zip(crops, encoded, strict=True)
        ]
        start = time.perf_counter()
        kept = Candidates.cat(parts)
        if len(crops) > 1:
            # As the reference: prefer masks from smaller crops.
            scores = (1 / box_area(kept.crop_boxes)).to(kept.boxes.device)
            keep = batched_nms(
                kept.boxes.float(), scores, torch.zeros(len(kept)), self.settings.crop_nms_thresh
            )
            kept = kept.select(keep)
        result = to_maskset(kept, chunks, orig_size, self.host_map)
        timings["postprocess"] += time.perf_counter() - start
        self.last_timings = timings
        return result

    def crop_points(self, encoded: Encoded, layer_idx: int) -> np.ndarray:
        """The crop's prompts, (n, 2) float64 XY pixels in the crop, as the reference."""
        return self.point_grids[layer_idx] * np.array(encoded.original_size)[None, ::-1]

    def _process_crop(
        self,
        crop_box: list[int],
        orig_size: tuple[int, ...],
        layer_idx: int,
        encoded: Encoded,
        chunks: list[tuple[torch.Tensor | PackedMasks, list[int]]],
        timings: dict[str, float],
    ) -> Candidates:
        parts = [
            process_batch(self, points, encoded, crop_box, orig_size, chunks, timings)
            for (points,) in batch_iterator(
                self.points_per_batch, self.crop_points(encoded, layer_idx)
            )
        ]
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

    def decode_points(
        self, points: np.ndarray | torch.Tensor, encoded: Encoded
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``predict_torch`` without its upscaling, on the very same inputs: the low-res
        mask logits (B, 3, h, w) and predicted IoUs (B, 3), float32, of a batch of point
        prompts (XY pixels in the crop, float64; a tensor already on the device is taken
        as the transformed coordinates)."""
        model = self.model
        if isinstance(points, np.ndarray):
            points = self.transform.apply_coords(points, encoded.original_size)
        in_points = torch.as_tensor(points, device=self.device)
        in_labels = torch.ones(in_points.shape[0], dtype=torch.int, device=self.device)
        sparse, dense = model.prompt_encoder(
            points=(in_points[:, None, :], in_labels[:, None]), boxes=None, masks=None
        )
        with self.autocast():
            low_res, iou_preds = self.decoder(
                image_embeddings=encoded.features,
                image_pe=model.prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=True,
            )
        self._sync()
        return low_res.float(), iou_preds.float()


def reference_generate(
    model: Sam, image: np.ndarray, settings: SamMaskerSettings | None = None
) -> MaskSet:
    """segment_anything's own SamAutomaticMaskGenerator, its output as a MaskSet.

    The reference for tests and the benchmark: slow, but the definition of the output.
    image: HxWx3 uint8 RGB. Boxes come back from XYWH to XYXY inclusive; a NaN stability
    score (empty low-threshold union, see SamMasker) becomes 0. On a CPU, compare it with
    ``SamMasker`` at two or more torch threads (see ``sam_masks.upscale_logits``).
    """
    settings = settings if settings is not None else SamMaskerSettings()
    image = _check_image(image)
    generator = SamAutomaticMaskGenerator(
        model, output_mode="binary_mask", **generator_settings(settings)
    )
    return annotations_to_maskset(generator.generate(image), image.shape[:2])
