"""Sliding-window inference, test-time strategies and post-processing, on hand-made cases."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from precompute.types import SettingError
from train.choices import STRATEGIES
from train.inference.predictor import Predictor
from train.models import create_model
from train.postprocess import binary_from_probs, instances_from_probs
from train.protocols import get_protocol
from train.strategies import (
    all_strategies,
    combine,
    foreground_probability,
    image_certainty,
    select,
)
from train.windows import importance_map, sliding_window_probs, window_starts

# ---------------------------------------------------------------- sliding window


def pointwise_model(in_channels: int, num_classes: int, seed: int = 0) -> nn.Module:
    """A 1x1 conv with fixed random weights: every output pixel depends only on its input
    pixel, so windows of any size and position reproduce the full-image forward exactly."""
    torch.manual_seed(seed)
    conv = nn.Conv2d(in_channels, num_classes, 1)
    nn.init.normal_(conv.weight, std=2.0)
    nn.init.normal_(conv.bias, std=1.0)
    return conv


class LocalRamp(nn.Module):
    """Logits = input channel 0 + a fixed ramp over the window's own coordinates: the output
    depends on where a pixel sits in its window, so the blending weights show."""

    def forward(self, x):
        h, w = x.shape[-2:]
        ramp = torch.linspace(-2, 2, h)[:, None] + torch.linspace(-1, 3, w)[None, :]
        return x[:, :1] + ramp


def test_window_starts_cover_and_end_flush():
    assert window_starts(10, 4, 2) == [0, 2, 4, 6]
    assert window_starts(11, 4, 2) == [0, 2, 4, 6, 7]
    assert window_starts(11, 4, 4) == [0, 4, 7]
    assert window_starts(4, 4, 2) == [0]
    with pytest.raises(ValueError, match="smaller than the window"):
        window_starts(3, 4, 2)


@pytest.mark.parametrize("overlap", [0.0, 0.5])
@pytest.mark.parametrize(
    "size", [(20, 13), (32, 32), (71, 45), (33, 100)], ids=["smaller", "equal", "odd", "wide"]
)
def test_sliding_window_equals_full_forward(size, overlap):
    model = pointwise_model(3, 4)
    x = torch.randn(2, 3, *size)
    probs = sliding_window_probs(model, x, 4, window=32, overlap=overlap, batch_size=3)
    with torch.no_grad():
        expected = model(x).softmax(1)
    assert probs.shape == (2, 4, *size)
    torch.testing.assert_close(probs, expected, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("blend", ["gaussian", "constant"])
def test_sliding_window_binary_sigmoid_rectangular_window(blend):
    model = pointwise_model(5, 1, seed=1)
    x = torch.randn(1, 5, 37, 29)
    probs = sliding_window_probs(
        model, x, 1, window=(16, 24), overlap=0.5, activation="sigmoid", blend=blend
    )
    with torch.no_grad():
        expected = model(x).sigmoid()
    assert probs.shape == (1, 1, 37, 29)
    torch.testing.assert_close(probs, expected, atol=1e-6, rtol=1e-5)


def test_constant_output_gives_that_constant_everywhere():
    # Zero weights, fixed bias: the same probabilities in every window, so the weighted
    # mean equals them only if the weights are normalised at every pixel (borders too).
    model = nn.Conv2d(2, 3, 1)
    nn.init.zeros_(model.weight)
    with torch.no_grad():
        model.bias.copy_(torch.tensor([0.3, -1.0, 2.0]))
    x = torch.randn(1, 2, 50, 77)
    probs = sliding_window_probs(model, x, 3, window=24, overlap=0.5)
    expected = torch.tensor([0.3, -1.0, 2.0]).softmax(0)[None, :, None, None].expand_as(probs)
    torch.testing.assert_close(probs, expected, atol=1e-6, rtol=1e-5)


def test_blending_matches_brute_force_weighted_mean():
    model = LocalRamp()
    x = torch.randn(1, 1, 13, 11)
    window, overlap = 8, 0.5
    probs = sliding_window_probs(model, x, 1, window=window, overlap=overlap, activation="sigmoid")

    weight = importance_map((window, window)).double().numpy()
    num = np.zeros((13, 11))
    den = np.zeros((13, 11))
    for y in window_starts(13, window, 4):
        for x0 in window_starts(11, window, 4):
            with torch.no_grad():
                p = model(x[:, :, y : y + window, x0 : x0 + window]).sigmoid()[0, 0].double()
            num[y : y + window, x0 : x0 + window] += weight * p.numpy()
            den[y : y + window, x0 : x0 + window] += weight
    np.testing.assert_allclose(probs[0, 0].numpy(), num / den, atol=1e-6)
    # The Gaussian weights really differ from a plain mean here.
    plain = sliding_window_probs(model, x, 1, window=window, activation="sigmoid", blend="constant")
    assert not torch.allclose(plain, probs, atol=1e-3)


def test_importance_map_gaussian_shape():
    weight = importance_map((9, 16))
    assert weight.shape == (9, 16) and weight.dtype == torch.float32
    assert weight.max() == 1.0 and weight.min() >= 1e-3
    assert weight[4, 7] == weight[4, 8]  # symmetric about the centre of an even axis
    assert weight[4, 7] > weight[4, 3] > weight[4, 0]
    assert torch.equal(importance_map((4, 4), "constant"), torch.ones(4, 4))


def test_batch_size_does_not_change_result_and_mode_is_restored():
    model = LocalRamp()
    x = torch.randn(2, 1, 30, 21)
    a = sliding_window_probs(model, x, 1, window=10, batch_size=1, activation="sigmoid")
    b = sliding_window_probs(model, x, 1, window=10, batch_size=64, activation="sigmoid")
    torch.testing.assert_close(a, b)

    conv = pointwise_model(1, 2).train()
    out = sliding_window_probs(conv, x, 2, window=10)
    assert conv.training and not out.requires_grad


def test_registered_model_probabilities():
    model = create_model("unet", in_channels=4, num_classes=3, base_channels=4, depth=2)
    x = torch.randn(1, 4, 32, 32)
    one = sliding_window_probs(model, x, 3, window=32)  # one window: the plain forward
    with torch.no_grad():
        torch.testing.assert_close(one, model.eval()(x).softmax(1), atol=1e-6, rtol=1e-5)
    many = sliding_window_probs(model, torch.randn(2, 4, 45, 70), 3, window=32)
    assert many.shape == (2, 3, 45, 70) and many.min() >= 0
    torch.testing.assert_close(many.sum(1), torch.ones(2, 45, 70))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_model_cpu_image_matches_cpu():
    model = pointwise_model(3, 4)
    x = torch.randn(2, 3, 41, 70)
    cpu = sliding_window_probs(model, x, 4, window=32)
    gpu = sliding_window_probs(model.cuda(), x, 4, window=32)
    assert gpu.device == x.device  # windows ran on the model's device, result comes back
    torch.testing.assert_close(gpu, cpu, atol=1e-5, rtol=1e-4)
    on_gpu = sliding_window_probs(model, x.cuda(), 4, window=32)
    assert on_gpu.is_cuda
    torch.testing.assert_close(on_gpu.cpu(), cpu, atol=1e-5, rtol=1e-4)


def test_a_prediction_is_the_fused_or_raw_input_through_the_model():
    from train.fusion import FusionSettings
    from train.tasks import get_task

    torch.manual_seed(0)
    item = {
        "image": torch.rand(3, 21, 34),
        "seg_prior": torch.rand(1, 21, 34) * 3,
        "boundary_prior": (torch.rand(1, 21, 34) > 0.5).float(),
    }
    fusion = FusionSettings("concat", seg_scale=0.5)
    for task, activation in ((get_task("glands"), "softmax"), (get_task("binary"), "sigmoid")):
        model = pointwise_model(5, task.num_outputs)
        raw_input = torch.cat([item["image"], torch.zeros(2, 21, 34)])[None]
        fused = torch.cat([item["image"], 0.5 * item["seg_prior"], item["boundary_prior"]])[None]
        for augmented, x in ((False, raw_input), (True, fused)):
            predictor = Predictor(model, task, fusion, get_protocol("patches"), 16)
            probs = predictor.probabilities(item, augmented)
            with torch.no_grad():
                logits = model(x)
            expected = logits.softmax(1) if activation == "softmax" else logits.sigmoid()
            assert probs.shape == (1, task.num_outputs, 21, 34)
            torch.testing.assert_close(probs, expected, atol=1e-6, rtol=1e-5)


def test_sliding_window_errors():
    model = pointwise_model(3, 4)
    x = torch.randn(1, 3, 20, 20)
    with pytest.raises(ValueError, match="expected"):
        sliding_window_probs(model, x, 2, window=8)
    with pytest.raises(ValueError, match="overlap"):
        sliding_window_probs(model, x, 4, window=8, overlap=1.0)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        sliding_window_probs(model, x[0], 4, window=8)


# ---------------------------------------------------------------- strategies


def const_map(values, k=1, h=4, w=6):
    """(B, k, h, w) map; values[b] is a scalar, or a list of k channel values."""
    rows = [torch.tensor(v, dtype=torch.float64).reshape(-1, 1, 1).expand(k, h, w) for v in values]
    return torch.stack(rows)


def test_ensemble_is_mean_and_raw_samaug_pass_through():
    raw, aug = torch.rand(2, 3, 5, 7), torch.rand(2, 3, 5, 7)
    probs, _ = all_strategies(raw, aug)
    assert list(probs) == list(STRATEGIES)
    torch.testing.assert_close(probs["ensemble"], (raw + aug) / 2)
    assert probs["raw"] is raw and probs["samaug"] is aug
    for name in STRATEGIES:
        torch.testing.assert_close(combine(raw, aug, name), probs[name])


@pytest.mark.parametrize("certainty", ["margin", "entropy"])
def test_select_picks_more_certain_per_image(certainty):
    raw = const_map([0.95, 0.6])  # image 0: raw sure; image 1: raw unsure
    aug = const_map([0.7, 0.05])
    probs, took = select(raw, aug, certainty)
    assert took.tolist() == [False, True]
    torch.testing.assert_close(probs[0], raw[0])
    torch.testing.assert_close(probs[1], aug[1])


def test_margin_values_and_foreground_of_three_class_output():
    # p_fg = 1 - p_background for K >= 2.
    three = const_map([[0.2, 0.5, 0.3], [0.9, 0.05, 0.05]], k=3)
    torch.testing.assert_close(
        foreground_probability(three)[:, 0, 0], torch.tensor([0.8, 0.1]).double()
    )
    torch.testing.assert_close(image_certainty(three, "margin"), torch.tensor([0.3, 0.4]).double())
    binary = const_map([0.75])
    torch.testing.assert_close(image_certainty(binary, "margin"), torch.tensor([0.25]).double())
    expected_entropy = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    torch.testing.assert_close(
        image_certainty(binary, "entropy"), torch.tensor([-expected_entropy]).double()
    )


def test_margin_and_entropy_disagree_binary():
    # raw: half the pixels sure (p=1), half undecided (0.5): margin 0.25, entropy 0.347.
    # aug: every pixel 0.8: margin 0.3 (more certain), entropy 0.500 (less certain).
    raw = torch.full((1, 1, 4, 6), 0.5, dtype=torch.float64)
    raw[..., :3] = 1.0
    aug = torch.full((1, 1, 4, 6), 0.8, dtype=torch.float64)
    assert select(raw, aug, "margin")[1].tolist() == [True]
    assert select(raw, aug, "entropy")[1].tolist() == [False]


def test_margin_and_entropy_disagree_three_class():
    # Margin sees only p_background; entropy the whole distribution.
    raw = const_map([[0.5, 0.5, 0.0]], k=3)  # margin 0.0, entropy log 2 = 0.69
    aug = const_map([[0.6, 0.2, 0.2]], k=3)  # margin 0.1, entropy 0.95
    _, by_margin = all_strategies(raw, aug, "margin")
    _, by_entropy = all_strategies(raw, aug, "entropy")
    assert by_margin.tolist() == [True] and by_entropy.tolist() == [False]


def test_margin_minmax_follows_released_code():
    # The released script min-max normalises p before the margin. raw: levels 0.4/0.6
    # (margin 0.1; normalised 0/1, margin 0.5). aug: levels 0.8/0.9/1.0 in thirds
    # (margin 0.4; normalised 0/0.5/1, margin 1/3).
    raw = torch.full((1, 1, 3, 4), 0.4, dtype=torch.float64)
    raw[..., 2:] = 0.6
    aug = torch.tensor([0.8, 0.9, 1.0], dtype=torch.float64).reshape(1, 1, 3, 1).expand(1, 1, 3, 4)
    torch.testing.assert_close(
        image_certainty(aug, "margin_minmax"), torch.tensor([1 / 3]).double(), atol=1e-7, rtol=0
    )
    assert select(raw, aug, "margin")[1].tolist() == [True]
    assert select(raw, aug, "margin_minmax")[1].tolist() == [False]


def released_selection(res: np.ndarray, ares: np.ndarray) -> bool:
    """The released polyp test's choice, transcribed (Polyp_HSNet_SAMAug_Train_and_Test.py):
    min-max each sigmoid map, indicator = mean |res - 0.5|, the raw map only if its indicator
    is strictly greater. Returns True when the augmented map is taken."""
    res = (res - res.min()) / (res.max() - res.min() + 1e-8)
    indicator1 = np.mean(np.abs(res - 0.5))
    ares = (ares - ares.min()) / (ares.max() - ares.min() + 1e-8)
    indicator2 = np.mean(np.abs(ares - 0.5))
    return not indicator1 > indicator2


def test_the_default_selection_is_the_released_codes_where_margin_disagrees():
    # raw: rows of 0.02 / 0.5 / 0.98: plain margin (0.48 + 0 + 0.48) / 3 = 0.32; min-max
    # makes them 0 / 0.5 / 1: margin 1/3.
    # aug: an unsure map, 0.45 / 0.55 halves: plain margin 0.05; min-max 0 / 1: margin 0.5.
    raw = torch.tensor([0.02, 0.5, 0.98], dtype=torch.float64).reshape(1, 1, 3, 1)
    raw = raw.expand(1, 1, 3, 4)
    aug = torch.full((1, 1, 3, 4), 0.45, dtype=torch.float64)
    aug[..., 2:] = 0.55
    assert select(raw, aug, "margin")[1].tolist() == [False]  # margin keeps the raw map
    assert select(raw, aug, "margin_minmax")[1].tolist() == [True]
    assert select(raw, aug)[1].tolist() == [True]  # the default is margin_minmax
    assert all_strategies(raw, aug)[1].tolist() == [True]
    torch.testing.assert_close(combine(raw, aug, "select"), aug)
    assert released_selection(raw[0, 0].numpy(), aug[0, 0].numpy()) is True
    # On random maps the default choice is the transcription's, image by image.
    generator = torch.Generator().manual_seed(0)
    powers = 1 + 3 * torch.rand(2, 16, 1, 1, 1, generator=generator, dtype=torch.float64)
    raws, augs = torch.rand(2, 16, 1, 5, 6, generator=generator, dtype=torch.float64) ** powers
    expected = [
        released_selection(r[0].numpy(), a[0].numpy()) for r, a in zip(raws, augs, strict=True)
    ]
    assert select(raws, augs)[1].tolist() == expected
    assert 0 < sum(expected) < 16  # both choices occur


@pytest.mark.parametrize("certainty", ["margin", "margin_minmax", "entropy"])
def test_tie_picks_samaug(certainty):
    raw, aug = const_map([0.75, 0.3]), const_map([0.25, 0.3])  # mirrored, and identical
    probs, took = select(raw, aug, certainty)
    assert took.tolist() == [True, True]
    torch.testing.assert_close(probs, aug)


def test_strategy_errors():
    raw = torch.rand(1, 1, 4, 4)
    with pytest.raises(SettingError, match="strategy must be one of raw, samaug, ensemble, select"):
        combine(raw, raw, "vote")
    with pytest.raises(ValueError, match="differ in shape"):
        combine(raw, torch.rand(1, 1, 4, 5), "ensemble")
    with pytest.raises(SettingError, match="--certainty must be one of margin, margin_minmax"):
        image_certainty(raw, "variance")


# ---------------------------------------------------------------- post-processing


def probs_from_masks(interior: np.ndarray, boundary: np.ndarray) -> np.ndarray:
    """3xHxW softmax-like map: background / interior / boundary by the given masks."""
    probs = np.zeros((3, *interior.shape))
    probs[:] = np.array([0.9, 0.05, 0.05])[:, None, None]
    probs[:, interior] = np.array([0.05, 0.9, 0.05])[:, None]
    probs[:, boundary] = np.array([0.1, 0.2, 0.7])[:, None]
    return probs


def rect(shape, r0, r1, c0, c1):
    mask = np.zeros(shape, bool)
    mask[r0:r1, c0:c1] = True
    return mask


def test_two_touching_objects_split_by_boundary_band():
    shape = (20, 30)
    a, b = rect(shape, 3, 17, 2, 15), rect(shape, 3, 17, 15, 28)  # share the edge at column 15
    interior = rect(shape, 4, 16, 3, 14) | rect(shape, 4, 16, 16, 27)
    boundary = (a | b) & ~interior
    labels = instances_from_probs(probs_from_masks(interior, boundary), min_size=10)
    assert labels.dtype == np.int32
    assert set(np.unique(labels)) == {0, 1, 2}
    np.testing.assert_array_equal(labels > 0, a | b)  # the instances cover the foreground
    np.testing.assert_array_equal(labels == 1, a)
    np.testing.assert_array_equal(labels == 2, b)


def test_small_objects_removed_and_labels_contiguous():
    shape = (20, 40)
    big1, small, big2 = (
        rect(shape, 2, 8, 2, 8),
        rect(shape, 2, 5, 15, 18),
        rect(shape, 2, 8, 25, 31),
    )
    interior = big1 | small | big2
    labels = instances_from_probs(probs_from_masks(interior, np.zeros(shape, bool)), min_size=10)
    assert set(np.unique(labels)) == {0, 1, 2}  # the 9 px object went, no gap left at 2
    np.testing.assert_array_equal(labels == 1, big1)
    np.testing.assert_array_equal(labels == 2, big2)
    assert not labels[small].any()
    kept = instances_from_probs(probs_from_masks(interior, np.zeros(shape, bool)), min_size=9)
    assert kept.max() == 3


def test_more_than_255_objects():
    shape = (100, 100)
    interior = np.zeros(shape, bool)
    for r in range(20):
        for c in range(20):
            interior[5 * r + 1 : 5 * r + 4, 5 * c + 1 : 5 * c + 4] = True  # 3x3, 2 px apart
    labels = instances_from_probs(probs_from_masks(interior, np.zeros(shape, bool)), min_size=5)
    assert labels.dtype == np.int32
    np.testing.assert_array_equal(np.unique(labels), np.arange(401))
    assert np.all(np.bincount(labels.ravel())[1:] == 9)


def test_foreground_without_seed_and_empty_map():
    shape = (12, 12)
    ring = rect(shape, 2, 8, 2, 8) & ~rect(shape, 3, 7, 3, 7)  # boundary only: no interior
    labels = instances_from_probs(probs_from_masks(np.zeros(shape, bool), ring), min_size=0)
    assert labels.dtype == np.int32 and not labels.any()
    with pytest.raises(ValueError, match="3xHxW"):
        instances_from_probs(np.zeros((2, 4, 4)))


def test_binary_from_probs():
    p = np.array([[0.1, 0.5], [0.49, 0.9]])
    mask = binary_from_probs(p)
    assert mask.dtype == np.uint8
    np.testing.assert_array_equal(mask, [[0, 1], [0, 1]])
    np.testing.assert_array_equal(binary_from_probs(p, thresh=0.95), np.zeros((2, 2)))
