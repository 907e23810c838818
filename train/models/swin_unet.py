"""Swin-Unet (Cao et al. 2021): a U-shaped pure Transformer built from Swin Transformer blocks.

Encoder: 4x4 patch partition and linear embedding (a 4x4 stride-4 convolution, then
LayerNorm) to ``base_channels`` (C = 96); stages of Swin blocks (depths 2, 2, 2, 2, heads 3, 6,
12, 24, window 7) alternating regular and shifted windows, multi-head self-attention with a
relative position bias, and patch merging (2x2 neighbours concatenated, LayerNorm, linear
4C -> 2C) between stages. Decoder, symmetric: patch expanding (linear C -> 2C, rearranged into
2x2 neighbours of C/2, LayerNorm), concatenation with the encoder features of the same level
and a linear layer back to the level's width, Swin blocks; finally LayerNorm, a 4x patch
expanding back to the input resolution and a 1x1 projection to the classes. Defaults match
the paper's Swin-T configuration (drop path 0.2 as in its released config).

Skip connections, as in the released code (``SwinTransformerSys.forward_features``): the
skip of a level is that level's input, the patch embedding (level 0) or the patch merging
output, taken before the level's Swin blocks. ``skip_source="output"`` takes instead the
output of the level's encoder blocks, as the paper's Fig. 1 draws it; the default is the
released one.

Input sizes: the released code fixes the input at 224x224, where a 7x7 window tiles every
stage (56, 28, 14 and 7 tokens a side) and the bottleneck is one window without a shift.
That is the size ``default_patch_size`` asks the trainer for (``TrainConfig.resolve`` uses
it when no ``--patch-size`` is given), and at 224x224 this module computes the released
network: README, "Paper, released code and our choices", records the comparison, and
tests/test_swin_pretrained.py pins its outputs. Any other H, W works too:

- the input is padded (reflect) to a multiple of ``patch_size * 2**(stages - 1)`` (32), which
  makes every patch merging see even sizes, and the logits are cropped back;
- inside each block the feature map is zero-padded at the bottom/right to a multiple of the
  window (as the Swin reference does for detection), and padded tokens are masked out as
  keys in every window, shifted or not, so the valid tokens never attend to them;
- along an axis no longer than one window nothing is shifted (the Swin rule for maps that fit
  in one window, applied per axis).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import StochasticDepth

from train.models.blocks import crop_padding, pad_to_multiple
from train.models.factory import register_model
from train.models.swin_pretrained import load_swin_imagenet

# Added to the attention logits of excluded pairs (Swin's value): exp(-100) vanishes next to
# any real logit, yet a fully masked row stays finite (no NaN) where -inf would not.
MASK_VALUE = -100.0
# What a skip connection carries (``SwinUNet``'s ``skip_source``): the released code's first.
SKIP_SOURCES = ("input", "output")


def window_partition(x: torch.Tensor, window: int) -> torch.Tensor:
    """``(B, H, W, C)``, H and W multiples of ``window`` -> ``(B, nW, window**2, C)``."""
    b, h, w, c = x.shape
    x = x.reshape(b, h // window, window, w // window, window, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, -1, window * window, c)


def window_reverse(windows: torch.Tensor, window: int, h: int, w: int) -> torch.Tensor:
    """Inverse of ``window_partition``: ``(B, nW, window**2, C)`` -> ``(B, h, w, C)``."""
    b, c = windows.shape[0], windows.shape[-1]
    x = windows.reshape(b, h // window, w // window, window, window, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h, w, c)


def attention_mask(
    h: int, w: int, window: int, shift: tuple[int, int], device: torch.device
) -> torch.Tensor | None:
    """Additive attention mask ``(nW, N, N)`` (0 or ``MASK_VALUE``) for an ``h x w`` map,
    zero-padded to multiples of ``window`` and rolled by ``-shift``; None if nothing is masked.

    Shifted windows are windows of a grid offset by ``shift``: along an axis, position p lies
    in window ``floor((p - shift) / window)``. After the cyclic roll, a window may hold tokens
    of two such offset windows (wrapped around); those must not attend each other, nor any
    token attend padding.
    """
    hp, wp = h + (-h % window), w + (-w % window)
    if shift == (0, 0) and (hp, wp) == (h, w):
        return None
    ys, xs = torch.arange(hp, device=device), torch.arange(wp, device=device)
    gy = torch.div(ys - shift[0], window, rounding_mode="floor") + 1
    gx = torch.div(xs - shift[1], window, rounding_mode="floor") + 1
    group = gy[:, None] * (wp // window + 2) + gx[None, :]
    valid = (ys[:, None] < h) & (xs[None, :] < w)
    rolled = torch.stack([group, valid.long()], dim=-1).roll((-shift[0], -shift[1]), (0, 1))
    group, valid = window_partition(rolled[None], window)[0].unbind(-1)
    allowed = (group[:, :, None] == group[:, None, :]) & valid[:, None, :].bool()
    return torch.zeros(allowed.shape, device=device).masked_fill(~allowed, MASK_VALUE)


class WindowAttention(nn.Module):
    """(Shifted) window multi-head self-attention with a relative position bias.

    ``forward(x, shift)``: ``x`` is ``(B, H, W, dim)`` for any H, W; ``shift`` the (rows,
    columns) cyclic shift, each in ``[0, window)``. Returns ``(B, H, W, dim)``.
    """

    def __init__(
        self, dim: int, num_heads: int, window: int, attn_drop: float = 0.0, drop: float = 0.0
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not divisible by {num_heads} heads")
        self.num_heads, self.window = num_heads, window
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.attn_drop, self.proj_drop = nn.Dropout(attn_drop), nn.Dropout(drop)
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * window - 1) ** 2, num_heads)
        )
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        coords = torch.stack(
            torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
        ).flatten(1)
        rel = coords[:, :, None] - coords[:, None, :] + window - 1  # (2, N, N), in [0, 2w-2]
        self.register_buffer(
            "relative_position_index", rel[0] * (2 * window - 1) + rel[1], persistent=False
        )

    def forward(self, x: torch.Tensor, shift: tuple[int, int] = (0, 0)) -> torch.Tensor:
        b, h, w, c = x.shape
        win = self.window
        hp, wp = h + (-h % win), w + (-w % win)
        x = F.pad(x, (0, 0, 0, wp - w, 0, hp - h)).roll((-shift[0], -shift[1]), (1, 2))
        windows = window_partition(x, win)  # (B, nW, N, C)
        n_win, n = windows.shape[1:3]
        qkv = self.qkv(windows).view(b, n_win, n, 3, self.num_heads, c // self.num_heads)
        q, k, v = qkv.permute(3, 0, 1, 4, 2, 5).unbind(0)  # each (B, nW, heads, N, C/heads)
        attn = (q * self.scale) @ k.transpose(-2, -1)
        bias = self.relative_position_bias_table[self.relative_position_index]  # (N, N, heads)
        attn = attn + bias.permute(2, 0, 1)
        mask = attention_mask(h, w, win, shift, x.device)
        if mask is not None:
            attn = attn + mask[:, None].to(attn.dtype)
        attn = self.attn_drop(attn.softmax(dim=-1))
        out = (attn @ v).transpose(2, 3).reshape(b, n_win, n, c)
        out = window_reverse(self.proj_drop(self.proj(out)), win, hp, wp)
        return out.roll(shift, (1, 2))[:, :h, :w]


class SwinBlock(nn.Module):
    """Swin Transformer block: ``x + (S)W-MSA(LN(x))``, then ``x + MLP(LN(x))``.

    ``(B, H, W, dim) -> (B, H, W, dim)``. ``shifted`` blocks roll by ``window // 2`` along
    every axis longer than one window.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window: int,
        shifted: bool,
        mlp_ratio: float = 4.0,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        self.window, self.shifted = window, shifted
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, num_heads, window, attn_drop, drop)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(
            nn.Linear(dim, hidden),
            nn.GELU(),
            nn.Dropout(drop),
            nn.Linear(hidden, dim),
            nn.Dropout(drop),
        )
        self.drop_path = StochasticDepth(drop_path, "row")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.window // 2 if self.shifted else 0
        shift = tuple(s if n > self.window else 0 for n in x.shape[1:3])
        x = x + self.drop_path(self.attn(self.norm1(x), shift))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class SwinStage(nn.Sequential):
    """``len(drop_path)`` Swin blocks, alternating regular and shifted windows."""

    def __init__(
        self, dim: int, num_heads: int, window: int, drop_path: Sequence[float], **kwargs
    ) -> None:
        super().__init__(
            *(
                SwinBlock(dim, num_heads, window, i % 2 == 1, drop_path=p, **kwargs)
                for i, p in enumerate(drop_path)
            )
        )


