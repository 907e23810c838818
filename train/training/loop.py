"""Training, top to bottom: build data, build model, loop, validate under no_grad, save.

Run by ``samaug train`` or, on several processes, by
``torchrun --nproc_per_node N -m train.training.loop --config run.json`` (DistributedDataParallel;
gloo on CPU, NCCL on CUDA). Only rank 0 writes the run directory.

What a run trains on and how (patches or whole resized images, normalisation, loss,
optimiser and schedule) is its protocol and recipe (``train.protocols``), resolved into its
config when it starts; the optimizer steps of one batch (the joint update, multi-scale
training, deep supervision) are ``train.training.optim``'s; the processes, the training and
validation images and the training data are set up by ``train.training.run_setup``.

Run directory (``train.training.checkpoint``: what each file holds, the order they are written in,
and how an interrupted run resumes, within an epoch too): ``config.json``, ``log.csv``
(one row per epoch: epoch, step (optimizer steps so far), lr, train_loss (the mean over
the epoch's optimizer steps), val_dice (empty where not validated), seconds), ``last.pt``
and ``best.pt`` (self-describing checkpoints), ``metrics.json``, ``tensorboard/`` and
``progress.png`` (``train.training.watch``). SAM is never imported here: everything comes from the
store.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from precompute import checks
from precompute.store import StoreCache, open_store
from precompute.types import SettingError
from train.data.datasets import WholeImageDataset
from train.data.loader import make_loader
from train.fusion import FusionSettings, in_channels
from train.inference.predicting import foreground_probability, predict_image
from train.losses import make_loss
from train.models import create_model
from train.tasks import Task, get_task
from train.training.config import TrainConfig
from train.training.optim import OutputMaps, build_optimization, train_batch, update_plan
from train.training.run_log import Progress
from train.training.run_setup import (
    provenance,
    split_ids,
    start_processes,
    training_data,
    validation_note,
)

from . import checkpoint, watch


@torch.no_grad()
def validate(
    model,
    config: TrainConfig,
    val_ids,
    task: Task,
    fusion,
    progress: Progress | None = None,
    on_image: Callable[[dict, torch.Tensor], None] | None = None,
    storage_options: dict | None = None,
    cache: StoreCache | None = None,
) -> float:
    """Mean foreground Dice (probability >= 0.5 against ``label > 0``) over whole validation
    images, predicted as the run's protocol tests (``predict_image``), in [0, 1]; an image
    with neither scores 1. progress("validation", images done, images) is called after each
    image, and on_image(item, probabilities (1, K, H, W)) with each image's prediction.
    storage_options and cache: how a store URL is read (``train``)."""
    dataset = WholeImageDataset(config.store, val_ids, storage_options=storage_options, cache=cache)
    scores = []
    for index in range(len(dataset)):
        item = dataset[index]
        probs = predict_image(
            model,
            item,
            fusion,
            config.mode != "raw",
            task,
            window=config.patch_size,
            protocol=config.protocol,
        )
        foreground = foreground_probability(probs)[0] >= 0.5
        truth = item["label"].to(foreground.device) > 0
        total = foreground.sum() + truth.sum()
        scores.append(1.0 if total == 0 else float(2 * (foreground & truth).sum() / total))
        if on_image is not None:
            on_image(item, probs)
        if progress is not None:
            progress("validation", index + 1, len(dataset))
    return float(np.mean(scores))


def seed_batch(seed: int, rank: int, epoch: int, index: int) -> None:
    """Seed torch's generators (CPU and every CUDA device) for one batch from the run's seed,
    the process's rank, the epoch and the batch's index, as the data's items are seeded
    (``train.data.datasets``): dropout and drop-path draw the same numbers in a resumed run, on any
    device, in every process of a distributed run, with no generator state to save."""
    state = np.random.SeedSequence((seed, rank, epoch, index)).generate_state(2, np.uint32)
    torch.manual_seed(int(state[0]) << 32 | int(state[1]))


def train(
    config: TrainConfig,
    log=print,
    stop_after: int | None = None,
    stop_after_batches: int | None = None,
    progress: Progress | None = None,
    storage_options: dict | None = None,
    cache: str | Path | None = None,
) -> dict:
    """Train one model as ``config`` says; returns the run's summary (also metrics.json's
    "train"): epochs (complete), steps (optimizer steps), best_epoch (0-based, as log.csv),
    best_val_dice (None without validation images), validation (a sentence), train_images,
    val_images, world_size, pretrained (what the model's pretrained weights loaded, or None).

    ``config`` is resolved against the store's dataset (``TrainConfig.resolve``) before
    anything is trained; the run directory records the resolved settings. A run directory
    with a ``last.pt`` of the same settings resumes where it ended: after its last epoch, or
    within an epoch at the batch it had reached (``save_every``), exactly as if it had not
    stopped. stop_after: end after this many epochs of this call; stop_after_batches: after
    this many batches of this call, saving ``last.pt`` there (time-limited jobs); the next
    call resumes. progress(what, done, total): the steps of each epoch and the validation
    images, as they go (``train.training.run_log.Progress``). TensorBoard events, and
    ``progress.png`` at the end, are written as ``train.training.watch`` says.
    storage_options: fsspec options for a store URL (credentials; never saved). cache: a
    folder keeping what is read from a store URL on local disk, shared by the DataLoader
    workers: from the second epoch on nothing is read over the network.
    """
    for name, value in (("stop_after", stop_after), ("stop_after_batches", stop_after_batches)):
        if value is not None:
            checks.integer(name, value, minimum=0 if name == "stop_after" else 1)
    config.check_files()
    procs = start_processes(config)
    torch.manual_seed(config.seed + procs.rank)
    device, out = procs.device, Path(config.out)
    if out.exists() and not out.is_dir():
        raise SettingError(f"--out {out} is a file; give a directory for the run")

    # ---- data
    store = open_store(config.store, storage_options, cache=cache)
    config = config.resolve(store.attrs["dataset"]["name"])
    task = get_task(config.task)
    train_ids, val_ids = split_ids(store, config)
    identity = checkpoint.store_identity(store, train_ids, val_ids)
    dataset = training_data(config, task, train_ids, storage_options, store.cache)
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
    report = getattr(model, "pretrained_report", None)
    pretrained = None if report is None else report.summary()
    plan = update_plan(config)
    use_amp = config.amp and device.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    optimization = build_optimization(
        config, model, len(loader) * plan.steps_per_batch, use_amp and amp_dtype == torch.float16
    )
    autocast = {"device_type": device.type, "dtype": amp_dtype, "enabled": use_amp}
    loss_fn = make_loss(config.loss, task.loss)

    # ---- resume, or start
    parts = {"model": model, **optimization.parts()}
    about = {  # what every checkpoint of the run says about it, besides its states
        "format": checkpoint.FORMAT,
        "config": config.to_dict(),
        "task": task.name,
        "in_channels": in_channels(fusion),
        "num_outputs": task.num_outputs,
        "identity": identity,
        "store": provenance(store),
        "pretrained": pretrained,
    }
    state = checkpoint.resume(out, config, task.name, identity, parts, device, procs.master)
    if state is None:
        start_epoch, step, best_epoch, best, history = 0, 0, None, None, []
        skip, epoch_losses = 0, []
        if procs.master:
            checkpoint.start(out, config)
    else:
        start_epoch, step = state["epoch"] + 1, state["step"]
        best_epoch, best, history = state["best_epoch"], state["best_val_dice"], state["log"]
        skip, epoch_losses = state.get("batch", 0), list(state.get("epoch_losses", []))
        if epoch_losses and isinstance(epoch_losses[0], list):  # a distributed run's, per rank
            epoch_losses = list(epoch_losses[procs.rank % len(epoch_losses)])
    validation = validation_note(config, train_ids, val_ids)
    if procs.master:
        if pretrained is not None:
            log(pretrained)
        if state is not None:
            within = f", batch {skip + 1} of {len(loader)}" if skip else ""
            log(f"resuming {out} at epoch {start_epoch + 1}{within}")
        if not val_ids:
            log(f"{validation}: best.pt is the last epoch")
    logger = watch.start_logger(out, procs.master, None if state is None else state["step"])
    progress = progress if procs.master else None
    net = OutputMaps(model)
    if procs.world > 1:
        net = torch.nn.parallel.DistributedDataParallel(net)

    def snapshot(epoch: int, batch: int, losses: list[float]) -> dict:
        """The run's state; ``batch`` > 0: within ``epoch + 1``, that many batches done."""
        return {
            **about,
            **{name: part.state_dict() for name, part in parts.items()},
            "epoch": epoch,
            "batch": batch,
            "epoch_losses": losses if batch else [],
            "step": step,
            "best_epoch": best_epoch,
            "best_val_dice": best,
            "log": history,
        }

    # ---- loop
    end_epoch = (
        config.epochs if stop_after is None else min(config.epochs, start_epoch + stop_after)
    )
    batches_left = stop_after_batches
    stopped, completed = False, start_epoch
    for epoch in range(start_epoch, end_epoch):
        started = time.perf_counter()
        dataset.set_epoch(epoch)
        net.train()
        losses, epoch_losses = epoch_losses, []
        loader.sampler.skip, first, skip = skip * config.batch_size, skip, 0
        what = f"epoch {epoch + 1}/{config.epochs}"
        for index, batch in enumerate(watch.steps(loader, progress, what, first), start=first):
            seed_batch(config.seed, procs.rank, epoch, index)
            losses += train_batch(net, batch, plan, loss_fn, fusion, optimization, autocast)
            step += plan.steps_per_batch
            done = index + 1
            if batches_left is not None:
                batches_left -= 1
                stopped = batches_left == 0
            if done < len(loader) and (
                stopped or (config.save_every and done % config.save_every == 0)
            ):
                position = losses
                if procs.world > 1:  # every rank's losses, so each resumes with its own
                    position = [[]] * procs.world
                    dist.all_gather_object(position, losses)
                if procs.master:
                    checkpoint.save_position(out, snapshot(epoch - 1, done, position))
                if stopped:
                    break
        if stopped and done < len(loader):
            break
        train_loss = float(np.mean(losses))
        if procs.world > 1:
            mean = torch.tensor([train_loss], device=device)
            dist.all_reduce(mean)
            train_loss = float(mean.item()) / procs.world

        val_dice = None
        last_epoch = epoch + 1 == config.epochs
        if procs.master and val_ids and ((epoch + 1) % config.val_every == 0 or last_epoch):
            model.eval()
            shown = watch.Shown(logger, epoch, start_epoch, config.epochs)
            val_dice = validate(
                model,
                config,
                val_ids,
                task,
                fusion,
                progress,
                shown.keep,
                storage_options=storage_options,
                cache=store.cache,
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
                    "lr": f"{optimization.scheduler.get_last_lr()[0]:.6g}",
                    "train_loss": f"{train_loss:.6f}",
                    "val_dice": None if val_dice is None else f"{val_dice:.6f}",
                    "seconds": f"{seconds:.2f}",
                },
            ]
            checkpoint.save_epoch(out, snapshot(epoch, 0, []), is_best)
            lr = optimization.scheduler.get_last_lr()[0]
            watch.log_epoch(logger, step, train_loss, lr, val_dice)
            if val_dice is not None:
                shown.write(step)
            val = "" if val_dice is None else f"  val dice {val_dice:.4f}"
            log(f"epoch {epoch + 1}/{config.epochs}  loss {train_loss:.4f}{val}  {seconds:.1f}s")
        if procs.world > 1:
            dist.barrier()
        completed = epoch + 1
        if stopped:
            break

    watch.finish(logger, out, procs.master and completed == config.epochs)
    summary = {
        "epochs": completed,
        "steps": step,
        "best_epoch": best_epoch,
        "best_val_dice": best,
        "validation": validation,
        "train_images": len(train_ids),
        "val_images": len(val_ids),
        "world_size": procs.world,
        "pretrained": pretrained,
    }
    if procs.master and completed == config.epochs:
        checkpoint.update_metrics(out, {"train": summary})
    if procs.world > 1:
        dist.destroy_process_group()
    return summary


def main(argv: list[str] | None = None) -> None:
    """torchrun entry point: ``torchrun --nproc_per_node N -m train.training.loop --config F``."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", required=True, help="a config.json (TrainConfig fields)")
    args = parser.parse_args(argv)
    train(TrainConfig.load(args.config))


if __name__ == "__main__":
    main()
