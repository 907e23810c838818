"""U-Net (Ronneberger et al. 2015) and Attention U-Net (Oktay et al. 2018).

U-Net: an encoder of ``depth`` (4) levels, each a 2x2 max-pool then two 3x3 convolutions
doubling the channels (64 at the top), a decoder of 2x2 up-convolutions halving them,
concatenation with the encoder features of the same level, two 3x3 convolutions, and a 1x1
convolution to the classes. Deviations from the paper, all the usual ones:

- "same" (padding 1) convolutions instead of unpadded ones, so no cropping of skips and the
  output covers the whole input; any input size works by padding it to a multiple of
  ``2**depth`` (reflect) and cropping the logits back;
- BatchNorm after every 3x3 convolution (which then carries no bias);
- no dropout at the end of the contracting path (BatchNorm regularises instead).

Attention U-Net is the same network with an additive attention gate (``blocks.AttentionGate``)
on every skip connection, gated by the decoder features of the next coarser level (the
bottleneck for the deepest skip). Left out from the paper: deep supervision, and the 1x1
"gating signal" convolution and the gate's output 1x1 convolution found in the authors'
code but not in the paper's equations.
"""

from __future__ import annotations

import torch
from torch import nn

from train.models.blocks import DoubleConv, Down, Up, crop_padding, pad_to_multiple
from train.models.factory import register_model


@register_model("unet")
class UNet(nn.Module):
    """U-Net: ``(B, in_channels, H, W)`` float -> ``(B, num_classes, H, W)`` logits, any H, W.

    Arguments:
      in_channels, num_classes: input and output channels.
      base_channels: channels of the top level; level ``i`` has ``base_channels * 2**i``.
      depth: number of 2x down-samplings (the paper's 4).
      attention: put an attention gate on every skip connection (Attention U-Net).
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 2,
        base_channels: int = 64,
        depth: int = 4,
        attention: bool = False,
    ) -> None:
        super().__init__()
        widths = [base_channels * 2**i for i in range(depth + 1)]
        self.stride = 2**depth
        self.inc = DoubleConv(in_channels, widths[0])
        self.downs = nn.ModuleList(Down(widths[i], widths[i + 1]) for i in range(depth))
        self.ups = nn.ModuleList(
            Up(widths[i + 1], widths[i], widths[i], attention) for i in reversed(range(depth))
        )
        self.head = nn.Conv2d(widths[0], num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, pad = pad_to_multiple(x, self.stride)
        skips = [self.inc(x)]
        for down in self.downs:
            skips.append(down(skips[-1]))
        x = skips.pop()
        for up in self.ups:
            x = up(x, skips.pop())
        return crop_padding(self.head(x), pad)


@register_model("attention_unet")
class AttentionUNet(UNet):
    """Attention U-Net: ``UNet`` with attention gates on the skips; same arguments and shapes."""

    def __init__(
        self, in_channels: int = 3, num_classes: int = 2, base_channels: int = 64, depth: int = 4
    ) -> None:
        super().__init__(in_channels, num_classes, base_channels, depth, attention=True)
