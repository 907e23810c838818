"""``samaug store info``, ``verify``, ``repair`` and ``attach``: through the store's reader API.

Verification reports each problem as one line ``<image_id>: <problem>`` and goes on with the
next image; only a store that cannot be opened at all, or a connection that fails, stops it
(a SamaugError). Memory stays bounded by one block of masks (64 x H x W), whatever the
store claims.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from precompute import store as store_module
from precompute.maskers import describe_masker
from precompute.priors import compute_priors
from precompute.readers import DATASETS, get_reader
from precompute.store import (
    ARRAY_NAMES,
    EVERY_CHUNK_WRITTEN,
    DamagedStoreError,
    SamaugStore,
    consolidated,
    is_url,
    is_zip,
    open_store,
)
from precompute.store.links import refuse_links
from precompute.store.schema import repair_advice
from precompute.types import SamaugError


def image_lines(location: str, storage_options: dict | None = None) -> list[str]:
    """One line per complete image of a store: its ID, split, size (H x W), mask count and
    whether it has a label; then how many of the dataset's images are not complete."""
    store = open_store(location, storage_options)
    rows = [("id", "split", "size", "masks", "label")]
    for split in store.splits():
        for image_id in store.ids(split):
            try:
                attrs = store.image_attrs(image_id)
            except DamagedStoreError as err:
                rows.append((image_id, split, "damaged", "", str(err).rpartition(": ")[2]))
                continue
            height, width = attrs["shape"]
            label = "yes" if store.has(image_id, "label") else "no"
            rows.append((image_id, split, f"{height}x{width}", str(attrs["mask_count"]), label))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    planned = sum(store.attrs["dataset"].get("splits", {}).values())
    waiting = planned - (len(rows) - 1)
    if waiting > 0 and not any(
        step.get("operation") == "subset" for step in store.attrs.get("lineage", [])
    ):
        lines.append(f"({waiting} more images of the dataset are not complete yet)")
    return lines


def info_lines(location: str, storage_options: dict | None = None) -> list[str]:
    """A human summary of a store: dataset, splits, masker provenance, sizes."""
    store = open_store(location, storage_options)
    attrs = store.attrs
    dataset, masker, tool = attrs["dataset"], attrs["masker"], attrs["tool"]
    planned = dataset.get("splits", {})
    complete = store.splits()
    lines = [
        f"store      {location}",
        f"schema     {attrs['schema_version']}  (samaug {tool.get('version')}, "
        f"created {attrs.get('created')}, updated {attrs.get('updated')})",
        "layout     "
        + ("one shard per array" if store.layout.sharded else "one file per chunk")
        + (", consolidated metadata" if store.consolidated else ""),
        f"dataset    {dataset['name']}  reader options {dataset.get('reader_options') or '{}'}",
    ]
    for step in attrs.get("lineage", []):
        sources = step.get("sources", [])
        lines.append(
            f"lineage    {step.get('operation')} at {step.get('at')}"
            + (f" from {', '.join(str(s.get('store')) for s in sources)}" if sources else "")
        )
    subset = any(step.get("operation") == "subset" for step in attrs.get("lineage", []))
    for split in sorted(set(planned) | set(complete)):
        done, of = complete.get(split, 0), planned.get(split, "?")
        if done == 0 and subset:  # left out on purpose, not waiting to be computed
            lines.append(f"  {split:<12} not in this subset (the dataset has {of})")
        else:
            lines.append(f"  {split:<12} {done} of {of} complete")
    lines.append(f"masker     {masker['kind']}")
    described = describe_masker(masker)
    if described:
        lines.append(f"  {described}")
    for key, value in masker.get("settings", {}).items():
        lines.append(f"  {key:<28} {value}")
    counts, damaged = [], 0
    for image_id in store.ids():
        try:
            counts.append(store.image_attrs(image_id)["mask_count"])
        except DamagedStoreError:
            damaged += 1
    if counts:
        lines.append(
            f"masks      {sum(counts)} in all, {np.mean(counts):.1f} per image "
            f"(min {min(counts)}, max {max(counts)})"
        )
    if damaged:
        lines.append(f"damaged    {damaged} images (`samaug store verify` lists the problems)")
    if attrs.get("images_stripped"):
        lines.append("images     stripped (attach your copy with `samaug store attach`)")
    return lines


# --------------------------------------------------------------------------- verify


