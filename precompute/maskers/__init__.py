"""The masker registry: the only switch between maskers, ``sam`` (default) and ``superpixel``.

A masker has ``generate(image: HxWx3 uint8 RGB) -> MaskSet`` and ``provenance() -> dict``.
Each kind registers itself here with ``@register_masker(name)`` on a small class that says
how to make its settings, what identifies it in the store, and how to build it; those
functions import the masker's module only when called, so importing ``precompute`` imports
neither torch nor segment_anything, and a run's settings are checked (and its provenance
recorded) before any worker loads a model.

What a recorded provenance means is asked of its kind here too, never by testing its name
or keys elsewhere: ``describe_masker`` (a line for people), ``recorded_checkpoint`` (the
checkpoint it was made with) and ``portable_provenance`` (what another machine must match).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from importlib.metadata import version
from typing import Any, Literal, Protocol

from precompute.registry import Registry
from precompute.types import MaskSet, SettingError

# The names the command line offers; tests/test_maskers.py keeps it equal to list_maskers().
MaskerName = Literal["sam", "superpixel"]


class Masker(Protocol):
    def generate(self, image) -> MaskSet: ...

    def provenance(self) -> dict: ...


@dataclass(frozen=True)
class RecordedCheckpoint:
    """The checkpoint a masker's provenance records: ``path`` where it lay on the machine
    that made the masks, ``sha256`` its hex digest (what identifies it); None where the
    provenance lacks one."""

    path: str | None
    sha256: str | None


class MaskerKind(Protocol):
    """What ``register_masker`` takes: a class with these attributes and static methods.

    identity: what the store records about the model besides kind and settings.
    describe: that identity as one line for people ("" for nothing to add).
    recorded_checkpoint: the checkpoint a provenance of this kind records (None for a kind
      that takes none).
    """

    needs_checkpoint: bool  # --checkpoint is required (else it is ignored)
    uses_device: bool  # builds a model on a torch device (else the device is ignored)

    @staticmethod
    def settings_class() -> type: ...

    @staticmethod
    def identity(checkpoint: str | None) -> dict: ...

    @staticmethod
    def build(settings: Any, checkpoint: str | None, device: Any) -> Masker: ...

    @staticmethod
    def describe(provenance: Mapping) -> str: ...

    @staticmethod
    def recorded_checkpoint(provenance: Mapping) -> RecordedCheckpoint | None: ...


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
            f"the {name} masker needs --checkpoint PATH (make: SAM_CHECKPOINT=PATH; get one "
            "with `make weights`)"
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


def describe_masker(provenance: Mapping) -> str:
    """One line on what made a store's masks beyond their kind and settings (for ``sam``:
    the SAM architecture, checkpoint and its sha256); "" where the kind has nothing to add
    or this samaug does not know it (a store from another version may name one)."""
    kind = provenance.get("kind")
    return MASKERS.get(kind).describe(provenance) if kind in MASKERS else ""


def recorded_checkpoint(provenance: Mapping) -> RecordedCheckpoint | None:
    """The checkpoint a masker's provenance records; None for a kind that takes none, or a
    kind this samaug does not know."""
    kind = provenance.get("kind")
    return MASKERS.get(kind).recorded_checkpoint(provenance) if kind in MASKERS else None


def portable_provenance(provenance: Mapping) -> dict:
    """``provenance`` less where its checkpoint lay (``checkpoint``, a path on the machine
    that made the masks): what another machine's masker must match (the sha256 counts)."""
    return {key: value for key, value in provenance.items() if key != "checkpoint"}


@register_masker("sam")
class _SamKind:
    """SAM's automatic mask generator (precompute/maskers/sam.py); its identity is
    ``sam_loader.checkpoint_info``'s: checkpoint, checkpoint_sha256, architecture, config."""

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

    @staticmethod
    def describe(provenance: Mapping) -> str:
        return (
            f"SAM {provenance.get('architecture')} checkpoint {provenance.get('checkpoint')} "
            f"(sha256 {provenance.get('checkpoint_sha256')})"
        )

    @staticmethod
    def recorded_checkpoint(provenance: Mapping) -> RecordedCheckpoint:
        return RecordedCheckpoint(provenance.get("checkpoint"), provenance.get("checkpoint_sha256"))


@register_masker("superpixel")
class _SuperpixelKind:
    """Multi-scale scikit-image superpixels (precompute/maskers/superpixel.py)."""

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

    @staticmethod
    def describe(provenance: Mapping) -> str:
        return ""

    @staticmethod
    def recorded_checkpoint(provenance: Mapping) -> None:
        return None
