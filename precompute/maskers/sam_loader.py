"""Load any SAM checkpoint by reading its architecture off the state dict.

Official SAM (vit_b, vit_l, vit_h), MedSAM (vit_b-shaped) and other fine-tunes all share
segment_anything's modelling classes and differ only in sizes, which the tensor shapes
reveal. So a checkpoint needs no ``--model-type``: ``infer_sam_config`` recovers the
sizes, ``build_sam_from_checkpoint`` builds the model and loads the weights strictly.

Two things cannot be seen in shapes and are taken from SAM as published:
the decoder transformer's number of attention heads (8) and the pixel mean/std used to
normalise images (non-persistent buffers, absent from every state dict).
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any

import torch
from segment_anything.modeling import (
    ImageEncoderViT,
    MaskDecoder,
    PromptEncoder,
    Sam,
    TwoWayTransformer,
)

from precompute.downloads import sha256_file
from precompute.files import TORCH_LOAD_ERRORS
from precompute.types import SamaugError

__all__ = [
    "OFFICIAL_CONFIGS",
    "build_sam",
    "build_sam_from_checkpoint",
    "checkpoint_info",
    "infer_sam_config",
    "load_state_dict",
    "sha256_file",
]

# Not visible in any tensor shape; 8 in every published SAM (and MedSAM).
DECODER_NUM_HEADS = 8
PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)

_ENC = "image_encoder."
_PROMPT = "prompt_encoder."
_DEC = "mask_decoder."

_COMMON = {
    "img_size": 1024,
    "patch_size": 16,
    "window_size": 14,
    "mlp_ratio": 4.0,
    "qkv_bias": True,
    "use_rel_pos": True,
    "use_abs_pos": True,
    "prompt_embed_dim": 256,
    "mask_in_chans": 16,
    "decoder_depth": 2,
    "decoder_mlp_dim": 2048,
    "decoder_num_heads": DECODER_NUM_HEADS,
    "decoder_attention_downsample_rate": 2,
    "iou_head_depth": 3,
    "iou_head_hidden_dim": 256,
    "num_multimask_outputs": 3,
}

# segment_anything/build_sam.py's three models, in the form infer_sam_config returns.
OFFICIAL_CONFIGS: dict[str, dict[str, Any]] = {
    "vit_b": {
        "encoder_embed_dim": 768,
        "encoder_depth": 12,
        "encoder_num_heads": 12,
        "encoder_global_attn_indexes": [2, 5, 8, 11],
        **_COMMON,
    },
    "vit_l": {
        "encoder_embed_dim": 1024,
        "encoder_depth": 24,
        "encoder_num_heads": 16,
        "encoder_global_attn_indexes": [5, 11, 17, 23],
        **_COMMON,
    },
    "vit_h": {
        "encoder_embed_dim": 1280,
        "encoder_depth": 32,
        "encoder_num_heads": 16,
        "encoder_global_attn_indexes": [7, 15, 23, 31],
        **_COMMON,
    },
}


def _unwrap(state_dict: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The bare SAM state dict: unwrapped from "model"/"state_dict", "module." stripped."""
    for key in ("model", "state_dict"):
        if key in state_dict and isinstance(state_dict[key], Mapping):
            state_dict = state_dict[key]
            break
    return {
        (k[len("module.") :] if k.startswith("module.") else k): v for k, v in state_dict.items()
    }


def _shape(sd: Mapping[str, torch.Tensor], key: str) -> tuple[int, ...]:
    if key not in sd:
        raise SamaugError(f"not a SAM state dict: it has no key {key!r}")
    value = sd[key]
    if not isinstance(value, torch.Tensor):
        raise SamaugError(f"not a SAM state dict: {key!r} is a {type(value).__name__}")
    return tuple(value.shape)


def _count(sd: Mapping[str, torch.Tensor], prefix: str) -> int:
    """How many consecutive modules prefix0., prefix1., ... the state dict has."""
    n = 0
    while any(k.startswith(f"{prefix}{n}.") for k in sd):
        n += 1
    return n


