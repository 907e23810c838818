"""The precompute job: every image of a dataset -> masks -> priors -> its group in the store.

``process_image`` is the per-image work, a plain function (tested without Dask). ``run``
maps it over the dataset on a Dask cluster (or in this process when ``workers == 0``),
skips images already complete, records failures without stopping, and keeps the store's
root index current. The driver alone writes root metadata; each task writes only its own
image group, so no two tasks ever write the same chunk.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from . import store
from .datasets import get_reader
from .maskers import build_masker, masker_provenance
from .priors import compute_priors
from .types import ImageRef, SamaugError


@dataclass(frozen=True)
class PriorsConfig:
    """Everything one precompute run needs; saved (minus paths and resources) in the store."""

    dataset: str
    data_root: str
    store: str
    masker: str = "sam"
    checkpoint: str | None = None
    masker_settings: tuple[tuple[str, object], ...] = ()
    reader_options: tuple[tuple[str, str], ...] = ()
    device: str = "auto"  # auto: CUDA where torch sees a GPU, else the CPU
    workers: int | None = None  # None: 1 on CPU, one per GPU on CUDA; 0: no Dask
    scheduler: str | None = None
    torch_threads: int | None = None
    overwrite: bool = False

    @property
    def settings(self) -> dict:
        return dict(self.masker_settings)

    @property
    def options(self) -> dict:
        return dict(self.reader_options)


@dataclass
class ImageResult:
    image_id: str
    split: str
    mask_count: int
    seconds: dict[str, float]
    worker: str
    masker_loads: int


@dataclass
class Failure:
    """An image that could not be done; ``message`` names the file and the reason."""

    image_id: str
    message: str

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

    @property
    def done(self) -> int:
        return len(self.results)

    def mean_masks(self) -> float:
        return sum(r.mask_count for r in self.results) / max(self.done, 1)

    def seconds_per_image(self) -> float:
        return sum(r.seconds["total"] for r in self.results) / max(self.done, 1)


# --------------------------------------------------------------------------- per worker

# One reader and one masker per worker process, built on first use: SAM is loaded once per
# worker, not once per task. Keyed by the config so a worker can serve two runs.
_READERS: dict = {}
_MASKERS: dict = {}
_MASKER_LOADS = {"count": 0}


def _reader(config: PriorsConfig):
    key = (config.dataset, config.data_root, config.reader_options)
    if key not in _READERS:
        _READERS[key] = get_reader(config.dataset, config.data_root, **config.options)
    return _READERS[key]


def resolve_device(device: str) -> str:
    """The device "auto" stands for: "cuda" where torch sees a GPU (in this process), else
    "cpu". Any other device is returned as given."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _device_for_this_worker(device: str) -> str:
    """This worker's device: "auto" resolved here, and on a LocalCluster of one worker per
    GPU, worker k takes GPU k (plain "cuda" only)."""
    device = resolve_device(device)
    if device != "cuda":
        return device
    try:
        from distributed import get_worker

        name = get_worker().name
    except ValueError:  # not inside a Dask worker
        return device
    import torch

    if isinstance(name, int) and torch.cuda.device_count() > 1:
        return f"cuda:{name % torch.cuda.device_count()}"
    return device


def _masker(config: PriorsConfig):
    key = (config.masker, config.checkpoint, config.masker_settings, config.device)
    if key not in _MASKERS:
        if config.torch_threads:
            import torch

            torch.set_num_threads(config.torch_threads)
        _MASKERS[key] = build_masker(
            config.masker,
            config.checkpoint,
            config.settings,
            _device_for_this_worker(config.device),
        )
        _MASKER_LOADS["count"] += 1
    return _MASKERS[key]


