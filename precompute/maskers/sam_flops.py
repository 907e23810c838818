"""What SAM costs, counted: its FLOPs per image and the floor they set on a card.

The floor of a masker's seconds per image is the model's FLOPs (the image encoder once, the
prompt encoder and mask decoder once per prompt: the matrix products, as
``torch.utils.flop_counter`` counts them) over the card's dense peak. ``python -m
samaug.bench --device cuda`` reports how close the masker comes to it.
"""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

# Dense peak FLOP/s by card (the vendors' data sheets; SXM parts): fp32 without tensor cores
# (torch's default: TF32 off), and bf16/fp16 on tensor cores.
PEAKS = {
    "H200": {"fp32": 67e12, "bf16": 989e12},
    "H100": {"fp32": 67e12, "bf16": 989e12},
    "A100": {"fp32": 19.5e12, "bf16": 312e12},
    "L40S": {"fp32": 91.6e12, "bf16": 362e12},
    "A10": {"fp32": 31.2e12, "bf16": 125e12},
}


def peak_flops(device_name: str, precision: str) -> float | None:
    """The card's dense peak FLOP/s at ``precision`` (fp16 as bf16), None for a card not
    in ``PEAKS``."""
    for card, peaks in PEAKS.items():
        if card in device_name:
            return peaks["fp32" if precision == "fp32" else "bf16"]
    return None


def model_flops(model, image_size: int = 1024, points: int = 1024, batch: int = 64) -> float:
    """FLOPs of one image through SAM at ``points`` prompts: the image encoder once and the
    prompt encoder + mask decoder on every prompt (in batches of ``batch``), counted by
    ``FlopCounterMode`` on the model's device (no upscaling or thresholds: they are not
    matrix products)."""
    device = next(model.parameters()).device
    size = model.image_encoder.img_size
    x = torch.zeros((1, 3, size, size), device=device)
    coords = torch.rand((batch, 1, 2), device=device) * image_size
    labels = torch.ones((batch, 1), dtype=torch.int, device=device)
    frozen = [p for p in model.parameters() if p.requires_grad]
    for p in frozen:  # the counter's module hooks trip over parameters that need grads
        p.requires_grad_(False)
    try:
        return _count(model, x, coords, labels, points, batch)
    finally:
        for p in frozen:
            p.requires_grad_(True)


def _count(model, x, coords, labels, points: int, batch: int) -> float:
    with torch.no_grad():
        with FlopCounterMode(display=False) as encoder:
            features = model.image_encoder(x)
        with FlopCounterMode(display=False) as decoder:
            sparse, dense = model.prompt_encoder(points=(coords, labels), boxes=None, masks=None)
            model.mask_decoder(
                image_embeddings=features,
                image_pe=model.prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=True,
            )
    return encoder.get_total_flops() + decoder.get_total_flops() * points / batch


def floor(flops: float, seconds: float, peak: float | None) -> dict[str, float | str]:
    """{gflops_per_image, floor_s, fraction_of_floor} for a masker that took ``seconds`` per
    image of ``flops`` on a card of ``peak`` FLOP/s (None: the floor is unknown)."""
    if peak is None:
        unknown = "unknown (card not in precompute.maskers.sam_flops.PEAKS)"
        return {"gflops_per_image": flops / 1e9, "floor_s": unknown}
    return {
        "gflops_per_image": flops / 1e9,
        "floor_s": flops / peak,
        "fraction_of_floor": (flops / peak) / seconds,
    }
