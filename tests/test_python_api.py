"""The Python API (issue 16, item 13): ``from samaug import open_store, SamaugDataset`` gives
a map-style dataset of dicts that MONAI's transforms and spawned DataLoader workers take,
and a MONAI UNet trains a step from it."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from tests.support.cli import ROOT
from train.targets import BOUNDARY_WIDTH
from train.tasks import get_task

pytestmark = pytest.mark.glas_counts(train=4, testA=1)
KEYS = ["image", "seg_prior", "boundary_prior", "label"]


def test_import_samaug_stays_light_and_names_its_api():
    code = (
        "import sys, samaug; assert 'torch' not in sys.modules and 'zarr' not in sys.modules; "
        "from samaug import SamaugDataset, open_store, folds_of; "
        "print(sorted(samaug.__all__))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert "SamaugDataset" in result.stdout and "open_store" in result.stdout
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        import samaug

        samaug.nope  # noqa: B018


def test_items_are_the_stores_arrays_channel_first(glas_store):
    from samaug import SamaugDataset, open_store

    store = open_store(glas_store)
    image_id = store.ids("train")[1]
    item = SamaugDataset(store, "train")[1]
    assert item["id"] == image_id and set(item) == {*KEYS, "id"}
    image = store.read(image_id, "image")
    assert item["image"].shape == (3, *image.shape[:2]) and item["image"].dtype == torch.float32
    assert np.array_equal(item["image"].numpy(), np.moveaxis(image, -1, 0) / np.float32(255))
    assert np.array_equal(item["seg_prior"][0].numpy(), store.read(image_id, "seg_prior"))
    assert np.array_equal(item["boundary_prior"][0].numpy(), store.read(image_id, "boundary_prior"))
    label = store.read(image_id, "label")
    assert item["label"].dtype == torch.int64 and np.array_equal(item["label"][0].numpy(), label)
    classes = SamaugDataset(str(glas_store), [image_id], task="glands")[0]["label"][0]
    assert np.array_equal(classes.numpy(), get_task("glands").target(label, BOUNDARY_WIDTH))


def test_one_monai_unet_step_from_a_store_with_randflipd_and_spawned_workers(glas_store):
    monai = pytest.importorskip("monai", reason="monai is not installed (pip install monai)")
    from monai.networks.nets import UNet
    from monai.transforms import Compose, RandFlipd

    from samaug import SamaugDataset, open_store

    flip = Compose([RandFlipd(keys=KEYS, prob=1.0, spatial_axis=1)])
    dataset = SamaugDataset(str(glas_store), "train", task="glands", transform=flip)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=2, num_workers=1, multiprocessing_context="spawn"
    )
    batch = next(iter(loader))
    store = open_store(glas_store)
    first = store.ids("train")[0]
    assert batch["id"] == store.ids("train")[:2]
    # RandFlipd flipped every key alike: the width axis reversed.
    flipped = np.flip(store.read(first, "seg_prior"), axis=1)
    assert np.array_equal(np.asarray(batch["seg_prior"][0, 0]), flipped)
    target = get_task("glands").target(store.read(first, "label"), BOUNDARY_WIDTH)
    assert np.array_equal(np.asarray(batch["label"][0, 0]), np.flip(target, axis=1))

    torch.manual_seed(0)
    net = UNet(spatial_dims=2, in_channels=5, out_channels=3, channels=(4, 8), strides=(2,))
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    inputs = torch.cat([batch["image"], batch["seg_prior"], batch["boundary_prior"]], dim=1)
    assert isinstance(inputs, monai.data.MetaTensor) and inputs.shape == (2, 5, 96, 128)
    inputs, labels = inputs.as_tensor(), batch["label"][:, 0].as_tensor()
    loss = torch.nn.functional.cross_entropy(net(inputs), labels)
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss) and loss.item() > 0
    with torch.no_grad():  # the step learned: the same batch scores better
        assert torch.nn.functional.cross_entropy(net(inputs), labels) < loss


def test_the_readmes_monai_example_runs_as_written(glas_store, tmp_path):
    pytest.importorskip("monai", reason="monai is not installed (pip install monai)")
    from samaug import open_store

    readme = (ROOT / "README.md").read_text()
    start = readme.index("```python\nimport torch\nfrom monai")
    code = readme[start + len("```python\n") : readme.index("```\n", start + 3)]
    assert '"stores/glas.zarr"' in code
    script = tmp_path / "example.py"
    script.write_text(code.replace('"stores/glas.zarr"', repr(str(glas_store))))
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, cwd=ROOT, timeout=300
    )
    assert result.returncode == 0, result.stderr
    # A batch of the four training images, in shuffled order, and a finite loss.
    assert all(repr(i) in result.stdout for i in open_store(glas_store).ids("train"))
    assert 0 < float(result.stdout.rsplit("loss ", 1)[1]) < 10
