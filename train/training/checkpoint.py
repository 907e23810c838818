"""The run directory: every file replaced atomically, checkpoints read without running code.

A run directory holds ``config.json``, ``log.csv``, ``last.pt``, ``best.pt`` and
``metrics.json``. Every file is written to a temporary file beside it and moved over it
(``precompute.files``), so a reader, or a run killed at any moment, sees the old file or the
new one, never a part.

``last.pt`` is the run: model, optimizer, scheduler and scaler states, the epoch and step,
the log history (every row of ``log.csv``), the best epoch and its validation Dice, the
config, the task and the store's identity. An epoch ends with, in this order:

1. ``last.pt`` replaced;
2. ``best.pt`` replaced by a copy of ``last.pt``, when this epoch is the best so far (with
   no validation images, every epoch is: the last epoch is kept);
3. ``log.csv`` rewritten from ``last.pt``'s history.

A kill between two of them leaves ``last.pt`` ahead of the others, and ``resume`` repairs
them from it: it rewrites ``log.csv``, and copies ``last.pt`` to ``best.pt`` when the last
epoch is the recorded best epoch but ``best.pt`` holds another epoch (or is missing).

Within an epoch, a run with ``save_every`` N replaces ``last.pt`` (only) every N batches
(``save_position``): then ``epoch`` is the last complete epoch (-1 in the first) and
``batch`` the batches done of the next one, with their losses (``epoch_losses``; in a
distributed run one list per rank); at an
epoch's end ``batch`` is 0. A kill mid-epoch loses the batches since the last such save (all
of the epoch without ``save_every``), and the rerun goes on from there: the model, optimiser,
schedule and scaler states are the saved ones and the data loader skips the batches done
(their items are fixed by the seed, the epoch and the index, ``train.data.datasets``, and so is the
torch generator of each batch, ``train.training.loop.seed_batch``), so the resumed run computes what
the uninterrupted run computes.

Checkpoints hold only tensors and plain values (dicts, lists, numbers, strings, None) and
are read with ``torch.load(weights_only=True)``: a file that would need arbitrary objects
unpickled (and so could run code it carries) is refused, never loaded. A file that is not a
zip (what ``torch.save`` writes) is no checkpoint and is not handed to torch at all; the plain
values of one that loads are checked against ``STATE_SCHEMA`` (``precompute.received``)
before any is used, so a crafted ``last.pt`` is refused in one line naming it.
"""

from __future__ import annotations

import csv
import pickle
import re
import shutil
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from precompute.files import TORCH_LOAD_ERRORS, atomic_file, atomic_save, atomic_write_json
from precompute.received import INTEGER, NAMES, OBJECT, check_schema, nullable, read_json_file
from precompute.store import signature
from precompute.types import SamaugError, SettingError
from train.training.config import TrainConfig, differences
from train.training.divergence import check_weights

# val_dice: the Dice of the strategy validation follows (``val_strategy``), which picks
# best.pt; val_<strategy>: each strategy the mode serves (empty for the others).
LOG_FIELDS = (
    "epoch",
    "step",
    "lr",
    "train_loss",
    "val_dice",
    "val_raw",
    "val_samaug",
    "val_ensemble",
    "val_select",
    "seconds",
)
FORMAT = "samaug-checkpoint/1"
REQUIRED = ("format", "model", "epoch", "config", "task", "in_channels", "num_outputs")
RUN_FILES = ("config.json", "log.csv", "last.pt", "best.pt", "metrics.json", "progress.png")
RETRAIN = "restore it from a copy, or delete last.pt and best.pt to train the run again"
# The plain values of a checkpoint, as a JSON Schema (its tensors and states are left to
# ``load_state_dict``): what resuming, evaluating and exporting rely on.
_CELL = {"type": ["string", "number", "null"]}
STATE_SCHEMA = {
    "type": "object",
    "properties": {
        "format": {"const": FORMAT},
        "model": OBJECT,
        "config": OBJECT,
        "task": {"type": "string"},
        "in_channels": {**INTEGER, "minimum": 1},
        "num_outputs": {**INTEGER, "minimum": 1},
        "epoch": {**INTEGER, "minimum": -1},
        "batch": {**INTEGER, "minimum": 0},
        "step": {**INTEGER, "minimum": 0},
        "best_epoch": nullable({**INTEGER, "minimum": 0}),
        "best_val_dice": nullable({"type": "number"}),
        "epoch_losses": {"type": "array"},
        "log": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["epoch", "step"],
                "properties": {
                    "epoch": {**INTEGER, "minimum": 0},
                    "step": {**INTEGER, "minimum": 0},
                },
                "additionalProperties": _CELL,
            },
        },
        "identity": {
            "type": "object",
            "required": ["signature", "train_ids", "val_ids"],
            "properties": {"signature": OBJECT, "train_ids": NAMES, "val_ids": NAMES},
        },
        "store": OBJECT,
    },
}
# What a zip file starts with: every file ``torch.save`` writes.
_ZIP_MAGIC = b"PK\x03\x04"


