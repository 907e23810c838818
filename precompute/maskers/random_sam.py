"""SAMs with random weights, built from segment_anything's own modelling classes.

Where no checkpoint is at hand (the benchmarks of ``samaug.bench``, the tests) a random SAM
runs the real code path: checkpoint loading, architecture inference, image encoder, prompt
encoder, mask decoder, post-processing. ``SHAPES`` holds the official architectures (ViT-B,
ViT-L, ViT-H: 1024 x 1024 input, 256-channel prompts; ``sam_loader.OFFICIAL_CONFIGS``) and a
``tiny`` one that runs in well under a second per image on a CPU. Random weights give
meaningless masks: they are for timing and for testing mechanics, not for quality.
"""

from __future__ import annotations

from pathlib import Path

import torch
from segment_anything.modeling import Sam

from precompute.maskers.sam_loader import OFFICIAL_CONFIGS, build_sam

# Architectures in the form ``sam_loader.infer_sam_config`` returns.
SHAPES: dict[str, dict] = {
    "tiny": {
        **OFFICIAL_CONFIGS["vit_b"],
        "encoder_embed_dim": 32,
        "encoder_depth": 2,
        "encoder_num_heads": 2,
        "encoder_global_attn_indexes": [1],
        "img_size": 128,
        "window_size": 4,
        "prompt_embed_dim": 32,
        "decoder_mlp_dim": 64,
        "iou_head_hidden_dim": 64,
    },
    **OFFICIAL_CONFIGS,
}


def build_random_sam(
    shape: str = "tiny",
    *,
    hypernet_gain: float = 50.0,
    iou_offset: float = 0.5,
    seed: int = 0,
    **overrides,
) -> Sam:
    """A SAM of ``shape`` (a name of ``SHAPES``; ``overrides`` replace entries of its
    architecture) with random weights, in eval mode on the current default device.

    hypernet_gain multiplies the last layer of the decoder's output hypernetworks: untrained
    logits sit near zero (every stability score 0, one mask after NMS); scaled up, masks are
    many, distinct and their scores spread out. iou_offset is added to the bias of the IoU
    head's last layer: untrained, its predictions lie within about +-0.13 of 0, half of them
    negative; shifted by 0.5 they lie in about [0.37, 0.63], so every mask passes
    ``pred_iou_thresh=0`` (a valid setting, in [0, 1]) and a threshold such as the paper's
    0.5 keeps some and drops others.
    """
    if shape not in SHAPES:
        raise ValueError(f"unknown SAM shape {shape!r}; valid: {', '.join(SHAPES)}")
    unknown = sorted(set(overrides) - set(SHAPES[shape]))
    if unknown:
        raise ValueError(f"not SAM architecture entries: {', '.join(unknown)}")
    torch.manual_seed(seed)
    sam = build_sam({**SHAPES[shape], **overrides})
    with torch.no_grad():
        # Random rel-pos tables (SAM zero-inits them) so the encoder's attention is exercised.
        for name, p in sam.image_encoder.named_parameters():
            if "rel_pos" in name:
                p.normal_(0, 0.02)
        for mlp in sam.mask_decoder.output_hypernetworks_mlps:
            mlp.layers[-1].weight.mul_(hypernet_gain)
            mlp.layers[-1].bias.mul_(hypernet_gain)
        sam.mask_decoder.iou_prediction_head.layers[-1].bias.add_(iou_offset)
    return sam.eval()


def save_random_sam(path: str | Path, shape: str = "tiny", **kwargs) -> Path:
    """Build a random SAM (``build_random_sam``) and save its state dict where SAM's
    official checkpoints would be; returns ``path``."""
    torch.save(build_random_sam(shape, **kwargs).state_dict(), path)
    return Path(path)
