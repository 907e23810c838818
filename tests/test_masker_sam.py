"""The SAM loader (architecture inference, checkpoint errors) and SamMasker's exactness.

SamMasker must return exactly what segment_anything's SamAutomaticMaskGenerator returns.
The tiny random SAM (precompute/tiny_sam.py) gives speckled masks spanning the whole image, so
besides it a stand-in mask decoder (``BlobDecoder``) gives masks around each prompt, so
that NMS, crops and the crop-edge filter have something to decide.
"""

from __future__ import annotations

import threading
from dataclasses import fields

import numpy as np
import pytest
import torch
from segment_anything import SamAutomaticMaskGenerator, sam_model_registry

from precompute.downloads import sha256_file
from precompute.maskers.sam import SamMasker, SamMaskerSettings, reference_generate
from precompute.maskers.sam_loader import (
    OFFICIAL_CONFIGS,
    architecture_name,
    build_sam,
    build_sam_from_checkpoint,
    checkpoint_info,
    infer_sam_config,
)
from precompute.maskers.sam_masks import threshold_torch, upscale_logits
from precompute.maskers.sam_settings import generator_settings
from precompute.types import SamaugError, SettingError
from tests.support.tiny_sam import (
    assert_identical,
    build_tiny_sam,
    noise,
    save_tiny_sam,
    tiny_sams,
)
from tests.support.tiny_sam import masker_settings as settings


def tiny_config(**overrides) -> dict:
    """What infer_sam_config should say about build_tiny_sam(**overrides), written out."""
    config = {
        "encoder_embed_dim": 32,
        "encoder_depth": 2,
        "encoder_num_heads": 2,
        "encoder_global_attn_indexes": [1],
        "img_size": 128,
        "patch_size": 16,
        "window_size": 4,
        "mlp_ratio": 4.0,
        "qkv_bias": True,
        "use_rel_pos": True,
        "use_abs_pos": True,
        "prompt_embed_dim": 32,
        "mask_in_chans": 16,
        "decoder_depth": 2,
        "decoder_mlp_dim": 64,
        "decoder_num_heads": 8,
        "decoder_attention_downsample_rate": 2,
        "iou_head_depth": 3,
        "iou_head_hidden_dim": 64,
        "num_multimask_outputs": 3,
    }
    return {**config, **overrides}


def shapes(model: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


# ----------------------------------------------------------------- architecture inference


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        # Three blocks, two global, a window (5) that does not divide the 16x16 grid.
        dict(
            encoder_embed_dim=48,
            encoder_depth=3,
            encoder_num_heads=3,
            encoder_global_attn_indexes=[0, 2],
            img_size=256,
            window_size=5,
            prompt_embed_dim=64,
            decoder_mlp_dim=96,
        ),
        dict(patch_size=8, encoder_global_attn_indexes=[0], encoder_num_heads=4),
    ],
)
def test_infer_config_of_tiny_sams(overrides):
    with torch.device("meta"):
        model = build_tiny_sam(**overrides)
    state = model.state_dict()
    expected = tiny_config(**overrides)
    assert infer_sam_config(state) == expected
    assert architecture_name(expected) == "custom"
    # Wrapped and DataParallel-prefixed state dicts are read alike.
    assert infer_sam_config({"model": {f"module.{k}": v for k, v in state.items()}}) == expected
    assert infer_sam_config({"state_dict": state}) == expected
    # The inferred config rebuilds the very same shapes.
    with torch.device("meta"):
        assert shapes(build_sam(expected)) == shapes(model)


@pytest.mark.parametrize(
    "changes",
    [
        dict(use_abs_pos=False),
        dict(qkv_bias=False, mlp_ratio=2.0, window_size=0, encoder_global_attn_indexes=[0, 1]),
        dict(decoder_depth=3, decoder_attention_downsample_rate=1, iou_head_depth=2),
        dict(num_multimask_outputs=2, mask_in_chans=8, iou_head_hidden_dim=48),
    ],
)
def test_infer_config_round_trips_through_build_sam(changes):
    config = tiny_config(**changes)
    with torch.device("meta"):
        assert infer_sam_config(build_sam(config).state_dict()) == config


@pytest.mark.parametrize("name", ["vit_b", "vit_l", "vit_h"])
def test_infer_config_of_official_sams(name):
    # On the meta device: shapes and keys only, no memory.
    with torch.device("meta"):
        official = sam_model_registry[name]()
        config = infer_sam_config(official.state_dict())
        rebuilt = build_sam(config)
    assert config == OFFICIAL_CONFIGS[name]
    assert architecture_name(config) == name
    assert shapes(rebuilt) == shapes(official)
    head_dim = official.image_encoder.blocks[0].attn.rel_pos_h.shape[1]
    assert config["encoder_embed_dim"] // head_dim == config["encoder_num_heads"]


