"""PraNet's backbone, Res2Net-50 v1b 26w x 4s, taken from timm, and its ImageNet weights read
from a file.

timm's ``res2net50d`` is that network: the v1b deep stem (3x3 convolutions 3->32, 32->32,
32->64, the first of stride 2, then BatchNorm, ReLU and a 3x3 max-pool), bottlenecks of four
26-wide scales (layers of 3, 4, 6, 3 blocks; 512, 1024, 2048 output channels at strides 8,
16, 32 for layers 2-4), the first block of each layer average-pooling its last scale and the
shortcut downsampling by a 2x2 average pool (ceil mode, padding not counted) before its 1x1
convolution. tests/test_pranet.py checks this against a transcription of the authors'
``Res2Net_v1b.py``: same tensors, same outputs.

Weight files: timm's ``res2net50d`` state dict and the Res2Net authors' release
(``res2net50_v1b_26w_4s-3cf99910.pth``, loaded by ``Res2Net_v1b.py``) use the same key names
(``conv1.0.weight`` ... ``conv1.6.weight``, ``bn1.*``, ``layer1.0.convs.0.weight``,
``layer1.0.bns.0.*``, ``layer1.0.downsample.1.weight``, ``fc.*``), because timm kept the
authors' module names; so one key scheme reads both, from a torch file (``torch.load`` with
``weights_only``) or a ``.safetensors`` file. The ImageNet classifier (``fc.*``) is not used.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from . import weight_files
from .weight_files import BackboneReport

TIMM_NAME = "res2net50d"
CLASSIFIER_KEYS = frozenset({"fc.weight", "fc.bias"})
_EXPECTED = (
    "a Res2Net-50 v1b 26w4s ImageNet state dict (keys 'conv1.0.weight', "
    "'layer1.0.convs.0.weight', 'layer1.0.bns.0.weight', ..., optionally 'fc.*'), as in "
    "res2net50_v1b_26w_4s-3cf99910.pth or timm's res2net50d, saved with torch.save or as "
    ".safetensors"
)


def build_backbone(in_channels: int) -> nn.Module:
    """Res2Net-50 v1b 26w4s without its classifier, randomly initialised (Kaiming-normal
    convolutions, BatchNorm weight 1 and bias 0, as the authors' code does) except that the
    last BatchNorm of every block starts at weight 0 (timm's default, Goyal et al. 2017): each
    block starts as its shortcut. PraNet always starts from ImageNet weights, which replace
    all of this; from scratch, the authors' init lets activations grow to hundreds through
    the 16 blocks (in eval mode), where float32 rounding alone makes results depend on the
    batch size at the 1e-6 level.

    The module maps ``(B, in_channels, H, W)`` float, H and W multiples of 32, to the list of
    features of layers 2, 3 and 4: ``(B, 512, H/8, W/8)``, ``(B, 1024, H/16, W/16)``,
    ``(B, 2048, H/32, W/32)``. Its state-dict keys are those of the weight files.
    """
    # Imported here: importing timm takes seconds, and only PraNet needs it.
    import timm

    return timm.create_model(
        TIMM_NAME,
        pretrained=False,
        features_only=True,
        out_indices=(2, 3, 4),
        in_chans=in_channels,
    )


def check_weights_file(path: str | Path) -> Path:
    """The path of an existing file, or SettingError naming it (run before building anything)."""
    return weight_files.check_weights_file(path, _EXPECTED)


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a weight file by key, on the CPU (``weight_files.read_tensors``)."""
    return weight_files.read_tensors(path, _EXPECTED)


def load_backbone_weights(backbone: nn.Module, path: str | Path) -> BackboneReport:
    """Copy a Res2Net-50 v1b 26w4s ImageNet weight file into ``build_backbone``'s module:
    ``read_weights`` then ``apply_weights``."""
    return apply_weights(backbone, read_weights(path), path)


def apply_weights(
    backbone: nn.Module, weights: Mapping[str, torch.Tensor], path: str | Path
) -> BackboneReport:
    """Copy the tensors ``weights`` read from the file ``path`` into ``build_backbone``'s module
    (``weight_files.apply_backbone_weights``).

    The file must use the backbone's key names (see the module docstring) and hold at least
    one of its tensors; a file with other keys is refused with SettingError (it is another
    network, or a whole PraNet checkpoint, or not a weight file at all). When the backbone has
    more input channels than the file's first convolution (the concat fusion: image plus
    prior channels), the file's weights fill the first channels and the rest are zero, so the
    network starts out computing exactly what the pretrained one computes on the image.
    """
    return weight_files.apply_backbone_weights(
        backbone,
        weights,
        path,
        network="Res2Net-50 v1b 26w4s",
        expected=_EXPECTED,
        first_conv="conv1.0.weight",
        ignored=CLASSIFIER_KEYS,
    )
