"""One frozen dataclass of settings per job: what a training run is, saved with every result."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from precompute.types import SettingError

MODES = ("raw", "samaug", "joint")


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
    model_kwargs: passed to ``create_model`` (e.g. {"base_channels": 16}).
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
    model_kwargs: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise SettingError(f"mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        if not 0 <= self.val_fraction < 1:
            raise SettingError(f"val_fraction must be in [0, 1), not {self.val_fraction}")
        for name in ("epochs", "batch_size", "patch_size", "val_every"):
            if getattr(self, name) < 1:
                raise SettingError(f"{name} must be at least 1, not {getattr(self, name)}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))
