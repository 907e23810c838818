"""``samaug store ...``: inspect, check, repair and share a store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Inspect, check, repair and share a store.", no_args_is_help=True)

StoreArg = Annotated[str, typer.Argument(help="Store path or URL.", show_default=False)]
LocalStoreArg = Annotated[Path, typer.Argument(help="Store folder.", show_default=False)]


@app.command("info")
def store_info(store: StoreArg) -> None:
    """Print what a store holds and how it was made."""
    from precompute.report import info_lines

    for line in info_lines(store):
        typer.echo(line)


@app.command("verify")
def store_verify(store: StoreArg) -> None:
    """Check every image: completion, every chunk, checksums, shapes, priors recomputed from
    the masks. One line per problem; exit 1 if there is any."""
    from precompute.report import check_store

    result = check_store(store)
    for note in result.notes:
        typer.echo(f"note: {note}")
    for problem in result.problems:
        typer.echo(problem)
    typer.echo(f"{result.checked} images checked, {len(result.problems)} problems")
    if result.flagged:
        typer.echo(
            f"`samaug store repair {store}` marks the {len(result.flagged)} images with a problem "
            "to be redone by the next `samaug priors` with the store's settings"
        )
    elif result.problems:
        typer.echo(f"`samaug store repair {store}` writes the consolidated metadata again")
    if result.problems:
        raise typer.Exit(1)


@app.command("repair")
def store_repair(store: LocalStoreArg) -> None:
    """Verify, then remove the completion marker of every image with a problem (and drop it
    from the index), so that the next `samaug priors` with the same settings redoes them."""
    from precompute.report import repair

    result = repair(str(store))
    for problem in result.problems:
        typer.echo(problem)
    if result.flagged:
        typer.echo(
            f"{len(result.flagged)} of {result.checked} images marked to be redone: run "
            "`samaug priors` with the store's settings (`samaug store info` shows them)"
        )
    elif result.problems:
        typer.echo(f"{result.checked} images checked; consolidated metadata written again")
    else:
        typer.echo(f"{result.checked} images checked, nothing to repair")


@app.command("strip")
def store_strip(
    src: Annotated[Path, typer.Argument(help="Store to copy.", show_default=False)],
    dst: Annotated[Path, typer.Argument(help="New store without the images.", show_default=False)],
) -> None:
    """Copy a store without its images (priors, masks, labels and hashes stay)."""
    from precompute.store import strip_images

    left_out = strip_images(src, dst)
    for path in left_out:
        typer.echo(f"left out (not part of a samaug store): {path}")
    typer.echo(f"{dst}: written without images; receivers run `samaug store attach`")


@app.command("attach")
def store_attach(
    store: Annotated[
        Path, typer.Argument(help="A store made by `samaug store strip`.", show_default=False)
    ],
    data_root: Annotated[
        Path, typer.Option(help="Your copy of the dataset, original layout.", show_default=False)
    ],
) -> None:
    """Put your own copy of the images into a stripped store, checked pixel by pixel (sha256)."""
    from precompute.report import attach_images

    attached, problems = attach_images(store, data_root)
    for problem in problems:
        typer.echo(problem, err=True)
    typer.echo(f"{attached} images attached, {len(problems)} problems")
    if problems:
        raise typer.Exit(1)