# --------------------------------------------------------------------------- reading


def _damage(err: BaseException, path: Path) -> str:
    if isinstance(err, EOFError):
        return "the file is empty" if path.stat().st_size == 0 else "the file ends too early"
    return str(err).splitlines()[0][:160] if str(err) else type(err).__name__


def load_checkpoint(
    path: str | Path, device: torch.device | str = "cpu", remedy: str = RETRAIN
) -> dict:
    """A samaug checkpoint (a dict, see the module doc) with tensors on ``device``.

    Refused with a SamaugError naming the file: a missing file; a file that is no checkpoint
    at all (not the zip ``torch.save`` writes); a file that would need objects other than
    tensors and plain values unpickled (it could run code); a damaged one (empty, truncated),
    whose message ends with ``remedy``; one whose plain values are not a samaug
    checkpoint's (``STATE_SCHEMA``).
    """
    path = Path(path)
    if not path.is_file():
        raise SamaugError(f"{path}: no checkpoint; has `samaug train` finished this run?")
    _check_container(path, remedy)
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"GLOBAL ([\w.]+)", str(err))
        if "Weights only load failed" not in str(err) or not found:
            raise SamaugError(f"{path} is damaged ({_damage(err, path)}); {remedy}") from err
        raise SamaugError(
            f"{path}: refused: it asks to build {found.group(1)}, which a samaug checkpoint "
            "never holds, and loading it could run code it carries; delete it, and use only "
            "run folders from a trusted source"
        ) from None
    except TORCH_LOAD_ERRORS as err:
        raise SamaugError(f"{path} is damaged ({_damage(err, path)}); {remedy}") from err
    missing = [key for key in REQUIRED if not isinstance(state, dict) or key not in state]
    if missing:
        raise SamaugError(
            f"{path} is not a checkpoint of this samaug ({FORMAT}; missing {', '.join(missing)})"
        )
    plain = {key: value for key, value in state.items() if key in STATE_SCHEMA["properties"]}
    try:
        check_schema(plain, STATE_SCHEMA, str(path))
    except SamaugError as err:
        raise SamaugError(f"{err}: not a checkpoint of this samaug ({FORMAT})") from None
    return state


def _check_container(path: Path, remedy: str) -> None:
    """SamaugError unless ``path`` is a zip file, what ``torch.save`` writes: anything else
    (a text file, a truncated or an empty file) is not given to torch's unpickler."""
    with open(path, "rb") as f:
        head = f.read(len(_ZIP_MAGIC))
    if head == _ZIP_MAGIC and zipfile.is_zipfile(path):
        return
    if not head:
        raise SamaugError(f"{path} is damaged (the file is empty); {remedy}")
    if head == _ZIP_MAGIC:
        raise SamaugError(f"{path} is damaged (a zip cut short or altered); {remedy}")
    raise SamaugError(
        f"{path} is not a checkpoint (a samaug checkpoint is the zip file torch.save writes; "
        f"this one starts with {head!r}); give a run directory, a bundle or a .pt checkpoint"
    )


