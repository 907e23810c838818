"""``make bench``: speed and size figures, one ``name: value`` per line on stdout.

Run as ``python -m samaug.bench [--quick]``. Figures that need the real data subsets read
them from the folder named by ``SAMAUG_SHARED_DATA`` (``make bench`` sets it) and say
"skipped" where it is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

SHARED_DATA_VARIABLE = "SAMAUG_SHARED_DATA"


def emit(name: str, value) -> None:
    """Print one figure as ``name: value`` (floats to 4 significant digits)."""
    if isinstance(value, float):
        value = f"{value:.4g}"
    print(f"{name}: {value}", flush=True)


def shared_data() -> Path | None:
    """The folder of real data subsets named by ``SAMAUG_SHARED_DATA``, or None."""
    folder = os.environ.get(SHARED_DATA_VARIABLE)
    return Path(folder) if folder and Path(folder).is_dir() else None
