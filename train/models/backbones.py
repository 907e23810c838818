"""ImageNet weights for model backbones: where `make weights` fetches them, and their sha256.

Downloaded like SAM's checkpoints (``precompute.downloads.fetch``: written beside the
destination, kept only if the sha256 matches). A model uses one through its ``pretrained``
option, e.g. ``--model swin_unet --model-option
pretrained=checkpoints/swin_tiny_patch4_window7_224.pth``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from precompute.downloads import fetch
from precompute.types import SamaugError


@dataclass(frozen=True)
class Backbone:
    """A published weights file: its name on disk, URL, sha256 (hex) and the model it fits."""

    filename: str
    url: str
    sha256: str
    model: str


BACKBONES = {
    # Swin-T, ImageNet-1k (Liu et al. 2021), the file the released Swin-Unet starts from
    # (114,342,173 bytes). Microsoft publishes no checksum for its release assets; this sha256
    # is the Git LFS object id of the same file in the Hugging Face dataset
    # skylightzc/ultrasound-nerve-segmentation, pretrained_ckpt/swin_tiny_patch4_window7_224.pth
    # (https://huggingface.co/datasets/skylightzc/ultrasound-nerve-segmentation/commit/
    # f7864006b4f1cb460423a7f787b9fb29ffd90858), and what independent projects that downloaded
    # this URL record for it (same hash, same size).
    "swin_t": Backbone(
        filename="swin_tiny_patch4_window7_224.pth",
        url=(
            "https://github.com/SwinTransformer/storage/releases/download/v1.0.0/"
            "swin_tiny_patch4_window7_224.pth"
        ),
        sha256="9f71c168d837d1b99dd1dc29e14990a7a9e8bdc5f673d46b04fe36fe15590ad3",
        model="swin_unet",
    ),
}


def download_backbones(
    names: list[str],
    directory: Path,
    base_url: str | None = None,
    on_bytes: Callable[[int, int], None] | None = None,
) -> list[Path]:
    """Fetch the named backbone weights (keys of ``BACKBONES``) into ``directory``.

    ``base_url``, if given, replaces the folder of every URL (a mirror). Returns the paths, in
    the order of ``names``. SamaugError for an unknown name (before any download) or a
    download that fails or has another sha256.
    """
    unknown = [n for n in names if n not in BACKBONES]
    if unknown:
        raise SamaugError(f"unknown weights {unknown}; choose from {', '.join(BACKBONES)}")
    paths = []
    for name in names:
        backbone = BACKBONES[name]
        url = f"{base_url}/{backbone.filename}" if base_url else backbone.url
        paths.append(fetch(url, directory / backbone.filename, backbone.sha256, on_bytes))
    return paths
