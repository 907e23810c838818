"""Validation of numeric settings, one message style: the setting, the value, what it must be.

Each function returns the value when it is acceptable and raises SettingError otherwise;
settings dataclasses call them in ``__post_init__`` so that a bad value is refused before any
work starts. ``name`` is how the user spells the setting (e.g. "--lr" or "points_per_side").
"""

from __future__ import annotations

import math
from numbers import Integral, Real

from precompute.types import SettingError


def integer(name: str, value, minimum: int | None = None, maximum: int | None = None) -> int:
    """An int (bool refused) within [minimum, maximum] where given."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise SettingError(f"{name} must be a whole number, not {value!r}")
    if minimum is not None and value < minimum:
        raise SettingError(f"{name} must be at least {minimum}, not {value}")
    if maximum is not None and value > maximum:
        raise SettingError(f"{name} must be at most {maximum}, not {value}")
    return int(value)


def number(
    name: str,
    value,
    minimum: float | None = None,
    maximum: float | None = None,
    positive: bool = False,
) -> float:
    """A finite real number (bool refused) within [minimum, maximum], > 0 if ``positive``."""
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise SettingError(f"{name} must be a finite number, not {value!r}")
    if positive and value <= 0:
        raise SettingError(f"{name} must be greater than 0, not {value}")
    if minimum is not None and value < minimum:
        raise SettingError(f"{name} must be at least {minimum}, not {value}")
    if maximum is not None and value > maximum:
        raise SettingError(f"{name} must be at most {maximum}, not {value}")
    return float(value)


def fraction(name: str, value) -> float:
    """A finite number in [0, 1] (thresholds, probabilities)."""
    return number(name, value, 0.0, 1.0)


def choice(name: str, value, choices) -> str:
    """One of ``choices`` (a string); the error lists them."""
    if value not in tuple(choices):
        raise SettingError(f"{name} must be one of {', '.join(map(str, choices))}, not {value!r}")
    return value
