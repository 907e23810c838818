"""The precompute job under hostile or careless use: nothing lost, nothing executed, every
error one line. Real subprocesses for the command line, a real LocalCluster, real stores."""

import json
import socket
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from precompute.pipeline import PriorsConfig, log_path, run
from precompute.store import open_store
from precompute.types import SamaugError, SettingError
from samaug.demo.synthetic import write_glas_like
from tests.support.cli import samaug


def assert_one_error_line(out: subprocess.CompletedProcess, *fragments: str) -> str:
    """Exit 1 and stderr exactly one 'error: ...' line holding every fragment."""
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 1, out.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


@pytest.fixture
def glas(tmp_path):
    return write_glas_like(tmp_path / "glas", {"train": 3, "testA": 1}, size=(40, 50))


def superpixel(data_root, store, workers=0, **kwargs) -> PriorsConfig:
    return PriorsConfig(
        "glas", str(data_root), str(store), masker="superpixel", workers=workers, **kwargs
    )


# --------------------------------------------------------------------------- settings


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        (["--workers", "-1"], "--workers must be at least 0, not -1"),  # once: a 10 min hang
        (["--threads", "0"], "--threads must be at least 1, not 0"),
        (["--pred-iou-thresh", "2"], "pred_iou_thresh must be at most 1"),  # once: 0 masks
        (["--device", "gpu"], "--device 'gpu' is not a device"),
        (["--masker", "sam3"], "'sam3' is not one of 'sam', 'sam2', 'superpixel'"),
        (["--scheduler-timeout", "0"], "--scheduler-timeout must be greater than 0"),
    ],
)
def test_bad_options_are_one_line_and_create_nothing(
    glas, tmp_path, tiny_sam_checkpoint, options, fragment
):
    store = tmp_path / "s.zarr"
    args = ["--data-root", glas, "--store", store, "--checkpoint", tiny_sam_checkpoint]
    out = samaug("priors", "glas", *args, *options)
    assert_one_error_line(out, fragment)
    assert not store.exists()


@pytest.mark.parametrize(
    ("changes", "pattern"),
    [
        ({"workers": -1}, "--workers must be at least 0"),
        ({"torch_threads": 1.5}, "--threads must be a whole number"),
        ({"device": "cuda:x"}, "is not a device"),
        ({"masker": "sam3"}, "--masker 'sam3': no such masker; valid: sam, sam2, superpixel"),
        ({"masker": "sam"}, "the sam masker needs --checkpoint PATH"),
        ({"masker_settings": (("sigma", -1),)}, "superpixel setting sigma must be at least 0"),
        ({"masker_settings": (("sigmas", 1),)}, "unknown superpixel masker setting"),
        ({"connect_timeout": float("nan")}, "--scheduler-timeout must be a finite number"),
        ({"scheduler": " "}, "--scheduler is empty"),
    ],
)
def test_every_setting_is_checked_when_the_config_is_made(changes, pattern):
    values = {"masker": "superpixel", **changes}
    with pytest.raises(SettingError, match=pattern):
        PriorsConfig("glas", "data", "s.zarr", **values)


