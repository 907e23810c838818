"""The sam masker's faster paths agree with the reference: post-processing on the device
(``sam_device``: every step as on a GPU, run here on the CPU), the stream of images with the
encoder working ahead (``sam_stream``), the priors from packed masks (``prior_tensors``),
and ``prefetch``, the bounded queue between stages."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from precompute.maskers.sam import SamMasker, reference_generate
from precompute.prefetch import prefetch
from precompute.prior_tensors import pack_rows, priors_from_bits, unpack_rows
from precompute.priors import compute_priors
from precompute.types import Masked, PackedMaskSet
from samaug.demo.synthetic import random_masks
from tests.support.tiny_sam import assert_identical, noise, tiny_sams
from tests.support.tiny_sam import masker_settings as settings

pytestmark = pytest.mark.usefixtures("two_torch_threads")


@pytest.fixture(scope="module")
def models() -> dict:
    return tiny_sams()


def assert_priors_of(masked: Masked, reference) -> None:
    seg, boundary = compute_priors(reference.masks, reference.stability_score)
    np.testing.assert_array_equal(masked.seg_prior, seg)
    np.testing.assert_array_equal(masked.boundary_prior, boundary)


@pytest.mark.parametrize(
    ("name", "kwargs", "at_least"),
    [
        ("speckle", dict(box_nms_thresh=1.0), 150),
        ("speckle", dict(pred_iou_thresh=0.52, stability_score_thresh=0.06), 1),
        ("blobs", dict(box_nms_thresh=1.0, points_per_batch=10), 150),
        ("blobs", dict(pred_iou_thresh=0.9, stability_score_thresh=0.3), 25),
        ("blobs", dict(crop_n_layers=1, box_nms_thresh=0.7, crop_nms_thresh=0.5), 100),
    ],
)
def test_device_post_processing_equals_segment_anything(models, name, kwargs, at_least):
    model, image, s = models[name], noise((97, 131), seed=6), settings(**kwargs)
    masked = SamMasker(model, s, info={}, on_device=True).generate(image)
    reference = reference_generate(model, image, s)
    assert isinstance(masked.masks, PackedMaskSet) and len(masked.masks) >= at_least
    assert_identical(masked.masks, reference)
    assert_priors_of(masked, reference)
    np.testing.assert_array_equal(masked.masks.packed(), np.packbits(reference.masks, axis=-1))


@pytest.mark.parametrize("on_device", [False, True])
def test_stream_equals_one_image_at_a_time(models, on_device):
    model, s = models["blobs"], settings(box_nms_thresh=0.5)
    images = [noise((97, 131), seed=k) for k in range(3)]
    images.insert(1, np.zeros((5, 5), np.uint8))  # refused, the others go on
    masker = SamMasker(model, s, info={}, on_device=on_device)
    outcomes = list(masker.stream(enumerate(images)))
    assert [key for key, _ in outcomes] == [0, 1, 2, 3]
    assert "HxWx3 uint8" in str(outcomes[1][1])
    for key, masked in outcomes[:1] + outcomes[2:]:
        reference = reference_generate(model, images[key], s)
        assert isinstance(masked, Masked) and len(masked.masks) > 20
        assert_identical(masked.masks, reference)
        assert_priors_of(masked, reference)
        assert masked.seconds["encoder"] > 0


def test_image_batches_agree_with_single_images(models):
    # A batch of crops through the encoder rounds its GEMMs otherwise: the same masks,
    # predicted IoUs within float32 rounding.
    model, s = models["blobs"], settings(box_nms_thresh=0.5)
    images = [noise((97, 131), seed=k) for k in range(3)]
    batched = SamMasker(model, s, info={}, image_batch=2).stream(enumerate(images))
    for key, masked in batched:
        reference = reference_generate(model, images[key], s)
        np.testing.assert_array_equal(masked.masks.masks, reference.masks)
        np.testing.assert_allclose(masked.masks.predicted_iou, reference.predicted_iou, atol=1e-5)


def test_points_per_batch_auto_is_64_off_a_gpu(models):
    masker = SamMasker(models["speckle"], settings(points_per_batch="auto"), info={})
    assert masker.points_per_batch == 64
    assert masker.provenance()["settings"]["points_per_batch"] == "auto"


def test_priors_from_packed_masks_equal_compute_priors():
    masks, scores = random_masks(61, 83, 150, seed=0)
    bits = pack_rows(torch.from_numpy(masks))
    np.testing.assert_array_equal(bits.numpy(), np.packbits(masks, axis=-1))
    np.testing.assert_array_equal(unpack_rows(bits, 83).numpy(), masks)
    seg, boundary = priors_from_bits(bits, 83, torch.from_numpy(np.asarray(scores)))
    expected = compute_priors(masks, scores)
    np.testing.assert_array_equal(seg.numpy(), expected[0])
    np.testing.assert_array_equal(boundary.numpy(), expected[1])
    none = torch.zeros((0, 5, 9), dtype=torch.bool)
    empty = priors_from_bits(pack_rows(none), 9, torch.zeros(0))
    assert empty[0].shape == (5, 9) and not empty[0].any() and not empty[1].any()


def test_prefetch_keeps_order_raises_in_place_and_stays_bounded():
    produced = []

    def items():
        for k in range(50):
            produced.append(k)
            yield k

    stream = prefetch(items(), depth=2)
    assert next(stream) == 0
    threading.Event().wait(0.2)
    assert len(produced) <= 4  # one handed out, two queued, one waiting to be queued
    stream.close()

    def failing():
        yield 1
        raise ValueError("the third file is bad")

    got = []
    with pytest.raises(ValueError, match="third file"):
        for item in prefetch(failing()):
            got.append(item)
    assert got == [1]