@dataclass
class Verification:
    """What ``check_store`` found: ``problems`` one line each (``<image_id>: <problem>``),
    ``flagged`` the IDs they concern, ``notes`` what verify could not check."""

    checked: int = 0
    problems: list[str] = field(default_factory=list)
    flagged: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def check_store(location: str, storage_options: dict | None = None) -> Verification:
    """Check every indexed image against its own metadata, and the consolidated metadata
    against every node's own (see store_schema.md, "Verification")."""
    store = open_store(location, storage_options, consolidated=False)
    result = Verification(checked=len(store.ids()))
    if store.attrs.get(EVERY_CHUNK_WRITTEN) is not True:
        result.notes.append(
            f"{location} was written before samaug recorded {EVERY_CHUNK_WRITTEN}: a chunk "
            "missing from it reads as the fill value, so verify cannot tell whether chunks "
            "that were all zeros went missing (the sha256 checks still catch any other)"
        )
    result.problems.extend(_consolidation_problems(store, location, storage_options))
    for image_id in store.ids():
        problems = _verify_image(store, image_id)
        result.problems.extend(f"{image_id}: {p}" for p in problems)
        if problems:
            result.flagged.append(image_id)
    return result


def _consolidation_problems(
    store: SamaugStore, location: str, storage_options: dict | None
) -> list[str]:
    """One line per node whose consolidated metadata disagrees with its own zarr.json (every
    node of the copy, every indexed image, and on a local store every image folder), or one
    line when the copy is not one readers can use at all (they would refuse the store)."""
    advice = repair_advice(location, "writes it again")
    root = store.own_metadata(".")
    copy = consolidated.entries(root)
    unusable = _unusable_copy(root, copy, location, storage_options)
    if unusable is not None:
        return [
            f"consolidated metadata: the root zarr.json's copy is not one readers can use "
            f"({unusable}); {advice}"
        ]
    if copy is None:
        return []
    local = not (is_url(location) or is_zip(location))
    groups = set(store.ids()) | set(consolidated.local_group_ids(location) if local else ())
    return [
        f"consolidated metadata: {line} ({advice})"
        for line in consolidated.disagreements(copy, store.own_metadata, groups)
    ]


def _unusable_copy(
    root: object, copy: dict | None, location: str, storage_options: dict | None
) -> str | None:
    """Why the root's consolidated metadata would make readers refuse the store (what it
    holds, or what opening the store as they do says), or None when there is none or it
    is usable."""
    block = root.get("consolidated_metadata") if isinstance(root, dict) else None
    if block is None:
        return None
    if copy is None or not consolidated.well_formed(block):
        return f"found {_brief(block)}"
    try:
        open_store(location, storage_options)  # as every reader opens it
    except SamaugError as err:
        return str(err)
    return None