def infer_sam_config(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """A SAM's architecture from its state dict's keys and shapes alone.

    state_dict: a raw SAM state dict, or one wrapped under "model" or "state_dict"; keys may
        carry a "module." prefix (DataParallel). Only shapes are read, so meta tensors work.
    Returns a JSON-able dict with the keys of ``OFFICIAL_CONFIGS["vit_b"]``: encoder
    ``encoder_embed_dim``, ``encoder_depth``, ``encoder_num_heads`` (from the rel-pos tables'
    head dim), ``encoder_global_attn_indexes`` (blocks whose rel-pos table spans the whole
    ``img_size / patch_size`` grid rather than one window), ``window_size`` (0 when every
    block is global), ``img_size``, ``patch_size``, ``mlp_ratio``, ``qkv_bias``,
    ``use_rel_pos``, ``use_abs_pos``; ``prompt_embed_dim`` (= the encoder's out_chans),
    ``mask_in_chans``; decoder ``decoder_depth``, ``decoder_mlp_dim``, ``decoder_num_heads``
    (always 8, see the module docstring), ``decoder_attention_downsample_rate``,
    ``iou_head_depth``, ``iou_head_hidden_dim``, ``num_multimask_outputs``.
    A window size equal to the grid size is indistinguishable from global attention (and
    computes the same thing); such blocks are reported as global.
    Raises SamaugError naming the first key that is missing or has an unexpected shape.
    """
    sd = _unwrap(state_dict)
    return {**_encoder_config(sd), **_decoder_config(sd)}


def _encoder_config(sd: Mapping[str, Any]) -> dict[str, Any]:
    """The image encoder's part of ``infer_sam_config``."""
    embed_dim, _, patch, patch_w = _shape(sd, _ENC + "patch_embed.proj.weight")
    if patch != patch_w:
        raise SamaugError(f"not a SAM state dict: non-square patches {patch}x{patch_w}")
    depth = _count(sd, _ENC + "blocks.")
    if depth == 0:
        raise SamaugError("not a SAM state dict: it has no key 'image_encoder.blocks.0.*'")
    use_abs_pos = _ENC + "pos_embed" in sd
    if _ENC + "blocks.0.attn.rel_pos_h" not in sd:
        raise SamaugError(
            "SAM state dict without relative position tables "
            "('image_encoder.blocks.0.attn.rel_pos_h'): the encoder's heads and windows "
            "cannot be inferred from it"
        )
    rel_sizes, head_dims = [], []
    for i in range(depth):
        size, head_dim = _shape(sd, f"{_ENC}blocks.{i}.attn.rel_pos_h")
        rel_sizes.append(size)
        head_dims.append(head_dim)
    if len(set(head_dims)) != 1 or embed_dim % head_dims[0]:
        raise SamaugError(
            f"SAM state dict with rel-pos head dims {head_dims} that do not divide the "
            f"embedding dim {embed_dim}"
        )
    if use_abs_pos:
        grid = _shape(sd, _ENC + "pos_embed")[1]
    elif any(s != rel_sizes[0] for s in rel_sizes):
        grid = (max(rel_sizes) + 1) // 2  # the global blocks span the whole grid
    else:
        raise SamaugError(
            "SAM state dict without 'image_encoder.pos_embed' whose blocks all have the same "
            "rel-pos size: its image size cannot be inferred"
        )
    global_size = 2 * grid - 1
    window_sizes = {(s + 1) // 2 for s in rel_sizes if s != global_size}
    if len(window_sizes) > 1:
        raise SamaugError(f"SAM state dict with several window sizes {sorted(window_sizes)}")
    mlp_dim = _shape(sd, _ENC + "blocks.0.mlp.lin1.weight")[0]
    mlp_ratio = mlp_dim / embed_dim
    if int(embed_dim * mlp_ratio) != mlp_dim:
        raise SamaugError(
            f"SAM state dict with encoder MLP width {mlp_dim} that segment_anything cannot "
            f"build from embed_dim {embed_dim} and a ratio"
        )
    return {
        "encoder_embed_dim": embed_dim,
        "encoder_depth": depth,
        "encoder_num_heads": embed_dim // head_dims[0],
        "encoder_global_attn_indexes": [i for i, s in enumerate(rel_sizes) if s == global_size],
        "img_size": grid * patch,
        "patch_size": patch,
        "window_size": window_sizes.pop() if window_sizes else 0,
        "mlp_ratio": mlp_ratio,
        "qkv_bias": _ENC + "blocks.0.attn.qkv.bias" in sd,
        "use_rel_pos": True,
        "use_abs_pos": use_abs_pos,
    }


def _decoder_config(sd: Mapping[str, Any]) -> dict[str, Any]:
    """The prompt encoder's and mask decoder's part of ``infer_sam_config``."""
    prompt_dim = _shape(sd, _ENC + "neck.0.weight")[0]
    decoder_dim = _shape(sd, _DEC + "iou_token.weight")[1]
    no_mask_dim = _shape(sd, _PROMPT + "no_mask_embed.weight")[1]
    if not prompt_dim == decoder_dim == no_mask_dim:
        raise SamaugError(
            f"SAM state dict whose encoder output ({prompt_dim}), prompt embedding "
            f"({no_mask_dim}) and decoder ({decoder_dim}) widths differ"
        )
    cross_dim = _shape(sd, _DEC + "transformer.layers.0.cross_attn_token_to_image.q_proj.weight")[0]
    if decoder_dim % cross_dim:
        raise SamaugError(
            f"SAM state dict with decoder cross-attention width {cross_dim} that does not "
            f"divide the decoder width {decoder_dim}"
        )
    return {
        "prompt_embed_dim": prompt_dim,
        "mask_in_chans": _shape(sd, _PROMPT + "mask_downscaling.3.weight")[0],
        "decoder_depth": _count(sd, _DEC + "transformer.layers."),
        "decoder_mlp_dim": _shape(sd, _DEC + "transformer.layers.0.mlp.lin1.weight")[0],
        "decoder_num_heads": DECODER_NUM_HEADS,
        "decoder_attention_downsample_rate": decoder_dim // cross_dim,
        "iou_head_depth": _count(sd, _DEC + "iou_prediction_head.layers."),
        "iou_head_hidden_dim": _shape(sd, _DEC + "iou_prediction_head.layers.0.weight")[0],
        "num_multimask_outputs": _shape(sd, _DEC + "mask_tokens.weight")[0] - 1,
    }


def architecture_name(config: Mapping[str, Any]) -> str:
    """ "vit_b", "vit_l" or "vit_h" when config is an official one, else "custom"."""
    for name, official in OFFICIAL_CONFIGS.items():
        if dict(config) == official:
            return name
    return "custom"


def build_sam(config: Mapping[str, Any]) -> Sam:
    """An uninitialised-weights SAM of the given architecture (as infer_sam_config returns).

    Built on the current default device; under ``torch.device("meta")`` it costs no memory.
    """
    img_size, patch = config["img_size"], config["patch_size"]
    embedding = img_size // patch
    dim = config["prompt_embed_dim"]
    return Sam(
        image_encoder=ImageEncoderViT(
            img_size=img_size,
            patch_size=patch,
            embed_dim=config["encoder_embed_dim"],
            depth=config["encoder_depth"],
            num_heads=config["encoder_num_heads"],
            mlp_ratio=config["mlp_ratio"],
            out_chans=dim,
            qkv_bias=config["qkv_bias"],
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            use_abs_pos=config["use_abs_pos"],
            use_rel_pos=config["use_rel_pos"],
            window_size=config["window_size"],
            global_attn_indexes=tuple(config["encoder_global_attn_indexes"]),
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=dim,
            image_embedding_size=(embedding, embedding),
            input_image_size=(img_size, img_size),
            mask_in_chans=config["mask_in_chans"],
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=config["num_multimask_outputs"],
            transformer=TwoWayTransformer(
                depth=config["decoder_depth"],
                embedding_dim=dim,
                num_heads=config["decoder_num_heads"],
                mlp_dim=config["decoder_mlp_dim"],
                attention_downsample_rate=config["decoder_attention_downsample_rate"],
            ),
            transformer_dim=dim,
            iou_head_depth=config["iou_head_depth"],
            iou_head_hidden_dim=config["iou_head_hidden_dim"],
        ),
        pixel_mean=list(PIXEL_MEAN),
        pixel_std=list(PIXEL_STD),
    )


def _missing_checkpoint(path: Path) -> SamaugError:
    return SamaugError(
        f"SAM checkpoint {path} does not exist; run `make weights` (downloads the official "
        "checkpoints into checkpoints/) or give --checkpoint PATH (make: SAM_CHECKPOINT=PATH)"
    )


def load_state_dict(path: str | Path, mmap: bool = False) -> dict[str, torch.Tensor]:
    """The bare SAM state dict stored in a checkpoint file, on the CPU.

    Only tensors are unpickled (``weights_only``). mmap=True maps the file instead of
    reading it, for when only shapes are needed.
    Raises SamaugError when the file is missing, is a folder, or is not a torch state dict.
    """
    path = Path(path)
    if path.is_dir():
        found = sorted(p.name for p in path.glob("*.pth"))
        inside = f" (it holds {', '.join(found[:3])}{', ...' if len(found) > 3 else ''})"
        raise SamaugError(
            f"SAM checkpoint {path} is a folder, not a checkpoint file; give the .pth file "
            f"itself{inside if found else ''}"
        )
    if not path.is_file():
        raise _missing_checkpoint(path)
    # Files written by torch < 1.6 (not zip archives) cannot be mapped.
    mmap = mmap and zipfile.is_zipfile(path)
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    # torch.load on an arbitrary file fails in many ways; each becomes one clear message.
    except TORCH_LOAD_ERRORS as err:
        detail = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise SamaugError(
            f"{path} is not a torch checkpoint holding only tensors "
            f"({err.__class__.__name__}: {detail}); give a SAM checkpoint, i.e. a file "
            "written by torch.save(sam.state_dict(), path)"
        ) from err
    if not isinstance(loaded, Mapping):
        raise SamaugError(f"{path} holds a {type(loaded).__name__}, not a SAM state dict")
    return _unwrap(loaded)


def _config_of_file(path: Path, state_dict: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    try:
        return infer_sam_config(state_dict)
    except SamaugError as err:
        raise SamaugError(f"{path}: {err}") from err


def checkpoint_info(path: str | Path) -> dict[str, Any]:
    """What identifies a checkpoint, without building the model.

    Returns {"checkpoint": str(path), "checkpoint_sha256", "architecture", "config"}.
    """
    path = Path(path)
    state_dict = load_state_dict(path, mmap=True)
    config = _config_of_file(path, state_dict)
    return {
        "checkpoint": str(path),
        "checkpoint_sha256": sha256_file(path),
        "architecture": architecture_name(config),
        "config": config,
    }


def _first_mismatch(expected: Mapping[str, torch.Tensor], got: Mapping[str, torch.Tensor]) -> str:
    for key, value in expected.items():
        if key not in got:
            return f"missing key {key!r}"
        if tuple(got[key].shape) != tuple(value.shape):
            return f"key {key!r} has shape {tuple(got[key].shape)}, expected {tuple(value.shape)}"
    for key in got:
        if key not in expected:
            return f"unexpected key {key!r}"
    return ""


def build_sam_from_checkpoint(path: str | Path, device: str = "cpu") -> tuple[Sam, dict]:
    """The SAM stored in a checkpoint, in eval mode on ``device``, and what identifies it.

    The architecture is inferred from the state dict (``infer_sam_config``), so official
    SAM, MedSAM and other fine-tunes load alike. Returns (model, info) with info
    {"checkpoint": str(path), "checkpoint_sha256", "architecture", "config"}.
    Raises SamaugError for a missing file (and says how to get one) or a file that is not
    a SAM state dict (naming it and the first missing or mismatching key).
    """
    path = Path(path)
    state_dict = load_state_dict(path)
    config = _config_of_file(path, state_dict)
    # Built on meta, the model's random init costs nothing; the loaded tensors are
    # assigned in place of its parameters.
    with torch.device("meta"):
        model = build_sam(config)
    problem = _first_mismatch(model.state_dict(), state_dict)
    if problem:
        raise SamaugError(f"{path} is not a SAM state dict of the inferred shape: {problem}")
    model.load_state_dict(state_dict, assign=True)
    # pixel_mean/pixel_std are not in state dicts; give them SAM's values.
    model.register_buffer("pixel_mean", torch.tensor(PIXEL_MEAN).view(-1, 1, 1), False)
    model.register_buffer("pixel_std", torch.tensor(PIXEL_STD).view(-1, 1, 1), False)
    assert not any(t.is_meta for t in [*model.parameters(), *model.buffers()])
    model = model.to(device).eval()
    info = {
        "checkpoint": str(path),
        "checkpoint_sha256": sha256_file(path),
        "architecture": architecture_name(config),
        "config": config,
    }
    return model, info
