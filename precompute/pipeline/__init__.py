"""The precompute job: every image of a dataset -> masks -> priors -> its group in the store.

``process_image`` is the per-image work, a plain function (tested without Dask);
``attempt_image`` wraps it so that a failure comes back as a ``Failure`` record, and
``attempt_images`` runs it over many images as a pipeline (``pipeline/flow.py``). ``run``
checks everything it can before it creates anything, sets the workers up
(``precompute/workers.py``: in this process when ``workers == 0``, else a Dask cluster), maps
``attempt_image`` over the images not yet complete, records failures without stopping, and
keeps the store's root index current. The driver alone writes root metadata; each task writes
only its own image group, so no two tasks ever write the same chunk.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from precompute import checks, store
from precompute.devices import check_device
from precompute.limits import max_pixels
from precompute.maskers import (
    MaskerRuntime,
    check_checkpoint,
    make_settings,
    masker_kind,
    masker_provenance,
)
from precompute.pipeline.flow import (
    Failure,
    ImageResult,
    attempt_chunk,
    attempt_image,
    attempt_images,
    failure,
    process_image,
)
from precompute.pipeline.workers import open_workers
from precompute.readers import get_reader, normalise_reader_options
from precompute.types import ImageRef, SamaugError, SettingError

__all__ = [
    "Failure",
    "ImageResult",
    "PriorsConfig",
    "RunSummary",
    "attempt_image",
    "attempt_images",
    "failure",
    "log_path",
    "process_image",
    "run",
    "store_attrs",
]


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
    # fsspec options of a --store URL (credentials): never saved, printed or compared.
    storage_options: dict | None = field(default=None, compare=False, repr=False)
    break_lock: bool = False  # replace the lock of a run that is not running any more
    command: str = "samaug priors"  # the command named in the store's lock while it runs
    # How the masker runs, not what it makes (``MaskerRuntime``): never recorded.
    compile: bool = False
    image_batch: int = 1

    def __post_init__(self) -> None:
        masker_kind(self.masker)
        MaskerRuntime(self.compile, self.image_batch)  # refuses bad values now
        settings = tuple(sorted((k, _hashable(v)) for k, v in dict(self.masker_settings).items()))
        make_settings(self.masker, dict(settings))
        check_device(self.device)
        if self.workers is not None:
            checks.integer("--workers", self.workers, minimum=0)
        if self.torch_threads is not None:
            checks.integer("--threads", self.torch_threads, minimum=1)
        timeout = checks.number("--scheduler-timeout", self.connect_timeout, positive=True)
        if self.storage_options is not None and not isinstance(self.storage_options, dict):
            raise SettingError(
                f"--storage-option must give a mapping, not {self.storage_options!r}"
            )
        if not isinstance(self.break_lock, bool):
            raise SettingError(f"--break-lock must be true or false, not {self.break_lock!r}")
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
    def runtime(self) -> MaskerRuntime:
        return MaskerRuntime(compile=self.compile, image_batch=self.image_batch)

    @property
    def options(self) -> dict:
        return dict(self.reader_options)


def _hashable(value: object) -> object:
    # Settings key the per-worker masker cache; JSON lists from the command line become tuples.
    return tuple(_hashable(v) for v in value) if isinstance(value, list) else value


@dataclass
class RunSummary:
    total: int
    skipped: int
    replaced: str | None = None  # the store --overwrite replaced, described
    results: list[ImageResult] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    seconds: float = 0.0
    log: str | None = None  # the file the failures' tracebacks were written to
    lock_replaced: str | None = None  # the lock this run replaced, and why it could

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


# --------------------------------------------------------------------------- driver


def store_attrs(
    config: PriorsConfig, refs: list[ImageRef], target: store.Target | None = None
) -> dict:
    splits: dict[str, int] = {}
    for ref in refs:
        splits[ref.split] = splits.get(ref.split, 0) + 1
    dataset = {
        "name": config.dataset,
        "reader_options": _recorded_options(config, target),
        "splits": dict(sorted(splits.items())),
    }
    provenance = masker_provenance(config.masker, config.checkpoint, config.settings)
    return store.store_root_attrs(dataset, provenance)


def _recorded_options(config: PriorsConfig, target: store.Target | None = None) -> dict:
    """The reader options to sign the store with: the normalised ones (defaults left out),
    unless the store at ``config.store`` already records options that normalise to the same
    (a store made before normalisation, with a default spelt out): then its own spelling, so
    that it still resumes."""
    target = target or store.Target(config.store, config.storage_options)
    recorded = store.read_root_attrs(target).get("dataset", {})
    recorded = recorded.get("reader_options") if isinstance(recorded, dict) else None
    if isinstance(recorded, dict):
        if normalise_reader_options(config.dataset, recorded) == config.options:
            return recorded
    return config.options


def log_path(store_path: str | Path) -> Path:
    """Where a run writes its failures' tracebacks: ``<store>.log`` beside the store (a
    local store; a URL's log is ``<store URL>.log``, beside it in the bucket)."""
    path = Path(store_path)
    return path.with_name(path.name + ".log")


