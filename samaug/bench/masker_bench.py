"""Time segment_anything's automatic mask generator against ``SamMasker`` (not a test).

``masker_speedup`` runs both on one synthetic H&E-like image and checks that their
outputs are identical. Run as a script: ``python -m samaug.bench.masker_bench CHECKPOINT``.

With random weights (the tiny test SAM, or a random vit_b) the paper's thresholds keep
no mask at all, which would time nothing but the model and the reference's upscaling of
masks it then drops. The default settings therefore filter nothing by predicted IoU
(every mask is upscaled by both), keep masks by a low stability threshold, and skip NMS,
so that many masks (about a thousand of 3072 at 1000 x 1000) go all the way through.
Pass ``settings`` to time others.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict, fields
from pathlib import Path

import numpy as np
from segment_anything.modeling import Sam

from precompute.maskers.sam import SamMasker, SamMaskerSettings, reference_generate
from precompute.maskers.sam_loader import build_sam_from_checkpoint
from precompute.types import MaskSet
from samaug.demo.synthetic import tissue_image

MANY_MASKS = {"pred_iou_thresh": 0.0, "stability_score_thresh": 0.15, "box_nms_thresh": 1.0}


def identical(a: MaskSet, b: MaskSet) -> bool:
    """Whether two MaskSets hold the same masks and values in the same order."""
    return all(np.array_equal(getattr(a, f.name), getattr(b, f.name)) for f in fields(MaskSet))


def masker_speedup(
    checkpoint_or_model: str | Path | Sam,
    image_size: int = 1000,
    points_per_side: int = 32,
    settings: SamMaskerSettings | None = None,
    device: str = "cpu",
) -> dict[str, float | int | bool | str]:
    """Seconds of the reference and of SamMasker on one image_size^2 synthetic image.

    settings: default ``MANY_MASKS`` at points_per_side (see the module docstring).
    Returns masker_speedup (reference seconds / ours), masker_identical, masker_ref_s,
    masker_ours_s (each the best of two runs, interleaved), masker_masks (how many
    masks both returned), masker_settings (the non-default settings, as text),
    masker_image, and ours by phase (masker_ours_{encoder,decoder,postprocess}_s).
    """
    if isinstance(checkpoint_or_model, Sam):
        model = checkpoint_or_model.to(device).eval()
    else:
        model, _ = build_sam_from_checkpoint(checkpoint_or_model, device)
    if settings is None:
        settings = SamMaskerSettings(points_per_side=points_per_side, **MANY_MASKS)
    image, _ = tissue_image(image_size, image_size, objects=40, seed=0)
    masker = SamMasker(model, settings, device, info={})

    # Best of two runs each, interleaved (ours, stock, ours, stock), so that a slow spell
    # of the machine does not favour one side; ours' first run also warms the model up.
    ours_s, ref_s, phases = [], [], {}
    same, n_masks = True, 0
    for _ in range(2):
        start = time.perf_counter()
        ours = masker.generate(image)
        ours_s.append(time.perf_counter() - start)
        if ours_s[-1] == min(ours_s):
            phases = dict(masker.last_timings)
        start = time.perf_counter()
        ref = reference_generate(model, image, settings)
        ref_s.append(time.perf_counter() - start)
        same, n_masks = same and identical(ref, ours), len(ours)
        del ref, ours

    defaults = asdict(SamMaskerSettings())
    changed = {k: v for k, v in asdict(settings).items() if defaults[k] != v}
    result: dict[str, float | int | bool | str] = {
        "masker_speedup": min(ref_s) / min(ours_s),
        "masker_identical": bool(same),
        "masker_ref_s": min(ref_s),
        "masker_ours_s": min(ours_s),
        "masker_masks": n_masks,
        "masker_settings": " ".join(f"{k}={v}" for k, v in changed.items()) or "paper defaults",
        "masker_image": f"{image_size}x{image_size} synthetic H&E, device {device}",
    }
    for phase, seconds in phases.items():
        result[f"masker_ours_{phase}_s"] = seconds
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="a SAM checkpoint (any architecture)")
    parser.add_argument("--image-size", type=int, default=1000)
    parser.add_argument("--points-per-side", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    result = masker_speedup(
        args.checkpoint, args.image_size, args.points_per_side, device=args.device
    )
    for key, value in result.items():
        print(f"{key}: {value:.4g}" if isinstance(value, float) else f"{key}: {value}")


if __name__ == "__main__":
    main()


def variant_agreement(
    model: Sam, image_size: int = 512, points_per_side: int = 16, device: str = "cpu"
) -> dict[str, float | int | str]:
    """bf16, fp16 and ``torch.compile`` against fp32 on one synthetic image (``MANY_MASKS``
    settings): per variant, the fraction of fp32's masks it matches at IoU >= 0.9, masks
    gained and lost, the largest seg prior difference, and its speed over fp32's (best of
    two timed runs, after a first run that compiles or warms up)."""
    from precompute.agreement import Agreement

    image, _ = tissue_image(image_size, image_size, objects=40, seed=0)
    variants = {
        "fp32": ({}, {}),
        "bf16": ({"precision": "bf16"}, {}),
        "fp16": ({"precision": "fp16"}, {}),
        "compile": ({}, {"compile": True}),
    }
    result: dict[str, float | int | str] = {}
    seconds, outputs = {}, {}
    for name, (precision, runtime) in variants.items():
        settings = SamMaskerSettings(points_per_side=points_per_side, **MANY_MASKS, **precision)
        masker = SamMasker(model, settings, device, info={}, on_device=True, **runtime)
        masker.generate(image)  # compiles, warms up
        times = []
        for _ in range(2):
            start = time.perf_counter()
            outputs[name] = masker.generate(image)
            times.append(time.perf_counter() - start)
        seconds[name] = min(times)
    base = outputs["fp32"]
    for name in ("bf16", "fp16", "compile"):
        agreement = Agreement()
        other = outputs[name]
        agreement.add(
            base.masks.masks,
            other.masks.masks,
            (base.seg_prior, base.boundary_prior),
            (other.seg_prior, other.boundary_prior),
        )
        result[f"{name}_matched_fraction"] = agreement.matched_fraction
        result[f"{name}_masks_gained"] = agreement.gained
        result[f"{name}_masks_lost"] = agreement.lost
        result[f"{name}_max_seg_prior_difference"] = agreement.max_seg_prior_difference
        result[f"{name}_speed_over_fp32"] = seconds["fp32"] / seconds[name]
    result["variants_fp32_masks"] = len(base.masks)
    result["variants_image"] = f"{image_size}x{image_size} synthetic H&E, tiny SAM, {device}"
    return result
