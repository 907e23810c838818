"""``samaug store ...``: inspect, check, repair, share, pack, merge and subset stores."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from samaug.commands.options import StorageOption
from samaug.commands.options import storage_options as options

app = typer.Typer(
    help="Inspect, check, repair, share, pack, merge and subset stores.", no_args_is_help=True
)

StoreArg = Annotated[
    str, typer.Argument(help="Store folder, .zarr.zip file, or URL of either.", show_default=False)
]
# Kept as given (a string): a URL is refused by the library in words, never turned into a
# path ("s3://bucket/x" would become "s3:/bucket/x").
LocalStoreArg = Annotated[str, typer.Argument(help="Store folder.", show_default=False)]
NewStoreArg = Annotated[str, typer.Argument(help="The new store folder.", show_default=False)]


@app.command("info")
def store_info(store: StoreArg, storage_option: StorageOption = None) -> None:
    """Print what a store holds and how it was made."""
    from precompute.store.maintenance import info_lines

    for line in info_lines(store, options(storage_option)):
        typer.echo(line)


@app.command("ls")
def store_ls(store: StoreArg, storage_option: StorageOption = None) -> None:
    """List a store's complete images: ID, split, size, masks, label."""
    from precompute.store.maintenance import image_lines

    for line in image_lines(store, options(storage_option)):
        typer.echo(line)


@app.command("verify")
def store_verify(store: StoreArg, storage_option: StorageOption = None) -> None:
    """Check every image: completion, every chunk, checksums, shapes, priors recomputed from
    the masks, consolidated metadata. One line per problem; exit 1 if there is any."""
    from precompute.store import is_url, is_zip
    from precompute.store.maintenance import check_store
    from precompute.store.schema import repair_advice

    result = check_store(store, options(storage_option))
    for note in result.notes:
        typer.echo(f"note: {note}")
    for problem in result.problems:
        typer.echo(problem)
    typer.echo(f"{result.checked} images checked, {len(result.problems)} problems")
    if result.flagged:
        what = (
            f"marks the {len(result.flagged)} images with a problem to be redone by the next "
            "`samaug priors` with the store's settings"
        )
    else:
        what = "writes the consolidated metadata again"
    if result.problems and not (is_url(store) or is_zip(store)):
        typer.echo(f"`samaug store repair {store}` {what}")
    elif result.problems:
        typer.echo(repair_advice(store, what))
    if result.problems:
        raise typer.Exit(1)


@app.command("compare")
def store_compare(
    store_a: StoreArg,
    store_b: StoreArg,
    storage_option: StorageOption = None,
) -> None:
    """How far two stores of the same images agree (e.g. made in fp32 and in bf16): the
    fraction of A's masks matched in B at IoU >= 0.9, masks gained and lost, the largest
    seg prior difference, the fraction of boundary prior pixels that differ, and how each
    store's masks were made (device, CPU threads, torch version)."""
    from precompute.agreement import Agreement
    from precompute.store import open_store
    from precompute.types import SamaugError

    a = open_store(store_a, storage_options=options(storage_option))
    b = open_store(store_b, storage_options=options(storage_option))
    shared = sorted(set(a.ids()) & set(b.ids()))
    if not shared:
        raise SamaugError(f"{store_a} and {store_b} hold no image in common: nothing to compare")
    agreement = Agreement()
    for image_id in shared:
        agreement.add(
            a.masks(image_id)[0],
            b.masks(image_id)[0],
            (a.read(image_id, "seg_prior"), a.read(image_id, "boundary_prior")),
            (b.read(image_id, "seg_prior"), b.read(image_id, "boundary_prior")),
        )
    for name, value in agreement.lines():
        typer.echo(f"{name}: {value}")
    # How each store's masks were made, where that can change their last bits.
    for name, store in (("made_on_a", a), ("made_on_b", b)):
        made = {_made_on_text(store.image_attrs(i).get("made_on") or {}) for i in shared}
        typer.echo(f"{name}: {'; '.join(sorted(made))}")


def _made_on_text(facts: dict) -> str:
    """An image's ``made_on`` attribute in words (see store_schema.md)."""
    if not facts:
        return "not recorded"
    device = str(facts.get("device", "?"))
    if "device_name" in facts:
        device += f" ({facts['device_name']})"
    if "torch_threads" in facts:
        threads = facts["torch_threads"]
        device += f", {threads} torch thread{'s' if threads != 1 else ''}"
    return f"{device}, torch {facts.get('torch', '?')}"


