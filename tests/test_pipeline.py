"""The precompute job end to end: real tiny SAM, real Dask LocalCluster, real Zarr on disk."""

import os
import signal
import socket
import subprocess
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from precompute.downloads import sha256_file
from precompute.pipeline import PriorsConfig, log_path, process_image, run
from precompute.priors import compute_priors
from precompute.readers import get_reader
from precompute.store import complete_ids, open_store
from precompute.store.maintenance import verify
from samaug.demo.synthetic import write_glas_like
from tests.support.cli import SAMAUG
from tests.support.tiny_sam import TINY_SAM_SETTINGS


def priors_cli(data_root, store, checkpoint, workers=None, tiny_settings=True) -> list[str]:
    """`samaug priors glas ...` as a subprocess's argument list."""
    args = [*SAMAUG, "priors", "glas", "--data-root", str(data_root), "--store", str(store)]
    args += ["--checkpoint", str(checkpoint), "--device", "cpu"]
    if workers is not None:
        args += ["--workers", str(workers), "--threads", "1"]
    if tiny_settings:
        args += [f"--masker-option={k}={v}" for k, v in TINY_SAM_SETTINGS.items()]
    return args


def config(data_root, store, checkpoint, workers=0, **settings) -> PriorsConfig:
    return PriorsConfig(
        dataset="glas",
        data_root=str(data_root),
        store=str(store),
        masker="sam",
        checkpoint=str(checkpoint),
        masker_settings=tuple(sorted({**TINY_SAM_SETTINGS, **settings}.items())),
        device="cpu",
        workers=workers,
        torch_threads=1,
    )


def superpixel_config(data_root, store) -> PriorsConfig:
    return PriorsConfig(
        dataset="glas", data_root=str(data_root), store=str(store), masker="superpixel", workers=0
    )


def store_contents(path) -> dict:
    """Everything that must be equal between two runs: per image, attrs (minus timings)."""
    store = open_store(path)
    out = {}
    for image_id in store.ids():
        attrs = store.image_attrs(image_id)
        attrs.pop("seconds")
        out[image_id] = attrs
    return out


@pytest.fixture
def glas(tmp_path):
    return write_glas_like(tmp_path / "glas", {"train": 3, "testA": 2, "testB": 1}, size=(70, 90))


def test_a_masker_without_a_model_records_no_made_on(glas, tmp_path):
    cfg = superpixel_config(glas, tmp_path / "s.zarr")
    assert run(cfg).done == 6
    store = open_store(cfg.store)
    assert all("made_on" not in store.image_attrs(i) for i in store.ids())


def test_process_image_writes_what_the_masker_and_priors_give(glas, tmp_path, tiny_sam_checkpoint):
    from precompute.maskers.sam import SamMasker, SamMaskerSettings
    from precompute.pipeline import store_attrs
    from precompute.store import prepare_store

    cfg = config(glas, tmp_path / "s.zarr", tiny_sam_checkpoint)
    reader = get_reader("glas", glas)
    refs = reader.refs()
    prepare_store(cfg.store, store_attrs(cfg, refs))
    result = process_image(refs[0], cfg)
    record = reader.load(refs[0])
    masks = SamMasker.from_checkpoint(
        str(tiny_sam_checkpoint), SamMaskerSettings(**TINY_SAM_SETTINGS), "cpu"
    ).generate(record.image)
    assert result.mask_count == len(masks) > 20
    assert complete_ids(cfg.store) == {refs[0].image_id}
    from precompute.store import set_index

    set_index(cfg.store, {refs[0].image_id: refs[0].split})
    store = open_store(cfg.store)
    stored_masks, per_mask = store.masks(refs[0].image_id)
    np.testing.assert_array_equal(stored_masks, masks.masks)
    np.testing.assert_array_equal(per_mask["stability_score"], masks.stability_score)
    seg, boundary = compute_priors(masks.masks, masks.stability_score)
    np.testing.assert_array_equal(store.read(refs[0].image_id, "seg_prior"), seg)
    np.testing.assert_array_equal(store.read(refs[0].image_id, "boundary_prior"), boundary)
    np.testing.assert_array_equal(store.read(refs[0].image_id, "image"), record.image)
    np.testing.assert_array_equal(store.read(refs[0].image_id, "label"), record.label)


