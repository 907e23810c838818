"""The fixed choices of the trainer's settings, as types the command line offers (typer reads
a ``Literal`` as a list of choices) and the library checks. Importable without torch, so the
command line can name them before it imports anything heavy.

Choices that come from a registry (models, fusions, tasks, protocols, recipes) are not listed
here: each registry checks its own names. ``Mode`` is the training modes' table
(``train.modes``) as the command line offers it; a test keeps the two equal.
"""

from __future__ import annotations

from typing import Literal, get_args

Mode = Literal["raw", "samaug", "joint"]
Strategy = Literal["raw", "samaug", "ensemble", "select"]
Certainty = Literal["margin", "margin_minmax", "entropy"]
Tta = Literal["none", "flip"]
ProbabilityFormat = Literal["npz", "tif"]  # train.results.prediction_files.PROB_FORMATS
JointUpdate = Literal["step", "mean"]
Optimizer = Literal["adamw", "adam"]
LrSchedule = Literal["cosine", "multistep", "compound"]
# The losses a run can train with (``train.losses.make_loss``): "task" is the task's own
# (``train.tasks``); the structure losses are binary (one sigmoid channel).
Loss = Literal["task", "structure", "structure_released", "structure_unweighted"]
# How a deep-supervised model's maps make its test prediction (``TrainConfig.test_maps``).
TestMaps = Literal["sum", "last"]
# ``samaug export-dataset``: the format written, and how the priors enter its input channels
# (``train.results.nnunet_export``).
ExportFormat = Literal["nnunet"]
ExportPriors = Literal["add", "channels", "none"]

STRATEGIES: tuple[str, ...] = get_args(Strategy)
CERTAINTIES: tuple[str, ...] = get_args(Certainty)
TTAS: tuple[str, ...] = get_args(Tta)
PROBABILITY_FORMATS: tuple[str, ...] = get_args(ProbabilityFormat)
JOINT_UPDATES: tuple[str, ...] = get_args(JointUpdate)
OPTIMIZERS: tuple[str, ...] = get_args(Optimizer)
LR_SCHEDULES: tuple[str, ...] = get_args(LrSchedule)
LOSSES: tuple[str, ...] = get_args(Loss)
TEST_MAPS: tuple[str, ...] = get_args(TestMaps)
EXPORT_PRIORS: tuple[str, ...] = get_args(ExportPriors)
# The released SAMAug test code's rule: mean |p - 0.5| after per-image min-max normalisation.
DEFAULT_CERTAINTY = "margin_minmax"
# The prediction settings' other defaults (``PredictSettings``, ``FileSettings``, and the
# command line's options): no test-time augmentation, float16 probabilities, and instance
# objects of fewer pixels than this removed.
DEFAULT_TTA = "none"
DEFAULT_PROBABILITY_FORMAT = "npz"
DEFAULT_MIN_SIZE = 10
