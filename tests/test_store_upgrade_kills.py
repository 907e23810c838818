"""`store upgrade` in place killed at any step: the store stays readable under its name, and
the next command recovers what the kill left (a store moved aside, a built copy, a
``.partial`` folder), so that nothing is lost and nothing lies about forever.

A kill is made in a subprocess (the real upgrade, on a real store) by ending it with
``os._exit(137)`` just before its Nth rename, exchange or removal of a folder."""

import os
import shutil
import subprocess
import sys

import pytest

from precompute import store as st
from tests.support.cli import ROOT, samaug
from tests.support.store_toys import same_images, toy_store

KILLED = """
import os, shutil, sys
from precompute import store as st
from precompute.store import in_place

stop, calls = int(sys.argv[2]), [0]

def counted(step):
    def call(*args, **kwargs):
        calls[0] += 1
        if calls[0] == stop:
            os._exit(137)
        return step(*args, **kwargs)
    return call

os.rename, os.replace = counted(os.rename), counted(os.replace)
shutil.rmtree = counted(shutil.rmtree)
in_place._exchange = counted(in_place._exchange if sys.argv[3] == "1" else lambda a, b: False)
st.upgrade_store(sys.argv[1])
"""


def upgrade_killed(folder, at: int, exchange: bool) -> int:
    """Exit status of an in-place upgrade of ``folder`` killed before its ``at``-th step."""
    command = [sys.executable, "-c", KILLED, str(folder), str(at), "1" if exchange else "0"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True).returncode


@pytest.mark.parametrize("exchange", [True, False], ids=["exchange", "two-renames"])
def test_an_upgrade_killed_at_any_step_is_recovered_by_the_next_command(tmp_path, exchange):
    reference = tmp_path / "reference.zarr"
    toy_store(reference, version=1)
    folder = tmp_path / "work" / "old.zarr"
    folder.parent.mkdir()
    steps = []
    for at in range(1, 40):
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(reference, folder)
        code = upgrade_killed(folder, at, exchange)
        if code == 0:
            break  # the upgrade took fewer steps: every kill point was tried
        assert code == 137
        left = sorted(p.name for p in folder.parent.iterdir())
        if exchange:  # readable under its name at every moment, before any recovery
            assert (folder / "zarr.json").is_file(), left
        steps.append(left)
        # The next command finds the store (the old one or the new one: both whole) ...
        result = samaug("store", "info", folder)
        assert result.returncode == 0, (left, result.stderr)
        same_images(reference, folder)
        # ... and the next upgrade finishes, removing every leftover.
        st.upgrade_store(folder)
        assert st.open_store(folder).attrs["schema_version"] == st.SCHEMA_VERSION
        assert sorted(p.name for p in folder.parent.iterdir()) == ["old.zarr"], left
        same_images(reference, folder)
    else:
        raise AssertionError("the upgrade never finished")
    # Kills were tried with the new store built beside the old and with it half-swapped.
    assert any(any(".upgraded." in name for name in left) for left in steps)
    if not exchange:
        assert any("old.zarr" not in left for left in steps)  # NAME missing for a moment


def test_what_an_older_samaug_left_at_a_kill_is_recovered(tmp_path):
    """An older upgrade moved the store to .NAME.version-1.<time> before renaming the new
    one (.NAME.upgraded.<pid>.<time>): killed between, NAME was missing."""
    reference = tmp_path / "reference.zarr"
    toy_store(reference, version=1)
    folder = tmp_path / "work" / "old.zarr"
    folder.parent.mkdir()
    st.upgrade_store(reference, folder.parent / ".new")
    os.rename(folder.parent / ".new", folder.parent / ".old.zarr.upgraded.4194999.1765100000")
    shutil.copytree(reference, folder.parent / ".old.zarr.version-1.1765100000000000000")
    (folder.parent / "..old.zarr.upgraded.4194999.1765100000.4194999.17.partial").mkdir()
    result = samaug("store", "info", folder)
    assert result.returncode == 0, result.stderr
    assert st.open_store(folder).attrs["schema_version"] == st.SCHEMA_VERSION  # the new one
    same_images(reference, folder)
    assert st.upgrade_store(folder) is None  # already current
    # The leftovers go with the next upgrade of a store that needs one.
    shutil.rmtree(folder)
    shutil.copytree(reference, folder)
    shutil.copytree(reference, folder.parent / ".old.zarr.version-1.1765100000000000000")
    st.upgrade_store(folder)
    assert sorted(p.name for p in folder.parent.iterdir()) == ["old.zarr"]


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")
@pytest.mark.parametrize("inject", ["rename:when=1", "renameat2:when=1", "unlinkat:when=3"])
def test_an_upgrade_killed_by_the_kernel_at_a_system_call_is_recovered(tmp_path, inject):
    """The same, with the kill made by strace's fault injection at a system call: the last
    rename of the built copy, the exchange, the removal of the old store."""
    reference = tmp_path / "reference.zarr"
    toy_store(reference, version=1)
    folder = tmp_path / "work" / "old.zarr"
    folder.parent.mkdir()
    shutil.copytree(reference, folder)
    call = inject.split(":")[0]
    strace = ["strace", "-f", "-qq", "-o", os.devnull, "-e", f"trace={call}"]
    strace += ["-e", f"inject={inject.replace(':', ':signal=KILL:')}"]
    command = [*strace, sys.executable, "-m", "samaug", "store", "upgrade", str(folder)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    killed = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    if "ptrace" in killed.stderr or "inject" in killed.stderr:
        pytest.skip(f"strace cannot inject here: {killed.stderr.strip()}")
    assert killed.returncode in (-9, 128 + 9), killed.stderr  # strace dies as it did
    assert (folder / "zarr.json").is_file()  # readable under its name
    assert samaug("store", "info", folder).returncode == 0
    st.upgrade_store(folder)
    assert st.open_store(folder).attrs["schema_version"] == st.SCHEMA_VERSION
    assert sorted(p.name for p in folder.parent.iterdir()) == ["old.zarr"]
    same_images(reference, folder)
