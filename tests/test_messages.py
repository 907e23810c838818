"""The right words (issue 15, item 19): each message says what happened and what to do,
not something near it."""

import json
import os
import socket
import subprocess
import sys

import pytest
import torch

from precompute.pipeline import run as run_priors
from precompute.store import Target, lock, open_store, pack_store
from precompute.types import SamaugError, SettingError
from samaug.reproduce.driver import ReproduceSettings, weights_for
from tests.support.cli import one_error_line, samaug
from tests.support.http import running
from tests.support.image_files import rgb, save
from tests.support.store_toys import chunk_file, toy_store
from train.results.loading import load_model
from train.results.provenance import MaskerChoice
from train.results.serving import PredictConfig, _priors_config


@pytest.fixture
def live_process():
    """A process of this host that is running (and its lock record)."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    record = {
        "host": socket.gethostname(),
        "pid": child.pid,
        "process_start": lock._process_start(child.pid),
        "started": "2026-01-01T00:00:00+00:00",
        "refreshed": "2026-01-01T00:00:00+00:00",
        "run": "x",
        "command": "samaug priors",
    }
    yield record
    child.kill()
    child.wait()


def test_break_lock_never_breaks_a_live_run_of_this_host(tmp_path, live_process):
    target = Target(tmp_path / "s.zarr")
    (tmp_path / "s.zarr.lock").write_text(json.dumps(live_process))
    with pytest.raises(SamaugError) as refused:
        lock.acquire(target, break_lock=True)
    assert str(refused.value) == (
        f"{tmp_path / 's.zarr'} is being written by samaug priors on host "
        f"{socket.gethostname()}, process {live_process['pid']}, started "
        "2026-01-01T00:00:00+00:00, last refreshed 2026-01-01T00:00:00+00:00 (lock "
        f"{tmp_path / 's.zarr.lock'}), which is still running on this host; wait for it to "
        "finish, or stop it, then run this again (--break-lock never breaks the lock of a live "
        "run of this host)"
    )
    assert json.loads((tmp_path / "s.zarr.lock").read_text()) == live_process


def test_broken_and_stale_locks_are_told_apart(tmp_path):
    target = Target(tmp_path / "s.zarr")
    elsewhere = {"host": "elsewhere", "pid": 1, "started": "t0", "refreshed": "t1"}
    (tmp_path / "s.zarr.lock").write_text(json.dumps({**elsewhere, "command": "samaug priors"}))
    broken = lock.acquire(target, break_lock=True)
    assert broken.replaced == (
        "the lock of samaug priors on host elsewhere, process 1, started t0, last refreshed t1, "
        "broken with --break-lock"
    )
    broken.release()
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    gone = {
        **elsewhere,
        "host": socket.gethostname(),
        "pid": int(dead.stdout),
        "command": "samaug priors",
    }
    (tmp_path / "s.zarr.lock").write_text(json.dumps(gone))
    stale = lock.acquire(target)
    assert stale.replaced.startswith("the lock of a run that is no longer running (samaug priors")
    stale.release()


def test_an_unreadable_lock_is_said_to_be_one(tmp_path):
    (tmp_path / "s.zarr.lock").write_text("{ not json")
    with pytest.raises(SamaugError) as refused:
        lock.acquire(Target(tmp_path / "s.zarr"))
    assert str(refused.value) == (
        f"{tmp_path / 's.zarr.lock'} is there but cannot be read (not the JSON a samaug run "
        f"writes); if no run is writing {tmp_path / 's.zarr'}, run again with --break-lock"
    )
    assert "None" not in lock.describe({"unreadable": True})


def test_files_that_are_no_checkpoints_are_called_so(tmp_path):
    text, one = tmp_path / "model.txt", tmp_path / "one.pt"
    text.write_text("a text file, given as a model\n")
    one.write_bytes(b"\x80")
    for path, head in ((text, "b'a te'"), (one, "b'\\x80'")):
        with pytest.raises(SamaugError) as refused:
            load_model(path, device="cpu")
        assert str(refused.value) == (
            f"{path} is not a checkpoint (a samaug checkpoint is the zip file torch.save "
            f"writes; this one starts with {head}); give a run directory, a bundle or a .pt "
            "checkpoint"
        )
    cut = tmp_path / "cut.pt"
    torch.save({"x": torch.zeros(3)}, cut)
    cut.write_bytes(cut.read_bytes()[:-30])
    with pytest.raises(SamaugError, match=r"cut.pt is damaged \(a zip cut short or altered\)"):
        load_model(cut, device="cpu")


def test_url_destinations_are_kept_as_given(tmp_path):
    toy_store(tmp_path / "s.zarr", consolidated=True)
    strip = one_error_line(samaug("store", "strip", tmp_path / "s.zarr", "s3://bucket/x.zarr"))
    assert strip.startswith(
        "error: s3://bucket/x.zarr: derived stores are written to this machine; write it here"
    )
    repair = one_error_line(samaug("store", "repair", "http://127.0.0.1:9/x.zarr"))
    assert repair.startswith(
        "error: http://127.0.0.1:9/x.zarr: repair changes a store in place; give a local store "
        "folder"
    )


def test_a_missing_store_url_is_not_a_connection_problem(tmp_path):
    toy_store(tmp_path / "s.zarr", consolidated=True)
    with running(tmp_path) as server:
        for name in ("missing.zarr", "missing.zarr.zip"):
            with pytest.raises(SamaugError) as refused:
                open_store(f"{server.url}/{name}")
            assert str(refused.value) == (
                f"{server.url}/{name}: no such store (nothing found at this address); check "
                "the address"
            )


def test_verify_of_a_packed_store_advises_what_a_packed_store_allows(tmp_path):
    toy_store(tmp_path / "s.zarr", consolidated=True)
    chunk_file(tmp_path / "s.zarr", "a_1", "image").write_bytes(b"damaged")
    pack_store(tmp_path / "s.zarr", tmp_path / "s.zarr.zip")
    result = samaug("store", "verify", tmp_path / "s.zarr.zip")
    assert result.returncode == 1
    advice = result.stdout.strip().splitlines()[-1]
    assert advice == (
        "a packed store is read-only: pack it again from its source, or `samaug store unpack` "
        "it and run `samaug store repair` on the folder, which marks the 1 images with a "
        "problem to be redone by the next `samaug priors` with the store's settings"
    )
    with pytest.raises(SamaugError) as damaged:
        open_store(tmp_path / "s.zarr.zip").read("a_1", "image")
    assert "`samaug store repair` marks" not in str(damaged.value)
    assert "a packed store is read-only" in str(damaged.value)


def test_pretrained_weights_for_a_model_that_takes_none_are_named_so(tmp_path):
    settings = ReproduceSettings(
        table="monuseg", store=str(tmp_path / "s.zarr"), pretrained={"unet": "X"}
    )
    with pytest.raises(SettingError) as refused:
        weights_for(settings, "unet")
    assert str(refused.value) == "--pretrained unet=X: unet takes no pretrained weights"


def test_the_lock_of_a_predict_names_predict(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    save(images / "x.png", rgb(40, 50))
    config = PredictConfig(model="m", out=str(tmp_path / "o"), images=str(images), device="cpu")
    masker = MaskerChoice("superpixel", None, {})
    priors = _priors_config(config, masker, str(tmp_path))
    assert priors.command == "samaug predict"
    seen = []

    def on_progress(*_):
        seen.append(json.loads(open(f"{priors.store}.lock").read())["command"])

    run_priors(priors, on_progress=on_progress)
    assert seen == ["samaug predict"]
    assert not os.path.exists(f"{priors.store}.lock")
    assert open_store(priors.store).ids() == ["x"]
