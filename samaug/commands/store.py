"""``samaug store ...``: inspect, check and share a store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Inspect, check and share a store.", no_args_is_help=True)


@app.command("info")
def store_info(store: Annotated[str, typer.Argument(help="Store path or URL.")]) -> None:
    """Print what a store holds and how it was made."""
    from precompute.report import info_lines

    for line in info_lines(store):
        typer.echo(line)


@app.command("verify")
def store_verify(store: Annotated[str, typer.Argument(help="Store path or URL.")]) -> None:
    """Check every image: completion, checksums, shapes, priors recomputed from the masks."""
    from precompute.report import verify

    problems, checked = verify(store)
    for problem in problems:
        typer.echo(problem)
    typer.echo(f"{checked} images checked, {len(problems)} problems")
    if problems:
        raise typer.Exit(1)


@app.command("strip")
def store_strip(
    src: Annotated[Path, typer.Argument(help="Store to copy.")],
    dst: Annotated[Path, typer.Argument(help="New store without the images.")],
) -> None:
    """Copy a store without its images (priors, masks, labels and hashes stay)."""
    from precompute.store import strip_images

    strip_images(src, dst)
    typer.echo(f"{dst}: written without images; receivers run `samaug store attach`")


@app.command("attach")
def store_attach(
    store: Annotated[Path, typer.Argument(help="A store made by `samaug store strip`.")],
    data_root: Annotated[Path, typer.Option(help="Your copy of the dataset, original layout.")],
) -> None:
    """Put your own copy of the images into a stripped store, checked pixel by pixel (sha256)."""
    from precompute.report import attach_images

    attached, problems = attach_images(store, data_root)
    for problem in problems:
        typer.echo(problem, err=True)
    typer.echo(f"{attached} images attached, {len(problems)} problems")
    if problems:
        raise typer.Exit(1)
