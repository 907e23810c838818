"""--precision and the other ways SAM can run: bf16 stores are their own (recorded, part of
the signature), older stores without a recorded precision resume as fp32, --image-batch and
--compile are not recorded, and ``samaug store compare`` measures two stores' agreement."""

from __future__ import annotations

import pytest
import torch

from precompute.maskers import MaskerRuntime, portable_provenance
from precompute.pipeline import PriorsConfig, run
from precompute.store import open_store, read_root_attrs, signature
from precompute.types import SamaugError, SettingError
from samaug.demo.synthetic import write_glas_like
from tests.support.cli import samaug
from tests.support.tiny_sam import TINY_SAM_SETTINGS


def config(data, store, checkpoint, **changes) -> PriorsConfig:
    settings = {**TINY_SAM_SETTINGS, **changes.pop("settings", {})}
    return PriorsConfig(
        dataset="glas",
        data_root=str(data),
        store=str(store),
        checkpoint=str(checkpoint),
        masker_settings=tuple(sorted(settings.items())),
        device="cpu",
        workers=0,
        torch_threads=1,
        **changes,
    )


@pytest.fixture(scope="module")
def stores(tmp_path_factory, tiny_sam_checkpoint) -> dict:
    root = tmp_path_factory.mktemp("precision")
    data = write_glas_like(root / "glas", {"train": 2}, size=(60, 80))
    made = {}
    for name, changes in {
        "fp32": {},
        "bf16": {"settings": {"precision": "bf16"}},
        "batched": {"image_batch": 2},
    }.items():
        summary = run(config(data, root / f"{name}.zarr", tiny_sam_checkpoint, **changes))
        assert (summary.done, summary.failures) == (2, [])
        made[name] = root / f"{name}.zarr"
    return {"data": data, **made}


def test_precision_is_recorded_and_a_bf16_store_never_resumes_in_fp32(stores, tiny_sam_checkpoint):
    recorded = open_store(stores["bf16"]).attrs["masker"]["settings"]
    assert recorded["precision"] == "bf16"
    assert open_store(stores["fp32"]).attrs["masker"]["settings"]["precision"] == "fp32"
    with pytest.raises(SamaugError, match="precision: store has 'bf16', this run 'fp32'"):
        run(config(stores["data"], stores["bf16"], tiny_sam_checkpoint))


def test_image_batch_and_compile_are_not_recorded(stores, tiny_sam_checkpoint):
    batched = read_root_attrs(stores["batched"])
    assert signature(batched) == signature(read_root_attrs(stores["fp32"]))
    assert "image_batch" not in str(batched) and "compile" not in str(batched["masker"])
    again = run(config(stores["data"], stores["batched"], tiny_sam_checkpoint, compile=True))
    assert (again.done, again.skipped) == (0, 2)  # resumed: nothing to do, nothing compiled


def test_a_store_made_before_precision_existed_reads_as_fp32(stores):
    masker = dict(read_root_attrs(stores["fp32"])["masker"])
    older = {
        **masker,
        "settings": {k: v for k, v in masker["settings"].items() if k != "precision"},
    }
    assert portable_provenance(older) == portable_provenance(masker)
    bf16 = {**masker, "settings": {**masker["settings"], "precision": "bf16"}}
    assert portable_provenance(older) != portable_provenance(bf16)


def test_bad_precision_and_runtime_are_refused():
    with pytest.raises(SettingError, match="precision must be one of fp32, bf16, fp16"):
        config("d", "s.zarr", "c.pth", settings={"precision": "fp64"})
    with pytest.raises(SettingError, match="--image-batch must be at least 1"):
        MaskerRuntime(image_batch=0)
    with pytest.raises(SettingError, match="points_per_batch must be a whole number"):
        config("d", "s.zarr", "c.pth", settings={"points_per_batch": "many"})


def test_store_compare_prints_the_agreement(stores):
    same = samaug("store", "compare", stores["fp32"], stores["batched"])
    assert same.returncode == 0, same.stderr
    figures = dict(line.split(": ") for line in same.stdout.strip().splitlines())
    assert figures["images"] == "2" and figures["matched_fraction_iou_0.9"] == "1.0"
    assert figures["masks_gained"] == figures["masks_lost"] == "0"
    made_on = f"cpu, 1 torch thread, torch {torch.__version__}"
    assert figures["made_on_a"] == figures["made_on_b"] == made_on
    other = samaug("store", "compare", stores["fp32"], stores["bf16"])
    figures = dict(line.split(": ") for line in other.stdout.strip().splitlines())
    assert 0.0 <= float(figures["matched_fraction_iou_0.9"]) <= 1.0
    assert int(figures["masks_a"]) > 20 and int(figures["masks_b"]) > 0
