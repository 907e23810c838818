"""``make bench``'s masker comparison, its mechanics only (no timing is asserted): run as the
command on a small image, it compares our masks with the stock generator's in every run
and prints a speed-up that is its two best times' ratio. Run as the command (tests do not
import the benchmarks)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def test_masker_bench_prints_identical_masks_and_a_consistent_ratio(tmp_path):
    from tests.support.tiny_sam import save_tiny_sam

    checkpoint = save_tiny_sam(tmp_path / "tiny_sam.pth")
    command = [sys.executable, "-m", "samaug.bench.masker_bench", str(checkpoint)]
    command += ["--image-size", "64", "--points-per-side", "8"]
    # Two torch threads: the stock generator's masks are compared at two (see Maskers).
    environment = {**os.environ, "OMP_NUM_THREADS": "2"}
    done = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=600)
    assert done.returncode == 0, done.stderr
    printed = dict(line.split(": ", 1) for line in done.stdout.splitlines())
    assert printed["masker_identical"] == "True"
    assert int(printed["masker_masks"]) > 20
    ref_s, ours_s = float(printed["masker_ref_s"]), float(printed["masker_ours_s"])
    assert float(printed["masker_speedup"]) == pytest.approx(ref_s / ours_s, rel=2e-3)
    assert printed["masker_image"] == "64x64 synthetic H&E, device cpu"
    phases = {k for k in printed if k.startswith("masker_ours_") and k != "masker_ours_s"}
    assert phases == {f"masker_ours_{p}_s" for p in ("encoder", "decoder", "postprocess")}
