"""Sharing a store without its images, against careless and hostile stores: strip copies only
the layout, attach never writes through a link, never reads outside the data root, and never
leaves part of an image behind, whenever it is killed."""

import random
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import zarr
from PIL import Image

from precompute import store as st
from precompute.readers import get_reader
from precompute.store.maintenance import attach_images, verify
from precompute.types import SamaugError
from tests.support.cli import SAMAUG
from tests.support.store_toys import DATASET, MASKER, folder_dataset_store, toy_store, write


@pytest.fixture
def shared(tmp_path):
    """A ``folder`` dataset of two images, its store, and the store stripped of the images."""
    data, full, stripped = tmp_path / "data", tmp_path / "full.zarr", tmp_path / "shared.zarr"
    ids = folder_dataset_store(data, full, [(32, 40), (24, 20)])
    assert st.strip_images(full, stripped) == []
    return data, full, stripped, ids


def files_below(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


# --------------------------------------------------------------------------- attach


def new_chunk_written(store: Path, since: float) -> bool:
    try:
        return any(p.stat().st_mtime > since for p in store.glob("images/*/image*/c/*/*/*"))
    except FileNotFoundError:  # renamed or removed by the attach under way: look again
        return False


def test_a_killed_attach_never_exposes_part_of_an_image(tmp_path):
    data, full, shared = tmp_path / "data", tmp_path / "full.zarr", tmp_path / "shared.zarr"
    ids = folder_dataset_store(data, full, [(1024, 1024)] * 6)
    st.strip_images(full, shared)
    originals = {i: st.open_store(full).read(i, "image") for i in ids}
    args = [*SAMAUG, "store", "attach", str(shared), "--data-root", str(data)]
    rng = random.Random(0)
    attached_after_kills = []
    for _ in range(3):
        started = time.time()
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while not new_chunk_written(shared, started) and proc.poll() is None:
            assert time.monotonic() < deadline, "attach wrote nothing within a minute"
            time.sleep(0.002)
        time.sleep(rng.uniform(0, 0.1))  # a random moment of the write
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        store = st.open_store(shared)
        attached = [i for i in ids if store.has(i, "image")]
        for image_id in ids:
            if image_id in attached:
                np.testing.assert_array_equal(store.read(image_id, "image"), originals[image_id])
            else:
                with pytest.raises(SamaugError, match="samaug store attach"):
                    store.read(image_id, "image")
        assert verify(str(shared)) == ([], 6)
        attached_after_kills.append(len(attached))
    assert attached_after_kills[-1] < 6  # killed mid-way, not after the end
    out = subprocess.run(args, capture_output=True, text=True)
    assert out.returncode == 0 and "6 images attached, 0 problems" in out.stdout, out.stderr
    store = st.open_store(shared)
    assert store.attrs["images_stripped"] is False
    for image_id in ids:
        np.testing.assert_array_equal(store.read(image_id, "image"), originals[image_id])
    assert not list(shared.glob("images/*/image.*"))  # no leftover partial image
    assert verify(str(shared)) == ([], 6)


def test_attach_refuses_a_store_with_a_link_and_writes_nothing_through_it(shared, tmp_path):
    data, _, stripped, ids = shared
    # A received store whose first group is a link to a folder elsewhere (holding a copy of
    # the group, so that the sha256 check alone would pass).
    elsewhere = tmp_path / "elsewhere"
    shutil.move(stripped / "images" / ids[0], elsewhere)
    (elsewhere / "keep.txt").write_text("mine")
    (stripped / "images" / ids[0]).symlink_to(elsewhere)
    before = files_below(elsewhere)
    out = subprocess.run(
        [*SAMAUG, "store", "attach", str(stripped), "--data-root", str(data)],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 1
    assert out.stderr.splitlines() == [
        f"error: {stripped}: will not attach images to it: {stripped / 'images' / ids[0]} is a "
        f"symbolic link (to {elsewhere}), and samaug never writes through links in a store; "
        "replace the links with the files they point to, or remove them"
    ]
    assert files_below(elsewhere) == before and (elsewhere / "keep.txt").read_text() == "mine"
    assert not (stripped / "images" / ids[1] / "image").exists()


def test_attach_reads_nothing_outside_the_data_root(shared, tmp_path):
    data, _, stripped, ids = shared
    outside = tmp_path / "etc"
    outside.mkdir()
    Image.fromarray(np.full((32, 40), 255, np.uint8)).save(outside / f"{ids[0]}.png")
    root = zarr.open_group(stripped, mode="r+")
    for masks in (str(outside), "../etc"):
        root.attrs["dataset"] = {**DATASET, "name": "folder", "reader_options": {"masks": masks}}
        with pytest.raises(SamaugError, match=r"reader option masks=.* leads to .*etc, outside"):
            attach_images(stripped, data)
    for hostile in ({"masks": 5}, {"confine": "false"}):
        root.attrs["dataset"] = {**DATASET, "name": "folder", "reader_options": hostile}
        with pytest.raises(SamaugError, match="which no dataset reader takes"):
            attach_images(stripped, data)
    assert not (stripped / "images" / ids[0] / "image").exists()
    # A file inside the data root that is a link to one outside it is refused too.
    (data / "img_link.png").symlink_to(outside / f"{ids[0]}.png")
    with pytest.raises(SamaugError, match=f"{data / 'img_link.png'} leads to {outside}"):
        get_reader("folder", data, confine=True)
    assert len(get_reader("folder", data).refs()) == 3  # without confine: as before


def test_attach_names_the_file_whose_pixels_differ(shared):
    data, _, stripped, ids = shared
    path = data / f"{ids[1]}.bmp"
    pixels = np.asarray(Image.open(path)).copy()
    pixels[0, 0] ^= 1
    Image.fromarray(pixels).save(path)
    attached, problems = attach_images(stripped, data)
    assert attached == 1 and len(problems) == 1
    assert f"{path} is not the image the priors were made from" in problems[0]
    assert st.open_store(stripped).attrs["images_stripped"] is True


# --------------------------------------------------------------------------- writers


def test_writers_refuse_a_store_with_links_and_leave_the_target_alone(tmp_path):
    path = tmp_path / "s.zarr"
    toy_store(path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("mine")
    link = path / "images" / "z_9"
    link.symlink_to(elsewhere)
    with pytest.raises(SamaugError, match=f"{link} is a symbolic link") as err:
        st.prepare_store(path, st.store_root_attrs(DATASET, MASKER))
    assert "\n" not in str(err.value)
    with pytest.raises(SamaugError, match=f"{link} is a symbolic link"):
        write(path, "z_9", "train", shape=(20, 20), n=1)
    assert files_below(elsewhere) == ["keep.txt"]


@pytest.mark.parametrize("image_id", ["zarr.json", "ZARR.JSON", "..", "../x", "__meta", ".a", ""])
def test_the_writer_refuses_ids_that_are_not_image_ids(tmp_path, image_id):
    path = tmp_path / "s.zarr"
    toy_store(path)
    with pytest.raises(SamaugError, match="image ID"):
        write(path, image_id, "train", shape=(20, 20), n=1)
    assert sorted(p.name for p in (path / "images").iterdir()) == ["a_1", "b_2", "c_3", "zarr.json"]
    assert verify(str(path)) == ([], 3)


# --------------------------------------------------------------------------- strip


def test_strip_copies_only_the_layout_never_through_a_link(tmp_path):
    path, dst = tmp_path / "s.zarr", tmp_path / "out" / "shared.zarr"
    data = toy_store(path)
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "id_rsa").write_text("SECRET KEY")
    (path / "images" / "a_1" / "notes").symlink_to(secret)
    (path / "images" / "a_1" / "label" / "c" / "9").symlink_to(secret / "id_rsa")
    (path / "images" / "evil").symlink_to(secret)
    (path / "images" / "c_3" / "image.partial").mkdir()
    (path / "README.txt").write_text("not the store")
    dst.parent.mkdir()
    left_out = st.strip_images(path, dst)
    assert left_out == [
        "README.txt",
        "images/a_1/label/c/9",
        "images/a_1/notes",
        "images/c_3/image.partial",
        "images/evil",
    ]
    copied = [p for p in dst.rglob("*")]
    assert not any(p.is_symlink() for p in copied)
    assert all(b"SECRET" not in p.read_bytes() for p in copied if p.is_file())
    for p in copied:
        if p.is_file():
            parts = p.relative_to(dst).parts
            assert p.name == "zarr.json" or (
                "c" in parts and all(s.isdigit() for s in parts[parts.index("c") + 1 :])
            )
    assert not list(dst.glob("images/*/image"))
    assert verify(str(dst)) == ([], 3)
    stripped = st.open_store(dst)
    np.testing.assert_array_equal(stripped.read("c_3", "seg_prior"), data["c_3"][3])
    assert sorted(p.name for p in dst.parent.iterdir()) == ["shared.zarr"]  # no partial copy


def test_strip_refuses_bad_sources_and_destinations(tmp_path):
    with pytest.raises(SamaugError, match="no such store"):
        st.strip_images(tmp_path / "absent.zarr", tmp_path / "a.zarr")
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "cat.png").write_bytes(b"png")
    with pytest.raises(SamaugError, match="is not a samaug store"):
        st.strip_images(folder, tmp_path / "b.zarr")
    path = tmp_path / "s.zarr"
    toy_store(path)
    for inside in (path / "copy.zarr", path / "images" / "copy"):
        with pytest.raises(SamaugError, match="must lie outside the store it copies"):
            st.strip_images(path, inside)
    with pytest.raises(SamaugError, match="exists"):
        st.strip_images(path, tmp_path)  # holds the source
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photos", "s.zarr"]
    assert verify(str(path)) == ([], 3)
