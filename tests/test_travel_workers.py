"""A Dask worker process killed during a run (not the driver) does not fail the run: Dask
gives its images to another worker (a restarted one, or the other), and the store ends
whole."""

import os
import signal

from precompute.pipeline import ImageResult, PriorsConfig, run
from precompute.store.maintenance import verify
from samaug.demo.synthetic import write_glas_like


def test_a_killed_worker_does_not_fail_the_run(tmp_path):
    glas = write_glas_like(tmp_path / "glas", {"train": 8}, size=(192, 256))
    store = tmp_path / "glas.zarr"
    config = PriorsConfig(
        "glas", str(glas), str(store), masker="superpixel", workers=2, torch_threads=1
    )
    killed: list[int] = []
    after_kill: list[str] = []

    def progress(finished: int, total: int, outcome) -> None:
        assert isinstance(outcome, ImageResult), outcome  # no image is lost
        pid = int(outcome.worker.rsplit(":", 1)[1])
        if killed:
            after_kill.append(outcome.worker)
        else:
            # The worker that finished the first image is already busy with its next one.
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    summary = run(config, on_progress=progress)
    assert (summary.done, summary.failures) == (8, [])
    # Images come back a chunk (a task) at a time: the rest of the killed worker's finished
    # chunk, done before the kill, comes first; it did no more.
    by_killed = [w.endswith(f":{killed[0]}") for w in after_kill]
    assert by_killed == sorted(by_killed, reverse=True) and not all(by_killed)
    assert verify(str(store)) == ([], 8)
