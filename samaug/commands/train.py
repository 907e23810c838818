"""``samaug train``, ``samaug eval``, ``samaug show`` and ``samaug demo``.

Heavy imports (torch) happen inside the commands, so ``samaug store info`` stays quick.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Annotated

import typer

from train.choices import Certainty, Mode

from ..options import CacheOption, StorageOption, parse_pairs, storage_options


def train_command(
    store: Annotated[str, typer.Option(help="Store path or read-only URL (samaug priors).")],
    model: Annotated[
        str, typer.Option(help="unet, attention_unet, pnet, swin_unet, ... (the registry).")
    ] = "unet",
    mode: Annotated[Mode, typer.Option(help="raw, samaug or joint.")] = "samaug",
    out: Annotated[
        Path | None, typer.Option(help="Run directory (default: runs/DATASET/MODEL-MODE-SEED).")
    ] = None,
    epochs: Annotated[int, typer.Option()] = 100,
    batch_size: Annotated[int, typer.Option()] = 8,
    patch_size: Annotated[int, typer.Option(help="Side of the square training patches.")] = 256,
    samples_per_epoch: Annotated[int | None, typer.Option(help="Patches per epoch.")] = None,
    lr: Annotated[float, typer.Option()] = 1e-3,
    weight_decay: Annotated[float, typer.Option()] = 1e-4,
    fusion: Annotated[str, typer.Option(help="add (the paper) or concat.")] = "add",
    seg_scale: Annotated[float, typer.Option(help="Factor on the seg prior.")] = 1.0,
    seed: Annotated[int, typer.Option()] = 0,
    workers: Annotated[int, typer.Option(help="DataLoader worker processes.")] = 2,
    val_split: Annotated[
        str | None,
        typer.Option(help="Validation split (default: --val-fraction of the training split)."),
    ] = None,
    val_fraction: Annotated[
        float, typer.Option(help="Training images held out for validation, in [0, 1).")
    ] = 0.1,
    task: Annotated[
        str | None,
        typer.Option(help="glands, nuclei or binary (default: the dataset's; train.tasks)."),
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:K.")] = "auto",
    amp: Annotated[bool, typer.Option(help="Mixed precision on CUDA.")] = True,
    model_option: Annotated[
        list[str] | None, typer.Option(help="Model argument KEY=VALUE, e.g. base_channels=16.")
    ] = None,
    cache: CacheOption = None,
    storage_option: StorageOption = None,
) -> None:
    """Train a segmentation model on images and priors streamed from a store."""
    from precompute.store import open_store
    from train.config import TrainConfig
    from train.loop import train

    # Every setting is checked here, before the store is opened (the default --out only
    # needs the dataset's name from it).
    config = TrainConfig(
        store=store,
        model=model,
        mode=mode,
        out=str(out or "runs/run"),
        epochs=epochs,
        batch_size=batch_size,
        patch_size=patch_size,
        samples_per_epoch=samples_per_epoch,
        lr=lr,
        weight_decay=weight_decay,
        fusion=fusion,
        seg_scale=seg_scale,
        seed=seed,
        workers=workers,
        val_split=val_split,
        val_fraction=val_fraction,
        device=device,
        amp=amp,
        task=task,
        model_kwargs=parse_pairs(model_option, "--model-option"),
    )
    access = storage_options(storage_option)
    if out is None:
        dataset = open_store(store, access, cache=cache).attrs["dataset"]["name"]
        out = Path("runs") / dataset / f"{model}-{mode}-{seed}"
        config = dataclasses.replace(config, out=str(out))
    summary = train(config, log=typer.echo, storage_options=access, cache=cache)
    if summary["best_val_dice"] is None:  # no validation images (said once, when starting)
        typer.echo(f"{out}: best.pt is the last epoch, {summary['best_epoch'] + 1}")
    else:
        typer.echo(
            f"{out}: best validation Dice {summary['best_val_dice']:.4f} "
            f"at epoch {summary['best_epoch'] + 1}"
        )


def eval_command(
    runs: Annotated[list[Path], typer.Argument(help="Run directories to compare.")],
    store: Annotated[
        str | None, typer.Option(help="Evaluate on this store (default: the run's).")
    ] = None,
    split: Annotated[
        list[str] | None, typer.Option(help="Splits (default: all not trained or validated on).")
    ] = None,
    certainty: Annotated[
        Certainty, typer.Option(help="select by margin, entropy, margin_minmax.")
    ] = "margin",
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:K.")] = "auto",
    min_size: Annotated[
        int, typer.Option(help="Remove predicted objects of fewer pixels (glas, monuseg).")
    ] = 10,
    table: Annotated[Path | None, typer.Option(help="Also write the table as CSV here.")] = None,
    cache: CacheOption = None,
    storage_option: StorageOption = None,
) -> None:
    """Score runs with raw / samaug / ensemble / select and print one comparison table."""
    from precompute.types import SettingError
    from train.evaluate import (
        comparison_rows,
        format_table,
        prepare_evaluation,
        score_run,
        write_table,
    )

    if table is not None and (table.is_dir() or not table.parent.is_dir()):
        raise SettingError(f"--table {table}: give a CSV file in an existing folder")
    # Every run is checked and loaded before any is scored.
    jobs = [
        prepare_evaluation(
            run,
            store,
            split,
            certainty,
            device=device,
            min_size=min_size,
            storage_options=storage_options(storage_option),
            cache=cache,
        )
        for run in runs
    ]
    for job in jobs:
        score_run(job)
    rows = comparison_rows(runs)
    typer.echo(format_table(rows))
    if table:
        write_table(rows, table)
        typer.echo(f"table written to {table}")


def show_command(
    store: Annotated[str, typer.Argument(help="Store path or URL.")],
    image_id: Annotated[str, typer.Argument(help="Image ID (samaug store info lists splits).")],
    out: Annotated[Path, typer.Option(help="PNG to write.")] = Path("fig.png"),
    cache: CacheOption = None,
    storage_option: StorageOption = None,
) -> None:
    """Save the image, its seg prior, boundary prior and augmented input side by side."""
    from train.figure import show

    typer.echo(show(store, image_id, out, storage_options(storage_option), cache))


def demo_command(
    out: Annotated[Path, typer.Option(help="Where the demo writes everything.")] = Path("demo_out"),
    epochs: Annotated[int, typer.Option()] = 12,
) -> None:
    """The whole job offline on CPU: synthetic data, superpixel priors, raw vs samaug U-Net."""
    from ..demo import run_demo

    result = run_demo(out, epochs=epochs, log=typer.echo)
    typer.echo(json.dumps(result, indent=2))


def register(app: typer.Typer) -> None:
    app.command("train")(train_command)
    app.command("eval")(eval_command)
    app.command("show")(show_command)
    app.command("demo")(demo_command)
