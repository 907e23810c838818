"""Flip test-time augmentation (``Predictor`` with tta="flip") against a computation by hand."""

import pytest
import torch

from precompute.types import SettingError
from train.fusion import FusionSettings, fuse, raw
from train.inference.predictor import Predictor, PredictSettings, check_tta
from train.models import create_model
from train.protocols import get_protocol
from train.tasks import get_task
from train.windows import sliding_window_probs


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return create_model("unet", in_channels=3, num_classes=3, base_channels=4).eval()


def an_item(height: int = 32, width: int = 44) -> dict:
    generator = torch.Generator().manual_seed(1)
    return {
        "image": torch.rand(3, height, width, generator=generator),
        "seg_prior": torch.rand(1, height, width, generator=generator) * 3,
        "boundary_prior": (torch.rand(1, height, width, generator=generator) > 0.8).float(),
        "image_id": "x",
    }


@pytest.mark.parametrize("augmented", [False, True])
def test_flip_tta_is_the_mean_over_the_four_mirrorings_flipped_back(model, augmented):
    item, fusion, task = an_item(), FusionSettings("add", 1.0), get_task("glands")
    batch = {k: item[k][None] for k in ("image", "seg_prior", "boundary_prior")}
    # By hand: mirror the whole network input (fusion is per pixel, so this equals fusing
    # mirrored parts), predict, mirror back; the mean of the four.
    x = fuse(batch["image"], batch["seg_prior"], batch["boundary_prior"], fusion)
    x = x if augmented else raw(batch["image"], fusion)
    by_hand = torch.zeros(1, 3, 32, 44)
    for dims in [(), (3,), (2,), (2, 3)]:
        flipped = x.flip(dims) if dims else x
        probs = sliding_window_probs(model, flipped, 3, window=32, overlap=0.5)
        by_hand += (probs.flip(dims) if dims else probs) / 4

    def predict(item, tta):
        settings = PredictSettings(tta=tta)
        predictor = Predictor(model, task, fusion, get_protocol("patches"), 32, settings)
        return predictor.probabilities(item, augmented)

    with_tta = predict(item, "flip")
    torch.testing.assert_close(with_tta, by_hand, rtol=0, atol=1e-6)
    without = predict(item, "none")
    assert (with_tta - without).abs().max() > 1e-3  # mirroring changes a random net's output
    torch.testing.assert_close(with_tta.sum(1), torch.ones(1, 32, 44))
    # The priors are mirrored with the image: an augmented input sees them, a raw one not.
    no_priors = {**item, "seg_prior": torch.zeros(1, 32, 44)}
    other = predict(no_priors, "flip")
    assert torch.equal(other, with_tta) != augmented


def test_tta_choices_are_checked():
    assert check_tta("flip") == "flip"
    with pytest.raises(SettingError, match="--tta must be one of none, flip, not 'rotate'"):
        check_tta("rotate")
