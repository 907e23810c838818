"""ImageNet Swin-T weights into SwinUNet: the three file layouts, the mirrored decoder, the report.

The files are written from real random models: timm's ``swin_tiny_patch4_window7_224`` and
torchvision's Swin-T class at a quarter of Swin-T's width (the key set is Swin-T's), and the
Microsoft layout derived from timm's by the inverse of timm's own conversion, with the
buffers the official ``swin_transformer.py`` stores.
"""

import hashlib
import re

import pytest
import timm
import torch
from safetensors.torch import save_file
from torchvision.models.swin_transformer import SwinTransformer

from precompute.types import SamaugError, SettingError
from tests.support.http import serve
from train.models import create_model
from train.models.backbones import BACKBONES, download_backbones
from train.models.swin_unet import SwinUNet

WIDTH, HEADS, SWIN_T_DEPTHS = 24, (1, 2, 4, 8), (2, 2, 6, 2)
NARROW = {"base_channels": WIDTH, "num_heads": HEADS}
# Per block, SwinUNet's name and the file's: Microsoft and timm, torchvision.
BLOCK_PARTS = [
    ("norm1", "norm1", "norm1"),
    ("attn.qkv", "attn.qkv", "attn.qkv"),
    ("attn.proj", "attn.proj", "attn.proj"),
    ("norm2", "norm2", "norm2"),
    ("mlp.0", "mlp.fc1", "mlp.0"),
    ("mlp.3", "mlp.fc2", "mlp.3"),
]
# SwinUNet tensors no Swin-T file has: decoder-only layers (3 expands of 3, 3 fuses of 2,
# norm_up 2, final_expand 3, head 1 = 21).
DECODER_ONLY = ("expands.", "skip_fuse.", "norm_up.", "final_expand.", "head.")


def randomise(model: torch.nn.Module) -> torch.nn.Module:
    """Every parameter perturbed, so that no tensor equals its initialisation by chance (unit
    LayerNorms, zero biases)."""
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return model.eval()