def run(
    config: PriorsConfig,
    on_progress: Callable[[int, int, ImageResult | Failure], None] | None = None,
    index_interval: float = 5.0,
    ids: Collection[str] | None = None,
) -> RunSummary:
    """Precompute the priors of every image not yet complete in the store (of the images
    ``ids`` only, when given: what ``samaug predict`` resuming has left to do).

    Before anything is created, the dataset is listed, the masker's provenance read (the
    checkpoint is opened) and the workers set up (scheduler reached, device checked, masker
    loaded): a problem there is a SamaugError and no image is attempted. The store may be a
    local folder or a URL (``s3://bucket/prefix/x.zarr``, with ``config.storage_options``):
    the run takes its lock first (``store.lock``: one writer at a time; a missing bucket or
    refused credentials are reported here, before any work). Then each image is done or
    recorded as a Failure; the others go on. Failures' tracebacks are written to
    ``<store>.log`` beside the store (``summary.log``).

    on_progress(finished, to_do, result_or_failure) is called as each image finishes.
    """
    started = time.perf_counter()
    max_pixels()  # a bad SAMAUG_MAX_PIXELS is refused now, not once per image
    refs = get_reader(config.dataset, config.data_root, **config.options).refs()
    if ids is not None:
        wanted = set(ids)
        refs = [ref for ref in refs if ref.image_id in wanted]
    if not refs:
        raise SamaugError(f"{config.data_root}: the {config.dataset} reader found no images")
    target = store.Target(config.store, config.storage_options)
    with open_workers(config) as workers:
        workers.preflight()
        with store.lock.holding(target, config.command, config.break_lock) as lock:
            summary = _run_locked(config, refs, target, workers, lock, on_progress, index_interval)
    summary.lock_replaced = lock.replaced
    summary.seconds = time.perf_counter() - started
    return summary


def _run_locked(config, refs, target, workers, lock, on_progress, index_interval) -> RunSummary:
    """``run``'s work once the lock is held: create or resume the store, map the images,
    keep the index (and the lock) fresh, end consolidated."""
    attrs = store_attrs(config, refs, target)
    if _has_work(config, refs, target):
        workers.start()
    prepared = store.prepare_store(target, attrs, config.overwrite, protect=[config.data_root])
    done = prepared.complete
    by_id = {ref.image_id: ref for ref in refs}
    index = {i: (by_id[i].split if i in by_id else store.split_of(target, i)) for i in done}
    todo = [ref for ref in refs if ref.image_id not in done]
    summary = RunSummary(total=len(refs), skipped=len(refs) - len(todo), replaced=prepared.replaced)
    with target.reaching("writing the index"):
        store.set_index(target, index)
    last_index = time.monotonic()

    def finished(outcome: ImageResult | Failure) -> None:
        nonlocal last_index
        if isinstance(outcome, ImageResult):
            summary.results.append(outcome)
            index[outcome.image_id] = outcome.split
            if time.monotonic() - last_index > index_interval:
                with target.reaching("writing the index"):
                    store.set_index(target, index)
                    lock.refresh()
                last_index = time.monotonic()
        else:
            summary.failures.append(outcome)
        if on_progress:
            on_progress(summary.done + len(summary.failures), len(todo), outcome)

    workers.map(attempt_images, attempt_chunk, todo, finished, lost=failure)
    with target.reaching("writing the index"):
        store.set_index(target, index)
        store.consolidate(target.store)
        if summary.failures:
            summary.log = target.write_beside(".log", _log_text(config, summary))
    return summary


def _has_work(config: PriorsConfig, refs: list[ImageRef], target: store.Target) -> bool:
    """Whether any image may need doing: false only for a samaug store (not being
    overwritten) that already holds every image complete, so that resuming a finished run
    starts no cluster and loads no model."""
    with target.reaching("reading the store"):
        if config.overwrite or not store.is_samaug_store(target):
            return True
        try:
            complete = store.complete_ids(target)
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
