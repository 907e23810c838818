"""ImageNet weights for model backbones: where `make weights` fetches them, and their sha256.

Downloaded like SAM's checkpoints (``precompute.downloads.fetch``: written beside the
destination, kept only if the sha256 matches). A model uses one through its ``pretrained``
option, e.g. ``--model swin_unet --model-option
pretrained=checkpoints/swin_tiny_patch4_window7_224.pth`` or ``--model hsnet --model-option
pretrained=checkpoints/pvt_v2_b2.pth``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from precompute.downloads import fetch
from precompute.types import SamaugError, SettingError


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
    # PVTv2-B2, ImageNet-1k (Wang et al. 2022), the file HSNet loads (``pvt_v2_b2.pth``; the
    # PVT README lists it as 97M). The PVT authors publish no checksum for their release
    # assets; this sha256 is the Git LFS object id of the same file (102 MB) in two
    # independent Hugging Face repositories, huihuixu/lgrnet_ckpts (pvt_v2_b2.pth) and
    # fofr/comfyui (BiRefNet/pvt_v2_b2.pth), and what independent projects that downloaded
    # the official weights record for them (same hash). timm's own copy, in its layout
    # (https://huggingface.co/timm/pvt_v2_b2.in1k, commit 250d713, model.safetensors, sha256
    # 0bff520d64b91bdbb35f2b5bff2b62d35a9d9c6d6a5056e683f1e7ce556d0e5e), loads as well.
    "pvt_v2_b2": Backbone(
        filename="pvt_v2_b2.pth",
        url="https://github.com/whai362/PVT/releases/download/v2/pvt_v2_b2.pth",
        sha256="80711cd1b37ffba12bec6c7a2a7c54efe2315ed635e6d2055fd51c3e909ede4d",
        model="hsnet",
    ),
}


# The ImageNet weights each model starts from as its paper trains it, a file of the weights
# folder (``--weights-dir``, default ``checkpoints``): Swin-T and PVTv2-B2 as ``make
# weights`` fetches them, Res2Net-50 v1b 26w4s as its authors release it (no pinned
# download: fetch it from the Res2Net release, or give timm's res2net50d file).
PAPER_WEIGHTS = {
    "swin_unet": BACKBONES["swin_t"].filename,
    "pranet": "res2net50_v1b_26w_4s-3cf99910.pth",
    "hsnet": BACKBONES["pvt_v2_b2"].filename,
}
NO_WEIGHTS = "none"  # --pretrained none: a random start
DEFAULT_WEIGHTS_DIR = "checkpoints"


def pretrained_for(
    model: str, given: str | None, weights_dir: str | Path = DEFAULT_WEIGHTS_DIR
) -> str | None:
    """The pretrained weights file a run of ``model`` starts from, or None (random).

    given: ``--pretrained``: a path, ``none`` for a random start, or None for the paper's
    weights (``PAPER_WEIGHTS``) in ``weights_dir``, which must be there (a model without
    paper weights starts random). SettingError naming the file and the three ways out when a
    file is not there, or when ``model`` takes no pretrained weights but a path is given.
    """
    from train.models.factory import model_options

    if given == NO_WEIGHTS:
        return None
    if given is None:
        if model not in PAPER_WEIGHTS:
            return None
        path = Path(weights_dir) / PAPER_WEIGHTS[model]
        if not path.is_file():
            raise SettingError(
                f"{path}: no such file, and {model} starts from these ImageNet weights as its "
                f"paper trains it; fetch them (make weights), give --pretrained PATH, or "
                f"--pretrained {NO_WEIGHTS} for a random start"
            )
        return str(path)
    if "pretrained" not in model_options(model):
        raise SettingError(f"--pretrained {given}: {model} takes no pretrained weights")
    if not Path(given).is_file():
        raise SettingError(f"--pretrained {given}: no such file")
    return str(given)


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
