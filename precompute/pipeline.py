"""The precompute job: every image of a dataset -> masks -> priors -> its group in the store.

``process_image`` is the per-image work, a plain function (tested without Dask);
``attempt_image`` wraps it so that a failure comes back as a ``Failure`` record. ``run``
checks everything it can before it creates anything, sets the workers up
(``precompute/workers.py``: in this process when ``workers == 0``, else a Dask cluster), maps
``attempt_image`` over the images not yet complete, records failures without stopping, and
keeps the store's root index current. The driver alone writes root metadata; each task writes
only its own image group, so no two tasks ever write the same chunk.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from . import checks, store
from .datasets import get_reader, normalise_reader_options
from .devices import check_device
from .files import atomic_write_text
from .limits import max_pixels
from .maskers import check_checkpoint, make_settings, masker_kind, masker_provenance
from .priors import compute_priors
from .types import ImageRef, SamaugError, SettingError
from .workers import masker, masker_loads, open_workers, reader, worker_name


@dataclass(frozen=True)
class PriorsConfig:
    """Everything one precompute run needs; saved (minus paths and resources) in the store.

    Every value is checked when the config is made (SettingError naming the option), so a
    bad one is refused before anything is created: the masker's name and settings, the
    device's spelling, workers >= 0 (0 = no Dask), torch_threads >= 1, connect_timeout > 0
    (seconds to wait for ``scheduler`` and its first worker). Reader options equal to the
    reader's defaults are dropped (``--reader-option split=train`` is the default's store),
    the checkpoint of a masker that takes none is dropped, and list-valued settings become
    tuples.
    """

    dataset: str
    data_root: str
    store: str
    masker: str = "sam"
    checkpoint: str | None = None
    masker_settings: tuple[tuple[str, object], ...] = ()
    reader_options: tuple[tuple[str, object], ...] = ()
    device: str = "auto"  # auto: CUDA where torch sees a GPU, else the CPU
    workers: int | None = None  # None: 1 on CPU, one per GPU on CUDA; 0: no Dask
    scheduler: str | None = None
    torch_threads: int | None = None
    overwrite: bool = False
    connect_timeout: float = 30.0

    def __post_init__(self) -> None:
        masker_kind(self.masker)
        settings = tuple(sorted((k, _hashable(v)) for k, v in dict(self.masker_settings).items()))
        make_settings(self.masker, dict(settings))
        check_device(self.device)
        if self.workers is not None:
            checks.integer("--workers", self.workers, minimum=0)
        if self.torch_threads is not None:
            checks.integer("--threads", self.torch_threads, minimum=1)
        timeout = checks.number("--scheduler-timeout", self.connect_timeout, positive=True)
        if self.scheduler is not None and not self.scheduler.strip():
            raise SettingError("--scheduler is empty; give the scheduler's address or leave it out")
        options = normalise_reader_options(self.dataset, dict(self.reader_options))
        for name, value in {
            "masker_settings": settings,
            "checkpoint": check_checkpoint(self.masker, self.checkpoint),
            "reader_options": tuple(sorted((k, _hashable(v)) for k, v in options.items())),
            "connect_timeout": timeout,
        }.items():
            object.__setattr__(self, name, value)

    @property
    def settings(self) -> dict:
        return dict(self.masker_settings)

    @property
    def options(self) -> dict:
        return dict(self.reader_options)


def _hashable(value: object) -> object:
    # Settings key the per-worker masker cache; JSON lists from the command line become tuples.
    return tuple(_hashable(v) for v in value) if isinstance(value, list) else value


@dataclass
class ImageResult:
    image_id: str
    split: str
    mask_count: int
    seconds: dict[str, float]
    worker: str
    masker_loads: int
    warnings: list[str] = field(default_factory=list)  # from the reader, each naming its file


@dataclass
class Failure:
    """An image that could not be done.

    message: one line naming the file and the reason. user_error: the input is at fault (a
    SamaugError: fix the file); otherwise something else failed (memory, a GPU, a bug) and
    a rerun may succeed. traceback: the formatted traceback, for the log.
    """

    image_id: str
    message: str
    user_error: bool = True
    traceback: str = ""

    def __str__(self) -> str:
        return self.message


@dataclass
class RunSummary:
    total: int
    skipped: int
    replaced: str | None = None  # the store --overwrite replaced, described
    results: list[ImageResult] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    seconds: float = 0.0
    log: str | None = None  # the file the failures' tracebacks were written to

    @property
    def done(self) -> int:
        return len(self.results)

    def mean_masks(self) -> float:
        return sum(r.mask_count for r in self.results) / max(self.done, 1)

    def seconds_per_image(self) -> float:
        return sum(r.seconds["total"] for r in self.results) / max(self.done, 1)

    def warnings(self) -> list[tuple[str, str]]:
        """(image ID, warning) for every warning of the images done, in the order done."""
        return [(r.image_id, w) for r in self.results for w in r.warnings]


# --------------------------------------------------------------------------- per image


def process_image(ref: ImageRef, config: PriorsConfig) -> ImageResult:
    """Read one image, generate masks, derive priors, write its group (marker last).

    Raises InputError for an unreadable image or annotation; nothing is written then.
    """
    start = time.perf_counter()
    record = reader(config).load(ref)
    t_read = time.perf_counter()
    image_masker = masker(config)
    t_load = time.perf_counter()
    masks = image_masker.generate(record.image)
    t_mask = time.perf_counter()
    seg_prior, boundary_prior = compute_priors(masks.masks, masks.stability_score, masks.box)
    t_priors = time.perf_counter()
    seconds = {
        "read": t_read - start,
        "mask": t_mask - t_load,
        "priors": t_priors - t_mask,
        **getattr(image_masker, "last_timings", {}),
    }
    store.write_image(
        config.store,
        ref.image_id,
        ref.split,
        record.image,
        record.label,
        masks,
        seg_prior,
        boundary_prior,
        record.source,
        seconds,
    )
    seconds["write"] = time.perf_counter() - t_priors
    seconds["total"] = time.perf_counter() - start - (t_load - t_read)
    return ImageResult(
        image_id=ref.image_id,
        split=ref.split,
        mask_count=len(masks),
        seconds=seconds,
        worker=worker_name(),
        masker_loads=masker_loads(),
        warnings=list(record.warnings),
    )


def attempt_image(ref: ImageRef, config: PriorsConfig) -> ImageResult | Failure:
    """``process_image``, with any failure of this image returned as a Failure instead of
    raised: the task both paths (in-process and Dask) run, so that a failure is recorded the
    same way, the other images go on, and Dask never logs a failed task."""
    try:
        return process_image(ref, config)
    except Exception as err:  # recorded and reported in the run's summary, not lost
        return failure(ref, err)


def failure(ref: ImageRef, err: BaseException) -> Failure:
    """The Failure of ``ref`` for ``err``: a SamaugError's own message (it names the file),
    else the image's path, the error's type and its first line."""
    trace = "".join(traceback.format_exception(err))
    if isinstance(err, SamaugError):
        return Failure(ref.image_id, str(err), user_error=True, traceback=trace)
    lines = [line for line in str(err).splitlines() if line.strip()]
    detail = f"{type(err).__name__}: {lines[0]}" if lines else type(err).__name__
    return Failure(ref.image_id, f"{ref.image_path}: {detail}", user_error=False, traceback=trace)


# --------------------------------------------------------------------------- driver


def store_attrs(config: PriorsConfig, refs: list[ImageRef]) -> dict:
    splits: dict[str, int] = {}
    for ref in refs:
        splits[ref.split] = splits.get(ref.split, 0) + 1
    dataset = {
        "name": config.dataset,
        "reader_options": _recorded_options(config),
        "splits": dict(sorted(splits.items())),
    }
    provenance = masker_provenance(config.masker, config.checkpoint, config.settings)
    return store.store_root_attrs(dataset, provenance)


def _recorded_options(config: PriorsConfig) -> dict:
    """The reader options to sign the store with: the normalised ones (defaults left out),
    unless the store at ``config.store`` already records options that normalise to the same
    (a store made before normalisation, with a default spelt out): then its own spelling, so
    that it still resumes."""
    recorded = store.read_root_attrs(config.store).get("dataset", {})
    recorded = recorded.get("reader_options") if isinstance(recorded, dict) else None
    if isinstance(recorded, dict):
        if normalise_reader_options(config.dataset, recorded) == config.options:
            return recorded
    return config.options


def log_path(store_path: str | Path) -> Path:
    """Where a run writes its failures' tracebacks: ``<store>.log`` beside the store."""
    path = Path(store_path)
    return path.with_name(path.name + ".log")


