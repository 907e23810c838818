"""Weights that depend only on a model's tensor names and shapes, for pinning its outputs.

A test that pins a network's outputs on a fixed input (``pinned_outputs``) must not depend
on the order in which the constructor draws its random initialisation, nor on timm's init:
``seeded_state`` fills every tensor from one generator, tensor by tensor in sorted key order.
The comparisons against the released networks (README, "Paper, released code and our
choices") load the same weights, so the pinned numbers are those the released code gives.
"""

from __future__ import annotations

import torch
from torch import nn


def seeded_state(model: nn.Module, seed: int = 0) -> dict[str, torch.Tensor]:
    """``model``'s state dict with every float tensor redrawn, of a trained network's kind so
    that every tensor matters and activations stay finite: weights of two or more dimensions
    N(0, 1 / fan_in), running variances in [0.5, 1.5), other 1-D weights (norms) 1 + 0.1 N,
    everything else (biases, running means, tables) 0.1 N. Integer buffers are kept."""
    generator = torch.Generator().manual_seed(seed)
    out = {}
    for key, value in sorted(model.state_dict().items()):
        if not value.is_floating_point():
            out[key] = value.clone()
            continue
        shape = value.shape
        if value.dim() > 1:
            new = torch.randn(shape, generator=generator) * value[0].numel() ** -0.5
        elif key.endswith("running_var"):
            new = 0.5 + torch.rand(shape, generator=generator)
        elif key.endswith("weight"):
            new = 1 + 0.1 * torch.randn(shape, generator=generator)
        else:
            new = 0.1 * torch.randn(shape, generator=generator)
        out[key] = new.to(value.dtype)
    return out


def seeded_input(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    """A standard normal float32 tensor of ``shape`` from a generator seeded with ``seed``."""
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def pinned_outputs(logits: torch.Tensor) -> list[float]:
    """A fingerprint of ``(B, K, H, W)`` logits for a test to pin: their mean, mean absolute
    value and standard deviation, and the values of the first image at four fixed pixels (the
    top-left and bottom-right corners, the centre, and one off-centre), for every class."""
    h, w = logits.shape[-2:]
    pixels = [(0, 0), (h - 1, w - 1), (h // 2, w // 2), (h // 3, 2 * w // 3)]
    stats = [logits.mean(), logits.abs().mean(), logits.std()]
    values = [logits[0, :, y, x] for y, x in pixels]
    return [float(v) for v in torch.cat([torch.stack(stats), *values])]
