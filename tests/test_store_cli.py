"""`samaug store ...` with a bad argument: one `error:` line on stderr, exit 1, no traceback.
Each command runs as a real subprocess."""

import re
import subprocess
import sys

import pytest
from store_toys import toy_store

SAMAUG = [sys.executable, "-m", "samaug"]


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
        + [(["store", "attach", str(store), *root], "unknown dataset 'toy'")]
    )
