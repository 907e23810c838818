"""HSNet's backbone, PVTv2-B2 (Wang et al., "PVT v2: Improved Baselines with Pyramid Vision
Transformer", 2022), taken from timm, and its ImageNet weights read from a file.

timm's ``pvt_v2_b2`` is the network HSNet builds from the PVT authors' code (SAMAug's
``lib/pvtv2.py``, the classification ``pvt_v2.py`` of github.com/whai362/PVT): an overlapping
7x7 stride-4 patch embedding, then four stages of 3, 4, 6, 3 blocks at widths 64, 128, 320,
512 (strides 4, 8, 16, 32; stages 2-4 start with an overlapping 3x3 stride-2 embedding),
1, 2, 5, 8 attention heads whose keys and values are spatially reduced by 8, 4, 2, 1 (a
strided convolution and a LayerNorm), MLPs of ratio 8, 8, 4, 4 with a 3x3 depth-wise
convolution after the first linear layer, LayerNorms of eps 1e-6 in the blocks and after
each stage (1e-5 in the embeddings and the reductions), query/key/value biases, and
stochastic depth rising linearly to 0.1 over the 16 blocks (the rate HSNet's ``pvt_v2_b2``
sets). The four stage outputs, after their LayerNorms, feed HSNet's decoder.

Weight files, two layouts, recognised by their keys, torch (``torch.load`` with
``weights_only``) or ``.safetensors``:

- the PVT authors' ``pvt_v2_b2.pth`` (what HSNet loads; ``make weights`` fetches it): a plain
  state dict with ``patch_embed1``-``patch_embed4``, ``block1.0.attn.q.weight``, ...,
  ``mlp.dwconv.dwconv.weight``, ``norm1``-``norm4`` and the classifier ``head``;
- timm's ``pvt_v2_b2`` (e.g. its ``model.safetensors``): ``patch_embed``,
  ``stages.i.downsample`` (the embedding that starts stage i), ``stages.i.blocks.j``,
  ``mlp.dwconv.weight``, ``stages.i.norm``, ``head``.

The authors' keys are renamed to timm's (``timm_name``, the renaming timm applies when it
loads their file); the classifier is not used.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from . import weight_files
from .weight_files import BackboneReport

TIMM_NAME = "pvt_v2_b2"
# PVTv2-B2's stage widths as multiples of the first (64, 128, 320, 512); with its 1, 2, 5, 8
# heads, a head is as wide as the first stage in every stage.
WIDTHS = (1, 2, 5, 8)
FIRST_CONV = "patch_embed.proj.weight"
CLASSIFIER_KEYS = frozenset({"head.weight", "head.bias"})
_EXPECTED = (
    "PVTv2-B2 ImageNet weights: the PVT authors' pvt_v2_b2.pth (`make weights` fetches it; "
    "keys 'patch_embed1.proj.weight', 'block1.0.attn.q.weight', ...) or timm's pvt_v2_b2 "
    "('patch_embed.proj.weight', 'stages.0.blocks.0.attn.q.weight', ...), saved with "
    "torch.save or as .safetensors"
)


class PvtV2Features(nn.Module):
    """PVTv2-B2 without its classifier, randomly initialised as timm does (truncated-normal
    linear layers, fan-out normal convolutions, unit LayerNorms).

    ``(B, in_channels, H, W)`` float -> the four stage outputs ``(B, C * w, ceil(H / s),
    ceil(W / s))`` for ``(w, s)`` in ``(1, 4), (2, 8), (5, 16), (8, 32)``, C the
    ``base_channels`` (64: PVTv2-B2). Its state-dict keys are timm's (``patch_embed.*``,
    ``stages.*``), so timm's file loads as it is.
    """

    def __init__(
        self, in_channels: int, base_channels: int = 64, drop_path_rate: float = 0.1
    ) -> None:
        super().__init__()
        # Imported here: importing timm takes seconds, and only these backbones need it.
        import timm

        self.channels = tuple(base_channels * w for w in WIDTHS)
        net = timm.create_model(
            TIMM_NAME,
            pretrained=False,
            num_classes=0,
            in_chans=in_channels,
            embed_dims=self.channels,
            drop_path_rate=drop_path_rate,
        )
        self.patch_embed = net.patch_embed
        self.stages = net.stages

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.patch_embed(x)  # (B, H/4, W/4, C): the first stage takes it as it is
        features = []
        for stage in self.stages:
            x = stage(x)  # (B, C_i, H_i, W_i)
            features.append(x)
        return features


def timm_name(key: str) -> str:
    """A key of the PVT authors' layout -> timm's name for it (other keys unchanged)."""
    if m := re.fullmatch(r"patch_embed(\d)\.(.+)", key):
        stage = int(m[1]) - 1
        return f"patch_embed.{m[2]}" if stage == 0 else f"stages.{stage}.downsample.{m[2]}"
    if m := re.fullmatch(r"block(\d)\.(\d+)\.(.+)", key):
        part = m[3].replace("mlp.dwconv.dwconv.", "mlp.dwconv.")
        return f"stages.{int(m[1]) - 1}.blocks.{m[2]}.{part}"
    if m := re.fullmatch(r"norm(\d)\.(.+)", key):
        return f"stages.{int(m[1]) - 1}.norm.{m[2]}"
    return key


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a PVTv2-B2 weight file, by timm's key names, on the CPU (either layout of
    the module docstring; ``weight_files.read_tensors``)."""
    weights = weight_files.read_tensors(path, _EXPECTED)
    if "patch_embed1.proj.weight" in weights:
        weights = {timm_name(k): v for k, v in weights.items()}
    return weights


def apply_weights(
    backbone: PvtV2Features, weights: Mapping[str, torch.Tensor], path: str | Path
) -> BackboneReport:
    """Copy ``read_weights``' tensors of the file ``path`` into ``backbone``
    (``weight_files.apply_backbone_weights``): a file with other keys is refused with
    SettingError; with more input channels than the file's 3 (the concat fusion), the extra
    channels of the patch embedding start at zero weight."""
    return weight_files.apply_backbone_weights(
        backbone,
        weights,
        path,
        network="PVTv2-B2",
        expected=_EXPECTED,
        first_conv=FIRST_CONV,
        ignored=CLASSIFIER_KEYS,
    )


def load_pvt_weights(backbone: PvtV2Features, path: str | Path) -> BackboneReport:
    """``read_weights`` then ``apply_weights``."""
    return apply_weights(backbone, read_weights(path), path)
