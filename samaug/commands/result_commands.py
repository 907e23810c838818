"""``samaug predict``, ``samaug score`` and ``samaug export``: results that leave the tool.

Heavy imports (torch) happen inside the commands, so ``samaug --help`` stays quick.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from samaug.commands.bars import Bars
from samaug.commands.options import (
    DEFAULT_DEVICE,
    DEFAULT_MODEL_CHECKPOINT,
    CacheOption,
    CertaintyOption,
    DeviceOption,
    MinSizeOption,
    ModelCheckpointOption,
    OverlayOption,
    ProbabilityFormatOption,
    SaveProbabilitiesOption,
    StorageOption,
    TableOption,
    TtaOption,
    check_table,
    given_store,
    verbose,
)
from train.choices import (
    DEFAULT_CERTAINTY,
    DEFAULT_MIN_SIZE,
    DEFAULT_PROBABILITY_FORMAT,
    DEFAULT_TTA,
    Strategy,
)


def predict_command(
    model: Annotated[
        Path, typer.Argument(help="A run directory, a model bundle (.zip) or a checkpoint.")
    ],
    out: Annotated[Path, typer.Option(help="Folder for the prediction files.")],
    images: Annotated[
        Path | None, typer.Option(help="Folder of images to segment (png, jpg, tif, bmp).")
    ] = None,
    store: Annotated[
        str | None, typer.Option(help="Predict a store's images instead (path or URL).")
    ] = None,
    split: Annotated[
        list[str] | None, typer.Option(help="Splits of --store (default: all).")
    ] = None,
    strategy: Annotated[
        Strategy | None,
        typer.Option(help="raw, samaug, ensemble, select (default: what the model serves)."),
    ] = None,
    checkpoint: Annotated[
        Path | None,
        typer.Option(help="The SAM checkpoint the model's priors came from, on this machine."),
    ] = None,
    masker_store: Annotated[
        Path | None, typer.Option(help="Keep the images' priors in this store (reused).")
    ] = None,
    workers: Annotated[
        int | None, typer.Option(help="Dask workers for the priors (0 = no Dask).")
    ] = None,
    scheduler: Annotated[
        str | None, typer.Option(help="Address of a running Dask scheduler.")
    ] = None,
    device: DeviceOption = DEFAULT_DEVICE,
    tta: TtaOption = DEFAULT_TTA,
    save_probabilities: SaveProbabilitiesOption = False,
    probability_format: ProbabilityFormatOption = DEFAULT_PROBABILITY_FORMAT,
    overlay: OverlayOption = False,
    certainty: CertaintyOption = DEFAULT_CERTAINTY,
    min_size: MinSizeOption = DEFAULT_MIN_SIZE,
    model_checkpoint: ModelCheckpointOption = DEFAULT_MODEL_CHECKPOINT,
    cache: CacheOption = None,
    storage_option: StorageOption = None,
) -> None:
    """Segment new images with a trained model (priors computed with its own masker)."""
    from train.inference.predictor import PredictSettings
    from train.results.saving import FileSettings, empty_warning
    from train.results.serving import PredictConfig, prepare_prediction, run_prediction

    config = PredictConfig(
        model=str(model),
        out=str(out),
        images=None if images is None else str(images),
        store=given_store(store, storage_option, cache),
        splits=tuple(split or ()),
        strategy=strategy,
        model_checkpoint=model_checkpoint,
        checkpoint=None if checkpoint is None else str(checkpoint),
        masker_store=None if masker_store is None else str(masker_store),
        workers=workers,
        scheduler=scheduler,
        device=device,
        settings=PredictSettings(tta=tta, certainty=certainty),
        files=FileSettings(min_size, save_probabilities, probability_format, overlay),
    )
    job = prepare_prediction(config)
    with Bars() as bars:
        summary = run_prediction(job, progress=bars)
    typer.echo(
        f"{len(summary.entries)} images predicted ({job.strategy}"
        f"{', tta flip' if tta == 'flip' else ''}) into {job.out}"
    )
    if summary.priors is not None and summary.priors.skipped:
        typer.echo(f"priors of {summary.priors.skipped} images reused from {masker_store}")
    empty = [entry["image_id"] for entry in summary.entries if entry["objects"] == 0]
    if empty:
        typer.echo(empty_warning(str(job.out), empty, len(summary.entries)), err=True)
    if summary.failures:
        typer.echo(f"failed ({len(summary.failures)}):", err=True)
        for image_id, message in summary.failures:
            typer.echo(f"  {image_id}: {message}", err=True)
        if summary.priors is not None and summary.priors.failures and verbose():
            for failure in summary.priors.failures:
                typer.echo(failure.traceback, err=True)
        raise typer.Exit(1)


def score_command(
    predictions: Annotated[Path, typer.Argument(help="Folder of prediction files (any tool).")],
    store: Annotated[
        str | None, typer.Option(help="Ground truth: a store's labels (path or URL).")
    ] = None,
    split: Annotated[
        list[str] | None, typer.Option(help="Splits of --store (default: all).")
    ] = None,
    labels: Annotated[
        Path | None, typer.Option(help="Ground truth: a folder of label maps named by ID.")
    ] = None,
    task: Annotated[
        str | None,
        typer.Option(help="glands, nuclei or binary (default: recorded, or the store's)."),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Folder for scores.json (default: the predictions').")
    ] = None,
    table: TableOption = None,
    cache: CacheOption = None,
    storage_option: StorageOption = None,
) -> None:
    """Score a folder of predictions with the metrics of `samaug eval`."""
    from train.results.scoring import SCORES, prepare_scoring, score_folder, score_rows
    from train.results.tables import format_table, write_csv

    check_table(table)
    access = given_store(store, storage_option, cache)
    job = prepare_scoring(predictions, access, split, labels, task, out)
    with Bars() as bars:
        results = score_folder(job, progress=bars)
    rows = score_rows(job, results)
    typer.echo(format_table(rows))
    if job.extra:
        shown = ", ".join(p.name for p in job.extra[:5])
        more = f" and {len(job.extra) - 5} more" if job.extra[5:] else ""
        typer.echo(f"not scored: {len(job.extra)} files of no image ({shown}{more})", err=True)
    typer.echo(f"scores written to {job.out / SCORES}")
    if table:
        write_csv(rows, table)
        typer.echo(f"table written to {table}")


def export_command(
    run: Annotated[Path, typer.Argument(help="A run directory.")],
    out: Annotated[Path, typer.Argument(help="The bundle to write, e.g. model.zip.")],
    model_checkpoint: ModelCheckpointOption = DEFAULT_MODEL_CHECKPOINT,
) -> None:
    """Write a model bundle: safetensors weights, config, provenance, metrics, README."""
    from train.results.bundle import export_bundle

    typer.echo(f"bundle written to {export_bundle(run, out, model_checkpoint)}")


def register(app: typer.Typer) -> None:
    app.command("predict")(predict_command)
    app.command("score")(score_command)
    app.command("export")(export_command)
