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
