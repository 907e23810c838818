"""The DataLoader of training: safe with zarr, reproducible, resumable within an epoch.

zarr 3 runs an asyncio event loop in a background thread. A forked worker inherits that
thread's locks but not the thread, and can block forever on its first read; so
``make_loader`` starts workers with "spawn" (the datasets of ``train.data.datasets`` never pickle an
open store: each process opens its own), and the workers are persistent, so the spawn cost
(importing torch) is paid once per run, not once per epoch. Persistent workers keep their
own copy of the dataset, so the epoch travels with each index: ``make_loader``'s sampler
yields ``(epoch, index)`` pairs, read from ``dataset.epoch`` in the main process when an
epoch's iteration starts.
"""

from __future__ import annotations

import atexit
import math
import weakref
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from train.data.datasets import StoreDataset


class EpochSampler(Sampler):
    """Yields ``(epoch, index)`` pairs for a dataset with an ``epoch`` attribute.

    The epoch is read from the dataset (in the main process) when iteration starts, so
    ``dataset.set_epoch(e)`` reaches persistent workers. With ``shuffle`` the order is a
    permutation drawn from ``(seed, epoch)``. ``skip``: items of this process's share left
    out at the start of the next iteration, then reset to 0 (a run resumed mid-epoch goes on
    with the items it had not reached; ``__len__`` stays the whole epoch's).
    """

    def __init__(
        self, dataset: Dataset, shuffle: bool, seed: int = 0, rank: int = 0, world_size: int = 1
    ) -> None:
        self.dataset = dataset
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.skip = 0

    def __len__(self) -> int:
        return math.ceil(len(self.dataset) / self.world_size)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = int(getattr(self.dataset, "epoch", 0))
        order = np.arange(len(self.dataset))
        if self.shuffle:
            order = np.random.default_rng((self.seed, epoch)).permutation(order)
        # Distributed: the same permutation everywhere, rank r takes items r, r + W, ...;
        # padded by wrapping so every rank runs the same number of steps.
        order = np.resize(order, len(self) * self.world_size)[self.rank :: self.world_size]
        skip, self.skip = self.skip, 0
        return iter([(epoch, int(i)) for i in order[skip:]])


def _init_worker(worker_id: int) -> None:
    # Each worker is one of several processes: one intra-op thread avoids oversubscription.
    torch.set_num_threads(1)


class _Loader(DataLoader):
    """A DataLoader that stops its worker processes when a batch fails (e.g. the store's
    server went away), instead of leaving them, and their queues' semaphores, to the end of
    the process, where Python's resource tracker warns about them. Persistent workers are
    also stopped when the process exits on an error elsewhere (a validation read that
    fails while they wait for the next epoch)."""

    def __iter__(self):
        iterator = super().__iter__()
        if self.persistent_workers and getattr(self, "_hooked", None) is not iterator:
            self._hooked = iterator  # the same iterator serves every epoch: hooked once
            atexit.register(_stop_workers, weakref.ref(iterator))
        try:
            yield from iterator
        except BaseException:
            _stop_workers(lambda: iterator)
            self._iterator = None  # a persistent iterator is not reused after it failed
            raise


def _stop_workers(iterator_ref) -> None:
    shutdown = getattr(iterator_ref(), "_shutdown_workers", None)
    if shutdown is not None:
        shutdown()


def make_loader(
    dataset: StoreDataset,
    batch_size: int,
    workers: int = 0,
    shuffle: bool = True,
    drop_last: bool = False,
    pin_memory: bool = False,
    prefetch_factor: int = 2,
    context: str = "spawn",
    rank: int = 0,
    world_size: int = 1,
) -> DataLoader:
    """A DataLoader over a ``PatchDataset`` that is safe with zarr and reproducible.

    Workers (``workers > 0``) are started with ``context`` ("spawn" or "forkserver", never
    "fork": zarr's event-loop thread, see the module doc) and persist across epochs. Call
    ``dataset.set_epoch(e)`` before iterating epoch ``e``; batches depend only on the
    dataset's seed, the epoch and the batch size, not on ``workers``. Under
    DistributedDataParallel, ``rank`` / ``world_size`` give each process its own share.
    ``loader.sampler.skip = k * batch_size`` starts the next iteration at batch ``k``.
    The loader draws its workers' base seed from a generator of its own, never from torch's
    global one, so iterating it leaves the model's random stream (dropout) untouched: a run
    resumed mid-epoch draws what the uninterrupted run drew.
    """
    if context == "fork":
        raise ValueError("context 'fork' can deadlock on zarr's event-loop thread; use 'spawn'")
    parallel = workers > 0
    return _Loader(
        dataset,
        batch_size=batch_size,
        sampler=EpochSampler(dataset, shuffle, getattr(dataset, "seed", 0), rank, world_size),
        num_workers=workers,
        drop_last=drop_last,
        pin_memory=pin_memory,
        persistent_workers=parallel,
        multiprocessing_context=context if parallel else None,
        worker_init_fn=_init_worker if parallel else None,
        prefetch_factor=prefetch_factor if parallel else None,
        generator=torch.Generator().manual_seed(getattr(dataset, "seed", 0)),
    )
