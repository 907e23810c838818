"""``make convergence``'s mechanics on the MoNuSeg subset: one epoch of the default U-Net
run (at a tiny width), its figures printed as log.csv counts them, the curve drawn. Run as
the command (tests do not import the benchmarks)."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import pytest


def test_one_epoch_is_printed_as_log_csv_counts_it(shared_data, tmp_path):
    # A budget of a second still runs one whole epoch (each epoch is one resumable call).
    command = [sys.executable, "-m", "samaug.bench.convergence_bench", "--minutes", "0.017"]
    command += ["--width", "4", "--out", str(tmp_path)]
    environment = {**os.environ, "SAMAUG_SHARED_DATA": str(shared_data), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=600)
    assert done.returncode == 0, done.stderr
    printed = dict(line.split(": ", 1) for line in done.stdout.splitlines())
    with open(tmp_path / "run" / "log.csv", newline="") as f:
        logged = list(csv.DictReader(f))
    assert [row["epoch"] for row in logged] == ["1"]
    assert printed["convergence_plan"] == (
        "100 epochs x 4 batches of 8 = 800 optimizer steps (2 per batch: raw, then augmented)"
    )
    assert printed["convergence_epochs"] == "1" and printed["convergence_steps"] == "8"
    dice = float(printed["convergence_epoch_1_val_dice"])
    assert dice == pytest.approx(float(logged[0]["val_dice"]), abs=1e-4) and 0 <= dice <= 1
    assert "convergence_epoch_2_val_dice" not in printed
    assert (tmp_path / "run" / "progress.png").stat().st_size > 1000