def process_image(ref: ImageRef, config: PriorsConfig) -> ImageResult:
    """Read one image, generate masks, derive priors, write its group (marker last).

    Raises InputError for an unreadable image or annotation; nothing is written then.
    """
    start = time.perf_counter()
    record = _reader(config).load(ref)
    t_read = time.perf_counter()
    masker = _masker(config)
    t_load = time.perf_counter()
    masks = masker.generate(record.image)
    t_mask = time.perf_counter()
    seg_prior, boundary_prior = compute_priors(masks.masks, masks.stability_score, masks.box)
    t_priors = time.perf_counter()
    seconds = {
        "read": t_read - start,
        "mask": t_mask - t_load,
        "priors": t_priors - t_mask,
        **getattr(masker, "last_timings", {}),
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
        worker=f"{os.uname().nodename}:{os.getpid()}",
        masker_loads=_MASKER_LOADS["count"],
    )


# --------------------------------------------------------------------------- driver


def store_attrs(config: PriorsConfig, refs: list[ImageRef]) -> dict:
    splits: dict[str, int] = {}
    for ref in refs:
        splits[ref.split] = splits.get(ref.split, 0) + 1
    dataset = {
        "name": config.dataset,
        "reader_options": config.options,
        "splits": dict(sorted(splits.items())),
    }
    provenance = masker_provenance(config.masker, config.checkpoint, config.settings)
    return store.store_root_attrs(dataset, provenance)


def _client(config: PriorsConfig):
    from distributed import Client, LocalCluster

    if config.scheduler:
        return Client(config.scheduler), None
    n_workers = config.workers
    if n_workers is None and resolve_device(config.device).startswith("cuda"):
        import torch

        n_workers = torch.cuda.device_count()
    cluster = LocalCluster(
        n_workers=n_workers or 1,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        silence_logs=40,
    )
    return Client(cluster), cluster


def run(
    config: PriorsConfig,
    on_progress: Callable[[int, int, ImageResult | Failure], None] | None = None,
    index_interval: float = 5.0,
) -> RunSummary:
    """Precompute the priors of every image not yet complete in the store.

    on_progress(finished, to_do, result_or_failure) is called as each image finishes.
    """
    started = time.perf_counter()
    refs = get_reader(config.dataset, config.data_root, **config.options).refs()
    if not refs:
        raise SamaugError(f"{config.data_root}: the {config.dataset} reader found no images")
    prepared = store.prepare_store(
        config.store, store_attrs(config, refs), config.overwrite, protect=[config.data_root]
    )
    done = prepared.complete
    by_id = {ref.image_id: ref for ref in refs}
    index = {i: (by_id[i].split if i in by_id else store.split_of(config.store, i)) for i in done}
    todo = [ref for ref in refs if ref.image_id not in done]
    summary = RunSummary(total=len(refs), skipped=len(refs) - len(todo), replaced=prepared.replaced)
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

    if todo and config.workers == 0 and not config.scheduler:
        for ref in todo:
            finished(_run_here(ref, config))
    elif todo:
        _run_on_cluster(todo, config, finished)
    store.set_index(config.store, index)
    summary.seconds = time.perf_counter() - started
    return summary


def _failure(ref: ImageRef, err: BaseException) -> Failure:
    if isinstance(err, SamaugError):  # its message already names the file
        return Failure(ref.image_id, str(err))
    return Failure(ref.image_id, f"{ref.image_path}: {type(err).__name__}: {err}")


def _run_here(ref: ImageRef, config: PriorsConfig) -> ImageResult | Failure:
    try:
        return process_image(ref, config)
    except SamaugError as err:
        return _failure(ref, err)


def _run_on_cluster(todo: list[ImageRef], config: PriorsConfig, finished) -> None:
    from distributed import as_completed

    client, cluster = _client(config)
    try:
        futures = client.map(process_image, todo, config=config, pure=False, retries=0)
        ref_of = {f.key: ref for f, ref in zip(futures, todo, strict=True)}
        for future in as_completed(futures):
            ref = ref_of[future.key]
            if future.status == "finished":
                finished(future.result())
            else:
                finished(_failure(ref, future.exception()))
            future.release()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
