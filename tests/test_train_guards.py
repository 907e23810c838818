"""What a run refuses to do: train into a folder it did not make (the user's files, a store),
go on training once its loss is no longer a number, serve weights that are not numbers or
not of a model's types (a diverged run's, a foreign file's), and export a bundle over a run's
own files or a file that is not a bundle."""

import re
import shutil
from pathlib import Path

import pytest
import torch

from precompute.types import SamaugError, SettingError
from tests.support.cli import one_error_line, samaug
from tests.support.train_helpers import checkpoint, quiet, tiny, tiny_cli
from train.results.bundle import export_bundle
from train.results.loading import load_model
from train.training.loop import train

pytestmark = pytest.mark.glas_counts(train=4, testA=1)

# A learning rate that sends the weights far enough in one step for the next loss to be NaN.
DIVERGING = dict(lr=1e30, warmup_epochs=0, epochs=3, samples_per_epoch=4, val_fraction=0)


# ---------------------------------------------------------------- --out


def test_a_folder_with_files_a_run_did_not_write_is_refused_and_left_alone(glas_store, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "metrics.json").write_text('{"mine": 1}')
    with pytest.raises(SettingError, match=r"mine holds files a run did not write \(metrics"):
        train(tiny(glas_store, mine), log=quiet)
    assert sorted(p.name for p in mine.iterdir()) == ["metrics.json"]
    assert (mine / "metrics.json").read_text() == '{"mine": 1}'
    # ... and with a run's files beside the user's: still refused, nothing removed.
    (mine / "config.json").write_text("{}")
    (mine / "notes.txt").write_text("mine")
    with pytest.raises(SettingError, match=r"did not write \(notes.txt\); give a new or"):
        train(tiny(glas_store, mine), log=quiet)
    assert sorted(p.name for p in mine.iterdir()) == ["config.json", "metrics.json", "notes.txt"]


def test_the_store_or_a_folder_inside_it_is_refused_as_out(glas_store, tmp_path):
    store = shutil.copytree(glas_store, tmp_path / "glas.zarr")
    before = sorted(p.relative_to(store) for p in store.rglob("*"))
    with pytest.raises(SettingError, match=r"glas.zarr is a Zarr store"):
        train(tiny(store, store), log=quiet)
    with pytest.raises(SettingError, match=r"runs is inside a Zarr store \(.*glas.zarr\)"):
        train(tiny(store, store / "runs"), log=quiet)
    assert sorted(p.relative_to(store) for p in store.rglob("*")) == before
    result = samaug(*tiny_cli(store, store))
    assert result.returncode == 1
    assert "is a Zarr store" in one_error_line(result)


