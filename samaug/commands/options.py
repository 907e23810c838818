"""Parsing of the command line's free-form options (``--masker-option KEY=VALUE`` ...)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from precompute.types import SettingError

# Options shared by the commands that read a store from a URL.
StorageOption = Annotated[
    list[str] | None,
    typer.Option(
        "--storage-option",
        help="fsspec option for a store URL as KEY=VALUE (repeatable), e.g. anon=true, "
        'client_kwargs=\'{"endpoint_url": "http://host:9000"}\' (credentials: never saved).',
    ),
]
CacheOption = Annotated[
    Path | None,
    typer.Option(
        help="Keep what is read from a store URL in this folder: read once, then from disk."
    ),
]
# The device of every command that runs a model.
DeviceOption = Annotated[
    str, typer.Option(help="auto (CUDA where torch sees a GPU, else the CPU), cpu, cuda or cuda:K.")
]

_STATE = {"verbose": False}


def set_verbose(on: bool) -> None:
    _STATE["verbose"] = bool(on)


def verbose() -> bool:
    """Whether the user asked for tracebacks (``samaug --verbose`` or ``SAMAUG_VERBOSE=1``)."""
    return _STATE["verbose"]


def storage_options(pairs: list[str] | None) -> dict | None:
    """``--storage-option KEY=VALUE`` values as fsspec storage options (None when none):
    credentials and client settings for a store URL, never saved anywhere."""
    return parse_pairs(pairs, "--storage-option") or None


def parse_pairs(values: list[str] | None, what: str) -> dict[str, object]:
    """KEY=VALUE options -> dict, values parsed as JSON when they are JSON (numbers, lists).

    ``what`` names the option in the error, e.g. "--masker-option". A key given twice with
    two values is a SettingError.
    """
    out: dict[str, object] = {}
    for item in values or []:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise SettingError(f"{what} {item!r} is not KEY=VALUE")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        if key in out and out[key] != value:
            raise SettingError(f"{what} {key} is given twice, as {out[key]!r} and {value!r}")
        out[key] = value
    return out


def parse_numbers(text: str | None, what: str) -> list[float | int] | None:
    """``"0.75,1,1.25"`` -> ``[0.75, 1, 1.25]`` (whole numbers as int); None for None; an
    empty string is an empty list. SettingError naming ``what`` for a part that is not a
    number."""
    if text is None:
        return None
    values: list[float | int] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            number = float(part)
        except ValueError:
            raise SettingError(f"{what} {text!r}: {part!r} is not a number") from None
        values.append(int(number) if number.is_integer() and "." not in part else number)
    return values
