"""The masker registry: the only switch between maskers, ``sam`` (default) and ``superpixel``.

A masker has ``generate(image: HxWx3 uint8 RGB) -> MaskSet`` and ``provenance() -> dict``.
Each kind registers itself here with ``@register_masker(name)`` on a small class that says
how to make its settings, what identifies it in the store, and how to build it; those
functions import the masker's module only when called, so importing ``precompute`` imports
neither torch nor segment_anything, and a run's settings are checked (and its provenance
recorded) before any worker loads a model.
"""

from __future__ import annotations

from dataclasses import asdict, fields
from importlib.metadata import version
from typing import Any, Literal, Protocol

from precompute.registry import Registry
from precompute.types import MaskSet, SettingError

# The names the command line offers; tests/test_maskers.py keeps it equal to list_maskers().
MaskerName = Literal["sam", "superpixel"]


class Masker(Protocol):
    def generate(self, image) -> MaskSet: ...

    def provenance(self) -> dict: ...


class MaskerKind(Protocol):
    """What ``register_masker`` takes: a class with these attributes and static methods."""

    needs_checkpoint: bool  # --checkpoint is required (else it is ignored)
    uses_device: bool  # builds a model on a torch device (else the device is ignored)

    @staticmethod
    def settings_class() -> type: ...

    @staticmethod
    def identity(checkpoint: str | None) -> dict: ...

    @staticmethod
    def build(settings: Any, checkpoint: str | None, device: Any) -> Masker: ...


# The maskers by name (``precompute.registry``): the one place a masker kind is chosen.
MASKERS: Registry[type[MaskerKind]] = Registry("masker")

register_masker = MASKERS.register  # class decorator: ``@register_masker("sam")``
list_maskers = MASKERS.names  # the registered names, sorted
masker_kind = MASKERS.get  # the kind called ``name``; SettingError naming the valid ones


def make_settings(name: str, settings: dict[str, Any]):
    """The masker's frozen settings dataclass from a dict of overrides.

    Unknown keys and bad values are a SettingError naming them (no work is done here).
    """
    cls = masker_kind(name).settings_class()
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise SettingError(
            f"unknown {name} masker setting(s) {', '.join(unknown)}; "
            f"valid: {', '.join(sorted(known))}"
        )
    return cls(**settings)


def check_checkpoint(name: str, checkpoint: str | None) -> str | None:
    """The checkpoint the masker uses: required where it needs one, else None (ignored)."""
    if not masker_kind(name).needs_checkpoint:
        return None
    if checkpoint is None:
        raise SettingError(
            f"the {name} masker needs --checkpoint PATH (get one with `make weights`)"
        )
    return checkpoint


def masker_provenance(name: str, checkpoint: str | None, settings: dict[str, Any]) -> dict:
    """What the store records about the masker: kind, every setting, and the model's identity
    (for ``sam``: the checkpoint's path, sha256, architecture and config), without building
    it. Raises SamaugError for bad settings or an unreadable checkpoint."""
    kind = masker_kind(name)
    full = asdict(make_settings(name, settings))
    return {"kind": name, "settings": full, **kind.identity(check_checkpoint(name, checkpoint))}


def build_masker(name: str, checkpoint: str | None, settings: dict[str, Any], device=None):
    """A ready masker. ``device`` (a torch.device or its name) is used by maskers that run a
    model (``sam`` loads the checkpoint onto it) and ignored by the others."""
    kind = masker_kind(name)
    parsed = make_settings(name, settings)
    return kind.build(parsed, check_checkpoint(name, checkpoint), device)


@register_masker("sam")
class _SamKind:
    """SAM's automatic mask generator (precompute/masker_sam.py)."""

    needs_checkpoint = True
    uses_device = True

    @staticmethod
    def settings_class() -> type:
        from precompute.maskers.sam_settings import SamMaskerSettings

        return SamMaskerSettings

    @staticmethod
    def identity(checkpoint: str | None) -> dict:
        from precompute.maskers.sam_loader import checkpoint_info

        return checkpoint_info(checkpoint)

    @staticmethod
    def build(settings, checkpoint: str | None, device) -> Masker:
        from precompute.maskers.sam import SamMasker

        return SamMasker.from_checkpoint(checkpoint, settings, device or "cpu")


@register_masker("superpixel")
class _SuperpixelKind:
    """Multi-scale scikit-image superpixels (precompute/masker_superpixel.py)."""

    needs_checkpoint = False
    uses_device = False

    @staticmethod
    def settings_class() -> type:
        from precompute.maskers.superpixel import SuperpixelSettings

        return SuperpixelSettings

    @staticmethod
    def identity(checkpoint: str | None) -> dict:
        return {"scikit_image": version("scikit-image")}

    @staticmethod
    def build(settings, checkpoint: str | None, device) -> Masker:
        from precompute.maskers.superpixel import SuperpixelMasker

        return SuperpixelMasker(settings)
