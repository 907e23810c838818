"""Adding a dataset, a masker or a model is one registration each, and the rest of samaug
follows: a toy of each, registered for one test, goes through the real priors pipeline into
a store and trains for an epoch. The table of datasets is what training and the command
line read."""

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from precompute.listing import make_refs
from precompute.maskers import MASKERS, describe_masker, recorded_checkpoint, register_masker
from precompute.pipeline import PriorsConfig, run
from precompute.priors import compute_priors
from precompute.readers import DATASETS, Reader, register_dataset
from precompute.store import open_store
from precompute.types import ImageRef, MaskSet
from samaug.commands.priors_commands import DATASET_HELP
from samaug.demo.synthetic import tissue_image
from train.models import MODELS, register_model
from train.protocols import DEFAULT_PROTOCOL, get_protocol, protocol_for_dataset
from train.tasks import TASKS, task_for_dataset
from train.training.config import TrainConfig
from train.training.loop import train

SIZE = 64  # pixels, square toy images


class ToyReader(Reader):
    """A made-up layout: pictures/<id>.png with labels/<id>.npy (HxW int32 instances)."""

    layout = "pictures/<id>.png with labels/<id>.npy"

    def refs(self) -> list[ImageRef]:
        pictures = sorted(self._folder(self.root / "pictures").glob("*.png"))
        labels = self._folder(self.root / "labels")
        return make_refs((p.stem, "train", p, labels / f"{p.stem}.npy") for p in pictures)

    def _read_label(self, path: Path, shape: tuple[int, int]) -> np.ndarray:
        return np.load(path)


@dataclass(frozen=True)
class RectangleSettings:
    count: int = 3


class RectangleMasker:
    """``count`` fixed rectangles on the image's diagonal, scored 0.9 down to 0.3."""

    def __init__(self, settings: RectangleSettings) -> None:
        self.settings = settings

    def generate(self, image: np.ndarray) -> MaskSet:
        height, width = image.shape[:2]
        n = self.settings.count
        masks = np.zeros((n, height, width), bool)
        box = np.zeros((n, 4), np.int32)
        for k in range(n):
            y0, x0 = k * height // (n + 1), k * width // (n + 1)
            y1, x1 = y0 + height // 2, x0 + width // 2  # exclusive
            masks[k, y0:y1, x0:x1] = True
            box[k] = (x0, y0, x1 - 1, y1 - 1)
        return MaskSet(
            masks=masks,
            stability_score=np.linspace(0.9, 0.3, n).astype(np.float32),
            predicted_iou=np.ones(n, np.float32),
            box=box,
            point=((box[:, :2] + box[:, 2:]) / 2).astype(np.float32),
            area=masks.sum(axis=(1, 2)).astype(np.int64),
        )

    def provenance(self) -> dict:
        return {"kind": "rectangles", "settings": {"count": self.settings.count}, "toy": 1}


class RectangleKind:
    needs_checkpoint = False
    uses_device = False

    @staticmethod
    def settings_class() -> type:
        return RectangleSettings

    @staticmethod
    def identity(checkpoint: str | None) -> dict:
        return {"toy": 1}

    @staticmethod
    def build(settings: RectangleSettings, checkpoint, device, runtime) -> RectangleMasker:
        return RectangleMasker(settings)

    @staticmethod
    def describe(provenance: dict) -> str:
        return f"{provenance['settings']['count']} fixed rectangles"

    @staticmethod
    def recorded_checkpoint(provenance: dict) -> None:
        return None


