"""One frozen dataclass of settings per job: what a training run is, saved with every result."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from precompute import checks
from precompute.devices import check_device
from precompute.files import atomic_write_json
from precompute.types import SamaugError, SettingError

from .choices import MODES

# Patches smaller than this leave the deeper models (a U-Net of depth 4, Swin-UNet's
# 4 x 4 patches in 7 x 7 windows) almost nothing but padding to learn from.
MIN_PATCH_SIZE = 32

# Settings that do not change what a run computes: a run may resume with other values.
# The store counts by its identity (``precompute.store.signature`` and the images), not by
# how its path is spelt, so ``store`` is compared apart (``train.checkpoint``).
INCIDENTAL = ("store", "out", "workers", "device")


def option(name: str) -> str:
    """How the command line spells a setting: ``batch_size`` -> ``--batch-size``."""
    return "--" + name.replace("_", "-")


@dataclass(frozen=True)
class TrainConfig:
    """A training run. Saved as ``config.json`` in the run directory and in every checkpoint.

    mode: "raw" (image only, the baseline), "samaug" (image + priors), "joint" (each step
      takes the loss on both the raw and the augmented version of the batch, the paper's
      combined loss).
    fusion / seg_scale: how priors enter the model (train/fusion.py).
    train_split / val_split: splits of the store; with val_split None, ``val_fraction`` of
      the training images (a fixed, seeded choice) is held out for validation.
    samples_per_epoch: random patches per epoch (default: one per training image).
    task: a name of ``train.tasks`` (what is learnt and scored); None: the dataset's.
    model_kwargs: passed to ``create_model`` (e.g. {"base_channels": 16}).

    Every value is checked on construction (SettingError naming the option), so a bad one is
    refused before a store is opened.
    """

    store: str
    model: str = "unet"
    mode: str = "samaug"
    out: str = "runs/run"
    fusion: str = "add"
    seg_scale: float = 1.0
    epochs: int = 100
    batch_size: int = 8
    patch_size: int = 256
    samples_per_epoch: int | None = None
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_epochs: int = 2
    amp: bool = True
    seed: int = 0
    workers: int = 2
    train_split: str = "train"
    val_split: str | None = None
    val_fraction: float = 0.1
    val_every: int = 1
    device: str = "auto"
    task: str | None = None
    model_kwargs: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        # The registries import torch; imported here so that the command line can build a
        # config (and refuse a bad one) without paying for torch at start-up.
        from .fusion import list_fusions
        from .models import check_model_name, check_model_options
        from .tasks import get_task

        for name in ("store", "out", "train_split"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise SettingError(f"{option(name)} must be given, not {getattr(self, name)!r}")
        check_model_name(self.model)
        if not isinstance(self.model_kwargs, dict):
            raise SettingError(f"model_kwargs must be a dict, not {self.model_kwargs!r}")
        check_model_options(self.model, self.model_kwargs)
        checks.choice("--mode", self.mode, MODES)
        checks.choice("--fusion", self.fusion, list_fusions())
        checks.number("--seg-scale", self.seg_scale)
        for name in ("epochs", "batch_size", "val_every"):
            checks.integer(option(name), getattr(self, name), minimum=1)
        checks.integer("--patch-size", self.patch_size, minimum=MIN_PATCH_SIZE)
        if self.samples_per_epoch is not None:
            checks.integer("--samples-per-epoch", self.samples_per_epoch, minimum=1)
        checks.number("--lr", self.lr, positive=True)
        checks.number("--weight-decay", self.weight_decay, minimum=0)
        for name in ("warmup_epochs", "seed", "workers"):
            checks.integer(option(name), getattr(self, name), minimum=0)
        if not isinstance(self.amp, bool):
            raise SettingError(f"--amp must be true or false, not {self.amp!r}")
        if checks.number("--val-fraction", self.val_fraction, minimum=0) >= 1:
            raise SettingError(f"--val-fraction must be in [0, 1), not {self.val_fraction}")
        if self.val_split is not None and (
            not isinstance(self.val_split, str) or self.val_split == self.train_split
        ):
            raise SettingError(
                f"--val-split {self.val_split!r} must be a split other than the training "
                f"split {self.train_split!r}; leave it out to hold out --val-fraction of it"
            )
        check_device(self.device)
        if self.task is not None:
            get_task(self.task)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        """A config from its ``to_dict`` (keys it does not know are left out)."""
        if not isinstance(values, dict):
            raise SettingError(f"a training config is a JSON object, not {type(values).__name__}")
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    def save(self, path: str | Path) -> None:
        atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        """The config of a ``config.json``; SamaugError naming the file if it is unreadable."""
        try:
            values = json.loads(Path(path).read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise SamaugError(f"{path}: cannot read it as a training config ({err})") from err
        try:
            return cls.from_dict(values)
        except SettingError as err:
            raise SettingError(f"{path}: {err}") from err


def differences(run: Mapping, this: Mapping, prefix: str = "") -> list[str]:
    """What differs between two settings dicts (a config's ``to_dict``, a store signature),
    one ``"lr: run has 0.001, this run 0.01"`` each, nested keys joined by dots
    (``model_kwargs.base_channels``). At the top level (no ``prefix``) the ``INCIDENTAL``
    settings are left out."""
    found: list[str] = []
    for key in dict.fromkeys([*run, *this]):
        if not prefix and key in INCIDENTAL:
            continue
        a, b = run.get(key, "<unset>"), this.get(key, "<unset>")
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            found += differences(a, b, f"{prefix}{key}.")
        elif _plain(a) != _plain(b):
            found.append(f"{prefix}{key}: run has {a!r}, this run {b!r}")
    return found


def _plain(value):
    # Values come back from JSON or a checkpoint: a tuple may have become a list.
    return [_plain(v) for v in value] if isinstance(value, (list, tuple)) else value
