"""2D P-Net (Wang et al., DeepIGeoS, TPAMI 2018, Fig. 2): a resolution-preserving network.

Five blocks of 3x3 convolutions with ``base_channels`` (64) outputs, 2, 2, 3, 3, 3 layers
and dilations 1, 2, 4, 8, 16, each convolution followed by BatchNorm and ReLU; no pooling
and no stride, so the receptive field grows exponentially at full resolution and any H, W
works without padding. Block 6, the classifier: the outputs of the five blocks concatenated,
dropout, a 1x1 convolution to ``2 * base_channels`` with BatchNorm and ReLU, and a 1x1
convolution to the classes. The hidden width of block 6 and the dropout rate are the settings
used here; the 3D P-Net's per-block 1x1 "compression" layers are not part of the 2D network.
"""

from __future__ import annotations

import torch
from torch import nn

from train.models.blocks import conv_bn_relu
from train.models.factory import register_model

LAYERS = (2, 2, 3, 3, 3)
DILATIONS = (1, 2, 4, 8, 16)


@register_model("pnet")
class PNet(nn.Module):
    """P-Net: ``(B, in_channels, H, W)`` float -> ``(B, num_classes, H, W)`` logits, any H, W.

    Arguments:
      in_channels, num_classes: input and output channels.
      base_channels: outputs of every 3x3 convolution (the paper's C = 64); the option
        every registered model has for its width.
      dropout: dropout rate on the concatenated features.
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 2,
        base_channels: int = 64,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList()
        for layers, dilation in zip(LAYERS, DILATIONS, strict=True):
            first = conv_bn_relu(
                base_channels if self.blocks else in_channels, base_channels, dilation
            )
            rest = [conv_bn_relu(base_channels, base_channels, dilation) for _ in range(layers - 1)]
            self.blocks.append(nn.Sequential(first, *rest))
        self.classifier = nn.Sequential(
            nn.Dropout(dropout),
            nn.Conv2d(len(LAYERS) * base_channels, 2 * base_channels, 1, bias=False),
            nn.BatchNorm2d(2 * base_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(2 * base_channels, num_classes, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = []
        for block in self.blocks:
            x = block(x)
            features.append(x)
        return self.classifier(torch.cat(features, dim=1))