def read_json(path: str | Path) -> Any:
    """A JSON file of the run directory; SamaugError naming it if it is unreadable (within
    the bounds of ``precompute.received``)."""
    return read_json_file(path)


# --------------------------------------------------------------------------- writing


def write_log(path: str | Path, rows: list[dict]) -> None:
    """``log.csv``: ``LOG_FIELDS`` as header, one row per epoch (None as an empty cell)."""
    with atomic_file(path, "w") as f:
        writer = csv.writer(f)
        writer.writerow(LOG_FIELDS)
        for row in rows:
            writer.writerow(["" if row.get(k) is None else row[k] for k in LOG_FIELDS])


def update_metrics(run_dir: str | Path, values: Mapping[str, Any]) -> None:
    """Set ``values``' keys in the run's ``metrics.json`` (its other keys are kept)."""
    path = Path(run_dir) / "metrics.json"
    saved = read_json(path) if path.exists() else {}
    if not isinstance(saved, dict):
        raise SamaugError(f"{path}: not a JSON object; delete it, the run will write it again")
    atomic_write_json(path, {**saved, **values})


def _copy(source: Path, target: Path) -> None:
    with open(source, "rb") as src, atomic_file(target, "wb") as dst:
        shutil.copyfileobj(src, dst)


def save_epoch(out: Path, state: dict, is_best: bool) -> None:
    """The end of an epoch, in the module doc's order: last.pt, best.pt, log.csv."""
    check_weights(state["model"], out, training=True)  # a diverged run keeps its last.pt
    atomic_save(out / "last.pt", lambda f: torch.save(state, f))
    if is_best:
        _copy(out / "last.pt", out / "best.pt")
    write_log(out / "log.csv", state["log"])


def save_position(out: Path, state: dict) -> None:
    """A position within an epoch (module doc): ``last.pt`` alone is replaced."""
    check_weights(state["model"], out, training=True)
    atomic_save(out / "last.pt", lambda f: torch.save(state, f))


def _remove_partial_files(out: Path) -> None:
    """Temporary files of writes a kill interrupted (precompute.files names them)."""
    for name in RUN_FILES:
        for partial in out.glob(f".{name}.*.tmp"):
            partial.unlink()


# --------------------------------------------------------------------------- starting


def store_identity(store, train_ids: list[str], val_ids: list[str]) -> dict:
    """What a store contributes to a run's result: its signature (dataset, masker, priors,
    schema; ``precompute.store.signature``) and the images trained and validated on."""
    return {"signature": signature(store.attrs), "train_ids": train_ids, "val_ids": val_ids}


def run_differences(state: dict, config: TrainConfig, task: str, identity: dict) -> list[str]:
    """How this run's settings differ from the checkpoint's, one line each (see
    ``config.differences``); the store by its identity, not by its path."""
    found = differences(
        {**state["config"], "task": state["task"]}, {**config.to_dict(), "task": task}
    )
    found += differences(state["identity"]["signature"], identity["signature"], "store.")
    for key, what in (("train_ids", "training images"), ("val_ids", "validation images")):
        run, this = state["identity"][key], identity[key]
        if run != this:
            found.append(
                f"{what}: run has {len(run)}, this run {len(this)} "
                f"({len(set(run) ^ set(this))} differ)"
            )
    return found


def start(out: Path, config: TrainConfig) -> None:
    """A new run directory: config.json and an empty log.csv. Refuses (``check_new_out``) a
    folder holding files a run did not write, a Zarr store, and a directory holding another
    run's best.pt (its last.pt gone); removes an orphaned metrics.json."""
    check_new_out(out)
    if (out / "best.pt").exists():
        raise SamaugError(
            f"{out} holds a best.pt but no last.pt: it is another run's result; use a new "
            "--out, or delete best.pt to train this run there"
        )
    out.mkdir(parents=True, exist_ok=True)
    _remove_partial_files(out)
    (out / "metrics.json").unlink(missing_ok=True)  # the scores of a run whose .pt are gone
    config.save(out / "config.json")
    write_log(out / "log.csv", [])


