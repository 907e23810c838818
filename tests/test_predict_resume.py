"""`samaug predict` interrupted and run again: nothing lost, nothing silently wrong.

A run stopped after some images (Ctrl-C, a kill) is resumed by the same command: the images
it finished are kept, the rest predicted, and predictions.json names them all; another
command into that folder replaces its files. Two images that would write one file are
refused before anything is made. A SIGTERM or Ctrl-C during the priors stage removes the
temporary priors store and says one line. An interrupted eval's saved predictions are
replaced by its rerun."""

import dataclasses
import json
import os
import shutil
import signal

import numpy as np
import pytest

from precompute.imageio import read_pixels
from precompute.types import SettingError
from tests.support.cli import interrupted, samaug
from tests.support.train_helpers import tiny_joint_run
from train.inference.predictor import PredictSettings
from train.results.evaluation import evaluate_run, prepare_evaluation, score_run
from train.results.prediction_files import read_index
from train.results.prediction_journal import JOURNAL_NAME
from train.results.saving import FileSettings
from train.results.serving import PredictConfig, predict


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_sam_checkpoint):
    """(data folder, store, run directory) of the tiny joint model."""
    return tiny_joint_run(tmp_path_factory.mktemp("resume"), tiny_sam_checkpoint)


def copies(data, folder, names) -> str:
    """A folder of images named ``names`` (stems), each a copy of a testA image."""
    folder.mkdir()
    sources = sorted(p for p in data.glob("testA_*.bmp") if not p.stem.endswith("_anno"))
    for index, name in enumerate(names):
        shutil.copy(sources[index % len(sources)], folder / f"{name}.bmp")
    return str(folder)


class Interrupt(KeyboardInterrupt):
    """What Ctrl-C raises, raised by a progress callback after some images."""


def stop_after(images: int):
    def progress(stage: str, done: int, total: int) -> None:
        if stage == "predict" and done == images:
            raise Interrupt

    return progress


def files_of(folder) -> dict[str, int]:
    """{file name: modification time} of the prediction files (not the index or journal)."""
    names = {"predictions.json", JOURNAL_NAME}
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir() if p.name not in names}


def test_an_interrupted_predict_resumes_keeping_the_finished_images(trained, tmp_path):
    data, _, run_dir = trained
    config = PredictConfig(
        model=str(run_dir),
        out=str(tmp_path / "out"),
        images=copies(data, tmp_path / "new", ["a", "b", "c", "d"]),
        workers=0,
        device="cpu",
        files=FileSettings(probabilities=True, overlay=True),
    )
    with pytest.raises(Interrupt):
        predict(config, progress=stop_after(2))
    out = tmp_path / "out"
    assert not (out / "predictions.json").exists() and (out / JOURNAL_NAME).exists()
    finished = files_of(out)
    assert sorted(finished) == sorted(
        f"{i}{suffix}" for i in "ab" for suffix in (".png", ".npz", "_overlay.png")
    )
    # A kill while c's files were being written: its journal line says so, a file of it is
    # there, and the last line was cut.
    with open(out / JOURNAL_NAME, "a") as journal:
        journal.write(json.dumps({"writing": "c", "files": ["c.png", "c.npz"]}) + "\n")
        journal.write('{"done": {"image_id": "c", "sha')
    (out / "c.png").write_bytes(b"half a png")

    # The same command again: a and b kept as they were, c and d made (priors of those
    # two only), the index names all four in order, the journal is gone.
    calls = []
    summary = predict(config, progress=lambda *call: calls.append(call))
    assert summary.kept == 2 and summary.priors.total == 2 and ("priors", 2, 2) in calls
    assert {name: files_of(out)[name] for name in finished} == finished
    assert not (out / JOURNAL_NAME).exists()
    index = read_index(out)
    assert [entry["image_id"] for entry in index["images"]] == ["a", "b", "c", "d"]
    assert read_pixels(out / "c.png").shape == (64, 80)
    # ... and the folder is what an uninterrupted run writes.
    whole = predict(dataclasses.replace(config, out=str(tmp_path / "whole")))
    assert whole.kept == 0 and read_index(tmp_path / "whole")["images"] == index["images"]
    for name in sorted(files_of(out)):
        assert np.array_equal(
            read_pixels(out / name)
            if name.endswith(".png")
            else np.load(out / name)["probability"],
            read_pixels(tmp_path / "whole" / name)
            if name.endswith(".png")
            else np.load(tmp_path / "whole" / name)["probability"],
        ), name


