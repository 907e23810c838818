"""PraNet: outputs and deep supervision, the structure loss, and the Res2Net backbone's weights
read from files in timm's and the Res2Net authors' formats."""

import warnings

import pytest
import timm
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

from precompute.types import SettingError
from tests.support.widened import assert_priors_start_ignored
from train.losses import boundary_weights, structure_loss
from train.models import create_model, list_models
from train.models.pranet_backbone import build_backbone, load_backbone_weights

SMALL = {"base_channels": 8}


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# ---- the network ----


def test_deep_supervised_structure_loss_trains_every_parameter():
    model = create_model("pranet", in_channels=3, num_classes=1, **SMALL).train()
    x = torch.randn(2, 3, 64, 64)
    mask = (torch.rand(2, 1, 64, 64) > 0.5).float()
    sum(structure_loss(m, mask) for m in model.forward_all(x)).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, f"parameter {name} is never used"
        assert torch.isfinite(p.grad).all(), f"gradient of {name} is not finite"
    assert "pranet" in list_models()


# ---- the structure loss ----


def released_structure_loss(pred, mask, literal):
    """MyTrain.py's structure_loss, transcribed. ``literal``: with its ``reduce='none'``
    (which torch reads as reduce=True: a mean); otherwise with the ``reduction='none'`` meant."""
    weit = 1 + 5 * torch.abs(F.avg_pool2d(mask, kernel_size=31, stride=1, padding=15) - mask)
    if literal:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            wbce = F.binary_cross_entropy_with_logits(pred, mask, reduce="none")
    else:
        wbce = F.binary_cross_entropy_with_logits(pred, mask, reduction="none")
    wbce = (weit * wbce).sum(dim=(2, 3)) / weit.sum(dim=(2, 3))
    pred = torch.sigmoid(pred)
    inter = ((pred * mask) * weit).sum(dim=(2, 3))
    union = ((pred + mask) * weit).sum(dim=(2, 3))
    wiou = 1 - (inter + 1) / (union - inter + 1)
    return (wbce + wiou).mean()


def random_masks(shape) -> torch.Tensor:
    """Blobs: smoothed noise thresholded, float in {0, 1}."""
    noise = F.avg_pool2d(torch.rand(shape), 9, stride=1, padding=4)
    return (noise > noise.mean()).float()


@pytest.mark.parametrize("shape", [(2, 1, 48, 40), (3, 2, 33, 57)])
def test_structure_loss_equals_the_released_formula(shape):
    logits, mask = 3 * torch.randn(shape), random_masks(shape)
    paper = structure_loss(logits, mask)
    torch.testing.assert_close(
        paper, released_structure_loss(logits, mask, literal=False), rtol=0, atol=1e-6
    )
    released = structure_loss(logits, mask, released_bce=True)
    torch.testing.assert_close(
        released, released_structure_loss(logits, mask, literal=True), rtol=0, atol=1e-6
    )
    # The released code's BCE really is unweighted: the two differ.
    assert abs(paper.item() - released.item()) > 1e-3


def test_boundary_weights_on_a_hand_made_mask():
    mask = torch.zeros(1, 1, 100, 100)
    mask[..., 30:70, 30:70] = 1  # a 40x40 square
    w = boundary_weights(mask)[0, 0]
    n = 31 * 31
    expected = {
        (50, 50): 1.0,  # deep inside: the 31x31 window is all object
        (5, 5): 1.0,  # far outside: all background
        (30, 30): 1 + 5 * (1 - 16 * 16 / n),  # inside corner: 16x16 of the window is object
        (30, 50): 1 + 5 * (1 - 16 * 31 / n),  # inside edge: 16 rows of object
        (29, 50): 1 + 5 * (15 * 31 / n),  # just outside the edge: 15 rows of object
    }
    for (y, x), value in expected.items():
        assert w[y, x].item() == pytest.approx(value, abs=1e-6), (y, x)
    # Outside the image counts as background: an all-object mask is weighted at its border.
    border = boundary_weights(torch.ones(1, 1, 40, 40))[0, 0]
    assert border[0, 20].item() == pytest.approx(1 + 5 * (1 - 16 * 31 / n), abs=1e-6)
    assert border[20, 20].item() == pytest.approx(1.0, abs=1e-6)


