"""Commands run under a memory limit, for the tests that feed hostile files.

A regression that makes a hostile file allocate gigabytes must fail the test, not swap the
machine: the child process imports what the command needs first (torch alone maps some
3 GB of address space), then caps its address space at what it has plus ``headroom``
(``resource.setrlimit(RLIMIT_AS)``), then runs. An allocation beyond the cap raises
MemoryError (or torch's allocation RuntimeError), which the command reports as an
"unexpected" error, and the test fails on that line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.support.cli import ROOT

HEADROOM = 1 << 30  # what a command may allocate beyond its imports

# Imported before the cap: the modules the commands load lazily, so that the cap bounds
# the work and not the imports.
PRELOAD = (
    "samaug.cli",
    "train.results.serving",
    "train.results.evaluation",
    "train.results.scoring",
    "train.training.loop",
    "precompute.pipeline",
    "precompute.store.maintenance",
    "precompute.store.derive",
    "scipy.ndimage",
    "skimage.segmentation",
)

_CHILD = """
import importlib, json, re, resource, sys
for name in {preload!r}:
    importlib.import_module(name)
def vm(field):
    return int(re.search(field + r":\\s+(\\d+)", open("/proc/self/status").read()).group(1))
resource.setrlimit(resource.RLIMIT_AS, ((vm("VmSize") << 10) + {headroom}, resource.RLIM_INFINITY))
# The peak resident size so far (imports included), not the resident size now: pages of the
# libraries that memory pressure evicted and the work faults in again do not count as growth.
started_rss = vm("VmHWM") << 10
{body}
"""

_CLI = """
import atexit
def report():
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss << 10
    sys.stderr.flush()
    print("memory: " + json.dumps({{"peak": peak, "started": started_rss}}), file=sys.__stdout__)
atexit.register(report)
from samaug.cli import main
main({argv!r})
"""


_MANY = """
import contextlib, io
from samaug.cli import main
results = []
for argv in {argvs!r}:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(argv)
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else 1
    results.append([code, out.getvalue(), err.getvalue()])
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss << 10
print(json.dumps({{"results": results, "peak": peak, "started": started_rss}}))
"""


def child_env() -> dict[str, str]:
    """The environment of a limited child: one thread per pool and two malloc arenas, so that
    threads do not reserve address space the cap is meant for."""
    return {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "MALLOC_ARENA_MAX": "2",
        "PYTHONPATH": str(ROOT),
    }


def run_limited(
    body: str, headroom: int = HEADROOM, timeout: float = 600
) -> subprocess.CompletedProcess:
    """Python code ``body`` run in a child under the cap (module doc), from the repository
    root; output captured as text."""
    code = _CHILD.format(preload=PRELOAD, headroom=int(headroom), body=body)
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=child_env(),
        timeout=timeout,
    )


def samaug_limited(
    *args, headroom: int = HEADROOM, timeout: float = 600
) -> subprocess.CompletedProcess:
    """`samaug ARGS` under the cap; its last stdout line is ``memory: {"peak": ...,
    "started": ...}`` (bytes: the peak resident size, and the peak when the cap was set),
    which ``memory_of`` reads and ``without_memory`` removes."""
    return run_limited(_CLI.format(argv=[str(a) for a in args]), headroom, timeout)


def memory_of(result: subprocess.CompletedProcess) -> dict[str, int]:
    """The ``memory:`` report of a ``samaug_limited`` run."""
    line = [ln for ln in result.stdout.splitlines() if ln.startswith("memory: ")][-1]
    return json.loads(line.removeprefix("memory: "))


def without_memory(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    """``result`` without its ``memory:`` line (for ``cli.one_error_line``)."""
    kept = "\n".join(ln for ln in result.stdout.splitlines() if not ln.startswith("memory: "))
    return subprocess.CompletedProcess(result.args, result.returncode, kept, result.stderr)


def samaug_many(*argvs, headroom: int = HEADROOM, timeout: float = 900) -> list:
    """Each argument list of ``argvs`` run as `samaug ARGS` in one child under the cap (one
    import of torch for them all); a ``subprocess.CompletedProcess`` each, for
    ``cli.one_error_line``. The child's peak memory must stay within ``headroom`` of its
    size when the cap was set (asserted)."""
    listed = [[str(a) for a in argv] for argv in argvs]
    child = run_limited(_MANY.format(argvs=listed), headroom, timeout)
    assert child.returncode == 0, child.stderr[-3000:]
    report = json.loads(child.stdout.strip().splitlines()[-1])
    assert report["peak"] - report["started"] < headroom, report
    return [
        subprocess.CompletedProcess(argv, code, out, err)
        for argv, (code, out, err) in zip(listed, report["results"], strict=True)
    ]