def test_another_command_into_an_interrupted_folder_replaces_its_files(trained, tmp_path):
    data, _, run_dir = trained
    images = copies(data, tmp_path / "new", ["a", "b", "c"])
    config = PredictConfig(
        model=str(run_dir), out=str(tmp_path / "out"), images=images, workers=0, device="cpu"
    )
    with pytest.raises(Interrupt):
        predict(config, progress=stop_after(2))
    other = dataclasses.replace(config, settings=PredictSettings(tta="flip"), strategy="raw")
    summary = predict(other)
    assert summary.kept == 0 and summary.priors is None
    assert read_index(tmp_path / "out")["made_by"]["settings"]["tta"] == "flip"
    assert sorted(files_of(tmp_path / "out")) == ["a.png", "b.png", "c.png"]
    # A folder with files of its own is still refused, journal or not.
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    with pytest.raises(SettingError, match=r"mine holds other files \(notes\.txt\)"):
        predict(dataclasses.replace(other, out=str(tmp_path / "mine")))


def test_images_whose_files_would_collide_are_refused_before_anything_is_made(trained, tmp_path):
    data, _, run_dir = trained
    images = copies(data, tmp_path / "new", ["x", "x_overlay", "y"])
    config = PredictConfig(
        model=str(run_dir),
        out=str(tmp_path / "out"),
        images=images,
        strategy="raw",
        device="cpu",
        files=FileSettings(overlay=True),
    )
    with pytest.raises(
        SettingError, match="images 'x' and 'x_overlay' would both write x_overlay.png"
    ):
        predict(config)
    assert not (tmp_path / "out").exists()
    result = samaug(
        "predict", run_dir, "--images", images, "--out", tmp_path / "cli", "--overlay",
        "--strategy", "raw", "--device", "cpu",
    )  # fmt: skip
    assert result.returncode == 1 and result.stderr.startswith("error: images 'x' and")
    assert len(result.stderr.splitlines()) == 1 and not (tmp_path / "cli").exists()
    # Without the overlay, each image writes its own files: all three, listed once each.
    summary = predict(dataclasses.replace(config, files=FileSettings()))
    assert [entry["files"] for entry in summary.entries] == [
        {"mask": "x.png"},
        {"mask": "x_overlay.png"},
        {"mask": "y.png"},
    ]
    labelled = {name: read_pixels(tmp_path / "out" / name) for name in ("x.png", "x_overlay.png")}
    assert all(pixels.ndim == 2 for pixels in labelled.values())


@pytest.mark.parametrize(
    ("signum", "group", "code"),
    [(signal.SIGTERM, False, 143), (signal.SIGINT, True, 130)],
    ids=["sigterm", "ctrl-c"],
)
def test_a_signal_during_the_priors_stage_removes_the_temporary_store(
    trained, tmp_path, signum, group, code
):
    data, _, run_dir = trained
    images = copies(data, tmp_path / "new", [f"img_{i}" for i in range(40)])
    scratch = tmp_path / "tmp"
    scratch.mkdir()

    def priors_started() -> bool:  # the priors store exists: the workers are writing it
        return any(scratch.glob("samaug-priors-*/priors.zarr/zarr.json"))

    result = interrupted(
        "predict", run_dir, "--images", images, "--out", tmp_path / "out", "--device", "cpu",
        when=priors_started, signum=signum, group=group, env={**os.environ, "TMPDIR": str(scratch)},
    )  # fmt: skip
    assert result.returncode == code, result.stderr
    assert result.stderr.splitlines() == [
        f"error: stopped by {signal.Signals(signum).name}; run the same command again to resume"
    ]
    assert list(scratch.glob("samaug-priors-*")) == []  # (Dask keeps its own scratch space)
    # Nothing was predicted yet: the rerun starts clean and finishes.
    assert not (tmp_path / "out" / "predictions.json").exists()


def test_an_interrupted_eval_with_saved_predictions_runs_again(trained, tmp_path):
    _, _, run_dir = trained
    run = shutil.copytree(run_dir, tmp_path / "run")
    saved = tmp_path / "saved"

    def stop(split: str, done: int, total: int) -> None:
        raise Interrupt

    job = prepare_evaluation(run, device="cpu", splits=["testA"], save_predictions=saved)
    with pytest.raises(Interrupt):
        score_run(job, progress=stop)
    raw = saved / "testA" / "raw"
    assert sorted(p.name for p in raw.iterdir()) == [JOURNAL_NAME, "testA_1.png"]
    # The same command again replaces what the interrupted one wrote, and finishes.
    evaluate_run(run, device="cpu", splits=["testA"], save_predictions=saved)
    for strategy in ("raw", "samaug", "ensemble", "select"):
        index = read_index(saved / "testA" / strategy)
        assert [entry["image_id"] for entry in index["images"]] == ["testA_1", "testA_2"]
        assert sorted(p.name for p in (saved / "testA" / strategy).iterdir()) == [
            "predictions.json",
            "testA_1.png",
            "testA_2.png",
        ]
