"""Training, top to bottom: build data, build model, loop, validate under no_grad, save.

Run by ``samaug train`` or, on several processes, by
``torchrun --nproc_per_node N -m train.loop --config run.json`` (DistributedDataParallel;
gloo on CPU, NCCL on CUDA). Only rank 0 writes the run directory.

Run directory: ``config.json``, ``log.csv`` (one row per epoch: epoch, step, lr,
train_loss, val_dice, seconds), ``last.pt`` and ``best.pt`` (self-describing checkpoints:
model, optimizer, scheduler, step, full config, store provenance) and ``metrics.json``.
SAM is never imported here: everything comes from the store.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from precompute.store import open_store
from precompute.types import SettingError

from .augment import AugmentSettings
from .config import TrainConfig
from .data import PatchDataset, WholeImageDataset, make_loader
from .fusion import FusionSettings, fuse, in_channels, raw
from .inference import sliding_window_probs
from .losses import LOSSES, model_outputs
from .models import create_model
from .targets import task_for_dataset

LOG_FIELDS = ("epoch", "step", "lr", "train_loss", "val_dice", "seconds")


def split_ids(store, config: TrainConfig) -> tuple[list[str], list[str]]:
    """Training and validation image IDs (a seeded hold-out when there is no val split)."""
    ids = store.ids(split=config.train_split)
    if not ids:
        raise SettingError(
            f"{config.store} has no images in split {config.train_split!r}; "
            f"splits: {', '.join(store.splits())}"
        )
    if config.val_split is not None:
        return ids, store.ids(split=config.val_split)
    n_val = int(round(len(ids) * config.val_fraction))
    if n_val == 0 or n_val == len(ids):
        return ids, []
    order = np.random.default_rng(config.seed).permutation(len(ids))
    val = sorted(ids[i] for i in order[:n_val])
    return [i for i in ids if i not in set(val)], val


def model_input(batch: dict, fusion: FusionSettings, augmented: bool, device) -> torch.Tensor:
    image = batch["image"].to(device, non_blocking=True)
    if not augmented:
        return raw(image, fusion)
    seg = batch["seg_prior"].to(device, non_blocking=True)
    boundary = batch["boundary_prior"].to(device, non_blocking=True)
    return fuse(image, seg, boundary, fusion)


def resolve_device(device: str, local_rank: int = 0) -> torch.device:
    """The device "auto" stands for: this process's GPU (``cuda:local_rank``) where torch
    sees one, else the CPU. Any other device as given."""
    if device != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def lr_factor(step: int, warmup_steps: int, total_steps: int) -> float:
    """Linear warm-up, then cosine decay to zero."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


@torch.no_grad()
def validate(model, config: TrainConfig, val_ids, task, fusion, device) -> float:
    """Mean foreground Dice over whole validation images (sliding windows)."""
    dataset = WholeImageDataset(config.store, val_ids)
    augmented = config.mode != "raw"
    outputs = model_outputs(task)
    scores = []
    for index in range(len(dataset)):
        item = dataset[index]
        batch = {k: v.unsqueeze(0) for k, v in item.items() if isinstance(v, torch.Tensor)}
        probs = sliding_window_probs(
            model,
            model_input(batch, fusion, augmented, device),
            outputs,
            window=config.patch_size,
            activation="sigmoid" if outputs == 1 else "softmax",
        )[0]
        foreground = (probs[0] if outputs == 1 else 1 - probs[0]) >= 0.5
        truth = item["label"].to(foreground.device) > 0
        total = foreground.sum() + truth.sum()
        scores.append(1.0 if total == 0 else float(2 * (foreground & truth).sum() / total))
    return float(np.mean(scores)) if scores else float("nan")


def _provenance(store) -> dict:
    attrs = store.attrs
    return {
        "location": store.location,
        "dataset": attrs["dataset"],
        "masker": attrs["masker"],
        "priors": attrs["priors"],
        "schema_version": attrs["schema_version"],
    }