class PatchMerging(nn.Module):
    """Concatenate each 2x2 neighbourhood, LayerNorm, linear 4C -> 2C.

    ``(B, H, W, C)``, H and W even -> ``(B, H/2, W/2, 2C)``.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1)
        return self.reduction(self.norm(x))


class PatchExpand(nn.Module):
    """Linear C -> scale**2 * out_dim, each token rearranged into a scale x scale patch of
    ``out_dim`` channels, LayerNorm. ``(B, H, W, C) -> (B, scale*H, scale*W, out_dim)``.

    Swin-Unet's patch expanding is ``scale=2, out_dim=C/2``; its final 4x expanding is
    ``scale=4, out_dim=C``.
    """

    def __init__(self, dim: int, scale: int, out_dim: int) -> None:
        super().__init__()
        self.scale, self.out_dim = scale, out_dim
        self.expand = nn.Linear(dim, scale * scale * out_dim, bias=False)
        self.norm = nn.LayerNorm(out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, _ = x.shape
        s = self.scale
        x = self.expand(x).view(b, h, w, s, s, self.out_dim).permute(0, 1, 3, 2, 4, 5)
        return self.norm(x.reshape(b, h * s, w * s, self.out_dim))


@register_model("swin_unet")
class SwinUNet(nn.Module):
    """Swin-Unet: ``(B, in_channels, H, W)`` float -> ``(B, num_classes, H, W)`` logits, any H, W.

    Arguments:
      in_channels, num_classes: input and output channels.
      base_channels: the embedding width C of the first stage (the paper's 96); stage ``i``
        has ``C * 2**i``. The option every registered model has for its width.
      depths, num_heads: Swin blocks and attention heads per stage (the decoder mirrors them).
      window_size: side of the attention windows, in tokens.
      patch_size: side of the patches embedded as tokens.
      mlp_ratio: hidden width of the blocks' MLPs, relative to their width.
      drop_rate, attn_drop_rate: dropout after the embedding/MLPs/projections, and on the
        attention weights.
      drop_path_rate: stochastic depth, rising linearly to this over the encoder's blocks; a
        decoder level uses the rates of its encoder level.
      skip_source: what a level's skip connection carries: "input" (the released code: the
        level's patch embedding or merging output) or "output" (the paper's figure: the output
        of the level's encoder blocks).
      pretrained: path of ImageNet Swin-T weights (Microsoft's, timm's or torchvision's) to
        initialise the encoder and the mirrored decoder blocks from, as the released code does
        (``swin_pretrained.load_swin_imagenet``); what it did is in ``self.pretrained_report``.
    """

    # The released input side, 224 = 4 * 7 * 2**3: a 7x7 window tiles every stage. The
    # trainer's patch (or resize) side when no --patch-size is given (TrainConfig.resolve).
    default_patch_size = 224
    # Bounds of its whole-number options (``factory.option_bounds``): stages (and blocks per
    # stage, heads) at most 8 (the released model has 4), windows and patches far beyond any
    # input side a model is trained at.
    option_bounds = {"depths": 8, "num_heads": 64, "window_size": 64, "patch_size": 32}

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 2,
        base_channels: int = 96,
        depths: Sequence[int] = (2, 2, 2, 2),
        num_heads: Sequence[int] = (3, 6, 12, 24),
        window_size: int = 7,
        patch_size: int = 4,
        mlp_ratio: float = 4.0,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.2,
        skip_source: str = "input",
        pretrained: str | None = None,
    ) -> None:
        super().__init__()
        if len(depths) != len(num_heads):
            raise ValueError(f"depths {depths} and num_heads {num_heads} differ in length")
        if skip_source not in SKIP_SOURCES:
            raise ValueError(f"skip_source {skip_source!r} is none of {', '.join(SKIP_SOURCES)}")
        self.skip_source = skip_source
        n = len(depths)
        self.stride = patch_size * 2 ** (n - 1)
        dims = [base_channels * 2**i for i in range(n)]
        rates = torch.linspace(0, drop_path_rate, sum(depths), device="cpu").tolist()
        starts = [sum(depths[:i]) for i in range(n)]

        def stage(i: int) -> SwinStage:
            p = rates[starts[i] : starts[i] + depths[i]]
            return SwinStage(
                dims[i],
                num_heads[i],
                window_size,
                p,
                mlp_ratio=mlp_ratio,
                drop=drop_rate,
                attn_drop=attn_drop_rate,
            )

        self.patch_embed = nn.Conv2d(in_channels, base_channels, patch_size, stride=patch_size)
        self.embed_norm = nn.LayerNorm(base_channels)
        self.pos_drop = nn.Dropout(drop_rate)
        self.encoder = nn.ModuleList(stage(i) for i in range(n))
        self.merges = nn.ModuleList(PatchMerging(dims[i]) for i in range(n - 1))
        self.norm = nn.LayerNorm(dims[-1])
        levels = list(reversed(range(n - 1)))  # decoder levels, coarse to fine
        self.expands = nn.ModuleList(PatchExpand(dims[i + 1], 2, dims[i]) for i in levels)
        self.skip_fuse = nn.ModuleList(nn.Linear(2 * dims[i], dims[i]) for i in levels)
        self.decoder = nn.ModuleList(stage(i) for i in levels)
        self.norm_up = nn.LayerNorm(base_channels)
        self.final_expand = PatchExpand(base_channels, patch_size, base_channels)
        self.head = nn.Conv2d(base_channels, num_classes, 1, bias=False)
        self.apply(_init_weights)
        self.pretrained_report = None
        if pretrained is not None:
            self.pretrained_report = load_swin_imagenet(self, pretrained)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, pad = pad_to_multiple(x, self.stride)
        x = self.pos_drop(self.embed_norm(self.patch_embed(x).permute(0, 2, 3, 1)))
        skips = []
        for stage, merge in zip(self.encoder[:-1], self.merges, strict=True):
            out = stage(x)
            skips.append(x if self.skip_source == "input" else out)
            x = merge(out)
        x = self.norm(self.encoder[-1](x))
        for expand, fuse, stage in zip(self.expands, self.skip_fuse, self.decoder, strict=True):
            x = stage(fuse(torch.cat([expand(x), skips.pop()], dim=-1)))
        x = self.final_expand(self.norm_up(x))
        return crop_padding(self.head(x.permute(0, 3, 1, 2)), pad)


def _init_weights(m: nn.Module) -> None:
    # The Swin/Swin-Unet initialisation: truncated normal linear weights, unit LayerNorms.
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
