"""Training and evaluation from a store on a web server (a loopback server that honours Range
requests and counts them): a version 1 folder, a version 2 (sharded) folder and a one-file
``.zarr.zip`` all train to the same weights as the local store and evaluate alike; with
``--cache`` the second epoch makes no request at all, DataLoader workers sharing the cache."""

import pytest
import torch

from precompute import store as st
from precompute.pipeline import PriorsConfig, run, store_attrs
from precompute.readers import get_reader
from samaug.demo.synthetic import write_glas_like
from tests.support.cli import SAMAUG
from tests.support.http import running
from tests.support.train_helpers import tiny
from train.results.evaluation import evaluate_run
from train.training.checkpoint import load_checkpoint
from train.training.loop import train


def glas_config(data, store) -> PriorsConfig:
    return PriorsConfig("glas", str(data), str(store), masker="superpixel", workers=0)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The same priors as a version 1 folder, a version 2 folder and a .zarr.zip, under one
    folder to serve; and a local training run to compare with."""
    root = tmp_path_factory.mktemp("served")
    data = write_glas_like(root / "glas", {"train": 6, "testA": 2}, size=(96, 128))
    v2 = root / "site" / "v2.zarr"
    v2.parent.mkdir()
    assert run(glas_config(data, v2)).done == 8
    v1 = root / "site" / "v1.zarr"  # a version 1 store (as samaug 0.1 made it), resumed
    config = glas_config(data, v1)
    attrs = store_attrs(config, get_reader("glas", str(data)).refs())
    st.prepare_store(v1, {**attrs, "schema_version": 1})
    assert run(config).done == 8 and st.open_store(v1).layout.version == 1
    st.pack_store(v2, root / "site" / "v2.zarr.zip")
    local = root / "local"
    train(tiny(v2, local, epochs=1), log=lambda line: None)
    return root / "site", local, evaluate_run(local, checkpoint="last.pt")


def weights(run_dir) -> dict:
    return load_checkpoint(run_dir / "last.pt", torch.device("cpu"))["model"]


@pytest.mark.parametrize("name", ["v1.zarr", "v2.zarr", "v2.zarr.zip"])
def test_train_and_evaluate_from_a_served_store(served, tmp_path, name):
    site, local, here = served
    with running(site) as server:
        url = f"{server.url}/{name}"
        summary = train(tiny(url, tmp_path / "run", epochs=1), log=lambda line: None)
        assert summary["steps"] == 2 and server.count() > 0
        remote = evaluate_run(tmp_path / "run", checkpoint="last.pt")
    a, b = weights(tmp_path / "run"), weights(local)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert remote == here


def test_with_a_cache_the_second_epoch_reads_nothing_over_the_network(served, tmp_path):
    site, _, _ = served
    cache = tmp_path / "cache"
    per_epoch = []
    with running(site) as server:
        url = f"{server.url}/v2.zarr"

        def log(line: str) -> None:
            if line.startswith("epoch "):
                per_epoch.append(len(server.reset()))

        # Two spawned DataLoader workers share the cache with the main process.
        access = st.StoreAccess(url, cache=cache)
        train(tiny(url, tmp_path / "run", epochs=2, workers=2), log=log, access=access)
        assert per_epoch[0] > 0 and per_epoch[1] == 0, per_epoch
        (identity,) = [p for p in cache.iterdir() if p.is_dir()]
        shards = sorted(identity.glob("images/*/priors/c/0/0/0"))
        train_ids = st.open_store(site / "v2.zarr").ids("train")
        assert [p.parts[-6] for p in shards] == train_ids  # whole objects, by key
        # Another process with the cache filled reads the root metadata, and nothing else.
        store = st.open_store(url, cache=cache)
        images = {i: store.read(i, "image") for i in train_ids}
        assert [r.path for r in server.reset()] == ["/v2.zarr/zarr.json"]
        # A damaged entry is noticed by its checksums, fetched again and replaced.
        whole = shards[0].read_bytes()
        shards[0].write_bytes(whole[:-7])
        store = st.open_store(url, cache=cache)
        store.read(train_ids[0], "seg_prior")
        assert [r.path for r in server.reset()] == [
            "/v2.zarr/zarr.json",
            f"/v2.zarr/images/{train_ids[0]}/priors/c/0/0/0",
        ]
        assert shards[0].read_bytes() == whole
    local = st.open_store(site / "v2.zarr")
    assert all((images[i] == local.read(i, "image")).all() for i in train_ids)


def test_show_reads_through_the_cache_from_the_command_line(served, tmp_path):
    import subprocess

    site, _, _ = served
    with running(site) as server:
        url = f"{server.url}/v2.zarr"
        args = [*SAMAUG, "show", url, "train_1", "--cache", str(tmp_path / "c")]
        first = subprocess.run(
            [*args, "--out", str(tmp_path / "a.png")], capture_output=True, text=True
        )
        assert first.returncode == 0, first.stderr
        assert len(server.reset()) == 4  # the root metadata, the image, priors and label shards
        again = subprocess.run(
            [*args, "--out", str(tmp_path / "b.png")], capture_output=True, text=True
        )
        assert again.returncode == 0, again.stderr
        # Another process: the root metadata only, the shards come from the cache.
        assert [r.path for r in server.reset()] == ["/v2.zarr/zarr.json"]
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
