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
    strategies: tuple[str, ...],
    progress: Progress | None = None,
    on_image: Callable[[dict, torch.Tensor], None] | None = None,
) -> dict[str, float]:
    """Mean foreground Dice (probability >= 0.5 against ``label > 0``) over whole validation
    images of each of ``strategies`` (``Predictor.strategies``: each input predicted once),
    in [0, 1]; an image with neither scores 1. progress("validation", images done, images)
    is called after each image, and on_image(item, probabilities (1, K, H, W)) with each
    image's prediction by the first strategy."""
    scores: dict[str, list[float]] = {name: [] for name in strategies}
    for index in range(len(dataset)):
        item = dataset[index]
        predicted = predictor.strategies(item, strategies)
        truth = item["label"] > 0
        for name, probs in predicted.probs.items():
            scores[name].append(foreground_dice(probs, truth))
        if on_image is not None:
            on_image(item, predicted.probs[strategies[0]])
        if progress is not None:
            progress("validation", index + 1, len(dataset))
    return {name: float(np.mean(values)) for name, values in scores.items()}


def foreground_dice(probs: torch.Tensor, truth: torch.Tensor) -> float:
    """Dice of ``foreground_probability(probs) >= 0.5`` against ``truth`` ((H, W) bool);
    1 where both are empty."""
    foreground = foreground_probability(probs)[0] >= 0.5
    truth = truth.to(foreground.device)
    total = foreground.sum() + truth.sum()
    return 1.0 if total == 0 else float(2 * (foreground & truth).sum() / total)


@dataclass(frozen=True)
class Validation:
    """What validating a run needs: its predictor, the store (None: no validation, or not
    the master process) and its validation images, the strategies it scores (the one that
    picks best.pt first: ``val_strategy``) and the progress. Each validation opens the store
    anew, so a store that became unreachable is noticed."""

    predictor: Predictor
    store: StoreAccess | None
    ids: list[str]
    strategies: tuple[str, ...]
    progress: Progress | None


def validate_epoch(trainer, config, epoch: int, first_epoch: int, validating: Validation, logger):
    """The epoch's validation Dice by strategy when it validates (else {}), and the images
    shown."""
    shown = watch.Shown(logger, epoch, first_epoch, config.epochs)
    last_epoch = epoch + 1 == config.epochs
    if validating.store is None or not ((epoch + 1) % config.val_every == 0 or last_epoch):
        return {}, shown
    trainer.model.eval()
    dice = validate(
        validating.predictor,
        WholeImageDataset(validating.store, validating.ids),
        validating.strategies,
        validating.progress,
        shown.keep,
    )
    return dice, shown
