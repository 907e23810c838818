"""`samaug store ...` with a bad argument: one `error:` line on stderr, exit 1, no traceback.
Each command runs as a real subprocess."""

import re
import subprocess

import pytest
import zarr

from tests.support.cli import SAMAUG
from tests.support.store_toys import toy_store


@pytest.fixture
def bad(tmp_path):
    """A missing path, a file and a folder that is not a store, with what the error says."""
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "cat.png").write_bytes(b"png")
    afile = tmp_path / "notes.txt"
    afile.write_text("x")
    return {
        tmp_path / "absent.zarr": "no such store",
        afile: "not a store|not a samaug store",
        folder: "is not a samaug store",
    }


def one_error_each(cases: list[tuple[list[str], str]]) -> None:
    """Run each command line (at once, as subprocesses); each must fail with one line that
    matches its pattern."""
    procs = [
        (subprocess.Popen([*SAMAUG, *args], stderr=subprocess.PIPE, text=True), expected)
        for args, expected in cases
    ]
    for proc, expected in procs:
        _, stderr = proc.communicate(timeout=120)
        lines = stderr.splitlines()
        assert proc.returncode == 1, stderr
        assert len(lines) == 1 and lines[0].startswith("error: "), stderr
        assert re.search(expected, lines[0]), lines[0]


def test_info_with_a_bad_store(bad):
    one_error_each([(["store", "info", str(p)], expected) for p, expected in bad.items()])


def test_verify_with_a_bad_store(bad):
    one_error_each([(["store", "verify", str(p)], expected) for p, expected in bad.items()])


def test_repair_with_a_bad_store(bad):
    one_error_each([(["store", "repair", str(p)], expected) for p, expected in bad.items()])


def test_strip_with_a_bad_source_or_destination(bad, tmp_path):
    store = tmp_path / "s.zarr"
    toy_store(store)
    out = str(tmp_path / "out.zarr")
    one_error_each(
        [(["store", "strip", str(p), out], expected) for p, expected in bad.items()]
        + [(["store", "strip", str(store), str(store / "copy")], "must lie outside")]
    )
    assert not (tmp_path / "out.zarr").exists() and not (store / "copy").exists()


def test_attach_with_a_bad_store_or_data_root(bad, tmp_path):
    store = tmp_path / "s.zarr"
    toy_store(store)  # its dataset "toy" has no reader
    root = ["--data-root", str(tmp_path)]
    one_error_each(
        [(["store", "attach", str(p), *root], expected) for p, expected in bad.items()]
        + [(["store", "attach", str(store), *root], "DATASET 'toy': no such dataset; valid: ")]
    )


def test_pack_merge_subset_unpack_upgrade_with_bad_input(bad, tmp_path):
    store = tmp_path / "s.zarr"
    toy_store(store)
    other = tmp_path / "other.zarr"
    toy_store(other)
    zarr.open_group(other, mode="r+").attrs["masker"] = {"kind": "superpixel", "settings": {}}
    ids = tmp_path / "ids.txt"
    ids.write_text("a_1\n../etc\n")
    out = str(tmp_path / "out.zarr")
    one_error_each(
        [(["store", "pack", str(p), out + ".zip"], expected) for p, expected in bad.items()]
        + [
            (["store", "pack", str(store), out], "add .zarr.zip"),
            (["store", "unpack", str(store), out], "not a .zarr.zip file"),
            (["store", "merge", str(store), out], "at least two stores"),
            (["store", "subset", str(store), out], "choose what to keep"),
            (["store", "subset", str(store), out, "--split", "val"], r"split\(s\) val"),
            (["store", "subset", str(store), out, "--ids", str(ids)], "line 2: image ID '../etc'"),
            (["store", "upgrade", f"{store}.zip"], "no such store"),
            (["store", "info", "http://127.0.0.1:9/s.zarr"], "reading zarr.json failed|cannot"),
        ]
    )
    # Other settings: the settings that differ are listed, one a line.
    merge = subprocess.run(
        [*SAMAUG, "store", "merge", str(store), str(other), out], capture_output=True, text=True
    )
    assert merge.returncode == 1 and merge.stderr.splitlines()[1:3] == [
        "  masker.settings.method: s.zarr has 'slic', other.zarr '<unset>'",
        "  masker.settings.scales: s.zarr has [1, 2], other.zarr '<unset>'",
    ]
    assert not (tmp_path / "out.zarr").exists() and not list(tmp_path.glob("out.zarr*"))
    assert not list(tmp_path.glob(".*partial"))


def test_pack_then_info_and_verify_the_file(tmp_path):
    store = tmp_path / "s.zarr"
    toy_store(store)
    packed = tmp_path / "s.zarr.zip"
    done = subprocess.run(
        [*SAMAUG, "store", "pack", str(store), str(packed)], capture_output=True, text=True
    )
    assert done.returncode == 0 and done.stdout.startswith(f"{packed}: 3 images in one file of")
    info = subprocess.run([*SAMAUG, "store", "info", str(packed)], capture_output=True, text=True)
    assert "layout     one shard per array, consolidated metadata" in info.stdout, info.stderr
    check = subprocess.run(
        [*SAMAUG, "store", "verify", str(packed)], capture_output=True, text=True
    )
    assert check.returncode == 0 and check.stdout.strip() == "3 images checked, 0 problems"


def test_ls_lists_each_image_and_info_tells_a_subset_from_unfinished_work(tmp_path):
    store = tmp_path / "s.zarr"
    toy_store(store)
    listed = subprocess.run([*SAMAUG, "store", "ls", str(store)], capture_output=True, text=True)
    assert listed.returncode == 0, listed.stderr
    assert [line.split() for line in listed.stdout.splitlines()] == [
        ["id", "split", "size", "masks", "label"],
        ["c_3", "test", "257x513", "70", "yes"],
        ["a_1", "train", "300x270", "12", "yes"],
        ["b_2", "train", "40x33", "0", "no"],
    ]

    subset = tmp_path / "sub.zarr"
    made = subprocess.run(
        [*SAMAUG, "store", "subset", str(store), str(subset), "--split", "train"],
        capture_output=True,
        text=True,
    )
    assert made.returncode == 0, made.stderr
    info = subprocess.run([*SAMAUG, "store", "info", str(subset)], capture_output=True, text=True)
    lines = [line.strip() for line in info.stdout.splitlines()]
    assert "test         not in this subset (the dataset has 1)" in lines, info.stdout
    assert "train        2 of 2 complete" in lines
    listed = subprocess.run([*SAMAUG, "store", "ls", str(subset)], capture_output=True, text=True)
    assert [line.split()[0] for line in listed.stdout.splitlines()] == ["id", "a_1", "b_2"]
