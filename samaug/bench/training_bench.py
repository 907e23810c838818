"""The trainer side of ``make bench``, one ``name: value`` a line.

- loader_patches_per_s_{1,2}_workers: 256 x 256 training patches (image, both priors,
  instance target, default augmentation) streamed from a store through ``make_loader``;
- raw_files_patches_per_s: the same number of 256 x 256 crops cut from the original BMP
  files, nothing else computed;
- train_step_s_<model>: one AdamW step (forward, backward, update) at batch 4, 256 x 256,
  each registered model in its default configuration, on this machine's CPU;
- loader_margin_over_smallest_step: how many batches of 4 the 2-worker loader delivers in
  the time of the smallest model's step (target >= 10).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from precompute.pipeline import PriorsConfig, run
from samaug.bench import emit
from samaug.demo.synthetic import write_glas_like
from train.data.datasets import PatchDataset
from train.data.loader import make_loader
from train.losses import instance_loss
from train.models import create_model, list_models

PATCH = 256
BATCH = 4


def bench_loader(directory: Path, images: int = 8, batches: int = 24) -> float:
    """Returns the 2-worker loader's patches per second."""
    data = write_glas_like(directory / "glas", {"train": images}, size=(522, 775))
    store = directory / "glas.zarr"
    run(
        PriorsConfig(
            dataset="glas", data_root=str(data), store=str(store), masker="superpixel", workers=0
        )
    )
    rate = {}
    for workers in (1, 2):
        dataset = PatchDataset(
            str(store), "train", patch_size=PATCH, samples_per_epoch=batches * 8 + 8 * 2
        )
        loader = make_loader(dataset, batch_size=8, workers=workers)
        iterator = iter(loader)
        next(iterator), next(iterator)  # workers started, first reads warm
        start = time.perf_counter()
        count = sum(batch["image"].shape[0] for batch in iterator)
        rate[workers] = count / (time.perf_counter() - start)
        del iterator, loader
        emit(f"loader_patches_per_s_{workers}_worker{'s' if workers > 1 else ''}", rate[workers])

    from PIL import Image

    files = sorted(Path(data).glob("train_*[0-9].bmp"))
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    n = batches * 8
    for k in range(n):
        pixels = np.asarray(Image.open(files[k % len(files)]))
        y, x = rng.integers(0, 522 - PATCH), rng.integers(0, 775 - PATCH)
        pixels[y : y + PATCH, x : x + PATCH].copy()
    emit("raw_files_patches_per_s", n / (time.perf_counter() - start))
    return rate[2]


def bench_train_steps(repeat: int = 2) -> dict[str, float]:
    seconds = {}
    x = torch.rand(BATCH, 3, PATCH, PATCH)
    target = torch.randint(0, 3, (BATCH, PATCH, PATCH))
    for name in list_models():
        model = create_model(name, in_channels=3, num_classes=3).train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

        def step(model=model, optimizer=optimizer) -> None:
            optimizer.zero_grad(set_to_none=True)
            instance_loss(model(x), target).backward()
            optimizer.step()

        step()
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
        seconds[name] = min(times)
        emit(f"train_step_s_{name}", seconds[name])
    return seconds


def main(directory: Path) -> None:
    patches_per_s = bench_loader(directory)
    steps = bench_train_steps()
    batch_seconds = BATCH / patches_per_s
    emit("loader_margin_over_smallest_step", min(steps.values()) / batch_seconds)
