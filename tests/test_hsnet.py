"""HSNet: its maps' coefficients, and the PVTv2-B2 backbone's ImageNet weights read from files
in the PVT authors' layout (a plain ``torch.save`` state dict) and timm's (safetensors). The
maps and their sum are checked with every deep-supervised model's in tests/test_models.py,
the released computation in tests/test_released_networks.py.

The files are written from real random timm ``pvt_v2_b2`` models (at an eighth of the width
where the test only needs the key set); the authors' layout is derived from timm's names by
the inverse of timm's own conversion, which a test checks against timm's converter."""

import hashlib
import re

import pytest
import timm
import torch
from safetensors.torch import save_file
from timm.models.pvt_v2 import checkpoint_filter_fn

from precompute.types import SamaugError, SettingError
from tests.support.http import serve
from tests.support.seeded_weights import seeded_state
from tests.support.widened import assert_priors_start_ignored
from train.models import create_model
from train.models.backbones import BACKBONES, download_backbones
from train.models.pvt_backbone import PvtV2Features, load_pvt_weights, timm_name

SMALL = {"base_channels": 8}
# PVTv2-B2's tensors: 4 embeddings of 4 (convolution, LayerNorm); 16 blocks of 16 (2
# LayerNorms, q, kv, proj, fc1, depth-wise conv, fc2, 2 each) plus 4 (spatial reduction
# convolution and LayerNorm) in the 13 blocks of stages 1-3; 4 stage LayerNorms of 2: 332.
BACKBONE_TENSORS = 4 * 4 + 16 * 16 + 13 * 4 + 4 * 2


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def authors_name(key: str) -> str:
    """timm's PVTv2 key -> the PVT authors' (``pvt_v2.py``) key: the inverse of timm's
    ``checkpoint_filter_fn``."""
    if m := re.fullmatch(r"patch_embed\.(.+)", key):
        return f"patch_embed1.{m[1]}"
    if m := re.fullmatch(r"stages\.(\d)\.downsample\.(.+)", key):
        return f"patch_embed{int(m[1]) + 1}.{m[2]}"
    if m := re.fullmatch(r"stages\.(\d)\.blocks\.(\d+)\.(.+)", key):
        part = m[3].replace("mlp.dwconv.", "mlp.dwconv.dwconv.")
        return f"block{int(m[1]) + 1}.{m[2]}.{part}"
    if m := re.fullmatch(r"stages\.(\d)\.norm\.(.+)", key):
        return f"norm{int(m[1]) + 1}.{m[2]}"
    return key  # head.*


def timm_state(base_channels: int = 8) -> dict:
    """A random timm pvt_v2_b2 state dict (classifier included) at ``base_channels``."""
    widths = tuple(base_channels * w for w in (1, 2, 5, 8))
    model = timm.create_model("pvt_v2_b2", embed_dims=widths, num_classes=10)
    return seeded_state(model, seed=3)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """layout -> (file, timm-named state dict): the authors' .pth and timm's .safetensors."""
    folder = tmp_path_factory.mktemp("pvt")
    state = timm_state()
    authors = folder / "pvt_v2_b2.pth"
    torch.save({authors_name(k): v for k, v in state.items()}, authors)
    safetensors = folder / "model.safetensors"
    save_file(state, safetensors)
    return {"authors": (authors, state), "timm": (safetensors, state)}


def backbone_keys(state: dict) -> set[str]:
    return {k for k in state if not k.startswith("head.")}


# ---- the network ----


def test_each_map_is_weighted_by_its_own_coefficient():
    model = create_model("hsnet", num_classes=1, **SMALL).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        before = model.forward_all(x)
        model.coefficients[2].bias[1] = -1e4  # sigmoid -> 0: the stride-8 map vanishes
        after = model.forward_all(x)
    assert after[1].abs().max() == 0
    for i in (0, 2, 3):
        torch.testing.assert_close(after[i], before[i])


def test_odd_widths_are_refused():
    with pytest.raises(SettingError, match="base_channels must be even, not 7"):
        create_model("hsnet", num_classes=1, base_channels=7)


# ---- the backbone's weight files ----


def test_the_authors_names_are_what_timm_converts_from():
    state = timm_state()
    authors = {authors_name(k): v for k, v in state.items()}
    assert checkpoint_filter_fn(authors, None).keys() == state.keys()
    assert {timm_name(k) for k in authors} == set(state)
    assert "block1.0.mlp.dwconv.dwconv.weight" in authors and "norm4.bias" in authors


@pytest.mark.parametrize("layout", ["authors", "timm"])
def test_every_backbone_tensor_lands_in_place(files, layout):
    path, state = files[layout]
    model = create_model("hsnet", in_channels=3, num_classes=1, pretrained=str(path), **SMALL)
    own = model.backbone.state_dict()
    assert set(own) == backbone_keys(state) and len(own) == BACKBONE_TENSORS
    assert all(torch.equal(own[k], state[k]) for k in own)
    report = model.pretrained_report
    assert report.path == str(path) and len(report.loaded) == BACKBONE_TENSORS
    assert set(report.ignored) == {"head.weight", "head.bias"}
    assert report.missing == report.skipped == report.adapted == ()
    assert f"{BACKBONE_TENSORS} backbone tensors loaded" in report.summary()