def test_an_error_at_the_boundary_costs_more_than_one_inside():
    mask = torch.zeros(1, 1, 100, 100)
    mask[..., 30:70, 30:70] = 1
    logits = 8 * (2 * mask - 1)  # confidently right everywhere
    wrong_edge, wrong_centre = logits.clone(), logits.clone()
    wrong_edge[..., 30, 50] = -8
    wrong_centre[..., 50, 50] = -8
    perfect = structure_loss(logits, mask).item()
    edge = structure_loss(wrong_edge, mask).item() - perfect
    centre = structure_loss(wrong_centre, mask).item() - perfect
    assert centre > 0
    # The pixel's weight is 1 + 5 * (1 - 496/961) = 3.42 against 1 inside: the BCE part of the
    # increase scales with it, the IoU part nearly so.
    assert edge / centre == pytest.approx(1 + 5 * (1 - 496 / 961), rel=0.05)


@pytest.mark.parametrize("released_bce", [False, True])
def test_padding_marked_invalid_changes_nothing(released_bce):
    logits, mask = 3 * torch.randn(2, 1, 40, 52), random_masks((2, 1, 40, 52))
    # Pad to 64x64 with values that would count if they were seen.
    big_logits, big_mask = 5 * torch.randn(2, 1, 64, 64), torch.ones(2, 1, 64, 64)
    valid = torch.zeros(2, 1, 64, 64, dtype=torch.bool)
    big_logits[..., 5:45, 7:59], big_mask[..., 5:45, 7:59] = logits, mask
    valid[..., 5:45, 7:59] = True
    expected = structure_loss(logits, mask, released_bce=released_bce)
    got = structure_loss(big_logits, big_mask, valid, released_bce=released_bce)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    all_valid = torch.ones(2, 1, 40, 52)
    torch.testing.assert_close(
        structure_loss(logits, mask, all_valid, released_bce=released_bce),
        expected,
        rtol=0,
        atol=1e-6,
    )


# ---- the backbone and its weight files ----