def train(config: TrainConfig, log=print, stop_after: int | None = None) -> dict:
    """Train one model as ``config`` says; returns the run's summary (also metrics.json).

    A run directory with a ``last.pt`` of the same config resumes after its last epoch.
    stop_after: end after this many epochs of this call (a time-limited job); the next
    call resumes.
    """
    # ---- processes: torchrun sets RANK / WORLD_SIZE / LOCAL_RANK
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(config.device, local_rank)
    if world > 1:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    master = rank == 0
    torch.manual_seed(config.seed + rank)
    out = Path(config.out)

    # ---- data
    store = open_store(config.store)
    task = task_for_dataset(store.attrs["dataset"]["name"])
    train_ids, val_ids = split_ids(store, config)
    dataset = PatchDataset(
        config.store,
        train_ids,
        patch_size=config.patch_size,
        task=task,
        augment=AugmentSettings(),
        samples_per_epoch=config.samples_per_epoch,
        seed=config.seed,
    )
    loader = make_loader(
        dataset, config.batch_size, config.workers, shuffle=True, rank=rank, world_size=world
    )

    # ---- model, optimizer, schedule
    fusion = FusionSettings(config.fusion, config.seg_scale)
    outputs = model_outputs(task)
    model = create_model(
        config.model, in_channels=in_channels(fusion), num_classes=outputs, **config.model_kwargs
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
    loss_fn = LOSSES[task]

    # ---- resume
    start_epoch, step, best = 0, 0, -1.0
    if (out / "last.pt").exists():
        state = torch.load(out / "last.pt", map_location=device, weights_only=False)
        if state["config"] != config.to_dict():
            raise SettingError(
                f"{out / 'last.pt'} was trained with another config; use a new --out"
            )
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        start_epoch, step, best = state["epoch"] + 1, state["step"], state["best_val_dice"]
        torch.set_rng_state(state["torch_rng"])
        if master:
            log(f"resuming {out} at epoch {start_epoch}")
    elif master:
        out.mkdir(parents=True, exist_ok=True)
        config.save(out / "config.json")
        with open(out / "log.csv", "w", newline="") as f:
            csv.writer(f).writerow(LOG_FIELDS)
    net = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model

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
                    loss_fn(net(model_input(batch, fusion, aug, device)), target) for aug in modes
                ) / len(modes)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            step += 1
            losses.append(loss.item())
        train_loss = float(np.mean(losses))
        if world > 1:
            mean = torch.tensor([train_loss], device=device)
            dist.all_reduce(mean)
            train_loss = float(mean.item()) / world

        val_dice = float("nan")
        last_epoch = epoch + 1 == config.epochs
        if master and val_ids and ((epoch + 1) % config.val_every == 0 or last_epoch):
            model.eval()
            val_dice = validate(model, config, val_ids, task, fusion, device)
        if master:
            improved = not math.isnan(val_dice) and val_dice > best
            best = val_dice if improved else best
            state = {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(),
                "epoch": epoch,
                "step": step,
                "best_val_dice": best,
                "config": config.to_dict(),
                "task": task,
                "in_channels": in_channels(fusion),
                "num_outputs": outputs,
                "store": _provenance(store),
                "torch_rng": torch.get_rng_state(),
            }
            torch.save(state, out / "last.pt.tmp")
            os.replace(out / "last.pt.tmp", out / "last.pt")
            if improved or (not val_ids and epoch + 1 == config.epochs):
                torch.save(state, out / "best.pt")
            seconds = time.perf_counter() - started
            with open(out / "log.csv", "a", newline="") as f:
                csv.writer(f).writerow(
                    [
                        epoch,
                        step,
                        f"{scheduler.get_last_lr()[0]:.6g}",
                        f"{train_loss:.6f}",
                        f"{val_dice:.6f}",
                        f"{seconds:.2f}",
                    ]
                )
            log(
                f"epoch {epoch + 1}/{config.epochs}  loss {train_loss:.4f}  "
                f"val dice {val_dice:.4f}  {seconds:.1f}s"
            )
        if world > 1:
            dist.barrier()

    summary = {
        "epochs": end_epoch,
        "steps": step,
        "best_val_dice": best,
        "train_images": len(train_ids),
        "val_images": len(val_ids),
        "world_size": world,
    }
    if master and end_epoch == config.epochs:
        (out / "metrics.json").write_text(json.dumps({"train": summary}, indent=2) + "\n")
    if world > 1:
        dist.destroy_process_group()
    return summary


def main(argv: list[str] | None = None) -> None:
    """Entry point for torchrun: ``torchrun --nproc_per_node N -m train.loop --config F``."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", required=True, help="a config.json (TrainConfig fields)")
    args = parser.parse_args(argv)
    train(TrainConfig.load(args.config))


if __name__ == "__main__":
    main()