@app.command("repair")
def store_repair(store: LocalStoreArg) -> None:
    """Verify, then remove the completion marker of every image with a problem (and drop it
    from the index), so that the next `samaug priors` with the same settings redoes them."""
    from precompute.store.maintenance import repair

    result = repair(store)
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
def store_strip(src: StoreArg, dst: NewStoreArg, storage_option: StorageOption = None) -> None:
    """Copy a store without its images (priors, masks, labels and hashes stay)."""
    from precompute.store import strip_images

    left_out = strip_images(src, dst, options(storage_option))
    for path in left_out:
        typer.echo(f"left out (not part of a samaug store): {path}")
    typer.echo(f"{dst}: written without images; receivers run `samaug store attach`")


@app.command("attach")
def store_attach(
    store: Annotated[
        str, typer.Argument(help="A store made by `samaug store strip`.", show_default=False)
    ],
    data_root: Annotated[
        Path, typer.Option(help="Your copy of the dataset, original layout.", show_default=False)
    ],
) -> None:
    """Put your own copy of the images into a stripped store, checked pixel by pixel (sha256)."""
    from precompute.store.maintenance import attach_images

    attached, problems = attach_images(store, data_root)
    for problem in problems:
        typer.echo(problem, err=True)
    typer.echo(f"{attached} images attached, {len(problems)} problems")
    if problems:
        raise typer.Exit(1)


def _left_out(built) -> None:
    for path in built.left_out:
        typer.echo(f"left out (not part of a samaug store): {path}")


@app.command("pack")
def store_pack(
    src: StoreArg,
    dst: Annotated[str, typer.Argument(help="The .zarr.zip file to write.", show_default=False)],
    storage_option: StorageOption = None,
) -> None:
    """Write a store as one .zarr.zip file (members stored, readable in place, also over
    HTTP and S3)."""
    from precompute.store import pack_store

    built = pack_store(src, dst, options(storage_option))
    _left_out(built)
    size = Path(dst).stat().st_size / 1e6
    typer.echo(f"{dst}: {len(built.index)} images in one file of {size:.1f} MB")


@app.command("unpack")
def store_unpack(src: StoreArg, dst: NewStoreArg, storage_option: StorageOption = None) -> None:
    """Write a .zarr.zip store as a store folder."""
    from precompute.store import unpack_store

    built = unpack_store(src, dst, options(storage_option))
    typer.echo(f"{dst}: {len(built.index)} images")


@app.command("merge")
def store_merge(
    stores: Annotated[
        list[str],
        typer.Argument(help="Two or more stores, then the new store folder.", show_default=False),
    ],
    storage_option: StorageOption = None,
) -> None:
    """Join stores made with the same settings into a new one (an image in several must be
    the same everywhere)."""
    from precompute.store import merge_stores

    *sources, dst = stores
    built = merge_stores(sources, dst, options(storage_option))
    _left_out(built)
    typer.echo(f"{dst}: {len(built.index)} images from {len(sources)} stores")


@app.command("subset")
def store_subset(
    src: StoreArg,
    dst: NewStoreArg,
    split: Annotated[
        list[str] | None, typer.Option(help="Keep the images of this split (repeatable).")
    ] = None,
    ids: Annotated[
        Path | None, typer.Option(help="Keep the image IDs listed in this file, one a line.")
    ] = None,
    storage_option: StorageOption = None,
) -> None:
    """Copy some of a store's images (by split or ID) into a new store."""
    from precompute.store import read_ids, subset_store

    chosen = read_ids(ids) if ids else []
    built = subset_store(src, dst, split or [], chosen, options(storage_option))
    _left_out(built)
    typer.echo(f"{dst}: {len(built.index)} images of {src}")


@app.command("upgrade")
def store_upgrade(
    store: StoreArg,
    out: Annotated[
        str | None, typer.Option(help="Write the upgraded store here (default: in place).")
    ] = None,
    storage_option: StorageOption = None,
) -> None:
    """Rewrite a store of an older schema version in the current one."""
    from precompute.store import SCHEMA_VERSION, upgrade_store

    built = upgrade_store(store, out, options(storage_option))
    if built is None:
        typer.echo(f"{store}: already schema version {SCHEMA_VERSION}; nothing to do")
        return
    _left_out(built)
    typer.echo(f"{out or store}: {len(built.index)} images, schema version {SCHEMA_VERSION}")
