"""The ``samaug`` command: one typer app joining the command groups of ``samaug.commands``.

Commands only parse arguments and call the libraries (``precompute``, ``train``). Every user
error is a ``SamaugError``, raised by validation before any work starts; ``main`` prints it as
one ``error:`` line and exits 1. Usage errors (an unknown option, a value that is not one of
the choices) are printed the same way. Tracebacks are shown only with ``--verbose`` (or
``SAMAUG_VERBOSE=1``).
"""

from __future__ import annotations

import re
import sys
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

from samaug.commands import priors_commands, reproduce_commands, store_commands, train_commands
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
    """Run the command line; exit 0 on success, 1 on any error (one ``error:`` line)."""
    try:
        code = app(args=argv, prog_name="samaug", standalone_mode=False)
    except SamaugError as err:
        if verbose():
            traceback.print_exc()
        typer.echo(f"error: {one_line(err)}", err=True)
        sys.exit(1)
    except (click.ClickException, _TyperClickException) as err:  # unknown option, bad choice
        where = f" (see `{err.ctx.command_path} --help`)" if getattr(err, "ctx", None) else ""
        typer.echo(f"error: {err.format_message()}{where}", err=True)
        sys.exit(1)
    except (click.exceptions.Abort, typer.Abort):
        typer.echo("error: aborted", err=True)
        sys.exit(1)
    except Exception as err:  # a bug, not a user error: one line unless --verbose
        if verbose():
            raise
        typer.echo(
            f"error: unexpected {type(err).__name__}: {one_line(err)} "
            "(a bug in samaug; `samaug --verbose ...` shows the traceback)",
            err=True,
        )
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
