"""``samaug export-dataset --format nnunet``: a store as an nnU-Net v2 raw dataset, so a lab
can train nnU-Net on SAMAug input.

The folder follows nnU-Net v2's ``documentation/dataset_format.md`` for 2D natural images::

    OUT/Dataset<ID>_<NAME>/          ID three digits (default 500), NAME default <dataset>_<priors>
      dataset.json                   channel_names, labels, numTraining, file_ending ".png"
      imagesTr/<image ID>_0000.png   one 2D PNG per input channel: _0000, _0001, ...
      labelsTr/<image ID>.png        the task's classes, uint8
      imagesTs/<image ID>_0000.png   the images of the test splits (nnU-Net does not use them)
      splits_final.json              the fixed folds (``train.folds``): nnU-Net's own for these
                                     cases (its planner copies it to nnUNet_preprocessed)
      samaug.json                    what it was made from and with (written first)

Case identifiers are the store's image IDs. Every channel is its own grayscale PNG (nnU-Net
reads an RGB PNG as three channels but refuses to mix it with one-channel files), by
``priors``:

- ``none``: R, G, B (8-bit, as stored): the raw baseline.
- ``add``: the paper's augmented image, R, G + seg prior, B + boundary prior, each value
  of the trainer's float input (image / 255 plus the prior) stored x 1000 in a 16-bit PNG
  (``PRIOR_SCALE``: 1000 means 1.0; at most 65.535).
- ``channels``: R, G, B (8-bit, as stored), the seg prior x 1000 (16-bit) and the boundary
  prior (8-bit, 0 or 1): five channels.

A value above 65.535 (a seg prior summing more stability scores than that) is stored as
65535 and its image is named in the summary. nnU-Net z-scores each channel of each image, so
the scale changes nothing it computes; it is fixed so the files say what the priors were.

Labels are the task's training targets (``train.targets``): glands and nuclei 0 background,
1 interior, 2 boundary (nnU-Net is semantic; instances are split by their boundary class),
binary 0 background, 1 foreground. Training images must all be labelled (refused by name).

Everything is checked before anything is written. Each file is written whole (atomically)
and ``dataset.json`` last, so an interrupted export run again with the same settings goes on
with the images it had not written; other settings into the same folder are refused.
"""

from __future__ import annotations

import io
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from precompute import checks
from precompute.files import atomic_write_bytes, atomic_write_json
from precompute.store import SamaugStore, StoreAccess, access_of
from precompute.types import SamaugError, SettingError
from train.choices import EXPORT_PRIORS
from train.folds import DEFAULT_FOLDS, folds_of
from train.results.splits import check_splits
from train.targets import BOUNDARY_WIDTH
from train.tasks import get_task, task_for_dataset
from train.training.run_log import Progress

PRIOR_SCALE = 1000  # a stored 16-bit value v means v / 1000
_MAX16 = np.iinfo(np.uint16).max
CHANNEL_NAMES = {
    "none": ["R", "G", "B"],
    "add": ["R", "G+seg_prior", "B+boundary_prior"],
    "channels": ["R", "G", "B", "seg_prior", "boundary_prior"],
}
CLASS_NAMES = {3: ["background", "interior", "boundary"], 1: ["background", "foreground"]}
SETTINGS_FILE = "samaug.json"
_NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


@dataclass(frozen=True)
class NnunetSettings:
    """What goes into the dataset (module doc).

    priors: "add", "channels" or "none". task: a ``train.tasks`` name (default: the store's
    dataset's). train_splits: splits for imagesTr/labelsTr. test_splits: splits for
    imagesTs (None: every other split). dataset_id: nnU-Net's ID, 1..999. name: nnU-Net's
    dataset name (default ``<dataset>_<priors>``). folds: of splits_final.json.
    """

    priors: str = "add"
    task: str | None = None
    train_splits: tuple[str, ...] = ("train",)
    test_splits: tuple[str, ...] | None = None
    dataset_id: int = 500
    name: str | None = None
    folds: int = DEFAULT_FOLDS

    def __post_init__(self) -> None:
        checks.choice("--priors", self.priors, EXPORT_PRIORS)
        if self.task is not None:
            get_task(self.task)
        checks.integer("--dataset-id", self.dataset_id, minimum=1, maximum=999)
        checks.integer("--folds", self.folds, minimum=2)
        if not self.train_splits:
            raise SettingError("give the training split(s): --split NAME")
        if self.name is not None and (not self.name or not _NAME_CHARS.issuperset(self.name)):
            raise SettingError(
                f"--name {self.name!r}: nnU-Net dataset names are letters, digits, '_' and '-'"
            )


