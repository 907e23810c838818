"""Training, top to bottom: build data, build model, loop, validate under no_grad, save.

Run by ``samaug train`` or, on several processes, by
``torchrun --nproc_per_node N -m train.loop --config run.json`` (DistributedDataParallel;
gloo on CPU, NCCL on CUDA). Only rank 0 writes the run directory.

Run directory (``train.checkpoint``: what each file holds, the order they are written in,
and how an interrupted run resumes): ``config.json``, ``log.csv`` (one row per epoch:
epoch, step, lr, train_loss, val_dice (empty where not validated), seconds), ``last.pt``
and ``best.pt`` (self-describing checkpoints) and ``metrics.json``. SAM is never imported
here: everything comes from the store.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from precompute.devices import resolve_device
from precompute.store import StoreCache, open_store
from precompute.types import SettingError

from . import checkpoint
from .augment import AugmentSettings
from .config import TrainConfig
from .data import PatchDataset, WholeImageDataset, make_loader
from .fusion import FusionSettings, in_channels
from .inference import foreground_probability, model_input, predict_image
from .models import create_model
from .tasks import Task, get_task, task_for_dataset


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
    """Training and validation image IDs (a seeded hold-out when there is no val split).

    A split the store lacks is a SettingError naming the store's splits.
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
    if config.val_split is not None:
        val = store.ids(split=config.val_split)
        unlabelled = [i for i in val if not store.has(i, "label")]
        if unlabelled:
            raise SettingError(
                f"--val-split {config.val_split!r}: {len(unlabelled)} of its images have no "
                f"label (e.g. {unlabelled[0]!r}); validate on an annotated split"
            )
        return ids, val
    n_val = int(round(len(ids) * config.val_fraction))
    if n_val == 0 or n_val == len(ids):
        return ids, []
    order = np.random.default_rng(config.seed).permutation(len(ids))
    val = sorted(ids[i] for i in order[:n_val])
    return [i for i in ids if i not in set(val)], val


