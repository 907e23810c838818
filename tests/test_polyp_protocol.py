"""The polyp protocol: whole images resized as the released loaders resize them, multi-scale
batches, the test-time path (upsampled to the ground truth, sigmoid, min-max), deep
supervision, and one short PraNet run trained and evaluated under it."""

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torchvision import transforms

from precompute.pipeline import PriorsConfig, run
from precompute.store import open_store
from tests.support.train_helpers import tiny, write_pranet_like
from train.data.datasets import WholeImageDataset
from train.fusion import FusionSettings
from train.inference.predictor import Predictor
from train.losses import make_loss, structure_loss
from train.protocols import get_protocol
from train.protocols.polyp_protocol import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ResizedDataset,
    rescale_batch,
    scale_sizes,
)
from train.results.evaluation import evaluate_run
from train.tasks import get_task
from train.training.loop import train


@pytest.fixture(scope="module")
def polyp_store(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("polyp")
    data = write_pranet_like(root / "polyp", train=4, test={"Kvasir": 2, "CVC-300": 1})
    store = root / "polyp.zarr"
    run(PriorsConfig("polyp", str(data), str(store), masker="superpixel", workers=0))
    return store


def released_loader(image: np.ndarray, mask: np.ndarray, prior: np.ndarray, size: int):
    """The released ``PolypDataset_aux`` transforms (augmentation=False) on PIL images:
    image Resize + ToTensor + Normalize, gt and aux Resize + ToTensor."""
    image_tf = transforms.Compose(
        [
            transforms.Resize((size, size)),
            transforms.ToTensor(),
            transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )
    plain = transforms.Compose([transforms.Resize((size, size)), transforms.ToTensor()])
    return (
        image_tf(Image.fromarray(image)),
        plain(Image.fromarray(mask).convert("L")),
        plain(Image.fromarray(prior)),
    )


def test_training_items_are_the_released_loaders_resize(polyp_store):
    store = open_store(polyp_store)
    image_id = store.ids("train")[1]
    dataset = ResizedDataset(polyp_store, "train", size=64)
    item = dataset[1]
    assert item["image_id"] == image_id
    assert item["image"].shape == (3, 64, 64) and item["target"].shape == (64, 64)

    image, label = store.read(image_id, "image"), store.read(image_id, "label")
    seg, boundary = store.read(image_id, "seg_prior"), store.read(image_id, "boundary_prior")
    assert seg.max() > 1  # a sum of stability scores: the protocol clips it
    prior = np.stack([np.zeros_like(seg), np.clip(seg, 0, 1), boundary], -1)
    mask = np.where(label > 0, 255, 0).astype(np.uint8)
    image_ref, mask_ref, prior_ref = released_loader(
        image, mask, (prior * 255).round().astype(np.uint8), 64
    )
    # PIL resizes 8-bit levels; here floats: equal to within a few levels.
    level = 1 / 255 / min(IMAGENET_STD)
    torch.testing.assert_close(item["image"], image_ref, atol=2.5 * level, rtol=0)
    torch.testing.assert_close(item["target"], mask_ref[0], atol=2.5 / 255, rtol=0)
    torch.testing.assert_close(item["seg_prior"][0], prior_ref[1], atol=2.5 / 255, rtol=0)
    torch.testing.assert_close(item["boundary_prior"][0], prior_ref[2], atol=2.5 / 255, rtol=0)
    soft = item["target"][(item["target"] > 0) & (item["target"] < 1)]
    assert soft.numel() > 0  # soft at the edges, as the released ground truth
    # Fewer items than images go through all of them over the epochs.
    short = ResizedDataset(polyp_store, "train", size=32, samples_per_epoch=3)
    seen = [short[(epoch, i)]["image_id"] for epoch in range(2) for i in range(3)]
    assert seen == [store.ids("train")[k % 4] for k in range(6)]


def test_multi_scale_sizes_and_batches():
    assert scale_sizes(352, (0.75, 1.0, 1.25)) == (256, None, 448)
    assert scale_sizes(64, (0.75, 1.0, 1.25)) == (64, None, 64)  # round() halves to even
    ramp = torch.linspace(0, 1, 16).expand(2, 1, 16, 16)
    batch = {
        "image": ramp.expand(2, 3, 16, 16),
        "seg_prior": ramp,
        "boundary_prior": ramp,
        "target": ramp[:, 0],
        "image_id": ["a", "b"],
    }
    assert rescale_batch(batch, None) is batch
    scaled = rescale_batch(batch, 32)
    assert scaled["image"].shape == (2, 3, 32, 32) and scaled["target"].shape == (2, 32, 32)
    # align_corners=True, as the released F.upsample: the corners are kept, a ramp stays one.
    torch.testing.assert_close(scaled["target"][0, 0], torch.linspace(0, 1, 32))
    assert scaled["image_id"] == ["a", "b"]


class TwoMaps(nn.Module):
    """A small deep-supervised network as PraNet is one: ``forward_all`` gives its maps,
    ``forward`` their sum."""

    deep_supervision = True

    def __init__(self) -> None:
        super().__init__()
        self.near, self.far = nn.Conv2d(3, 1, 3, padding=1), nn.Conv2d(3, 1, 7, padding=3)

    def forward_all(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [self.near(x), self.far(x)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack(self.forward_all(x)).sum(0)


def test_test_time_path_is_the_released_one_at_the_ground_truths_size(polyp_store):
    torch.manual_seed(0)
    model = TwoMaps().eval()
    item = WholeImageDataset(polyp_store, "Kvasir")[0]
    assert item["image"].shape[-2:] == (80, 96)
    fusion, task = FusionSettings(), get_task("binary")
    polyp = Predictor(model, task, fusion, get_protocol("polyp"), 64)
    for augmented in (False, True):
        probs = polyp.probabilities(item, augmented)
        assert probs.shape == (1, 1, 80, 96)
        # The released test: the maps summed, upsampled (align_corners=False) to the
        # ground truth's size, sigmoid, min-max.
        prepared = ResizedDataset(polyp_store, "Kvasir", size=64)[0]
        x = prepared["image"].clone()[None]
        if augmented:
            x[:, 1] += prepared["seg_prior"][0]
            x[:, 2] += prepared["boundary_prior"][0]
        with torch.no_grad():
            res1, res2 = model.forward_all(x)
        res = F.interpolate(res1 + res2, (80, 96), mode="bilinear")
        res = res.sigmoid().numpy().squeeze()
        res = (res - res.min()) / (res.max() - res.min() + 1e-8)
        np.testing.assert_allclose(probs[0, 0].numpy(), res, atol=1e-5)
        assert probs.min() == 0 and probs.max() == pytest.approx(1, abs=1e-4)
    # PraNet's MyTest.py scores the last map (res2) alone: the same path on that map.
    last = Predictor(model, task, fusion, get_protocol("polyp"), 64, test_maps="last")
    prepared = ResizedDataset(polyp_store, "Kvasir", size=64)[0]
    with torch.no_grad():
        res2 = model.forward_all(prepared["image"][None])[-1]
    res = F.interpolate(res2, (80, 96), mode="bilinear").sigmoid().numpy().squeeze()
    res = (res - res.min()) / (res.max() - res.min() + 1e-8)
    np.testing.assert_allclose(last.probabilities(item, False)[0, 0].numpy(), res, atol=1e-5)
    # The patches protocol predicts the same image by windows, unnormalised.
    patches = Predictor(model, task, fusion, get_protocol("patches"), 64)
    windows = patches.probabilities(item, False)
    assert windows.shape == (1, 1, 80, 96) and not torch.allclose(windows, probs)


def test_deep_supervision_sums_the_structure_loss_over_the_maps():
    torch.manual_seed(0)
    maps = [torch.randn(2, 1, 32, 32) for _ in range(4)]
    soft = torch.rand(2, 32, 32)
    loss = make_loss("structure", get_task("binary").loss)
    expected = sum(structure_loss(m, soft[:, None]) for m in maps)
    torch.testing.assert_close(loss(maps, soft), expected)
    unweighted = make_loss("structure_unweighted", get_task("binary").loss)
    by_hand = 0
    for m in maps:  # the SAMAug polyp script's structure_loss, transcribed
        wbce = F.binary_cross_entropy_with_logits(m, soft[:, None])
        pred = torch.sigmoid(m)
        inter = (pred * soft[:, None]).sum(dim=(2, 3))
        union = (pred + soft[:, None]).sum(dim=(2, 3))
        by_hand = by_hand + (wbce + 1 - (inter + 1) / (union - inter + 1)).mean()
    torch.testing.assert_close(unweighted(maps, soft), by_hand)
    # A patch target (int64 with padding) is the same mask, padding left out.
    hard = torch.randint(0, 2, (2, 32, 32))
    padded = torch.full((2, 32, 40), -100)
    padded[..., :32] = hard
    wide = [F.pad(m, (0, 8)) for m in maps]
    torch.testing.assert_close(loss(wide, padded), loss(maps, hard.float()), atol=1e-5, rtol=0)


def test_soft_dice_is_the_released_scripts_test_dice():
    probs = np.zeros((1, 4, 5), np.float32)
    probs[0, :2] = 0.8  # 10 pixels at 0.8
    probs[0, 2, :3] = 0.3
    label = np.zeros((4, 5), np.int32)
    label[1:3] = 7  # 10 pixels, 5 of them at 0.8 and 3 at 0.3
    score = get_task("binary").score(probs, label, 0)["soft_dice"]
    assert score == pytest.approx((2 * (5 * 0.8 + 3 * 0.3) + 1) / (10 * 0.8 + 3 * 0.3 + 10 + 1))


def test_a_multi_scale_joint_run_takes_six_steps_a_batch(polyp_store, tmp_path):
    # 64 at 0.5 / 1 / 1.5: 32, 64, 96; a raw and an augmented step at each.
    config = tiny(
        polyp_store,
        tmp_path / "run",
        mode="joint",
        epochs=1,
        samples_per_epoch=4,
        patch_size=64,
        scales=[0.5, 1, 1.5],
        lr=None,
        val_fraction=None,
    )
    summary = train(config, log=lambda line: None)
    assert summary["steps"] == 6 and summary["val_images"] == 0
    rows = (tmp_path / "run" / "log.csv").read_text().splitlines()
    assert rows[1].split(",")[:3] == ["1", "6", "0.0001"]  # the pranet recipe's rate


def test_pranet_trains_and_tests_under_the_polyp_protocol(polyp_store, tmp_path):
    # Res2Net-50 is slow on a CPU: one batch at one scale, a raw and an augmented step.
    config = tiny(
        polyp_store,
        tmp_path / "run",
        model="pranet",
        mode="joint",
        epochs=1,
        batch_size=2,
        samples_per_epoch=2,
        patch_size=64,
        scales=[1.0],
        lr=None,
        warmup_epochs=None,
        val_fraction=None,
        model_kwargs={"base_channels": 8},
    )
    summary = train(config, log=lambda line: None)
    assert summary["steps"] == 2 and summary["val_images"] == 0 and summary["train_images"] == 4
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    saved = state["config"]
    # PraNet's own pipeline: MyTrain.py's loss and rate, MyTest.py's res2 (the last map).
    assert (saved["protocol"], saved["recipe"], saved["loss"], saved["optimizer"]) == (
        "polyp",
        "pranet",
        "structure_released",
        "adam",
    )
    assert saved["lr"] == 1e-4 and saved["epochs"] == 1 and saved["scales"] == (1.0,)
    assert saved["test_maps"] == "last" and saved["grad_clip"] == 0.5
    assert saved["protocol_settings"]["normalize"] == "imagenet"
    results = evaluate_run(tmp_path / "run", device="cpu")
    assert set(results) == {"Kvasir", "CVC-300"}
    with open(tmp_path / "run" / "test_per_image.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 * 4  # 3 images x 4 strategies
    assert all(0 <= float(r["mean_dice"]) <= 1 for r in rows)
