"""Training you can watch: TensorBoard events and progress.png from a real run (continued
across a resume), progress reported step by step, and the command line's bars."""

import csv
import io
import re
import time

import numpy as np
import pytest
from PIL import Image
from rich.console import Console
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from samaug.commands.bars import Bars
from tests.support.train_helpers import tiny
from train.training.loop import train
from train.training.watch import IMAGE_EVERY

pytestmark = pytest.mark.glas_counts(train=5)


def events(run_dir) -> EventAccumulator:
    accumulator = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"images": 0})
    accumulator.Reload()
    return accumulator


def test_a_run_writes_curves_images_and_progress_png_that_continue_across_a_resume(
    glas_store, tmp_path
):
    config = tiny(glas_store, tmp_path / "run", epochs=IMAGE_EVERY + 1, val_fraction=0.2)
    calls = []
    train(config, log=lambda line: None, stop_after=2, progress=lambda *c: calls.append(c))
    assert calls[:3] == [("epoch 1/6", 0, 2), ("epoch 1/6", 1, 2), ("epoch 1/6", 2, 2)]
    assert ("validation", 1, 1) in calls
    train(config, log=lambda line: None)  # resumes at epoch 3

    with open(tmp_path / "run" / "log.csv") as f:
        log = list(csv.DictReader(f))
    found = events(tmp_path / "run")
    loss = found.Scalars("train/loss")
    # One point per epoch at the step that ends it, each step once although the second
    # call resumed, with log.csv's values.
    assert [e.step for e in loss] == [int(row["step"]) for row in log] == [2, 4, 6, 8, 10, 12]
    # log.csv keeps 6 decimals
    assert [e.value for e in loss] == pytest.approx([float(r["train_loss"]) for r in log], abs=1e-6)
    assert [e.value for e in found.Scalars("validation/dice")] == pytest.approx(
        [float(r["val_dice"]) for r in log], abs=1e-6
    )
    assert [e.value for e in found.Scalars("train/lr")] == pytest.approx(
        [float(r["lr"]) for r in log], rel=1e-5
    )
    # Validation images: the first epoch of each call, every IMAGE_EVERY-th and the last.
    (tag,) = found.Tags()["images"]
    assert tag.startswith("validation/train_")
    assert [e.step for e in found.Images(tag)] == [2, 6, 10, 12]
    grid = np.array(Image.open(io.BytesIO(found.Images(tag)[0].encoded_image_string)))
    assert grid.shape == (96, 5 * 128 + 4 * 4, 3)  # input, two priors, prediction, target

    png = Image.open(tmp_path / "run" / "progress.png")
    assert png.size == (800, 600)


def test_bars_draw_on_a_terminal_and_a_line_every_interval_elsewhere(capsys, monkeypatch):
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=120)
    with Bars(enabled=True, console=console) as bars:
        bars("epoch 1/3", 1, 4)
        bars.echo("a line above the bars")
        bars("validation", 2, 2)  # complete: removed
    drawn = screen.getvalue()
    assert "epoch 1/3" in drawn and "1/4" in drawn and "ETA" in drawn
    assert "a line above the bars" in drawn

    with Bars(enabled=False, console=console) as bars:
        bars("epoch 2/3", 1, 4)  # within the first 30 s: no line
        bars.echo("plain")
    assert "epoch 2/3" not in screen.getvalue()
    out = capsys.readouterr()
    assert out.out == "plain\n" and out.err == ""

    # In a log: a line each time the interval (SAMAUG_PROGRESS_SECONDS) has passed.
    monkeypatch.setenv("SAMAUG_PROGRESS_SECONDS", "0.05")
    with Bars(enabled=False) as bars:
        bars("testA", 1, 80)  # not 0.05 s since the command began yet
        time.sleep(0.06)
        bars("testA", 5, 80)
        bars("testA", 6, 80)  # too soon after the last line
        time.sleep(0.06)
        bars("testA", 80, 80)
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(" (")[0] for line in lines] == [
        "progress: testA 5/80",
        "progress: testA 80/80",
    ]
    assert re.fullmatch(r"progress: testA 80/80 \(\d+\.\d\d/s, 0 s\)", lines[1]), lines[1]


def test_download_bars_count_bytes_and_take_an_unknown_length():
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=120)
    with Bars(enabled=True, console=console, bytes=True) as bars:
        bars("vit_h", 1_500_000, 2_564_550_879)
        bars("swin_t", 3_000_000, 0)  # no Content-Length: drawn without an end
        assert set(bars._tasks) == {"vit_h", "swin_t"}
        bars("vit_h", 2_564_550_879, 2_564_550_879)
        assert set(bars._tasks) == {"swin_t"}
    drawn = screen.getvalue()
    assert "0.0/2.6 GB" in drawn and "3.0/? MB" in drawn
