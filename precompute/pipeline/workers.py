"""Where the per-image work runs: in this process (``workers == 0``) or on a Dask cluster.

``open_workers(config)`` gives a context manager that sets the workers up before any image
is attempted, and reports a problem of the setup once, as a SamaugError: a scheduler that
does not answer, a device torch cannot see, a checkpoint that does not load. On a cluster
the scheduler is reached first (within ``config.connect_timeout`` seconds) and then every
worker checks its device and loads the masker, which it keeps for all its images. Only then
does the caller create the store. ``map`` runs a task function over image refs and hands
each outcome to a callback as it finishes; the task function never raises (see
``pipeline.attempt_images``), so Dask never logs a failed task.

Per-worker state (one dataset reader and one masker, built on first use and kept) lives
here too: SAM is loaded once per worker, not once per task.
"""

from __future__ import annotations

import contextlib
import os
import signal
import traceback
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from precompute.devices import resolve_device
from precompute.maskers import build_masker, masker_kind
from precompute.readers import get_reader
from precompute.types import ImageRef, SamaugError

if TYPE_CHECKING:
    from precompute.pipeline import PriorsConfig

# Keyed by the config so that a worker can serve two runs.
_READERS: dict = {}
_MASKERS: dict = {}
_MASKER_LOADS = {"count": 0}
_MADE_ON: dict = {}


def worker_name() -> str:
    return f"{os.uname().nodename}:{os.getpid()}"


def masker_loads() -> int:
    """How many maskers this process has built (1 per worker and run when all is well)."""
    return _MASKER_LOADS["count"]


def reader(config: PriorsConfig):
    """This process's reader of the config's dataset."""
    key = (config.dataset, config.data_root, config.reader_options)
    if key not in _READERS:
        _READERS[key] = get_reader(config.dataset, config.data_root, **config.options)
    return _READERS[key]


def _local_rank() -> int:
    """k for worker k of a LocalCluster (named 0, 1, ...), else 0 (no Dask, or a remote
    worker, which is pinned to its GPU by CUDA_VISIBLE_DEVICES, as dask-cuda does)."""
    try:
        from distributed import get_worker

        name = get_worker().name
    except (ImportError, ValueError):  # not inside a Dask worker
        return 0
    return name if isinstance(name, int) else 0


def worker_device(device: str):
    """The torch.device this process uses for ``--device``: ``devices.resolve_device`` (a
    SettingError where torch sees no such GPU), with worker k of a LocalCluster on GPU k
    (mod the GPU count) for "auto" and plain "cuda"."""
    import torch

    rank = _local_rank()
    resolved = resolve_device(device, local_rank=rank)
    if device == "cuda" and torch.cuda.device_count() > 1:
        resolved = torch.device("cuda", rank % torch.cuda.device_count())
    return resolved


