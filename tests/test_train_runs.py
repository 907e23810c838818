"""The run directory under stress: kills at any moment, damaged and unsafe checkpoints,
resuming with other settings, runs without validation, and every error one line."""

import json
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from precompute.types import SamaugError, SettingError
from tests.support.cli import ROOT, SAMAUG, one_error_line, samaug
from tests.support.train_helpers import (
    RunsCode,
    checkpoint,
    log_rows,
    make_glas_store,
    quiet,
    tiny,
    tiny_cli,
)
from train.training.config import TrainConfig
from train.training.loop import train


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def partial_files(run_dir: Path) -> list[str]:
    return sorted(p.name for p in run_dir.glob(".*.tmp"))


# ---------------------------------------------------------------- kills and repairs


def file_version(path: Path):
    try:
        info = path.stat()
    except FileNotFoundError:
        return None
    return (info.st_ino, info.st_mtime_ns, info.st_size)


def train_until_replaced(args: list[str], watch: Path, after: float = 0.0) -> int:
    """Run `samaug ARGS` and SIGKILL it ``after`` seconds after ``watch`` is next replaced
    (or let it finish first). Returns its exit status: -9 when killed."""
    before = file_version(watch)
    command = [*SAMAUG, *args]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    try:
        while proc.poll() is None and file_version(watch) == before:
            assert time.monotonic() < deadline, f"{watch} was never replaced"
            time.sleep(0.0005)
        time.sleep(after)
        proc.send_signal(signal.SIGKILL)  # nothing when it has finished
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode in (0, -signal.SIGKILL), stderr.decode()
    return proc.returncode


def test_kills_at_any_moment_leave_a_run_that_the_rerun_finishes_as_if_uninterrupted(
    glas_store, tmp_path
):
    # No validation images: best.pt is replaced every epoch, right after last.pt, so kills
    # land between the writes of an epoch as well as inside an epoch.
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    args = tiny_cli(glas_store, killed, "--epochs", "5", "--val-fraction", "0")
    result = samaug(*tiny_cli(glas_store, whole, "--epochs", "5", "--val-fraction", "0"))
    assert result.returncode == 0, result.stderr

    statuses = [
        train_until_replaced(args, killed / "last.pt"),  # right after last.pt
        train_until_replaced(args, killed / "best.pt"),  # right after best.pt
        train_until_replaced(args, killed / "log.csv"),  # right after log.csv
        train_until_replaced(args, killed / "last.pt", after=0.05),  # in the next epoch
    ]
    assert statuses[0] == -signal.SIGKILL and checkpoint(killed)["epoch"] < 4
    result = samaug(*args)
    assert result.returncode == 0, result.stderr

    assert same_weights(checkpoint(killed)["model"], checkpoint(whole)["model"])
    assert log_rows(killed) == log_rows(whole) and len(log_rows(whole)) == 5
    best = checkpoint(killed, "best.pt")  # loadable, of the right epoch, the same weights
    assert best["epoch"] == best["best_epoch"] == 4
    assert same_weights(best["model"], checkpoint(whole, "best.pt")["model"])
    metrics = json.loads((killed / "metrics.json").read_text())
    assert metrics == json.loads((whole / "metrics.json").read_text())
    assert partial_files(killed) == []


def test_resume_repairs_what_a_kill_between_two_writes_leaves(glas_store, tmp_path):
    config = tiny(glas_store, tmp_path / "run", epochs=3, val_fraction=0.0)
    run = Path(config.out)
    train(config, log=quiet, stop_after=1)
    best_of_epoch_0, log_of_epoch_0 = (run / "best.pt").read_bytes(), log_rows(run)
    train(config, log=quiet, stop_after=1)
    # What a kill right after epoch 1's last.pt was replaced leaves: best.pt and log.csv of
    # epoch 0, and a partial temporary file.
    (run / "best.pt").write_bytes(best_of_epoch_0)
    lines = (run / "log.csv").read_text().splitlines()
    (run / "log.csv").write_text("\n".join(lines[:-1]) + "\n")
    (run / ".best.pt.x1y2.tmp").write_bytes(b"partial")
    assert len(log_rows(run)) == 1 == len(log_of_epoch_0)

    train(config, log=quiet, stop_after=0)  # resume: no epoch, only the repairs
    assert checkpoint(run, "best.pt")["epoch"] == 1
    assert (run / "best.pt").read_bytes() == (run / "last.pt").read_bytes()
    assert [row["epoch"] for row in log_rows(run)] == ["1", "2"]  # counted from 1
    assert partial_files(run) == []

    (run / "best.pt").write_bytes(b"")  # the original defect: a 0-byte best.pt
    train(config, log=quiet, stop_after=0)
    assert checkpoint(run, "best.pt")["epoch"] == 1


