"""The sam2 masker: SAM 2's automatic mask generator exactly, the architecture read from the
checkpoint, provenance and signature as for SAM, and a store made with it that trains and
predicts like any other. A random-weight SAM 2 of the smallest official size (Hiera tiny),
built from the sam2 package's own classes, stands in for a real checkpoint."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("sam2")

from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator  # noqa: E402

from precompute.downloads import sha256_file  # noqa: E402
from precompute.maskers import describe_masker, masker_provenance  # noqa: E402
from precompute.maskers.sam2_masker import (  # noqa: E402
    Sam2Masker,
    sam2_architecture,
)
from precompute.maskers.sam2_settings import Sam2MaskerSettings  # noqa: E402
from precompute.maskers.sam_masks import annotations_to_maskset  # noqa: E402
from precompute.pipeline import PriorsConfig, run  # noqa: E402
from precompute.priors import compute_priors  # noqa: E402
from precompute.store import open_store  # noqa: E402
from precompute.types import SamaugError  # noqa: E402
from samaug.demo.synthetic import write_glas_like  # noqa: E402
from tests.support.tiny_sam import assert_identical, noise  # noqa: E402
from tests.support.train_helpers import tiny  # noqa: E402
from train.results.serving import PredictConfig, predict  # noqa: E402
from train.training.loop import train  # noqa: E402

FEW = {"points_per_side": 4, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def checkpoint(tiny_sam2_checkpoint) -> Path:
    return tiny_sam2_checkpoint


def test_masks_equal_sam2_automatic_mask_generator(checkpoint):
    masker = Sam2Masker.from_checkpoint(checkpoint, Sam2MaskerSettings(**FEW))
    image = noise((70, 90), seed=1)
    ours = masker.generate(image)
    generator = SAM2AutomaticMaskGenerator(
        masker.model, points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0
    )
    reference = annotations_to_maskset(generator.generate(image), image.shape[:2])
    assert len(ours) > 0
    assert_identical(ours, reference)


def test_architecture_and_provenance_come_from_the_checkpoint(checkpoint, tmp_path):
    state = torch.load(checkpoint, weights_only=True)["model"]
    assert sam2_architecture(state) == "sam2_hiera_t"
    assert sam2_architecture({**state, "no_obj_embed_spatial": torch.zeros(1)}) == "sam2.1_hiera_t"
    provenance = masker_provenance("sam2", str(checkpoint), {"points_per_side": 4})
    assert provenance["architecture"] == "sam2_hiera_t"
    assert provenance["checkpoint_sha256"] == sha256_file(checkpoint)
    assert provenance["settings"]["pred_iou_thresh"] == 0.8  # SAM 2's default, recorded
    assert "sam2_hiera_t" in describe_masker(provenance)
    truncated = {k: v for k, v in state.items() if "trunk.blocks.11." not in k}
    torch.save({"model": truncated}, tmp_path / "odd.pt")
    with pytest.raises(SamaugError, match="none of SAM 2's sizes"):
        Sam2Masker.from_checkpoint(tmp_path / "odd.pt")
    with pytest.raises(SamaugError, match="does not exist"):
        Sam2Masker.from_checkpoint(tmp_path / "missing.pt")


def test_a_sam2_store_trains_and_predicts_like_any_other(checkpoint, tmp_path):
    data = write_glas_like(tmp_path / "glas", {"train": 2, "testA": 1}, size=(64, 80))
    store = tmp_path / "glas.zarr"
    summary = run(
        PriorsConfig(
            dataset="glas",
            data_root=str(data),
            store=str(store),
            masker="sam2",
            checkpoint=str(checkpoint),
            masker_settings=tuple(sorted(FEW.items())),
            workers=0,
            device="cpu",
        )
    )
    assert (summary.done, summary.failures) == (3, [])
    opened = open_store(store)
    assert opened.attrs["masker"]["kind"] == "sam2"
    masks, per_mask = opened.masks("train_1")
    seg, boundary = compute_priors(masks, per_mask["stability_score"])
    np.testing.assert_array_equal(opened.read("train_1", "seg_prior"), seg)
    np.testing.assert_array_equal(opened.read("train_1", "boundary_prior"), boundary)

    config = tiny(store, tmp_path / "run", mode="joint", task="binary", epochs=1, val_fraction=0)
    train(config, log=lambda line: None)
    images = tmp_path / "new"
    images.mkdir()
    shutil.copy(data / "testA_1.bmp", images / "testA_1.bmp")
    predicted = predict(
        PredictConfig(
            model=str(tmp_path / "run"),
            out=str(tmp_path / "predicted"),
            images=str(images),
            masker_store=str(tmp_path / "priors.zarr"),
            workers=0,
            device="cpu",
        )
    )
    assert predicted.failures == [] and len(predicted.entries) == 1
    again = open_store(tmp_path / "priors.zarr")
    assert again.attrs["masker"]["kind"] == "sam2"
    np.testing.assert_array_equal(
        again.read("testA_1", "seg_prior"), opened.read("testA_1", "seg_prior")
    )
