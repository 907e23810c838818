"""The ``samaug`` command: one typer app joining the command groups of ``samaug.commands``.

Commands only parse arguments and call the libraries (``precompute``, ``train``). Every user
error is a ``SamaugError``, raised by validation before any work starts; ``main`` prints it as
one ``error:`` line and exits 1. Usage errors (an unknown option, a value that is not one of
the choices) are printed the same way. Tracebacks are shown only with ``--verbose`` (or
``SAMAUG_VERBOSE=1``).
"""

from __future__ import annotations

import logging
import os
import re
import signal
import sys
import threading
import traceback
from typing import Annotated

import click
import typer

from precompute import __version__
from precompute.types import SamaugError

try:  # typer >= 0.20 raises usage errors from its own copy of click, not from click's
    from typer._click.exceptions import ClickException as _TyperClickException
except ImportError:  # an older typer: click's own
    _TyperClickException = click.ClickException

from samaug.commands import (
    export_commands,
    priors_commands,
    reproduce_commands,
    store_commands,
    train_commands,
)
from samaug.commands import result_commands as results_commands
from samaug.commands.options import set_verbose, verbose

app = typer.Typer(
    help="SAMAug: Segment Anything priors, precomputed once into a Zarr store, and the trainer.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
priors_commands.register(app)
train_commands.register(app)
results_commands.register(app)
export_commands.register(app)
reproduce_commands.register(app)
app.add_typer(store_commands.app, name="store")


def _print_version(asked: bool) -> None:
    if asked:
        typer.echo(f"samaug {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose", envvar="SAMAUG_VERBOSE", help="Show tracebacks (errors, failed images)."
        ),
    ] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    set_verbose(verbose)


# A DataLoader worker's exception comes back re-raised in the main process with the worker's
# traceback in its message: "Caught SamaugError in DataLoader worker process 0.\nOriginal
# Traceback (most recent call last): ... SamaugError: <the message>". A chained exception
# ("raise ... from err") prints its causes first, so the message is the one of the last
# exception line: one at the start of a line, "Name: " or "module.Name: ".
_WORKER_TRACEBACK = re.compile(r"^Caught \w+ in .*?\nOriginal Traceback", re.S)
_EXCEPTION_LINE = re.compile(r"^(?:\w+\.)*\w+: ", re.M)


def one_line(err: BaseException) -> str:
    """The user-facing message of an error, without a DataLoader worker's traceback."""
    text = str(err)
    if _WORKER_TRACEBACK.match(text):
        starts = [line.end() for line in _EXCEPTION_LINE.finditer(text)]
        if starts:
            text = text[starts[-1] :]
    return text.strip()


def main(argv: list[str] | None = None) -> None:
    """Run the command line; exit 0 on success, 1 on any error (one ``error:`` line), 128 +
    the signal's number when stopped by SIGINT (Ctrl-C) or SIGTERM (one line too)."""
    with StopOnSignals() as stop:
        code = _run(argv)
    if stop.signum is not None:
        name = signal.Signals(stop.signum).name
        typer.echo(f"error: stopped by {name}; run the same command again to resume", err=True)
        if not verbose():
            _quiet_shutdown()
        sys.exit(128 + stop.signum)
    sys.exit(code)


def _run(argv: list[str] | None) -> int:
    """The command's exit code; every error printed as one line."""
    try:
        code = app(args=argv, prog_name="samaug", standalone_mode=False)
    except SamaugError as err:
        if verbose():
            traceback.print_exc()
        typer.echo(f"error: {one_line(err)}", err=True)
        return 1
    except (click.ClickException, _TyperClickException) as err:  # unknown option, bad choice
        where = f" (see `{err.ctx.command_path} --help`)" if getattr(err, "ctx", None) else ""
        typer.echo(f"error: {err.format_message()}{where}", err=True)
        return 1
    except (click.exceptions.Abort, typer.Abort):
        typer.echo("error: aborted", err=True)
        return 1
    except KeyboardInterrupt:  # outside the command (typer turns it into 130 inside)
        return 130
    except Exception as err:  # a bug, not a user error: one line unless --verbose
        if verbose():
            raise
        typer.echo(
            f"error: unexpected {type(err).__name__}: {one_line(err)} "
            "(a bug in samaug; `samaug --verbose ...` shows the traceback)",
            err=True,
        )
        return 1
    return code if isinstance(code, int) else 0


class StopOnSignals:
    """While in use, SIGTERM (``kill PID``, a scheduler's time limit) stops a command as
    Ctrl-C does: a KeyboardInterrupt in the main thread, so that every ``with`` block and
    ``finally`` runs (temporary stores are removed, Dask workers closed, locks released).
    The first signal is remembered (``signum``); later ones are ignored so that the cleanup
    finishes. The previous handlers come back on exit; a SIGINT ignored by whoever started
    the process (a background job) stays ignored."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopOnSignals:
        if threading.current_thread() is not threading.main_thread():
            return self  # handlers can only be set in the main thread
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous = signal.getsignal(signum)
            if previous is not signal.SIG_IGN:
                self._previous[signum] = previous
                signal.signal(signum, self._stop)
        return self

    def __exit__(self, *exc) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)

    def _stop(self, signum: int, frame) -> None:
        if self.signum is not None:
            return
        self.signum = signum
        # The libraries' complaints while their tasks are torn down (Dask's scheduler, the
        # asyncio tasks of zarr and fsspec) are not news to someone who asked to stop.
        for name in ("distributed", "asyncio", "tornado"):
            logging.getLogger(name).setLevel(logging.CRITICAL + 1)
        raise KeyboardInterrupt


def _quiet_shutdown() -> None:
    """Send what is printed while the interpreter exits (atexit hooks of Dask, asyncio's
    "Task was destroyed but it is pending!") to /dev/null: the command said its one line."""
    logging.disable(logging.CRITICAL)
    sys.stdout.flush()
    sys.stderr.flush()
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)


if __name__ == "__main__":
    main()
