"""``samaug predict``: segment new images with a trained model, end to end.

The model is a run directory, a bundle or a checkpoint file
(``train.results.loading.load_model``). The images are a folder (``images``: the files directly
in it, any size, any format the ``folder`` reader reads) or a store's images (``store``, its
``splits``, default all).

A model trained on priors needs them at test time too. For a folder, they are computed by
``precompute.pipeline.run`` (the Dask pipeline of ``samaug priors``: ``workers``,
``scheduler``, ``device``) with exactly the masker of the model's provenance
(``train.results.provenance.masker_for``: a SAM checkpoint of another sha256 is refused) into
``masker_store`` (kept, so a rerun reuses what is complete) or a temporary store (deleted
afterwards). A store given with ``store`` (a ``StoreAccess``: location, fsspec options,
cache) must hold priors of that masker (``train.results.provenance.check_priors_match``).
The raw strategy (a raw model's, or a joint model's when asked) needs no priors and no
masker.

The strategy defaults to the one the model's training mode serves by default
(``train.modes``); one it cannot serve is refused. Each image is predicted by the model's
``Predictor``; its files are written by ``train.results.saving.save_probs`` into ``out``
(``train.results.prediction_files`` layout), and ``predictions.json`` last.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from precompute import checks
from precompute.devices import check_device
from precompute.pipeline import PriorsConfig, RunSummary
from precompute.pipeline import run as run_priors
from precompute.readers import get_reader
from precompute.store import SamaugStore, StoreAccess, Target, access_of, open_store
from precompute.store.schema import sha256_of
from precompute.types import ImageRef, SamaugError, SettingError
from train.choices import STRATEGIES
from train.data.datasets import WholeImageDataset, image_float
from train.inference.predictor import Predictor, PredictSettings
from train.modes import get_mode
from train.results.loading import LoadedModel, load_model
from train.results.prediction_journal import Journal, open_journal
from train.results.provenance import MaskerChoice, check_priors_match, masker_for
from train.results.saving import FileSettings, made_by, save_probs
from train.results.splits import check_splits
from train.training.run_log import Progress

PRIORS_SPLIT = "predict"  # the split of a folder's images in the masker store


@dataclass(frozen=True)
class PredictConfig:
    """One ``samaug predict`` run; every value is checked on construction (SettingError).

    model: run directory, bundle or checkpoint file; model_checkpoint: which checkpoint of
      a run directory. out: the prediction folder. images (a folder) or store (with
      splits; a location or a ``StoreAccess``): what to predict, exactly one. strategy: None
      for the model's default. settings: the predictor's (overlap, tta, certainty).
    checkpoint: the SAM checkpoint on this machine (default: the recorded path).
    masker_store: where a folder's priors are kept (default: a temporary store).
    workers / scheduler / threads: the priors pipeline's (``PriorsConfig``); a remote
      scheduler needs a masker_store its workers can reach.
    """

    model: str
    out: str
    images: str | None = None
    store: StoreAccess | str | None = None
    splits: tuple[str, ...] = ()
    strategy: str | None = None
    model_checkpoint: str = "best.pt"
    checkpoint: str | None = None
    masker_store: str | None = None
    workers: int | None = None
    scheduler: str | None = None
    threads: int | None = None
    device: str = "auto"
    settings: PredictSettings = field(default_factory=PredictSettings)
    files: FileSettings = field(default_factory=FileSettings)

    def __post_init__(self) -> None:
        if (self.images is None) == (self.store is None):
            raise SettingError("give what to predict: --images DIR or --store STORE (one)")
        if self.splits and self.store is None:
            raise SettingError("--split picks splits of a --store; --images has none")
        if self.masker_store is not None and self.images is None:
            raise SettingError("--masker-store keeps the priors of --images; a --store has its own")
        if self.scheduler is not None and self.masker_store is None:
            raise SettingError(
                "--scheduler: give --masker-store on a file system the Dask workers share "
                "(they write the priors there)"
            )
        if self.strategy is not None:
            checks.choice("--strategy", self.strategy, STRATEGIES)
        check_device(self.device)
        if self.workers is not None:
            checks.integer("--workers", self.workers, minimum=0)
        if self.threads is not None:
            checks.integer("--threads", self.threads, minimum=1)
        object.__setattr__(self, "splits", tuple(self.splits))


@dataclass
class Prediction:
    """A prediction run ready to start: what ``prepare_prediction`` checked and loaded."""

    config: PredictConfig
    loaded: LoadedModel
    predictor: Predictor
    strategy: str
    out: Path
    masker: MaskerChoice | None  # None: no priors to compute (a store, or the raw strategy)
    ids: list[str]  # the images to predict, in order (a folder's: its files' IDs)
    info: dict  # predictions.json's made_by
    journal: Journal  # the output folder's, with the images an interrupted run finished
    # The store predicted from, opened once (a URL's root metadata is read once per run).
    store: SamaugStore | None = None
    # Images of the folder whose priors a kept masker store holds but whose file cannot be
    # read now: (image ID, reason); failures, not predicted from the store's old copy.
    unreadable: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class PredictSummary:
    """What a prediction run did: ``entries`` (predictions.json's, one per image written),
    ``failures`` ((image ID, one-line reason) of images not predicted), ``priors`` (the
    priors pipeline's summary, for a folder predicted with priors; None when it had none to
    make), ``index``, and ``kept``: how many of the entries an interrupted run had made."""

    entries: list[dict]
    failures: list[tuple[str, str]]
    index: Path
    priors: RunSummary | None = None
    kept: int = 0


def prepare_prediction(config: PredictConfig) -> Prediction:
    """Load the model and check everything against it before any image is read: the
    strategy, the images folder or the store (its splits, its priors), the masker (the SAM
    checkpoint's sha256), the output file names (two images writing one file are refused),
    and last the output folder (``open_journal``: an interrupted run of the same command is
    resumed, the files of another run are removed)."""
    loaded = load_model(config.model, config.model_checkpoint, config.device)
    predictor = Predictor.of_run(loaded.model, loaded.config, loaded.task, config.settings)
    strategy = get_mode(loaded.config.mode).strategy(config.strategy)
    priors = strategy != "raw"  # a raw input never reads them
    masker, ids, unreadable, store = None, [], [], None
    if config.images is not None:
        images = Path(config.images)
        if not images.is_dir():
            raise SettingError(f"--images {images}: no such folder of images")
        ids = [ref.image_id for ref in get_reader("folder", images).refs()]  # none: refused
        if priors:
            masker = masker_for(loaded.state, config.checkpoint)
            if config.masker_store is not None:
                unreadable = check_masker_store(config.masker_store, images)
    else:
        store = access_of(config.store).open()
        if priors:
            check_priors_match(loaded.state, store)
        check_splits(store, config.splits)
        ids = store.ids(list(config.splits) or None)
        if not ids:
            raise SettingError(f"{store.location}: no complete images to predict")
    config.files.check_names(ids)
    info = _made_by(config, loaded, strategy, store)
    model_file = loaded.path.stat()
    run = {"made_by": info, "model_file": [model_file.st_size, model_file.st_mtime_ns]}
    journal = open_journal(config.out, run, ids)
    out = Path(config.out)
    return Prediction(
        config, loaded, predictor, strategy, out, masker, ids, info, journal, store, unreadable
    )


def _made_by(
    config: PredictConfig, loaded: LoadedModel, strategy: str, store: SamaugStore | None
) -> dict:
    """predictions.json's ``made_by`` of this run: the model, strategy and every setting."""
    source = {"images": config.images} if store is None else {"store": store.location}
    settings = {
        **asdict(config.settings),
        "device": config.device,
        **asdict(config.files),
        "input": source if store is None else {**source, "splits": list(config.splits)},
        "masker_store": config.masker_store,
    }
    return made_by(config.model, loaded.path, loaded.state, loaded.task, strategy, settings)


@torch.no_grad()
def run_prediction(job: Prediction, progress: Progress | None = None) -> PredictSummary:
    """Predict every image an interrupted run did not finish: priors first where needed
    (``progress("priors", done, total)`` per image), then the model (``progress("predict",
    done, total)``). An image whose priors or pixels cannot be made is a failure; the others
    go on. ``predictions.json`` names the images kept and predicted, in order."""
    config, kept = job.config, job.journal.kept
    todo = [image_id for image_id in job.ids if image_id not in kept]
    failures: list[tuple[str, str]] = []
    priors_summary = None
    with tempfile.TemporaryDirectory(prefix="samaug-priors-") as scratch:
        if job.masker is not None:
            priors_config = _priors_config(config, job.masker, scratch)
            if todo:  # a kept masker store resumes by itself; a temporary one does what is left
                priors_summary = run_priors(
                    priors_config,
                    on_progress=None if progress is None else _priors_progress(progress),
                    ids=None if config.masker_store else todo,
                )
                failures += [(f.image_id, f.message) for f in priors_summary.failures]
            failures += [(i, reason) for i, reason in job.unreadable if i not in kept]
            failed = {image_id for image_id, _ in failures}
            ids = [image_id for image_id in todo if image_id not in failed]
            items = _store_items(StoreAccess(priors_config.store), ids)
        elif config.images is not None:  # the raw strategy: the pixels alone
            refs = [r for r in get_reader("folder", config.images).refs() if r.image_id in todo]
            items = _folder_items(config.images, refs, failures)
        else:
            items = _store_items(job.store, todo)
        made = {entry["image_id"]: entry for entry in _predict_items(job, items, progress)}
    entries = [{**kept, **made}[i] for i in job.ids if i in kept or i in made]
    index = job.journal.finish(job.info, entries)
    return PredictSummary(entries, failures, index, priors_summary, kept=len(kept))


def predict(config: PredictConfig, progress: Progress | None = None) -> PredictSummary:
    """``run_prediction(prepare_prediction(config))``."""
    return run_prediction(prepare_prediction(config), progress)


def _predict_items(
    job: Prediction, items: tuple[int, Iterator[dict]], progress: Progress | None
) -> list[dict]:
    total, iterator = items
    files = job.config.files
    entries = []
    for done, item in enumerate(iterator, start=1):
        chosen = job.predictor.strategies(item, (job.strategy,)).probs[job.strategy]
        job.journal.writing(item["image_id"], files.names(item["image_id"]))
        entries.append(save_probs(job.out, item, chosen, job.loaded.task, files))
        job.journal.done(entries[-1])
        if progress is not None:
            progress("predict", done, total)
    return entries


def check_masker_store(location: str, images: Path) -> list[tuple[str, str]]:
    """A kept masker store is reused only for the images it was made from: every image of
    the folder that is complete in it must have the pixels the store recorded (sha256),
    else SettingError naming the files (its priors belong to another image of that name).
    Returns (image ID, reason) of those whose file cannot be read now (failures)."""
    if not Target(location).exists():
        return []
    store = open_store(location)
    complete = set(store.ids())
    reader = get_reader("folder", images, split=PRIORS_SPLIT)
    others, unreadable = [], []
    for ref in reader.refs():
        if ref.image_id not in complete:
            continue
        try:
            pixels = reader.load(ref).image
        except SamaugError as err:
            unreadable.append((ref.image_id, str(err)))
            continue
        if sha256_of(pixels) != store.image_attrs(ref.image_id)["image_sha256"]:
            others.append(ref.image_path)
    if others:
        shown = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
        raise SettingError(
            f"--masker-store {location} holds priors of other images under the names of "
            f"{shown} (their pixels' sha256 differ): keep one masker store per folder of "
            "images, e.g. a new --masker-store path for this one"
        )
    return unreadable


def _priors_config(config: PredictConfig, masker: MaskerChoice, scratch: str) -> PriorsConfig:
    """The priors pipeline's config for the folder: the model's masker, every setting."""
    threads = config.threads
    if threads is None and not config.device.startswith("cuda"):
        threads = max(1, (os.cpu_count() or 1) // max(config.workers or 1, 1))
    return PriorsConfig(
        dataset="folder",
        data_root=str(config.images),
        store=config.masker_store or str(Path(scratch) / "priors.zarr"),
        masker=masker.kind,
        checkpoint=masker.checkpoint,
        masker_settings=tuple(sorted(masker.settings.items())),
        reader_options=(("split", PRIORS_SPLIT),),
        device=config.device,
        workers=config.workers,
        scheduler=config.scheduler,
        torch_threads=threads,
        command="samaug predict",
    )


def _priors_progress(progress: Progress):
    def on_progress(finished: int, total: int, outcome) -> None:
        progress("priors", finished, total)

    return on_progress


def _store_items(store: SamaugStore | StoreAccess, ids: list[str]) -> tuple[int, Iterator[dict]]:
    if not ids:
        return 0, iter(())
    dataset = WholeImageDataset(store, ids)
    return len(dataset), (dataset[i] for i in range(len(dataset)))


def _folder_items(
    images: str, refs: list[ImageRef], failures: list[tuple[str, str]]
) -> tuple[int, Iterator[dict]]:
    """Items of a folder's images without priors (zeros: a raw input never reads them)."""
    reader = get_reader("folder", images)

    def items() -> Iterator[dict]:
        for ref in refs:
            try:
                record = reader.load(ref)
            except SamaugError as err:
                failures.append((ref.image_id, str(err)))
                continue
            zeros = torch.zeros(1, *record.image.shape[:2])
            yield {
                "image": torch.from_numpy(image_float(record.image)),  # as a store's items
                "seg_prior": zeros,
                "boundary_prior": zeros,
                "image_id": ref.image_id,
            }

    return len(refs), items()


__all__ = [
    "PredictConfig",
    "PredictSummary",
    "Prediction",
    "predict",
    "prepare_prediction",
    "run_prediction",
]
