"""The patches protocol: random augmented patches for training, overlapping windows at test.

Training items are ``train.data.datasets.PatchDataset``'s (random ``patch_size`` squared
windows, flips, 90-degree rotations, scale and colour jitter), the image in [0, 1] and the
priors as stored, trained with the task's loss; a test image is predicted whole by
overlapping ``patch_size`` windows blended with a Gaussian (``train.windows``). Every task.
The patch side is the protocol's (256) unless the model has its own (``patch_size_for``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from torch import Tensor

from precompute.types import SettingError
from train.data.augment import AugmentSettings
from train.data.datasets import PatchDataset
from train.models import preferred_patch_size
from train.protocols.protocol import Protocol
from train.windows import sliding_window_probs

if TYPE_CHECKING:
    from precompute.store import SamaugStore
    from train.inference.predictor import Predictor
    from train.tasks import Task
    from train.training.config import TrainConfig

INPUTS = ("image", "seg_prior", "boundary_prior")


@dataclass(frozen=True)
class PatchProtocol(Protocol):
    """Random patches for training, sliding windows for testing (module doc)."""

    def patch_size_for(self, model: str) -> int:
        """The model's own input side where it has one (Swin-UNet as released: 224, so that
        its 7 x 7 windows fit every stage), else the protocol's."""
        return preferred_patch_size(model) or self.patch_size

    def check(self, config: TrainConfig) -> None:
        super().check(config)
        if config.scales not in (None, (1.0,)):
            raise SettingError(
                f"--scales {','.join(map(str, config.scales))}: multi-scale training needs "
                f"whole resized images (--protocol polyp); the {self.name} protocol rescales "
                "patches by its augmentation"
            )

    def training_data(
        self, config: TrainConfig, task: Task, store: SamaugStore, ids: list[str]
    ) -> PatchDataset:
        return PatchDataset(
            store,
            ids,
            patch_size=config.patch_size,
            task=task.name,
            augment=AugmentSettings(enabled=self.augment),
            samples_per_epoch=config.samples_per_epoch,
            seed=config.seed,
        )

    def prepare(self, item: dict, size: int) -> dict:
        return {key: item[key].unsqueeze(0) for key in INPUTS}

    def predict(self, predictor: Predictor, x: Tensor, image_size: tuple[int, int]) -> Tensor:
        task = predictor.task
        return sliding_window_probs(
            predictor.net,
            x,
            task.num_outputs,
            window=predictor.size,
            overlap=predictor.settings.overlap,
            activation=task.activation,
        )