# ---------------------------------------------------------------------------- checkpoints


def test_loaded_checkpoint_equals_the_in_memory_model(tmp_path):
    path = save_tiny_sam(tmp_path / "tiny.pth")
    model, info = build_sam_from_checkpoint(path)
    assert info == {
        "checkpoint": str(path),
        "checkpoint_sha256": sha256_file(path),
        "architecture": "custom",
        "config": tiny_config(),
    }
    assert checkpoint_info(path) == info
    in_memory = build_tiny_sam()
    for (name, a), (_, b) in zip(
        model.state_dict().items(), in_memory.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name
    assert torch.equal(model.pixel_mean, in_memory.pixel_mean)
    assert torch.equal(model.pixel_std, in_memory.pixel_std)

    image = np.random.default_rng(1).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    settings = SamMaskerSettings(
        points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0, box_nms_thresh=1.0
    )
    loaded = SamMasker.from_checkpoint(path, settings)
    assert_identical(loaded.generate(image), SamMasker(in_memory, settings).generate(image))
    provenance = loaded.provenance()
    assert provenance["kind"] == "sam" and provenance["checkpoint_sha256"] == sha256_file(path)
    assert provenance["settings"]["points_per_side"] == 4
    assert set(provenance["settings"]) == {f.name for f in fields(SamMaskerSettings)}


def test_wrapped_checkpoint_loads(tmp_path):
    state = build_tiny_sam().state_dict()
    path = tmp_path / "wrapped.pth"
    torch.save({"model": {f"module.{k}": v for k, v in state.items()}, "epoch": 3}, path)
    model, info = build_sam_from_checkpoint(path)
    assert info["config"] == tiny_config()
    assert torch.equal(model.image_encoder.pos_embed, state["image_encoder.pos_embed"])


def test_missing_checkpoint_says_how_to_get_one(tmp_path):
    missing = tmp_path / "checkpoints" / "sam_vit_b_01ec64.pth"
    with pytest.raises(SamaugError, match="does not exist") as err:
        build_sam_from_checkpoint(missing)
    assert str(missing) in str(err.value)
    assert "make weights" in str(err.value) and "--checkpoint" in str(err.value)
    with pytest.raises(SamaugError, match="make weights"):
        SamMasker.from_checkpoint(missing)


def test_files_that_are_not_sam_checkpoints(tmp_path):
    text = tmp_path / "notes.pth"
    text.write_text("not a checkpoint")
    with pytest.raises(SamaugError, match="not a torch checkpoint") as err:
        build_sam_from_checkpoint(text)
    assert str(text) in str(err.value)

    other = tmp_path / "linear.pth"
    torch.save(torch.nn.Linear(3, 4).state_dict(), other)
    with pytest.raises(SamaugError, match="image_encoder.patch_embed.proj.weight") as err:
        build_sam_from_checkpoint(other)
    assert str(other) in str(err.value)

    state = build_tiny_sam().state_dict()
    del state["mask_decoder.iou_token.weight"]
    partial = tmp_path / "partial.pth"
    torch.save(state, partial)
    with pytest.raises(SamaugError, match="'mask_decoder.iou_token.weight'") as err:
        build_sam_from_checkpoint(partial)
    assert str(partial) in str(err.value)

    state = build_tiny_sam().state_dict()
    state["mask_decoder.output_upscaling.1.weight"] = torch.zeros(5)
    mismatched = tmp_path / "mismatched.pth"
    torch.save(state, mismatched)
    with pytest.raises(SamaugError, match=r"output_upscaling.1.weight' has shape \(5,\)"):
        build_sam_from_checkpoint(mismatched)


# ---------------------------------------------------------------------------- exactness


pytestmark = pytest.mark.usefixtures("two_torch_threads")


@pytest.fixture(scope="module")
def models() -> dict:
    return tiny_sams()


@pytest.mark.parametrize(
    ("name", "shape", "kwargs", "at_least"),
    [
        # Every mask kept (no IoU, stability or NMS filter), wide and tall odd sizes.
        ("speckle", (97, 131), dict(box_nms_thresh=1.0), 150),
        ("speckle", (131, 97), dict(box_nms_thresh=1.0, points_per_batch=10), 150),
        # The IoU filter (before upscaling here), a mid stability threshold, NMS.
        (
            "speckle",
            (131, 97),
            dict(pred_iou_thresh=0.52, stability_score_thresh=0.06, box_nms_thresh=1.0),
            25,
        ),
        # NMS at 0.5 keeps one speckled mask: every box is the whole image.
        ("speckle", (131, 97), dict(pred_iou_thresh=0.52, stability_score_thresh=0.06), 1),
        ("blobs", (97, 131), dict(box_nms_thresh=1.0), 150),
        ("blobs", (131, 97), dict(pred_iou_thresh=0.9, stability_score_thresh=0.3), 25),
        ("blobs", (97, 131), dict(box_nms_thresh=0.5), 50),
        # Thresholds that float32 cannot hold exactly (0 +- 0.3).
        ("blobs", (97, 131), dict(stability_score_offset=0.3, stability_score_thresh=0.7), 30),
    ],
)
def test_same_masks_as_segment_anything(models, name, shape, kwargs, at_least):
    model = models[name]
    image = noise(shape)
    s = settings(**kwargs)
    masker = SamMasker(model, s, info={})
    ours = masker.generate(image)
    assert len(ours) >= at_least
    assert_identical(ours, reference_generate(model, image, s))
    assert set(masker.last_timings) == {"encoder", "decoder", "postprocess"}


def test_same_masks_with_a_crop_layer(models):
    blobs = models["blobs"]
    image = noise((97, 131), seed=2)
    s = settings(crop_n_layers=1, box_nms_thresh=0.7, crop_nms_thresh=0.5)
    ours = SamMasker(blobs, s, info={}).generate(image)
    assert_identical(ours, reference_generate(blobs, image, s))
    # Masks from inside the crops survive the crop-edge filter and the NMS across crops.
    full_grid = {tuple(p) for p in SamMasker(blobs, settings(), info={}).generate(image).point}
    assert len(ours) > 100 and sum(tuple(p) not in full_grid for p in ours.point) > 20


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("size", [(1000, 700), (131, 97), (40, 60)])
def test_upscaled_logits_are_the_multithreaded_references(models, threads, size):
    # The reference upscales (B, 3, h, w) batches; with one torch thread torch takes another
    # kernel for those (different rounding). Ours, one mask per 1-channel image, equal the
    # reference's with two threads, whatever the thread count.
    model = models["speckle"]
    low_res = torch.randn(20, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 30
    scale = model.image_encoder.img_size / max(size)
    input_size = (round(size[0] * scale), round(size[1] * scale))
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        reference = model.postprocess_masks(low_res, input_size, size).flatten(0, 1)
        torch.set_num_threads(threads)
        masks = torch.tensor([0, 1, 2, 4, 8, 9, 10, 14, 17, 26, 40, 41, 53, 59])
        ours = upscale_logits(model, low_res.flatten(0, 1)[masks], input_size, size)
    finally:
        torch.set_num_threads(before)
    assert ours.shape == (14, *size)
    assert torch.equal(ours, reference[masks])


@pytest.mark.parametrize("thresholding", ["numpy", "torch"])
def test_one_mask_per_upscale_gives_the_same_masks(models, thresholding):
    # One mask per sub-batch, most of them dropped by the stability threshold; and the
    # torch thresholding (used on GPUs) run on the CPU.
    blobs = models["blobs"]
    image = noise((97, 131), seed=3)
    s = settings(stability_score_thresh=0.2)
    masker = SamMasker(blobs, s, info={}, upscale_bytes=1)
    if thresholding == "torch":
        masker.threshold = threshold_torch
    ours = masker.generate(image)
    assert 20 < len(ours) < 100
    assert_identical(ours, reference_generate(blobs, image, s))


@pytest.mark.skipif(
    "OpenMP" not in torch.__config__.parallel_info(), reason="torch threads are not per thread"
)
def test_post_processing_threads_change_nothing(models, monkeypatch):
    # On a CPU with two torch threads, sub-batches of a few masks are upscaled and
    # thresholded side by side, each thread running torch with one thread, and the
    # output is unpacked by both: the same masks as one thread doing it all, and as
    # the reference.
    blobs = models["blobs"]
    image = noise((131, 97), seed=4)
    s = settings(box_nms_thresh=1.0)
    masker = SamMasker(blobs, s, info={}, upscale_bytes=3 * 4 * 131 * 97)
    pool = masker.host_pool()
    assert pool is not None and masker.host_pool() is pool
    assert sorted(pool.map(lambda _: torch.get_num_threads(), range(8))) == [1] * 8
    side_by_side = masker.generate(image)
    # The caller's count, and the one threads started later take, are left as they were.
    assert torch.get_num_threads() == 2
    started_later = []
    later = threading.Thread(target=lambda: started_later.append(torch.get_num_threads()))
    later.start()
    later.join()
    assert started_later == [2]
    assert {t.name.split("_")[0] for t in pool._threads} == {"samaug-postprocess"}
    assert len(pool._threads) == 2
    monkeypatch.setattr(masker, "host_pool", lambda: None)
    alone = masker.generate(image)
    assert len(side_by_side) > 150
    assert_identical(side_by_side, alone)
    assert_identical(side_by_side, reference_generate(blobs, image, s))
    torch.set_num_threads(1)
    try:
        assert SamMasker(blobs, s, info={}).host_pool() is None
    finally:
        torch.set_num_threads(2)


def test_empty_union_scores_zero_where_segment_anything_says_nan(models):
    blobs = models["blobs"]
    image = noise((64, 80), seed=4)
    s = settings(box_nms_thresh=1.0)
    raw = SamAutomaticMaskGenerator(
        blobs, output_mode="binary_mask", **generator_settings(s)
    ).generate(image)
    nan = np.isnan([a["stability_score"] for a in raw])
    ours = SamMasker(blobs, s, info={}).generate(image)
    assert 0 < nan.sum() < len(ours)
    assert np.all(ours.stability_score[nan] == 0) and np.all(ours.area[nan] == 0)
    assert np.all(np.isfinite(ours.stability_score))


def test_bad_images_are_refused(models):
    masker = SamMasker(models["speckle"], settings(), info={})
    with pytest.raises(SamaugError, match="HxWx3 uint8"):
        masker.generate(np.zeros((10, 10), np.uint8))
    with pytest.raises(SamaugError, match="HxWx3 uint8"):
        masker.generate(np.zeros((10, 10, 3), np.float32))


@pytest.mark.parametrize(
    ("setting", "value", "problem"),
    [
        ("points_per_side", 0, "at least 1"),
        ("points_per_side", True, "whole number"),
        ("points_per_side", 4.0, "whole number"),
        ("points_per_batch", 0, "at least 1"),
        ("pred_iou_thresh", 2.0, "at most 1"),  # accepted once, and kept no mask at all
        ("pred_iou_thresh", -1.0, "at least 0"),
        ("stability_score_thresh", 1.5, "at most 1"),
        ("stability_score_thresh", float("nan"), "finite number"),
        ("stability_score_offset", 0.0, "greater than 0"),
        ("stability_score_offset", float("inf"), "finite number"),
        ("box_nms_thresh", "high", "finite number, not 'high'"),
        ("box_nms_thresh", -0.1, "at least 0"),
        ("crop_n_layers", -1, "at least 0"),
        ("crop_nms_thresh", 1.01, "at most 1"),
        ("crop_overlap_ratio", 1.0, "below 1"),
        ("crop_n_points_downscale_factor", 0, "at least 1"),
    ],
)
def test_bad_settings_are_refused_naming_the_setting(setting, value, problem):
    with pytest.raises(SettingError, match=rf"sam setting {setting} must be .*{problem}"):
        SamMaskerSettings(**{setting: value})


def test_settings_at_their_bounds_are_accepted_and_stored_as_numbers():
    s = SamMaskerSettings(pred_iou_thresh=0, stability_score_thresh=1, box_nms_thresh=1)
    assert (s.pred_iou_thresh, s.stability_score_thresh, s.box_nms_thresh) == (0.0, 1.0, 1.0)
    assert isinstance(s.pred_iou_thresh, float)


def test_tiny_sam_predicts_positive_ious_so_zero_keeps_every_mask(models):
    image = noise((64, 80), seed=5)
    every = SamMasker(models["speckle"], settings(box_nms_thresh=1.0), info={}).generate(image)
    assert len(every) == 3 * 8 * 8  # three outputs for each of the 8 x 8 prompts
    assert 0 < every.predicted_iou.min() and every.predicted_iou.max() < 1
    paper = SamMasker(models["speckle"], settings(pred_iou_thresh=0.5), info={}).generate(image)
    assert 0 < len(paper) < len(every)  # the paper's threshold keeps some, drops others


def test_a_folder_given_as_checkpoint_is_named_a_folder(tmp_path):
    save_tiny_sam(tmp_path / "sam_vit_b.pth")
    with pytest.raises(SamaugError, match="is a folder, not a checkpoint file") as err:
        build_sam_from_checkpoint(tmp_path)
    assert str(tmp_path) in str(err.value) and "sam_vit_b.pth" in str(err.value)
    assert "does not exist" not in str(err.value)
