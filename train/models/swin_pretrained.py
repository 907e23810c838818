"""ImageNet Swin-T weights for ``SwinUNet``, placed where the released Swin-Unet places them.

The released Swin-Unet (``load_from`` in its ``networks/vision_transformer.py``) loads
Microsoft's ImageNet-1k Swin-T checkpoint into its encoder (patch embedding and its LayerNorm,
the Swin blocks of every stage, the patch merging layers, the final LayerNorm) and copies the
Swin blocks of encoder stage ``i`` into the decoder stage of the same level as well: its
``layers.i`` become ``layers_up.(3 - i)``, and since ``layers_up.0`` is a bare patch
expanding, the bottleneck stage is not mirrored. A tensor whose shape differs from the
model's is dropped. What the checkpoint has no counterpart for (patch expanding, the linear
layers that fuse the skip connections, the decoder's LayerNorm, the 4x expanding, the 1x1
head) keeps its random initialisation. Here the same, and in addition a first convolution
with more input channels than the checkpoint's 3 gets the RGB kernels plus zero kernels.

Three layouts of these weights are read, recognised by their keys:

- ``microsoft``: the official ``swin_tiny_patch4_window7_224.pth``, ``{"model": state_dict}``
  with ``layers.i.blocks.j....`` (MLP ``mlp.fc1``/``mlp.fc2``), the patch merging at the end
  of stage i (``layers.i.downsample``), the classifier ``head``, and the buffers
  ``relative_position_index`` and ``attn_mask``;
- ``timm`` (0.9 and later, ``swin_tiny_patch4_window7_224``): the same names without the
  buffers, the patch merging at the start of the next stage (``layers.(i+1).downsample``),
  the classifier ``head.fc``;
- ``torchvision`` (``swin_t``): ``features.0`` the patch embedding (``.0`` conv, ``.2``
  LayerNorm), ``features.(2i+1).j`` the blocks of stage i (MLP ``mlp.0``/``mlp.3``),
  ``features.(2i+2)`` the patch merging after it, ``norm``, ``head``.

Each is first renamed to the Microsoft layout (the one ``load_from`` reads), then mapped to
``SwinUNet``'s names. Buffers the model recomputes (``relative_position_index``,
``attn_mask``) are dropped before anything is counted.
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from precompute.downloads import sha256_file
from precompute.types import SettingError
from train.models.weight_files import read_tensors, widen_first_conv

if TYPE_CHECKING:
    from train.models.swin_unet import SwinUNet

LAYOUTS = ("microsoft", "timm", "torchvision")
EXPECTED = (
    "Microsoft's swin_tiny_patch4_window7_224.pth (`make weights` fetches it; {'model': ...} with "
    "layers.0.downsample.reduction.weight), timm's swin_tiny_patch4_window7_224 state dict "
    "(layers.1.downsample.reduction.weight, head.fc) or torchvision's swin_t state dict "
    "(features.0.0.weight)"
)
RECOMPUTED = ("relative_position_index", "attn_mask")
FIRST_CONV = "patch_embed.weight"
# Swin-T, for the error that says what fits: SwinUNet's defaults.
SWIN_T = "base_channels=96, num_heads=(3, 6, 12, 24), window_size=7, patch_size=4"


@dataclass(frozen=True)
class PretrainedReport:
    """What ``load_swin_imagenet`` did to a model.

    ``loaded``, ``skipped`` and ``missing`` are ``SwinUNet`` state-dict keys and together are
    all of them; ``unused`` are keys of the file, in the Microsoft layout.

    Fields:
      path, sha256, layout: the file, its sha256 (hex) and which of ``LAYOUTS`` it has.
      loaded: model tensors set from the file (a block mirrored into the decoder counts once
        for the encoder and once for the decoder).
      skipped: model tensors whose counterpart in the file has another shape (kept at their
        initialisation).
      missing: model tensors the file has no counterpart for (kept at their initialisation).
      unused: tensors of the file with no place in the model (the classifier, blocks or
        stages beyond the model's depth).
      notes: how tensors were adapted (the first convolution's input channels).
    """

    path: str
    sha256: str
    layout: str
    loaded: tuple[str, ...]
    skipped: tuple[str, ...]
    missing: tuple[str, ...]
    unused: tuple[str, ...]
    notes: tuple[str, ...] = ()

    def summary(self) -> str:
        """One line for a training log."""
        text = (
            f"pretrained {self.path} ({self.layout} layout, sha256 {self.sha256[:12]}): loaded "
            f"{len(self.loaded)} tensors, {len(self.missing)} without a counterpart keep their "
            f"initialisation, {len(self.unused)} of the file unused"
        )
        if self.skipped:
            text += f"; skipped {len(self.skipped)} of another shape: {', '.join(self.skipped)}"
        return "; ".join((text, *self.notes))


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of a Swin-T weight file on the CPU (``weight_files.read_tensors``)."""
    return read_tensors(path, EXPECTED)


def layout_of(keys: Collection[str]) -> str | None:
    """Which of ``LAYOUTS`` a state dict with these keys has, or None."""
    if "features.0.0.weight" in keys and "features.1.0.attn.qkv.weight" in keys:
        return "torchvision"
    if "patch_embed.proj.weight" in keys and "layers.0.blocks.0.attn.qkv.weight" in keys:
        if "layers.0.downsample.reduction.weight" in keys:
            return "microsoft"
        if "layers.1.downsample.reduction.weight" in keys:
            return "timm"
    return None


def microsoft_name(key: str, layout: str) -> str:
    """``key`` of a state dict in ``layout`` -> its name in the Microsoft layout."""
    if layout == "timm":
        if m := re.fullmatch(r"layers\.(\d+)\.downsample\.(.+)", key):
            return f"layers.{int(m[1]) - 1}.downsample.{m[2]}"
        return re.sub(r"^head\.fc\.", "head.", key)
    if layout == "torchvision":
        if m := re.fullmatch(r"features\.0\.([02])\.(.+)", key):
            return f"patch_embed.{'proj' if m[1] == '0' else 'norm'}.{m[2]}"
        if m := re.fullmatch(r"features\.(\d+)\.(\d+)\.(.+)", key):
            part = m[3].replace("mlp.0.", "mlp.fc1.").replace("mlp.3.", "mlp.fc2.")
            return f"layers.{(int(m[1]) - 1) // 2}.blocks.{m[2]}.{part}"
        if m := re.fullmatch(r"features\.(\d+)\.(.+)", key):
            return f"layers.{int(m[1]) // 2 - 1}.downsample.{m[2]}"
    return key


def swin_unet_names(key: str, stages: int) -> list[str]:
    """A Microsoft-layout key -> the ``SwinUNet`` keys it initialises (none, one, or an encoder
    block and its mirror in the decoder) for a model of ``stages`` stages."""
    if m := re.fullmatch(r"patch_embed\.(proj|norm)\.(.+)", key):
        return [f"{'patch_embed' if m[1] == 'proj' else 'embed_norm'}.{m[2]}"]
    if m := re.fullmatch(r"layers\.(\d+)\.blocks\.(\d+)\.(.+)", key):
        level, block = int(m[1]), m[2]
        part = m[3].replace("mlp.fc1.", "mlp.0.").replace("mlp.fc2.", "mlp.3.")
        names = [f"encoder.{level}.{block}.{part}"]
        if level <= stages - 2:  # decoder stages run coarse to fine; none at the bottleneck
            names.append(f"decoder.{stages - 2 - level}.{block}.{part}")
        return names
    if m := re.fullmatch(r"layers\.(\d+)\.downsample\.(.+)", key):
        return [f"merges.{m[1]}.{m[2]}"]
    if key.startswith("norm."):
        return [key]
    return []


def fit(name: str, tensor: torch.Tensor, shape: torch.Size) -> tuple[torch.Tensor | None, str]:
    """``tensor`` made to fill the model tensor ``name`` of ``shape``, and a note on how it was
    adapted ("" if it fits as it is); None if it cannot. Only the first convolution is
    adapted, along its input channels (``weight_files.widen_first_conv``)."""
    if tensor.shape == shape:
        return tensor, ""
    if name != FIRST_CONV:
        return None, ""
    fitted, note = widen_first_conv(tensor, shape)
    return fitted, f"{name}: {note}" if note else ""


def load_swin_imagenet(model: SwinUNet, path: str | os.PathLike) -> PretrainedReport:
    """Initialise ``model`` from ImageNet Swin-T weights at ``path`` (any of ``LAYOUTS``), the
    encoder and the mirrored decoder blocks as the released Swin-Unet does; see the module
    docstring. Tensors of another shape are skipped and reported.

    Returns the report. SettingError naming the file if it cannot be read, has none of the
    layouts, or none of its tensors fits the model.
    """
    state = read_state_dict(path)
    layout = layout_of(state.keys())
    if layout is None:
        first = ", ".join(list(state)[:3])
        raise SettingError(
            f"pretrained weight file {path}: not Swin-T weights in a layout this loader knows "
            f"(its first keys: {first}); give {EXPECTED}"
        )
    own = model.state_dict()
    stages = len(model.encoder)
    new: dict[str, torch.Tensor] = {}
    skipped, unused, notes = [], [], []
    for key, tensor in state.items():
        key = microsoft_name(key, layout)
        if key.rsplit(".", 1)[-1] in RECOMPUTED:
            continue
        targets = [name for name in swin_unet_names(key, stages) if name in own]
        if not targets:
            unused.append(key)
        for name in targets:
            fitted, note = fit(name, tensor, own[name].shape)
            if fitted is None:
                skipped.append(name)
                continue
            new[name] = fitted
            if note:
                notes.append(note)
    if not new:
        raise SettingError(
            f"pretrained weight file {path} ({layout} layout): none of its tensors fits this "
            f"SwinUNet; Swin-T weights need {SWIN_T}"
        )
    result = model.load_state_dict(new, strict=False)
    assert not result.unexpected_keys, result.unexpected_keys
    return PretrainedReport(
        path=str(path),
        sha256=sha256_file(path),
        layout=layout,
        loaded=tuple(name for name in own if name in new),
        skipped=tuple(skipped),
        missing=tuple(name for name in own if name not in new and name not in skipped),
        unused=tuple(unused),
        notes=tuple(notes),
    )
