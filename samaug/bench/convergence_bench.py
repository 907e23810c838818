"""Does the default recipe converge? The default U-Net run of the patches protocol, trained
on the MoNuSeg subset for a fixed wall-clock budget, its validation Dice epoch by epoch.

``make convergence`` (``python -m samaug.bench.convergence_bench [--minutes M] [--out DIR]``)
builds a store from the MoNuSeg tiles in the folder ``SAMAUG_SHARED_DATA`` names (priors by
the ``superpixel`` masker: no SAM weights are needed), holds one tile out for validation and
trains ``samaug train``'s default MoNuSeg U-Net run (the ``patches`` recipe, joint mode, an
epoch covering every training tile once) at a small width on the CPU, one epoch a call
(each call resumes the last exactly), until the budget is spent. It prints one
``name: value`` line per epoch (``convergence_epoch_<k>_val_dice``, ``..._train_loss``), the
epochs done, the optimizer steps, and the run folder, whose ``log.csv`` has every row and
whose ``progress.png`` draws the curves. The priors here are superpixels, not SAM's, and
the data is three tiles: the figures show that training converges, nothing about SAMAug.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from precompute.pipeline import PriorsConfig, run
from samaug.bench import emit, shared_data
from train.training.config import TrainConfig
from train.training.loop import train
from train.training.run_log import write_progress_png

MONUSEG = Path("monuseg") / "MoNuSeg 2018 Training Data"
WIDTH = 16  # base_channels: a U-Net of a quarter of the default width, for a CPU


def convergence(out: Path, minutes: float, width: int = WIDTH, workers: int = 0) -> list[dict]:
    """Train the default U-Net run on the MoNuSeg subset for ``minutes`` (whole epochs) in
    ``out``; returns the rows of its ``log.csv``. Emits the figures as it goes."""
    data = shared_data()
    if data is None or not (data / MONUSEG).is_dir():
        emit("convergence", "skipped (no MoNuSeg subset: set SAMAUG_SHARED_DATA)")
        return []
    store = out / "monuseg.zarr"
    run(
        PriorsConfig(
            dataset="monuseg",
            data_root=str(data / "monuseg"),
            store=str(store),
            masker="superpixel",
            workers=0,
        )
    )
    config = TrainConfig(
        store=str(store),
        model="unet",
        out=str(out / "run"),
        val_fraction=0.34,  # one of the three tiles
        device="cpu",
        workers=workers,
        model_kwargs={"base_channels": width},
    )
    deadline = time.monotonic() + minutes * 60
    lines: list[str] = []
    while time.monotonic() < deadline:
        summary = train(config, log=lines.append, stop_after=1)
        if summary["epochs"] == config.resolve("monuseg").epochs:
            break
    emit("convergence_plan", lines[0])
    rows = list(_log_rows(Path(config.out) / "log.csv"))
    for row in rows:
        epoch = int(row["epoch"])  # log.csv counts epochs from 1
        emit(f"convergence_epoch_{epoch}_train_loss", float(row["train_loss"]))
        emit(f"convergence_epoch_{epoch}_val_dice", float(row["val_dice"]))
    emit("convergence_epochs", len(rows))
    emit("convergence_steps", int(rows[-1]["step"]) if rows else 0)
    if rows:
        write_progress_png(Path(config.out) / "log.csv", Path(config.out) / "progress.png")
    emit("convergence_run", config.out)
    return rows


def _log_rows(path: Path):
    import csv

    with open(path, newline="") as f:
        yield from csv.DictReader(f)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=45.0, help="wall-clock budget")
    parser.add_argument("--out", type=Path, help="keep the run here (default: a temp folder)")
    parser.add_argument("--width", type=int, default=WIDTH, help="the U-Net's base channels")
    args = parser.parse_args(argv)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        convergence(args.out, args.minutes, args.width)
        return
    with tempfile.TemporaryDirectory() as tmp:
        convergence(Path(tmp), args.minutes, args.width)


if __name__ == "__main__":
    main()
