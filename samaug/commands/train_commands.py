"""``samaug train``, ``samaug eval``, ``samaug show`` and ``samaug demo``.

Heavy imports (torch) happen inside the commands, so ``samaug store info`` stays quick.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Annotated

import typer

from samaug.commands.bars import Bars
from samaug.commands.options import (
    DEFAULT_DEVICE,
    DEFAULT_MODEL_CHECKPOINT,
    DEFAULT_WEIGHTS_DIR,
    CacheOption,
    CertaintyOption,
    DeviceOption,
    MinSizeOption,
    ModelCheckpointOption,
    OverlayOption,
    PretrainedOption,
    ProbabilityFormatOption,
    SaveProbabilitiesOption,
    StorageOption,
    TableOption,
    TtaOption,
    WeightsDirOption,
    check_table,
    model_kwargs,
    parse_numbers,
    store_access,
)
from train.choices import (
    DEFAULT_CERTAINTY,
    DEFAULT_MIN_SIZE,
    DEFAULT_PROBABILITY_FORMAT,
    DEFAULT_TTA,
    JointUpdate,
    Loss,
    LrSchedule,
    Mode,
    Optimizer,
    Strategy,
    TestMaps,
)


def train_command(
    store: Annotated[str, typer.Option(help="Store path or read-only URL (samaug priors).")],
    model: Annotated[
        str,
        typer.Option(help="unet, attention_unet, pnet, swin_unet, pranet (the registry)."),
    ] = "unet",
    mode: Annotated[Mode, typer.Option(help="joint (the paper), raw or samaug.")] = "joint",
    out: Annotated[
        Path | None, typer.Option(help="Run directory (default: runs/DATASET/MODEL-MODE-SEED).")
    ] = None,
    protocol: Annotated[
        str | None,
        typer.Option(help="patches or polyp (default: polyp for polyp stores, else patches)."),
    ] = None,
    recipe: Annotated[
        str | None,
        typer.Option(
            help="patches, pranet (PraNet's MyTrain/MyTest) or samaug_polyp (the released "
            "HSNet script): optimiser, schedule, loss and test rule."
        ),
    ] = None,
    joint_update: Annotated[
        JointUpdate,
        typer.Option(help="joint mode: step (raw step, then augmented step) or mean."),
    ] = "step",
    steps_per_batch: Annotated[
        int,
        typer.Option(
            help="Optimizer steps each batch takes, repeated: 2 with --mode raw matches a "
            "joint run's steps (the compute-matched baseline)."
        ),
    ] = 1,
    val_strategy: Annotated[
        Strategy | None,
        typer.Option(help="The strategy validation picks best.pt by (default: the mode's)."),
    ] = None,
    test_maps: Annotated[
        TestMaps | None,
        typer.Option(help="Deep-supervised models: sum or last map (default: the recipe's)."),
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="Default: the recipe's.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Default: the recipe's.")] = None,
    patch_size: Annotated[
        int | None,
        typer.Option(help="Patch side, or resized side under polyp (256 / 352; swin_unet 224)."),
    ] = None,
    scales: Annotated[
        str | None, typer.Option(help="Multi-scale factors (polyp), e.g. 0.75,1,1.25.")
    ] = None,
    samples_per_epoch: Annotated[
        int | None,
        typer.Option(help="Items per epoch (default: patches tiling every image once)."),
    ] = None,
    optimizer: Annotated[
        Optimizer | None, typer.Option(help="adamw or adam (default: the recipe's).")
    ] = None,
    lr: Annotated[float | None, typer.Option(help="Default: the recipe's.")] = None,
    weight_decay: Annotated[float | None, typer.Option(help="Default: the recipe's.")] = None,
    lr_schedule: Annotated[
        LrSchedule | None, typer.Option(help="cosine or multistep (default: the recipe's).")
    ] = None,
    warmup_epochs: Annotated[int | None, typer.Option(help="cosine warm-up epochs.")] = None,
    lr_milestones: Annotated[
        str | None, typer.Option(help="multistep: 0-based epochs where lr is cut, e.g. 20.")
    ] = None,
    lr_gamma: Annotated[float | None, typer.Option(help="multistep: the factor.")] = None,
    grad_clip: Annotated[
        float | None, typer.Option(help="Clamp gradient elements to +-this (0: off).")
    ] = None,
    loss: Annotated[
        Loss | None,
        typer.Option(help="task, structure, structure_released, structure_unweighted."),
    ] = None,
    fusion: Annotated[str, typer.Option(help="add (the paper) or concat.")] = "add",
    seg_scale: Annotated[float, typer.Option(help="Factor on the seg prior.")] = 1.0,
    seed: Annotated[int, typer.Option()] = 0,
    workers: Annotated[int, typer.Option(help="DataLoader worker processes.")] = 2,
    train_split: Annotated[str, typer.Option(help="The store's split to train on.")] = "train",
    val_split: Annotated[
        str | None,
        typer.Option(help="Validation split (default: --val-fraction of the training split)."),
    ] = None,
    val_fraction: Annotated[
        float | None,
        typer.Option(help="Training images held out, in [0, 1) (default 0.1; polyp: 0)."),
    ] = None,
    fold: Annotated[
        int | None,
        typer.Option(help="Validate on this fold (from 0) of --folds fixed ones (nnU-Net's)."),
    ] = None,
    folds: Annotated[int, typer.Option(help="Folds of the training split, with --fold.")] = 5,
    save_every: Annotated[
        int, typer.Option(help="Also save last.pt every N batches (0: at epoch ends).")
    ] = 0,
    task: Annotated[
        str | None,
        typer.Option(help="glands, nuclei or binary (default: the dataset's; train.tasks)."),
    ] = None,
    device: DeviceOption = DEFAULT_DEVICE,
    amp: Annotated[bool, typer.Option(help="Mixed precision on CUDA.")] = True,
    model_option: Annotated[
        list[str] | None, typer.Option(help="Model argument KEY=VALUE, e.g. base_channels=16.")
    ] = None,
    pretrained: PretrainedOption = None,
    weights_dir: WeightsDirOption = Path(DEFAULT_WEIGHTS_DIR),
    cache: CacheOption = None,
    storage_option: StorageOption = None,
) -> None:
    """Train a segmentation model on images and priors streamed from a store."""
    from train.training.config import TrainConfig
    from train.training.loop import train

    # Every setting is checked here, before the store is opened (the default --out only
    # needs the dataset's name from it).
    config = TrainConfig(
        store=store,
        model=model,
        mode=mode,
        out=str(out or "runs/run"),
        protocol=protocol,
        recipe=recipe,
        joint_update=joint_update,
        steps_per_batch=steps_per_batch,
        val_strategy=val_strategy,
        test_maps=test_maps,
        epochs=epochs,
        batch_size=batch_size,
        patch_size=patch_size,
        scales=parse_numbers(scales, "--scales"),
        samples_per_epoch=samples_per_epoch,
        optimizer=optimizer,
        lr=lr,
        weight_decay=weight_decay,
        lr_schedule=lr_schedule,
        warmup_epochs=warmup_epochs,
        lr_milestones=parse_numbers(lr_milestones, "--lr-milestones"),
        lr_gamma=lr_gamma,
        grad_clip=grad_clip,
        loss=loss,
        fusion=fusion,
        seg_scale=seg_scale,
        seed=seed,
        workers=workers,
        train_split=train_split,
        val_split=val_split,
        val_fraction=val_fraction,
        fold=fold,
        folds=folds,
        save_every=save_every,
        device=device,
        amp=amp,
        task=task,
        model_kwargs=model_kwargs(model, model_option, pretrained, weights_dir),
    )
    config.check_files()
    access = store_access(store, storage_option, cache)
    if out is None:
        dataset = access.open().attrs["dataset"]["name"]
        out = Path("runs") / dataset / f"{model}-{mode}-{seed}"
        config = dataclasses.replace(config, out=str(out))
    with Bars() as bars:
        summary = train(config, log=bars.echo, progress=bars, access=access)
    if summary["best_val_dice"] is None:  # no validation images (said once, when starting)
        typer.echo(f"{out}: best.pt is the last epoch, {summary['best_epoch']}")
    else:
        typer.echo(
            f"{out}: best validation Dice {summary['best_val_dice']:.4f} "
            f"at epoch {summary['best_epoch']}"
        )


def eval_command(
    runs: Annotated[
        list[Path], typer.Argument(help="Run directories or model bundles (.zip) to compare.")
    ],
    store: Annotated[
        str | None,
        typer.Option(help="Evaluate on this store (default: a run's own; a bundle needs it)."),
    ] = None,
    split: Annotated[
        list[str] | None, typer.Option(help="Splits (default: all not trained or validated on).")
    ] = None,
    certainty: CertaintyOption = DEFAULT_CERTAINTY,
    device: DeviceOption = DEFAULT_DEVICE,
    min_size: MinSizeOption = DEFAULT_MIN_SIZE,
    tta: TtaOption = DEFAULT_TTA,
    save_predictions: Annotated[
        Path | None,
        typer.Option(
            help="Write every prediction here: SPLIT/STRATEGY/<id>.png (RUN/... for several runs)."
        ),
    ] = None,
    save_probabilities: SaveProbabilitiesOption = False,
    probability_format: ProbabilityFormatOption = DEFAULT_PROBABILITY_FORMAT,
    overlay: OverlayOption = False,
    table: TableOption = None,
    model_checkpoint: ModelCheckpointOption = DEFAULT_MODEL_CHECKPOINT,
    cache: CacheOption = None,
    storage_option: StorageOption = None,
) -> None:
    """Score runs with raw / samaug / ensemble / select and print one comparison table."""
    from train.inference.predictor import PredictSettings
    from train.results.evaluation import prepare_evaluation, score_run
    from train.results.saving import FileSettings, empty_warning
    from train.results.tables import comparison_rows, format_table, write_csv

    check_table(table)
    settings = PredictSettings(tta=tta, certainty=certainty)
    files = FileSettings(min_size, save_probabilities, probability_format, overlay)
    access = store_access(store, storage_option, cache)
    folders = _prediction_folders(runs, save_predictions)
    # Every run is checked and loaded before any is scored.
    jobs = [
        prepare_evaluation(
            run,
            access,
            split,
            settings,
            files,
            device=device,
            checkpoint=model_checkpoint,
            save_predictions=folder,
        )
        for run, folder in zip(runs, folders, strict=True)
    ]
    with Bars() as bars:
        for job in jobs:
            score_run(job, progress=bars)
    rows = comparison_rows([job.run_dir for job in jobs])
    typer.echo(format_table(rows))
    for run, job in zip(runs, jobs, strict=True):
        for split, strategies in job.empty.items():
            total = len(job.store.ids(split))
            for strategy, ids in strategies.items():
                typer.echo(empty_warning(f"{run} {split}/{strategy}", ids, total), err=True)
    for run, job in zip(runs, jobs, strict=True):
        if job.run_dir != run:
            typer.echo(f"{run}: results in {job.run_dir}")
    if save_predictions:
        typer.echo(f"predictions written to {save_predictions}")
    if table:
        write_csv(rows, table)
        typer.echo(f"table written to {table}")


def _prediction_folders(runs: list[Path], save: Path | None) -> list[Path | None]:
    """Where each run's predictions go: ``save`` itself for one run, ``save/<run name>`` for
    several (two runs of one name are refused)."""
    from precompute.types import SettingError

    if save is None:
        return [None] * len(runs)
    if len(runs) == 1:
        return [save]
    names = [run.stem for run in runs]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise SettingError(
            f"--save-predictions: several runs are named {repeated[0]!r}; evaluate them "
            "one at a time, each with its own folder"
        )
    return [save / name for name in names]


def show_command(
    store: Annotated[str, typer.Argument(help="Store path or URL.")],
    image_id: Annotated[str, typer.Argument(help="Image ID (samaug store info lists splits).")],
    out: Annotated[Path, typer.Option(help="PNG to write.")] = Path("fig.png"),
    cache: CacheOption = None,
    storage_option: StorageOption = None,
) -> None:
    """Save the image, its seg prior, boundary prior and augmented input side by side."""
    from train.results.show import show

    typer.echo(show(store_access(store, storage_option, cache), image_id, out))


def demo_command(
    out: Annotated[Path, typer.Option(help="Where the demo writes everything.")] = Path("demo_out"),
    epochs: Annotated[int, typer.Option()] = 12,
) -> None:
    """The whole job offline on CPU: synthetic data, superpixel priors, raw vs samaug U-Net."""
    from samaug.demo import run_demo

    result = run_demo(out, epochs=epochs, log=typer.echo)
    typer.echo(json.dumps(result, indent=2))


def register(app: typer.Typer) -> None:
    app.command("train")(train_command)
    app.command("eval")(eval_command)
    app.command("show")(show_command)
    app.command("demo")(demo_command)
