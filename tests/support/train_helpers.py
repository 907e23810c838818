"""Helpers of the trainer's tests: a tiny synthetic store, tiny run configs (as settings
and as `samaug train` arguments), and what a run directory holds."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import torch

from precompute.pipeline import PriorsConfig, run
from samaug.demo.synthetic import tissue_image, write_glas_like
from train.training.config import TrainConfig


def make_glas_store(
    root: Path,
    counts: dict[str, int] | None = None,
    size: tuple[int, int] = (96, 128),
    checkpoint: Path | None = None,
    **masker,
) -> Path:
    """A GlaS-layout synthetic dataset of ``size`` images and its priors' store: superpixel
    priors, or with a SAM ``checkpoint`` (a tiny one) SAM's; ``masker`` are its settings."""
    counts = counts or {"train": 8, "testA": 2, "testB": 2}
    data = write_glas_like(root / "glas", counts, size=size)
    store = root / "glas.zarr"
    summary = run(
        PriorsConfig(
            dataset="glas",
            data_root=str(data),
            store=str(store),
            masker="superpixel" if checkpoint is None else "sam",
            checkpoint=None if checkpoint is None else str(checkpoint),
            masker_settings=tuple(masker.items()),
            workers=0,
            device="cpu",
        )
    )
    assert summary.done == sum(counts.values())
    return store


def tiny_joint_run(root: Path, sam_checkpoint: Path) -> tuple[Path, Path, Path]:
    """(data folder, store, run directory) of a tiny U-Net trained one epoch (mode joint,
    task binary: its probability-based scores are non-trivial even untrained) on the priors
    of a tiny random SAM, for 2 training and 2 testA images of 64 x 80."""
    from tests.support.tiny_sam import TINY_SAM_SETTINGS
    from train.training.loop import train

    store = make_glas_store(
        root, {"train": 2, "testA": 2}, (64, 80), sam_checkpoint, **TINY_SAM_SETTINGS
    )
    config = tiny(store, root / "run", mode="joint", task="binary", epochs=1, val_fraction=0)
    train(config, log=quiet)
    return root / "glas", store, Path(config.out)


def new_images(data: Path, to: Path) -> Path:
    """The testA images (not their annotations) of a GlaS-like folder, copied into ``to``."""
    import shutil

    to.mkdir()
    for path in sorted(data.glob("testA_*.bmp")):
        if not path.stem.endswith("_anno"):
            shutil.copy(path, to / path.name)
    return to


def write_pranet_like(root: Path, train: int = 6, test: dict[str, int] | None = None) -> Path:
    """The PraNet polyp layout: TrainDataset/{image,mask}, TestDataset/<name>/{images,masks}
    (``train`` training images, ``test`` per test set, 80 x 96 pixels)."""
    from PIL import Image

    test = test or {"Kvasir": 2}
    folders = [("TrainDataset/image", "TrainDataset/mask", train)]
    folders += [
        (f"TestDataset/{name}/images", f"TestDataset/{name}/masks", n) for name, n in test.items()
    ]
    for k, (images, masks, n) in enumerate(folders):
        (root / images).mkdir(parents=True)
        (root / masks).mkdir(parents=True)
        for i in range(n):
            image, label = tissue_image(80, 96, 3, seed=100 * k + i, radius=(10, 20))
            Image.fromarray(image).save(root / images / f"{i}.png")
            Image.fromarray(np.where(label > 0, 255, 0).astype(np.uint8)).save(
                root / masks / f"{i}.png"
            )
    return root


# The tiny run every trainer test starts from: 2 steps an epoch of a 4-channel-wide U-Net.
TINY = dict(
    model="unet",
    mode="samaug",
    epochs=2,
    batch_size=4,
    patch_size=64,
    samples_per_epoch=8,
    lr=3e-3,
    warmup_epochs=1,
    workers=0,
    device="cpu",
    amp=False,
    val_fraction=0.25,
    model_kwargs={"base_channels": 4},
)


def tiny(store, out, **overrides) -> TrainConfig:
    return TrainConfig(**{**TINY, "store": str(store), "out": str(out), **overrides})


def tiny_cli(store, out, *extra: str) -> list[str]:
    """`samaug train` arguments of the tiny run (no validation images unless extra says),
    trained on augmented input only (one optimizer step a batch)."""
    return [
        "train",
        "--mode",
        "samaug",
        "--store",
        str(store),
        "--out",
        str(out),
        "--epochs",
        "2",
        "--batch-size",
        "4",
        "--patch-size",
        "64",
        "--samples-per-epoch",
        "8",
        "--lr",
        "0.003",
        "--workers",
        "0",
        "--device",
        "cpu",
        "--model-option",
        "base_channels=4",
        *extra,
    ]


def quiet(line: str) -> None:
    """A ``log`` that drops every line."""


def checkpoint(run_dir, name: str = "last.pt") -> dict:
    """The checkpoint ``name`` of a run directory, as saved (tensors only, nothing run)."""
    return torch.load(Path(run_dir) / name, weights_only=True)


def log_rows(run_dir) -> list[dict]:
    """log.csv's rows without the seconds column (the one thing two runs never share)."""
    with open(Path(run_dir) / "log.csv", newline="") as f:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(f)]


class RunsCode:
    """Unpickling it runs a shell command (``touch marker``): what a hostile file could hold."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))