def cpu_share(processes: int) -> int:
    """Cores per process when ``processes`` share this machine's cores (at least 1)."""
    return max(1, (os.cpu_count() or 1) // max(processes, 1))


def worker_environment(threads: int) -> dict[str, str]:
    """The environment a LocalCluster worker process starts with: ``threads`` OpenMP, MKL
    and OpenBLAS threads (what torch and numpy size their pools by).

    It replaces Dask's own (``distributed.nanny.pre-spawn-environ``), which also sets
    ``MALLOC_TRIM_THRESHOLD_=65536``. That setting switches off glibc's adaptive mmap
    threshold: every allocation above 128 KiB is then a fresh mmap, page-faulted in and
    unmapped when freed. The masker's upscaled logits (megabytes per sub-batch, thousands
    per image) then cost as much system time as computing them, and two workers on two
    cores ran slower than one. Left to glibc, freed blocks are reused.
    """
    count = str(threads)
    return {"OMP_NUM_THREADS": count, "MKL_NUM_THREADS": count, "OPENBLAS_NUM_THREADS": count}


def _masker_key(config: PriorsConfig) -> tuple:
    return (config.masker, config.checkpoint, config.masker_settings, config.device, config.runtime)


def masker(config: PriorsConfig):
    """This process's masker for the config, built (and its model loaded) on first use."""
    key = _masker_key(config)
    if key not in _MASKERS:
        kind = masker_kind(config.masker)
        device = None
        if kind.uses_device:
            import torch

            if config.torch_threads:
                torch.set_num_threads(config.torch_threads)
            device = worker_device(config.device)
        _MASKERS[key] = build_masker(
            config.masker, config.checkpoint, config.settings, device, config.runtime
        )
        _MADE_ON[key] = _how_it_runs(device)
        _MASKER_LOADS["count"] += 1
    return _MASKERS[key]


def _how_it_runs(device) -> dict:
    """What besides the checkpoint and settings can change a model's last bits: the torch
    version, the device and, on a CPU, torch's thread count. {} without a model."""
    if device is None:
        return {}
    import torch

    facts = {"torch": torch.__version__, "device": str(device)}
    if device.type == "cuda":
        facts["device_name"] = torch.cuda.get_device_name(device)
    else:
        facts["torch_threads"] = torch.get_num_threads()
    return facts


def made_on(config: PriorsConfig) -> dict:
    """How this process runs the config's masker (``_how_it_runs``), once it is built: each
    image's ``made_on`` attribute. CPU masks can differ in boundary pixels between thread
    counts (a ViT's matrix products round differently); this says which count made them."""
    return dict(_MADE_ON.get(_masker_key(config), {}))


def setup(config: PriorsConfig) -> None:
    """Make this process ready for the config's images: its device checked, its masker
    loaded. Raises SamaugError for a problem of the setup."""
    reader(config)
    masker(config)


def _setup_on_worker(config: PriorsConfig) -> tuple[str, bool] | None:
    """``setup`` on a Dask worker: None, or (one-line problem, whether it is a SamaugError).
    Returned rather than raised, so Dask does not log it as a failure."""
    try:
        setup(config)
    except SamaugError as err:
        return str(err), True
    except Exception as err:  # the driver reports it as this worker's setup failure
        detail = traceback.format_exception_only(err)[-1].strip()
        return detail, False
    return None


class Workers:
    """Where a run's images are done. ``start()`` sets the workers up (SamaugError for a
    problem of the setup); ``map`` starts them if it has images to do."""

    def __init__(self, config: PriorsConfig) -> None:
        self.config = config

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def preflight(self) -> None:
        """Checks that need no worker, made before anything is loaded: on this machine
        (in-process or a LocalCluster), the device, for maskers that use one."""
        if not self.config.scheduler and masker_kind(self.config.masker).uses_device:
            resolve_device(self.config.device)

    def start(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        return None

    def map(
        self,
        task: Callable[[list[ImageRef], PriorsConfig], Iterable[Any]],
        chunk_task: Callable[[list[ImageRef], PriorsConfig], list[Any]],
        refs: Iterable[ImageRef],
        finished: Callable[[Any], None],
        lost: Callable[[ImageRef, BaseException], Any],
    ) -> None:
        """``finished(outcome)`` for every outcome of ``task(refs, config)`` (one per ref,
        as each finishes; in process, one stream over every ref) or, on a cluster, of
        ``chunk_task`` (the same as a list) over chunks of refs. Tasks return outcomes
        rather than raising; a chunk that never returns (its worker died) gives
        ``finished(lost(ref, error))`` for each of its refs."""
        raise NotImplementedError


class InProcess(Workers):
    """Every image in this process, one after the other."""

    def __init__(self, config: PriorsConfig) -> None:
        super().__init__(config)
        self.ready = False

    def start(self) -> None:
        if not self.ready:
            setup(self.config)
            self.ready = True

    def map(self, task, chunk_task, refs, finished, lost) -> None:
        refs = list(refs)
        if refs:
            self.start()
            for outcome in task(refs, self.config):
                finished(outcome)


class OnCluster(Workers):
    """Images on a Dask cluster: the one at ``config.scheduler``, or a LocalCluster of
    ``config.workers`` single-threaded processes (default: one per GPU torch sees where the
    device is CUDA, else one)."""

    def __init__(self, config: PriorsConfig) -> None:
        super().__init__(config)
        self.client = None
        self.cluster = None

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.cluster is not None:
            self.cluster.close()
            self.cluster = None

    def start(self) -> None:
        if self.client is None:
            self._connect()
            self._set_up_workers()

    def _connect(self) -> None:
        from distributed import Client, LocalCluster

        config = self.config
        if config.scheduler:
            try:
                self.client = Client(config.scheduler, timeout=config.connect_timeout)
                self.client.wait_for_workers(1, timeout=config.connect_timeout)
            except (OSError, TimeoutError, ValueError) as err:
                self.close()
                raise SamaugError(
                    f"--scheduler {config.scheduler}: no Dask scheduler with workers answered "
                    f"within {config.connect_timeout:g} s ({err}); start the scheduler and its "
                    "workers, check the address, or leave --scheduler out to run on this "
                    "machine"
                ) from None
            return
        n_workers = config.workers
        if n_workers is None and masker_kind(config.masker).uses_device:
            if resolve_device(config.device).type == "cuda":
                import torch

                n_workers = torch.cuda.device_count()  # one worker per GPU
        n_workers = n_workers or 1
        import dask

        environment = worker_environment(config.torch_threads or cpu_share(n_workers))
        with (
            dask.config.set({"distributed.nanny.pre-spawn-environ": environment}),
            _sigint_deferred(),
        ):
            self.cluster = LocalCluster(
                n_workers=n_workers,
                threads_per_worker=1,
                processes=True,
                # Its HTTP server (health, metrics) on a free port: another cluster on 8787,
                # the default, would make Dask warn that the port is in use.
                dashboard_address=":0",
                silence_logs=40,
            )
            self.client = Client(self.cluster)

    def _set_up_workers(self) -> None:
        """``setup`` on every worker; one SamaugError for all their problems."""
        answers = self.client.run(_setup_on_worker, self.config)
        problems = {address: found for address, found in answers.items() if found is not None}
        if not problems:
            return
        messages = sorted({message for message, _ in problems.values()})
        others = f" (and {len(messages) - 1} other problem(s))" if len(messages) > 1 else ""
        user_error = all(is_user for _, is_user in problems.values())
        hint = "" if user_error else " (run with --workers 0 --verbose for the traceback)"
        raise SamaugError(
            f"{len(problems)} of {len(answers)} Dask worker(s) could not be set up (e.g. "
            f"{min(problems)}): {messages[0]}{others}{hint}"
        )

    def map(self, task, chunk_task, refs, finished, lost) -> None:
        from distributed import as_completed

        refs = list(refs)
        if not refs:
            return
        self.start()
        chunks = chunked(refs, len(self.client.nthreads()), self.config.image_batch)
        futures = self.client.map(chunk_task, chunks, config=self.config, pure=False, retries=0)
        chunk_of = {f.key: chunk for f, chunk in zip(futures, chunks, strict=True)}
        for future in as_completed(futures):
            if future.status == "finished":
                for outcome in future.result():
                    finished(outcome)
            else:  # the worker died (KilledWorker) or the task was cancelled
                error = future.exception() if future.status == "error" else None
                for ref in chunk_of[future.key]:
                    finished(lost(ref, error or RuntimeError(future.status)))
            future.release()


@contextlib.contextmanager
def _sigint_deferred() -> Iterator[None]:
    """SIGINT blocked in this thread while a local cluster starts. The threads it starts
    inherit the block, and so do the worker processes they start: a terminal's Ctrl-C
    reaches every process of its group, and a worker stopped by it (mid-import, mid-task)
    prints its own traceback; the driver closes its workers itself. A Ctrl-C during the
    start is delivered here once the cluster is up (and is closed by ``close``)."""
    if not hasattr(signal, "pthread_sigmask"):  # not POSIX
        yield
        return
    from multiprocessing import resource_tracker

    # Started now: starting it later unblocks SIGINT in the thread that does (CPython's
    # resource_tracker), which is the one that starts the worker processes.
    resource_tracker.ensure_running()
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def chunked(refs: list[ImageRef], workers: int, image_batch: int = 1) -> list[list[ImageRef]]:
    """refs in consecutive chunks, one task each: about four per worker so that the
    workers finish together, at most 16 images (a lost worker loses little), and at least
    ``image_batch`` (the encoder's batches fill) and 2 (a chunk's pipeline overlaps)."""
    size = len(refs) // (4 * max(workers, 1))
    size = max(2, image_batch, min(16, size))
    return [refs[first : first + size] for first in range(0, len(refs), size)]


def open_workers(config: PriorsConfig) -> Workers:
    """InProcess for ``workers == 0`` without a scheduler, else OnCluster. Nothing starts
    until ``start()``, or a ``map`` with images to do."""
    if config.workers == 0 and not config.scheduler:
        return InProcess(config)
    return OnCluster(config)
