"""The SAMAug test-time strategies, from the probabilities of the raw and the augmented input.

==========  ===============================================================================
strategy    prediction
==========  ===============================================================================
raw         the raw-input probabilities
samaug      the augmented-input probabilities
ensemble    the mean of the two probability maps
select      per image, the more certain of the two (``image_certainty``, by default the
            released code's ``margin_minmax``); ties pick samaug
==========  ===============================================================================

Probability maps are float tensors ``(B, K, H, W)`` in [0, 1]. Channel conventions:

- ``K == 1``: a sigmoid output; channel 0 is the foreground probability.
- ``K >= 2``: a softmax output over classes whose channel 0 is the background; the
  foreground probability is ``1 - p_background`` (for the 3-class instance output
  background/interior/boundary, that is interior + boundary).
"""

from __future__ import annotations

import torch
from torch import Tensor

from precompute import checks
from train.choices import CERTAINTIES, DEFAULT_CERTAINTY, STRATEGIES, Certainty, Strategy

# Which inputs each strategy needs the probabilities of (False: raw, True: augmented).
STRATEGY_INPUTS: dict[str, tuple[bool, ...]] = {
    "raw": (False,),
    "samaug": (True,),
    "ensemble": (False, True),
    "select": (False, True),
}
assert tuple(STRATEGY_INPUTS) == STRATEGIES


def inputs_for(strategies) -> tuple[bool, ...]:
    """The inputs (False: raw, True: augmented) the given strategies need, raw first."""
    for name in strategies:
        checks.choice("strategy", name, STRATEGIES)
    needed = {augmented for name in strategies for augmented in STRATEGY_INPUTS[name]}
    return tuple(sorted(needed))


def foreground_probability(probs: Tensor) -> Tensor:
    """Foreground probability ``(B, H, W)`` of a ``(B, K, H, W)`` probability map.

    ``K == 1``: channel 0 (sigmoid foreground). ``K >= 2``: ``1 - p[:, 0]`` (channel 0 is the
    background of a softmax output; for background/interior/boundary this is
    interior + boundary).
    """
    _check_probs(probs, "probs")
    return probs[:, 0] if probs.shape[1] == 1 else 1 - probs[:, 0]


def check_certainty(certainty: str) -> None:
    """SettingError unless ``certainty`` names one of ``CERTAINTIES``."""
    checks.choice("--certainty", certainty, CERTAINTIES)


def image_certainty(probs: Tensor, certainty: Certainty = DEFAULT_CERTAINTY) -> Tensor:
    """Per-image certainty ``(B,)`` float64 of a ``(B, K, H, W)`` map; higher = more certain.

    ``"margin_minmax"`` (the default: the released SAMAug test code exactly): with
    ``p_fg = foreground_probability(probs)`` min-max normalised per image to [0, 1]
    (``(p - min) / (max - min + 1e-8)``, as PraNet evaluates), the mean over pixels of
    ``|p_fg - 0.5|``; in [0, 0.5]. It rewards a confident *ranking* of pixels rather than
    probabilities near 0/1. On a map that is already min-max normalised (the polyp
    protocol's predictions) it equals ``"margin"``.

    ``"margin"``: the same mean of ``|p_fg - 0.5|`` on the probabilities as they are (this
    project's variant, without the normalisation); in [0, 0.5].

    ``"entropy"``: minus the mean over pixels of the entropy (nats) of the full class
    distribution (for ``K == 1`` the Bernoulli ``(1 - p, p)``; for ``K >= 2`` the K softmax
    channels); in [-log(max(K, 2)), 0].
    """
    _check_probs(probs, "probs")
    check_certainty(certainty)
    if certainty in ("margin", "margin_minmax"):
        p = foreground_probability(probs).flatten(1).double()
        if certainty == "margin_minmax":
            lo, hi = p.amin(1, keepdim=True), p.amax(1, keepdim=True)
            p = (p - lo) / (hi - lo + 1e-8)
        return (p - 0.5).abs().mean(1)
    p = probs.double()  # "entropy"
    dist = torch.cat([1 - p, p], 1) if p.shape[1] == 1 else p
    return torch.special.xlogy(dist, dist).sum(1).flatten(1).mean(1)