def lr_factor(step: int, warmup_steps: int, total_steps: int) -> float:
    """Linear warm-up, then cosine decay to zero."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


@torch.no_grad()
def validate(
    model,
    config: TrainConfig,
    val_ids,
    task: Task,
    fusion,
    storage_options: dict | None = None,
    cache: StoreCache | None = None,
) -> float:
    """Mean foreground Dice (probability >= 0.5 against ``label > 0``) over whole validation
    images (sliding windows), in [0, 1]; an image with neither scores 1."""
    dataset = WholeImageDataset(config.store, val_ids, storage_options=storage_options, cache=cache)
    scores = []
    for index in range(len(dataset)):
        item = dataset[index]
        probs = predict_image(
            model, item, fusion, config.mode != "raw", task, window=config.patch_size
        )
        foreground = foreground_probability(probs)[0] >= 0.5
        truth = item["label"].to(foreground.device) > 0
        total = foreground.sum() + truth.sum()
        scores.append(1.0 if total == 0 else float(2 * (foreground & truth).sum() / total))
    return float(np.mean(scores))


def train(
    config: TrainConfig,
    log=print,
    stop_after: int | None = None,
    storage_options: dict | None = None,
    cache: str | Path | None = None,
) -> dict:
    """Train one model as ``config`` says; returns the run's summary (also metrics.json's
    "train"): epochs, steps, best_epoch (0-based, as log.csv), best_val_dice (None without
    validation images), validation (a sentence), train_images, val_images, world_size.

    A run directory with a ``last.pt`` of the same settings resumes after its last epoch.
    stop_after: end after this many epochs of this call (a time-limited job); the next
    call resumes.
    storage_options: fsspec options for a store URL (credentials; never saved).
    cache: a folder keeping what is read from a store URL on local disk, shared by the
    DataLoader workers: from the second epoch on nothing is read over the network.
    """
    procs = start_processes(config)
    torch.manual_seed(config.seed + procs.rank)
    device, out = procs.device, Path(config.out)
    if out.exists() and not out.is_dir():
        raise SettingError(f"--out {out} is a file; give a directory for the run")

    # ---- data
    store = open_store(config.store, storage_options, cache=cache)
    task = get_task(config.task or task_for_dataset(store.attrs["dataset"]["name"]))
    train_ids, val_ids = split_ids(store, config)
    identity = checkpoint.store_identity(store, train_ids, val_ids)
    dataset = PatchDataset(
        config.store,
        train_ids,
        patch_size=config.patch_size,
        task=task.name,
        augment=AugmentSettings(),
        samples_per_epoch=config.samples_per_epoch,
        seed=config.seed,
        storage_options=storage_options,
        cache=store.cache,
    )
    loader = make_loader(
        dataset,
        config.batch_size,
        config.workers,
        shuffle=True,
        rank=procs.rank,
        world_size=procs.world,
    )

    # ---- model, optimizer, schedule
    fusion = FusionSettings(config.fusion, config.seg_scale)
    model = create_model(
        config.model,
        in_channels=in_channels(fusion),
        num_classes=task.num_outputs,
        **config.model_kwargs,
    ).to(device)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    steps_per_epoch = len(loader)
    total_steps = steps_per_epoch * config.epochs
    warmup = min(config.warmup_epochs * steps_per_epoch, total_steps // 2)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, max(warmup, 1), total_steps)
    )
    use_amp = config.amp and device.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)

    # ---- resume, or start
    parts = {"model": model, "optimizer": optimizer, "scheduler": scheduler, "scaler": scaler}
    about = {  # what every checkpoint of the run says about it, besides its states
        "format": checkpoint.FORMAT,
        "config": config.to_dict(),
        "task": task.name,
        "in_channels": in_channels(fusion),
        "num_outputs": task.num_outputs,
        "identity": identity,
        "store": _provenance(store),
    }
    state = checkpoint.resume(out, config, task.name, identity, parts, device, procs.master)
    if state is None:
        start_epoch, step, best_epoch, best, history = 0, 0, None, None, []
        if procs.master:
            checkpoint.start(out, config)
    else:
        start_epoch, step = state["epoch"] + 1, state["step"]
        best_epoch, best, history = state["best_epoch"], state["best_val_dice"], state["log"]
    validation = validation_note(config, train_ids, val_ids)
    if procs.master:
        if state is not None:
            log(f"resuming {out} at epoch {start_epoch + 1}")
        if not val_ids:
            log(f"{validation}: best.pt is the last epoch")
    net = torch.nn.parallel.DistributedDataParallel(model) if procs.world > 1 else model

    # ---- loop
    modes = {"raw": (False,), "samaug": (True,), "joint": (False, True)}[config.mode]
    end_epoch = (
        config.epochs if stop_after is None else min(config.epochs, start_epoch + stop_after)
    )
    for epoch in range(start_epoch, end_epoch):
        started = time.perf_counter()
        dataset.set_epoch(epoch)
        net.train()
        losses = []
        for batch in loader:
            target = batch["target"].to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
                # joint: the paper's combined loss, the mean of the raw and augmented losses
                loss = sum(
                    task.loss(net(model_input(batch, fusion, aug, device)), target) for aug in modes
                ) / len(modes)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            step += 1
            losses.append(loss.item())
        train_loss = float(np.mean(losses))
        if procs.world > 1:
            mean = torch.tensor([train_loss], device=device)
            dist.all_reduce(mean)
            train_loss = float(mean.item()) / procs.world

        val_dice = None
        last_epoch = epoch + 1 == config.epochs
        if procs.master and val_ids and ((epoch + 1) % config.val_every == 0 or last_epoch):
            model.eval()
            val_dice = validate(
                model, config, val_ids, task, fusion, storage_options, cache=store.cache
            )
        if procs.master:
            # Without validation images every epoch is the best so far: the last one is kept.
            is_best = not val_ids or (val_dice is not None and (best is None or val_dice > best))
            if is_best:
                best_epoch, best = epoch, val_dice
            seconds = time.perf_counter() - started
            history = [
                *history,
                {
                    "epoch": epoch,
                    "step": step,
                    "lr": f"{scheduler.get_last_lr()[0]:.6g}",
                    "train_loss": f"{train_loss:.6f}",
                    "val_dice": None if val_dice is None else f"{val_dice:.6f}",
                    "seconds": f"{seconds:.2f}",
                },
            ]
            state = {
                **about,
                **{name: part.state_dict() for name, part in parts.items()},
                "epoch": epoch,
                "step": step,
                "best_epoch": best_epoch,
                "best_val_dice": best,
                "log": history,
                "torch_rng": torch.get_rng_state(),
            }
            checkpoint.save_epoch(out, state, is_best)
            val = "" if val_dice is None else f"  val dice {val_dice:.4f}"
            log(f"epoch {epoch + 1}/{config.epochs}  loss {train_loss:.4f}{val}  {seconds:.1f}s")
        if procs.world > 1:
            dist.barrier()

    summary = {
        "epochs": end_epoch,
        "steps": step,
        "best_epoch": best_epoch,
        "best_val_dice": best,
        "validation": validation,
        "train_images": len(train_ids),
        "val_images": len(val_ids),
        "world_size": procs.world,
    }
    if procs.master and end_epoch == config.epochs:
        checkpoint.update_metrics(out, {"train": summary})
    if procs.world > 1:
        dist.destroy_process_group()
    return summary


def validation_note(config: TrainConfig, train_ids: list[str], val_ids: list[str]) -> str:
    """What the run validates on: "N images", or "no validation images (why)"."""
    if val_ids:
        return f"{len(val_ids)} images"
    n = len(train_ids)
    return (
        f"no validation images (--val-fraction {config.val_fraction} of {n} training images "
        f"rounds to {round(n * config.val_fraction)} of them; give --val-split, or more images)"
    )


def _provenance(store) -> dict:
    """Where the store was and what made it (for the record; identity: ``store_identity``)."""
    attrs = store.attrs
    return {
        "location": store.location,
        "dataset": attrs["dataset"],
        "masker": attrs["masker"],
        "priors": attrs["priors"],
        "schema_version": attrs["schema_version"],
    }


def main(argv: list[str] | None = None) -> None:
    """Entry point for torchrun: ``torchrun --nproc_per_node N -m train.loop --config F``."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", required=True, help="a config.json (TrainConfig fields)")
    args = parser.parse_args(argv)
    train(TrainConfig.load(args.config))


if __name__ == "__main__":
    main()
