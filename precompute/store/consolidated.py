"""Consolidated metadata: every node's metadata copied into the root ``zarr.json``, so that
opening a store and listing its images, splits and per-image attributes is one read.

Writers that change a store in place drop it first (``rewriting``) and consolidate again when
they finish, so a run that is killed leaves no stale copy behind: the reader then falls back
to reading each node's own ``zarr.json``. On a local store the reader also checks the copy
against each image group's own metadata (the completion markers) and ignores it when they
disagree (``stale_groups``); ``verify`` compares every node (``disagreements``).

Zarr-python warns that consolidated metadata is not (yet) part of the Zarr v3 specification;
it is zarr-python's documented extension, and other readers simply ignore the extra key, so
the warning is silenced where samaug consolidates.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import zarr
from zarr.errors import ZarrUserWarning

from precompute.received import parse_or_none
from precompute.types import image_id_problem

_WARNING = "Consolidated metadata is currently not part"


def consolidate(store: Any) -> None:
    """Write the consolidated metadata of the store at ``store`` (a path or a zarr Store)
    into its root ``zarr.json``."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_WARNING, category=ZarrUserWarning)
        # Folders without metadata (what repair leaves of a group, for the next run to redo)
        # are no nodes: left out, as they should be.
        warnings.filterwarnings("ignore", message="Object at", category=ZarrUserWarning)
        zarr.consolidate_metadata(store, zarr_format=3)


def drop(store: Any) -> None:
    """Remove the consolidated metadata from the root ``zarr.json`` (rewritten without it)."""
    root = zarr.open_group(store, mode="r+", zarr_format=3, use_consolidated=False)
    # ``put`` rewrites zarr.json from the metadata as read here: without the copy.
    root.attrs.put(dict(root.attrs))


@contextlib.contextmanager
def rewriting(store: Any) -> Iterator[None]:
    """Drop the consolidated metadata, let the caller change the store, consolidate again.

    A caller that fails leaves the store without consolidated metadata (readers fall back to
    each node's own), never with a copy that disagrees with it.
    """
    drop(store)
    yield
    consolidate(store)


def entries(root_meta: Any) -> dict[str, dict] | None:
    """Node path -> metadata dict from a parsed root ``zarr.json``; None when it has no
    consolidated metadata (or an unusable one)."""
    if not isinstance(root_meta, dict):
        return None
    block = root_meta.get("consolidated_metadata")
    found = block.get("metadata") if isinstance(block, dict) else None
    return found if isinstance(found, dict) else None


def well_formed(block: Any) -> bool:
    """Whether a root's ``consolidated_metadata`` is zarr-python's inline copy: ``kind``
    "inline", ``must_understand`` false, ``metadata`` a mapping of node paths to metadata
    objects (anything else makes zarr refuse to open the store)."""
    if not isinstance(block, dict) or block.get("kind", "inline") != "inline":
        return False
    if block.get("must_understand", False) is not False:
        return False
    found = block.get("metadata")
    return isinstance(found, dict) and all(isinstance(meta, dict) for meta in found.values())


def _same(entry: Any, own: Any) -> bool:
    # A group's consolidated entry carries "consolidated_metadata": null, its own file not.
    def clean(meta: Any) -> Any:
        if isinstance(meta, dict):
            return {k: v for k, v in meta.items() if k != "consolidated_metadata"}
        return meta

    return clean(entry) == clean(own)


def local_group_ids(path: str | Path) -> list[str]:
    """Image IDs with a folder under ``<path>/images`` (no metadata read)."""
    folder = Path(path) / "images"
    if not folder.is_dir():
        return []
    return [p.name for p in folder.iterdir() if p.is_dir() and not image_id_problem(p.name)]


def read_local(path: str | Path) -> Callable[[str], Any]:
    """``read_own`` for a local store: the parsed ``<path>/<node>/zarr.json``, or None."""

    def read(node: str) -> Any:
        try:
            return parse_or_none((Path(path) / node / "zarr.json").read_bytes())
        except OSError:
            return None

    return read


def disagreements(
    copy: dict[str, dict],
    read_own: Callable[[str], Any],
    on_disk: Iterable[str] = (),
    groups_only: bool = False,
) -> list[str]:
    """One line per node whose consolidated metadata is not its own ``zarr.json``
    (``read_own(node)`` parsed, None if missing): every node of the copy and the image groups
    in ``on_disk`` (IDs), or only the image groups (their completion markers) when
    ``groups_only``."""
    nodes = set(copy) | {f"images/{image_id}" for image_id in on_disk}
    if groups_only:
        nodes = {n for n in nodes if n.startswith("images/") and n.count("/") == 1}
    lines = []
    for node in sorted(nodes):
        own = read_own(node)
        if node not in copy and own is None:
            continue  # a folder without metadata (an unmarked group's leftovers): no node
        if node not in copy:
            lines.append(f"{node} is not in the consolidated metadata")
        elif own is None:
            lines.append(f"{node} is in the consolidated metadata but has no zarr.json")
        elif not _same(copy[node], own):
            lines.append(f"{node}: the consolidated metadata differs from its zarr.json")
    return lines


def stale_markers(path: str) -> list[str]:
    """Lines naming the image groups of a local store whose consolidated metadata disagrees
    with their own zarr.json (completion marker and attributes), or that it lacks."""
    own = read_local(path)
    copy = entries(own("."))
    if copy is None:
        return []
    return disagreements(copy, own, local_group_ids(path), groups_only=True)
