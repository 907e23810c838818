"""Progress for the commands: rich bars on a terminal, a line every 30 seconds in a log.

The libraries report progress through a plain callback, ``progress(what, done, total)``
(e.g. ``("epoch 3/100", 12, 40)``, ``("testA", 5, 80)``); they never print. ``Bars`` is
that callback for the command line: on a terminal (stdout and stderr both a TTY) one bar per
``what`` with the count, the rate, the time taken and the time left, removed when it
completes; elsewhere (output to a log file or a pipe, a batch job) one plain line on stderr,
``progress: testA 5/80 (0.42/s, 12 s)``, at most every ``INTERVAL`` seconds
(``SAMAUG_PROGRESS_SECONDS``, default 30), so a long evaluation or prediction shows in the
log that it is alive and how far it has got, as tqdm's and rich's non-interactive modes do.
``Bars.echo`` prints a line above the bars (or as ``typer.echo`` without them, so a
redirected output keeps every line).
"""

from __future__ import annotations

import os
import sys
import time

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.text import Text

INTERVAL = 30.0  # seconds between two progress lines when no terminal shows bars


def interval() -> float:
    """Seconds between two progress lines in a log (``SAMAUG_PROGRESS_SECONDS``)."""
    try:
        return max(0.0, float(os.environ.get("SAMAUG_PROGRESS_SECONDS", INTERVAL)))
    except ValueError:
        return INTERVAL


class RateColumn(ProgressColumn):
    """Items per second (or seconds per item when slower than one a second)."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        if not speed:
            return Text("", style="progress.data.speed")
        rate = f"{speed:.2f}/s" if speed >= 1 else f"{1 / speed:.1f} s each"
        return Text(rate, style="progress.data.speed")


class Bars:
    """``progress(what, done, total)`` drawn as rich bars on a terminal (see module doc).

    enabled: draw bars; default: whether stdout and stderr are both a terminal. console:
    where to draw (default: stderr). Use as a context manager: the bars live inside ``with``.
    """

    def __init__(
        self, enabled: bool | None = None, console: Console | None = None, bytes: bool = False
    ) -> None:
        terminal = sys.stderr.isatty() and sys.stdout.isatty()
        self.enabled = terminal if enabled is None else enabled
        self.console = console or Console(stderr=True)
        self.bytes = bytes  # counts are bytes (downloads): sizes and transfer speed
        self._progress: Progress | None = None
        self._tasks: dict[str, TaskID] = {}
        self.interval = interval()
        self._started: dict[str, float] = {}  # when each ``what`` was first reported
        self._last_line = time.monotonic()  # a line is due once ``interval`` has passed

    def __enter__(self) -> Bars:
        if self.enabled:
            counts = (
                (DownloadColumn(), TransferSpeedColumn())
                if self.bytes
                else (MofNCompleteColumn(), RateColumn())
            )
            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                *counts,
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=self.console,
            )
            self._progress.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        self._tasks.clear()

    def __call__(self, what: str, done: int, total: int | None) -> None:
        """Draw ``done`` of ``total`` (None or 0: not known, e.g. a download of no stated
        length) for ``what``; a bar is removed once complete."""
        total = total or None
        if self._progress is None:
            self._line(what, done, total)
            return
        if what not in self._tasks:
            self._tasks[what] = self._progress.add_task(what, total=total)
        task = self._tasks[what]
        self._progress.update(task, completed=done, total=total)
        if total is not None and done >= total:  # the command's own line says what came of it
            self._progress.remove_task(task)
            del self._tasks[what]

    def _line(self, what: str, done: int, total: int | None) -> None:
        """Without bars: one line when ``interval`` has passed since the last."""
        now = time.monotonic()
        started = self._started.setdefault(what, now)
        if now - self._last_line < self.interval:
            return
        self._last_line = now
        elapsed = now - started
        count = f"{done}/{total}" if total else str(done)
        if self.bytes:
            count = f"{done / 2**20:.1f}/{total / 2**20:.1f} MiB" if total else f"{done} bytes"
        rate = done / elapsed if elapsed > 0 else 0.0
        speed = f"{rate:.2f}/s" if rate >= 1 or rate == 0 else f"{1 / rate:.1f} s each"
        if self.bytes:
            speed = f"{rate / 2**20:.2f} MiB/s"
        typer.echo(f"progress: {what} {count} ({speed}, {elapsed:.0f} s)", err=True)

    def echo(self, text: str, err: bool = False) -> None:
        """Print a line: above the bars while they are drawn, else as ``typer.echo``."""
        if self._progress is not None:
            self._progress.console.print(text, markup=False, highlight=False)
        else:
            typer.echo(text, err=err)
