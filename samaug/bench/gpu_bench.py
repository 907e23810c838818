"""``python -m samaug.bench --device cuda [--quick]``: the masker and the pipeline on a GPU.

For ViT-B- and ViT-H-shaped SAMs with random weights (the decoder scaled so that hundreds
of masks survive, ``random_sam``) on a 1024 x 1024 image at 32 x 32 points, one
``name: value`` a line: seconds per image of ``SamAutomaticMaskGenerator`` and of ours in
fp32 (and whether its masks and values are the stock generator's), bf16 and compiled; the
model's FLOPs (``torch.utils.flop_counter``) over the card's peak (the floor), the fraction
of that floor reached, peak device memory; then images per second through ``samaug
priors`` with one GPU and with every visible GPU (dask-cuda's ``LocalCUDACluster`` where
it is installed). About 5 minutes on one H100 (``--quick``: ViT-B only, no compile, under
2). Without CUDA it says so in one line and exits 2.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from precompute.maskers.sam_flops import floor, model_flops, peak_flops
from samaug.bench import emit

SETTINGS = {"pred_iou_thresh": 0.0, "stability_score_thresh": 0.15, "box_nms_thresh": 1.0}


def _seconds(fn, repeat: int = 2) -> float:
    import torch

    fn()  # warm-up (and compilation)
    torch.cuda.synchronize()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return min(times)


def bench_shape(shape: str, image: np.ndarray, quick: bool) -> None:
    """Stock generator and ours (fp32, bf16, compiled) for one SAM shape on the GPU."""
    import torch

    from precompute.maskers.random_sam import build_random_sam
    from precompute.maskers.sam import SamMasker, SamMaskerSettings, reference_generate
    from precompute.types import Masked
    from samaug.bench.masker_bench import identical

    device = torch.device("cuda")
    with torch.device(device):
        model = build_random_sam(shape)
    card = torch.cuda.get_device_name(device)
    fp32 = SamMaskerSettings(points_per_side=32, **SETTINGS)
    stock_masks = {}  # the last run's masks, to compare ours with
    stock = _seconds(lambda: stock_masks.update(last=reference_generate(model, image, fp32)), 1)
    emit(f"gpu_{shape}_stock_s", stock)
    flops = model_flops(model, image.shape[0])
    variants = {"fp32": ({}, {}), "bf16": ({"precision": "bf16"}, {})}
    if not quick:
        variants["compiled"] = ({"precision": "bf16"}, {"compile": True})
    for name, (precision, runtime) in variants.items():
        settings = SamMaskerSettings(
            points_per_side=32, points_per_batch="auto", **SETTINGS, **precision
        )
        masker = SamMasker(model, settings, device, info={}, **runtime)
        torch.cuda.reset_peak_memory_stats(device)
        seconds = _seconds(lambda masker=masker: masker.generate(image))
        emit(f"gpu_{shape}_{name}_s", seconds)
        emit(f"gpu_{shape}_{name}_speedup_over_stock", stock / seconds)
        emit(f"gpu_{shape}_{name}_peak_memory_gib", torch.cuda.max_memory_allocated() / 2**30)
        figures = floor(flops, seconds, peak_flops(card, settings.precision))
        for key, value in figures.items():
            emit(f"gpu_{shape}_{name}_{key}", value)
        if name == "fp32":  # fp32 is exact: the same masks and values as the stock generator
            ours = masker.generate(image)
            found = ours.masks if isinstance(ours, Masked) else ours
            emit(f"gpu_{shape}_fp32_identical", identical(stock_masks["last"], found))
            emit(f"gpu_{shape}_masks", len(found))


def bench_pipeline(directory: Path, images: int) -> None:
    """images/s through ``samaug priors`` (ViT-B, bf16) with 1 GPU and with every GPU."""
    import torch

    from precompute.maskers.random_sam import save_random_sam
    from precompute.pipeline import PriorsConfig, run
    from samaug.demo.synthetic import write_glas_like

    checkpoint = save_random_sam(directory / "vit_b.pth", "vit_b")
    data = write_glas_like(directory / "glas", {"train": images}, size=(1024, 1024))
    base = dict(dataset="glas", data_root=str(data), checkpoint=str(checkpoint), device="cuda")
    settings = (("precision", "bf16"), *sorted(SETTINGS.items()))
    one = run(PriorsConfig(**base, store=str(directory / "one.zarr"), masker_settings=settings))
    emit("gpu_priors_images_per_s_1_gpu", one.done / one.seconds)
    count = torch.cuda.device_count()
    try:
        from dask_cuda import LocalCUDACluster
    except ImportError:
        LocalCUDACluster = None  # noqa: N806
    if count > 1 and LocalCUDACluster is not None:
        with LocalCUDACluster() as cluster:
            config = PriorsConfig(
                **base,
                store=str(directory / "all.zarr"),
                masker_settings=settings,
                scheduler=cluster.scheduler_address,
            )
            every = run(config)
    else:
        every = run(
            PriorsConfig(
                **base, store=str(directory / "all.zarr"), masker_settings=settings, workers=count
            )
        )
    emit(f"gpu_priors_images_per_s_{count}_gpus", every.done / every.seconds)


def main(quick: bool = False) -> int:
    """The GPU benchmark; returns the exit status (2 where torch sees no CUDA device)."""
    import torch

    if not torch.cuda.is_available():
        print(
            f"samaug.bench --device cuda: torch sees no CUDA device here (torch "
            f"{torch.__version__}, CUDA build {torch.version.cuda or 'none'}); run it on a "
            "machine with a GPU",
            file=sys.stderr,
        )
        return 2
    from samaug.demo.synthetic import tissue_image

    emit("gpu_device", f"{torch.cuda.get_device_name()} x {torch.cuda.device_count()}")
    image, _ = tissue_image(1024, 1024, objects=40, seed=0)
    for shape in ("vit_b",) if quick else ("vit_b", "vit_h"):
        bench_shape(shape, image, quick)
        torch.cuda.empty_cache()  # the shape's model and masks are gone
    with tempfile.TemporaryDirectory() as tmp:
        bench_pipeline(Path(tmp), images=4 if quick else 16)
    return 0
