"""Pretrained weight files for the models' ``pretrained=PATH`` option: tensors only, never code.

``read_tensors`` reads a ``.safetensors`` file, or a ``torch.save`` file with
``torch.load(weights_only=True)`` on the CPU, so nothing in a received file is run; a
``{"model": ...}`` or ``{"state_dict": ...}`` wrapper (how released checkpoints often hold a
state dict) is opened. ``widen_first_conv`` adapts an RGB network's first convolution to
another number of input channels. Each model's own loader maps the keys; a backbone whose
file, once renamed, uses its own state-dict keys (PraNet's Res2Net, HSNet's PVTv2) is then
filled by ``apply_backbone_weights``, which reports what it did (``BackboneReport``).
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from precompute.files import TORCH_LOAD_ERRORS
from precompute.types import SettingError

# What reading an arbitrary file fails with: torch.load's, and safetensors' header checks.
READ_ERRORS = (*TORCH_LOAD_ERRORS, SafetensorError)
# BatchNorm's step counter: no learned value, and a file may lack it.
_COUNTER = "num_batches_tracked"


def check_weights_file(path: object, expected: str) -> Path:
    """The path of an existing file, or SettingError naming it and ``expected`` (what file
    the model takes); cheap, so options are checked before anything is built."""
    if not isinstance(path, (str, os.PathLike)) or not str(path):
        raise SettingError(f"pretrained must be the path of a weight file, not {path!r}")
    path = Path(path)
    if not path.is_file():
        raise SettingError(f"pretrained weight file {path}: no such file; give {expected}")
    return path


def read_tensors(path: object, expected: str) -> dict[str, torch.Tensor]:
    """The tensors of a weight file by name, on the CPU (module doc). SettingError naming the
    file and ``expected`` when it is absent, unreadable, would need code unpickled, or holds
    anything but names -> tensors."""
    path = check_weights_file(path, expected)
    try:
        if path.suffix == ".safetensors":
            loaded = load_file(path, device="cpu")
        else:
            loaded = torch.load(path, map_location="cpu", weights_only=True)
    except READ_ERRORS as err:
        # The type only for a refused pickle: torch's message is long and suggests dropping
        # weights_only, which a file of plain tensors never needs; else its first line.
        lines = str(err).strip().splitlines()
        unpickling = isinstance(err, pickle.UnpicklingError)
        detail = f": {lines[0]}" if lines and not unpickling else ""
        raise SettingError(
            f"pretrained weight file {path}: cannot be read as a PyTorch or safetensors file "
            f"({type(err).__name__}{detail}); give {expected}"
        ) from err
    for wrapper in ("model", "state_dict"):
        if isinstance(loaded, Mapping) and isinstance(loaded.get(wrapper), Mapping):
            loaded = loaded[wrapper]
    if not (
        isinstance(loaded, Mapping)
        and loaded
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in loaded.items())
    ):
        raise SettingError(
            f"pretrained weight file {path}: holds a {type(loaded).__name__} that is not a "
            f"mapping of names to tensors; give {expected}"
        )
    return dict(loaded)


def widen_first_conv(tensor: torch.Tensor, shape: torch.Size) -> tuple[torch.Tensor | None, str]:
    """A first convolution's weight ``(out, c, k, k)`` made to fill ``shape`` = ``(out, C, k,
    k)``, and a note on how; None (and "") when only the input channels may differ and more
    than they do.

    C > c: the file's kernels for the first c channels, zeros for the rest (the prior channels
    of the concat fusion), so the network starts out computing what the pretrained one
    computes on the image. C == 1 < c: the sum of the file's kernels, which is what the
    pretrained network computes on a grey image repeated as RGB.
    """
    if tensor.ndim != 4 or len(shape) != 4:
        return None, ""
    if tensor.shape[0] != shape[0] or tensor.shape[2:] != shape[2:]:
        return None, ""
    have, want = tensor.shape[1], shape[1]
    if want > have:
        zeros = tensor.new_zeros(tensor.shape[0], want - have, *tensor.shape[2:])
        note = f"the file's {have} input channels, then {want - have} zero channels"
        return torch.cat([tensor, zeros], dim=1), note
    if want == 1 < have:
        note = f"the sum of the file's {have} input channels (one grey channel)"
        return tensor.sum(dim=1, keepdim=True), note
    return None, ""


@dataclass(frozen=True)
class BackboneReport:
    """What ``apply_backbone_weights`` did with a weight file; key names are the backbone's.

    loaded: tensors copied into the backbone (``adapted`` among them).
    adapted: tensors copied into a wider first convolution (more input channels than the
      file's 3), the extra input channels' weights set to zero (``widen_first_conv``).
    skipped: tensors of the file whose shape does not fit the backbone; not loaded.
    missing: backbone tensors the file lacks; they keep their random initialisation.
    ignored: tensors of the file the backbone has no use for (the ImageNet classifier).
    BatchNorm's ``num_batches_tracked`` counters are left out of every list.
    """

    path: str
    loaded: tuple[str, ...]
    adapted: tuple[str, ...]
    skipped: tuple[str, ...]
    missing: tuple[str, ...]
    ignored: tuple[str, ...]

    def summary(self) -> str:
        """One line for a log: the file and the four counts."""
        return (
            f"{self.path}: {len(self.loaded)} backbone tensors loaded ({len(self.adapted)} "
            f"widened to more input channels), {len(self.skipped)} skipped (shape), "
            f"{len(self.missing)} missing, {len(self.ignored)} ignored (classifier)"
        )


def apply_backbone_weights(
    backbone: nn.Module,
    weights: Mapping[str, torch.Tensor],
    path: str | os.PathLike,
    *,
    network: str,
    expected: str,
    first_conv: str,
    ignored: Collection[str],
) -> BackboneReport:
    """Copy the tensors ``weights``, read from the file ``path`` and named as ``backbone``'s
    state dict, into ``backbone``.

    The file must hold at least one of the backbone's tensors and nothing but them and the
    ``ignored`` ones (its classifier); otherwise SettingError says that it is not a
    ``network`` state dict (another network, a whole segmentation checkpoint, not weights at
    all) and to give ``expected``, as when none of its tensors fits (a model of another
    width). A tensor of another shape is skipped, except the first
    convolution ``first_conv``, which is widened to the backbone's input channels
    (``widen_first_conv``), so the network starts out computing exactly what the pretrained
    one computes on the image.
    """
    weights = {k: v for k, v in weights.items() if not k.endswith(_COUNTER)}
    own = {k: v for k, v in backbone.state_dict().items() if not k.endswith(_COUNTER)}
    foreign = sorted(k for k in weights if k not in own and k not in ignored)
    if foreign or not own.keys() & weights.keys():
        if foreign:
            shown = ", ".join(repr(k) for k in foreign[:3])
            more = f" and {len(foreign) - 3} more" if len(foreign) > 3 else ""
            problem = f"has {len(foreign)} keys that it does not have ({shown}{more})"
        else:
            problem = "holds none of its tensors"
        raise SettingError(
            f"pretrained weight file {path} is not a {network} state dict: it {problem}; "
            f"give {expected}"
        )
    to_load: dict[str, torch.Tensor] = {}
    adapted, skipped = [], []
    for key, value in weights.items():
        if key not in own:
            continue
        target = own[key].shape
        if value.shape != target:
            value = widen_first_conv(value, target)[0] if key == first_conv else None
            if value is None:
                skipped.append(key)
                continue
            adapted.append(key)
        to_load[key] = value
    if not to_load:
        raise SettingError(
            f"pretrained weight file {path}: none of its {network} tensors has the shape of "
            f"this model's (a model of another width?); give {expected}"
        )
    result = backbone.load_state_dict(to_load, strict=False)
    assert not result.unexpected_keys, result.unexpected_keys  # only own keys were given
    return BackboneReport(
        path=str(path),
        loaded=tuple(to_load),
        adapted=tuple(adapted),
        skipped=tuple(skipped),
        missing=tuple(k for k in own if k not in weights),
        ignored=tuple(k for k in weights if k in ignored),
    )
