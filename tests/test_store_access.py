"""Every command that reads a store reaches a store URL the same way: ``--store URL
--storage-option KEY=VALUE --cache DIR``, one ``StoreAccess`` handed down.

`samaug predict` and `samaug score` from a store on a loopback web server that counts the
requests: the first time they read it over HTTP; the second time (new processes, the same
cache) each asks for the store's root metadata only, to see that the store has not changed;
and they predict and score as from the local store."""

import json
from pathlib import Path

import pytest
import typer

from precompute.store import StoreAccess
from precompute.types import SettingError
from samaug.cli import app
from samaug.commands.options import given_store, store_access
from tests.support.cli import one_error_line, samaug
from tests.support.http import running
from tests.support.train_helpers import quiet, tiny
from train.results.prediction_files import INDEX_NAME
from train.results.scoring import SCORES, prepare_scoring, score_folder
from train.results.serving import PredictConfig, predict
from train.training.loop import train

SPLIT = "testA"
# The commands that read a store (show takes it as an argument, the others as --store).
STORE_READERS = ("train", "eval", "show", "predict", "score", "reproduce")


@pytest.mark.parametrize("command", STORE_READERS)
def test_every_command_that_reads_a_store_takes_storage_options_and_a_cache(command):
    params = typer.main.get_command(app).commands[command].params
    assert {"--storage-option", "--cache"} <= {p.opts[0] for p in params}


def test_a_store_access_from_the_options():
    access = store_access("http://host/s.zarr", ["anon=true", "block_size=0"], Path("c"))
    assert access == StoreAccess("http://host/s.zarr", cache=Path("c"))
    assert access.storage_options == {"anon": True, "block_size": 0}
    assert store_access(None, None, None) == StoreAccess(None)  # the command's default store
    assert given_store(None, None, None) is None
    with pytest.raises(SettingError, match="--storage-option"):
        given_store(None, ["anon=true"], None)


def test_a_cache_without_a_store_is_one_error_line(tmp_path):
    (tmp_path / "labels").mkdir()
    result = samaug("score", tmp_path, "--labels", tmp_path / "labels", "--cache", tmp_path / "c")
    assert "--cache is for reading a --store" in one_error_line(result)
    assert not (tmp_path / "c").exists()


@pytest.fixture(scope="module")
def run_dir(glas_store, tmp_path_factory) -> Path:
    """A tiny samaug-mode U-Net trained one epoch on ``glas_store``."""
    config = tiny(glas_store, tmp_path_factory.mktemp("access") / "run", epochs=1, val_fraction=0)
    train(config, log=quiet)
    return Path(config.out)


def predict_and_score(server, run_dir: Path, out: Path, *options) -> list[list[str]]:
    """`samaug predict` of the SPLIT images of the served store into ``out``, then `samaug
    score` of them, each with ``options``; the paths each command asked ``server`` for."""
    commands = [
        ["predict", run_dir, "--out", out, "--split", SPLIT, "--device", "cpu", *options],
        ["score", out, *options],
    ]
    requested = []
    for command in commands:
        done = samaug(*command)
        assert done.returncode == 0, done.stderr
        requested.append([request.path for request in server.reset()])
    return requested


def files(folder: Path) -> dict[str, bytes]:
    """The prediction files of a folder (not its index or scores, which name the store)."""
    return {
        p.name: p.read_bytes()
        for p in sorted(folder.iterdir())
        if p.name not in (INDEX_NAME, SCORES) and not p.name.startswith("scores")
    }


def test_predict_and_score_read_a_served_store_once_through_a_cache(glas_store, run_dir, tmp_path):
    local = tmp_path / "local"
    store = str(glas_store)
    predict(PredictConfig(str(run_dir), str(local), store=store, splits=(SPLIT,), device="cpu"))
    scores = score_folder(prepare_scoring(local, store))
    cache = tmp_path / "cache"
    with running(glas_store.parent) as server:
        url = f"{server.url}/{glas_store.name}"
        timeout = 'client_kwargs={"timeout": 60}'
        options = ("--store", url, "--cache", cache, "--storage-option", timeout)
        first = predict_and_score(server, run_dir, tmp_path / "first", *options)
        again = predict_and_score(server, run_dir, tmp_path / "again", *options)
    root = f"/{glas_store.name}/zarr.json"
    # The first time: each object once (the labels predict read are scored from the cache).
    shards = [
        f"/{glas_store.name}/images/{image_id}/{key}"
        for image_id in ("testA_1", "testA_2")
        for key in ("image/c/0/0/0", "priors/c/0/0/0", "label/c/0/0")
    ]
    assert first == [[root, *shards], [root]]
    assert again == [[root], [root]]
    for folder in ("first", "again"):
        assert files(tmp_path / folder) == files(local)
        written = json.loads((tmp_path / folder / SCORES).read_text())
        assert written["scores"] == scores and written["ground_truth"]["store"] == url
