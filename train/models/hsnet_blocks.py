"""HSNet's decoder blocks (Zhang et al., "HSNet: A hybrid semantic network for polyp
segmentation", 2022), as SAMAug's released ``lib/pvt.py`` computes them.

All tensors are float ``(B, C, H, W)``. The released code's names are in brackets.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ConvBN(nn.Sequential):
    """Convolution without bias, then BatchNorm; no activation ([BasicConv2d], whose ReLU the
    released code never applies). Keeps H and W ("same" padding)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
            nn.BatchNorm2d(out_channels),
        )


class ChannelGate(nn.Module):
    """ECA channel attention [Linear_Eca_block]: the global average of each channel, a 1-D
    convolution of width 5 across channels (no bias), sigmoid. ``(B, C, H, W) -> (B, C, 1,
    1)`` weights in (0, 1)."""

    def __init__(self, kernel_size: int = 5) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = F.adaptive_avg_pool2d(x, 1).flatten(2).transpose(1, 2)  # (B, 1, C)
        return torch.sigmoid(self.conv(pooled)).transpose(1, 2).unsqueeze(-1)


class Bottleneck(nn.Module):
    """Residual bottleneck [Bottleneck]: ``ReLU(BN(1x1(x)) + body(x))``, the body a 1x1
    convolution to ``out / 4`` channels, a 3x3 one, a 1x1 one to ``out``, each with
    BatchNorm, ReLU after the first two. ``(B, in, H, W) -> (B, out, H, W)``."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        mid = out_channels // 4
        self.shortcut = ConvBN(in_channels, out_channels, 1)
        self.body = nn.Sequential(
            ConvBN(in_channels, mid, 1),
            nn.ReLU(inplace=True),
            ConvBN(mid, mid, 3),
            nn.ReLU(inplace=True),
            ConvBN(mid, out_channels, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.shortcut(x) + self.body(x))


class HybridAttention(nn.Module):
    """Hybrid attention on a skip feature [HybridAttention]: its first half of channels is
    weighted per pixel by ``sigmoid(ConvBN_3x3 -> 1 (second half))``, its second half goes
    through a 3x3 ConvBN and is weighted per channel by the ``ChannelGate`` of the first half;
    the two halves concatenated again. ``(B, C, H, W) -> (B, C, H, W)``, C even."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        half = channels // 2
        self.gate = ChannelGate()
        self.conv = ConvBN(half, half, 3)
        self.spatial = ConvBN(half, 1, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first, second = x.chunk(2, dim=1)
        weighted = first * torch.sigmoid(self.spatial(second))
        return torch.cat([weighted, self.conv(second) * self.gate(first)], dim=1)


class HybridSemantic(nn.Module):
    """Hybrid semantic complementary module [HybridSenmentic], one decoder step: a global
    branch and a local branch multiplied, then upsampled 2x (bilinear, align_corners False).
    ``(B, in, H, W) -> (B, out, 2H, 2W)``.

    Global branch: a 3x3 stride-1 embedding to ``out`` channels and LayerNorm, one
    transformer block (timm's PVTv2 block: one head over every token, no spatial reduction,
    no query/key/value bias, an MLP of ratio 4 with a depth-wise convolution, LayerNorms of
    eps 1e-5) and a LayerNorm; the result is weighted by an attention map, per channel by
    its ``ChannelGate`` and per pixel by ``sigmoid(ConvBN_3x3 -> 1)``. The map is meant as the
    product of the block's queries and keys, but the released code takes its ``k`` from the
    query map ``q``, already ``(B, C, H, W)``, read again as if it were ``(B, H, W, C)`` and
    permuted back: a fixed reshuffle of the entries of ``q`` (``shuffled``). The map is
    ``q * shuffled(q)``, as released. Local branch: a ``Bottleneck`` of the input.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        # Imported here: importing timm takes seconds, and only these models need it.
        from timm.models.pvt_v2 import Block

        self.embed = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.embed_norm = nn.LayerNorm(out_channels)
        self.block = Block(
            out_channels, num_heads=1, mlp_ratio=4.0, sr_ratio=1, norm_layer=nn.LayerNorm
        )
        self.norm = nn.LayerNorm(out_channels)
        self.gate = ChannelGate()
        self.spatial = ConvBN(out_channels, 1, 3)
        self.local = Bottleneck(in_channels, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.embed_norm(self.embed(x).flatten(2).transpose(1, 2))  # (B, HW, out)
        b, _, h, w = x.shape
        # The block's queries, recomputed from its own layers (timm's block returns only its
        # output); with one head they are (B, HW, out).
        q = self.block.attn.q(self.block.norm1(tokens))
        tokens = self.norm(self.block(tokens, (h, w)))

        def image(t: torch.Tensor) -> torch.Tensor:
            return t.transpose(1, 2).reshape(b, -1, h, w)

        queries = image(q)
        shuffled = queries.reshape(b, h, w, -1).permute(0, 3, 1, 2)  # the released "k"
        attention = queries * shuffled
        weighted = image(tokens) * self.gate(attention) * torch.sigmoid(self.spatial(attention))
        out = weighted * self.local(x)
        return F.interpolate(out, scale_factor=2, mode="bilinear", align_corners=False)
