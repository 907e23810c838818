"""HSNet (Zhang et al., "HSNet: A hybrid semantic network for polyp segmentation", Computers
in Biology and Medicine 2022), the network SAMAug's released polyp script trains
(``Polyp_HSNet_SAMAug_Train_and_Test.py``, ``lib/pvt.py`` of github.com/yizhezhang2000/SAMAug).

As ``lib/pvt.py`` computes it:

- backbone: PVTv2-B2 (``pvt_backbone``, from timm): features ``f4, f8, f16, f32`` of 64, 128,
  320, 512 channels at strides 4, 8, 16, 32;
- decoder: ``d32`` = a 1x1 ConvBN of ``f32``; then three steps, each a ``HybridSemantic``
  (global and local branches, upsampled 2x) of the previous result multiplied by a
  ``HybridAttention`` of the skip feature: ``d16`` from ``d32`` and ``f16``, ``d8`` from
  ``d16`` and ``f8``, ``d4`` from ``d8`` and ``f4``;
- four outputs, one per level, each a 1x1 convolution of ``d4, d8, d16, d32`` weighted by a
  per-image coefficient, then bilinearly upsampled (x4, x8, x16, x32) to the input size. The
  coefficients: each level through a 1x1 convolution (with bias) to 64 channels and
  BatchNorm, globally averaged, the four summed, then linear 64 -> 64, ReLU, linear 64 -> 4,
  sigmoid.

The released ``Decoder`` also builds a ``HybridAttention`` of the layer-4 feature
(``hb0``) that its forward never calls; it is left out. The script trains
``HSNet_with_aux``, which adds four 3-channel 1x1 heads (``out1_a`` ...) whose outputs
neither the loss nor the test uses: they change nothing and are left out too. Its loss is
the sum over the four maps, and its test scores the sum of the four maps (upsampled to the
ground truth's size, sigmoid, min-max normalised): ``forward_all`` and ``forward`` here.

Any input size works: the input is padded (reflect) to a multiple of 32 and every output
cropped back; for multiples of 32 (the released 352 x 352 and its training scales) the
computation is the released one (README, "Paper, released code and our choices", records
the comparison; tests/test_released_networks.py pins our outputs). On padded inputs the
padding also enters the global averages of the gates. ``num_classes`` > 1 generalises the
binary network: every output head gets one channel per class, each weighted by its level's
coefficient.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from precompute.checks import integer
from train.models.blocks import DeepSupervised, pad_to_multiple, upsample_maps
from train.models.factory import register_model
from train.models.hsnet_blocks import ConvBN, HybridAttention, HybridSemantic
from train.models.pvt_backbone import PvtV2Features, apply_weights, read_weights
from train.models.weight_files import BackboneReport

# Upsampling factors of the four outputs (strides 4, 8, 16, 32) to the input resolution.
OUTPUT_SCALES = (4, 8, 16, 32)


@register_model("hsnet")
class HSNet(DeepSupervised):
    """HSNet: ``(B, in_channels, H, W)`` float -> ``(B, num_classes, H, W)`` logits, any H, W.

    ``forward`` returns the sum of the four deep-supervision maps (what SAMAug's polyp test
    scores); ``forward_all`` returns the maps themselves, for a loss summed over them
    (``deep_supervision`` tells the trainer so).

    Arguments:
      in_channels: input channels: 3 for the image, more for the image plus SAM priors (the
        concat fusion); the backbone's patch embedding takes them all.
      num_classes: output channels; 1 for HSNet's binary (sigmoid) task.
      base_channels: width of the backbone's first stage, C (PVTv2-B2's 64); the stages are
        C, 2C, 5C, 8C wide, the decoder follows them, and the coefficient branch is C wide.
        Even (the hybrid attention halves its channels). ImageNet weights need 64.
      drop_path_rate: the backbone's stochastic depth, rising linearly over its blocks to
        this (0.1, as in HSNet's ``pvt_v2_b2``).
      pretrained: path of a PVTv2-B2 ImageNet weight file for the backbone
        (``pvt_backbone``: the PVT authors' ``pvt_v2_b2.pth`` or timm's, torch or
        safetensors); with more than 3 input channels the extra ones start at zero weight.
        What was loaded is in ``pretrained_report``. None: random initialisation.
    """

    stride = 32

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 1,
        base_channels: int = 64,
        drop_path_rate: float = 0.1,
        pretrained: str | Path | None = None,
    ) -> None:
        super().__init__()
        integer("in_channels", in_channels, minimum=1)
        integer("num_classes", num_classes, minimum=1)
        integer("base_channels", base_channels, minimum=2)
        if base_channels % 2:
            raise ValueError(f"base_channels must be even, not {base_channels}")
        # Read first: a bad file is refused before the network is built.
        weights = None if pretrained is None else read_weights(pretrained)
        self.backbone = PvtV2Features(in_channels, base_channels, drop_path_rate)
        c4, c8, c16, c32 = self.backbone.channels
        self.transfer = ConvBN(c32, c32, 1)
        self.semantic = nn.ModuleList(
            HybridSemantic(a, b) for a, b in ((c32, c16), (c16, c8), (c8, c4))
        )
        self.attention = nn.ModuleList(HybridAttention(c) for c in (c16, c8, c4))
        levels = (c4, c8, c16, c32)
        self.heads = nn.ModuleList(nn.Conv2d(c, num_classes, 1) for c in levels)
        self.summaries = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c, c4, 1), nn.BatchNorm2d(c4)) for c in levels
        )
        self.coefficients = nn.Sequential(
            nn.Linear(c4, c4), nn.ReLU(), nn.Linear(c4, len(levels)), nn.Sigmoid()
        )
        self.pretrained_report: BackboneReport | None = (
            None if weights is None else apply_weights(self.backbone, weights, pretrained)
        )

    def forward_all(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The four deep-supervision maps, each ``(B, num_classes, H, W)`` logits, in the
        released order: strides 4, 8, 16, 32 (``prediction1_4`` ... ``prediction4_32``)."""
        x, pad = pad_to_multiple(x, self.stride)
        f4, f8, f16, f32 = self.backbone(x)
        decoded = [self.transfer(f32)]
        for semantic, attention, skip in zip(
            self.semantic, self.attention, (f16, f8, f4), strict=True
        ):
            decoded.append(semantic(decoded[-1]) * attention(skip))
        levels = decoded[::-1]  # d4, d8, d16, d32
        pooled = sum(
            F.adaptive_avg_pool2d(summary(d), 1)
            for summary, d in zip(self.summaries, levels, strict=True)
        )
        weights = self.coefficients(pooled.flatten(1))  # (B, 4)
        maps = [
            head(d) * weights[:, i, None, None, None]
            for i, (head, d) in enumerate(zip(self.heads, levels, strict=True))
        ]
        return upsample_maps(maps, OUTPUT_SCALES, pad)
