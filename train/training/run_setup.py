"""What a training run is set up with before its loop (``train.training.loop``): its place
among the torchrun processes, its training and validation images, and what the run records of
its store. Its training data is its protocol's (``Protocol.training_data``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

from precompute.devices import resolve_device
from precompute.store import SamaugStore, StoreAccess
from precompute.types import SettingError
from train.data.loader import make_loader
from train.folds import fold_ids
from train.protocols import Protocol, get_protocol
from train.tasks import Task, get_task
from train.training.config import TrainConfig


@dataclass(frozen=True)
class Processes:
    """This process's place among the torchrun processes (one process without torchrun)."""

    world: int
    rank: int
    device: torch.device

    @property
    def master(self) -> bool:
        return self.rank == 0


def start_processes(config: TrainConfig) -> Processes:
    """Read torchrun's RANK / WORLD_SIZE / LOCAL_RANK, resolve the device (the shared policy,
    ``precompute.devices``) and join the process group when there are several processes."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    device = resolve_device(config.device, int(os.environ.get("LOCAL_RANK", "0")))
    if world > 1:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Processes(world, rank, device)


def split_ids(store, config: TrainConfig) -> tuple[list[str], list[str]]:
    """Training and validation image IDs: fold ``config.fold`` of the training split
    (``train.folds``), else the val split, else a seeded hold-out of ``val_fraction``.

    A split the store lacks, and a training or validation image without a label, are a
    SettingError naming them, before training starts.
    """
    splits = store.splits()
    for name, split in (("--train-split", config.train_split), ("--val-split", config.val_split)):
        if split is not None and split not in splits:
            listed = ", ".join(f"{s} ({n} images)" for s, n in splits.items()) or "none"
            raise SettingError(
                f"{name} {split!r}: {config.store} has no complete images in that split; "
                f"its splits: {listed}"
            )
    ids = store.ids(split=config.train_split)
    _refuse_unlabelled(store, ids, f"the training split {config.train_split!r}", "train")
    if config.fold is not None:
        return fold_ids(ids, config.fold, config.folds)
    if config.val_split is not None:
        val = store.ids(split=config.val_split)
        _refuse_unlabelled(store, val, f"--val-split {config.val_split!r}", "validate")
        return ids, val
    n_val = int(round(len(ids) * config.val_fraction))
    if n_val == 0 or n_val == len(ids):
        return ids, []
    order = np.random.default_rng(config.seed).permutation(len(ids))
    val = sorted(ids[i] for i in order[:n_val])
    return [i for i in ids if i not in set(val)], val


def _refuse_unlabelled(store, ids: list[str], what: str, verb: str) -> None:
    """SettingError naming the images of ``ids`` that have no label (up to 5 of them)."""
    unlabelled = [i for i in ids if not store.has(i, "label")]
    if unlabelled:
        shown = ", ".join(unlabelled[:5]) + (" ..." if unlabelled[5:] else "")
        raise SettingError(
            f"{what}: {len(unlabelled)} of its {len(ids)} images have no label ({shown}); "
            f"{verb} on annotated images only (the reader warned when it found no "
            "annotation; `samaug store subset` makes a store without them)"
        )


def validation_note(config: TrainConfig, train_ids: list[str], val_ids: list[str]) -> str:
    """What the run validates on: "N images", or "no validation images (why)"."""
    if val_ids:
        fold = "" if config.fold is None else f" (fold {config.fold} of {config.folds})"
        return f"{len(val_ids)} images{fold}"
    if config.val_fraction == 0:
        return "no validation images (--val-fraction 0)"
    n = len(train_ids)
    return (
        f"no validation images (--val-fraction {config.val_fraction} of {n} training images "
        f"rounds to {round(n * config.val_fraction)} of them; give --val-split, or more images)"
    )


def provenance(store) -> dict:
    """Where the store was and what made it (for the record; identity: ``store_identity``)."""
    attrs = store.attrs
    return {
        "location": store.location,
        "dataset": attrs["dataset"],
        "masker": attrs["masker"],
        "priors": attrs["priors"],
        "schema_version": attrs["schema_version"],
    }


@dataclass(frozen=True)
class RunData:
    """A run's data: the store, the config resolved against its dataset, the protocol and
    task, the training and validation images, and the loader of the training data."""

    store: SamaugStore
    config: TrainConfig
    protocol: Protocol
    task: Task
    train_ids: list[str]
    val_ids: list[str]
    loader: DataLoader


def prepare_data(config: TrainConfig, access: StoreAccess, procs: Processes) -> RunData:
    """Open the store (``access`` must reach ``config.store``), resolve the config against
    its dataset, split its images and build the protocol's training data and its loader
    (this process's share of it)."""
    if access.location != config.store:
        raise ValueError(f"access is for {access.location}, the config's store {config.store}")
    store = access.open()
    config = config.resolve(store.attrs["dataset"]["name"])
    protocol, task = get_protocol(config.protocol), get_task(config.task)
    train_ids, val_ids = split_ids(store, config)
    loader = make_loader(
        protocol.training_data(config, task, store, train_ids),
        config.batch_size,
        config.workers,
        shuffle=True,
        rank=procs.rank,
        world_size=procs.world,
    )
    return RunData(store, config, protocol, task, train_ids, val_ids, loader)