def test_cluster_run_equals_in_process_run(glas, tmp_path, tiny_sam_checkpoint):
    here = run(config(glas, tmp_path / "here.zarr", tiny_sam_checkpoint, workers=0))
    assert (here.done, here.skipped, here.failures) == (6, 0, [])
    cluster = run(config(glas, tmp_path / "dask.zarr", tiny_sam_checkpoint, workers=2))
    assert (cluster.done, cluster.skipped, cluster.failures) == (6, 0, [])
    assert store_contents(tmp_path / "here.zarr") == store_contents(tmp_path / "dask.zarr")
    # SAM is loaded once per worker: no worker ever counted a second load.
    workers = {r.worker for r in cluster.results}
    assert 1 <= len(workers) <= 2
    assert {r.masker_loads for r in cluster.results} == {1}

    store = open_store(tmp_path / "dask.zarr")
    # How the masks were made, where that can change their last bits (CPU thread count).
    made_on = {"torch": torch.__version__, "device": "cpu", "torch_threads": 1}
    assert {store.image_attrs(i)["made_on"] == made_on for i in store.ids()} == {True}
    assert store.ids(split="testA") == ["testA_1", "testA_2"]
    assert store.attrs["dataset"]["splits"] == {"testA": 2, "testB": 1, "train": 3}
    masker = store.attrs["masker"]
    assert masker["kind"] == "sam"
    assert masker["checkpoint_sha256"] == sha256_file(tiny_sam_checkpoint)
    assert masker["settings"]["points_per_side"] == 8
    assert masker["settings"]["crop_nms_thresh"] == 0.5  # the paper's default, recorded
    assert verify(str(tmp_path / "dask.zarr")) == ([], 6)
    # Resuming a complete store does nothing.
    again = run(config(glas, tmp_path / "dask.zarr", tiny_sam_checkpoint, workers=0))
    assert (again.done, again.skipped) == (0, 6)


def _threads_and_malloc() -> tuple:
    import torch

    return (
        os.environ.get("OMP_NUM_THREADS"),
        os.environ.get("MALLOC_TRIM_THRESHOLD_"),
        (torch.get_num_threads()),
    )


def test_cluster_workers_start_with_their_threads_and_glibc_malloc(
    glas, tmp_path, tiny_sam_checkpoint
):
    # Dask's own worker environment sets MALLOC_TRIM_THRESHOLD_, which made every large
    # allocation of the masker a fresh mmap (system time as large as user time).
    from precompute.pipeline.workers import open_workers

    # Dask's dashboard port (8787) taken, as by another cluster: no "already in use" warning.
    with socket.socket() as taken, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            taken.bind(("", 8787))
            taken.listen()
        except OSError:
            pass  # already taken by something else: the same situation
        workers_config = config(glas, tmp_path / "s.zarr", tiny_sam_checkpoint, workers=2)
        with open_workers(workers_config) as workers:
            workers.start()
            seen = workers.client.run(_threads_and_malloc)
    assert list(seen.values()) == [("1", None, 1)] * 2
    assert not [w for w in caught if "in use" in str(w.message)], [str(w.message) for w in caught]