def microsoft_state(timm_state: dict) -> dict:
    """timm's Swin-T state dict in the layout of Microsoft's ``swin_transformer.py``: merging at
    the end of a stage, ``head``, and its buffers ``relative_position_index`` (every block) and
    ``attn_mask`` (shifted blocks of the stages larger than one 7x7 window at 224)."""
    state = {}
    for key, value in timm_state.items():
        if m := re.fullmatch(r"layers\.(\d)\.downsample\.(.+)", key):
            key = f"layers.{int(m[1]) - 1}.downsample.{m[2]}"
        state[key.replace("head.fc.", "head.")] = value
    for stage, depth in enumerate(SWIN_T_DEPTHS):
        side = 56 >> stage
        for block in range(depth):
            prefix = f"layers.{stage}.blocks.{block}."
            state[prefix + "attn.relative_position_index"] = torch.randint(169, (49, 49))
            if block % 2 and side > 7:
                state[prefix + "attn_mask"] = torch.zeros((side // 7) ** 2, 49, 49)
    return {"model": state}


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """layout -> (file, the source model's state dict, the source model)."""
    folder = tmp_path_factory.mktemp("swin")
    timm_model = randomise(
        timm.create_model("swin_tiny_patch4_window7_224", embed_dim=WIDTH, num_heads=HEADS)
    )
    tv_model = randomise(
        SwinTransformer([4, 4], WIDTH, list(SWIN_T_DEPTHS), list(HEADS), [7, 7], 4.0)
    )
    out = {}
    for layout, model, state in [
        ("timm", timm_model, timm_model.state_dict()),
        ("torchvision", tv_model, tv_model.state_dict()),
        ("microsoft", None, microsoft_state(timm_model.state_dict())),
    ]:
        torch.save(state, folder / f"{layout}.pth")
        out[layout] = (folder / f"{layout}.pth", state.get("model", state), model)
    return out


def expected_sources(layout: str, depths=(2, 2, 2, 2)) -> dict[str, str]:
    """SwinUNet key -> the file's key it must come from, written out per layout."""
    tv = layout == "torchvision"
    out = {}
    for ours, theirs in [("weight", "weight"), ("bias", "bias")]:
        out[f"patch_embed.{ours}"] = (
            f"features.0.0.{theirs}" if tv else f"patch_embed.proj.{theirs}"
        )
        out[f"embed_norm.{ours}"] = f"features.0.2.{theirs}" if tv else f"patch_embed.norm.{theirs}"
        out[f"norm.{ours}"] = f"norm.{theirs}"
    for stage, depth in enumerate(depths):
        for block in range(depth):
            source = (
                f"features.{2 * stage + 1}.{block}." if tv else f"layers.{stage}.blocks.{block}."
            )
            parts = [(ours, tv_part if tv else ms_part) for ours, ms_part, tv_part in BLOCK_PARTS]
            pairs = [(f"{o}.{p}", f"{t}.{p}") for o, t in parts for p in ("weight", "bias")]
            pairs.append(("attn.relative_position_bias_table",) * 2)
            for ours, theirs in pairs:
                out[f"encoder.{stage}.{block}.{ours}"] = source + theirs
                if stage < len(depths) - 1:  # mirrored: decoder index 0 is the coarsest level
                    out[f"decoder.{len(depths) - 2 - stage}.{block}.{ours}"] = source + theirs
        if stage < len(depths) - 1:
            merge = {
                "microsoft": f"layers.{stage}.downsample.",
                "timm": f"layers.{stage + 1}.downsample.",
                "torchvision": f"features.{2 * stage + 2}.",
            }[layout]
            for part in ("norm.weight", "norm.bias", "reduction.weight"):
                out[f"merges.{stage}.{part}"] = merge + part
    return out


@pytest.mark.parametrize("layout", ["microsoft", "timm", "torchvision"])
def test_every_tensor_lands_where_the_released_swin_unet_puts_it(sources, layout):
    path, state, _ = sources[layout]
    torch.manual_seed(1)
    plain = SwinUNet(num_classes=3, **NARROW).state_dict()
    torch.manual_seed(1)
    model = SwinUNet(num_classes=3, pretrained=str(path), **NARROW)
    ours = model.state_dict()
    expected = expected_sources(layout)
    for name, source in expected.items():
        assert torch.equal(ours[name], state[source]), (name, source)
    report = model.pretrained_report
    assert report.layout == layout and report.skipped == () and report.notes == ()
    # 2 + 2 + 8 blocks x 13 + 3 merges x 3 + 2 in the encoder, and 6 mirrored blocks x 13.
    assert set(report.loaded) == set(expected) and len(report.loaded) == 197
    assert len(report.missing) == 21 and all(n.startswith(DECODER_ONLY) for n in report.missing)
    for name in report.missing:
        assert torch.equal(ours[name], plain[name]), name
    # Swin-T's blocks 2-5 of stage 2 (4 x 13) have no place in depths (2, 2, 2, 2); nor its head.
    assert len(report.unused) == 54
    assert {n.split(".")[0] for n in report.unused} == {"layers", "head"}
    assert all(re.match(r"layers\.2\.blocks\.[2-5]\.", n) for n in report.unused if "layers" in n)


@pytest.mark.parametrize("layout", ["timm", "torchvision"])
def test_loaded_encoder_computes_the_source_swin_features(sources, layout):
    # The strongest check that every tensor means what it meant: same input, same features.
    path, _, source = sources[layout]
    model = SwinUNet(depths=SWIN_T_DEPTHS, pretrained=path, **NARROW).eval()
    assert model.pretrained_report.unused == ("head.weight", "head.bias")
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        h = model.embed_norm(model.patch_embed(x).permute(0, 2, 3, 1))
        for stage, merge in zip(model.encoder, [*model.merges, None], strict=True):
            h = stage(h) if merge is None else merge(stage(h))
        ours = model.norm(h)
        theirs = source.forward_features(x) if layout == "timm" else source.norm(source.features(x))
    assert ours.shape == theirs.shape == (1, 7, 7, 8 * WIDTH)
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)


def test_microsoft_file_of_timm_weights_loads_the_same_model(sources):
    models = [SwinUNet(pretrained=sources[k][0], **NARROW) for k in ("microsoft", "timm")]
    a, b = (m.state_dict() for m in models)
    loaded = models[0].pretrained_report.loaded
    assert loaded == models[1].pretrained_report.loaded
    assert all(torch.equal(a[name], b[name]) for name in loaded)


@pytest.mark.parametrize("in_channels", [5, 1])
def test_first_conv_of_other_input_channels(sources, in_channels):
    path, state, _ = sources["torchvision"]
    model = SwinUNet(in_channels=in_channels, pretrained=path, **NARROW)
    weight, rgb = model.patch_embed.weight.detach(), state["features.0.0.weight"]
    assert weight.shape == (WIDTH, in_channels, 4, 4)
    if in_channels == 5:  # --fusion concat: the priors' channels start at zero
        assert torch.equal(weight[:, :3], rgb) and torch.equal(
            weight[:, 3:], torch.zeros(24, 2, 4, 4)
        )
    else:  # a grey image repeated as RGB, as the released Swin-Unet feeds one
        torch.testing.assert_close(weight, rgb.sum(1, keepdim=True))
    report = model.pretrained_report
    assert "patch_embed.weight" in report.loaded and len(report.loaded) == 197
    assert report.notes and report.notes[0].startswith("patch_embed.weight: ")
    assert report.notes[0] in report.summary()


def test_tensors_of_another_shape_are_skipped_and_reported(sources):
    path, state, _ = sources["timm"]
    torch.manual_seed(2)
    plain = SwinUNet(num_heads=(1, 2, 4, 4), base_channels=WIDTH).state_dict()
    torch.manual_seed(2)
    model = SwinUNet(num_heads=(1, 2, 4, 4), base_channels=WIDTH, pretrained=path)
    report = model.pretrained_report
    # 4 heads instead of 8 in the bottleneck: only its bias tables, (169, 4) vs (169, 8).
    tables = tuple(f"encoder.3.{b}.attn.relative_position_bias_table" for b in (0, 1))
    assert report.skipped == tables and len(report.loaded) == 195 and len(report.missing) == 21
    ours = model.state_dict()
    assert all(torch.equal(ours[name], plain[name]) for name in tables)
    assert torch.equal(
        ours["encoder.3.1.attn.qkv.weight"], state["layers.3.blocks.1.attn.qkv.weight"]
    )
    assert f"skipped 2 of another shape: {', '.join(tables)}" in report.summary()


def test_a_model_nothing_fits_is_refused(sources):
    path = sources["microsoft"][0]
    problem = r" \(microsoft layout\): none of its tensors fits this SwinUNet; .* base_channels=96"
    with pytest.raises(SettingError, match=re.escape(str(path)) + problem):
        SwinUNet(base_channels=16, num_heads=HEADS, window_size=5, pretrained=path)


def test_files_that_are_not_swin_t_are_refused(tmp_path):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"\x00\x01 not a checkpoint" * 10)
    other = tmp_path / "unet.pth"
    torch.save({"model": {"conv.weight": torch.zeros(2, 3)}}, other)
    listed = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], listed)
    cases = [
        (junk, r"cannot be read as a PyTorch or safetensors file \(UnpicklingError\)"),
        (
            other,
            r"not Swin-T weights in a layout this loader knows \(its first keys: conv.weight\)",
        ),
        (listed, r"holds a list that is not a mapping of names to tensors"),
        (tmp_path / "absent.pth", "no such file; give Microsoft's swin_tiny"),
    ]
    for path, problem in cases:
        with pytest.raises(
            SettingError, match=rf"^pretrained weight file {re.escape(str(path))}: {problem}"
        ) as err:
            SwinUNet(**NARROW, pretrained=str(path))
        assert "\n" not in str(err.value)
        if path != cases[-1][0]:
            assert "timm's swin_tiny_patch4_window7_224" in str(err.value)
    with pytest.raises(SettingError, match="pretrained must be the path of a weight file, not 3"):
        SwinUNet(**NARROW, pretrained=3)


