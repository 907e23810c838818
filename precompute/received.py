"""JSON received from elsewhere (a bundle, a store, a prediction folder, a run directory),
parsed within bounds and checked against a schema before any value of it is used.

A received file can be anything: megabytes of ``[[[[...`` make Python's ``json`` recurse
until it raises RecursionError, a ``{}`` where an object with keys was expected makes the
code that reads it raise KeyError or TypeError far from the file. So every such file is

1. bounded in size (``limits.max_json_bytes``) and nesting (``MAX_DEPTH`` levels of arrays
   and objects), measured without parsing it;
2. parsed, and
3. validated against a JSON Schema (jsonschema, Draft 2020-12) written beside the code that
   reads it.

Each failure is one InputError naming the file, the place inside it and the problem.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import best_match

from precompute.limits import max_json_bytes
from precompute.types import InputError

# No file samaug writes nests deeper than a dozen levels; Python's parser recurses once per
# level and gives up near 1000.
MAX_DEPTH = 64
# "integer" is an int, never a float with no fraction (3.0) that jsonschema would accept and
# a constructor would then choke on; never a bool.
_Validator = validators.extend(
    Draft202012Validator,
    type_checker=Draft202012Validator.TYPE_CHECKER.redefine(
        "integer", lambda _, value: isinstance(value, int) and not isinstance(value, bool)
    ),
)
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_OPEN = np.frombuffer(b"[{", np.uint8)
_CLOSE = np.frombuffer(b"]}", np.uint8)


def nesting(data: bytes) -> int:
    """How deeply arrays and objects nest in the JSON text ``data`` (0 for a scalar),
    counted without parsing: brackets inside strings are left out."""
    body = np.frombuffer(_STRING.sub(b"", data), np.uint8)
    steps = np.isin(body, _OPEN).astype(np.int32) - np.isin(body, _CLOSE).astype(np.int32)
    return int(np.cumsum(steps).max(initial=0))


def parse_json(data: bytes | str, where: str, max_bytes: int | None = None) -> Any:
    """The value of the JSON text ``data`` read from ``where`` (a file, or a file and a
    member), refused as an InputError naming ``where`` when it is larger than ``max_bytes``
    (default ``limits.max_json_bytes``), nests deeper than ``MAX_DEPTH`` or does not
    parse."""
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    check_bounds(data, where, max_bytes)
    try:
        return json.loads(data)
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise InputError(f"{where}: not JSON ({_first_line(err)})") from err


def check_bounds(data: bytes, where: str, max_bytes: int | None = None) -> None:
    """InputError naming ``where`` when the JSON text ``data`` is larger than ``max_bytes``
    (default ``limits.max_json_bytes``) or nests deeper than ``MAX_DEPTH``: what another
    parser (zarr's) may be given safely."""
    _check_size(len(data), where, max_bytes)
    depth = nesting(data)
    if depth > MAX_DEPTH:
        raise InputError(
            f"{where}: JSON nested {depth} levels deep, more than the {MAX_DEPTH} any samaug "
            "file has; not a file samaug wrote"
        )


def read_json_file(path: str | Path, schema: Mapping[str, Any] | None = None) -> Any:
    """The value of the JSON file at ``path`` (its size checked before it is read),
    checked against ``schema`` where given; InputError naming the file otherwise."""
    try:
        _check_size(Path(path).stat().st_size, str(path))
        data = Path(path).read_bytes()
    except OSError as err:
        raise InputError(f"{path}: cannot read it ({err.strerror or err})") from err
    value = parse_json(data, str(path))
    return value if schema is None else check_schema(value, schema, str(path))


def parse_or_none(data: bytes | str | None) -> Any:
    """The value of JSON text ``data`` within the bounds of ``parse_json``, or None when
    there is none or it cannot be read (for metadata whose absence the caller handles)."""
    if data is None:
        return None
    try:
        return parse_json(data, "")
    except InputError:
        return None


def check_schema(value: Any, schema: Mapping[str, Any], where: str) -> Any:
    """``value`` if it matches ``schema`` (a JSON Schema), else an InputError naming
    ``where``, the place in the value and what is wrong there (the most relevant of the
    errors)."""
    error = best_match(_Validator(schema).iter_errors(value))
    if error is None:
        return value
    place = "/".join(str(part) for part in error.absolute_path)
    raise InputError(f"{where}: {place + ': ' if place else ''}{_shorter(error.message)}")


def read_json(data: bytes | str, schema: Mapping[str, Any], where: str) -> Any:
    """``parse_json`` then ``check_schema``: the checked value of received JSON text."""
    return check_schema(parse_json(data, where), schema, where)


def _check_size(size: int, where: str, max_bytes: int | None = None) -> None:
    limit = max_json_bytes() if max_bytes is None else max_bytes
    if size > limit:
        raise InputError(
            f"{where}: {size:,} bytes of JSON, more than the limit of {limit:,} (set "
            "SAMAUG_MAX_JSON_BYTES to read larger files)"
        )


def _shorter(text: str, limit: int = 200) -> str:
    """A schema message quotes the offending value; a large one is cut."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _first_line(err: BaseException) -> str:
    return str(err).splitlines()[0][:160] if str(err) else type(err).__name__


# Schema pieces the readers share.
INTEGER = {"type": "integer"}
STRING = {"type": "string"}
OBJECT = {"type": "object"}
NAMES = {"type": "array", "items": STRING}


def nullable(schema: Mapping[str, Any]) -> dict[str, Any]:
    """``schema`` or null."""
    return {"anyOf": [dict(schema), {"type": "null"}]}
