"""The head of PraNet (Fan et al., MICCAI 2020): receptive-field blocks, the parallel partial
decoder and the reverse-attention branches, as in the authors' released code
(``lib/PraNet_Res2Net.py``).

All tensors are float ``(B, C, H, W)``. The released code's ``BasicConv2d`` is a convolution
followed by BatchNorm and, although it defines a ReLU, never applies one: ``conv_bn`` keeps
that, so chains of them are linear up to BatchNorm, and the ReLUs stand only where the
released code writes them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def conv_bn(
    in_channels: int,
    out_channels: int,
    kernel: int | tuple[int, int],
    padding: int | tuple[int, int] = 0,
    dilation: int = 1,
) -> nn.Sequential:
    """Convolution without bias, then BatchNorm; no activation (the released ``BasicConv2d``)."""
    return nn.Sequential(
        nn.Conv2d(
            in_channels, out_channels, kernel, padding=padding, dilation=dilation, bias=False
        ),
        nn.BatchNorm2d(out_channels),
    )


class ReceptiveField(nn.Module):
    """The modified receptive field block (``RFB_modified``): ``(B, in, H, W) -> (B, out, H, W)``.

    Four parallel branches: a 1x1 convolution, and for k = 3, 5, 7 a 1x1 convolution, a 1xk and
    a kx1 convolution and a 3x3 convolution of dilation k. Their outputs are concatenated,
    fused by a 3x3 convolution, added to a 1x1 projection of the input, and passed through ReLU.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        c = out_channels
        branches = [conv_bn(in_channels, c, 1)]
        for k in (3, 5, 7):
            branches.append(
                nn.Sequential(
                    conv_bn(in_channels, c, 1),
                    conv_bn(c, c, (1, k), padding=(0, k // 2)),
                    conv_bn(c, c, (k, 1), padding=(k // 2, 0)),
                    conv_bn(c, c, 3, padding=k, dilation=k),
                )
            )
        self.branches = nn.ModuleList(branches)
        self.fuse = conv_bn(4 * c, c, 3, padding=1)
        self.shortcut = conv_bn(in_channels, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fused = self.fuse(torch.cat([branch(x) for branch in self.branches], dim=1))
        return F.relu(fused + self.shortcut(x))


class PartialDecoder(nn.Module):
    """The parallel partial decoder (``aggregation``) that gives PraNet's global map.

    Arguments of ``forward``: the ``(B, channels, ., .)`` features of the three deepest levels,
    ``x32`` at stride 32 (h x w), ``x16`` at stride 16 (2h x 2w), ``x8`` at stride 8 (4h x 4w).
    Returns ``(B, out_channels, 4h, 4w)`` logits at stride 8.

    Coarser features are upsampled 2x (bilinear, corners aligned, as released), convolved and
    multiplied into the finer ones; the products are concatenated with the upsampled coarser
    result level by level, and a 3x3 then a 1x1 convolution (with bias) give the map.
    """

    def __init__(self, channels: int, out_channels: int) -> None:
        super().__init__()
        c = channels
        self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
        self.gate32_to16 = conv_bn(c, c, 3, padding=1)
        self.gate32_to8 = conv_bn(c, c, 3, padding=1)
        self.gate16_to8 = conv_bn(c, c, 3, padding=1)
        self.carry32_to16 = conv_bn(c, c, 3, padding=1)
        self.carry16_to8 = conv_bn(2 * c, 2 * c, 3, padding=1)
        self.fuse16 = conv_bn(2 * c, 2 * c, 3, padding=1)
        self.fuse8 = conv_bn(3 * c, 3 * c, 3, padding=1)
        self.head = nn.Sequential(
            conv_bn(3 * c, 3 * c, 3, padding=1), nn.Conv2d(3 * c, out_channels, 1)
        )

    def forward(self, x32: torch.Tensor, x16: torch.Tensor, x8: torch.Tensor) -> torch.Tensor:
        up = self.up
        gated16 = self.gate32_to16(up(x32)) * x16
        # Two 2x steps, not one 4x: with aligned corners they differ, and this is as released.
        gated8 = self.gate32_to8(up(up(x32))) * self.gate16_to8(up(x16)) * x8
        level16 = self.fuse16(torch.cat([gated16, self.carry32_to16(up(x32))], dim=1))
        level8 = self.fuse8(torch.cat([gated8, self.carry16_to8(up(level16))], dim=1))
        return self.head(level8)


class ReverseAttention(nn.Module):
    """One reverse-attention branch: refine a coarse map with the features it has not yet
    explained.

    The attention ``1 - sigmoid(coarse)`` (large where the map does not yet see the object)
    scales every feature channel; a 1x1 convolution to ``width``, ``depth`` ``kernel`` x
    ``kernel`` convolutions each followed by ReLU, and an ``out_kernel`` convolution to the
    classes give a residual added to the coarse map.

    With several classes the attention is the mean over classes of ``1 - sigmoid``; for one
    class (PraNet's binary task) that is exactly the released formula.

    Arguments of ``forward``:
      features: ``(B, in_channels, h, w)`` backbone features.
      coarse: ``(B, num_classes, h, w)`` logits of the previous, coarser stage.
    Returns the refined ``(B, num_classes, h, w)`` logits.
    """

    def __init__(
        self,
        in_channels: int,
        width: int,
        kernel: int,
        depth: int,
        out_kernel: int,
        num_classes: int,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [conv_bn(in_channels, width, 1)]
        for _ in range(depth):
            layers += [conv_bn(width, width, kernel, padding=kernel // 2), nn.ReLU(inplace=True)]
        layers.append(conv_bn(width, num_classes, out_kernel, padding=out_kernel // 2))
        self.convs = nn.Sequential(*layers)

    def forward(self, features: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        attention = 1 - torch.sigmoid(coarse).mean(dim=1, keepdim=True)
        return self.convs(features * attention) + coarse
