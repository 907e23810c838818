"""The command line's shared options, each declared once (type, help, default), and the
parsing of its free-form ones (``--masker-option KEY=VALUE`` ...).

A command takes a shared option as ``name: XOption = DEFAULT_X``, the default being the
library's (``train.choices``; the device's is ``DEFAULT_DEVICE``). Typer reads the option's
name from the parameter's, so every command names the parameter as the others do.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from precompute.types import SettingError
from train.choices import Certainty, ProbabilityFormat, Tta

if TYPE_CHECKING:
    from precompute.store import StoreAccess

# How every command that reads a store reaches a store URL (``store_access``).
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
    str,
    typer.Option(
        help="auto (CUDA where torch sees a GPU, else the CPU), cpu, cuda, cuda:K or mps."
    ),
]
DEFAULT_DEVICE = "auto"
# How a model predicts (eval, predict; reproduce's select) and what is written per image.
CertaintyOption = Annotated[
    Certainty,
    typer.Option(help="select by margin_minmax (the released code's), margin or entropy."),
]
TtaOption = Annotated[
    Tta, typer.Option(help="Test-time augmentation: none, or flip (mean over mirrorings).")
]
MinSizeOption = Annotated[
    int, typer.Option(help="Remove predicted objects of fewer pixels (glands, nuclei).")
]
SaveProbabilitiesOption = Annotated[
    bool,
    typer.Option(help="Also write the foreground probability (eval: with --save-predictions)."),
]
ProbabilityFormatOption = Annotated[
    ProbabilityFormat, typer.Option(help="npz (float16) or tif (float32).")
]
OverlayOption = Annotated[
    bool, typer.Option(help="Also write contours over the image (eval: with --save-predictions).")
]
# The weights a model starts from (train, reproduce; make's PRETRAINED=).
PretrainedOption = Annotated[
    list[str] | None,
    typer.Option(
        help="The pretrained weights file, or none for random weights (default: the ImageNet "
        "weights the model's paper starts from, in --weights-dir); MODEL=PATH for one model.",
    ),
]
WeightsDirOption = Annotated[
    Path, typer.Option(help="Where make weights put the ImageNet backbones.")
]
DEFAULT_WEIGHTS_DIR = "checkpoints"
# Which checkpoint of a run directory a model is read from (eval, predict, export).
ModelCheckpointOption = Annotated[
    str, typer.Option(help="Which checkpoint of a run directory: best.pt or last.pt.")
]
DEFAULT_MODEL_CHECKPOINT = "best.pt"
# The CSV copy of a printed table (eval, score): checked by ``check_table``.
TableOption = Annotated[Path | None, typer.Option(help="Also write the table as CSV here.")]

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


def store_access(location: str | None, pairs: list[str] | None, cache: Path | None) -> StoreAccess:
    """How a command reaches its store: ``--store`` (None: the store the command takes by
    default, e.g. a run's training store), its ``--storage-option`` pairs and ``--cache``."""
    from precompute.store import StoreAccess

    return StoreAccess(location, storage_options(pairs), cache)


def given_store(
    location: str | None, pairs: list[str] | None, cache: Path | None
) -> StoreAccess | None:
    """``store_access`` of a command where ``--store`` is one source of two (predict's other
    is --images, score's --labels): None without ``--store``, and then ``--storage-option``
    or ``--cache`` is a SettingError (they say how a store is read)."""
    if location is not None:
        return store_access(location, pairs, cache)
    for name, given in (("--storage-option", pairs), ("--cache", cache)):
        if given:
            raise SettingError(f"{name} is for reading a --store; give --store or leave out {name}")
    return None


def check_table(table: Path | None) -> None:
    """``--table``: a CSV file to write in an existing folder (SettingError otherwise)."""
    if table is not None and (table.is_dir() or not table.parent.is_dir()):
        raise SettingError(f"--table {table}: give a CSV file in an existing folder")


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


def pretrained_choice(values: list[str] | None) -> dict[str, str]:
    """``--pretrained`` values as {model: path or "none"}: ``MODEL=PATH`` for one model,
    a bare ``PATH`` or ``none`` for every model (key ``"*"``)."""
    chosen: dict[str, str] = {}
    for item in values or []:
        model, sep, value = item.partition("=")
        key, value = (model, value) if sep else ("*", item)
        if not value:
            raise SettingError(f"--pretrained {item!r} is not PATH, none or MODEL=PATH")
        if key in chosen and chosen[key] != value:
            raise SettingError(f"--pretrained for {key} is given twice")
        chosen[key] = str(value)
    return chosen


def model_kwargs(
    model: str, options: list[str] | None, pretrained: list[str] | None, weights_dir: Path
) -> dict:
    """``samaug train``'s model options with the pretrained weights resolved
    (``train.models.backbones.pretrained_for``: the paper's weights in ``weights_dir`` unless
    ``--pretrained`` says otherwise); ``pretrained`` given as a model option too is refused."""
    from train.models.backbones import pretrained_for

    kwargs = parse_pairs(options, "--model-option")
    if "pretrained" in kwargs:
        raise SettingError(
            "--model-option pretrained: give the weights with --pretrained PATH (or none)"
        )
    chosen = pretrained_choice(pretrained)
    others = sorted(set(chosen) - {"*", model})
    if others:
        raise SettingError(f"--pretrained {others[0]}=...: this run trains {model}")
    path = pretrained_for(model, chosen.get(model, chosen.get("*")), weights_dir)
    return kwargs if path is None else {**kwargs, "pretrained": path}
