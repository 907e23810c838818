"""What a training run shows while it runs, around the epoch loop of ``train.training.loop``.

- TensorBoard (``train.training.run_log.RunLogger``, events under ``<run>/tensorboard``): per epoch,
  at the optimizer step that ends it, ``train/loss`` (the epoch's mean), ``train/lr`` and,
  on validated epochs, ``validation/dice``; on validated epochs that are the first of a
  training call, every ``IMAGE_EVERY``-th or the last, the first ``IMAGES`` validation
  images as ``validation/<image ID>`` (``Shown``: validation's own predictions, kept). A
  resumed run purges the events an interrupted run wrote after its checkpoint, so the
  curves continue; a fresh run purges any older run's.
- ``progress.png``, drawn from ``log.csv`` when training ends (its last epoch done).
- progress over the steps of an epoch (``steps``), through the caller's ``progress``.

Only the process that writes the run directory (rank 0) logs.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import torch

from train.strategies import foreground_probability
from train.training.run_log import Progress, RunLogger, write_progress_png

IMAGE_EVERY = 5  # epochs between two sets of validation images
IMAGES = 2  # validation images shown each time
PROGRESS_PNG = "progress.png"


def start_logger(out: Path, master: bool, resume_step: int | None) -> RunLogger:
    """The run's TensorBoard logger: enabled on the master process only; ``resume_step``
    is the step of the checkpoint resumed from (None for a fresh run: step 0)."""
    return RunLogger(out, enabled=master, resume_step=resume_step or 0)


def steps(loader: Iterable, progress: Progress | None, what: str, start: int = 0) -> Iterator:
    """The loader's batches, reporting ``progress(what, steps done, steps)`` as they go;
    ``start``: batches of the epoch done before (a run resumed within an epoch)."""
    total = len(loader)
    for done, batch in enumerate(loader, start=start):
        if progress is not None:
            progress(what, done, total)
        yield batch
    if progress is not None:
        progress(what, total, total)


def log_epoch(
    logger: RunLogger, step: int, train_loss: float, lr: float, val_dice: float | None
) -> None:
    """One epoch's scalars at ``step`` (a NaN or None validation Dice is left out)."""
    logger.scalars(step, **{"train/loss": train_loss, "train/lr": lr, "validation/dice": val_dice})
    logger.flush()


class Shown:
    """The validation images one epoch shows: ``keep`` collects the first ``IMAGES`` of
    ``validate``'s predictions (its ``on_image``) on an epoch that shows images (the first
    of a training call, ``first_epoch``, every ``IMAGE_EVERY``-th and the last); ``write``
    logs them, once the epoch's step is known: input, seg prior, boundary prior, predicted
    foreground probability and target side by side."""

    def __init__(self, logger: RunLogger, epoch: int, first_epoch: int, epochs: int) -> None:
        self.logger = logger
        self.wanted = logger.enabled and (
            epoch == first_epoch or (epoch + 1) % IMAGE_EVERY == 0 or epoch + 1 == epochs
        )
        self.panels: list[tuple[str, tuple[np.ndarray, ...]]] = []

    def keep(self, item: dict, probs: torch.Tensor) -> None:
        if not self.wanted or len(self.panels) >= IMAGES:
            return
        image = np.rint(item["image"].numpy() * 255).astype(np.uint8)
        self.panels.append(
            (
                f"validation/{item['image_id']}",
                (
                    np.moveaxis(image, 0, -1),
                    item["seg_prior"][0].numpy(),
                    item["boundary_prior"][0].numpy(),
                    foreground_probability(probs)[0].cpu().numpy(),
                    item["label"].numpy(),
                ),
            )
        )

    def write(self, step: int) -> None:
        for tag, panels in self.panels:
            self.logger.images(step, tag, *panels)
        if self.panels:
            self.logger.flush()


def finish(logger: RunLogger, out: Path, draw: bool) -> None:
    """Close the event file; draw ``progress.png`` from ``log.csv`` if ``draw`` (the master
    process, at the end of training)."""
    logger.close()
    if draw and (out / "log.csv").exists():
        write_progress_png(out / "log.csv", out / PROGRESS_PNG)
