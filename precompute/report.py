"""``samaug store info`` and ``samaug store verify``: read a store through its reader API."""

from __future__ import annotations

import numpy as np

from . import store as store_module
from .datasets import get_reader
from .priors import compute_priors
from .store import open_store
from .types import SamaugError


def info_lines(location: str) -> list[str]:
    """A human summary of a store: dataset, splits, masker provenance, sizes."""
    store = open_store(location)
    attrs = store.attrs
    dataset, masker = attrs["dataset"], attrs["masker"]
    planned = dataset.get("splits", {})
    complete = store.splits()
    lines = [
        f"store      {location}",
        f"schema     {attrs['schema_version']}  (samaug {attrs['tool']['version']}, "
        f"created {attrs['created']}, updated {attrs['updated']})",
        f"dataset    {dataset['name']}  reader options {dataset.get('reader_options') or '{}'}",
    ]
    for split in sorted(set(planned) | set(complete)):
        lines.append(
            f"  {split:<12} {complete.get(split, 0)} of {planned.get(split, '?')} complete"
        )
    lines.append(f"masker     {masker['kind']}")
    if masker["kind"] == "sam":
        lines.append(
            f"  checkpoint {masker.get('checkpoint')}  ({masker.get('architecture')}, "
            f"sha256 {masker.get('checkpoint_sha256', '')[:16]}...)"
        )
    for key, value in masker["settings"].items():
        lines.append(f"  {key:<28} {value}")
    ids = store.ids()
    if ids:
        counts = [store.image_attrs(i)["mask_count"] for i in ids]
        lines.append(
            f"masks      {sum(counts)} in all, {np.mean(counts):.1f} per image "
            f"(min {min(counts)}, max {max(counts)})"
        )
    if attrs.get("images_stripped"):
        lines.append("images     stripped (attach your copy with `samaug store attach`)")
    return lines


def verify(location: str) -> tuple[list[str], int]:
    """Check every indexed image; returns (problems, images checked). See store_schema.md."""
    store = open_store(location)
    problems: list[str] = []
    for image_id in store.ids():
        problems.extend(f"{image_id}: {p}" for p in _verify_image(store, image_id))
    return problems, len(store.ids())


def _verify_image(store, image_id: str) -> list[str]:
    attrs = store.image_attrs(image_id)
    if attrs.get("complete") is not True:
        return ["listed in the index but has no completion marker"]
    problems = []
    for name, expected in attrs["sha256"].items():
        if name == "image" and store.attrs.get("images_stripped"):
            continue
        try:
            actual = store.checksum(image_id, name)
        except ValueError as err:  # crc32c mismatch or undecodable chunk
            problems.append(f"{name}: cannot decode ({err})")
            continue
        if actual != expected:
            problems.append(
                f"{name}: sha256 {actual[:12]}... differs from recorded {expected[:12]}..."
            )
    if problems:
        return problems
    height, width = attrs["shape"]
    masks, per_mask = store.masks(image_id)
    if masks.shape != (attrs["mask_count"], height, width):
        problems.append(
            f"masks have shape {masks.shape}, expected ({attrs['mask_count']}, {height}, {width})"
        )
        return problems
    seg, boundary = compute_priors(masks, per_mask["stability_score"])
    if not np.array_equal(seg, store.read(image_id, "seg_prior")):
        problems.append("seg_prior differs from the prior recomputed from the stored masks")
    if not np.array_equal(boundary, store.read(image_id, "boundary_prior")):
        problems.append("boundary_prior differs from the prior recomputed from the stored masks")
    if not np.array_equal(per_mask["area"], masks.sum(axis=(1, 2))):
        problems.append("area differs from the stored masks' pixel counts")
    return problems


def attach_images(location, data_root) -> tuple[int, list[str]]:
    """Read the user's copy of the dataset and attach every image whose pixels match."""
    store = open_store(location)
    dataset = store.attrs["dataset"]
    reader = get_reader(dataset["name"], data_root, **dataset.get("reader_options", {}))
    refs = {ref.image_id: ref for ref in reader.refs()}
    attached, problems = 0, []
    for image_id in store.ids():
        if image_id not in refs:
            problems.append(f"{image_id}: not found under {data_root}")
            continue
        try:
            image = reader.load(refs[image_id]).image
            store_module.attach_image(location, image_id, image)
        except SamaugError as err:
            problems.append(str(err))
            continue
        attached += 1
    if not problems:
        store_module.mark_images_attached(location)
    return attached, problems