def _brief(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def verify(location: str) -> tuple[list[str], int]:
    """(problems, images checked): ``check_store`` in short."""
    result = check_store(location)
    return result.problems, result.checked


def _verify_image(store: SamaugStore, image_id: str) -> list[str]:
    try:
        attrs = store.image_attrs(image_id)
    except DamagedStoreError as err:
        return [err.problem]
    problems = []
    for name in ARRAY_NAMES:
        try:
            if not store.has(image_id, name):
                continue
            actual = store.checksum(image_id, name)
        except DamagedStoreError as err:
            if err.problem not in problems:  # two logical arrays may share a damaged one
                problems.append(err.problem)
            continue
        recorded = attrs["sha256"].get(name)
        if recorded is None:
            problems.append(f"{name}: the group holds it but records no sha256 for it")
        elif actual != recorded:
            problems.append(
                f"{name}: sha256 {actual[:12]}... differs from recorded {recorded[:12]}..."
            )
        elif name == "image" and actual != attrs["image_sha256"]:
            problems.append(
                f"image: sha256 {actual[:12]}... differs from image_sha256 "
                f"{attrs['image_sha256'][:12]}..."
            )
    return problems or _verify_priors(store, image_id, attrs)


def _verify_priors(store: SamaugStore, image_id: str, attrs: dict) -> list[str]:
    """The priors recomputed from the stored masks, one block of masks at a time, against the
    stored priors (exactly), and each mask's area against its pixel count."""
    height, width = attrs["shape"]
    seg = np.zeros((height, width), np.float64)
    boundary = np.zeros((height, width), bool)
    areas_match = True
    try:
        for masks, per_mask in store.mask_blocks(image_id):
            scores = per_mask["stability_score"]
            _add_scores(seg, masks, scores)
            boundary |= compute_priors(masks, scores)[1].astype(bool)
            areas_match &= bool(np.array_equal(per_mask["area"], masks.sum(axis=(1, 2))))
        stored_seg = store.read(image_id, "seg_prior")
        stored_boundary = store.read(image_id, "boundary_prior")
    except DamagedStoreError as err:
        return [err.problem]
    problems = []
    if not np.array_equal(seg.astype(stored_seg.dtype), stored_seg):
        problems.append("seg_prior differs from the prior recomputed from the stored masks")
    if not np.array_equal(boundary.astype(stored_boundary.dtype), stored_boundary):
        problems.append("boundary_prior differs from the prior recomputed from the stored masks")
    if not areas_match:
        problems.append("area differs from the stored masks' pixel counts")
    return problems


def _add_scores(seg: np.ndarray, masks: np.ndarray, scores: np.ndarray) -> None:
    # The seg prior's own arithmetic (precompute.priors): float64 sums in mask order, so a
    # prior accumulated over blocks equals compute_priors over all masks bit for bit.
    for mask, score in zip(masks, np.asarray(scores, np.float64), strict=True):
        np.add(seg, score, out=seg, where=mask)


def repair(location: str) -> Verification:
    """Verify a local store, then remove the completion marker of every image with a problem
    and drop it from the index: the next ``samaug priors`` with the store's settings redoes
    exactly those images. Returns what verify found."""
    if is_url(location) or is_zip(location):
        raise SamaugError(
            f"{location}: repair changes a store in place; give a local store folder (copy or "
            "`samaug store unpack` it first)"
        )
    with store_module.lock.holding(store_module.Target(location), "samaug store repair"):
        result = check_store(str(location))
        if result.flagged:
            store_module.unmark_images(location, result.flagged)  # consolidates at its end
        elif any(p.startswith("consolidated metadata: ") for p in result.problems):
            refuse_links(location, "repair it")
            consolidated.drop(location)  # an unusable copy is not read to be replaced
            store_module.consolidate(location)
    return result


# --------------------------------------------------------------------------- attach


def attach_images(location: str | Path, data_root: str | Path) -> tuple[int, list[str]]:
    """Read the user's copy of the dataset and attach every image whose pixels match.

    The store's dataset reader reads only inside ``data_root`` (``confine``), whatever the
    store's reader options say; a store with a symbolic link inside is refused.
    """
    if is_url(location) or is_zip(location):
        raise SamaugError(
            f"{location}: attach writes into a store; give a local store folder (copy or "
            "`samaug store unpack` it first)"
        )
    store = open_store(location)
    refuse_links(location, "attach images to it")
    dataset = store.attrs["dataset"]
    options = dict(dataset.get("reader_options", {}))
    for key, value in options.items():
        # Every reader option is a name or a path; "confine" is get_reader's own keyword.
        if key == "confine" or not isinstance(value, str):
            raise SamaugError(
                f"{location}: root attribute dataset.reader_options has {key}={value!r}, "
                "which no dataset reader takes"
            )
    if dataset["name"] in DATASETS:  # which split an image is in does not matter here
        split_only = DATASETS.get(dataset["name"]).reader.split_options
        options = {k: v for k, v in options.items() if k not in split_only}
    reader = get_reader(dataset["name"], data_root, confine=True, **options)
    refs = {ref.image_id: ref for ref in reader.refs()}
    target = store_module.Target(location)
    with store_module.lock.holding(target, "samaug store attach"):
        with store_module.consolidated.rewriting(location):
            attached, problems = _attach_each(location, store, reader, refs, data_root)
            if not problems:
                store_module.mark_images_attached(location)
    return attached, problems


def _attach_each(location, store: SamaugStore, reader, refs, data_root) -> tuple[int, list[str]]:
    attached, problems = 0, []
    for image_id in store.ids():
        if image_id not in refs:
            problems.append(f"{image_id}: not found under {data_root}")
            continue
        try:
            store.image_attrs(image_id)  # checked before the store's claims are used
            image = reader.load(refs[image_id]).image
            store_module.attach_image(location, image_id, image, refs[image_id].image_path)
        except SamaugError as err:
            problems.append(str(err))
            continue
        attached += 1
    return attached, problems
