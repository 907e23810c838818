"""The journal of a prediction run in progress, so that an interrupted run resumes.

``predictions.json`` is written last (``train.results.prediction_files``); until then a run
keeps ``predictions.partial.jsonl`` in its folder, one JSON object a line:

- first ``{"layout": "samaug-predictions-journal", "version": 1, "run": RUN}``: RUN says
  what makes the predictions (the model, its file's size and time, the strategy, every
  setting, the input), so that only the same command resumes;
- ``{"writing": IMAGE_ID, "files": [names]}`` before an image's files are written (flushed to
  disk: every file in the folder is named by the journal before it exists);
- ``{"done": ENTRY}`` after they are, ENTRY being the image's ``predictions.json`` entry.

``open_journal`` makes a folder ready for a run, before any work: a folder holding a
journal of the same RUN keeps the images it records done (their files all present) and loses
the files of images it was writing; a journal of another RUN, or a finished run's index,
loses every file it names. A last line cut by a kill is ignored (its image is redone). Only
plain names inside the folder are ever removed, whatever the journal says.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from train.results.prediction_files import INDEX_NAME, prepare_folder, write_index

JOURNAL_NAME = "predictions.partial.jsonl"
JOURNAL_LAYOUT = "samaug-predictions-journal"
JOURNAL_VERSION = 1


@dataclass
class Journal:
    """A prediction folder being written: ``kept`` are the entries of images an
    interrupted run of the same command finished ({image ID: entry}); ``writing`` and
    ``done`` record each new image, ``finish`` writes the index and ends the journal."""

    folder: Path
    kept: dict[str, dict] = field(default_factory=dict)
    _file: IO | None = None

    def writing(self, image_id: str, names: list[str]) -> None:
        """Record, on disk, that ``image_id``'s files ``names`` are about to be written."""
        self._append({"writing": image_id, "files": names}, sync=True)

    def done(self, entry: dict) -> None:
        """Record that the files of ``entry`` (``write_prediction``'s) are written."""
        self._append({"done": entry}, sync=False)

    def finish(self, info: dict, entries: list[dict]) -> Path:
        """Write ``predictions.json`` (``write_index``), then remove the journal."""
        index = write_index(self.folder, info, entries)
        self.close()
        (self.folder / JOURNAL_NAME).unlink(missing_ok=True)
        return index

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _append(self, record: dict, sync: bool) -> None:
        assert self._file is not None, "the journal is closed"
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        if sync:
            os.fsync(self._file.fileno())


def open_journal(folder: str | Path, run: dict, image_ids: list[str]) -> Journal:
    """Make ``folder`` ready for the run ``run`` (a JSON-serialisable dict) of ``image_ids``
    and start its journal (rules in the module doc). A folder holding files samaug did not
    write is a SettingError (``prepare_folder``), before anything is removed."""
    folder = Path(folder)
    records = _read(folder / JOURNAL_NAME)
    if records and records[0].get("layout") == JOURNAL_LAYOUT:
        if (folder / INDEX_NAME).exists():
            prepare_folder(folder)  # a finished run's files: replaced as for any rerun
        same = records[0].get("run") == json.loads(json.dumps(run))
        kept = _kept(folder, records[1:], set(image_ids)) if same else {}
        _remove(folder, records[1:], keep=kept)
        (folder / JOURNAL_NAME).unlink()
    else:
        prepare_folder(folder)
        kept = {}
    journal = Journal(folder, kept, open(folder / JOURNAL_NAME, "a"))  # noqa: SIM115
    journal._append({"layout": JOURNAL_LAYOUT, "version": JOURNAL_VERSION, "run": run}, True)
    for entry in kept.values():
        journal.done(entry)
    return journal


def _read(path: Path) -> list[dict]:
    """The journal's records, up to the first line that is not one (a kill's cut line)."""
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError):
        return []
    records = []
    for line in lines:
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):
            break
        if not isinstance(record, dict):
            break
        records.append(record)
    return records


def _names(record: dict) -> list[str]:
    """The plain file names a record gives (anything else is never touched)."""
    if "writing" in record:
        names = record.get("files")
    else:
        entry = record.get("done")
        names = list(entry["files"].values()) if _is_entry(entry) else []
    if not isinstance(names, list):
        return []
    return [
        name
        for name in names
        if isinstance(name, str)
        and name not in ("", ".", "..", INDEX_NAME, JOURNAL_NAME)
        and Path(name).name == name
    ]


def _is_entry(entry: object) -> bool:
    return (
        isinstance(entry, dict)
        and isinstance(entry.get("image_id"), str)
        and isinstance(entry.get("files"), dict)
        and all(isinstance(name, str) for name in entry["files"].values())
    )


def _kept(folder: Path, records: list[dict], image_ids: set[str]) -> dict[str, dict]:
    """{image ID: entry} of the images recorded done whose files are all there, for images
    of this run; an image written again after it was done is not kept."""
    kept: dict[str, dict] = {}
    for record in records:
        entry = record.get("done")
        if "writing" in record:
            kept.pop(record.get("writing"), None)
        elif _is_entry(entry) and entry["image_id"] in image_ids:
            names = _names(record)
            if len(names) == len(entry["files"]) and all((folder / n).is_file() for n in names):
                kept[entry["image_id"]] = entry
    return kept


def _remove(folder: Path, records: list[dict], keep: dict[str, dict]) -> None:
    """Remove every file the records name but the kept entries' files."""
    kept = {name for entry in keep.values() for name in entry["files"].values()}
    for record in records:
        for name in _names(record):
            if name not in kept and (folder / name).is_file():
                (folder / name).unlink()
