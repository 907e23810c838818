"""Training curves (train/progress.py): progress.png from log.csv, and TensorBoard events."""

import time

import numpy as np
import pytest
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from precompute.types import InputError, SettingError
from train.training.run_log import (
    BEST_COLOUR,
    DICE_COLOUR,
    GRID_GAP,
    LOSS_COLOUR,
    RunLogger,
    read_log,
    validation_grid,
    write_progress_png,
)

HEADER = "epoch,step,lr,train_loss,val_dice,seconds\n"


def colour_pixels(png, colour: str) -> np.ndarray:
    """HxW bool: pixels of ``png`` within a few levels of the hex ``colour``."""
    rgb = np.array(Image.open(png).convert("RGB")).astype(int)
    target = np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)])
    return np.abs(rgb - target).max(axis=2) <= 8


def test_progress_png_draws_both_curves_and_stars_the_best_epoch(tmp_path):
    log = tmp_path / "log.csv"
    log.write_text(
        HEADER + "0,10,1e-3,0.9,nan,1\n1,20,1e-3,0.7,0.5,1\n2,30,1e-3,0.5,,1\n"
        "3,40,1e-3,0.4,0.7,1\n4,50,1e-3,0.35,0.65,1\n"
    )
    out = write_progress_png(log, tmp_path / "progress.png")
    assert out == tmp_path / "progress.png"
    assert Image.open(out).size == (800, 600)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file
    loss, dice, best = (colour_pixels(out, c) for c in (LOSS_COLOUR, DICE_COLOUR, BEST_COLOUR))
    rows = np.arange(600)[:, None]
    assert loss.sum() > 500 and dice.sum() > 500 and best.sum() > 50
    assert (loss & (rows < 300)).sum() == loss.sum()  # the loss panel is on top
    assert (dice & (rows > 300)).sum() > 0.95 * dice.sum()  # Dice below (its legend too)
    # Two stars: one in the legend (bottom right), one on the best point. That point (epoch 4
    # of 1..5, the highest Dice) is at the top of the Dice panel, 3/4 of the way across.
    _, star_columns = np.nonzero(best & (rows > 280) & (rows < 330))
    assert star_columns.size > 20 and 560 < star_columns.mean() < 640


def test_progress_png_without_validation_values_or_columns(tmp_path):
    for name, text in (
        ("nan.csv", HEADER + "0,10,1e-3,0.9,nan,1\n1,20,1e-3,0.8,,1\n"),
        ("absent.csv", "epoch,train_loss\n0,0.9\n1,0.8\n"),
    ):
        (tmp_path / name).write_text(text)
        out = write_progress_png(tmp_path / name, tmp_path / f"{name}.png")
        assert colour_pixels(out, LOSS_COLOUR).sum() > 500
        assert colour_pixels(out, DICE_COLOUR).sum() == 0
        assert colour_pixels(out, BEST_COLOUR).sum() == 0


def test_read_log_keeps_the_last_row_of_a_repeated_epoch_and_names_bad_values(tmp_path):
    log = tmp_path / "log.csv"
    log.write_text(HEADER + "0,10,1,0.9,0.1,1\n1,20,1,0.8,nan,1\n1,20,1,0.7,0.3,1\n")
    table = read_log(log)
    assert table["epoch"].tolist() == [0, 1]
    assert table["train_loss"].tolist() == [0.9, 0.7] and table["val_dice"].tolist() == [0.1, 0.3]
    log.write_text(HEADER + "0,10,1,0.9,0.1,1\n1,20,1,lots,0.2,1\n")
    with pytest.raises(InputError, match=r"log\.csv, line 3: train_loss 'lots' is not a number"):
        read_log(log)
    log.write_text("epoch,step\n0,10\n")
    with pytest.raises(InputError, match=r"log\.csv: no train_loss or val_dice column"):
        write_progress_png(log, tmp_path / "p.png")
    assert not (tmp_path / "p.png").exists()


