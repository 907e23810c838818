"""The store side of ``make bench``: how stores travel, one ``name: value`` a line.

Every request count is taken at a loopback HTTP server that honours Range requests and
counts what it serves (``precompute.store.range_server``), on stores of MoNuSeg-sized images
(1000 x 1000, 200 masks, H&E-like pixels and instance labels):

- files_per_image: files of one image in a store of the default layout (target <= 12), and
  files_per_image_v1 for the version 1 layout (a file per chunk);
- remote_open_requests: requests to open a remote store and list every image's split and
  shape (target <= 2, whatever the number of images); also for a .zarr.zip;
- remote_patch_requests: requests for one random 256 x 256 patch of image, label and both
  priors of an image not read before (target <= 8); the worst of several; also for version
  1 and for a .zarr.zip;
- remote_epoch2_requests: requests in the second epoch of a training dataset reading with a
  cache (target 0), after remote_epoch1_requests in the first;
- zip_read_overhead: random patches per second from a local .zarr.zip over patches per
  second from the same store as a folder (target >= 0.8).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from precompute import store as st
from precompute.priors import compute_priors
from precompute.store.range_server import running
from samaug.bench import emit
from samaug.demo.synthetic import random_mask_set, tissue_image

SIZE = 1000
MASKS = 200
PATCH = 256


def make_store(path: Path, images: int, version: int = st.SCHEMA_VERSION) -> list[str]:
    """A store of ``images`` MoNuSeg-sized images in schema ``version`` (one mask set shared
    by all, for speed; pixels and labels differ), consolidated as a run leaves it."""
    dataset = {"name": "monuseg", "reader_options": {}, "splits": {"train": images}}
    masker = {"kind": "superpixel", "settings": {"bench": True}}
    st.prepare_store(path, st.store_root_attrs(dataset, masker, version))
    masks = random_mask_set(SIZE, SIZE, MASKS, seed=0)
    seg, boundary = compute_priors(masks.masks, masks.stability_score, masks.box)
    ids = [f"img_{k}" for k in range(images)]
    for k, image_id in enumerate(ids):
        image, label = tissue_image(SIZE, SIZE, objects=300, seed=k, radius=(6, 14))
        st.write_image(path, image_id, "train", image, label, masks, seg, boundary, {}, {})
    st.set_index(path, {i: "train" for i in ids})
    st.consolidate(path)
    return ids


def files_of(path: Path, image_id: str) -> int:
    return sum(1 for p in (path / "images" / image_id).rglob("*") if p.is_file())


def _windows(count: int, seed: int) -> list[tuple[int, int, int, int]]:
    rng = np.random.default_rng(seed)
    corners = rng.integers(0, SIZE - PATCH, (count, 2))
    return [(int(y), int(x), int(y) + PATCH, int(x) + PATCH) for y, x in corners]


def read_patch(store, image_id: str, window) -> None:
    for name in ("image", "label", "seg_prior", "boundary_prior"):
        store.read(image_id, name, window)


def remote_figures(server, name: str, ids: list[str], suffix: str = "") -> None:
    """remote_open_requests and remote_patch_requests for the store ``name`` served."""
    url = f"{server.url}/{name}"
    server.reset()
    store = st.open_store(url)
    listing = {i: (store.image_attrs(i)["split"], store.image_attrs(i)["shape"]) for i in ids}
    assert len(listing) == len(ids)
    emit(f"remote_open_requests{suffix}", len(server.reset()))
    worst = 0
    for image_id, window in zip(ids, _windows(len(ids), seed=1), strict=True):
        server.reset()
        read_patch(store, image_id, window)  # an image not read before: cold
        worst = max(worst, len(server.reset()))
    emit(f"remote_patch_requests{suffix}", worst)


def epoch_figures(server, name: str, cache: Path) -> None:
    """Requests of the first and the second epoch of a training dataset with a cache."""
    from precompute.store import StoreAccess
    from train.data.datasets import PatchDataset

    access = StoreAccess(f"{server.url}/{name}", cache=cache)
    dataset = PatchDataset(access, "train", patch_size=PATCH)
    for epoch in (0, 1):
        server.reset()
        dataset.set_epoch(epoch)
        for index in range(len(dataset)):
            dataset[index]
        emit(f"remote_epoch{epoch + 1}_requests", len(server.reset()))


def zip_overhead(folder: Path, packed: Path, ids: list[str], patches: int = 150) -> float:
    """Patches per second from the .zarr.zip over patches per second from the folder."""
    windows = _windows(patches, seed=2)
    rates = {}
    for location in (folder, packed):
        store = st.open_store(location)
        read_patch(store, ids[0], windows[0])  # opened, first index read
        start = time.perf_counter()
        for k, window in enumerate(windows):
            read_patch(store, ids[k % len(ids)], window)
        rates[location] = patches / (time.perf_counter() - start)
    return rates[packed] / rates[folder]


def main(directory: Path, images: int = 6) -> None:
    site = directory / "stores"
    site.mkdir()
    v2, v1 = site / "monuseg.zarr", site / "monuseg_v1.zarr"
    ids = make_store(v2, images)
    make_store(v1, 2, version=1)
    packed = site / "monuseg.zarr.zip"
    st.pack_store(v2, packed)
    emit("files_per_image", files_of(v2, ids[0]))
    emit("files_per_image_v1", files_of(v1, "img_0"))
    with running(site) as server:
        remote_figures(server, v2.name, ids)
        remote_figures(server, packed.name, ids, "_zip")
        remote_figures(server, v1.name, ["img_0", "img_1"], "_v1")
        epoch_figures(server, v2.name, directory / "cache")
    emit("zip_read_overhead", zip_overhead(v2, packed, ids))