@dataclass
class NnunetJob:
    """An export checked and ready: the store, the folder, the resolved settings and the
    images of each part."""

    store: SamaugStore
    folder: Path
    settings: NnunetSettings  # task, name and test splits resolved
    train_ids: list[str]
    test_ids: list[str]
    record: dict  # samaug.json


@dataclass
class NnunetSummary:
    folder: Path
    written: int = 0
    skipped: int = 0  # complete from an earlier run
    clipped: list[str] = field(default_factory=list)  # images with a value above 65.535


def prepare_nnunet(
    store: StoreAccess | str, out: str | Path, settings: NnunetSettings
) -> NnunetJob:
    """Open the store, resolve and check the settings and the images, and check the folder
    ``out / Dataset<ID>_<NAME>`` (new, or an earlier export with the same settings);
    nothing is written."""
    opened = access_of(store).open()
    dataset = opened.attrs["dataset"]["name"]
    train_splits = list(settings.train_splits)
    check_splits(opened, train_splits)
    tests = settings.test_splits
    if tests is None:
        tests = tuple(s for s in opened.splits() if s not in train_splits)
    check_splits(opened, list(tests))
    both = sorted(set(train_splits) & set(tests))
    if both:
        raise SettingError(f"split {both[0]!r} is given both to train and to test")
    resolved = NnunetSettings(
        **{
            **asdict(settings),
            "task": settings.task or task_for_dataset(dataset),
            "name": settings.name or f"{dataset}_{settings.priors}".replace(".", "_"),
            "train_splits": tuple(train_splits),
            "test_splits": tuple(tests),
        }
    )
    train_ids, test_ids = opened.ids(train_splits), opened.ids(list(tests))
    unlabelled = [i for i in train_ids if not opened.has(i, "label")]
    if unlabelled:
        shown = ", ".join(unlabelled[:5]) + (" ..." if unlabelled[5:] else "")
        raise SamaugError(
            f"{opened.location}: {len(unlabelled)} training images have no label ({shown}); "
            "nnU-Net trains on labelled images only: give them as --test-split, or leave them "
            "out with `samaug store subset`"
        )
    folder = Path(out) / f"Dataset{resolved.dataset_id:03d}_{resolved.name}"
    record = {
        "format": "samaug-nnunet/1",
        "store": opened.location,
        "dataset": opened.attrs["dataset"],
        "masker": opened.attrs["masker"],
        "settings": asdict(resolved),
        "prior_scale": PRIOR_SCALE,
        "boundary_width": BOUNDARY_WIDTH,
    }
    _check_folder(folder, record)
    return NnunetJob(opened, folder, resolved, train_ids, test_ids, record)


def _check_folder(folder: Path, record: dict) -> None:
    """SettingError unless ``folder`` is new or an export with the same ``record``."""
    if folder.exists() and not folder.is_dir():
        raise SettingError(f"{folder} is a file; give another OUT or --dataset-id")
    if not folder.is_dir() or not any(folder.iterdir()):
        return
    try:
        before = json.loads((folder / SETTINGS_FILE).read_text())
    except (OSError, ValueError):
        raise SettingError(
            f"{folder} exists and was not written by samaug export-dataset (no readable "
            f"{SETTINGS_FILE}); give another OUT or --dataset-id"
        ) from None
    if json.loads(json.dumps(record)) != before:
        raise SettingError(
            f"{folder} was exported with other settings (its {SETTINGS_FILE}); give another "
            "--dataset-id or --name, or remove it"
        )


