"""A store served by a server that ignores Range (``python -m http.server``: 200 and the
whole object for every ranged request) is read correctly, verified clean and trained from:
never called damaged, never sent to repair."""

import numpy as np
import pytest

from precompute.store import open_store
from precompute.store.reader import MAP_NAMES
from tests.support.cli import samaug
from tests.support.http import ignoring_range, running
from tests.support.train_helpers import checkpoint, quiet, tiny
from train.training.loop import train

pytestmark = pytest.mark.glas_counts(train=3, testA=1)


def test_a_store_on_a_server_that_ignores_range_reads_as_on_disk(glas_store):
    local = open_store(str(glas_store))
    with ignoring_range(glas_store.parent) as server:
        served = open_store(f"{server.url}/{glas_store.name}")
        assert served.ids() == local.ids()
        for image_id in local.ids():
            for name in MAP_NAMES:
                if local.has(image_id, name):
                    assert np.array_equal(served.read(image_id, name), local.read(image_id, name))
            window = (8, 16, 40, 60)
            assert np.array_equal(
                served.read(image_id, "seg_prior", window),
                local.read(image_id, "seg_prior", window),
            )
        # Each object fetched once.
        shards = [r.path for r in server.reset() if "/c/" in r.path]
        assert len(shards) == len(set(shards))


def test_verify_and_train_over_a_server_that_ignores_range(glas_store, tmp_path):
    with ignoring_range(glas_store.parent) as server:
        url = f"{server.url}/{glas_store.name}"
        result = samaug("store", "verify", url)
        assert result.returncode == 0, result.stderr
        assert "damaged" not in result.stdout + result.stderr
        assert "repair" not in result.stdout + result.stderr
        assert any(r.range for r in server.reset())  # verify asked for ranges: answered whole
        config = tiny(url, tmp_path / "run", epochs=1, val_fraction=0)
        train(config, log=quiet)
    with running(glas_store.parent) as server:
        honoured = samaug("store", "verify", f"{server.url}/{glas_store.name}")
    assert honoured.stdout == result.stdout.replace(url, f"{server.url}/{glas_store.name}")
    assert checkpoint(tmp_path / "run")["epoch"] == 0