def test_an_explicit_default_reader_option_resumes_the_same_store(tmp_path):
    for name in ("a", "b"):
        Image.fromarray(np.full((20, 24, 3), 90, np.uint8)).save(tmp_path / f"{name}.png")
    store = tmp_path / "s.zarr"
    first = run(PriorsConfig("folder", str(tmp_path), str(store), "superpixel", workers=0))
    assert first.done == 2
    out = samaug(
        "priors", "folder", "--data-root", tmp_path, "--store", store, "--masker", "superpixel",
        "--workers", "0", "--reader-option", "split=train",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "0 done, 2 skipped (already complete), 0 failed, of 2 images" in out.stdout
    assert open_store(store).attrs["dataset"]["reader_options"] == {}


def test_a_store_that_spelt_out_a_default_still_resumes(tmp_path):
    # Stores made before reader options were normalised recorded defaults as given.
    for name in ("a", "b"):
        Image.fromarray(np.full((20, 24, 3), 90, np.uint8)).save(tmp_path / f"{name}.png")
    store = tmp_path / "s.zarr"
    run(PriorsConfig("folder", str(tmp_path), str(store), "superpixel", workers=0))
    meta = json.loads((store / "zarr.json").read_text())
    meta["attributes"]["dataset"]["reader_options"] = {"split": "train"}
    (store / "zarr.json").write_text(json.dumps(meta))
    for options in ((), (("split", "train"),)):
        again = run(
            PriorsConfig(
                "folder", str(tmp_path), str(store), "superpixel", workers=0, reader_options=options
            )
        )
        assert (again.done, again.skipped) == (0, 2)
    assert open_store(store).attrs["dataset"]["reader_options"] == {"split": "train"}


# --------------------------------------------------------------------------- per image


def test_a_file_named_zarr_json_png_is_stored_like_any_other(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for name in ("zarr.json", "a"):
        Image.fromarray(np.full((20, 24, 3), 90, np.uint8)).save(data / f"{name}.png")
    summary = run(PriorsConfig("folder", str(data), str(tmp_path / "s.zarr"), "superpixel", 0))
    assert (summary.done, summary.failures) == (2, [])
    assert open_store(tmp_path / "s.zarr").ids() == ["a", "id_zarr.json"]


@pytest.mark.parametrize("workers", [0, 1])
def test_a_failure_that_is_not_the_files_is_recorded_and_the_rest_goes_on(tmp_path, workers):
    # One image's group path is longer than the system allows (PATH_MAX): writing it fails
    # with an OSError, no SamaugError; the other images must still finish.
    data = tmp_path / "data"
    data.mkdir()
    long_id = "x" * 190
    for name in ("a", "b", long_id):
        Image.fromarray(np.full((20, 24, 3), 90, np.uint8)).save(data / f"{name}.png")
    deep = tmp_path.joinpath(*["d" * 200] * (3900 // 201 - len(str(tmp_path)) // 201))
    deep.mkdir(parents=True)
    assert len(str(deep / "s.zarr" / "images" / "a" / "masks" / "box" / "c" / "0")) < 4000
    cfg = PriorsConfig("folder", str(data), str(deep / "s.zarr"), "superpixel", workers=workers)
    summary = run(cfg)
    assert summary.done == 2 and [f.image_id for f in summary.failures] == [long_id]
    failure = summary.failures[0]
    assert not failure.user_error
    assert failure.message.startswith(f"{data / (long_id + '.png')}: ")
    assert "OSError" in failure.message and "\n" not in failure.message
    assert summary.log == str(log_path(cfg.store))
    assert "Traceback (most recent call last)" in Path(summary.log).read_text()
    assert sorted(open_store(cfg.store).ids()) == ["a", "b"]


def test_tracebacks_of_failed_images_only_with_verbose(glas, tmp_path):
    bad = glas / "train_2.bmp"
    bad.write_bytes(bad.read_bytes()[:200])
    args = ["priors", "glas", "--data-root", glas, "--masker", "superpixel", "--workers", "0"]
    quiet = samaug(*args, "--store", tmp_path / "a.zarr")
    loud = samaug("--verbose", *args, "--store", tmp_path / "b.zarr")
    for out in (quiet, loud):
        assert out.returncode == 1 and f"  {bad}: cannot decode image" in out.stderr
    assert "Traceback (most recent call last)" not in quiet.stderr
    assert "Traceback (most recent call last)" in loud.stderr
    assert "InputError" in log_path(tmp_path / "a.zarr").read_text()


def test_polygon_warnings_are_listed_per_image_and_printed(tmp_path):
    folder = tmp_path / "MoNuSegTestData"
    folder.mkdir()
    Image.fromarray(np.full((30, 40, 3), 120, np.uint8)).save(folder / "t1.tif")
    xml = folder / "t1.xml"
    vertices = [(2, 2), (20, 2), (20, 20), (1e300, 20)]
    xml.write_text(
        '<Annotations><Annotation Id="1"><Regions><Region Id="7"><Vertices>'
        + "".join(f'<Vertex X="{x}" Y="{y}"/>' for x, y in vertices)
        + "</Vertices></Region></Regions></Annotation></Annotations>"
    )
    store = tmp_path / "s.zarr"
    out = samaug(
        "priors", "monuseg", "--data-root", tmp_path, "--store", store, "--masker",
        "superpixel", "--workers", "0",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "1 done, 0 skipped" in out.stdout
    assert f"warnings (1):\n  t1: {xml}: 1 region(s) left out, a vertex farther" in out.stderr
    assert "Id=7" in out.stderr


# --------------------------------------------------------------------------- the setup


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_scheduler_is_one_line_and_creates_nothing(glas, tmp_path):
    address = f"tcp://127.0.0.1:{free_port()}"
    store = tmp_path / "s.zarr"
    out = samaug(
        "priors", "glas", "--data-root", glas, "--store", store, "--masker", "superpixel",
        "--scheduler", address, "--scheduler-timeout", "1",
    )  # fmt: skip
    assert_one_error_line(out, f"--scheduler {address}: no Dask scheduler", "within 1 s")
    assert not store.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_cuda_without_a_gpu_is_one_line_before_any_image(glas, tmp_path, tiny_sam_checkpoint):
    store = tmp_path / "s.zarr"
    out = samaug(
        "priors", "glas", "--data-root", glas, "--store", store, "--checkpoint",
        tiny_sam_checkpoint, "--device", "cuda", "--workers", "0",
    )  # fmt: skip
    assert_one_error_line(out, "--device cuda: torch sees no CUDA GPU")
    assert "Fix these files" not in out.stderr and not store.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
@pytest.mark.parametrize("where", ["in this process", "local cluster", "remote worker"])
def test_the_device_is_checked_where_it_is_used_before_any_image(
    glas, tmp_path, tiny_sam_checkpoint, where
):
    from distributed import LocalCluster

    def config(**where_to_run) -> PriorsConfig:
        return PriorsConfig(
            "glas",
            str(glas),
            str(tmp_path / "s.zarr"),
            checkpoint=str(tiny_sam_checkpoint),
            device="cuda",
            **where_to_run,
        )

    if where == "remote worker":  # only the worker can tell: the driver may have no GPU
        with LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster:
            cfg = config(scheduler=cluster.scheduler_address)
            with pytest.raises(
                SamaugError,
                match=r"1 of 1 Dask worker\(s\) could not be set up .*: --device cuda: torch",
            ):
                run(cfg)
    else:
        cfg = config(workers=0 if where == "in this process" else None)
        with pytest.raises(SamaugError, match=r"^--device cuda: torch sees no CUDA GPU"):
            run(cfg)
    assert not (tmp_path / "s.zarr").exists()
