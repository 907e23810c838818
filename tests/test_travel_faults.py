"""Failures on the way: a server that stalls or drops the connection in the middle of a
read is one line naming the store and the key (run again), and what was complete stays."""

import numpy as np
import pytest

from precompute import store as st
from precompute.types import SamaugError
from tests.support.http import faulty, running


@pytest.mark.parametrize("fault", ["stall", "drop"])
def test_a_read_that_stalls_or_drops_mid_body_is_one_line(consolidated_toy, tmp_path, fault):
    path, data = consolidated_toy
    with faulty(tmp_path, stall_seconds=10) as server:
        url = f"{server.url}/{path.name}"
        # A timeout given as seconds on the command line becomes aiohttp's.
        store = st.open_store(url, {"client_kwargs": {"timeout": 1}})
        server.fail("/images/a_1/priors/c/0/0/0", fault)
        with pytest.raises(st.StoreUnreachableError) as err:
            store.read("a_1", "seg_prior", (0, 0, 16, 16))
        message = str(err.value)
        assert "\n" not in message and message.startswith(
            f"{url}: reading images/a_1/priors/c/0/0/0 failed ("
        )
        assert "run the same command again" in message
        # Everything else still reads, and once the server is well the same read succeeds.
        np.testing.assert_array_equal(store.read("c_3", "label"), data["c_3"][1])
        server.heal()
        np.testing.assert_array_equal(
            store.read("a_1", "seg_prior", (0, 0, 16, 16)), data["a_1"][3][:16, :16]
        )


def test_a_cache_that_cannot_be_written_is_one_line_naming_it(consolidated_toy, tmp_path):
    import json

    from precompute.store.cache import identity

    path, _ = consolidated_toy
    cache = tmp_path / "cache"
    with running(tmp_path) as server:
        url = f"{server.url}/{path.name}"
        root = json.loads((path / "zarr.json").read_text())
        cache.mkdir()
        (cache / identity(url, root)).write_text("not a folder")  # where entries must go
        store = st.open_store(url, cache=cache)
        with pytest.raises(SamaugError, match=f"--cache {cache}: cannot keep images/a_1/") as err:
            store.read("a_1", "image")
    assert "\n" not in str(err.value)
