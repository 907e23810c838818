import math

import pytest
import torch
import torch.nn.functional as F

from precompute.types import SettingError
from train.models import (
    MODELS,
    check_model_options,
    create_model,
    list_models,
    model_options,
    parameter_count,
)
from train.models.blocks import AttentionGate, crop_padding, pad_to_multiple
from train.models.swin_unet import MASK_VALUE, WindowAttention, attention_mask, window_partition

# Small widths keep the file fast; a model missing here is tested at its default size.
SMALL = {
    "unet": {"base_channels": 8},
    "attention_unet": {"base_channels": 8},
    "pnet": {"base_channels": 8},
    "swin_unet": {"base_channels": 12, "num_heads": (1, 1, 2, 2)},
    "pranet": {"base_channels": 8},
    "hsnet": {"base_channels": 8},
}
# Parameter counts of the default configurations (in_channels=3, num_classes=3), in millions:
# the U-Net paper's ~31M and Swin-Unet's reported 27.17M.
DEFAULT_PARAMS_M = {
    "unet": (30.5, 31.5),
    "attention_unet": (31.0, 33.0),
    "pnet": (0.4, 0.6),
    "swin_unet": (26.9, 27.4),
    "hsnet": (29.2, 29.3),  # the released HSNet, less the hb0 block it never calls: 29.26M
}


# The models that train on several maps (``forward_all``) and predict with their sum.
DEEP_SUPERVISED = [n for n in list_models() if getattr(MODELS.get(n), "deep_supervision", False)]


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def small_model(name: str, in_channels: int, num_classes: int) -> torch.nn.Module:
    return create_model(
        name, in_channels=in_channels, num_classes=num_classes, **SMALL.get(name, {})
    )


@pytest.mark.parametrize("shape, num_classes", [((1, 3, 67, 93), 3), ((2, 5, 40, 40), 2)])
@pytest.mark.parametrize("name", list_models())
def test_forward_backward_any_size(name, shape, num_classes):
    model = small_model(name, shape[1], num_classes).train()
    x = torch.randn(shape)
    logits = model(x)
    assert logits.shape == (shape[0], num_classes, *shape[2:])
    assert torch.isfinite(logits).all()
    target = torch.randint(num_classes, (shape[0], *shape[2:]))
    F.cross_entropy(logits, target).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{name}: parameter {pname} is never used"
        assert torch.isfinite(p.grad).all(), f"{name}: gradient of {pname} is not finite"


@pytest.mark.parametrize("shape, num_classes", [((1, 3, 64, 96), 1), ((2, 5, 65, 47), 2)])
@pytest.mark.parametrize("name", DEEP_SUPERVISED)
def test_deep_supervised_maps_are_at_the_input_size_and_forward_is_their_sum(
    name, shape, num_classes
):
    model = small_model(name, shape[1], num_classes).eval()
    x = torch.randn(shape)
    with torch.no_grad():
        maps = model.forward_all(x)
        summed = model(x)
    assert len(maps) == 4
    for m in maps:
        assert m.shape == (shape[0], num_classes, *shape[2:])
        assert torch.isfinite(m).all()
    torch.testing.assert_close(summed, maps[0] + maps[1] + maps[2] + maps[3])
    # Each map has its own head (PraNet: each reverse-attention branch its own residual).
    for i in range(4):
        for j in range(i):
            assert not torch.allclose(maps[i], maps[j])


@pytest.mark.parametrize("name", list_models())
def test_eval_is_deterministic_and_batch_independent(name):
    model = small_model(name, 3, 2).eval()
    x = torch.randn(2, 3, 36, 44)
    with torch.no_grad():
        both = model(x)
        first = model(x[:1])
    torch.testing.assert_close(first, both[:1], rtol=1e-4, atol=1e-5)


def test_unknown_model_lists_valid_names():
    with pytest.raises(ValueError, match="--model 'segformer': no such model; valid: ") as err:
        create_model("segformer", num_classes=2)
    for name in list_models():
        assert name in str(err.value)


@pytest.mark.parametrize("name", list_models())
def test_model_options_come_from_the_constructor_and_unknown_ones_are_refused(name):
    options = model_options(name)
    assert "base_channels" in options  # every model's width option
    assert not {"in_channels", "num_classes"} & set(options)
    with pytest.raises(SettingError, match=f"width: model {name} has no such option") as err:
        create_model(name, num_classes=2, width=8)
    assert all(f"{option} (default" in str(err.value) for option in options)
    with pytest.raises(SettingError, match="base_channels must be a whole number, not 'wide'"):
        check_model_options(name, {"base_channels": "wide"})
    with pytest.raises(SettingError, match="base_channels must be at least 1, not 0"):
        check_model_options(name, {"base_channels": 0})


def test_a_value_the_model_cannot_use_is_a_setting_error():
    with pytest.raises(SettingError, match="swin_unet cannot be built .* differ in length"):
        create_model("swin_unet", num_classes=2, depths=[2, 2], num_heads=[3])
    with pytest.raises(SettingError, match="attention must be true or false"):
        check_model_options("unet", {"attention": 1})


def test_each_name_maps_to_a_distinct_class():
    names = list_models()
    assert {"unet", "attention_unet", "pnet", "swin_unet", "pranet", "hsnet"} <= set(names)
    assert {"pranet", "hsnet"} <= set(DEEP_SUPERVISED)
    classes = {type(small_model(name, 3, 2)) for name in names}
    assert len(classes) == len(names)


