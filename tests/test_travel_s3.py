"""An S3 bucket as the store: a real S3-compatible server (moto's standalone server) on a free
loopback port, s3fs as the client. `samaug priors` with two Dask workers writes to s3://,
is killed mid-run and resumed into a store equal to one made without a break, then a model
trains from it; one writer at a time; a missing bucket or refused credentials are one line."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from precompute import store as st
from precompute.pipeline import PriorsConfig, run
from precompute.store.maintenance import check_store
from precompute.types import SamaugError
from samaug.demo.synthetic import write_glas_like
from tests.support.cli import SAMAUG
from tests.support.train_helpers import tiny
from train.training.loop import train

s3fs = pytest.importorskip("s3fs", reason="s3fs is an optional extra (pip install samaug[s3])")
moto_server = pytest.importorskip("moto.server", reason="moto[server] is a test dependency")

CREDENTIALS = {"key": "testing", "secret": "testing"}


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """A moto S3 server on loopback with a bucket "lab"; yields (endpoint URL, options)."""
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    options = {
        **CREDENTIALS,
        "client_kwargs": {"endpoint_url": endpoint, "region_name": "us-east-1"},
    }
    s3fs.S3FileSystem(**options).call_s3("create_bucket", Bucket="lab")
    yield endpoint, options
    server.stop()


def cli_options(options: dict) -> list[str]:
    return [f"--storage-option={k}={json.dumps(v)}" for k, v in options.items()]


def marked(fs, prefix: str) -> int:
    """How many image groups under ``prefix`` carry their completion marker."""
    fs.invalidate_cache()
    groups = [p for p in fs.find(f"{prefix}/images", maxdepth=2) if p.endswith("/zarr.json")]
    return sum(
        json.loads(fs.cat_file(p)).get("attributes", {}).get("complete") is True for p in groups
    )


def contents(location: str, options: dict) -> dict:
    """Per image: attributes (without timings) and every logical array."""
    store = st.open_store(location, options)
    out = {}
    for image_id in store.ids():
        attrs = store.image_attrs(image_id)
        attrs.pop("seconds")
        arrays = {n: store.array(image_id, n) for n in st.ARRAY_NAMES if store.has(image_id, n)}
        out[image_id] = (attrs, arrays)
    return out


def test_priors_to_s3_killed_and_resumed_equals_an_unbroken_run_then_trains(s3, tmp_path):
    endpoint, options = s3
    glas = write_glas_like(tmp_path / "glas", {"train": 4, "testA": 1}, size=(96, 128))
    reference = str(tmp_path / "unbroken.zarr")  # the same run, never broken, on a disk
    assert run(PriorsConfig("glas", str(glas), reference, masker="superpixel", workers=0)).done == 5

    url = "s3://lab/runs/glas.zarr"
    args = [*SAMAUG, "priors", "glas", "--data-root", str(glas), "--store", url]
    args += ["--masker", "superpixel", "--workers", "2", "--threads", "1"]
    proc = subprocess.Popen(
        [*args, *cli_options(options)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # the driver and its Dask workers: one group to kill
    )
    fs = s3fs.S3FileSystem(**options, skip_instance_cache=True)
    deadline = time.monotonic() + 120
    while marked(fs, "lab/runs/glas.zarr") < 2 and proc.poll() is None:
        assert time.monotonic() < deadline, "no image was written within two minutes"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = marked(fs, "lab/runs/glas.zarr")
    assert 2 <= done_before < 5, "killed after the end, not mid-run"
    assert fs.exists("lab/runs/glas.zarr.lock")  # left by the killed run: stale

    # Resumed with credentials from the environment this time, not options.
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,
    }
    resumed = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    replaced = "replaced the lock of a run that is no longer running (samaug priors on"
    assert replaced in resumed.stdout
    assert "skipped (already complete)" in resumed.stdout
    skipped = int(resumed.stdout.split(" done, ")[1].split(" skipped")[0])
    assert skipped >= done_before and not fs.exists("lab/runs/glas.zarr.lock")

    got, want = contents(url, options), contents(reference, None)
    assert sorted(got) == sorted(want)
    for image_id, (attrs, arrays) in want.items():
        assert got[image_id][0] == attrs
        for name, values in arrays.items():
            np.testing.assert_array_equal(got[image_id][1][name], values)
    assert check_store(url, options).problems == []

    access = st.StoreAccess(url, options)
    summary = train(tiny(url, tmp_path / "run", epochs=1), log=lambda line: None, access=access)
    assert summary["steps"] == 2
    assert torch.load(tmp_path / "run" / "last.pt", weights_only=False)["epoch"] == 0


def test_one_writer_at_a_time(s3, tmp_path):
    _, options = s3
    for location, opts in (("s3://lab/locked/x.zarr", options), (str(tmp_path / "x.zarr"), None)):
        target = st.Target(location, opts)
        held = st.lock.acquire(target)
        with pytest.raises(
            SamaugError, match=r"is being written by samaug priors on host .*, process "
        ) as err:
            st.lock.acquire(target)
        assert f"process {os.getpid()}" in str(err.value) and "\n" not in str(err.value)
        held.release()
        # A lock from another host: only its age can be told; --break-lock replaces it.
        other = {**held.record, "host": "elsewhere", "run": "someone"}
        st.lock._write(target, other, exclusive=True)
        with pytest.raises(SamaugError, match="run again with --break-lock"):
            st.lock.acquire(target)
        taken = st.lock.acquire(target, break_lock=True)
        assert taken.replaced.startswith("the lock of samaug priors on host elsewhere")
        assert taken.replaced.endswith(", broken with --break-lock")
        # The run whose lock was broken notices at its next refresh and stops.
        st.lock._write(target, other, exclusive=False)
        with pytest.raises(SamaugError, match="this run's lock was broken"):
            taken.refresh()
        taken.release()  # not its lock any more: left alone
        assert st.lock.read(target)["host"] == "elsewhere"


def test_a_live_run_makes_a_second_one_refuse_with_one_line(s3, tmp_path):
    _, options = s3
    glas = write_glas_like(tmp_path / "glas", {"train": 1}, size=(32, 40))
    url = "s3://lab/busy/glas.zarr"
    held = st.lock.acquire(st.Target(url, options))
    out = subprocess.run(
        [
            *SAMAUG,
            "priors",
            "glas",
            "--data-root",
            str(glas),
            "--store",
            url,
            "--masker",
            "superpixel",
            "--workers",
            "0",
            *cli_options(options),
        ],
        capture_output=True,
        text=True,
    )
    held.release()
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 1 and len(lines) == 1, out.stderr
    assert lines[0].startswith(f"error: {url} is being written by samaug priors on host ")
    assert f"process {os.getpid()}" in lines[0]


def test_a_missing_bucket_or_refused_credentials_are_one_line(s3, tmp_path):
    endpoint, options = s3
    glas = write_glas_like(tmp_path / "glas", {"train": 1}, size=(32, 40))
    base = [*SAMAUG, "priors", "glas", "--data-root", str(glas), "--masker", "superpixel"]
    # A second server that checks credentials (moto's IAM rules, from the first request on).
    strict = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from moto.server import ThreadedMotoServer as S; import time; "
            "s = S('127.0.0.1', 0, False); s.start(); print(s.get_host_and_port()[1], flush=True); "
            "time.sleep(600)",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "0"},
    )
    try:
        port = int(strict.stdout.readline())
        refused = {
            **options,
            "client_kwargs": {
                "endpoint_url": f"http://127.0.0.1:{port}",
                "region_name": "us-east-1",
            },
        }
        cases = [
            (
                ["--store", "s3://no-such-bucket/x.zarr", *cli_options(options)],
                "the bucket or path does not exist",
            ),
            (["--store", "s3://lab/x.zarr", *cli_options(refused)], "access refused"),
        ]
        for extra, expected in cases:
            out = subprocess.run([*base, *extra], capture_output=True, text=True, timeout=120)
            lines = out.stderr.strip().splitlines()
            assert out.returncode == 1 and len(lines) == 1, out.stderr
            assert lines[0].startswith("error: s3://") and expected in lines[0], lines[0]
    finally:
        strict.kill()
        strict.wait()
    with pytest.raises(SamaugError, match="no-such-bucket") as err:
        st.open_store("s3://no-such-bucket/x.zarr", options)
    assert "\n" not in str(err.value)


def test_a_packed_store_reads_in_place_from_a_bucket(s3, tmp_path):
    from tests.support.store_toys import toy_store

    _, options = s3
    data = toy_store(tmp_path / "toy.zarr")
    st.pack_store(tmp_path / "toy.zarr", tmp_path / "toy.zarr.zip")
    s3fs.S3FileSystem(**options).put_file(str(tmp_path / "toy.zarr.zip"), "lab/shared/toy.zarr.zip")
    url = "s3://lab/shared/toy.zarr.zip"
    store = st.open_store(url, options)
    assert store.ids() == ["a_1", "b_2", "c_3"]
    np.testing.assert_array_equal(
        store.read("c_3", "image", (200, 200, 257, 300)), data["c_3"][0][200:, 200:300]
    )
    assert check_store(url, options).problems == []
    st.unpack_store(url, tmp_path / "back.zarr", options)
    assert st.open_store(tmp_path / "back.zarr").image_attrs("a_1") == store.image_attrs("a_1")