def run(
    config: PriorsConfig,
    on_progress: Callable[[int, int, ImageResult | Failure], None] | None = None,
    index_interval: float = 5.0,
) -> RunSummary:
    """Precompute the priors of every image not yet complete in the store.

    Before anything is created, the dataset is listed, the masker's provenance read (the
    checkpoint is opened) and the workers set up (scheduler reached, device checked, masker
    loaded): a problem there is a SamaugError and no image is attempted. Then each image is
    done or recorded as a Failure; the others go on. Failures' tracebacks are written to
    ``log_path(config.store)`` (``summary.log``).

    on_progress(finished, to_do, result_or_failure) is called as each image finishes.
    """
    started = time.perf_counter()
    max_pixels()  # a bad SAMAUG_MAX_PIXELS is refused now, not once per image
    refs = get_reader(config.dataset, config.data_root, **config.options).refs()
    if not refs:
        raise SamaugError(f"{config.data_root}: the {config.dataset} reader found no images")
    with open_workers(config) as workers:
        workers.preflight()
        attrs = store_attrs(config, refs)
        if _has_work(config, refs):
            workers.start()
        prepared = store.prepare_store(
            config.store, attrs, config.overwrite, protect=[config.data_root]
        )
        done = prepared.complete
        by_id = {ref.image_id: ref for ref in refs}
        index = {
            i: (by_id[i].split if i in by_id else store.split_of(config.store, i)) for i in done
        }
        todo = [ref for ref in refs if ref.image_id not in done]
        summary = RunSummary(
            total=len(refs), skipped=len(refs) - len(todo), replaced=prepared.replaced
        )
        store.set_index(config.store, index)
        last_index = time.monotonic()

        def finished(outcome: ImageResult | Failure) -> None:
            nonlocal last_index
            if isinstance(outcome, ImageResult):
                summary.results.append(outcome)
                index[outcome.image_id] = outcome.split
                if time.monotonic() - last_index > index_interval:
                    store.set_index(config.store, index)
                    last_index = time.monotonic()
            else:
                summary.failures.append(outcome)
            if on_progress:
                on_progress(summary.done + len(summary.failures), len(todo), outcome)

        workers.map(attempt_image, todo, finished, lost=failure)
    store.set_index(config.store, index)
    store.consolidate(config.store)
    if summary.failures:
        summary.log = str(log_path(config.store))
        atomic_write_text(summary.log, _log_text(config, summary))
    summary.seconds = time.perf_counter() - started
    return summary


def _has_work(config: PriorsConfig, refs: list[ImageRef]) -> bool:
    """Whether any image may need doing: false only for a samaug store (not being
    overwritten) that already holds every image complete, so that resuming a finished run
    starts no cluster and loads no model."""
    if config.overwrite or not store.is_samaug_store(config.store):
        return True
    try:
        complete = store.complete_ids(config.store)
    except FileNotFoundError:  # no images/ folder yet
        return True
    return any(ref.image_id not in complete for ref in refs)


def _log_text(config: PriorsConfig, summary: RunSummary) -> str:
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    parts = [
        f"samaug priors {config.dataset} --data-root {config.data_root} --store {config.store}",
        f"{now}: {len(summary.failures)} image(s) failed",
    ]
    for item in summary.failures:
        parts += ["", f"== {item.image_id}: {item.message}", item.traceback.rstrip()]
    return "\n".join(parts) + "\n"
