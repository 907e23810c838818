"""A real HTTP server on loopback that honours Range requests and counts what it serves.

Python's ``http.server`` ignores ``Range`` headers (it always sends the whole file), so it
cannot serve a sharded or zip store the way a web server or a bucket does. ``RangeServer``
serves one folder with single-range ``GET`` (``bytes=a-b``, ``bytes=a-``, ``bytes=-n``;
206 with ``Content-Range``, 416 when the range lies outside the file) and ``HEAD``, records
every request it answers (for the request counts of ``make bench`` and the tests).
``RangeHandler`` answers the requests; a subclass handed to ``RangeServer`` may answer some
of them otherwise (``answer`` decides the reply, ``send_body`` writes the bytes).
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


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # URL path, e.g. "/glas.zarr/zarr.json"
    range: str | None  # the Range header as sent, e.g. "bytes=0-99"


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Answers ``GET`` and ``HEAD`` for the files of the served folder, a single range
    honoured, after recording the request on the ``RangeServer`` that owns it."""

    server: RangeServer._Server

    def log_message(self, *args) -> None:  # no line per request on stderr
        pass

    def do_GET(self) -> None:
        self._recorded(body=True)

    def do_HEAD(self) -> None:
        self._recorded(body=False)

    def _recorded(self, body: bool) -> None:
        self.server.owner._record(Request(self.command, self.path, self.headers.get("Range")))
        self.answer(body)

    def answer(self, body: bool) -> None:
        """Status, headers and (when ``body``) the bytes asked for: 200, 206, 404 or 416."""
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
            self.send_body(f.read(stop - start))

    def send_body(self, data: bytes) -> None:
        """Write ``data``, the whole body announced by the headers already sent."""
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

    ``handler`` answers each request (``RangeHandler`` or a subclass of it); ``requests``
    lists every request answered (``Request``); ``reset()`` empties it.
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

    def __init__(self, directory, handler: type[RangeHandler] = RangeHandler) -> None:
        self._server = self._Server(
            ("127.0.0.1", 0), functools.partial(handler, directory=str(directory))
        )
        self._server.owner = self
        self._server.connections = set()
        self._lock = threading.Lock()
        self.requests: list[Request] = []
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def _record(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)

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
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            open_connections = list(self._server.connections)
        for connection in open_connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


@contextlib.contextmanager
def running(directory) -> Iterator[RangeServer]:
    """A started ``RangeServer`` over ``directory``, stopped on exit."""
    server = RangeServer(directory).start()
    try:
        yield server
    finally:
        server.stop()