def test_a_started_run_and_an_empty_folder_are_taken(glas_store, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    train(tiny(glas_store, empty, epochs=1, val_fraction=0), log=quiet)
    assert checkpoint(empty)["epoch"] == 0
    # What a kill right after the run started leaves (config.json, log.csv, an orphaned
    # metrics.json of deleted checkpoints, a partial file): taken, the orphan removed.
    for name in ("last.pt", "best.pt"):
        (empty / name).unlink()
    (empty / ".last.pt.abc123.tmp").write_bytes(b"partial")
    (empty / "metrics.json").write_text("{}")
    train(tiny(glas_store, empty, epochs=1, val_fraction=0), log=quiet)
    assert checkpoint(empty)["epoch"] == 0 and not (empty / ".last.pt.abc123.tmp").exists()


# ---------------------------------------------------------------- divergence


@pytest.fixture(scope="module")
def diverged(glas_store, tmp_path_factory) -> tuple[Path, str]:
    """(run directory, error) of a run whose loss is NaN in its second epoch."""
    out = tmp_path_factory.mktemp("diverged") / "run"
    with pytest.raises(SamaugError) as err:
        train(tiny(glas_store, out, **DIVERGING), log=quiet)
    return out, str(err.value)


def test_a_diverging_run_stops_keeping_its_last_finite_checkpoint(diverged):
    out, error = diverged
    assert error == (
        f"training diverged: the loss of epoch 2, batch 1 is nan; {out / 'last.pt'} keeps "
        "the last finite weights; lower --lr, check --seg-scale and the other settings, and "
        "train again"
    )
    state = checkpoint(out)
    assert state["epoch"] == 0 and len(state["log"]) == 1
    assert all(torch.isfinite(t).all() for t in state["model"].values() if t.is_floating_point())
    assert checkpoint(out, "best.pt")["epoch"] == 0
    assert load_model(out, "last.pt", "cpu").config.lr == 1e30  # finite: served


def test_a_nan_loss_from_the_first_step_ends_in_one_line_saving_nothing(glas_store, tmp_path):
    result = samaug(*tiny_cli(glas_store, tmp_path / "run", "--seg-scale", "-1e308"))
    assert result.returncode == 1
    assert one_error_line(result) == (
        "error: training diverged: the loss of epoch 1, batch 1 is nan; nothing was saved; "
        "lower --lr, check --seg-scale and the other settings, and train again"
    )
    assert not (tmp_path / "run" / "last.pt").exists()
    assert not (tmp_path / "run" / "best.pt").exists()


@pytest.mark.parametrize(
    ("spoil", "message"),
    [
        (lambda t: t.fill_(float("nan")), "holds NaN or infinite values (its training diverged)"),
        (lambda t: t.fill_(float("-inf")), "holds NaN or infinite values"),
        (lambda t: t.to(torch.int8), "is of type torch.int8, not one of a model's"),
        (lambda t: t.to(torch.complex64), "is of type torch.complex64"),
    ],
    ids=["nan", "inf", "int8", "complex"],
)
def test_weights_that_are_not_numbers_of_a_model_are_refused_from_a_run_or_bundle(
    diverged, tmp_path, spoil, message
):
    run = shutil.copytree(diverged[0], tmp_path / "run")
    state = checkpoint(run)
    name = next(k for k, t in state["model"].items() if t.is_floating_point())
    state["model"][name] = spoil(state["model"][name].clone())
    torch.save(state, run / "best.pt")
    with pytest.raises(SamaugError, match=re.escape(f"best.pt: weight {name} {message}")):
        load_model(run, "best.pt", "cpu")
    if state["model"][name].dtype == torch.complex64:
        return  # safetensors has no complex type: such a bundle cannot be written
    bundle = export_bundle(run, tmp_path / "model.zip")
    # A bundle's tensor of another type is refused sooner, by its safetensors header
    # (checked against the model its config describes before any weight is read).
    if state["model"][name].dtype == torch.int8:
        message = f"model.safetensors: {name} is I8 "
        expected = f"model.zip: {message}"
    else:
        expected = f"model.zip: weight {name} {message}"
    with pytest.raises(SamaugError, match=re.escape(expected)):
        load_model(bundle, device="cpu")
    result = samaug("predict", bundle, "--images", tmp_path, "--out", tmp_path / "p")
    assert result.returncode == 1 and message in one_error_line(result)
    assert not (tmp_path / "p").exists()


# ---------------------------------------------------------------- export


def test_export_never_writes_a_bundle_over_run_files_or_other_files(diverged, tmp_path):
    run = shutil.copytree(diverged[0], tmp_path / "run")
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    for name in ("last.pt", "best.pt", "log.csv", "metrics.json"):
        result = samaug("export", run, run / name)
        assert one_error_line(result) == (
            f"error: {run / name} is a file of the run in {run}; give the bundle a name of "
            "its own, e.g. model.zip"
        )
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before
    notes = tmp_path / "notes.zip"
    notes.write_text("mine")
    with pytest.raises(SettingError, match="notes.zip exists and is not a model bundle"):
        export_bundle(run, notes)
    assert notes.read_text() == "mine"
    # A bundle is replaced, and a new name written.
    bundle = export_bundle(run, tmp_path / "model.zip")
    assert export_bundle(run, bundle, "last.pt") == bundle
    assert load_model(bundle, device="cpu").state["epoch"] == 0
