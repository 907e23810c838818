"""A bundle's ``model.safetensors`` read within bounds: the header first, checked against the
model the bundle's config describes, then exactly the bytes that model holds.

A zip member can inflate to any size (a few megabytes of deflated zeros claim gigabytes), and
a safetensors header can name any tensors. So before a weight is read:

1. the member's first 8 bytes give the header's length, which must fit in the member and
   within ``limits.max_json_bytes()``;
2. the header (JSON, ``precompute.received``: bounded, schema-checked) must name exactly the
   tensors of the model built from the bundle's config on the meta device
   (``train.models.model_skeleton``: shapes and dtypes, no memory), each with its shape and
   dtype, laid end to end;
3. the member's size must be the header plus those tensors' bytes, nothing more.

Only then is the member read, and zipfile stops at that size whatever the deflated stream
holds. Every refusal is one SamaugError naming the bundle.
"""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors

from precompute.limits import max_json_bytes
from precompute.received import INTEGER, check_schema, parse_json
from precompute.types import SamaugError

# torch dtypes as safetensors spells them (the dtypes a samaug model's state holds).
DTYPES = {
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.float64: "F64",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}
_LENGTH = struct.Struct("<Q")
_EXPORT = (
    "bundles hold weights only as safetensors, never pickles: export the model again with "
    "`samaug export`"
)
_TENSOR = {
    "type": "object",
    "required": ["dtype", "shape", "data_offsets"],
    "properties": {
        "dtype": {"type": "string"},
        "shape": {"type": "array", "items": {**INTEGER, "minimum": 0}, "maxItems": 8},
        "data_offsets": {
            "type": "array",
            "items": {**INTEGER, "minimum": 0},
            "minItems": 2,
            "maxItems": 2,
        },
    },
}
HEADER_SCHEMA = {
    "type": "object",
    "properties": {"__metadata__": {"type": "object", "additionalProperties": {"type": "string"}}},
    "additionalProperties": _TENSOR,
}


def read_weights(
    archive: zipfile.ZipFile, member: str, path: Path, expected: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """The tensors of ``member`` of ``archive`` (the bundle at ``path``), on the CPU, once
    its header agrees with ``expected`` (a state dict of meta tensors: the names, shapes and
    dtypes the bundle's model has); SamaugError naming the bundle otherwise."""
    where = f"{path}: {member}"
    size = archive.getinfo(member).file_size
    with archive.open(member) as f:
        head = f.read(_LENGTH.size)
        if len(head) < _LENGTH.size:
            raise SamaugError(
                f"{where} is not a safetensors file (only {len(head)} bytes); {_EXPORT}"
            )
        (length,) = _LENGTH.unpack(head)
        if length > min(size - _LENGTH.size, max_json_bytes()):
            raise SamaugError(
                f"{where} is not a safetensors file (its header claims {length:,} bytes, more "
                f"than the file's {size:,}); {_EXPORT}"
            )
        header = check_schema(parse_json(f.read(length), where), HEADER_SCHEMA, where)
    header.pop("__metadata__", None)
    data = _check_layout(header, expected, where)
    if size != _LENGTH.size + length + data:
        raise SamaugError(
            f"{where} holds {size:,} bytes, but its header and the {len(expected)} tensors of "
            f"the model its config describes take {_LENGTH.size + length + data:,}; export the "
            "model again with `samaug export`"
        )
    try:
        return load_safetensors(archive.read(member))
    except (SafetensorError, ValueError, RuntimeError) as err:
        raise SamaugError(f"{where} is not a safetensors file ({err}); {_EXPORT}") from err


def _check_layout(header: dict, expected: dict[str, torch.Tensor], where: str) -> int:
    """The bytes of tensor data the header describes, once every tensor is the expected one
    (name, dtype, shape) and they lie end to end in name order of their offsets."""
    missing = sorted(set(expected) - set(header))
    extra = sorted(set(header) - set(expected))
    if missing or extra:
        listed = [f"lacks {_few(missing)}"] * bool(missing) + [f"has {_few(extra)}"] * bool(extra)
        raise SamaugError(
            f"{where} does not hold the weights of the model its config describes (it "
            f"{' and '.join(listed)})"
        )
    end = 0
    for name, entry in sorted(header.items(), key=lambda item: item[1]["data_offsets"]):
        want = expected[name]
        dtype, shape = DTYPES.get(want.dtype), list(want.shape)
        if entry["dtype"] != dtype or entry["shape"] != shape:
            raise SamaugError(
                f"{where}: {name} is {entry['dtype']} {entry['shape']}, but the model its "
                f"config describes has {dtype} {shape}"
            )
        begin, stop = entry["data_offsets"]
        if begin != end or stop - begin != want.numel() * want.element_size():
            raise SamaugError(
                f"{where}: {name} lies at bytes {begin}..{stop}, not where it belongs"
            )
        end = stop
    return end


def _few(names: list[str]) -> str:
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if names[3:] else "")