def test_a_best_pt_that_cannot_be_repaired_is_named(glas_store, tmp_path):
    config = tiny(glas_store, tmp_path / "run", epochs=3, val_fraction=0.0)
    run = Path(config.out)
    train(config, log=quiet, stop_after=2)
    # A run whose best epoch (0) is older than its last: only best.pt holds those weights.
    state = checkpoint(run)
    torch.save({**state, "best_epoch": 0}, run / "last.pt")
    (run / "best.pt").write_bytes((run / "best.pt").read_bytes()[:1000])
    with pytest.raises(SamaugError, match=r"best.pt is damaged \(.*\), but the run's best is"):
        train(config, log=quiet)


def copy_run(run: Path, to: Path) -> Path:
    shutil.copytree(run, to)
    return to


@pytest.fixture(scope="module")
def finished_run(glas_store, tmp_path_factory) -> Path:
    """A finished tiny run (two epochs, validated)."""
    config = tiny(glas_store, tmp_path_factory.mktemp("finished") / "run")
    train(config, log=quiet)
    return Path(config.out)


def test_damaged_checkpoints_are_named_with_what_to_do(glas_store, finished_run, tmp_path):
    empty_last = copy_run(finished_run, tmp_path / "empty_last")
    (empty_last / "last.pt").write_bytes(b"")
    line = one_error_line(samaug(*tiny_cli(glas_store, empty_last, "--val-fraction", "0.25")))
    assert line == (
        f"error: {empty_last / 'last.pt'} is damaged (the file is empty); restore it from a "
        "copy, or delete it and best.pt to train the run again"
    )

    cut_best = copy_run(finished_run, tmp_path / "cut_best")
    (cut_best / "best.pt").write_bytes((cut_best / "best.pt").read_bytes()[:5000])
    line = one_error_line(samaug("eval", str(cut_best), "--device", "cpu"))
    assert line.startswith(f"error: {cut_best / 'best.pt'} is damaged (")
    assert line.endswith("restore it, or train the run again")


def test_a_checkpoint_that_would_run_code_is_refused(glas_store, finished_run, tmp_path):
    marker = tmp_path / "code_ran"
    hostile = {**checkpoint(finished_run, "best.pt"), "model": RunsCode(marker)}
    received = copy_run(finished_run, tmp_path / "received")
    torch.save(hostile, received / "best.pt")
    torch.save(hostile, received / "last.pt")
    torch.load(received / "best.pt", weights_only=False)  # the file is real: it runs code
    assert marker.exists()
    marker.unlink()

    line = one_error_line(samaug("eval", str(received), "--device", "cpu"))
    assert line.startswith(f"error: {received / 'best.pt'}: refused: it asks to build posix.system")
    line = one_error_line(samaug(*tiny_cli(glas_store, received, "--val-fraction", "0.25")))
    assert line.startswith(f"error: {received / 'last.pt'}: refused:")
    assert not marker.exists()


def test_a_finished_run_says_so_and_trains_nothing(glas_store, finished_run, tmp_path):
    again = copy_run(finished_run, tmp_path / "again")
    before = (again / "log.csv").read_text()
    lines = []
    train(tiny(glas_store, again), log=lines.append)
    assert f"{again} is finished (2 epochs): nothing to train" in lines
    assert (again / "log.csv").read_text() == before
    rows = before.splitlines()[1:]
    assert [row.split(",")[0] for row in rows] == ["1", "2"]  # epochs counted from 1


# ---------------------------------------------------------------- resuming