@pytest.mark.parametrize("name", list_models())
def test_default_config_parameter_count(name):
    count = parameter_count(create_model(name, in_channels=3, num_classes=3))
    low, high = DEFAULT_PARAMS_M.get(name, (0.0, math.inf))
    assert low * 1e6 < count < high * 1e6


def test_parameter_count_trainable_only():
    model = create_model("unet", num_classes=2, base_channels=8)
    total = parameter_count(model)
    model.head.requires_grad_(False)
    assert parameter_count(model, trainable_only=True) == total - (8 * 2 + 2)


@pytest.mark.parametrize("size", [(16, 16), (67, 93), (5, 3), (1, 40)])
def test_pad_to_multiple_and_crop_back(size):
    x = torch.randn(2, 3, *size)
    padded, pad = pad_to_multiple(x, 16)
    assert padded.shape[-2] % 16 == 0 and padded.shape[-1] % 16 == 0
    assert padded.shape[-2] - size[0] < 16 and padded.shape[-1] - size[1] < 16
    # Centred: the two sides differ by at most one pixel.
    assert abs(pad[0] - pad[1]) <= 1 and abs(pad[2] - pad[3]) <= 1
    torch.testing.assert_close(crop_padding(padded, pad), x, rtol=0, atol=0)


def test_reflect_padding_values():
    x = torch.arange(5.0).view(1, 1, 1, 5).expand(1, 1, 8, 5)
    padded, pad = pad_to_multiple(x, 8)
    assert pad == (1, 2, 0, 0)
    assert padded[0, 0, 0].tolist() == [1, 0, 1, 2, 3, 4, 3, 2]


def test_attention_gate_scales_each_pixel_by_one_coefficient():
    gate = AttentionGate(x_channels=6, g_channels=10, inter_channels=4)
    x, g = torch.randn(2, 6, 8, 12), torch.randn(2, 10, 4, 6)
    alpha = gate.coefficients(x, g)
    assert alpha.shape == (2, 1, 8, 12)
    assert ((alpha > 0) & (alpha < 1)).all()
    torch.testing.assert_close(gate(x, g), alpha * x)
    # The gating signal decides: a different g gives different coefficients.
    assert not torch.allclose(gate.coefficients(x, torch.randn_like(g)), alpha)


def brute_force_window_attention(attn: WindowAttention, x: torch.Tensor, shift) -> torch.Tensor:
    """All token pairs at once: a pair attends iff both lie in the same window of the grid
    offset by ``shift`` (no wrap-around, no padding); bias from their true offset."""
    b, h, w, c = x.shape
    win, heads = attn.window, attn.num_heads
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    ys, xs = ys.flatten(), xs.flatten()
    gy, gx = (
        (ys - shift[0]).div(win, rounding_mode="floor"),
        (xs - shift[1]).div(win, rounding_mode="floor"),
    )
    same = (gy[:, None] == gy[None]) & (gx[:, None] == gx[None])
    dy, dx = ys[:, None] - ys[None], xs[:, None] - xs[None]
    index = ((dy + win - 1) * (2 * win - 1) + dx + win - 1).clamp(0, (2 * win - 1) ** 2 - 1)
    bias = attn.relative_position_bias_table[index].permute(2, 0, 1)  # (heads, L, L)
    q, k, v = attn.qkv(x.reshape(b, h * w, c)).view(b, h * w, 3, heads, -1).permute(2, 0, 3, 1, 4)
    logits = (q @ k.transpose(-2, -1)) * attn.scale + bias
    logits = logits.masked_fill(~same, -math.inf)
    out = (logits.softmax(-1) @ v).transpose(1, 2).reshape(b, h * w, c)
    return attn.proj(out).view(b, h, w, c)


@pytest.mark.parametrize("size", [(8, 8), (9, 11), (3, 10)])
@pytest.mark.parametrize("shift", [(0, 0), (2, 2), (0, 2)])
def test_window_attention_matches_brute_force(size, shift):
    attn = WindowAttention(dim=8, num_heads=2, window=4)
    with torch.no_grad():
        attn.relative_position_bias_table.normal_()  # make the bias matter
        x = torch.randn(2, *size, 8)
        torch.testing.assert_close(
            attn(x, shift), brute_force_window_attention(attn, x, shift), rtol=1e-4, atol=1e-5
        )


def test_attention_mask_equals_swin_reference_mask_when_divisible():
    # The Swin paper's construction: label the regions of the rolled map by slices, forbid
    # pairs of different labels within a window.
    win, s, h, w = 7, 3, 14, 21
    img = torch.zeros(h, w)
    slices = (slice(0, -win), slice(-win, -s), slice(-s, None))
    for i, (hs, ws) in enumerate((hs, ws) for hs in slices for ws in slices):
        img[hs, ws] = i
    labels = window_partition(img[None, :, :, None], win)[0, :, :, 0]
    reference = torch.where(labels[:, None, :] != labels[:, :, None], MASK_VALUE, 0.0)
    torch.testing.assert_close(attention_mask(h, w, win, (s, s), torch.device("cpu")), reference)
    assert attention_mask(h, w, win, (0, 0), torch.device("cpu")) is None