def select(
    prob_raw: Tensor, prob_aug: Tensor, certainty: Certainty = DEFAULT_CERTAINTY
) -> tuple[Tensor, Tensor]:
    """Per image, the more certain of the two probability maps.

    Returns ``(probs, took_samaug)``: ``probs`` ``(B, K, H, W)`` (each image taken unchanged
    from one input) and ``took_samaug`` ``(B,)`` bool, True where the augmented-input map was
    taken. A tie goes to samaug, as in the released code (``raw`` only if its certainty is
    strictly greater: ``if indicator1 > indicator2``).
    """
    probs, took_samaug = all_strategies(prob_raw, prob_aug, certainty)
    return probs["select"], took_samaug


# The strategy table, written once: each strategy's prediction from the raw-input map, the
# augmented-input map and select's per-image choice ((B,) bool, True = augmented).
_STRATEGY_TABLE = {
    "raw": lambda prob_raw, prob_aug, took_samaug: prob_raw,
    "samaug": lambda prob_raw, prob_aug, took_samaug: prob_aug,
    "ensemble": lambda prob_raw, prob_aug, took_samaug: (prob_raw + prob_aug) / 2,
    "select": lambda prob_raw, prob_aug, took_samaug: torch.where(
        took_samaug.to(prob_aug.device)[:, None, None, None], prob_aug, prob_raw
    ),
}
assert tuple(_STRATEGY_TABLE) == STRATEGIES


def combine(
    prob_raw: Tensor,
    prob_aug: Tensor,
    strategy: Strategy,
    certainty: Certainty = DEFAULT_CERTAINTY,
) -> Tensor:
    """The ``(B, K, H, W)`` prediction of one test-time strategy (see the module table).

    ``prob_raw`` and ``prob_aug`` are ``(B, K, H, W)`` probability maps of the same shape from
    the raw and the augmented input; ``certainty`` matters only for ``"select"``.
    """
    checks.choice("strategy", strategy, STRATEGIES)
    return all_strategies(prob_raw, prob_aug, certainty)[0][strategy]


def all_strategies(
    prob_raw: Tensor, prob_aug: Tensor, certainty: Certainty = DEFAULT_CERTAINTY
) -> tuple[dict[str, Tensor], Tensor]:
    """All four test-time predictions at once.

    Returns ``(probs, took_samaug)``: ``probs`` maps each name of ``STRATEGIES`` (``raw``,
    ``samaug``, ``ensemble``, ``select``) to its ``(B, K, H, W)`` map; ``took_samaug`` is the
    ``(B,)`` bool choice ``select`` made (True = the augmented-input map).
    """
    return strategy_maps(STRATEGIES, prob_raw, prob_aug, certainty)


def strategy_maps(
    names,
    prob_raw: Tensor | None,
    prob_aug: Tensor | None,
    certainty: Certainty = DEFAULT_CERTAINTY,
) -> tuple[dict[str, Tensor], Tensor | None]:
    """The ``(B, K, H, W)`` maps of the strategies ``names``, from the inputs they need
    (``STRATEGY_INPUTS``; the map of an input none of them needs may be None).

    Returns ``(probs, took_samaug)``: the maps by name, and where both input maps are given,
    the ``(B,)`` bool choice ``select`` makes (True = the augmented-input map), else None.
    """
    for name in names:
        checks.choice("strategy", name, STRATEGIES)
    took_samaug = None
    if prob_raw is not None and prob_aug is not None:
        _check_pair(prob_raw, prob_aug)
        took_samaug = image_certainty(prob_aug, certainty) >= image_certainty(prob_raw, certainty)
    probs = {name: _STRATEGY_TABLE[name](prob_raw, prob_aug, took_samaug) for name in names}
    return probs, took_samaug


def _check_probs(probs: Tensor, name: str) -> None:
    if probs.ndim != 4 or probs.shape[1] < 1:
        raise ValueError(f"{name} must be (B, K, H, W) probabilities, got {tuple(probs.shape)}")


def _check_pair(prob_raw: Tensor, prob_aug: Tensor) -> None:
    _check_probs(prob_raw, "prob_raw")
    _check_probs(prob_aug, "prob_aug")
    if prob_raw.shape != prob_aug.shape:
        raise ValueError(
            f"prob_raw {tuple(prob_raw.shape)} and prob_aug {tuple(prob_aug.shape)} differ in "
            "shape; both must come from the same image batch and model"
        )
