"""The GPU benchmark's parts that run anywhere: its refusal without CUDA, and its figures
(``precompute.maskers.sam_flops``: FLOP counting, the peaks table, the floor). Speed itself
is shown by the benchmark, not here."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from precompute.maskers.sam_flops import floor, model_flops, peak_flops
from tests.support.tiny_sam import build_tiny_sam


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_without_cuda_it_says_so_in_one_line_and_exits_2():
    done = subprocess.run(
        [sys.executable, "-m", "samaug.bench", "--device", "cuda", "--quick"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "no CUDA device" in lines[0]


def test_flops_of_a_tiny_sam_are_the_encoder_once_and_the_decoder_per_prompt():
    model = build_tiny_sam()
    half = model_flops(model, image_size=128, points=64, batch=64)
    full = model_flops(model, image_size=128, points=128, batch=64)
    encoder = 2 * half - full  # the decoder's share doubles, the encoder's does not
    # The patch embedding alone: 8 x 8 patches, 32 channels of 3 x 16 x 16 inputs, 2 FLOPs.
    assert encoder > 2 * 8 * 8 * 32 * 3 * 16 * 16
    assert full - half > 0 and encoder > 0


def test_peaks_and_floor_figures():
    assert peak_flops("NVIDIA H100 80GB HBM3", "fp32") == 67e12
    assert peak_flops("NVIDIA H100 80GB HBM3", "bf16") == peak_flops("NVIDIA H100", "fp16")
    assert peak_flops("Some Other Card", "fp32") is None
    assert floor(3e12, 0.5, 60e12) == {
        "gflops_per_image": 3000.0,
        "floor_s": 0.05,
        "fraction_of_floor": 0.1,
    }
    assert floor(3e12, 0.5, None)["floor_s"].startswith("unknown")
