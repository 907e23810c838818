"""The ``sam2`` masker: SAM 2's automatic mask generator (the ``sam2`` package), exactly.

``Sam2Masker.generate`` is ``sam2.automatic_mask_generator.SAM2AutomaticMaskGenerator``'s
own ``generate`` (``output_mode="binary_mask"``, the same settings) with its output as a
MaskSet: the same masks, stability scores, predicted IoUs, boxes and points, in its order.
(The faster paths of the ``sam`` masker are not yet brought to SAM 2.)

A checkpoint's architecture is read from its weights: the Hiera trunk's width and depth
tell tiny (96 wide, 12 blocks), small (96, 16), base+ (112, 24) and large (144, 48) apart,
and SAM 2.1's extra tensors tell it from SAM 2; the model is then built from the package's
own config of that name, as ``sam2.build_sam.build_sam2`` builds it.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from precompute.downloads import sha256_file
from precompute.files import TORCH_LOAD_ERRORS
from precompute.maskers.sam2_settings import Sam2MaskerSettings, sam2_generator_settings
from precompute.maskers.sam_masks import annotations_to_maskset
from precompute.types import MaskSet, SamaugError

# (trunk width, trunk blocks) -> Hiera size, as the configs of the sam2 package name them.
HIERA = {(96, 12): "hiera_t", (96, 16): "hiera_s", (112, 24): "hiera_b+", (144, 48): "hiera_l"}
_TRUNK = "image_encoder.trunk."


def _state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A SAM 2 checkpoint's state dict (official files wrap it under "model")."""
    if not path.is_file():
        raise SamaugError(
            f"SAM 2 checkpoint {path} does not exist; download an official one (e.g. "
            "sam2_hiera_large.pt) or pass --checkpoint PATH"
        )
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except TORCH_LOAD_ERRORS as err:
        raise SamaugError(f"{path} is not a torch checkpoint holding only tensors ({err})") from err
    state = loaded.get("model", loaded) if isinstance(loaded, dict) else None
    if not isinstance(state, dict):
        raise SamaugError(f"{path} holds a {type(loaded).__name__}, not a SAM 2 state dict")
    return state


def sam2_architecture(state_dict: dict[str, Any], path: Path | str = "checkpoint") -> str:
    """ "sam2_hiera_t" ... "sam2.1_hiera_l": the architecture of a SAM 2 state dict (see the
    module docstring); SamaugError for one that is not a SAM 2 of an official size."""
    key = _TRUNK + "patch_embed.proj.weight"
    if key not in state_dict:
        raise SamaugError(f"{path} is not a SAM 2 state dict: it has no key {key!r}")
    width = int(state_dict[key].shape[0])
    blocks = 0
    while any(k.startswith(f"{_TRUNK}blocks.{blocks}.") for k in state_dict):
        blocks += 1
    if (width, blocks) not in HIERA:
        raise SamaugError(
            f"{path}: a Hiera trunk {width} wide with {blocks} blocks is none of SAM 2's "
            "sizes (tiny, small, base+, large)"
        )
    version = "sam2.1" if "no_obj_embed_spatial" in state_dict else "sam2"
    return f"{version}_{HIERA[width, blocks]}"


def sam2_checkpoint_info(path: str | Path) -> dict[str, Any]:
    """{"checkpoint", "checkpoint_sha256", "architecture"} of a SAM 2 checkpoint."""
    path = Path(path)
    architecture = sam2_architecture(_state_dict(path), path)
    return {
        "checkpoint": str(path),
        "checkpoint_sha256": sha256_file(path),
        "architecture": architecture,
    }


def build_sam2_model(architecture: str, device: str | torch.device = "cpu"):
    """An eval-mode SAM 2 of ``architecture`` (``sam2_architecture``'s names) with random
    weights, built by ``sam2.build_sam.build_sam2`` from the package's config."""
    from sam2.build_sam import build_sam2

    version = architecture.split("_", 1)[0]
    return build_sam2(f"configs/{version}/{architecture}.yaml", None, device=str(device))


class Sam2Masker:
    """SAM 2's automatic mask generator as a masker (see the module docstring).

    model: a SAM2Base. settings: the generator's settings. info: what identifies the
    checkpoint. precision bf16/fp16 runs the generator under autocast.
    """

    def __init__(self, model, settings: Sam2MaskerSettings | None = None, *, info=None):
        self.model = model.eval()
        self.settings = settings if settings is not None else Sam2MaskerSettings()
        self.device = next(model.parameters()).device
        self.info = info or {}
        ppb = self.settings.points_per_batch
        if ppb == "auto":
            ppb = 256 if self.device.type == "cuda" else 64
        from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator

        self.generator = SAM2AutomaticMaskGenerator(
            model, output_mode="binary_mask", **sam2_generator_settings(self.settings, ppb)
        )

    @classmethod
    def from_checkpoint(cls, path, settings=None, device="cpu") -> Sam2Masker:
        path = Path(path)
        state = _state_dict(path)
        architecture = sam2_architecture(state, path)
        model = build_sam2_model(architecture, "cpu")
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as err:
            first = str(err).strip().splitlines()[1:2] or [str(err)]
            raise SamaugError(f"{path} is not a {architecture} state dict: {first[0]}") from err
        info = {
            "checkpoint": str(path),
            "checkpoint_sha256": sha256_file(path),
            "architecture": architecture,
        }
        return cls(model.to(device), settings, info=info)

    def provenance(self) -> dict[str, Any]:
        return {"kind": "sam2", "settings": asdict(self.settings), **self.info}

    @torch.no_grad()
    def generate(self, image: np.ndarray) -> MaskSet:
        """HxWx3 uint8 RGB -> the generator's masks as a MaskSet (boxes XYXY inclusive; a
        NaN stability score, from an empty low-threshold union, as 0)."""
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise SamaugError(
                f"the sam2 masker takes HxWx3 uint8 RGB images, got shape {image.shape} "
                f"dtype {image.dtype}"
            )
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.settings.precision)
        with torch.autocast(self.device.type, dtype, enabled=dtype is not None):
            anns = self.generator.generate(image)
        return annotations_to_maskset(anns, image.shape[:2])
