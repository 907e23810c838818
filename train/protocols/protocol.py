"""What a protocol is: its fixed settings, the defaults it gives a run, and its behaviour.

A protocol (``train.protocols``) fixes what a run sees and how a test image is predicted.
Each is an instance of a subclass of ``Protocol`` that carries its own behaviour, so code
elsewhere asks the protocol instead of switching on its name:

- ``check(config)``: the combinations of settings it cannot train (SettingError);
- ``training_data(config, task, store, ids)``: the training dataset of a run;
- ``training_sizes(config)``: the square sides a batch is rescaled to, one optimizer step
  (or two, for a joint run) at each (None: as loaded);
- ``predict(predictor, x, image_size)``: the probabilities of one prepared image, the
  protocol's test;
- ``prepare(item, size)``: a ``WholeImageDataset`` item as the model sees it at test time.

The dataclass fields are recorded with every run (``settings``, as ``protocol_settings`` in
its ``config.json``): ``input``, ``normalize``, ``test`` and the others describe the
protocol; the behaviour comes from the class.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from torch import Tensor

from precompute import checks
from precompute.types import SettingError

if TYPE_CHECKING:
    from precompute.store import SamaugStore
    from train.data.datasets import EpochDataset
    from train.inference.predictor import Predictor
    from train.tasks import Task
    from train.training.config import TrainConfig


@dataclass(frozen=True)
class Protocol:
    """A protocol's recorded settings. Fields a run may change (``TrainConfig`` fields of the
    same name): ``patch_size`` (the patch side, or the side whole images are resized to),
    ``scales``, ``loss``, ``recipe``, ``val_fraction``. Fixed: ``input`` and ``test`` (what
    a run trains on and how it is tested, in words), ``normalize`` ("unit": RGB in [0, 1];
    "imagenet": then ImageNet's mean and std), ``clip_seg_prior`` (the seg prior clipped to
    [0, 1] before fusion), ``augment`` (``train.data.augment``'s random augmentation),
    ``tasks`` (the tasks it can train)."""

    name: str
    source: str
    input: str
    normalize: str
    clip_seg_prior: bool
    augment: bool
    test: str
    tasks: tuple[str, ...]
    patch_size: int
    scales: tuple[float, ...]
    loss: str
    recipe: str
    val_fraction: float

    def settings(self) -> dict:
        """Every setting as plain JSON values (recorded with each run's config)."""
        return asdict(self)

    def patch_size_for(self, model: str) -> int:
        """The ``patch_size`` a run of ``model`` takes where the config gives none."""
        return self.patch_size

    def check(self, config: TrainConfig) -> None:
        """SettingError for a setting of ``config`` this protocol cannot train with (only the
        fields the config sets are known; None means "the protocol's")."""
        if config.task is not None and config.task not in self.tasks:
            raise SettingError(
                f"--protocol {self.name} trains the {', '.join(self.tasks)} task, not "
                f"{config.task!r}; use --protocol patches for it"
            )

    def training_data(
        self, config: TrainConfig, task: Task, store: SamaugStore, ids: list[str]
    ) -> EpochDataset:
        """The training dataset of a resolved config over images ``ids`` of ``store``."""
        raise NotImplementedError

    def training_sizes(self, config: TrainConfig) -> tuple[int | None, ...]:
        """The sides each batch is rescaled to in turn (None: as loaded)."""
        return (None,)

    def prepare(self, item: dict, size: int) -> dict:
        """A whole image (``image`` (3, H, W), ``seg_prior`` and ``boundary_prior`` (1, H, W))
        as the model takes it at test time, each with a batch dimension."""
        raise NotImplementedError

    def predict(self, predictor: Predictor, x: Tensor, image_size: tuple[int, int]) -> Tensor:
        """``(1, K, H, W)`` probabilities in [0, 1] of one prepared model input ``x`` (the
        fused ``prepare`` output) of an image of ``image_size`` (H, W), by ``predictor``'s
        model, task, size and settings."""
        raise NotImplementedError


def check_scales(scales) -> tuple[float, ...]:
    """A non-empty list of finite scale factors > 0, as a tuple (SettingError otherwise)."""
    if not isinstance(scales, (list, tuple)) or not scales:
        raise SettingError(f"--scales must be a list of factors like 0.75,1,1.25, not {scales!r}")
    return tuple(checks.number("--scales", s, positive=True) for s in scales)
