"""``samaug priors`` and ``samaug weights``: parse arguments, call ``precompute``."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Annotated, Literal

import typer

from precompute.maskers import MaskerName
from precompute.readers import DATASETS
from precompute.types import SamaugError
from samaug.commands.bars import Bars
from samaug.commands.options import (
    DEFAULT_DEVICE,
    DeviceOption,
    StorageOption,
    parse_pairs,
    storage_options,
    verbose,
)

Precision = Literal["fp32", "bf16", "fp16"]  # precompute.maskers.sam_settings.PRECISIONS

# What `samaug weights` fetches unnamed: the paper's SAM (ViT-H, as the released
# SAMAug_barebone.py loads) and Swin-UNet's ImageNet Swin-T.
DEFAULT_WEIGHTS = ("vit_h", "swin_t")

DATASET_HELP = "Which dataset, in its original layout: " + "; ".join(
    f"{name}: {dataset.help}" for name, dataset in DATASETS.items()
)


def _show_progress(bars: Bars):
    """The pipeline's ``on_progress`` drawn on ``bars``; a failure is named as it happens
    while bars are drawn (the summary lists every failure at the end anyway)."""
    from precompute.pipeline import Failure

    def on_progress(finished: int, total: int, outcome) -> None:
        if isinstance(outcome, Failure) and bars.enabled:
            bars.echo(f"failed: {outcome}")
        bars("images", finished, total)

    return on_progress


def priors(
    dataset: Annotated[str, typer.Argument(help=DATASET_HELP)],
    data_root: Annotated[Path, typer.Option(help="The dataset in its original layout.")],
    store: Annotated[
        str,
        typer.Option(help="Store to create or resume: a folder, or a URL (s3://bucket/x.zarr)."),
    ],
    masker: Annotated[MaskerName, typer.Option(help="Which masker makes the masks.")] = "sam",
    checkpoint: Annotated[
        Path | None, typer.Option(help="SAM checkpoint (.pth); any SAM architecture.")
    ] = None,
    points_per_side: Annotated[int | None, typer.Option(help="SAM grid: N x N points.")] = None,
    points_per_batch: Annotated[int | None, typer.Option(help="Prompts per decoder call.")] = None,
    pred_iou_thresh: Annotated[float | None, typer.Option(help="In [0, 1].")] = None,
    stability_score_thresh: Annotated[float | None, typer.Option(help="In [0, 1].")] = None,
    stability_score_offset: Annotated[float | None, typer.Option(help="Above 0.")] = None,
    box_nms_thresh: Annotated[float | None, typer.Option(help="In [0, 1].")] = None,
    crop_n_layers: Annotated[int | None, typer.Option(help="0 or more.")] = None,
    crop_nms_thresh: Annotated[float | None, typer.Option(help="In [0, 1].")] = None,
    precision: Annotated[
        Precision | None,
        typer.Option(help="SAM's arithmetic: fp32 (exactly the reference's masks), bf16, fp16."),
    ] = None,
    compile: Annotated[bool, typer.Option(help="torch.compile the model (not recorded).")] = False,
    image_batch: Annotated[
        int, typer.Option(help="Images (crops) the image encoder takes at once (not recorded).")
    ] = 1,
    masker_option: Annotated[
        list[str] | None, typer.Option(help="Any masker setting as KEY=VALUE (repeatable).")
    ] = None,
    reader_option: Annotated[
        list[str] | None,
        typer.Option(help="Reader option as KEY=VALUE, e.g. split=test (repeatable)."),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            help="Dask worker processes (default: 1 on CPU, one per GPU on CUDA); 0 = no Dask."
        ),
    ] = None,
    scheduler: Annotated[
        str | None, typer.Option(help="Address of a running Dask scheduler (SLURM, dask-cuda).")
    ] = None,
    scheduler_timeout: Annotated[
        float, typer.Option(help="Seconds to wait for --scheduler and its first worker.")
    ] = 30.0,
    device: DeviceOption = DEFAULT_DEVICE,
    threads: Annotated[
        int | None, typer.Option(help="Torch threads per worker (default: cores / workers).")
    ] = None,
    overwrite: Annotated[
        bool, typer.Option(help="Replace a store made with other settings.")
    ] = False,
    storage_option: StorageOption = None,
    break_lock: Annotated[
        bool,
        typer.Option(help="Replace the lock of a run that is no longer running (another host)."),
    ] = False,
) -> None:
    """Generate masks and priors for every image of DATASET into --store (resumable)."""
    import os

    from precompute.devices import check_device
    from precompute.pipeline import PriorsConfig, run

    check_device(device)
    settings = {
        k: v
        for k, v in {
            "points_per_side": points_per_side,
            "points_per_batch": points_per_batch,
            "pred_iou_thresh": pred_iou_thresh,
            "stability_score_thresh": stability_score_thresh,
            "stability_score_offset": stability_score_offset,
            "box_nms_thresh": box_nms_thresh,
            "crop_n_layers": crop_n_layers,
            "crop_nms_thresh": crop_nms_thresh,
            "precision": precision,
        }.items()
        if v is not None
    }
    for key, value in parse_pairs(masker_option, "--masker-option").items():
        if key in settings and settings[key] != value:
            raise SamaugError(f"{key} is given twice, as {settings[key]!r} and {value!r}")
        settings[key] = value
    if threads is None and not device.startswith("cuda"):
        threads = max(1, (os.cpu_count() or 1) // max(workers or 1, 1))
    config = PriorsConfig(
        dataset=dataset,
        data_root=str(data_root),
        store=store,
        masker=masker,
        checkpoint=str(checkpoint) if checkpoint else None,
        masker_settings=tuple(sorted(settings.items())),
        reader_options=tuple(sorted(parse_pairs(reader_option, "--reader-option").items())),
        device=device,
        workers=workers,
        scheduler=scheduler,
        torch_threads=threads,
        overwrite=overwrite,
        connect_timeout=scheduler_timeout,
        storage_options=storage_options(storage_option),
        break_lock=break_lock,
        compile=compile,
        image_batch=image_batch,
    )
    with Bars() as bars:
        summary = run(config, on_progress=_show_progress(bars))
    if summary.lock_replaced:
        typer.echo(f"replaced {summary.lock_replaced}")
    if summary.replaced:
        typer.echo(f"replaced {summary.replaced}")
    typer.echo(
        f"{summary.done} done, {summary.skipped} skipped (already complete), "
        f"{len(summary.failures)} failed, of {summary.total} images in {summary.seconds:.1f} s"
    )
    if summary.done:
        typer.echo(
            f"{summary.mean_masks():.1f} masks per image, "
            f"{summary.seconds_per_image():.2f} s per image (worker time)"
        )
    _report_warnings(summary)
    if summary.failures:
        _report_failures(summary)
        raise typer.Exit(1)


def _report_warnings(summary) -> None:
    found = summary.warnings()
    if found:
        typer.echo(f"warnings ({len(found)}):", err=True)
        for image_id, warning in found:
            typer.echo(f"  {image_id}: {warning}", err=True)


def _report_failures(summary) -> None:
    typer.echo("failed:", err=True)
    for failure in summary.failures:
        typer.echo(f"  {failure}", err=True)
        if verbose():
            typer.echo(failure.traceback, err=True)
    if any(f.user_error for f in summary.failures):
        typer.echo(
            "Fix these files and run the same command again: only the failed images are redone.",
            err=True,
        )
    if not all(f.user_error for f in summary.failures):
        typer.echo(
            "Images whose files are not at fault (memory, the GPU, ...) are retried by running "
            "the same command again.",
            err=True,
        )
    typer.echo(f"Tracebacks: {summary.log} (or run with samaug --verbose).", err=True)


def weights(
    names: Annotated[
        list[str] | None,
        typer.Argument(
            help="SAM: vit_b, vit_l, vit_h; backbones: swin_t, pvt_v2_b2 (default: vit_h swin_t)."
        ),
    ] = None,
    directory: Annotated[Path, typer.Option("--dir", help="Where to put them.")] = Path(
        "checkpoints"
    ),
    base_url: Annotated[
        str | None,
        typer.Option(help="A mirror folder holding the files (default: their official URLs)."),
    ] = None,
) -> None:
    """Download the official SAM checkpoints and ImageNet backbones; check their sha256."""
    from precompute.downloads import BASE_URL, CHECKPOINTS, download_checkpoints
    from train.models.backbones import BACKBONES, download_backbones

    names = names or list(DEFAULT_WEIGHTS)
    unknown = [n for n in names if n not in CHECKPOINTS and n not in BACKBONES]
    if unknown:
        raise SamaugError(
            f"unknown weights {', '.join(unknown)}; choose from "
            f"{', '.join([*CHECKPOINTS, *BACKBONES])}"
        )

    with Bars(bytes=True) as bars:
        for name in names:
            show = partial(bars, name)
            if name in CHECKPOINTS:
                (path,) = download_checkpoints([name], directory, base_url or BASE_URL, show)
            else:
                (path,) = download_backbones([name], directory, base_url, show)
            bars.echo(f"{path}: sha256 ok")


def register(app: typer.Typer) -> None:
    app.command("priors")(priors)
    app.command("weights")(weights)
