"""A real HTTP server on loopback, serving one folder (for remote-read and download tests).

It honours Range requests and counts them (``precompute.store.range_server.RangeServer``), as a web
server or a bucket does; Python's own ``http.server`` would send whole files. ``faulty`` adds
what only tests want: the failures a network has, made on purpose on chosen files.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from precompute.store.range_server import RangeHandler, RangeServer, running

__all__ = ["FAULTS", "FaultyServer", "faulty", "ignoring_range", "running", "serve"]

FAULTS = ("stall", "drop", "error")


class _RangeIgnored(RangeHandler):
    """Answers as ``python -m http.server`` does: 200 and the whole file, whatever Range
    asks for (the request is still recorded with its Range header)."""

    def answer(self, body: bool) -> None:
        del self.headers["Range"]
        super().answer(body)


@contextlib.contextmanager
def ignoring_range(directory) -> Iterator[RangeServer]:
    """A started ``RangeServer`` over ``directory`` that ignores Range, stopped on exit."""
    server = RangeServer(directory, handler=_RangeIgnored).start()
    try:
        yield server
    finally:
        server.stop()


class _FaultyHandler(RangeHandler):
    server: FaultyServer._Server

    def answer(self, body: bool) -> None:
        if self.server.owner.fault_for(self.path) == "error":
            self.send_error(500, "fault injected by the test")
            return
        super().answer(body)

    def send_body(self, data: bytes) -> None:
        owner = self.server.owner
        fault = owner.fault_for(self.path)
        if fault not in ("stall", "drop"):
            super().send_body(data)
            return
        self.wfile.write(data[: len(data) // 2])
        self.wfile.flush()
        if fault == "stall":
            owner.stalled.wait(owner.stall_seconds)
        self.close_connection = True


class FaultyServer(RangeServer):
    """A ``RangeServer`` that ``fail(path_suffix, fault)`` makes misbehave on requests for
    paths ending in ``path_suffix``: "stall" (send half the body, then wait ``stall_seconds``
    and close), "drop" (half the body, then close) or "error" (HTTP 500)."""

    def __init__(self, directory, stall_seconds: float = 30.0) -> None:
        super().__init__(directory, handler=_FaultyHandler)
        self._faults: dict[str, str] = {}
        self.stalled = threading.Event()
        self.stall_seconds = stall_seconds

    def fault_for(self, path: str) -> str | None:
        with self._lock:
            return next((f for s, f in self._faults.items() if path.endswith(s)), None)

    def fail(self, path_suffix: str, fault: str) -> None:
        if fault not in FAULTS:
            raise ValueError(f"fault {fault!r} is not one of {', '.join(FAULTS)}")
        with self._lock:
            self._faults[path_suffix] = fault

    def heal(self) -> None:
        """No more faults; stalled answers end now."""
        with self._lock:
            self._faults.clear()
        self.stalled.set()

    def stop(self) -> None:
        self.stalled.set()
        super().stop()


@contextlib.contextmanager
def faulty(directory, stall_seconds: float = 30.0) -> Iterator[FaultyServer]:
    """A started ``FaultyServer`` over ``directory`` (no faults until told), stopped on exit."""
    server = FaultyServer(directory, stall_seconds).start()
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def serve(directory):
    """Yield the base URL of a loopback HTTP server serving ``directory``."""
    with running(directory) as server:
        yield server.url
