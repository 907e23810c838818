"""A tiny SAM built from segment_anything's own modelling classes, with random weights.

The real code path (checkpoint loading, architecture inference, image encoder, prompt
encoder, mask decoder, post-processing) runs in well under a second per image. Random
weights give meaningless masks; they are for testing mechanics, not quality.
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


def build_tiny_sam(
    embed_dim: int = 32,
    depth: int = 2,
    num_heads: int = 2,
    global_attn_indexes: tuple[int, ...] = (1,),
    img_size: int = 128,
    patch_size: int = 16,
    window_size: int = 4,
    prompt_dim: int = 32,
    decoder_mlp_dim: int = 64,
    hypernet_gain: float = 50.0,
    iou_offset: float = 0.5,
    seed: int = 0,
) -> Sam:
    """Build a small random SAM.

    hypernet_gain multiplies the last layer of the decoder's output hypernetworks: untrained
    logits sit near zero (every stability score 0, one mask after NMS); scaled up, masks are
    many, distinct and their scores spread out. iou_offset is added to the bias of the IoU
    head's last layer: untrained, its predictions lie within about +-0.13 of 0, half of them
    negative; shifted by 0.5 they lie in about [0.37, 0.63], so every mask passes
    ``pred_iou_thresh=0`` (a valid setting, in [0, 1]) and a threshold such as the paper's
    0.5 keeps some and drops others. The decoder transformer keeps SAM's 8 heads, which a
    state dict cannot reveal.
    """
    torch.manual_seed(seed)
    embedding_size = img_size // patch_size
    sam = Sam(
        image_encoder=ImageEncoderViT(
            depth=depth,
            embed_dim=embed_dim,
            img_size=img_size,
            mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            num_heads=num_heads,
            patch_size=patch_size,
            qkv_bias=True,
            use_rel_pos=True,
            global_attn_indexes=global_attn_indexes,
            window_size=window_size,
            out_chans=prompt_dim,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=prompt_dim,
            image_embedding_size=(embedding_size, embedding_size),
            input_image_size=(img_size, img_size),
            mask_in_chans=16,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(
                depth=2, embedding_dim=prompt_dim, mlp_dim=decoder_mlp_dim, num_heads=8
            ),
            transformer_dim=prompt_dim,
            iou_head_depth=3,
            iou_head_hidden_dim=64,
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


def save_tiny_sam(path: Path, **kwargs) -> Path:
    """Build a tiny SAM and save its state dict where SAM's official checkpoints would be."""
    torch.save(build_tiny_sam(**kwargs).state_dict(), path)
    return path
