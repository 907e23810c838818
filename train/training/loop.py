"""Training, top to bottom: build data, build model, loop, validate under no_grad, save.

Run by ``samaug train`` or, on several processes, by
``torchrun --nproc_per_node N -m train.training.loop --config run.json``
(DistributedDataParallel; gloo on CPU, NCCL on CUDA). Only rank 0 writes the run directory.

What a run trains on and how (patches or whole resized images, normalisation, loss,
optimiser and schedule) is its protocol and recipe (``train.protocols``), resolved into its
config when it starts; the protocol makes the training data and predicts the validation
images (``train.inference.predictor``); the optimizer steps of one batch (the joint update,
multi-scale training, deep supervision) are ``train.training.optim``'s; the processes and
the training and validation images are set up by ``train.training.run_setup``.

Run directory (``train.training.checkpoint``: what each file holds, the order they are
written in, and how an interrupted run resumes, within an epoch too): ``config.json``,
``log.csv`` (one row per epoch: epoch, step (optimizer steps so far), lr, train_loss (the
mean over the epoch's optimizer steps), val_dice (the foreground Dice of the strategy that
picks best.pt, ``val_strategy``; empty where not validated), val_raw / val_samaug /
val_ensemble / val_select (each strategy the mode serves), seconds),
``last.pt`` and ``best.pt`` (self-describing checkpoints), ``metrics.json``,
``tensorboard/`` and ``progress.png`` (``train.training.watch``). SAM is never imported
here: everything comes from the store.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from precompute import checks
from precompute.store import StoreAccess
from precompute.types import SettingError
from train.inference.predictor import Predictor
from train.modes import get_mode
from train.training.config import TrainConfig
from train.training.optim import Trainer, build_trainer
from train.training.run_log import Progress
from train.training.run_setup import (
    Processes,
    RunData,
    prepare_data,
    provenance,
    start_processes,
    validation_note,
)
from train.training.validation import Validation, validate_epoch

from . import checkpoint, watch


def seed_batch(seed: int, rank: int, epoch: int, index: int) -> None:
    """Seed torch's generators (CPU and every CUDA device) for one batch from the run's seed,
    the process's rank, the epoch and the batch's index, as the data's items are seeded
    (``train.data.datasets``): dropout and drop-path draw the same numbers in a resumed run,
    on any device, in every process of a distributed run, with no generator state to save."""
    state = np.random.SeedSequence((seed, rank, epoch, index)).generate_state(2, np.uint32)
    torch.manual_seed(int(state[0]) << 32 | int(state[1]))


@dataclass
class RunState:
    """Where a run stands (what ``last.pt`` records besides the states): ``epoch``, the first
    epoch this call trains (0-based); ``step``, optimizer steps so far; the best epoch and its
    validation Dice; ``history``, the rows of ``log.csv``; ``skip``, batches of ``epoch``
    done before (a run resumed within an epoch) and their losses."""

    epoch: int = 0
    step: int = 0
    best_epoch: int | None = None
    best: float | None = None
    history: list[dict] = field(default_factory=list)
    skip: int = 0
    epoch_losses: list[float] = field(default_factory=list)

    @classmethod
    def resumed(cls, state: dict, rank: int) -> RunState:
        losses = list(state.get("epoch_losses", []))
        if losses and isinstance(losses[0], list):  # a distributed run's, one list per rank
            losses = list(losses[rank % len(losses)])
        return cls(
            state["epoch"] + 1,
            state["step"],
            state["best_epoch"],
            state["best_val_dice"],
            state["log"],
            state.get("batch", 0),
            losses,
        )

    def end_epoch(
        self,
        epoch: int,
        train_loss: float,
        by_strategy: dict[str, float],
        val_dice: float | None,
        lr: float,
        seconds: float,
        validates: bool,
    ) -> None:
        """Keep the epoch's row of ``log.csv`` (``val_dice``, the validation strategy's, and
        each strategy's Dice) and, if it is the best so far, its Dice. Without validation
        images every epoch is the best so far: the last one is kept."""
        if not validates or (val_dice is not None and (self.best is None or val_dice > self.best)):
            self.best_epoch, self.best = epoch, val_dice
        row = {
            "epoch": epoch + 1,  # counted from 1, as the screen counts
            "step": self.step,
            "lr": f"{lr:.6g}",
            "train_loss": f"{train_loss:.6f}",
            "val_dice": None if val_dice is None else f"{val_dice:.6f}",
            **{f"val_{name}": f"{dice:.6f}" for name, dice in by_strategy.items()},
            "seconds": f"{seconds:.2f}",
        }
        self.history = [*self.history, row]

    def snapshot(self, about: dict, parts: dict, epoch: int, batch: int, losses) -> dict:
        """A checkpoint of the run; ``batch`` > 0: within ``epoch + 1``, that many batches
        done, with their ``losses``."""
        return {
            **about,
            **{name: part.state_dict() for name, part in parts.items()},
            "epoch": epoch,
            "batch": batch,
            "epoch_losses": losses if batch else [],
            "step": self.step,
            "best_epoch": self.best_epoch,
            "best_val_dice": self.best,
            "log": self.history,
        }


def train(
    config,
    log=print,
    stop_after: int | None = None,
    stop_after_batches: int | None = None,
    progress: Progress | None = None,
    access: StoreAccess | None = None,
) -> dict:
    """Train one model as ``config`` (a ``TrainConfig``, resolved against the store's
    dataset first) says; returns the run's summary (metrics.json's "train"): epochs
    (complete), steps (optimizer steps), best_epoch (counted from 1), best_val_dice (None without
    validation images), validation (a sentence), train_images, val_images, world_size,
    pretrained (what the model's pretrained weights loaded, or None).

    A run directory with a ``last.pt`` of the same settings resumes where it ended, within
    an epoch too (``save_every``), exactly as if it had not stopped. stop_after: end after
    this many epochs of this call; stop_after_batches: after this many batches, saving
    ``last.pt`` there (the next call resumes). progress(what, done, total): the steps of
    each epoch and the validation images (``train.training.run_log.Progress``). access: how
    ``config.store`` is reached (fsspec options, cache; default: as a bare path or URL).
    """
    for name, value in (("stop_after", stop_after), ("stop_after_batches", stop_after_batches)):
        if value is not None:
            checks.integer(name, value, minimum=0 if name == "stop_after" else 1)
    config.check_files()
    procs = start_processes(config)
    torch.manual_seed(config.seed + procs.rank)
    out = Path(config.out)
    if out.exists() and not out.is_dir():
        raise SettingError(f"--out {out} is a file; give a directory for the run")

    # ---- data
    data = prepare_data(config, access or StoreAccess(config.store), procs)
    config, task, loader = data.config, data.task, data.loader

    # ---- model, optimizer, schedule
    trainer = build_trainer(config, task, data.protocol, len(loader), procs)
    about = _about(config, task, trainer, data)

    # ---- resume, or start
    saved = checkpoint.resume(
        out, config, task.name, about["identity"], trainer.parts, procs.device, procs.master
    )
    if saved is None and procs.master:
        checkpoint.start(out, config)
    run = RunState() if saved is None else RunState.resumed(saved, procs.rank)
    validation = validation_note(config, data.train_ids, data.val_ids)
    if procs.master:
        _announce(log, trainer, config, out, run, saved is not None, len(loader), validation)
    logger = watch.start_logger(out, procs.master, None if saved is None else run.step)
    validating = Validation(
        Predictor.of_run(trainer.model, config, task),
        data.store.access if data.val_ids and procs.master else None,
        data.val_ids,
        _validation_strategies(config),
        progress if procs.master else None,
    )

    # ---- loop
    end = config.epochs if stop_after is None else min(config.epochs, run.epoch + stop_after)
    session = _Session(config, trainer, data, procs, out, about, validating, logger, log)
    completed = _run_epochs(session, run, _Budget(stop_after_batches), end)

    watch.finish(logger, out, procs.master and completed == config.epochs)
    summary = {
        "epochs": completed,
        "steps": run.step,
        "best_epoch": None if run.best_epoch is None else run.best_epoch + 1,
        "best_val_dice": run.best,
        "validation": validation,
        "train_images": len(data.train_ids),
        "val_images": len(data.val_ids),
        "world_size": procs.world,
        "pretrained": trainer.pretrained,
    }
    if procs.master and completed == config.epochs:
        checkpoint.update_metrics(out, {"train": summary})
    if procs.world > 1:
        dist.destroy_process_group()
    return summary


@dataclass
class _Budget:
    """Batches this call may still train (None: no limit); ``spent`` once none are left."""

    left: int | None
    spent: bool = False

    def take(self) -> bool:
        """Count one batch; whether that was the last."""
        if self.left is not None:
            self.left -= 1
            self.spent = self.left == 0
        return self.spent


def _validation_strategies(config: TrainConfig) -> tuple[str, ...]:
    """The strategies a run validates: the one that picks best.pt (``val_strategy``) first,
    then every other its mode serves (each input is predicted once for all of them)."""
    served = get_mode(config.mode).serves
    return (config.val_strategy, *(s for s in served if s != config.val_strategy))


def _announce(log, trainer: Trainer, config, out, run, resumed, batches, validation) -> None:
    """The lines a run starts with: its length in optimizer steps, its pretrained weights,
    where it resumes, and that best.pt is the last epoch where nothing validates."""
    per_batch = trainer.plan.steps_per_batch
    how = "" if per_batch == 1 else f" ({per_batch} per batch: {_steps_in_words(trainer.plan)})"
    log(
        f"{_count(config.epochs, 'epoch')} x {_count(batches, 'batch')} of "
        f"{config.batch_size} = {_count(config.epochs * batches * per_batch, 'optimizer step')}"
        f"{how}"
    )
    log(trainer.pretrained or f"{config.model}: random initial weights (no pretrained file)")
    if resumed and run.epoch >= config.epochs and not run.skip:
        log(f"{out} is finished ({_count(config.epochs, 'epoch')}): nothing to train")
    elif resumed:
        within = f", batch {run.skip + 1} of {batches}" if run.skip else ""
        log(f"resuming {out} at epoch {run.epoch + 1}{within}")
    if validation.startswith("no validation"):
        log(f"{validation}: best.pt is the last epoch")


def _count(n: int, thing: str) -> str:
    return f"{n} {thing}" if n == 1 else f"{n} {thing}{'es' if thing == 'batch' else 's'}"


def _steps_in_words(plan) -> str:
    """The optimizer steps of one batch, in order, e.g. "raw, then augmented" or "at sizes
    256, as loaded, 448: raw, then augmented"."""
    inputs = ", then ".join(
        " and ".join("augmented" if a else "raw" for a in step) for step in plan.inputs
    )
    if plan.sizes == (None,):
        return inputs
    sizes = ", ".join("as loaded" if size is None else str(size) for size in plan.sizes)
    return f"at sizes {sizes}: {inputs}"


@dataclass(frozen=True)
class _Session:
    """What the epochs of one training call share."""

    config: TrainConfig
    trainer: Trainer
    data: RunData
    procs: Processes
    out: Path
    about: dict  # what every checkpoint says of the run, besides its states
    validating: Validation
    logger: watch.RunLogger
    log: Callable[[str], None]


def _about(config: TrainConfig, task, trainer: Trainer, data: RunData) -> dict:
    """What every checkpoint of the run says about it, besides its states."""
    return {
        "format": checkpoint.FORMAT,
        "config": config.to_dict(),
        "task": task.name,
        "in_channels": trainer.in_channels,
        "num_outputs": task.num_outputs,
        "identity": checkpoint.store_identity(data.store, data.train_ids, data.val_ids),
        "store": provenance(data.store),
        "pretrained": trainer.pretrained,
    }


def _run_epochs(session: _Session, run: RunState, budget: _Budget, end: int) -> int:
    """Train epochs ``run.epoch`` to ``end`` (fewer if the budget runs out); the epochs
    completed. The master process validates, saves and logs each epoch."""
    config, trainer, procs = session.config, session.trainer, session.procs
    completed = run.epoch
    for epoch in range(run.epoch, end):
        started = time.perf_counter()
        losses = _train_epoch(session, epoch, run, budget)
        if losses is None:  # stopped within the epoch, its position saved
            break
        train_loss = _mean_over_processes(float(np.mean(losses)), procs)
        if procs.master:
            by_strategy, shown = validate_epoch(
                trainer, config, epoch, run.epoch, session.validating, session.logger
            )
            val_dice = by_strategy.get(config.val_strategy)
            seconds = time.perf_counter() - started
            lr = trainer.optimization.scheduler.get_last_lr()[0]
            validates = session.validating.store is not None
            run.end_epoch(epoch, train_loss, by_strategy, val_dice, lr, seconds, validates)
            snapshot = run.snapshot(session.about, trainer.parts, epoch, 0, [])
            checkpoint.save_epoch(session.out, snapshot, run.best_epoch == epoch)
            watch.log_epoch(session.logger, run.step, train_loss, lr, val_dice)
            shown.write(run.step)
            val = "" if val_dice is None else f"  val dice {val_dice:.4f}"
            session.log(
                f"epoch {epoch + 1}/{config.epochs}  loss {train_loss:.4f}{val}  {seconds:.1f}s"
            )
        if procs.world > 1:
            dist.barrier()
        completed = epoch + 1
        if budget.spent:
            break
    return completed


def _train_epoch(
    session: _Session, epoch: int, run: RunState, budget: _Budget
) -> list[float] | None:
    """The optimizer steps of one epoch (from batch ``run.skip`` on); their losses, or None
    when the budget ran out within the epoch (``last.pt`` then holds the position)."""
    config, trainer, procs = session.config, session.trainer, session.procs
    loader = session.data.loader
    loader.dataset.set_epoch(epoch)
    trainer.net.train()
    losses, run.epoch_losses = run.epoch_losses, []
    loader.sampler.skip, first, run.skip = run.skip * config.batch_size, run.skip, 0
    what = f"epoch {epoch + 1}/{config.epochs}"
    progress = session.validating.progress
    for index, batch in enumerate(watch.steps(loader, progress, what, first), start=first):
        seed_batch(config.seed, procs.rank, epoch, index)
        losses += trainer.train_batch(batch)
        run.step += trainer.plan.steps_per_batch
        done = index + 1
        stopped = budget.take()
        if done < len(loader) and (
            stopped or (config.save_every and done % config.save_every == 0)
        ):
            position = losses
            if procs.world > 1:  # every rank's losses, so each resumes with its own
                position = [[]] * procs.world
                dist.all_gather_object(position, losses)
            if procs.master:
                snapshot = run.snapshot(session.about, trainer.parts, epoch - 1, done, position)
                checkpoint.save_position(session.out, snapshot)
            if stopped:
                return None
    return losses


def _mean_over_processes(value: float, procs: Processes) -> float:
    if procs.world == 1:
        return value
    mean = torch.tensor([value], device=procs.device)
    dist.all_reduce(mean)
    return float(mean.item()) / procs.world


def main(argv: list[str] | None = None) -> None:
    """torchrun entry point: ``torchrun --nproc_per_node N -m train.training.loop --config F``."""
    from train.training.config import TrainConfig

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", required=True, help="a config.json (TrainConfig fields)")
    args = parser.parse_args(argv)
    train(TrainConfig.load(args.config))


if __name__ == "__main__":
    main()
