"""Building blocks shared by the convolutional models, written once.

All tensors are float ``(B, C, H, W)``. ``pad_to_multiple``/``crop_padding`` let a network
with an overall stride accept any input size: pad up to the next multiple of the stride,
run, and crop the output back to the input's frame. ``DeepSupervised`` is the base of the
networks with several output maps (PraNet, HSNet), ``upsample_maps`` brings such maps to the
input's frame.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

Padding = tuple[int, int, int, int]  # (left, right, top, bottom), F.pad's order


def pad_to_multiple(
    x: torch.Tensor, multiple: int, mode: str = "reflect"
) -> tuple[torch.Tensor, Padding]:
    """Pad ``(B, C, H, W)`` so H and W become multiples of ``multiple``.

    The padding is split evenly between the two sides (the extra pixel goes right/bottom) so
    the image stays centred in the receptive fields. ``mode`` is an ``F.pad`` mode;
    ``"reflect"`` needs each pad narrower than the image, and falls back to ``"replicate"``
    for images too small for it. Returns the padded tensor and the padding to give to
    ``crop_padding``.
    """
    h, w = x.shape[-2:]
    ph, pw = -h % multiple, -w % multiple
    pad = (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)
    if ph == 0 and pw == 0:
        return x, pad
    if mode == "reflect" and (max(pad[:2]) >= w or max(pad[2:]) >= h):
        mode = "replicate"
    return F.pad(x, pad, mode=mode), pad


def crop_padding(x: torch.Tensor, pad: Padding) -> torch.Tensor:
    """Undo ``pad_to_multiple``: crop ``(B, C, Hp, Wp)`` back to the unpadded frame."""
    left, right, top, bottom = pad
    h, w = x.shape[-2:]
    return x[..., top : h - bottom, left : w - right]


class DeepSupervised(nn.Module):
    """Base of a deep-supervised network, whose subclass defines ``forward_all(x)``: its maps,
    each ``(B, num_classes, H, W)`` logits for a ``(B, in_channels, H, W)`` input.

    ``forward`` returns their sum (what PraNet's and SAMAug's polyp test scripts score);
    ``deep_supervision`` tells the trainer to train on the loss summed over the maps.
    """

    deep_supervision = True

    def forward_all(self, x: torch.Tensor) -> list[torch.Tensor]:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack(self.forward_all(x)).sum(dim=0)


def upsample_maps(
    maps: list[torch.Tensor], scales: tuple[int, ...], pad: Padding
) -> list[torch.Tensor]:
    """Each ``(B, K, h, w)`` map of a padded input bilinearly upsampled by its factor in
    ``scales`` (align_corners False, as the released PraNet and HSNet do), then cropped back
    to the unpadded frame (``crop_padding``)."""
    return [
        crop_padding(F.interpolate(m, scale_factor=s, mode="bilinear"), pad)
        for m, s in zip(maps, scales, strict=True)
    ]


def conv_bn_relu(in_channels: int, out_channels: int, dilation: int = 1) -> nn.Sequential:
    """3x3 "same" convolution (optionally dilated), BatchNorm, ReLU. Keeps H and W."""
    return nn.Sequential(
        # No conv bias: the BatchNorm shift that follows makes it redundant.
        nn.Conv2d(in_channels, out_channels, 3, padding=dilation, dilation=dilation, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class DoubleConv(nn.Sequential):
    """Two ``conv_bn_relu``: the U-Net level block. ``(B, in, H, W) -> (B, out, H, W)``."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            conv_bn_relu(in_channels, out_channels), conv_bn_relu(out_channels, out_channels)
        )


class Down(nn.Sequential):
    """2x2 max-pool then ``DoubleConv``. ``(B, in, H, W) -> (B, out, H/2, W/2)``, H, W even."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(nn.MaxPool2d(2), DoubleConv(in_channels, out_channels))


class AttentionGate(nn.Module):
    """Additive attention gate of Oktay et al. 2018 (Attention U-Net), eqs. 1-2 and Fig. 2.

    ``alpha = sigmoid(psi(relu(W_x x + W_g g + b_g)) + b_psi)``, computed on the grid of the
    coarser gating signal ``g`` (``W_x`` is a 2x2 stride-2 convolution, as in the authors'
    code), bilinearly resampled to the grid of ``x``; the gate returns ``alpha * x``.

    Arguments of ``forward``:
      x: ``(B, x_channels, H, W)`` skip features, H and W even.
      g: ``(B, g_channels, H/2, W/2)`` gating signal from the next coarser level.
    Returns ``(B, x_channels, H, W)``.
    """

    def __init__(self, x_channels: int, g_channels: int, inter_channels: int) -> None:
        super().__init__()
        self.w_x = nn.Conv2d(x_channels, inter_channels, 2, stride=2, bias=False)
        self.w_g = nn.Conv2d(g_channels, inter_channels, 1)  # its bias is b_g
        self.psi = nn.Conv2d(inter_channels, 1, 1)  # its bias is b_psi

    def coefficients(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """The attention coefficients alpha: ``(B, 1, H, W)`` in (0, 1)."""
        q = self.psi(F.relu(self.w_x(x) + self.w_g(g)))
        return torch.sigmoid(
            F.interpolate(q, size=x.shape[-2:], mode="bilinear", align_corners=False)
        )

    def forward(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return self.coefficients(x, g) * x


class Up(nn.Module):
    """U-Net decoder level: 2x2 up-convolution halving the channels, skip concatenation,
    ``DoubleConv``; optionally the skip is first passed through an ``AttentionGate`` gated by
    the coarse input.

    Arguments of ``forward``:
      x: ``(B, in_channels, H/2, W/2)`` coarse decoder features.
      skip: ``(B, skip_channels, H, W)`` encoder features of this level.
    Returns ``(B, out_channels, H, W)``.
    """

    def __init__(
        self, in_channels: int, skip_channels: int, out_channels: int, attention: bool = False
    ) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(in_channels, in_channels // 2, 2, stride=2)
        # Oktay et al.'s code uses half the skip channels inside the gate.
        self.gate = (
            AttentionGate(skip_channels, in_channels, max(skip_channels // 2, 1))
            if attention
            else None
        )
        self.conv = DoubleConv(in_channels // 2 + skip_channels, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        if self.gate is not None:
            skip = self.gate(skip, x)
        return self.conv(torch.cat([skip, self.up(x)], dim=1))