def test_loaded_backbone_computes_the_source_features(files):
    # Same tensors, same meaning: our feature module against the timm model they came from.
    path, state = files["timm"]
    source = timm.create_model("pvt_v2_b2", embed_dims=(8, 16, 40, 64), num_classes=10).eval()
    source.load_state_dict(state)
    backbone = PvtV2Features(3, base_channels=8).eval()
    load_pvt_weights(backbone, path)
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        ours = backbone(x)
        theirs = source.forward_intermediates(x, intermediates_only=True)
    assert [tuple(f.shape[1:]) for f in ours] == [(8, 16, 24), (16, 8, 12), (40, 4, 6), (64, 2, 3)]
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b)


def test_five_channel_model_starts_from_three_channel_weights(files):
    path, state = files["authors"]
    three, five = PvtV2Features(3, 8).eval(), PvtV2Features(5, 8).eval()
    load_pvt_weights(three, path)
    report = load_pvt_weights(five, path)
    assert report.adapted == ("patch_embed.proj.weight",) and report.skipped == ()
    source = state["patch_embed.proj.weight"]
    assert source.shape == (8, 3, 7, 7)
    assert_priors_start_ignored(three, five, "patch_embed.proj.weight", source)


def test_partial_file_reports_missing_and_skipped(files, tmp_path):
    _, state = files["timm"]
    state = dict(state)
    del state["stages.3.norm.bias"]
    state["stages.0.blocks.0.attn.q.weight"] = torch.randn(4, 8)  # wrong shape
    path = tmp_path / "partial.safetensors"
    save_file(state, path)
    backbone = PvtV2Features(3, 8)
    before = backbone.state_dict()["stages.0.blocks.0.attn.q.weight"].clone()
    report = load_pvt_weights(backbone, path)
    assert report.missing == ("stages.3.norm.bias",)
    assert report.skipped == ("stages.0.blocks.0.attn.q.weight",)
    assert len(report.loaded) == BACKBONE_TENSORS - 2
    assert torch.equal(backbone.state_dict()["stages.0.blocks.0.attn.q.weight"], before)


def test_real_pvt_v2_b2_size_into_the_default_model_through_the_registry(tmp_path):
    state = timm_state(base_channels=64)
    path = tmp_path / "pvt_v2_b2.pth"
    torch.save({authors_name(k): v for k, v in state.items()}, path)
    model = create_model("hsnet", in_channels=5, num_classes=1, pretrained=str(path))
    report = model.pretrained_report
    assert len(report.loaded) == BACKBONE_TENSORS and report.adapted == ("patch_embed.proj.weight",)
    assert report.skipped == report.missing == ()
    assert torch.equal(
        model.backbone.stages[2].blocks[5].mlp.dwconv.weight,
        state["stages.2.blocks.5.mlp.dwconv.weight"],
    )
    # ImageNet weights fit the ImageNet widths only.
    with pytest.raises(SettingError, match=r"none of its PVTv2-B2 tensors has the shape of this"):
        create_model("hsnet", num_classes=1, pretrained=str(path), **SMALL)


BAD_FILES = {
    "a Res2Net-50": {"conv1.0.weight": torch.zeros(32, 3, 3, 3)},
    "a whole HSNet": {"backbone.patch_embed.proj.weight": torch.zeros(64, 3, 7, 7)},
    "only a classifier": {"head.weight": torch.zeros(1000, 512)},
}


@pytest.mark.parametrize("what", list(BAD_FILES))
def test_other_networks_weights_are_refused(what, tmp_path):
    path = tmp_path / "weights.pth"
    torch.save(BAD_FILES[what], path)
    with pytest.raises(SettingError) as err:
        create_model("hsnet", num_classes=1, pretrained=str(path), **SMALL)
    message = str(err.value)
    assert str(path) in message and "is not a PVTv2-B2 state dict" in message
    assert "pvt_v2_b2.pth" in message and "\n" not in message  # what to give instead
    if what == "only a classifier":
        assert "holds none of its tensors" in message
    else:
        assert all(repr(key) in message for key in BAD_FILES[what])


def test_unreadable_file_is_refused(tmp_path):
    path = tmp_path / "weights.pth"
    path.write_text("not a checkpoint")
    with pytest.raises(SettingError, match="cannot be read as a PyTorch or safetensors file"):
        create_model("hsnet", num_classes=1, pretrained=str(path), **SMALL)


def test_pvt_v2_b2_download_is_pinned_and_refuses_other_bytes(tmp_path):
    entry = BACKBONES["pvt_v2_b2"]
    assert entry.model == "hsnet" and entry.filename == "pvt_v2_b2.pth"
    assert re.fullmatch(r"[0-9a-f]{64}", entry.sha256) and entry.url.endswith(entry.filename)
    served = tmp_path / "mirror"
    served.mkdir()
    (served / entry.filename).write_bytes(b"not PVTv2")
    assert hashlib.sha256(b"not PVTv2").hexdigest() != entry.sha256
    with serve(served) as url, pytest.raises(SamaugError, match=f"expected {entry.sha256}"):
        download_backbones(["pvt_v2_b2"], tmp_path / "checkpoints", base_url=url)
    assert not (tmp_path / "checkpoints" / entry.filename).exists()
