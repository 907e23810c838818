"""The masker registry: ``sam`` (default) and ``superpixel``, one interface.

A masker has ``generate(image: HxWx3 uint8) -> MaskSet``. ``masker_provenance`` describes
one without building it (the driver records it in the store's root attributes before any
worker loads a model); torch and segment_anything are imported only for ``sam``.
"""

from __future__ import annotations

from dataclasses import asdict, fields
from importlib.metadata import version
from typing import Any

from .types import SamaugError

MASKER_KINDS = ("sam", "superpixel")


def _settings_class(kind: str):
    if kind == "sam":
        from .masker_sam import SamMaskerSettings

        return SamMaskerSettings
    if kind == "superpixel":
        from .masker_superpixel import SuperpixelSettings

        return SuperpixelSettings
    raise SamaugError(f"unknown masker {kind!r}; choose one of {', '.join(MASKER_KINDS)}")


def make_settings(kind: str, settings: dict[str, Any]):
    """The masker's frozen settings dataclass from a dict of overrides (unknown keys refused)."""
    cls = _settings_class(kind)
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise SamaugError(
            f"unknown {kind} masker setting(s) {', '.join(unknown)}; "
            f"valid: {', '.join(sorted(known))}"
        )
    return cls(**settings)


def masker_provenance(kind: str, checkpoint: str | None, settings: dict[str, Any]) -> dict:
    """What the store records about the masker: kind, every setting, and the model's identity."""
    full = asdict(make_settings(kind, settings))
    if kind == "superpixel":
        return {"kind": kind, "settings": full, "scikit_image": version("scikit-image")}
    from .sam_loader import checkpoint_info

    if checkpoint is None:
        raise SamaugError("the sam masker needs --checkpoint PATH (get one with `make weights`)")
    return {"kind": kind, "settings": full, **checkpoint_info(checkpoint)}


def build_masker(kind: str, checkpoint: str | None, settings: dict[str, Any], device: str):
    """A ready masker. For ``sam`` this loads the checkpoint onto ``device``."""
    parsed = make_settings(kind, settings)
    if kind == "superpixel":
        from .masker_superpixel import SuperpixelMasker

        return SuperpixelMasker(parsed)
    from .masker_sam import SamMasker

    if checkpoint is None:
        raise SamaugError("the sam masker needs --checkpoint PATH (get one with `make weights`)")
    return SamMasker.from_checkpoint(checkpoint, parsed, device)