def test_safetensors_file(sources, tmp_path):
    _, state, _ = sources["timm"]
    path = tmp_path / "swin_t.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, path)
    model = SwinUNet(pretrained=path, **NARROW)
    assert model.pretrained_report.layout == "timm" and len(model.pretrained_report.loaded) == 197
    assert torch.equal(
        model.encoder[1][0].attn.qkv.weight, state["layers.1.blocks.0.attn.qkv.weight"]
    )


def test_real_swin_t_size_into_the_default_model_through_the_registry(tmp_path):
    # Swin-T's own widths into SwinUNet's defaults (the paper's configuration): all fits.
    source = timm.create_model("swin_tiny_patch4_window7_224").state_dict()
    path = tmp_path / "swin_tiny_patch4_window7_224.pth"
    torch.save(microsoft_state(source), path)
    model = create_model("swin_unet", in_channels=5, num_classes=3, pretrained=str(path))
    report = model.pretrained_report
    counts = [len(names) for names in (report.loaded, report.skipped, report.missing)]
    assert counts == [197, 0, 21] and len(report.unused) == 54
    assert report.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert torch.equal(
        model.decoder[0][1].mlp[3].weight, source["layers.2.blocks.1.mlp.fc2.weight"]
    )
    plain = create_model("swin_unet", num_classes=2, base_channels=8, num_heads=(1, 1, 1, 1))
    assert plain.pretrained_report is None


def test_swin_t_download_is_pinned_and_refuses_other_bytes(tmp_path):
    entry = BACKBONES["swin_t"]
    assert re.fullmatch(r"[0-9a-f]{64}", entry.sha256) and entry.url.endswith(entry.filename)
    with pytest.raises(SamaugError, match=r"unknown weights \['swin_b'\]; choose from swin_t"):
        download_backbones(["swin_b"], tmp_path)
    served = tmp_path / "mirror"
    served.mkdir()
    (served / entry.filename).write_bytes(b"not Swin-T")
    with serve(served) as url, pytest.raises(SamaugError, match=f"expected {entry.sha256}"):
        download_backbones(["swin_t"], tmp_path / "checkpoints", base_url=url)
    assert not (tmp_path / "checkpoints" / entry.filename).exists()