def test_corrupt_image_is_reported_others_finish_rerun_redoes_only_it(
    glas, tmp_path, tiny_sam_checkpoint
):
    bad = glas / "train_2.bmp"
    good_bytes = bad.read_bytes()
    bad.write_bytes(good_bytes[: len(good_bytes) // 3])  # truncated
    store = tmp_path / "s.zarr"
    args = priors_cli(glas, store, tiny_sam_checkpoint, workers=2)
    first = subprocess.run(args, capture_output=True, text=True)
    assert first.returncode == 1
    assert "5 done, 0 skipped (already complete), 1 failed, of 6 images" in first.stdout
    assert f"  {bad}: cannot decode image" in first.stderr
    assert "Fix these files" in first.stderr
    # Users see the summary; the traceback is in the log beside the store, not on screen.
    assert "Traceback (most recent" not in first.stderr and "Compute Failed" not in first.stderr
    assert f"Tracebacks: {log_path(store)}" in first.stderr
    log = log_path(store).read_text()
    assert "== train_2: " in log and "Traceback (most recent call last)" in log
    assert sorted(open_store(store).ids()) == sorted(
        ["testA_1", "testA_2", "testB_1", "train_1", "train_3"]
    )
    bad.write_bytes(good_bytes)
    args[args.index("--workers") + 1] = "0"  # the rerun in-process: quicker, same store
    second = subprocess.run(args, capture_output=True, text=True)
    assert second.returncode == 0, second.stderr
    assert "1 done, 5 skipped (already complete), 0 failed, of 6 images" in second.stdout
    assert len(open_store(store).ids()) == 6


def test_other_settings_are_refused_naming_the_setting(glas, tmp_path, tiny_sam_checkpoint):
    run(config(glas, tmp_path / "s.zarr", tiny_sam_checkpoint, workers=0))
    args = priors_cli(glas, tmp_path / "s.zarr", tiny_sam_checkpoint, workers=0)
    twice = subprocess.run([*args, "--points-per-side", "4"], capture_output=True, text=True)
    assert twice.returncode == 1 and "points_per_side is given twice, as 4 and 8" in twice.stderr
    args = [a for a in args if "points_per_side" not in a]
    refused = subprocess.run([*args, "--points-per-side", "4"], capture_output=True, text=True)
    assert refused.returncode == 1
    assert "masker.settings.points_per_side: store has 8, this run 4" in refused.stderr
    replaced = subprocess.run(
        [*args, "--points-per-side", "4", "--overwrite"], capture_output=True, text=True
    )
    assert replaced.returncode == 0, replaced.stderr
    assert f"replaced {tmp_path / 's.zarr'} (dataset 'glas', masker 'sam', 6 complete" in (
        replaced.stdout
    )
    assert open_store(tmp_path / "s.zarr").attrs["masker"]["settings"]["points_per_side"] == 4


def test_missing_checkpoint_says_how_to_get_one(glas, tmp_path):
    out = subprocess.run(
        priors_cli(glas, tmp_path / "s.zarr", tmp_path / "nope.pth", tiny_settings=False),
        capture_output=True,
        text=True,
    )
    assert out.returncode == 1
    assert "nope.pth" in out.stderr and "make weights" in out.stderr
    assert not (tmp_path / "s.zarr").exists()


def test_sigkill_mid_run_then_resume_equals_uninterrupted(tmp_path, tiny_sam_checkpoint):
    data = write_glas_like(tmp_path / "glas", {"train": 10}, size=(120, 150), seed=3)

    def args(store, workers):
        return priors_cli(data, store, tiny_sam_checkpoint, workers)

    killed_store = tmp_path / "killed.zarr"
    proc = subprocess.Popen(
        args(killed_store, 2),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        images = killed_store / "images"
        if images.is_dir() and len(complete_ids(killed_store)) >= 3:
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and its Dask workers, mid-write
    proc.wait()
    partial = complete_ids(killed_store)
    assert 3 <= len(partial) < 10, "the kill should land mid-run"

    resumed = subprocess.run(args(killed_store, 0), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{10 - len(partial)} done, {len(partial)} skipped" in resumed.stdout
    clean = subprocess.run(args(tmp_path / "clean.zarr", 0), capture_output=True, text=True)
    assert clean.returncode == 0, clean.stderr
    assert store_contents(killed_store) == store_contents(tmp_path / "clean.zarr")
    assert verify(str(killed_store)) == ([], 10)


def test_monuseg_subset_on_a_two_worker_cluster(shared_data, tmp_path, tiny_sam_checkpoint):
    cfg = PriorsConfig(
        dataset="monuseg",
        data_root=str(shared_data / "monuseg"),
        store=str(tmp_path / "monuseg.zarr"),
        checkpoint=str(tiny_sam_checkpoint),
        masker_settings=tuple(sorted({**TINY_SAM_SETTINGS, "points_per_side": 4}.items())),
        workers=2,
        torch_threads=1,
    )
    summary = run(cfg)
    assert (summary.done, summary.failures) == (3, [])
    store = open_store(cfg.store)
    assert store.ids(split="train") == sorted(r.image_id for r in summary.results)
    reader = get_reader("monuseg", shared_data / "monuseg")
    for ref in reader.refs():
        record = reader.load(ref)
        np.testing.assert_array_equal(store.read(ref.image_id, "label"), record.label)
        assert store.read(ref.image_id, "label").max() > 255
        assert store.read(ref.image_id, "seg_prior").shape == (1000, 1000)
    assert verify(cfg.store) == ([], 3)


def test_store_info_prints_the_provenance(glas, tmp_path, tiny_sam_checkpoint):
    run(config(glas, tmp_path / "s.zarr", tiny_sam_checkpoint, workers=0))
    out = subprocess.run(
        [*SAMAUG, "store", "info", str(tmp_path / "s.zarr")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "dataset    glas" in out
    assert "train        3 of 3 complete" in out
    sha256 = sha256_file(tiny_sam_checkpoint)
    assert f"  SAM custom checkpoint {tiny_sam_checkpoint} (sha256 {sha256})" in out.splitlines()
    verified = subprocess.run(
        [*SAMAUG, "store", "verify", str(tmp_path / "s.zarr")], capture_output=True, text=True
    )
    assert verified.returncode == 0 and "6 images checked, 0 problems" in verified.stdout


def test_superpixel_masker_end_to_end(glas, tmp_path):
    # The store's folder does not exist yet (as in `make demo`): the run makes it, lock included.
    cfg = PriorsConfig(
        dataset="glas",
        data_root=str(glas),
        store=str(tmp_path / "new" / "stores" / "sp.zarr"),
        masker="superpixel",
        workers=0,
    )
    summary = run(cfg)
    assert (summary.done, summary.failures) == (6, [])
    store = open_store(cfg.store)
    assert store.attrs["masker"]["kind"] == "superpixel"
    assert verify(cfg.store) == ([], 6)
    image_id = store.ids()[0]
    masks, per_mask = store.masks(image_id)
    seg, _ = compute_priors(masks, per_mask["stability_score"])
    np.testing.assert_array_equal(store.read(image_id, "seg_prior"), seg)
    assert Path(cfg.store).is_dir() and not Path(cfg.store + ".lock").exists()


def test_strip_and_attach_images_for_sharing(glas, tmp_path):
    from PIL import Image

    from precompute.types import SamaugError

    cfg = superpixel_config(glas, tmp_path / "full.zarr")
    run(cfg)
    shared = tmp_path / "shared.zarr"
    out = subprocess.run(
        [*SAMAUG, "store", "strip", cfg.store, str(shared)], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert not list(shared.glob("images/*/image"))
    stripped = open_store(shared)
    assert stripped.attrs["images_stripped"] is True
    with pytest.raises(SamaugError, match="samaug store attach"):
        stripped.read("train_1", "image")
    np.testing.assert_array_equal(
        stripped.read("train_1", "seg_prior"), open_store(cfg.store).read("train_1", "seg_prior")
    )
    assert verify(str(shared)) == ([], 6)

    # A receiver whose copy of one image differs gets told which, and nothing is marked done.
    theirs = tmp_path / "their_glas"
    import shutil

    shutil.copytree(glas, theirs)
    pixels = np.asarray(Image.open(theirs / "testA_1.bmp")).copy()
    pixels[0, 0] ^= 1
    Image.fromarray(pixels).save(theirs / "testA_1.bmp")
    out = subprocess.run(
        [*SAMAUG, "store", "attach", str(shared), "--data-root", str(theirs)],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 1
    assert "image testA_1: your copy's pixels have sha256" in out.stderr
    assert open_store(shared).attrs["images_stripped"] is True

    out = subprocess.run(
        [*SAMAUG, "store", "attach", str(shared), "--data-root", str(glas)],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0 and "6 images attached, 0 problems" in out.stdout
    full, restored = open_store(cfg.store), open_store(shared)
    assert restored.attrs["images_stripped"] is False
    for image_id in full.ids():
        np.testing.assert_array_equal(
            restored.read(image_id, "image"), full.read(image_id, "image")
        )
    assert verify(str(shared)) == ([], 6)


def test_auto_device_is_cuda_exactly_where_torch_sees_a_gpu():
    import torch

    from precompute.pipeline.workers import worker_device

    expected = torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
    assert worker_device("auto") == expected
    assert worker_device("cpu") == torch.device("cpu")
    assert PriorsConfig("glas", "data", "s.zarr", checkpoint="sam.pth").device == "auto"
