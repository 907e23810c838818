"""Every file of the hostile corpus is refused in one line or read correctly, within 1 GiB."""

import json

import pytest

from tests.support import hostile_corpus as corpus
from tests.support.limited import HEADROOM, run_limited

# The walk's memory is its anonymous resident memory (what it allocated), sampled every
# 5 ms: the resident peak (ru_maxrss) also counts pages of the libraries mapped before the
# cap, which a process faults in at a rate that depends on the page cache its parent left.
_WALK = """
import threading, time
from tests.support.hostile_walk import walk
from pathlib import Path
anon = {{"started": vm("RssAnon") << 10, "peak": 0}}
def sample():
    while True:
        anon["peak"] = max(anon["peak"], vm("RssAnon") << 10)
        time.sleep(0.005)
threading.Thread(target=sample, daemon=True).start()
results = walk(Path({folder!r}))
print(json.dumps({{"results": results, **anon}}))
"""


@pytest.fixture(scope="module")
def walked(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostile")
    cases = corpus.build(folder)
    child = run_limited(_WALK.format(folder=str(folder)), timeout=900)
    assert child.returncode == 0, child.stderr[-3000:]
    report = json.loads(child.stdout.strip().splitlines()[-1])
    return cases, report


def test_every_file_is_refused_in_one_line_or_read(walked):
    cases, report = walked
    results = report["results"]
    assert [r["name"] for r in results] == [c["name"] for c in cases]
    wrong = [
        f"{r['name']}: expected {r['expect']}, got {r['outcome']} {r['message'][:300]}"
        for r in results
        if r["outcome"] != r["expect"]
    ]
    assert not wrong, "\n".join(wrong)
    for result in results:
        if result["outcome"] == "refused":
            message = result["message"]
            assert "\n" not in message and message.startswith(result["path"]), result
    kinds = {c["kind"] for c in cases}
    assert kinds == {"model", "config", "npz", "predictions", "store"}
    assert sum(c["expect"] == "read" for c in cases) >= 5  # sound files beside the hostile


def test_the_walk_stays_within_a_gibibyte(walked):
    _, report = walked
    grown = report["peak"] - report["started"]
    # The child's address space was capped at its size after imports plus HEADROOM (1 GiB):
    # an allocation of what a bomb claims (1.5 GiB and more) fails there, and the walk
    # reports a crash; the sampled anonymous memory says how much it used.
    assert grown < HEADROOM, f"the walk grew by {grown / 2**20:.0f} MiB"
