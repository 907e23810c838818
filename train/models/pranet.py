"""PraNet (Fan et al., "PraNet: Parallel Reverse Attention Network for Polyp Segmentation",
MICCAI 2020), the model of the SAMAug paper's polyp table (its structure loss:
``train.losses.structure_loss``).

As in the authors' released code (``lib/PraNet_Res2Net.py``, ``MyTrain.py``):

- backbone: Res2Net-50 v1b 26w x 4s (``pranet_backbone``); the features of layers 2, 3, 4
  (512, 1024, 2048 channels at strides 8, 16, 32) feed the head;
- three receptive-field blocks bring them to ``base_channels`` (32 in the paper);
- the parallel partial decoder gives the global map at stride 8;
- three reverse-attention branches, on the layer-4, layer-3 and layer-2 features in that
  order, each refine the previous map: the global map bilinearly downsampled 4x to stride 32
  for the first, then each result upsampled 2x for the next;
- four deep-supervision outputs, the global map and the three refinements, each bilinearly
  upsampled (x8, x32, x16, x8) to the input resolution; logits, no sigmoid.

Any input size works: the input is padded (reflect) to a multiple of 32 and every output
cropped back. For sizes that are already multiples of 32 (the paper trains at 352x352) the
computation is the released one. ``num_classes`` > 1 generalises the binary network: every
map gets one channel per class, and the reverse attention uses the mean over classes (see
``ReverseAttention``); with ``num_classes=1`` it is the released formula.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from precompute.checks import integer
from train.models.blocks import DeepSupervised, pad_to_multiple, upsample_maps
from train.models.factory import register_model
from train.models.pranet_backbone import apply_weights, build_backbone, read_weights
from train.models.pranet_blocks import PartialDecoder, ReceptiveField, ReverseAttention
from train.models.weight_files import BackboneReport

# The released branches: (width, kernel, ReLU convolutions, kernel of the last convolution),
# for the layer-4, layer-3 and layer-2 features.
REVERSE_BRANCHES = ((256, 5, 3, 1), (64, 3, 2, 3), (64, 3, 2, 3))
# Upsampling factors of the four outputs (stride 8, 32, 16, 8) to the input resolution.
OUTPUT_SCALES = (8, 32, 16, 8)


@register_model("pranet")
class PraNet(DeepSupervised):
    """PraNet: ``(B, in_channels, H, W)`` float -> ``(B, num_classes, H, W)`` logits, any H, W.

    ``forward`` returns the sum of the four deep-supervision maps (what the SAMAug polyp test
    script scores); ``forward_all`` returns the maps themselves, for a loss summed over them
    (``deep_supervision`` tells the trainer so).

    Arguments:
      in_channels: input channels: 3 for the image, more for the image plus SAM priors (the
        concat fusion); the first stem convolution takes them all.
      num_classes: output channels; 1 for PraNet's binary (sigmoid) task.
      base_channels: width of the receptive-field blocks and the partial decoder (the
        paper's 32). The reverse-attention widths (256, 64, 64) and the backbone are fixed.
      pretrained: path of a Res2Net-50 v1b 26w4s ImageNet weight file for the backbone (see
        ``pranet_backbone.load_backbone_weights``: timm's or the Res2Net release's keys, torch
        or safetensors); with more than 3 input channels the extra ones start at zero weight.
        What was loaded is in ``pretrained_report``. None: random initialisation.
    """

    stride = 32

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 1,
        base_channels: int = 32,
        pretrained: str | Path | None = None,
    ) -> None:
        super().__init__()
        integer("in_channels", in_channels, minimum=1)
        integer("num_classes", num_classes, minimum=1)
        integer("base_channels", base_channels, minimum=1)
        # Read first: a bad file is refused before the network is built.
        weights = None if pretrained is None else read_weights(pretrained)
        self.backbone = build_backbone(in_channels)
        c8, c16, c32 = self.backbone.feature_info.channels()
        self.rfb8 = ReceptiveField(c8, base_channels)
        self.rfb16 = ReceptiveField(c16, base_channels)
        self.rfb32 = ReceptiveField(c32, base_channels)
        self.decoder = PartialDecoder(base_channels, num_classes)
        self.reverse = nn.ModuleList(
            ReverseAttention(channels, *branch, num_classes=num_classes)
            for channels, branch in zip((c32, c16, c8), REVERSE_BRANCHES, strict=True)
        )
        self.pretrained_report: BackboneReport | None = (
            None if weights is None else apply_weights(self.backbone, weights, pretrained)
        )

    def forward_all(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The four deep-supervision maps, each ``(B, num_classes, H, W)`` logits, in the
        released order: the partial decoder's global map (``lateral_map_5``), then the
        reverse-attention refinements on layer 4, 3, 2 (``lateral_map_4, _3, _2``). The last
        is the one PraNet's own test script (``MyTest.py``) scores."""
        x, pad = pad_to_multiple(x, self.stride)
        f8, f16, f32 = self.backbone(x)
        coarse = self.decoder(self.rfb32(f32), self.rfb16(f16), self.rfb8(f8))
        maps = [coarse]
        coarse = F.interpolate(coarse, scale_factor=0.25, mode="bilinear")
        for i, (branch, features) in enumerate(zip(self.reverse, (f32, f16, f8), strict=True)):
            if i > 0:
                coarse = F.interpolate(coarse, scale_factor=2, mode="bilinear")
            coarse = branch(features, coarse)
            maps.append(coarse)
        return upsample_maps(maps, OUTPUT_SCALES, pad)