def test_resume_names_each_differing_setting_and_ignores_incidental_ones(glas_store, tmp_path):
    config = tiny(glas_store, tmp_path / "run", epochs=3)
    train(config, log=quiet, stop_after=1)
    # Another spelling of the store's path, other workers and device: the same run.
    respelt = str(glas_store.parent / "." / glas_store.name)
    same = tiny(respelt, config.out, epochs=3, workers=1, device="auto")
    train(same, log=quiet, stop_after=0)
    assert checkpoint(Path(config.out))["epoch"] == 0

    other = tiny(glas_store, config.out, epochs=4, lr=0.01, model_kwargs={"base_channels": 8})
    with pytest.raises(SettingError) as err:
        train(other, log=quiet)
    assert str(err.value) == (
        f"{config.out} holds a run with other settings (epochs: run has 3, this run 4; "
        "lr: run has 0.003, this run 0.01; model_kwargs.base_channels: run has 4, this run 8)"
        "; use a new --out, or the run's settings to continue it"
    )

    # A store made with other settings counts, wherever it lies.
    other_store = make_glas_store(tmp_path / "other", {"train": 8}, sigma=0.5)
    with pytest.raises(
        SettingError, match="store.masker.settings.sigma: run has 0.8, this run 0.5"
    ):
        train(tiny(other_store, config.out, epochs=3), log=quiet)


# ---------------------------------------------------------------- validation


def test_an_unknown_validation_split_is_refused_naming_the_splits(glas_store, tmp_path):
    out = tmp_path / "run"
    line = one_error_line(samaug(*tiny_cli(glas_store, out, "--val-split", "nosuch")))
    assert line == (
        f"error: --val-split 'nosuch': {glas_store} has no complete images in that split; "
        "its splits: testA (2 images), testB (2 images), train (8 images)"
    )
    assert not out.exists()


def test_no_validation_images_is_said_once_and_no_score_is_made_up(glas_store, tmp_path):
    out = tmp_path / "run"
    result = samaug(*tiny_cli(glas_store, out, "--val-fraction", "0.05"))  # 8 x 0.05 -> 0
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("no validation images") == 1
    said = result.stdout.replace(str(out), "RUN")  # the temporary path may hold "-1"
    assert "nan" not in said.lower() and "-1" not in said
    assert result.stdout.splitlines()[-1] == f"{out}: best.pt is the last epoch, 2"
    summary = json.loads((out / "metrics.json").read_text())["train"]
    assert summary["best_val_dice"] is None and summary["best_epoch"] == 2  # the last, from 1
    assert summary["validation"].startswith("no validation images (--val-fraction 0.05 of 8")
    assert [row["val_dice"] for row in log_rows(out)] == ["", ""]
    assert checkpoint(out, "best.pt")["epoch"] == 1


# ---------------------------------------------------------------- option errors


@pytest.mark.parametrize(
    "setting, message",
    [
        ({"batch_size": 0}, "--batch-size must be at least 1, not 0"),
        ({"epochs": 0}, "--epochs must be at least 1, not 0"),
        ({"lr": float("inf")}, "--lr must be a finite number, not inf"),
        ({"lr": 0.0}, "--lr must be greater than 0, not 0.0"),
        ({"weight_decay": -1e-4}, "--weight-decay must be at least 0, not -0.0001"),
        ({"weight_decay": float("nan")}, "--weight-decay must be a finite number, not nan"),
        ({"samples_per_epoch": 0}, "--samples-per-epoch must be at least 1, not 0"),
        ({"patch_size": 16}, "--patch-size must be at least 32, not 16"),
        ({"seg_scale": float("nan")}, "--seg-scale must be a finite number, not nan"),
        ({"val_fraction": 1.0}, r"--val-fraction must be in \[0, 1\), not 1.0"),
        ({"val_fraction": -0.1}, "--val-fraction must be at least 0, not -0.1"),
        ({"workers": -1}, "--workers must be at least 0, not -1"),
        ({"task": "semantic"}, "--task 'semantic': no such task; valid: binary, glands, nuclei"),
        ({"model": "segformer"}, "--model 'segformer': no such model; valid: attention_unet"),
    ],
)
def test_every_setting_is_checked_when_the_config_is_made(setting, message):
    with pytest.raises(SettingError, match=message):
        TrainConfig(store="any.zarr", **setting)


