"""The fixed choices of the trainer's settings, as types the command line offers (typer reads
a ``Literal`` as a list of choices) and the library checks. Importable without torch, so the
command line can name them before it imports anything heavy.

Choices that come from a registry (models, fusions, tasks) are not listed here: each
registry checks its own names (``train.models``, ``train.fusion``, ``train.tasks``).
"""

from __future__ import annotations

from typing import Literal, get_args

Mode = Literal["raw", "samaug", "joint"]
Strategy = Literal["raw", "samaug", "ensemble", "select"]
Certainty = Literal["margin", "margin_minmax", "entropy"]
Tta = Literal["none", "flip"]
ProbabilityFormat = Literal["npz", "tif"]  # train.results.prediction_files.PROB_FORMATS

MODES: tuple[str, ...] = get_args(Mode)
STRATEGIES: tuple[str, ...] = get_args(Strategy)
CERTAINTIES: tuple[str, ...] = get_args(Certainty)
TTAS: tuple[str, ...] = get_args(Tta)
PROBABILITY_FORMATS: tuple[str, ...] = get_args(ProbabilityFormat)
# The released SAMAug test code's rule: mean |p - 0.5| after per-image min-max normalisation.
DEFAULT_CERTAINTY = "margin_minmax"