class V1bBottleneck(nn.Module):
    """Bottle2neck of the Res2Net authors' Res2Net_v1b.py (26w, 4 scales), transcribed as a
    reference: the 1x1 convolution's output is split into 4 scales of ``width``; scale i > 0
    of a block that is not the first of its layer also receives the previous scale's output;
    the first block of a layer convolves every scale separately (with its stride) and
    average-pools the last (3x3, stride, padding 1); the last scale otherwise passes as is."""

    def __init__(self, inplanes, planes, stride, downsample):
        super().__init__()
        width = planes * 26 // 64
        self.conv1 = nn.Conv2d(inplanes, 4 * width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(4 * width)
        self.convs = nn.ModuleList(
            nn.Conv2d(width, width, 3, stride, 1, bias=False) for _ in range(3)
        )
        self.bns = nn.ModuleList(nn.BatchNorm2d(width) for _ in range(3))
        self.conv3 = nn.Conv2d(4 * width, 4 * planes, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(4 * planes)
        self.downsample = downsample
        self.first = downsample is not None
        self.pool = nn.AvgPool2d(3, stride, 1) if self.first else None
        self.width = width

    def forward(self, x):
        parts = torch.split(F.relu(self.bn1(self.conv1(x))), self.width, dim=1)
        outs, sp = [], None
        for i, (conv, bn) in enumerate(zip(self.convs, self.bns, strict=True)):
            sp = parts[i] if i == 0 or self.first else sp + parts[i]
            sp = F.relu(bn(conv(sp)))
            outs.append(sp)
        outs.append(self.pool(parts[3]) if self.first else parts[3])
        out = self.bn3(self.conv3(torch.cat(outs, dim=1)))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


class V1bRes2Net50(nn.Module):
    """res2net50_v1b_26w_4s of Res2Net_v1b.py: the module names (hence state-dict keys) and
    the computation of its release, transcribed."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Sequential(
            nn.Conv2d(3, 32, 3, 2, 1, bias=False),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.Conv2d(32, 32, 3, 1, 1, bias=False),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.Conv2d(32, 64, 3, 1, 1, bias=False),
        )
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        inplanes = 64
        for i, (planes, blocks, stride) in enumerate(
            zip((64, 128, 256, 512), (3, 4, 6, 3), (1, 2, 2, 2), strict=True), start=1
        ):
            downsample = nn.Sequential(
                nn.AvgPool2d(stride, stride, ceil_mode=True, count_include_pad=False),
                nn.Conv2d(inplanes, 4 * planes, 1, bias=False),
                nn.BatchNorm2d(4 * planes),
            )
            layer = [V1bBottleneck(inplanes, planes, stride, downsample)]
            layer += [V1bBottleneck(4 * planes, planes, 1, None) for _ in range(blocks - 1)]
            self.add_module(f"layer{i}", nn.Sequential(*layer))
            inplanes = 4 * planes
        self.fc = nn.Linear(2048, 1000)

    def features(self, x):
        """Outputs of layers 2, 3, 4."""
        x = self.layer1(self.maxpool(F.relu(self.bn1(self.conv1(x)))))
        x2 = self.layer2(x)
        x3 = self.layer3(x2)
        return [x2, x3, self.layer4(x3)]


def randomised(state: dict) -> dict:
    """Every float tensor replaced by random values of a trained network's kind (convolutions
    at He scale, BatchNorm affine and statistics near 1 and 0), so each lands distinguishably
    and activations stay finite; counters kept."""
    out = {}
    for key, value in state.items():
        if not value.is_floating_point():
            out[key] = value.clone()
        elif value.dim() > 1:
            out[key] = torch.randn_like(value) * (2 / value[0].numel()) ** 0.5
        elif key.endswith("running_var"):
            out[key] = 0.5 + torch.rand_like(value)
        elif key.endswith("weight"):
            out[key] = 1 + 0.1 * torch.randn_like(value)
        else:
            out[key] = 0.1 * torch.randn_like(value)
    return out


# Res2Net-50's tensors: 87 convolution weights (3 in the stem; conv1, 3 scale convolutions and
# conv3 in each of 16 blocks; 4 shortcut convolutions) and 87 BatchNorms of 4 tensors each.
BACKBONE_TENSORS = 87 + 87 * 4


def backbone_keys(state: dict) -> set[str]:
    return {k for k in state if not k.startswith("fc.") and not k.endswith("num_batches_tracked")}


@pytest.fixture(scope="module")
def timm_weights(tmp_path_factory):
    """A random res2net50d state dict in timm's format (with its classifier), saved with
    torch.save; returns (path, state)."""
    torch.manual_seed(1)
    state = randomised(timm.create_model("res2net50d", pretrained=False).state_dict())
    path = tmp_path_factory.mktemp("weights") / "res2net50d.pth"
    torch.save(state, path)
    return path, state


def assert_landed(backbone: nn.Module, state: dict) -> None:
    own = backbone.state_dict()
    for key in backbone_keys(state):
        assert torch.equal(own[key], state[key]), key


@pytest.mark.parametrize("file_format", ["torch", "safetensors"])
def test_timm_weights_land_in_place(timm_weights, file_format, tmp_path):
    path, state = timm_weights
    if file_format == "safetensors":
        path = tmp_path / "res2net50d.safetensors"
        save_file(state, path)
    model = create_model("pranet", in_channels=3, num_classes=1, pretrained=str(path), **SMALL)
    assert_landed(model.backbone, state)
    report = model.pretrained_report
    assert report.path == str(path)
    assert set(report.loaded) == backbone_keys(state) and len(report.loaded) == BACKBONE_TENSORS
    assert set(report.ignored) == {"fc.weight", "fc.bias"}
    assert report.missing == report.skipped == report.adapted == ()
    assert f"{BACKBONE_TENSORS} backbone tensors loaded" in report.summary()


def test_original_release_is_the_same_network_and_loads(tmp_path):
    reference = V1bRes2Net50()
    state = randomised(reference.state_dict())
    reference.load_state_dict(state)
    path = tmp_path / "res2net50_v1b_26w_4s-3cf99910.pth"
    torch.save(reference.state_dict(), path)

    model = create_model("pranet", in_channels=3, num_classes=1, pretrained=path, **SMALL)
    # timm's res2net50d has exactly the release's tensors (classifier aside), same shapes.
    own = model.backbone.state_dict()
    assert backbone_keys(own) == backbone_keys(state)
    assert all(own[k].shape == state[k].shape for k in own)
    assert_landed(model.backbone, state)
    assert len(model.pretrained_report.loaded) == BACKBONE_TENSORS

    # ... and computes what the release computes.
    reference.eval(), model.eval()
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        expected, got = reference.features(x), model.backbone(x)
    assert [tuple(f.shape[1:]) for f in got] == [(512, 8, 12), (1024, 4, 6), (2048, 2, 3)]
    for e, g in zip(expected, got, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-4 * e.abs().max().item())


def test_five_channel_model_starts_from_three_channel_weights(timm_weights):
    path, state = timm_weights
    three = build_backbone(3).eval()
    five = build_backbone(5).eval()
    load_backbone_weights(three, path)
    report = load_backbone_weights(five, path)
    assert report.adapted == ("conv1.0.weight",) and "conv1.0.weight" in report.loaded
    assert report.skipped == report.missing == ()
    assert state["conv1.0.weight"].shape == (32, 3, 3, 3)
    assert_priors_start_ignored(three, five, "conv1.0.weight", state["conv1.0.weight"])


def test_partial_file_reports_missing_and_skipped(timm_weights, tmp_path):
    _, state = timm_weights
    state = dict(state)
    del state["layer4.2.bn3.weight"]
    state["layer1.0.conv1.weight"] = torch.randn(8, 64, 1, 1)  # wrong shape
    path = tmp_path / "partial.pth"
    torch.save(state, path)
    backbone = build_backbone(3)
    before = backbone.state_dict()["layer1.0.conv1.weight"].clone()
    report = load_backbone_weights(backbone, path)
    assert report.missing == ("layer4.2.bn3.weight",)
    assert report.skipped == ("layer1.0.conv1.weight",)
    assert len(report.loaded) == BACKBONE_TENSORS - 2
    assert torch.equal(backbone.state_dict()["layer1.0.conv1.weight"], before)
    assert torch.equal(backbone.state_dict()["layer4.2.bn1.weight"], state["layer4.2.bn1.weight"])


@pytest.fixture(scope="module")
def backbone():
    return build_backbone(3)


BAD_FILES = {
    "a ResNet-50": {
        "conv1.weight": torch.zeros(64, 3, 7, 7),
        "layer1.0.conv2.weight": torch.zeros(64, 64, 3, 3),
    },
    "a whole PraNet": {"resnet.conv1.0.weight": torch.zeros(32, 3, 3, 3)},
    "only a classifier": {"fc.weight": torch.zeros(1000, 2048)},
}


@pytest.mark.parametrize("what", list(BAD_FILES))
def test_other_networks_weights_are_refused(what, backbone, tmp_path):
    path = tmp_path / "weights.pth"
    torch.save(BAD_FILES[what], path)
    with pytest.raises(SettingError) as err:
        load_backbone_weights(backbone, path)
    message = str(err.value)
    assert str(path) in message and "is not a Res2Net-50 v1b 26w4s state dict" in message
    assert "res2net50_v1b_26w_4s-3cf99910.pth" in message  # what to give instead
    if what == "only a classifier":
        assert "holds none of its tensors" in message
    else:
        assert all(repr(key) in message for key in BAD_FILES[what])


@pytest.mark.parametrize("what", ["missing", "text", "a tensor"])
def test_unreadable_weight_files_are_refused(what, tmp_path):
    path = tmp_path / "weights.pth"
    if what == "text":
        path.write_text("not a checkpoint")
    elif what == "a tensor":
        torch.save(torch.zeros(3), path)
    problem = {
        "missing": "no such file",
        "text": "cannot be read",
        "a tensor": "not a mapping of names to tensors",
    }[what]
    with pytest.raises(SettingError, match=problem) as err:
        create_model("pranet", in_channels=3, num_classes=1, pretrained=str(path))
    assert str(path) in str(err.value) and "\n" not in str(err.value)