def test_validation_grid_puts_the_five_panels_side_by_side():
    image = np.full((6, 5, 3), (10, 20, 30), np.uint8)
    seg = np.zeros((6, 5), np.float32)
    seg[0, 0] = 2.0
    boundary = np.eye(6, 5, dtype=np.uint8)
    prediction = np.zeros((6, 5), bool)
    prediction[2:4, 1:3] = True
    target = np.zeros((6, 5), np.int32)
    target[0, :2], target[5, 3:] = 1, 2
    grid = validation_grid(image, seg, boundary, prediction, target)
    step = 5 + GRID_GAP
    assert grid.shape == (6, 5 * 5 + 4 * GRID_GAP, 3) and grid.dtype == np.uint8
    assert np.all(grid[:, :5] == (10, 20, 30))
    assert np.all(grid[:, 5:step] == 255)  # the gap
    assert tuple(grid[0, step]) == (253, 231, 37) and tuple(grid[1, step]) == (68, 1, 84)
    assert np.array_equal(grid[:, 2 * step : 2 * step + 5, 0], boundary * 255)
    assert np.array_equal(grid[:, 3 * step : 3 * step + 5, 1], prediction * 255)
    labels = grid[:, 4 * step :]
    assert np.all(labels[target == 0] == 0) and np.all(labels[target > 0] >= 55)
    assert tuple(labels[0, 0]) != tuple(labels[5, 4])  # two labels, two colours


def events(log_dir) -> EventAccumulator:
    accumulator = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "images": 0})
    accumulator.Reload()
    return accumulator


def test_run_logger_writes_scalars_and_validation_images(tmp_path):
    with RunLogger(tmp_path) as logger:
        for step in (1, 2, 3):
            logger.scalars(step, loss=1.0 / step, lr=0.01, val_dice=0.5 if step == 3 else None)
        logger.scalars(4, val_dice=float("nan"))
        pixels = np.zeros((8, 8), np.float32)
        logger.images(3, "val/img-1", np.zeros((8, 8, 3), np.uint8), pixels, pixels, pixels, pixels)
    read = events(tmp_path / "tensorboard")
    loss = read.Scalars("loss")
    assert [e.step for e in loss] == [1, 2, 3]
    assert np.allclose([e.value for e in loss], [1.0, 0.5, 1 / 3])
    assert [(e.step, e.value) for e in read.Scalars("val_dice")] == [(3, 0.5)]
    assert read.Tags()["images"] == ["val/img-1"]
    (picture,) = read.Images("val/img-1")
    assert (picture.step, picture.width, picture.height) == (3, 5 * 8 + 4 * GRID_GAP, 8)


def test_a_resumed_run_logger_replaces_the_steps_after_the_checkpoint(tmp_path):
    with RunLogger(tmp_path) as first:  # the interrupted run: checkpoint at step 3, died at 5
        for step in range(1, 6):
            first.scalars(step, loss=float(step))
    # Event files are read in name order, which starts with the time in whole seconds.
    time.sleep(1.05 - time.time() % 1)
    with RunLogger(tmp_path, resume_step=3) as resumed:
        for step in range(4, 7):
            resumed.scalars(step, loss=10.0 * step)
    loss = events(tmp_path / "tensorboard").Scalars("loss")
    assert [(e.step, e.value) for e in loss] == [
        (1, 1.0),
        (2, 2.0),
        (3, 3.0),
        (4, 40.0),
        (5, 50.0),
        (6, 60.0),
    ]


def test_disabled_run_logger_writes_nothing_and_resume_step_is_checked(tmp_path):
    with RunLogger(tmp_path, enabled=False) as logger:
        logger.scalars(1, loss=1.0)
        plane = np.zeros((2, 2))
        logger.images(1, "val/a", np.zeros((2, 2, 3), np.uint8), plane, plane, plane, plane)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(SettingError, match="resume_step must be at least 0, not -1"):
        RunLogger(tmp_path, resume_step=-1)
