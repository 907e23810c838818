"""Pretrained weight files for the models' ``pretrained=PATH`` option: tensors only, never code.

``read_tensors`` reads a ``.safetensors`` file, or a ``torch.save`` file with
``torch.load(weights_only=True)`` on the CPU, so nothing in a received file is run; a
``{"model": ...}`` or ``{"state_dict": ...}`` wrapper (how released checkpoints often hold a
state dict) is opened. ``widen_first_conv`` adapts an RGB network's first convolution to
another number of input channels. Each model's own loader maps the keys.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from precompute.files import TORCH_LOAD_ERRORS
from precompute.types import SettingError

# What reading an arbitrary file fails with: torch.load's, and safetensors' header checks.
READ_ERRORS = (*TORCH_LOAD_ERRORS, SafetensorError)


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
