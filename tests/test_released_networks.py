"""Our networks at the released configurations, their outputs pinned.

README ("Paper, released code and our choices") records how Swin-UNet and HSNet were run
against the released code (``SwinTransformerSys`` of github.com/HuCaoFighting/Swin-Unet;
``HSNet`` of SAMAug's ``lib/pvt.py`` with its PVTv2) with the weights of
``tests.support.seeded_weights`` on these inputs: the numbers pinned here are what both
compute, so a change to our networks that the released code would not share fails here.
"""

import pytest
import torch

from precompute.types import SettingError
from tests.support.seeded_weights import pinned_outputs, seeded_input, seeded_state
from train.models import create_model, preferred_patch_size
from train.training.config import TrainConfig

# pinned_outputs of SwinUNet(3 in, 2 classes, the Swin-T defaults) on seeded_input((1, 3, 224,
# 224)): the released SwinTransformerSys gives the same to the last bit.
SWIN_UNET_224 = [
    0.08872238546609879,
    0.8455106019973755,
    1.0518968105316162,
    -0.9952225089073181,
    0.05858820676803589,
    -1.9932122230529785,
    1.1410832405090332,
    0.6105536222457886,
    0.9021049737930298,
    0.07848881185054779,
    0.9229683876037598,
]
# pinned_outputs of HSNet(3 in, 1 class, the defaults)'s four maps, concatenated, on
# seeded_input((1, 3, 128, 160)): the released HSNet's differ by at most 1.2e-6.
HSNET_MAPS_128x160 = [
    0.02749551460146904,
    0.10432326793670654,
    0.16711293160915375,
    -0.05824197456240654,
    0.012124298140406609,
    -0.08716755360364914,
    -0.3467599153518677,
    -0.041807644069194794,
    0.01002806331962347,
    -0.04930783435702324,
    0.42709100246429443,
    -0.060424722731113434,
    0.009330622851848602,
    -0.09932644665241241,
    0.4642069339752197,
    -0.0546804741024971,
    0.010105502791702747,
    -0.1385411024093628,
    0.41990742087364197,
]


def seeded(name: str, **kwargs) -> torch.nn.Module:
    model = create_model(name, **kwargs).eval()
    model.load_state_dict(seeded_state(model))
    return model


def test_swin_unet_at_224_computes_the_released_network():
    model = seeded("swin_unet", in_channels=3, num_classes=2)
    assert model.skip_source == "input"  # the released skips, by default
    with torch.no_grad():
        got = pinned_outputs(model(seeded_input((1, 3, 224, 224))))
    assert got == pytest.approx(SWIN_UNET_224, rel=1e-4, abs=1e-5)


def test_swin_unet_skips_from_the_blocks_output_are_the_other_option():
    torch.manual_seed(0)
    released = create_model("swin_unet", num_classes=2, base_channels=12, num_heads=(1, 1, 2, 2))
    figure = create_model(
        "swin_unet", num_classes=2, base_channels=12, num_heads=(1, 1, 2, 2), skip_source="output"
    )
    figure.load_state_dict(released.state_dict())  # the option adds no tensor
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert not torch.allclose(released.eval()(x), figure.eval()(x))
    with pytest.raises(SettingError, match="skip_source 'blocks' is none of input, output"):
        create_model("swin_unet", num_classes=2, skip_source="blocks")


def test_hsnet_computes_the_released_network():
    model = seeded("hsnet", in_channels=3, num_classes=1)
    x = seeded_input((1, 3, 128, 160))
    with torch.no_grad():
        maps = model.forward_all(x)
        summed = model(x)
    assert pinned_outputs(torch.cat(maps, dim=1)) == pytest.approx(
        HSNET_MAPS_128x160, rel=1e-4, abs=1e-5
    )
    torch.testing.assert_close(summed, maps[0] + maps[1] + maps[2] + maps[3])


@pytest.mark.parametrize(
    "model, given, protocol, side",
    [
        ("swin_unet", None, "patches", 224),  # the model's own: 7x7 windows tile every stage
        ("swin_unet", 256, "patches", 256),  # --patch-size wins
        ("swin_unet", None, "polyp", 352),  # the polyp protocol resizes every model to 352
        ("unet", None, "patches", 256),  # no preference: the protocol's
        ("pranet", None, "polyp", 352),
        ("hsnet", None, "polyp", 352),
    ],
)
def test_a_models_own_input_side_is_the_default_patch_size(model, given, protocol, side):
    config = TrainConfig(store="s", model=model, protocol=protocol, patch_size=given, task="binary")
    assert config.resolve().patch_size == side
    assert preferred_patch_size(model) == (224 if model == "swin_unet" else None)
