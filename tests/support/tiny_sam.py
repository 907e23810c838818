"""The tests' SAM: ``precompute.maskers.random_sam``'s tiny shape, the generator settings
that let its random weights keep many masks, a tiny SAM whose decoder makes blobs around
the prompts (``blob_sam``), and what the masker tests compare with (``assert_identical``)."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from precompute.maskers.random_sam import build_random_sam, save_random_sam
from precompute.types import MaskSet

# Generator settings that let a random tiny SAM keep many masks (see build_random_sam).
TINY_SAM_SETTINGS = {
    "points_per_side": 8,
    "pred_iou_thresh": 0.0,
    "stability_score_thresh": 0.0,
    "box_nms_thresh": 1.0,
}


def build_tiny_sam(**kwargs):
    """A tiny random SAM in eval mode (``build_random_sam("tiny", ...)``)."""
    return build_random_sam("tiny", **kwargs)


def save_tiny_sam(path: Path, **kwargs) -> Path:
    """Save a tiny random SAM's state dict as a checkpoint file at ``path``."""
    return save_random_sam(path, "tiny", **kwargs)


class BlobDecoder(torch.nn.Module):
    """Stands in for SAM's mask decoder (same call, same outputs) with masks around the
    prompt: the similarity of the prompt's embedding to the positional encoding of every
    low-res pixel, at three levels, plus a little of the image embedding.
    """

    def __init__(self, sam, levels=(0.1, 0.25, 0.4), gain=20.0):
        super().__init__()
        self.pe_layer = sam.prompt_encoder.pe_layer
        self.side = 4 * sam.prompt_encoder.image_embedding_size[0]
        self.register_buffer("levels", torch.tensor(levels)[None, :, None, None])
        self.gain = gain

    def forward(self, image_embeddings, image_pe, sparse_prompt_embeddings, **_):
        size = (self.side, self.side)
        pe = self.pe_layer(size)
        sim = torch.einsum("bc,chw->bhw", sparse_prompt_embeddings[:, 0], pe) / len(pe)
        texture = F.interpolate(image_embeddings.mean(1, keepdim=True), size, mode="bilinear")
        masks = self.gain * (sim[:, None] - self.levels + 0.05 * texture)
        # Small masks "predict" a high IoU, so an IoU threshold drops the large ones.
        return masks, 1 - torch.sigmoid(masks).mean((-2, -1))


def blob_sam():
    sam = build_tiny_sam()
    sam.mask_decoder = BlobDecoder(sam)
    return sam


def assert_identical(ours: MaskSet, ref: MaskSet) -> None:
    for f in fields(MaskSet):
        a, b = getattr(ours, f.name), getattr(ref, f.name)
        assert a.dtype == b.dtype and a.shape == b.shape, f.name
        np.testing.assert_array_equal(a, b, err_msg=f.name)


def noise(shape, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (*shape, 3), dtype=np.uint8)


def tiny_sams() -> dict:
    """The masker tests' two SAMs: "speckle" (a tiny random SAM: speckled masks spanning the
    image) and "blobs" (``blob_sam``: masks around each prompt)."""
    return {"speckle": build_tiny_sam(), "blobs": blob_sam()}


def masker_settings(**kwargs):
    """SamMaskerSettings at 8 x 8 points that filter nothing by IoU or stability, updated
    with ``kwargs``."""
    from precompute.maskers.sam_settings import SamMaskerSettings

    base = dict(points_per_side=8, pred_iou_thresh=0.0, stability_score_thresh=0.0)
    return SamMaskerSettings(**{**base, **kwargs})
