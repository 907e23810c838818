"""A real HTTP server on loopback, serving one folder (for remote-read and download tests).

It honours Range requests and counts them (``precompute.store.range_server.RangeServer``), as a web
server or a bucket does; Python's own ``http.server`` would send whole files.
"""

from __future__ import annotations

import contextlib

from precompute.store.range_server import RangeServer, running

__all__ = ["RangeServer", "running", "serve"]


@contextlib.contextmanager
def serve(directory):
    """Yield the base URL of a loopback HTTP server serving ``directory``."""
    with running(directory) as server:
        yield server.url
