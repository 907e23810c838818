"""Read every file of a hostile corpus (``corpus.build``) as samaug reads it, and report.

``walk(folder)`` returns, per case of the manifest, what happened: "refused" (a SamaugError,
with its message), "flagged" (a store that ``verify`` reports problems in), "read" (read
without complaint) or "crashed" (any other exception: a bug). A refused prediction folder
must still hold every file it held (nothing is deleted before the input is validated).
``main`` runs it and prints the results as JSON; ``test_corpus`` runs that in a child under
a memory limit (``tests.support.limited``).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

from precompute.types import SamaugError


def _model(path: Path) -> str:
    from train.results.loading import load_model

    load_model(path, device="cpu")
    return "read"


def _config(path: Path) -> str:
    from train.training.config import TrainConfig

    TrainConfig.load(path)
    return "read"


def _npz(path: Path) -> str:
    from train.results.prediction_reader import read_prediction

    read_prediction(path)
    return "read"


def _predictions(path: Path) -> str:
    from train.results.prediction_files import prepare_folder

    before = sorted(p.name for p in path.iterdir())
    try:
        prepare_folder(path)
    except SamaugError:
        after = sorted(p.name for p in path.iterdir())
        if after != before:
            removed = sorted(set(before) - set(after))
            raise AssertionError(f"refused, but removed {removed}") from None
        raise
    return "read"


def _store(path: Path) -> str:
    from precompute.store import open_store
    from precompute.store.maintenance import check_store

    if check_store(str(path)).problems:
        return "flagged"
    store = open_store(str(path))
    for image_id in store.ids():
        store.read(image_id, "seg_prior")
    return "read"


# How each kind of file is read: the table of readers.
READERS: dict[str, Callable[[Path], str]] = {
    "model": _model,
    "config": _config,
    "npz": _npz,
    "predictions": _predictions,
    "store": _store,
}


def walk(folder: Path) -> list[dict]:
    """Every case of ``folder/manifest.json`` read by its kind's reader, with the outcome
    and the message of a refusal or a crash."""
    results = []
    for case in json.loads((folder / "manifest.json").read_text()):
        try:
            outcome, message = READERS[case["kind"]](Path(case["path"])), ""
        except SamaugError as err:
            outcome, message = "refused", str(err)
        except Exception as err:  # noqa: BLE001 (a crash is what the walk reports)
            outcome, message = "crashed", f"{type(err).__name__}: {err}"[:500]
        results.append({**case, "outcome": outcome, "message": message})
    return results


def main(folder: str) -> None:
    print(json.dumps(walk(Path(folder))))


if __name__ == "__main__":
    main(sys.argv[1])
