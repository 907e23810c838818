"""From a model's probabilities to prediction files, for ``samaug predict`` and ``samaug eval``.

``save_probs`` turns one image's probabilities into the files of
``train.results.prediction_files``: the task's decision (``Task.prediction``: an instance label
map for instance tasks, where the scores of ``eval`` come from too, so ``samaug score`` reads
back the same numbers; a 0/255 mask of ``p >= 0.5`` for binary tasks), and, as asked, the
foreground probability and the contour overlay. ``made_by`` is what ``predictions.json`` records
about the model and the settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch import Tensor

from precompute import __version__, checks
from precompute.types import SettingError
from train.choices import DEFAULT_MIN_SIZE, DEFAULT_PROBABILITY_FORMAT
from train.postprocess import binary_from_probs
from train.results.prediction_files import PROB_FORMATS, write_prediction
from train.strategies import foreground_probability
from train.tasks import Task


@dataclass(frozen=True)
class FileSettings:
    """What is written per image besides the decision: ``probabilities`` (the foreground
    probability, as ``probability_format`` "npz" float16 or "tif" float32), ``overlay``
    (contours over the image); ``min_size``: instance objects of fewer pixels are removed."""

    min_size: int = DEFAULT_MIN_SIZE
    probabilities: bool = False
    probability_format: str = DEFAULT_PROBABILITY_FORMAT
    overlay: bool = False

    def __post_init__(self) -> None:
        checks.integer("--min-size", self.min_size, minimum=0)
        checks.choice("--probability-format", self.probability_format, PROB_FORMATS)
        for name in ("probabilities", "overlay"):
            if not isinstance(getattr(self, name), bool):
                raise SettingError(f"{name} must be true or false, not {getattr(self, name)!r}")


def save_probs(
    folder: str | Path,
    item: dict,
    probs: Tensor,
    task: Task,
    settings: FileSettings,
    decision: np.ndarray | None = None,
) -> dict:
    """Write one image's prediction files into ``folder``; returns its predictions.json entry.

    item: the image's item (``image_id``; ``image`` (3, H, W) float in [0, 1] for an overlay).
    probs: ``(1, K, H, W)`` probabilities in [0, 1] (``train.strategies`` conventions).
    decision: ``task.prediction`` of ``probs`` where the caller has it already.
    """
    if decision is None:
        decision = task.prediction(probs[0].detach().cpu().numpy(), settings.min_size)
    if task.prediction_kind == "labels":
        maps = {"labels": decision}
    else:
        maps = {"mask": binary_from_probs(decision).astype(bool)}
    probability = None
    if settings.probabilities:
        foreground = foreground_probability(probs)[0].detach().cpu().numpy()
        probability = np.clip(foreground, 0, 1)  # blending may overshoot by rounding
    image = None
    if settings.overlay:
        pixels = item["image"].detach().cpu().numpy() * 255
        image = np.moveaxis(np.rint(pixels).clip(0, 255).astype(np.uint8), 0, -1)
    return write_prediction(
        folder,
        item["image_id"],
        **maps,
        probability=probability,
        image=image,
        overlay=settings.overlay,
        prob_format=settings.probability_format,
    )


def empty_warning(where: str, empty: list[str], total: int, shown: int = 10) -> str:
    """The line that names the images where nothing was predicted (no object, or an
    all-background mask): a model that predicts nothing is worth a look before its scores."""
    names = ", ".join(empty[:shown])
    if len(empty) > shown:
        names += f" and {len(empty) - shown} more"
    return f"warning: {where}: nothing predicted in {len(empty)} of {total} images: {names}"


def made_by(
    source: str | Path, path: Path, state: dict, task: Task, strategy: str, settings: dict
) -> dict:
    """predictions.json's ``made_by``: the tool, the model (where it came from, its config
    and epoch), its training store's provenance, the strategy and the settings."""
    return {
        "tool": {"name": "samaug", "version": __version__},
        "model": {
            "source": str(source),
            "file": str(path),
            "epoch": state["epoch"] + 1,  # the epochs trained: counted from 1
            "task": task.name,
            "config": state["config"],
        },
        "provenance": state.get("store", {}),
        "strategy": strategy,
        "settings": settings,
    }