@pytest.mark.parametrize(
    "option, message",
    [
        (("--model-option", "width=8"), "--model-option width: model unet has no such option"),
        (("--fusion", "mul"), "--fusion 'mul': no such fusion; valid: add, concat"),
        (("--samples-per-epoch", "0"), "--samples-per-epoch must be at least 1, not 0"),
        (("--lr", "nan"), "--lr must be a finite number, not nan"),
        (("--device", "gpu7"), "--device 'gpu7' is not a device"),
        (("--mode", "both"), "Invalid value for '--mode'"),
        (("--model", "swin_unet", "--pretrained", "/no/swin.pth"), "--pretrained /no/swin.pth: no"),
        (
            ("--model", "swin_unet", "--weights-dir", "/no"),
            "/no/swin_tiny_patch4_window7_224.pth: no such file, and swin_unet starts from these "
            "ImageNet weights as its paper trains it; fetch them (make weights), give "
            "--pretrained PATH, or --pretrained none for a random start",
        ),
        (("--pretrained", "/no/w.pth"), "--pretrained /no/w.pth: unet takes no pretrained"),
        (
            ("--model-option", "pretrained=none"),
            "--model-option pretrained: give the weights with --pretrained PATH (or none)",
        ),
        (("--pretrained", "pnet=none"), "--pretrained pnet=...: this run trains unet"),
    ],
)
def test_train_option_errors_are_one_line_before_the_store_is_opened(tmp_path, option, message):
    # The store does not exist: had it been opened first, the error would say so.
    result = samaug(*tiny_cli(tmp_path / "nosuch.zarr", tmp_path / "run", *option))
    line = one_error_line(result)
    assert message in line and "nosuch.zarr" not in line
    assert not (tmp_path / "run").exists()


def test_eval_show_and_demo_option_errors_are_one_line(glas_store, finished_run, tmp_path):
    run = str(finished_run)
    cases = [
        (
            ("eval", run, "--split", "nosuch", "--device", "cpu"),
            f"error: --split 'nosuch': {glas_store} has no complete images in that split; "
            "its splits: testA (2 images), testB (2 images), train (8 images)",
        ),
        (("eval", run, "--min-size", "-1"), "error: --min-size must be at least 0, not -1"),
        (("eval", run, "--certainty", "sharpness"), "error: Invalid value for '--certainty'"),
        (
            ("eval", str(tmp_path / "none")),
            f"error: {tmp_path / 'none' / 'best.pt'}: no checkpoint; has `samaug train` "
            "finished this run?",
        ),
        (
            ("show", str(glas_store), "testC_9"),
            f"error: {glas_store}: no complete image 'testC_9'; it holds 12, e.g. testA_1",
        ),
        (("show", str(glas_store), "../x"), "error: image ID '../x' must be letters"),
        (("demo", "--out", str(tmp_path / "demo"), "--epochs", "0"), "error: --epochs must"),
    ]
    for args, start in cases:
        assert one_error_line(samaug(*args)).startswith(start), args
    assert not (tmp_path / "demo").exists()


# ---------------------------------------------------------------- a store that goes away


def test_a_store_server_lost_mid_training_ends_in_one_error_line(glas_store, tmp_path):
    from tests.support.http import serve

    out = tmp_path / "run"
    with serve(glas_store.parent) as url:
        args = tiny_cli(f"{url}/{glas_store.name}", out, "--epochs", "50", "--workers", "1")
        proc = subprocess.Popen(
            [*SAMAUG, *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 300
        while not (out / "last.pt").exists() and proc.poll() is None:
            assert time.monotonic() < deadline, "the first epoch never ended"
            time.sleep(0.01)
    # The server is gone: the next reads (in the DataLoader worker) fail.
    stdout, stderr = proc.communicate(timeout=300)
    result = subprocess.CompletedProcess(args, proc.returncode, stdout, stderr)
    line = one_error_line(result)
    assert url.removeprefix("http://") in line  # says which server could not be reached
    assert "DataLoader worker" not in line
    assert checkpoint(out)["epoch"] >= 0  # what was done is kept for a rerun
