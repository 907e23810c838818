"""``samaug export-dataset``: a store as a dataset other tools train on (nnU-Net v2).

Heavy imports (torch) happen inside the command, so ``samaug --help`` stays quick.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from samaug.commands.bars import Bars
from samaug.commands.options import CacheOption, StorageOption, store_access
from train.choices import ExportFormat, ExportPriors


def export_dataset_command(
    store: Annotated[str, typer.Argument(help="Store path or URL.", show_default=False)],
    out: Annotated[
        Path,
        typer.Argument(help="Folder the dataset goes in (nnUNet_raw).", show_default=False),
    ],
    format: Annotated[
        ExportFormat, typer.Option(help="nnunet: an nnU-Net v2 raw dataset.")
    ] = "nnunet",
    priors: Annotated[
        ExportPriors,
        typer.Option(
            help="add: the augmented image (3 channels); channels: image + both priors (5); "
            "none: the image alone (the baseline)."
        ),
    ] = "add",
    split: Annotated[
        list[str] | None, typer.Option(help="Training split(s): imagesTr (default: train).")
    ] = None,
    test_split: Annotated[
        list[str] | None, typer.Option(help="Split(s) for imagesTs (default: all others).")
    ] = None,
    task: Annotated[
        str | None,
        typer.Option(help="glands, nuclei or binary: the labels' classes (default: the store's)."),
    ] = None,
    dataset_id: Annotated[int, typer.Option(help="nnU-Net's dataset ID, 1..999.")] = 500,
    name: Annotated[
        str | None, typer.Option(help="nnU-Net's dataset name (default: DATASET_PRIORS).")
    ] = None,
    folds: Annotated[int, typer.Option(help="Folds of splits_final.json (nnU-Net's).")] = 5,
    cache: CacheOption = None,
    storage_option: StorageOption = None,
) -> None:
    """Write a store as a dataset for another tool: nnU-Net v2's raw format, with the SAMAug
    priors in its input channels."""
    from train.results.nnunet_export import NnunetSettings, export_nnunet, prepare_nnunet

    settings = NnunetSettings(
        priors=priors,
        task=task,
        train_splits=tuple(split or ("train",)),
        test_splits=None if test_split is None else tuple(test_split),
        dataset_id=dataset_id,
        name=name,
        folds=folds,
    )
    job = prepare_nnunet(store_access(store, storage_option, cache), out, settings)
    with Bars() as bars:
        summary = export_nnunet(job, progress=bars)
    kept = f", {summary.skipped} kept from an earlier run" if summary.skipped else ""
    typer.echo(
        f"{len(job.train_ids)} training and {len(job.test_ids)} test images "
        f"({summary.written} written{kept}) in {summary.folder}"
    )
    if summary.clipped:
        shown = ", ".join(summary.clipped[:5]) + (" ..." if summary.clipped[5:] else "")
        typer.echo(
            f"warning: {len(summary.clipped)} images have values above 65.535, stored as "
            f"65535 ({shown})",
            err=True,
        )


def register(app: typer.Typer) -> None:
    app.command("export-dataset")(export_dataset_command)
