"""Whole-image inference and the SAMAug test-time strategies.

``sliding_window_probs`` runs a segmentation model (``train.models``: ``(B, C, H, W)`` float in,
``(B, K, H, W)`` raw logits out) over an image of any size by overlapping windows and returns
per-pixel probabilities. ``combine`` and ``all_strategies`` then turn the probabilities of the
raw input and of the SAM-augmented input into the four test-time predictions of the paper:

==========  ===============================================================================
strategy    prediction
==========  ===============================================================================
raw         the raw-input probabilities
samaug      the augmented-input probabilities
ensemble    the mean of the two probability maps
select      per image, the more certain of the two (``image_certainty``, by default the
            released code's ``margin_minmax``); ties pick samaug
==========  ===============================================================================

Probability maps are float tensors ``(B, K, H, W)`` in [0, 1]. Channel conventions:

- ``K == 1``: a sigmoid output; channel 0 is the foreground probability.
- ``K >= 2``: a softmax output over classes whose channel 0 is the background; the
  foreground probability is ``1 - p_background`` (for the 3-class instance output
  background/interior/boundary, that is interior + boundary).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from precompute import checks
from train.choices import CERTAINTIES, DEFAULT_CERTAINTY, STRATEGIES, Certainty, Strategy
from train.fusion import FusionSettings, fuse, raw
from train.protocols import get_protocol
from train.protocols.polyp_protocol import predict_resized, prepare_resized

if TYPE_CHECKING:
    from train.tasks import Task

Activation = Literal["softmax", "sigmoid"]
Blend = Literal["gaussian", "constant"]

# Floor of the Gaussian importance map relative to its peak (MONAI clamps to a small
# positive value too): window borders still count a little, so a pixel seen only by
# window edges (an image corner) is not divided by a weight that underflows.
_GAUSSIAN_FLOOR = 1e-3


def window_starts(size: int, window: int, stride: int) -> list[int]:
    """Start offsets of windows of length ``window`` covering ``[0, size)``, ``size >= window``.

    Windows step by ``stride``; the last one is moved flush with the end (so it may overlap
    its neighbour more than the others do).
    """
    if size < window:
        raise ValueError(f"size {size} is smaller than the window {window}; pad the image first")
    starts = list(range(0, size - window + 1, stride))
    if starts[-1] != size - window:
        starts.append(size - window)
    return starts


def importance_map(
    window: tuple[int, int], blend: Blend = "gaussian", device: torch.device | str = "cpu"
) -> Tensor:
    """Per-pixel weight of a window's prediction, ``(h, w)`` float32, peak 1.

    ``"gaussian"`` (nnU-Net, MONAI): ``exp(-d^2 / (2 sigma^2))`` around the window centre with
    ``sigma = size / 8`` per axis, floored at 1e-3, so a pixel's prediction comes mostly
    from the windows that see it near their centre, where the model has the most context.
    ``"constant"``: all ones, a plain average of the overlapping windows.
    """
    h, w = window
    if blend == "constant":
        return torch.ones(h, w, device=device)
    if blend != "gaussian":
        raise ValueError(f"unknown blend {blend!r}; valid: 'gaussian', 'constant'")

    def axis(n: int) -> Tensor:
        coord = torch.arange(n, dtype=torch.float64, device=device) - (n - 1) / 2
        return torch.exp(-(coord**2) / (2 * (n / 8) ** 2))

    weight = axis(h)[:, None] * axis(w)[None, :]
    return (weight / weight.max()).clamp_min(_GAUSSIAN_FLOOR).float()


def _pair(value: int | tuple[int, int], name: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or any(not isinstance(v, int) or v < 1 for v in pair):
        raise ValueError(f"{name} must be a positive int or a pair of them, got {value!r}")
    return pair  # type: ignore[return-value]


def sliding_window_probs(
    model: nn.Module,
    x: Tensor,
    num_classes: int,
    window: int | tuple[int, int] = 256,
    overlap: float = 0.5,
    batch_size: int = 4,
    activation: Activation = "softmax",
    blend: Blend = "gaussian",
) -> Tensor:
    """Per-pixel class probabilities of a whole image from overlapping windows.

    Arguments:
      model: maps ``(N, C, h, w)`` float to ``(N, num_classes, h, w)`` raw logits. It runs
        in eval mode under ``torch.no_grad()``; its train/eval mode is restored afterwards.
        Windows run on the device (and in the dtype) of its first parameter, or on
        ``x.device`` for a model without parameters.
      x: ``(B, C, H, W)`` float image batch, any H, W, on any device.
      num_classes: channels of the model output (K); 1 for a binary sigmoid model.
      window: window size, int or ``(h, w)``. An image smaller than the window along an
        axis is zero-padded at the bottom/right up to the window along that axis, and the
        result cropped back.
      overlap: fraction in [0, 1) by which neighbouring windows overlap; the stride is
        ``max(1, round(window * (1 - overlap)))`` and the last window sits flush with the
        image edge.
      batch_size: windows per forward pass (windows of all images in ``x`` are batched
        together).
      activation: ``"softmax"`` over the class channel, or ``"sigmoid"`` per channel.
      blend: how overlapping windows are weighted (``importance_map``): ``"gaussian"``
        (default) or ``"constant"``. Each pixel is the weighted mean of the window
        probabilities covering it: ``sum(w * p) / sum(w)``.

    Returns ``(B, num_classes, H, W)`` float32 probabilities in [0, 1] on ``x.device``;
    for a one-channel sigmoid model, ``(B, 1, H, W)`` foreground probability.
    """
    if x.ndim != 4:
        raise ValueError(f"x must be (B, C, H, W), got shape {tuple(x.shape)}")
    if not 0 <= overlap < 1:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if activation not in ("softmax", "sigmoid"):
        raise ValueError(f"unknown activation {activation!r}; valid: 'softmax', 'sigmoid'")
    wh, ww = _pair(window, "window")
    b, _, h, w = x.shape
    param = next(model.parameters(), None)
    device = param.device if param is not None else x.device
    dtype = param.dtype if param is not None and param.is_floating_point() else x.dtype

    ph, pw = max(h, wh), max(w, ww)
    padded = F.pad(x, (0, pw - w, 0, ph - h)) if (ph, pw) != (h, w) else x
    ys = window_starts(ph, wh, max(1, round(wh * (1 - overlap))))
    xs = window_starts(pw, ww, max(1, round(ww * (1 - overlap))))
    tiles = [(i, y, x0) for i in range(b) for y in ys for x0 in xs]

    weight = importance_map((wh, ww), blend, device)
    acc = torch.zeros(b, num_classes, ph, pw, device=device)
    norm = torch.zeros(ph, pw, device=device)
    for y in ys:
        for x0 in xs:
            norm[y : y + wh, x0 : x0 + ww] += weight

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for start in range(0, len(tiles), batch_size):
                batch = tiles[start : start + batch_size]
                crops = torch.stack([padded[i, :, y : y + wh, x0 : x0 + ww] for i, y, x0 in batch])
                logits = model(crops.to(device=device, dtype=dtype))
                if logits.shape != (len(batch), num_classes, wh, ww):
                    raise ValueError(
                        f"model output {tuple(logits.shape)} for window input "
                        f"{tuple(crops.shape)}; expected ({len(batch)}, {num_classes}, {wh}, "
                        f"{ww}): check num_classes and that the model keeps the input size"
                    )
                logits = logits.float()
                probs = logits.softmax(1) if activation == "softmax" else logits.sigmoid()
                for (i, y, x0), p in zip(batch, probs, strict=True):
                    acc[i, :, y : y + wh, x0 : x0 + ww] += p * weight
    finally:
        model.train(was_training)
    return (acc / norm)[:, :, :h, :w].to(x.device)


def model_input(batch: dict, fusion: FusionSettings, augmented: bool, device) -> Tensor:
    """The network input of a batch of items (``train.data.datasets``): ``fuse`` of the image
    and both priors when ``augmented``, else ``raw`` of the image; ``(B, in_channels, H, W)``
    float on ``device``."""
    image = batch["image"].to(device, non_blocking=True)
    if not augmented:
        return raw(image, fusion)
    seg = batch["seg_prior"].to(device, non_blocking=True)
    boundary = batch["boundary_prior"].to(device, non_blocking=True)
    return fuse(image, seg, boundary, fusion)


def predict_image(
    model: nn.Module,
    item: dict,
    fusion: FusionSettings,
    augmented: bool,
    task: Task,
    window: int,
    overlap: float = 0.5,
    *,
    protocol: str = "patches",
) -> Tensor:
    """Probabilities of one whole image (a ``WholeImageDataset`` item: ``image`` (3, H, W)
    float32 in [0, 1], ``seg_prior`` and ``boundary_prior`` (1, H, W) float32), from its raw
    or its augmented input, as the run's protocol (``train.protocols``) tests:

    - "windows" test (the patches protocol): ``sliding_window_probs`` with square windows of
      side ``window`` overlapping by ``overlap``, the task's activation;
    - "resize" test (the polyp protocol): the image and priors prepared as in training at
      ``window`` x ``window`` (``train.protocols.polyp_protocol.prepare_resized``: resized, ImageNet
      normalisation, seg prior clipped), the model's output (a deep-supervised model's sum
      of maps) upsampled to (H, W), sigmoid, then min-max normalised per image, as PraNet's
      and SAMAug's test scripts do (``overlap`` unused).

    Returns ``(1, task.num_outputs, H, W)`` float32 in [0, 1], on the model's device.
    """
    device = next(model.parameters()).device
    chosen = get_protocol(protocol)
    if chosen.test == "resize":
        height, width = item["image"].shape[-2:]
        prepared = prepare_resized(
            item["image"],
            item["seg_prior"],
            item["boundary_prior"],
            window,
            chosen.normalize,
            chosen.clip_seg_prior,
        )
        batch = {k: v.unsqueeze(0) for k, v in prepared.items()}
        return predict_resized(
            model, model_input(batch, fusion, augmented, device), (height, width)
        )
    batch = {k: item[k].unsqueeze(0) for k in ("image", "seg_prior", "boundary_prior")}
    return sliding_window_probs(
        model,
        model_input(batch, fusion, augmented, device),
        task.num_outputs,
        window=window,
        overlap=overlap,
        activation=task.activation,
    )


def foreground_probability(probs: Tensor) -> Tensor:
    """Foreground probability ``(B, H, W)`` of a ``(B, K, H, W)`` probability map.

    ``K == 1``: channel 0 (sigmoid foreground). ``K >= 2``: ``1 - p[:, 0]`` (channel 0 is the
    background of a softmax output; for background/interior/boundary this is
    interior + boundary).
    """
    _check_probs(probs, "probs")
    return probs[:, 0] if probs.shape[1] == 1 else 1 - probs[:, 0]


def check_certainty(certainty: str) -> None:
    """SettingError unless ``certainty`` names one of ``CERTAINTIES``."""
    checks.choice("--certainty", certainty, CERTAINTIES)


def image_certainty(probs: Tensor, certainty: Certainty = DEFAULT_CERTAINTY) -> Tensor:
    """Per-image certainty ``(B,)`` float64 of a ``(B, K, H, W)`` map; higher = more certain.

    ``"margin_minmax"`` (the default: the released SAMAug test code exactly): with
    ``p_fg = foreground_probability(probs)`` min-max normalised per image to [0, 1]
    (``(p - min) / (max - min + 1e-8)``, as PraNet evaluates), the mean over pixels of
    ``|p_fg - 0.5|``; in [0, 0.5]. It rewards a confident *ranking* of pixels rather than
    probabilities near 0/1. On a map that is already min-max normalised (the polyp
    protocol's predictions) it equals ``"margin"``.

    ``"margin"``: the same mean of ``|p_fg - 0.5|`` on the probabilities as they are (this
    project's variant, without the normalisation); in [0, 0.5].

    ``"entropy"``: minus the mean over pixels of the entropy (nats) of the full class
    distribution (for ``K == 1`` the Bernoulli ``(1 - p, p)``; for ``K >= 2`` the K softmax
    channels); in [-log(max(K, 2)), 0].
    """
    _check_probs(probs, "probs")
    check_certainty(certainty)
    if certainty in ("margin", "margin_minmax"):
        p = foreground_probability(probs).flatten(1).double()
        if certainty == "margin_minmax":
            lo, hi = p.amin(1, keepdim=True), p.amax(1, keepdim=True)
            p = (p - lo) / (hi - lo + 1e-8)
        return (p - 0.5).abs().mean(1)
    p = probs.double()  # "entropy"
    dist = torch.cat([1 - p, p], 1) if p.shape[1] == 1 else p
    return torch.special.xlogy(dist, dist).sum(1).flatten(1).mean(1)


def select(
    prob_raw: Tensor, prob_aug: Tensor, certainty: Certainty = DEFAULT_CERTAINTY
) -> tuple[Tensor, Tensor]:
    """Per image, the more certain of the two probability maps.

    Returns ``(probs, took_samaug)``: ``probs`` ``(B, K, H, W)`` (each image taken unchanged
    from one input) and ``took_samaug`` ``(B,)`` bool, True where the augmented-input map was
    taken. A tie goes to samaug, as in the released code (``raw`` only if its certainty is
    strictly greater: ``if indicator1 > indicator2``).
    """
    probs, took_samaug = all_strategies(prob_raw, prob_aug, certainty)
    return probs["select"], took_samaug


# The strategy table, written once: each strategy's prediction from the raw-input map, the
# augmented-input map and select's per-image choice ((B,) bool, True = augmented).
_STRATEGY_TABLE = {
    "raw": lambda prob_raw, prob_aug, took_samaug: prob_raw,
    "samaug": lambda prob_raw, prob_aug, took_samaug: prob_aug,
    "ensemble": lambda prob_raw, prob_aug, took_samaug: (prob_raw + prob_aug) / 2,
    "select": lambda prob_raw, prob_aug, took_samaug: torch.where(
        took_samaug.to(prob_aug.device)[:, None, None, None], prob_aug, prob_raw
    ),
}
assert tuple(_STRATEGY_TABLE) == STRATEGIES


def combine(
    prob_raw: Tensor,
    prob_aug: Tensor,
    strategy: Strategy,
    certainty: Certainty = DEFAULT_CERTAINTY,
) -> Tensor:
    """The ``(B, K, H, W)`` prediction of one test-time strategy (see the module table).

    ``prob_raw`` and ``prob_aug`` are ``(B, K, H, W)`` probability maps of the same shape from
    the raw and the augmented input; ``certainty`` matters only for ``"select"``.
    """
    checks.choice("strategy", strategy, STRATEGIES)
    return all_strategies(prob_raw, prob_aug, certainty)[0][strategy]


def all_strategies(
    prob_raw: Tensor, prob_aug: Tensor, certainty: Certainty = DEFAULT_CERTAINTY
) -> tuple[dict[str, Tensor], Tensor]:
    """All four test-time predictions at once.

    Returns ``(probs, took_samaug)``: ``probs`` maps each name of ``STRATEGIES`` (``raw``,
    ``samaug``, ``ensemble``, ``select``) to its ``(B, K, H, W)`` map; ``took_samaug`` is the
    ``(B,)`` bool choice ``select`` made (True = the augmented-input map).
    """
    _check_pair(prob_raw, prob_aug)
    took_samaug = image_certainty(prob_aug, certainty) >= image_certainty(prob_raw, certainty)
    probs = {
        name: strategy(prob_raw, prob_aug, took_samaug)
        for name, strategy in _STRATEGY_TABLE.items()
    }
    return probs, took_samaug


def _check_probs(probs: Tensor, name: str) -> None:
    if probs.ndim != 4 or probs.shape[1] < 1:
        raise ValueError(f"{name} must be (B, K, H, W) probabilities, got {tuple(probs.shape)}")


def _check_pair(prob_raw: Tensor, prob_aug: Tensor) -> None:
    _check_probs(prob_raw, "prob_raw")
    _check_probs(prob_aug, "prob_aug")
    if prob_raw.shape != prob_aug.shape:
        raise ValueError(
            f"prob_raw {tuple(prob_raw.shape)} and prob_aug {tuple(prob_aug.shape)} differ in "
            "shape; both must come from the same image batch and model"
        )


__all__ = [
    "CERTAINTIES",
    "STRATEGIES",
    "all_strategies",
    "combine",
    "foreground_probability",
    "image_certainty",
    "importance_map",
    "model_input",
    "predict_image",
    "select",
    "sliding_window_probs",
    "window_starts",
]
