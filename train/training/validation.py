"""Validation during training: the mean foreground Dice of whole validation images.

The images are predicted as the run's protocol tests them (``train.inference.predictor``),
from the input the run validates; each validation opens the store anew, so a store that
became unreachable is noticed (a reused one could answer from what it read before).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from precompute.store import StoreAccess
from train.data.datasets import WholeImageDataset
from train.inference.predictor import Predictor
from train.strategies import foreground_probability
from train.training import watch
from train.training.run_log import Progress


@torch.no_grad()
def validate(
    predictor: Predictor,
    dataset: WholeImageDataset,
    augmented: bool,
    progress: Progress | None = None,
    on_image: Callable[[dict, torch.Tensor], None] | None = None,
) -> float:
    """Mean foreground Dice (probability >= 0.5 against ``label > 0``) over whole validation
    images, predicted from their raw or augmented input as the run's protocol tests, in
    [0, 1]; an image with neither scores 1. progress("validation", images done, images) is
    called after each image, and on_image(item, probabilities (1, K, H, W)) with each
    image's prediction."""
    scores = []
    for index in range(len(dataset)):
        item = dataset[index]
        probs = predictor.probabilities(item, augmented)
        foreground = foreground_probability(probs)[0] >= 0.5
        truth = item["label"].to(foreground.device) > 0
        total = foreground.sum() + truth.sum()
        scores.append(1.0 if total == 0 else float(2 * (foreground & truth).sum() / total))
        if on_image is not None:
            on_image(item, probs)
        if progress is not None:
            progress("validation", index + 1, len(dataset))
    return float(np.mean(scores))


@dataclass(frozen=True)
class Validation:
    """What validating a run needs: its predictor, the store (None: no validation, or not
    the master process) and its validation images, the input it validates and the progress.
    Each validation opens the store anew, so a store that became unreachable is noticed."""

    predictor: Predictor
    store: StoreAccess | None
    ids: list[str]
    augmented: bool
    progress: Progress | None


def validate_epoch(trainer, config, epoch: int, first_epoch: int, validating: Validation, logger):
    """The epoch's validation Dice when it validates (else None), and the images shown."""
    shown = watch.Shown(logger, epoch, first_epoch, config.epochs)
    last_epoch = epoch + 1 == config.epochs
    if validating.store is None or not ((epoch + 1) % config.val_every == 0 or last_epoch):
        return None, shown
    trainer.model.eval()
    dice = validate(
        validating.predictor,
        WholeImageDataset(validating.store, validating.ids),
        validating.augmented,
        validating.progress,
        shown.keep,
    )
    return dice, shown
