"""Which priors a trained model may be given: those of the masker it was trained with.

A model trained on priors (modes ``samaug`` and ``joint``) learnt what SAM's masks look like
under one checkpoint and one set of generator settings, and under one definition of the
priors. Its checkpoint records them (``state["identity"]["signature"]``, the training store's
signature, and ``state["store"]["masker"]``, the masker's provenance with the checkpoint's
path). ``check_store`` refuses a store whose priors were made otherwise; ``masker_for``
finds the masker to compute priors for new images with, and refuses a SAM checkpoint of
another sha256. A ``raw`` model takes the image only: any store, no masker.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from precompute.maskers import masker_provenance, portable_provenance, recorded_checkpoint
from precompute.store import PRIOR_DEFINITIONS, signature
from precompute.types import SettingError
from train.training.config import differences


def _recorded(state: dict) -> dict:
    """The model's training-store signature (``precompute.store.signature``)."""
    return state["identity"]["signature"]


def check_priors_match(state: dict, store) -> None:
    """SettingError naming each difference when ``store`` (a ``SamaugStore``) holds priors
    made by another masker, other masker settings or other prior definitions than the ones
    the model was trained on (call it where the priors are used)."""
    ours, theirs = _recorded(state), signature(store.attrs)
    found = differences(
        {key: ours[key] for key in ("masker", "priors")},
        {key: theirs[key] for key in ("masker", "priors")},
    )
    if found:
        raise SettingError(
            f"{store.location}: its priors were made otherwise than the model's training "
            f"priors ({'; '.join(_worded(line, 'model', 'the store') for line in found)}); "
            "give a store made with the model's masker, or predict its images with --images"
        )


def _worded(line: str, run: str, this: str) -> str:
    """A ``differences`` line with its two sides named (it says "run" and "this run")."""
    return line.replace(": run has ", f": {run} has ", 1).replace(", this run ", f", {this} ", 1)


@dataclass(frozen=True)
class MaskerChoice:
    """The masker to compute a model's priors with: ``kind``, the ``checkpoint`` on this
    machine (None for maskers without one) and every generator ``settings`` value."""

    kind: str
    checkpoint: str | None
    settings: dict


def masker_for(state: dict, checkpoint: str | Path | None = None) -> MaskerChoice:
    """The masker the model's training priors were made with, found on this machine.

    checkpoint: where that masker's checkpoint (SAM's ``.pth``) is here; default the path
    recorded at training time. SettingError when the checkpoint is not here, when its sha256
    is not the recorded one (naming both), or when anything else of the masker's identity or
    the prior definitions differs; SamaugError for an unreadable checkpoint.
    """
    recorded = state["store"]["masker"]
    kind, settings = recorded["kind"], dict(recorded["settings"])
    made_with = recorded_checkpoint(recorded)  # None for a masker without one
    path = None
    if made_with is not None:
        path = str(checkpoint) if checkpoint is not None else made_with.path
        if checkpoint is None and not (path and Path(path).is_file()):
            raise SettingError(
                f"the model's priors were made with the {kind} checkpoint recorded as {path} "
                f"(sha256 {made_with.sha256}), which is not on this machine; "
                "give its path with --checkpoint"
            )
    now = masker_provenance(kind, path, settings)
    here = recorded_checkpoint(now)
    if made_with is not None and here is not None and made_with.sha256 != here.sha256:
        raise SettingError(
            f"--checkpoint {path} has sha256 {here.sha256}, but the model was trained on "
            f"priors from the checkpoint with sha256 {made_with.sha256} (recorded as "
            f"{made_with.path}); give that checkpoint: other weights make other priors"
        )
    found = differences(portable_provenance(recorded), portable_provenance(now), prefix="masker.")
    found += differences(_recorded(state)["priors"], PRIOR_DEFINITIONS, prefix="priors.")
    if found:
        raise SettingError(
            "this samaug would make the model's priors otherwise ("
            + "; ".join(_worded(line, "model", "here") for line in found)
            + "); use the samaug version the model was trained with"
        )
    return MaskerChoice(kind, path, settings)
