"""Sliding-window inference: a segmentation model over an image of any size.

``sliding_window_probs`` runs a model (``(B, C, h, w)`` float in, ``(B, K, h, w)`` raw
logits out) over overlapping windows and blends the windows' probabilities with an
importance map (nnU-Net's and MONAI's Gaussian by default): the patches protocol's test.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

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
    _check_arguments(x, overlap, batch_size, activation)
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


def _check_arguments(x: Tensor, overlap: float, batch_size: int, activation: str) -> None:
    if x.ndim != 4:
        raise ValueError(f"x must be (B, C, H, W), got shape {tuple(x.shape)}")
    if not 0 <= overlap < 1:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if activation not in ("softmax", "sigmoid"):
        raise ValueError(f"unknown activation {activation!r}; valid: 'softmax', 'sigmoid'")