class PixelModel(nn.Module):
    """A 1x1 convolution: each pixel's logits from its own input channels."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


@pytest.fixture
def toys():
    """The toy dataset, masker and model, each by its one registration, for one test."""
    with DATASETS.restored(), MASKERS.restored(), MODELS.restored():
        register_dataset(
            "toy", ToyReader, task="nuclei", protocol="patches", help="a toy for one test"
        )
        register_masker("rectangles")(RectangleKind)
        register_model("pixel")(PixelModel)
        yield
    assert "toy" not in DATASETS and "rectangles" not in MASKERS and "pixel" not in MODELS


def write_toy_dataset(root: Path, count: int) -> Path:
    (root / "pictures").mkdir(parents=True)
    (root / "labels").mkdir()
    for i in range(count):
        image, label = tissue_image(SIZE, SIZE, objects=5, seed=i, radius=(5, 10))
        Image.fromarray(image).save(root / "pictures" / f"cell_{i}.png")
        np.save(root / "labels" / f"cell_{i}.npy", label)
    return root


def test_a_toy_dataset_masker_and_model_make_a_store_and_train(toys, tmp_path):
    data = write_toy_dataset(tmp_path / "toy", count=4)
    store_path = tmp_path / "toy.zarr"
    summary = run(
        PriorsConfig(
            dataset="toy",
            data_root=str(data),
            store=str(store_path),
            masker="rectangles",
            masker_settings=(("count", 3),),
            workers=0,
            device="cpu",
        )
    )
    assert (summary.done, summary.failures) == (4, [])

    store = open_store(store_path)
    assert store.attrs["dataset"]["name"] == "toy"
    assert store.attrs["dataset"]["splits"] == {"train": 4}
    assert store.attrs["masker"] == {"kind": "rectangles", "settings": {"count": 3}, "toy": 1}
    assert describe_masker(store.attrs["masker"]) == "3 fixed rectangles"
    assert recorded_checkpoint(store.attrs["masker"]) is None
    for i in range(4):
        image = np.asarray(Image.open(data / "pictures" / f"cell_{i}.png"))
        masks = RectangleMasker(RectangleSettings(3)).generate(image)
        seg, boundary = compute_priors(masks.masks, masks.stability_score)
        assert seg.max() > 0 and boundary.max() == 1
        np.testing.assert_array_equal(store.read(f"cell_{i}", "seg_prior"), seg)
        np.testing.assert_array_equal(store.read(f"cell_{i}", "boundary_prior"), boundary)
        np.testing.assert_array_equal(store.read(f"cell_{i}", "image"), image)
        label = np.load(data / "labels" / f"cell_{i}.npy")
        np.testing.assert_array_equal(store.read(f"cell_{i}", "label"), label)

    config = TrainConfig(
        store=str(store_path),
        out=str(tmp_path / "run"),
        model="pixel",
        mode="samaug",
        epochs=1,
        batch_size=2,
        patch_size=SIZE,
        samples_per_epoch=4,
        lr=1e-2,
        workers=0,
        device="cpu",
        amp=False,
        val_fraction=0.25,
    )
    result = train(config, log=lambda line: None)
    assert result["steps"] == 2  # 4 patches in batches of 2
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert (saved["model"], saved["task"], saved["protocol"]) == ("pixel", "nuclei", "patches")
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert (state["task"], state["num_outputs"], state["in_channels"]) == ("nuclei", 3, 3)
    assert state["store"]["masker"]["kind"] == "rectangles"
    assert set(state["model"]) == {"conv.weight", "conv.bias"}
    assert state["model"]["conv.weight"].shape == (3, 3, 1, 1)


def test_every_dataset_trains_a_task_its_protocol_can_train_and_is_in_the_help():
    assert DATASETS.names() == ["folder", "glas", "kvasir", "monuseg", "polyp"]
    for name, entry in DATASETS.items():
        assert entry.task in TASKS
        assert entry.task in get_protocol(entry.protocol).tasks
        assert (task_for_dataset(name), protocol_for_dataset(name)) == (entry.task, entry.protocol)
        assert f"{name}: {entry.help}" in DATASET_HELP
    assert [protocol_for_dataset(n) for n in ("glas", "kvasir", "polyp", "folder")] == [
        "patches",
        "polyp",
        "polyp",
        "patches",
    ]
    assert protocol_for_dataset("a store's own name") == DEFAULT_PROTOCOL
