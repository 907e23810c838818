"""``samaug reproduce TABLE``: the paper's grid trained, evaluated and tabulated."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from samaug.commands.bars import Bars
from samaug.commands.options import (
    DEFAULT_DEVICE,
    DEFAULT_WEIGHTS_DIR,
    CacheOption,
    CertaintyOption,
    DeviceOption,
    PretrainedOption,
    StorageOption,
    WeightsDirOption,
    parse_pairs,
    pretrained_choice,
    store_access,
)
from train.choices import DEFAULT_CERTAINTY


def reproduce_command(
    table: Annotated[str, typer.Argument(help="monuseg, glas or polyp.")],
    store: Annotated[str, typer.Option(help="The table's store (samaug priors DATASET ...).")],
    out: Annotated[
        Path | None, typer.Option(help="Runs and table files (default: reproduce/TABLE).")
    ] = None,
    seeds: Annotated[int, typer.Option(help="Seeds 0..N-1 of every run.")] = 3,
    epochs: Annotated[
        int | None, typer.Option(help="Epochs of every run (default: its recipe's).")
    ] = None,
    samples_per_epoch: Annotated[
        int | None,
        typer.Option(
            help="Training items per epoch of every run (default: the protocol's, every image "
            "once); fewer make a smoke run, marked as such."
        ),
    ] = None,
    device: DeviceOption = DEFAULT_DEVICE,
    workers: Annotated[int, typer.Option(help="DataLoader worker processes.")] = 2,
    weights_dir: WeightsDirOption = Path(DEFAULT_WEIGHTS_DIR),
    pretrained: PretrainedOption = None,
    model_option: Annotated[
        list[str] | None,
        typer.Option(
            help="KEY=VALUE for every model (base_channels=16), MODEL.KEY=VALUE for one "
            "(swin_unet.embed_dim=48)."
        ),
    ] = None,
    train_option: Annotated[
        list[str] | None,
        typer.Option(help="A training setting KEY=VALUE for every run, e.g. batch_size=16."),
    ] = None,
    certainty: CertaintyOption = DEFAULT_CERTAINTY,
    cache: CacheOption = None,
    storage_option: StorageOption = None,
) -> None:
    """Train every run of a paper table (resumable), evaluate it, write the table and figure."""
    from samaug.reproduce.driver import ReproduceSettings, reproduce

    settings = ReproduceSettings(
        table=table,
        store=store_access(store, storage_option, cache),
        out=str(out or Path("reproduce") / table),
        seeds=seeds,
        epochs=epochs,
        samples_per_epoch=samples_per_epoch,
        device=device,
        workers=workers,
        weights_dir=str(weights_dir),
        pretrained=pretrained_choice(pretrained),
        model_kwargs=parse_pairs(model_option, "--model-option"),
        train_options=parse_pairs(train_option, "--train-option"),
        certainty=certainty,
    )
    with Bars() as bars:
        result = reproduce(settings, log=bars.echo, progress=bars)
    typer.echo(
        f"{len(result['runs'])} runs ({result['trained']} trained, {result['evaluated']} "
        f"evaluated this time)\n{result['markdown']}\n{result['csv']}\n{result['figure']}"
    )


def register(app: typer.Typer) -> None:
    app.command("reproduce")(reproduce_command)
