"""Small stores made on the spot for the store tests: random masks, real priors, real Zarr."""

from pathlib import Path

import numpy as np
import zarr
from PIL import Image

from precompute import store as st
from precompute.priors import compute_priors
from precompute.readers import get_reader
from samaug.demo.synthetic import random_mask_set

DATASET = {"name": "toy", "reader_options": {}, "splits": {"train": 2, "test": 1}}
MASKER = {"kind": "superpixel", "settings": {"scales": [1, 2], "method": "slic"}}


def write(path, image_id, split, shape=(300, 270), n=12, seed=0, label=True, image=None):
    """Write one image group with random pixels (or ``image``), label and masks."""
    rng = np.random.default_rng(seed)
    if image is None:
        image = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    shape = image.shape[:2]
    lab = rng.integers(0, 700, shape, dtype=np.int32) if label else None
    ms = random_mask_set(*shape, n, seed)
    seg, boundary = compute_priors(ms.masks, ms.stability_score, ms.box)
    source = {"image": f"{image_id}.png"}
    st.write_image(path, image_id, split, image, lab, ms, seg, boundary, source, {"read": 0.5})
    return image, lab, ms, seg, boundary


def toy_store(path, version=st.SCHEMA_VERSION, consolidated=False):
    """Three images: a_1 (300 x 270, 12 masks), b_2 (40 x 33, no mask, no label: all-zero
    priors) and c_3 (257 x 513, 70 masks: two chunks of masks), in the layout of schema
    ``version``, consolidated (as a run leaves a store) if asked. Returns their data by ID."""
    st.prepare_store(path, st.store_root_attrs(DATASET, MASKER, version))
    data = {
        "a_1": write(path, "a_1", "train", seed=1),
        "b_2": write(path, "b_2", "train", shape=(40, 33), n=0, seed=2, label=False),
        "c_3": write(path, "c_3", "test", shape=(257, 513), n=70, seed=3),
    }
    st.set_index(path, {"a_1": "train", "b_2": "train", "c_3": "test"})
    if consolidated:
        st.consolidate(path)
    return data


def folder_dataset_store(data_root, store, shapes, seed=0):
    """A ``folder`` dataset of BMP images (smooth gradients plus noise, one per shape) and a
    store made from it (superpixel-like provenance, 5 random masks per image)."""
    data_root = Path(data_root)
    data_root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for k, (height, width) in enumerate(shapes):
        yy, xx = np.mgrid[:height, :width]
        base = np.stack([yy * 255 // height, xx * 255 // width, (yy + xx) % 256], axis=-1)
        noise = rng.integers(0, 16, (height, width, 3))
        Image.fromarray((base + noise).clip(0, 255).astype(np.uint8)).save(
            data_root / f"img_{k}.bmp"
        )
    reader = get_reader("folder", data_root)
    refs = reader.refs()
    dataset = {"name": "folder", "reader_options": {}, "splits": {"train": len(refs)}}
    st.prepare_store(store, st.store_root_attrs(dataset, MASKER))
    for k, ref in enumerate(refs):
        write(
            store, ref.image_id, ref.split, n=5, seed=k, label=False, image=reader.load(ref).image
        )
    st.set_index(store, {ref.image_id: ref.split for ref in refs})
    return [ref.image_id for ref in refs]


def chunk_file(path, image_id, name, version=st.SCHEMA_VERSION) -> Path:
    """The file holding the second row of chunks of logical array ``name`` (version 1: chunk
    c/1/0..., version 2: the array's only shard)."""
    source = st.layout_of(version).source(name)
    ndim = len(zarr.open_array(path, path=f"images/{image_id}/{source.array}", mode="r").shape)
    coords = ["0"] * ndim
    if version == 1:
        coords[0] = "1"
    return Path(path, "images", image_id, source.array, "c", *coords)


def rewrite(path, image_id, name, change) -> np.ndarray:
    """Rewrite logical array ``name`` of an image through Zarr, in whatever layout it is
    stored: ``change`` edits the array in place. Returns the new values (checksums unchanged)."""
    version = zarr.open_group(path, mode="r").attrs["schema_version"]
    source = st.layout_of(version).source(name)
    with zarr.config.set({"array.write_empty_chunks": True}):  # as the writer does
        array = zarr.open_array(path, path=f"images/{image_id}/{source.array}", mode="r+")
        values = source.convert(array[source.selection()])
        change(values)
        array[source.selection()] = values.astype(array.dtype)
    return values


def same_images(a, b, ids=None) -> None:
    """Every image of ``a`` (or ``ids``) is in ``b`` with the same attributes and arrays."""
    a, b = st.open_store(a), st.open_store(b)
    for image_id in ids or a.ids():
        assert b.image_attrs(image_id) == a.image_attrs(image_id)
        for name in st.ARRAY_NAMES:
            if a.has(image_id, name):
                np.testing.assert_array_equal(b.array(image_id, name), a.array(image_id, name))
