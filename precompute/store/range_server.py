"""A real HTTP server on loopback that honours Range requests and counts what it serves.

Python's ``http.server`` ignores ``Range`` headers (it always sends the whole file), so it
cannot serve a sharded or zip store the way a web server or a bucket does. ``RangeServer``
serves one folder with single-range ``GET`` (``bytes=a-b``, ``bytes=a-``, ``bytes=-n``;
206 with ``Content-Range``, 416 when the range lies outside the file) and ``HEAD``, records
every request it answers (for the request counts of ``make bench`` and the tests), and can
be told to misbehave on chosen files (stall or drop mid-body, answer 500) so that the
failures a network has can be made on purpose.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import re
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass

_RANGE = re.compile(r"bytes=(\d*)-(\d*)$")
FAULTS = ("stall", "drop", "error")


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # URL path, e.g. "/glas.zarr/zarr.json"
    range: str | None  # the Range header as sent, e.g. "bytes=0-99"


class _Handler(http.server.SimpleHTTPRequestHandler):
    server: RangeServer._Server

    def log_message(self, *args) -> None:  # the tests' output stays clean
        pass

    def do_GET(self) -> None:
        self._answer(body=True)

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def _answer(self, body: bool) -> None:
        owner = self.server.owner
        owner._record(Request(self.command, self.path, self.headers.get("Range")))
        fault = owner._fault_for(self.path)
        if fault == "error":
            self.send_error(500, "fault injected by the test")
            return
        local = self.translate_path(self.path)
        if not os.path.isfile(local):
            self.send_error(404, "File not found")
            return
        size = os.path.getsize(local)
        start, stop = 0, size
        header = self.headers.get("Range")
        partial = header is not None
        if partial:
            span = _span(header, size)
            if span is None:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            start, stop = span
        self.send_response(206 if partial else 200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(stop - start))
        if partial:
            self.send_header("Content-Range", f"bytes {start}-{stop - 1}/{size}")
        self.end_headers()
        if not body:
            return
        with open(local, "rb") as f:
            f.seek(start)
            data = f.read(stop - start)
        if fault in ("stall", "drop"):
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            if fault == "stall":
                owner._stalled.wait(owner.stall_seconds)
            self.close_connection = True
            return
        self.wfile.write(data)


def _span(header: str, size: int) -> tuple[int, int] | None:
    """[start, stop) of a single-range header for a file of ``size`` bytes, or None when it
    cannot be satisfied (RFC 9110 section 14.1.2)."""
    match = _RANGE.match(header.strip())
    if not match or match.groups() == ("", ""):
        return None
    first, last = match.groups()
    if first == "":  # suffix: the last n bytes
        n = int(last)
        return (max(size - n, 0), size) if n > 0 and size > 0 else None
    start = int(first)
    stop = size if last == "" else min(int(last) + 1, size)
    return (start, stop) if start < size and start < stop else None


class RangeServer:
    """A loopback HTTP server over ``directory``; ``url`` is its base URL while it runs.

    ``requests`` lists every request answered (``Request``); ``reset()`` empties it.
    ``fail(path_suffix, fault)`` makes requests for paths ending in ``path_suffix``
    misbehave: "stall" (send half the body, then wait ``stall_seconds`` and close), "drop"
    (half the body, then close) or "error" (HTTP 500).
    """

    class _Server(http.server.ThreadingHTTPServer):
        daemon_threads = True
        owner: RangeServer
        # Open client connections: a stopped server closes them, as a server that goes away
        # does (else a kept-alive connection would go on being answered by its thread).
        connections: set

        def process_request(self, request, client_address) -> None:
            with self.owner._lock:
                self.connections.add(request)
            super().process_request(request, client_address)

        def shutdown_request(self, request) -> None:
            with self.owner._lock:
                self.connections.discard(request)
            super().shutdown_request(request)

    def __init__(self, directory, stall_seconds: float = 30.0) -> None:
        handler = functools.partial(_Handler, directory=str(directory))
        self._server = self._Server(("127.0.0.1", 0), handler)
        self._server.owner = self
        self._server.connections = set()
        self._lock = threading.Lock()
        self._faults: dict[str, str] = {}
        self._stalled = threading.Event()
        self.stall_seconds = stall_seconds
        self.requests: list[Request] = []
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def _record(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)

    def _fault_for(self, path: str) -> str | None:
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
        self._stalled.set()

    def reset(self) -> list[Request]:
        """The requests so far, forgotten here."""
        with self._lock:
            done, self.requests = self.requests, []
        return done

    def count(self) -> int:
        with self._lock:
            return len(self.requests)

    def start(self) -> RangeServer:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop answering and close every open connection."""
        self._stalled.set()
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            open_connections = list(self._server.connections)
        for connection in open_connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


@contextlib.contextmanager
def running(directory, stall_seconds: float = 30.0) -> Iterator[RangeServer]:
    """A started ``RangeServer`` over ``directory``, stopped on exit."""
    server = RangeServer(directory, stall_seconds).start()
    try:
        yield server
    finally:
        server.stop()
