"""SAMs with random weights, built from segment_anything's own modelling classes.

Where no checkpoint is at hand (the benchmarks of ``samaug.bench``, the tests) a random SAM
runs the real code path: checkpoint loading, architecture inference, image encoder, prompt
encoder, mask decoder, post-processing. ``SHAPES`` holds the official image-encoder sizes
(ViT-B, ViT-L, ViT-H: 1024 x 1024 input, 256-channel prompts) and a ``tiny`` one that runs
in well under a second per image on a CPU. Random weights give meaningless masks: they are
for timing and for testing mechanics, not for quality.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import torch
from segment_anything.modeling import (
    ImageEncoderViT,
    MaskDecoder,
    PromptEncoder,
    Sam,
    TwoWayTransformer,
)

# Image encoder and decoder sizes by name: the official ones as segment_anything's
# build_sam.py builds them, and a tiny one.
_OFFICIAL = {
    "img_size": 1024,
    "patch_size": 16,
    "window_size": 14,
    "prompt_dim": 256,
    "decoder_mlp_dim": 2048,
    "iou_hidden_dim": 256,
}
SHAPES: dict[str, dict] = {
    "tiny": {
        "embed_dim": 32,
        "depth": 2,
        "num_heads": 2,
        "global_attn_indexes": (1,),
        "img_size": 128,
        "patch_size": 16,
        "window_size": 4,
        "prompt_dim": 32,
        "decoder_mlp_dim": 64,
        "iou_hidden_dim": 64,
    },
    "vit_b": {
        "embed_dim": 768,
        "depth": 12,
        "num_heads": 12,
        "global_attn_indexes": (2, 5, 8, 11),
        **_OFFICIAL,
    },
    "vit_l": {
        "embed_dim": 1024,
        "depth": 24,
        "num_heads": 16,
        "global_attn_indexes": (5, 11, 17, 23),
        **_OFFICIAL,
    },
    "vit_h": {
        "embed_dim": 1280,
        "depth": 32,
        "num_heads": 16,
        "global_attn_indexes": (7, 15, 23, 31),
        **_OFFICIAL,
    },
}


def build_random_sam(
    shape: str = "tiny",
    *,
    hypernet_gain: float = 50.0,
    iou_offset: float = 0.5,
    seed: int = 0,
    **sizes,
) -> Sam:
    """A SAM of ``shape`` (a name of ``SHAPES``; ``sizes`` override its entries) with
    random weights, in eval mode on the CPU.

    hypernet_gain multiplies the last layer of the decoder's output hypernetworks: untrained
    logits sit near zero (every stability score 0, one mask after NMS); scaled up, masks are
    many, distinct and their scores spread out. iou_offset is added to the bias of the IoU
    head's last layer: untrained, its predictions lie within about +-0.13 of 0, half of them
    negative; shifted by 0.5 they lie in about [0.37, 0.63], so every mask passes
    ``pred_iou_thresh=0`` (a valid setting, in [0, 1]) and a threshold such as the paper's
    0.5 keeps some and drops others. The decoder transformer keeps SAM's 8 heads, which a
    state dict cannot reveal.
    """
    if shape not in SHAPES:
        raise ValueError(f"unknown SAM shape {shape!r}; valid: {', '.join(SHAPES)}")
    size = {**SHAPES[shape], **sizes}
    torch.manual_seed(seed)
    patch_size = size["patch_size"]
    embedding_size = size["img_size"] // patch_size
    prompt_dim = size["prompt_dim"]
    sam = Sam(
        image_encoder=ImageEncoderViT(
            depth=size["depth"],
            embed_dim=size["embed_dim"],
            img_size=size["img_size"],
            mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            num_heads=size["num_heads"],
            patch_size=patch_size,
            qkv_bias=True,
            use_rel_pos=True,
            global_attn_indexes=tuple(size["global_attn_indexes"]),
            window_size=size["window_size"],
            out_chans=prompt_dim,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=prompt_dim,
            image_embedding_size=(embedding_size, embedding_size),
            input_image_size=(size["img_size"], size["img_size"]),
            mask_in_chans=16,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(
                depth=2, embedding_dim=prompt_dim, mlp_dim=size["decoder_mlp_dim"], num_heads=8
            ),
            transformer_dim=prompt_dim,
            iou_head_depth=3,
            iou_head_hidden_dim=size["iou_hidden_dim"],
        ),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )
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