def export_nnunet(job: NnunetJob, progress: Progress | None = None) -> NnunetSummary:
    """Write the dataset (module doc); ``progress("export", done, images)`` after each
    image. An image whose files are all there from an earlier run is not written again."""
    folder, settings = job.folder, job.settings
    for part in ("imagesTr", "labelsTr", "imagesTs"):
        (folder / part).mkdir(parents=True, exist_ok=True)
    atomic_write_json(folder / SETTINGS_FILE, job.record)
    task = get_task(settings.task)
    summary = NnunetSummary(folder)
    cases = [(i, "imagesTr") for i in job.train_ids] + [(i, "imagesTs") for i in job.test_ids]
    channels = len(CHANNEL_NAMES[settings.priors])
    for done, (image_id, part) in enumerate(cases, start=1):
        files = [folder / part / f"{image_id}_{c:04d}.png" for c in range(channels)]
        if part == "imagesTr":
            files.append(folder / "labelsTr" / f"{image_id}.png")
        if all(f.is_file() for f in files):
            summary.skipped += 1
        else:
            maps, clipped = input_channels(job.store, image_id, settings.priors)
            if part == "imagesTr":
                label = job.store.read(image_id, "label")
                maps.append(task.target(label, BOUNDARY_WIDTH).astype(np.uint8))
            for path, values in zip(files, maps, strict=True):
                atomic_write_bytes(path, png_bytes(values))
            summary.written += 1
            if clipped:
                summary.clipped.append(image_id)
        if progress is not None:
            progress("export", done, len(cases))
    atomic_write_json(folder / "splits_final.json", folds_of(job.train_ids, settings.folds))
    atomic_write_json(folder / "dataset.json", dataset_json(job))
    return summary


def input_channels(store: SamaugStore, image_id: str, priors: str) -> tuple[list[np.ndarray], bool]:
    """The image's input channels for ``priors`` (module doc), each HxW uint8 or uint16, and
    whether a value was above 65.535 (stored as 65535)."""
    image = store.read(image_id, "image")
    rgb = [image[..., c] for c in range(3)]
    if priors == "none":
        return rgb, False
    seg = store.read(image_id, "seg_prior").astype(np.float64)
    boundary = store.read(image_id, "boundary_prior")
    if priors == "channels":
        scaled, clipped = _thousandths(seg)
        return [*rgb, scaled, boundary.astype(np.uint8)], clipped
    floats = [c.astype(np.float64) / 255 for c in rgb]
    augmented = [floats[0], floats[1] + seg, floats[2] + boundary]
    pairs = [_thousandths(c) for c in augmented]
    return [p[0] for p in pairs], any(p[1] for p in pairs)


def _thousandths(values: np.ndarray) -> tuple[np.ndarray, bool]:
    scaled = np.rint(values * PRIOR_SCALE)
    clipped = bool((scaled > _MAX16).any())
    return np.clip(scaled, 0, _MAX16).astype(np.uint16), clipped


def png_bytes(values: np.ndarray) -> bytes:
    """An HxW uint8 or uint16 array as a grayscale PNG (8- or 16-bit)."""
    buffer = io.BytesIO()
    Image.fromarray(values).save(buffer, format="PNG")
    return buffer.getvalue()


def dataset_json(job: NnunetJob) -> dict:
    """nnU-Net's dataset.json for the job (its required keys first)."""
    settings = job.settings
    classes = CLASS_NAMES[get_task(settings.task).num_outputs]
    return {
        "channel_names": {str(i): n for i, n in enumerate(CHANNEL_NAMES[settings.priors])},
        "labels": {name: value for value, name in enumerate(classes)},
        "numTraining": len(job.train_ids),
        "file_ending": ".png",
        "overwrite_image_reader_writer": "NaturalImage2DIO",
        "name": settings.name,
        "description": (
            f"SAMAug input ({settings.priors}) of the samaug store {job.store.location}, "
            f"{settings.task} task; see {SETTINGS_FILE}"
        ),
        "reference": "Zhang et al., Input Augmentation with SAM, arXiv 2304.11332",
        "licence": "the source dataset's",
        "release": "samaug export-dataset",
    }
