"""The device policy, written once: what ``--device`` may say and what "auto" stands for.

A device is ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:K"`` or ``"mps"``. ``check_device`` checks
the spelling (no torch needed, so options are validated before anything starts);
``resolve_device`` turns it into the ``torch.device`` this process uses and refuses a GPU
that torch cannot see, naming what it sees. "auto" is CUDA where torch sees a GPU (in the
process that resolves it: each Dask worker, each torchrun rank), else the CPU.
"""

from __future__ import annotations

import re

from precompute.types import SettingError

_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


def check_device(device: str) -> str:
    """``device`` if it is spelt as a device, else a SettingError listing the spellings."""
    if not isinstance(device, str) or not _DEVICE.fullmatch(device):
        raise SettingError(
            f"--device {device!r} is not a device; use auto, cpu, cuda, cuda:K (K = GPU index) "
            "or mps"
        )
    return device


def resolve_device(device: str, local_rank: int = 0):
    """The ``torch.device`` that ``device`` stands for in this process.

    "auto": ``cuda:local_rank`` where torch sees a GPU, else the CPU. "cuda" and "cuda:K"
    are refused (SettingError, saying what torch sees) where there is no such GPU; "mps"
    likewise without Apple's Metal backend.
    """
    import torch

    check_device(device)
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank % torch.cuda.device_count())
        return torch.device("cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise SettingError(
                f"--device {device}: torch sees no CUDA GPU on this machine "
                f"(torch {torch.__version__}, CUDA build {torch.version.cuda or 'none'}); "
                "use --device cpu or auto"
            )
        if resolved.index is not None and resolved.index >= count:
            raise SettingError(
                f"--device {device}: torch sees {count} GPU(s), cuda:0 to cuda:{count - 1}"
            )
    if resolved.type == "mps" and not torch.backends.mps.is_available():
        raise SettingError(f"--device {device}: Apple's Metal backend is not available here")
    return resolved
