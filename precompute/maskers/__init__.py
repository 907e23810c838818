"""The masker registry: the only switch between maskers: ``sam`` (default), ``sam2`` and
``superpixel``.

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
MaskerName = Literal["sam", "sam2", "superpixel"]


class Masker(Protocol):
    def generate(self, image) -> MaskSet: ...

    def provenance(self) -> dict: ...


@dataclass(frozen=True)
class MaskerRuntime:
    """How a masker runs, where that does not change what it makes (so it is not recorded
    in a store, nor part of its signature): compile, ``torch.compile`` the model; image_batch
    (>= 1), images (crops) its image encoder takes at once. Maskers without a model ignore
    both. Both change only the rounding of the model's arithmetic (``make bench`` measures
    how far masks agree)."""

    compile: bool = False
    image_batch: int = 1

    def __post_init__(self) -> None:
        from precompute import checks

        checks.integer("--image-batch", self.image_batch, minimum=1)
        if not isinstance(self.compile, bool):
            raise SettingError(f"--compile must be true or false, not {self.compile!r}")


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
    def build(
        settings: Any, checkpoint: str | None, device: Any, runtime: MaskerRuntime
    ) -> Masker: ...

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


def build_masker(
    name: str,
    checkpoint: str | None,
    settings: dict[str, Any],
    device=None,
    runtime: MaskerRuntime | None = None,
):
    """A ready masker. ``device`` (a torch.device or its name) is used by maskers that run a
    model (``sam`` loads the checkpoint onto it) and ignored by the others, as ``runtime``."""
    kind = masker_kind(name)
    parsed = make_settings(name, settings)
    runtime = runtime or MaskerRuntime()
    return kind.build(parsed, check_checkpoint(name, checkpoint), device, runtime)


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
    that made the masks): what another machine's masker must match (the sha256 counts).

    Settings the kind added after a store was made (its settings class's ``added_later``:
    e.g. sam's precision, fp32 before it could be chosen) are filled in with the value the
    store was made with, so that such a store still resumes and its models still predict.
    """
    portable = {key: value for key, value in provenance.items() if key != "checkpoint"}
    kind, settings = provenance.get("kind"), provenance.get("settings")
    if kind in MASKERS and isinstance(settings, Mapping):
        added = getattr(MASKERS.get(kind).settings_class(), "added_later", {})
        portable["settings"] = {**added, **settings}
    return portable


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
    def build(settings, checkpoint: str | None, device, runtime: MaskerRuntime) -> Masker:
        from precompute.maskers.sam import SamMasker

        return SamMasker.from_checkpoint(
            checkpoint,
            settings,
            device or "cpu",
            compile=runtime.compile,
            image_batch=runtime.image_batch,
        )

    @staticmethod
    def describe(provenance: Mapping) -> str:
        return (
            f"SAM {provenance.get('architecture')} checkpoint {provenance.get('checkpoint')} "
            f"(sha256 {provenance.get('checkpoint_sha256')})"
        )

    @staticmethod
    def recorded_checkpoint(provenance: Mapping) -> RecordedCheckpoint:
        return RecordedCheckpoint(provenance.get("checkpoint"), provenance.get("checkpoint_sha256"))


@register_masker("sam2")
class _Sam2Kind:
    """SAM 2's automatic mask generator (precompute/maskers/sam2_masker.py, the ``sam2``
    package: ``pip install 'samaug[sam2]'``); its identity is the checkpoint, its sha256 and
    its architecture (sam2_hiera_t ... sam2.1_hiera_l)."""

    needs_checkpoint = True
    uses_device = True

    @staticmethod
    def settings_class() -> type:
        from precompute.maskers.sam2_settings import Sam2MaskerSettings

        return Sam2MaskerSettings

    @staticmethod
    def identity(checkpoint: str | None) -> dict:
        from precompute.maskers.sam2_masker import sam2_checkpoint_info

        return sam2_checkpoint_info(checkpoint)

    @staticmethod
    def build(settings, checkpoint: str | None, device, runtime: MaskerRuntime) -> Masker:
        from precompute.maskers.sam2_masker import Sam2Masker

        return Sam2Masker.from_checkpoint(checkpoint, settings, device or "cpu")

    describe = _SamKind.describe
    recorded_checkpoint = _SamKind.recorded_checkpoint


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
    def build(settings, checkpoint: str | None, device, runtime: MaskerRuntime) -> Masker:
        from precompute.maskers.superpixel import SuperpixelMasker

        return SuperpixelMasker(settings)

    @staticmethod
    def describe(provenance: Mapping) -> str:
        return ""

    @staticmethod
    def recorded_checkpoint(provenance: Mapping) -> None:
        return None