# What a run's TensorBoard events and `samaug eval` add to its directory: with RUN_FILES,
# all a run directory holds.
MORE_RUN_FILES = ("tensorboard", "test_per_image.csv")


def check_new_out(out: Path) -> None:
    """SettingError unless ``out`` may become a new run's directory: a new or empty folder,
    or the files of a run started there (its ``config.json``, with nothing but run files).
    A file, a Zarr store (or a folder inside one) and a folder holding anything a run did
    not write are refused before anything in it is touched."""
    if out.exists() and not out.is_dir():
        raise SettingError(f"--out {out} is a file; give a directory for the run")
    for folder in (out, *out.absolute().parents):
        if (folder / "zarr.json").is_file() or (folder / ".zgroup").is_file():
            raise SettingError(
                f"--out {out} is {'' if folder == out else 'inside '}a Zarr store "
                f"({folder}); give a folder of its own for the run"
            )
    if not out.is_dir():
        return
    names = sorted(p.name for p in out.iterdir())
    ours = set(RUN_FILES) | set(MORE_RUN_FILES)
    other = [n for n in names if n not in ours and not _is_partial(n)]
    if names and (other or "config.json" not in names):
        shown = ", ".join((other or names)[:3]) + (" ..." if len(other or names) > 3 else "")
        raise SettingError(
            f"--out {out} holds files a run did not write ({shown}); give a new or empty "
            "folder, or the directory of the run to continue"
        )


def _is_partial(name: str) -> bool:
    """A temporary file of an interrupted write of a run file (``precompute.files``)."""
    return any(name.startswith(f".{run_file}.") and name.endswith(".tmp") for run_file in RUN_FILES)


def resume(
    out: Path,
    config: TrainConfig,
    task: str,
    identity: dict,
    parts: Mapping[str, Any],
    device: torch.device,
    master: bool,
) -> dict | None:
    """Continue the run in ``out`` if it has a last.pt, else None (start it with ``start``).

    Refuses (SettingError) a run made with settings that change the result, naming each
    (``run_differences``); loads the checkpoint's states into ``parts`` (model, optimizer,
    scheduler, scaler: anything with ``load_state_dict``). On the master
    process, repairs the files a kill left behind (module doc). Returns the checkpoint.
    """
    last = out / "last.pt"
    if not last.exists():
        return None
    remedy = "restore it from a copy, or delete it and best.pt to train the run again"
    state = load_checkpoint(last, device, remedy)
    found = run_differences(state, config, task, identity)
    if found:
        raise SettingError(
            f"{out} holds a run with other settings ({'; '.join(found)}); use a new --out, "
            "or the run's settings to continue it"
        )
    for name, part in parts.items():
        part.load_state_dict(state[name])
    if master:
        _remove_partial_files(out)
        _repair_best(out, state)
        write_log(out / "log.csv", state["log"])
        config.save(out / "config.json")
    return state


def _repair_best(out: Path, state: dict) -> None:
    best, best_epoch = out / "best.pt", state["best_epoch"]
    if best_epoch is None:
        return
    held = None
    if best.exists():
        try:
            held = torch.load(best, map_location="cpu", weights_only=True, mmap=True)["epoch"]
        except TORCH_LOAD_ERRORS as err:
            problem = f"is damaged ({_damage(err, best)})"
        else:
            problem = f"holds epoch {held}"
    else:
        problem = "is missing"
    if held == best_epoch:
        return
    if best_epoch == state["epoch"] and not state.get("batch"):
        _copy(out / "last.pt", best)  # the kill came between last.pt and best.pt
        return
    raise SamaugError(
        f"{best} {problem}, but the run's best is epoch {best_epoch}, whose weights only "
        f"best.pt held; {RETRAIN}"
    )
