"""The command line as a user runs it: ``python -m samaug`` in a subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

# The repository's root: commands run from here import this checkout's packages.
ROOT = Path(__file__).resolve().parents[2]
SAMAUG = [sys.executable, "-m", "samaug"]


def samaug(*args, timeout: float = 300) -> subprocess.CompletedProcess:
    """`python -m samaug ARGS` (each made a string) run from ``ROOT``, output captured as
    text."""
    return subprocess.run(
        [*SAMAUG, *map(str, args)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=timeout,
    )


def one_error_line(result: subprocess.CompletedProcess) -> str:
    """The one ``error:`` line of a failed command (asserted: exit 1, no traceback)."""
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def interrupted(
    *args, when, signum: int, group: bool, env: dict | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    """`python -m samaug ARGS` sent ``signum`` once ``when()`` is true (polled): to its whole
    process group when ``group`` (a terminal's Ctrl-C, SLURM's SIGTERM), else to it alone
    (``kill PID``). It runs in a process group of its own, with the default SIGINT action
    even where this process ignores it. Output captured as text."""
    import os
    import signal
    import time

    process = subprocess.Popen(
        [*SAMAUG, *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=env,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + timeout
    try:
        while not when():
            if process.poll() is not None or time.monotonic() > deadline:
                out, err = process.communicate()
                raise AssertionError(f"ended before the signal ({process.returncode}): {err}")
            time.sleep(0.05)
        (os.killpg if group else os.kill)(process.pid, signum)
        out, err = process.communicate(timeout=timeout)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)
