"""Every command of the command line answers a bad option with one ``error:`` line and exit 1,
and an option several commands share reads the same in each.

The commands are found by walking the typer app, so a command added later is covered too.
In-process calls of ``samaug.cli.main`` (the console entry point) check every command; a
subprocess checks what a user's shell sees.
"""

import subprocess

import pytest
import typer

from samaug.cli import app, main
from tests.support.cli import SAMAUG


def leaf_commands() -> dict[tuple[str, ...], object]:
    """Every leaf command by the words that call it, e.g. ("store", "verify")."""
    found = {}

    def walk(command, path: tuple[str, ...]) -> None:
        sub = getattr(command, "commands", None)
        if sub:
            for name, child in sub.items():
                walk(child, (*path, name))
        else:
            found[path] = command

    walk(typer.main.get_command(app), ())
    return dict(sorted(found.items()))


def command_paths() -> list[tuple[str, ...]]:
    return list(leaf_commands())


# Options declared once in samaug.commands.options and taken by several commands.
SHARED = (
    "--storage-option",
    "--cache",
    "--device",
    "--certainty",
    "--tta",
    "--min-size",
    "--model-checkpoint",
    "--save-probabilities",
    "--probability-format",
    "--overlay",
    "--table",
)


def options_of(command) -> dict[str, object]:
    """A command's options by their first name (``--tta``), as typer's click holds them."""
    return {p.opts[0]: p for p in command.params if p.opts[0].startswith("--")}


def test_the_walk_finds_every_command_group():
    names = {" ".join(p) for p in command_paths()}
    assert {"priors", "train", "eval", "show", "demo", "weights"} <= names
    assert {"store info", "store verify", "store strip", "store attach"} <= names


@pytest.mark.parametrize("name", SHARED)
def test_a_shared_option_has_one_help_and_one_default_in_every_command(name):
    takes = [options_of(c)[name] for c in leaf_commands().values() if name in options_of(c)]
    assert len(takes) >= 2
    assert len({(o.help, o.default, tuple(o.secondary_opts), o.multiple) for o in takes}) == 1


@pytest.mark.parametrize("path", command_paths(), ids=" ".join)
def test_an_unknown_option_is_one_error_line_and_exit_1(path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([*path, "--no-such-option", "1"])
    err = capsys.readouterr().err
    assert exit_.value.code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "no-such-option" in lines[0] and "Traceback" not in err


@pytest.mark.parametrize(
    "args, says",
    [
        (["train", "--store", "s.zarr", "--fusion", "mul"], "--fusion 'mul': no such fusion"),
        (["priors", "glas", "--data-root", "d", "--store", "s", "--workers", "-1"], "workers"),
        (["store", "verify"], "Missing argument"),
        (["nosuchcommand"], "No such command"),
    ],
)
def test_a_user_sees_one_line_and_exit_1_in_a_shell(args, says, tmp_path):
    out = subprocess.run([*SAMAUG, *args], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 1, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0], out.stderr
    assert "Traceback" not in out.stderr


def test_verbose_shows_the_traceback(tmp_path):
    out = subprocess.run(
        [*SAMAUG, "--verbose", "store", "info", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 1
    assert "Traceback" in out.stderr and out.stderr.strip().splitlines()[-1].startswith("error:")


def test_version_prints_the_package_version():
    from precompute import __version__

    out = subprocess.run([*SAMAUG, "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout == f"samaug {__version__}\n", out.stderr
