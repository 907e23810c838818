"""Fixed cross-validation folds, the ones nnU-Net v2 makes, for samaug's trainer too.

MoNuSeg and GlaS are small enough that one held-out fraction says little; five fixed folds
say more, and the same five in nnU-Net and here compare the two on the same images.

``folds_of(ids, folds, seed)`` is nnU-Net's ``generate_crossval_split`` (what it writes to
``splits_final.json`` when it has none): the IDs sorted, their indices shuffled by
``numpy.random.RandomState(seed).shuffle`` and cut into ``folds`` consecutive parts, the
first ``len(ids) % folds`` of them one longer (scikit-learn's ``KFold(folds, shuffle=True,
random_state=seed)``, written out here without scikit-learn); fold ``k`` validates on part
``k`` and trains on the others, both in sorted order. With nnU-Net's seed (12345, the
default) and its case identifiers (samaug's image IDs, as ``samaug export-dataset`` writes
them), fold ``k`` here is fold ``k`` of ``nnUNetv2_train DATASET 2d k``. Folds count from 0,
as nnU-Net's do.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from precompute import checks
from precompute.types import SettingError

NNUNET_SEED = 12345  # nnU-Net's generate_crossval_split default
DEFAULT_FOLDS = 5


def folds_of(
    ids: Sequence[str], folds: int = DEFAULT_FOLDS, seed: int = NNUNET_SEED
) -> list[dict[str, list[str]]]:
    """Every fold of ``ids``: ``[{"train": [...], "val": [...]}, ...]``, the content of
    nnU-Net's ``splits_final.json`` (module doc). SettingError for fewer IDs than folds."""
    checks.integer("--folds", folds, minimum=2)
    keys = sorted(set(ids))
    if len(keys) < folds:
        raise SettingError(
            f"--folds {folds}: {len(keys)} training images cannot make {folds} folds; give "
            f"--folds {max(2, len(keys))} or fewer"
        )
    order = np.arange(len(keys))
    np.random.RandomState(seed).shuffle(order)
    sizes = np.full(folds, len(keys) // folds)
    sizes[: len(keys) % folds] += 1
    parts, start = [], 0
    for size in sizes:
        parts.append(set(order[start : start + size].tolist()))
        start += size
    return [
        {
            "train": [k for i, k in enumerate(keys) if i not in part],
            "val": [k for i, k in enumerate(keys) if i in part],
        }
        for part in parts
    ]


def fold_ids(
    ids: Sequence[str], fold: int, folds: int = DEFAULT_FOLDS, seed: int = NNUNET_SEED
) -> tuple[list[str], list[str]]:
    """(training IDs, validation IDs) of fold ``fold`` (0-based) of ``folds_of``."""
    checks.integer("--fold", fold, minimum=0)
    if fold >= folds:
        raise SettingError(f"--fold {fold}: folds count from 0, so at most {folds - 1} of {folds}")
    chosen = folds_of(ids, folds, seed)[fold]
    return chosen["train"], chosen["val"]
