"""The task registry: the one switch between what a model learns and how it is scored.

A task says everything that differs between datasets in training and evaluation: the target
made from a stored instance label map (``train.targets``), the model's output channels and
activation, the loss (``train.losses``), the scores of one predicted image and how a split's
image scores are aggregated (``train.metrics``). Each dataset names its task in the table of
datasets (``precompute.readers.DATASETS``); ``TrainConfig.task`` overrides it (e.g. for a
``folder`` dataset of nuclei).

==========  ===================  =======  ==========================================
task        target               outputs  scores (aggregation)
==========  ===================  =======  ==========================================
glands      background /         3        GlaS object F1, Dice, Hausdorff (pooled over
            interior / boundary  softmax  a split as the challenge does; image means too;
                                          all test splits together as well)
nuclei      background /         3        AJI, AJI+, PQ, pixel F1 (mean over images)
            interior / boundary  softmax
binary      background /         1        polyp scores: Dice/IoU sweep, S-/E-measure,
            foreground           sigmoid  weighted F, MAE, soft Dice (mean over images)
==========  ===================  =======  ==========================================
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch

from precompute.readers import DATASETS
from precompute.registry import Registry
from precompute.types import SamaugError
from train.losses import binary_loss, instance_loss
from train.postprocess import binary_from_probs, instances_from_probs
from train.targets import binary_target, instance_target

from . import metrics as M

# A row of per-image scores may carry these keys besides the metrics (see train.results.evaluation).
IMAGE_KEYS = ("split", "image_id", "strategy")


@dataclass(frozen=True)
class Task:
    """What a model learns and how its predictions are scored.

    target: (label (H, W) int instance map, boundary_width) -> (H, W) int64 target.
    needs_context: whether a pixel's target depends on its neighbours' labels (then a
      patch's target is computed on a label window with a margin).
    num_outputs: logit channels of the model; activation: "softmax" over them, or
      "sigmoid" for a single foreground channel (``train.strategies`` conventions).
    loss: (logits (B, K, H, W), target (B, H, W) int64) -> scalar tensor.
    prediction: (probs (K, H, W) float32 numpy in [0, 1], min_size) -> the map a prediction
      is scored by and saved as: for ``prediction_kind`` "labels" an (H, W) int32 instance
      label map, for "probability" the (H, W) float32 foreground probability.
    score_prediction: (that map, label (H, W) int instance map) -> {metric: float} for one
      image; it scores a map read back from a prediction file (``samaug score``) too.
    aggregate: a split's image score rows -> {metric: float}.
    pool_splits: also report all test splits together as "all" (the GlaS testA + testB).
    """

    name: str
    target: Callable[[np.ndarray, int], np.ndarray]
    needs_context: bool
    num_outputs: int
    activation: str
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    prediction_kind: str
    prediction: Callable[[np.ndarray, int], np.ndarray]
    score_prediction: Callable[[np.ndarray, np.ndarray], dict[str, float]]
    aggregate: Callable[[list[dict]], dict[str, float]]
    pool_splits: bool = False

    def __post_init__(self) -> None:
        # Inference reads a one-channel output as a sigmoid foreground, more as softmax.
        expected = "sigmoid" if self.num_outputs == 1 else "softmax"
        assert self.activation == expected, (self.name, self.num_outputs, self.activation)
        assert self.prediction_kind in ("labels", "probability"), self.prediction_kind

    def predicts_nothing(self, decision: np.ndarray) -> bool:
        """Whether a ``prediction`` map holds nothing: no object in a label map, no pixel
        at ``p >= 0.5`` in a probability (the mask a prediction file is saved as)."""
        if self.prediction_kind == "labels":
            return not np.any(decision)
        return not np.any(binary_from_probs(decision))

    def score(self, probs: np.ndarray, label: np.ndarray, min_size: int) -> dict[str, float]:
        """The scores of one image from its probabilities (K, H, W) in [0, 1]."""
        return self.score_prediction(self.prediction(probs, min_size), label)


GLAS_PARTS = tuple(f.name for f in fields(M.GlasParts))
NUCLEI_METRICS = {"aji": M.aji, "aji_plus": M.aji_plus, "pq": M.pq, "pixel_f1": M.pixel_f1}


def _instances(probs: np.ndarray, min_size: int) -> np.ndarray:
    return instances_from_probs(probs, min_size=min_size)


def _foreground(probs: np.ndarray, min_size: int) -> np.ndarray:
    return probs[0]  # the sigmoid channel; min_size: no objects to remove


def _score_glands(predicted: np.ndarray, label: np.ndarray) -> dict[str, float]:
    """The image's own object F1 / Dice / Hausdorff and its GlasParts fields (to pool)."""
    parts = M.glas_parts(label, predicted)
    return {**M.glas_pooled([parts]), **asdict(parts)}


def _score_nuclei(predicted: np.ndarray, label: np.ndarray) -> dict[str, float]:
    return {name: fn(label, predicted) for name, fn in NUCLEI_METRICS.items()}


def _score_binary(foreground: np.ndarray, label: np.ndarray) -> dict[str, float]:
    """The polyp scores (``polyp_scores``) and ``soft_dice``, the released SAMAug script's
    test Dice on the map as it is: ``(2 * sum(p * g) + 1) / (sum(p) + sum(g) + 1)``."""
    truth = label > 0
    scores = M.polyp_scores(truth, foreground)
    p = np.asarray(foreground, np.float64)
    scores["soft_dice"] = float((2 * (p * truth).sum() + 1) / (p.sum() + truth.sum() + 1))
    return scores


def _aggregate_mean(rows: list[dict]) -> dict[str, float]:
    """The mean over images of each metric ({} for no rows)."""
    if not rows:
        return {}
    keys = [key for key in rows[0] if key not in IMAGE_KEYS]
    return {key: float(np.mean([r[key] for r in rows])) for key in keys}


def _aggregate_glands(rows: list[dict]) -> dict[str, float]:
    """object_f1 / object_dice / object_hausdorff pooled over all the images (the challenge's
    definition: counts summed, objects weighted by their share of the whole part's area),
    and the same three averaged over images as ``*_image_mean``."""
    if not rows:
        return {}
    pooled = M.glas_pooled([M.GlasParts(**{f: r[f] for f in GLAS_PARTS}) for r in rows])
    means = {f"{k}_image_mean": float(np.mean([r[k] for r in rows])) for k in pooled}
    return {**pooled, **means}


_INSTANCE = dict(
    target=instance_target,
    needs_context=True,
    num_outputs=3,
    activation="softmax",
    prediction_kind="labels",
    prediction=_instances,
)
# The tasks by name (``precompute.registry``).
TASKS: Registry[Task] = Registry("task")
list_tasks = TASKS.names  # the registered names, sorted
get_task = TASKS.get  # the task called ``name``; SettingError naming the valid ones

for _task in (
    Task(
        "glands",
        **_INSTANCE,
        loss=instance_loss,
        score_prediction=_score_glands,
        aggregate=_aggregate_glands,
        pool_splits=True,
    ),
    Task(
        "nuclei",
        **_INSTANCE,
        loss=instance_loss,
        score_prediction=_score_nuclei,
        aggregate=_aggregate_mean,
    ),
    Task(
        "binary",
        target=binary_target,
        needs_context=False,
        num_outputs=1,
        activation="sigmoid",
        loss=binary_loss,
        prediction_kind="probability",
        prediction=_foreground,
        score_prediction=_score_binary,
        aggregate=_aggregate_mean,
    ),
):
    TASKS.add(_task.name, _task)


def task_for_dataset(dataset: str) -> str:
    """The task name a dataset's data is trained for (its ``precompute.readers.DATASETS``
    entry); SamaugError for a dataset not in that table."""
    if dataset not in DATASETS:
        raise SamaugError(
            f"no task known for dataset {dataset!r}; known: {', '.join(DATASETS.names())}"
            f" (or pass --task, one of {', '.join(list_tasks())})"
        )
    return DATASETS.get(dataset).task
