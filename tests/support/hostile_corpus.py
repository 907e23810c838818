"""The hostile corpus: files samaug receives from others, crafted to break it, built on the spot.

``build(folder)`` writes every case under ``folder`` and a ``manifest.json`` listing them:
``{"name", "kind", "path", "expect"}``, where ``kind`` says how samaug reads it
(``hostile_walk.READERS``) and ``expect`` what must happen: "refused" (one SamaugError line),
"flagged" (a store that opens but ``verify`` reports), or "read" (a sound file beside the
hostile ones, so that the walk shows the readers still read what they should). Nothing here
is committed: the bombs are a few megabytes of deflate that claim gigabytes, written as a
stream, so building the corpus takes little memory and a few seconds.

The cases (issue 15): bundles whose weights inflate to 1.5 GiB, whose header names other
tensors, whose config asks for a depth of 99 or a 20000-pixel Swin patch, whose JSON nests
100,000 levels or is ``{}``, ``[]``, ``{"masker": "x"}``, ``task: ["x"]``, ``in_channels:
"3"``; checkpoints that are text, one byte, ``batch = -3``, log rows without keys; npz
probability maps claiming ``|V1500`` x (40, 50000) or (0, 0); prediction indexes nested, or
listing ``.``, ``..``, a folder or themselves; zip stores whose members share bytes or whose
root ``zarr.json`` nests; stores whose consolidated metadata is ``"x"``, ``[]`` or
``{"metadata": []}``, or lacks an image.
"""

from __future__ import annotations

import io
import json
import shutil
import struct
import zipfile
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch

from precompute import store as st
from precompute.store import pack_store
from tests.support.store_toys import DATASET, MASKER, toy_store
from tests.support.store_toys import write as write_toy_image
from train.models import create_model
from train.results.bundle import ABOUT, WEIGHTS, export_bundle
from train.training.checkpoint import FORMAT
from train.training.config import TrainConfig

BOMB_BYTES = 3 << 29  # 1.5 GiB: more than the walk's memory headroom
NESTED = "[" * 100_000 + "]" * 100_000


def build(folder: Path) -> list[dict]:
    """Write the corpus under ``folder`` (created) and its manifest; returns the cases."""
    folder.mkdir(parents=True, exist_ok=True)
    cases: list[dict] = []

    def add(name: str, kind: str, path: Path, expect: str) -> None:
        cases.append({"name": name, "kind": kind, "path": str(path), "expect": expect})

    run = _run_dir(folder / "run")
    _bundles(folder / "bundles", run, add)
    _checkpoints(folder / "checkpoints", run, add)
    _npz(folder / "npz", add)
    _indexes(folder / "predictions", add)
    _stores(folder / "stores", add)
    (folder / "manifest.json").write_text(json.dumps(cases, indent=1))
    return cases


# --------------------------------------------------------------------------- bundles


def _run_dir(out: Path) -> Path:
    """A run directory with a sound best.pt of a tiny raw U-Net (no training needed)."""
    out.mkdir(parents=True)
    config = TrainConfig(
        store="toy.zarr", model="unet", mode="raw", model_kwargs={"base_channels": 4, "depth": 2}
    ).resolve("glas")
    model = create_model("unet", in_channels=3, num_classes=3, base_channels=4, depth=2)
    attrs = st.store_root_attrs(DATASET, MASKER)
    state = {
        "format": FORMAT,
        "model": model.state_dict(),
        "epoch": 0,
        "batch": 0,
        "step": 2,
        "best_epoch": 0,
        "best_val_dice": 0.5,
        "log": [{"epoch": 0, "step": 2, "lr": "0.003", "train_loss": "1.0", "val_dice": "0.5"}],
        "config": config.to_dict(),
        "task": "glands",
        "in_channels": 3,
        "num_outputs": 3,
        "identity": {"signature": st.signature(attrs), "train_ids": ["a"], "val_ids": ["b"]},
        "store": {"location": "toy.zarr", "dataset": DATASET, "masker": MASKER},
    }
    torch.save(state, out / "best.pt")
    config.save(out / "config.json")
    return out


def _bundles(folder: Path, run: Path, add) -> None:
    folder.mkdir()
    sound = export_bundle(run, folder / "sound.zip")
    add("bundle: sound", "model", sound, "read")
    members = _members(sound)
    about = json.loads(members[ABOUT])

    def variant(name: str, **replaced: bytes | str) -> Path:
        path = folder / f"{name}.zip"
        _rewrite(path, {**members, **{k.replace("_", "."): v for k, v in replaced.items()}})
        add(f"bundle: {name}", "model", path, "refused")
        return path

    header = members[WEIGHTS][: 8 + struct.unpack("<Q", members[WEIGHTS][:8])[0]]
    _bomb_zip(folder / "weights_bomb.zip", members, WEIGHTS, header)
    add("bundle: weights inflating to 1.5 GiB", "model", folder / "weights_bomb.zip", "refused")
    huge = _safetensors_header({"w": {"dtype": "F32", "shape": [BOMB_BYTES // 4]}})
    _bomb_zip(folder / "weights_claim.zip", members, WEIGHTS, huge)
    add("bundle: header claiming 1.5 GiB", "model", folder / "weights_claim.zip", "refused")
    tensors = _tensors(members[WEIGHTS])
    last = sorted(tensors)[-1]
    variant(
        "weights_missing_a_tensor",
        model_safetensors=_save({k: v for k, v in tensors.items() if k != last}),
    )
    widened = {**tensors, last: torch.zeros(tensors[last].numel() + 1)}
    variant("weights_of_another_shape", model_safetensors=_save(widened))
    as_half = {k: v.half() if v.is_floating_point() else v for k, v in tensors.items()}
    variant("weights_of_another_dtype", model_safetensors=_save(as_half))

    def about_with(**changes) -> str:
        return json.dumps({**about, **changes})

    config = about["config"]
    variant("depth_99", model_json=about_with(config={**config, "model_kwargs": {"depth": 99}}))
    swin = {**config, "model": "swin_unet", "model_kwargs": {"patch_size": 20000}}
    variant("swin_patch_20000", model_json=about_with(config=swin))
    variant("wide_in_channels", model_json=about_with(in_channels=100000))
    variant("model_json_nested", model_json=NESTED)
    variant("metrics_json_nested", metrics_json=f'{{"test": {NESTED}}}')
    for name, value in (("empty", {}), ("list", []), ("masker_x", {"masker": "x"})):
        variant(f"provenance_{name}", provenance_json=json.dumps(value))
    variant("task_list", model_json=about_with(task=["x"]))
    variant("in_channels_string", model_json=about_with(in_channels="3"))
    (folder / "text.zip").write_text("not a zip\n")
    add("bundle: text named .zip", "model", folder / "text.zip", "refused")


def _members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _rewrite(path: Path, members: dict[str, bytes | str]) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def _tensors(data: bytes) -> dict[str, torch.Tensor]:
    from safetensors.torch import load

    return load(data)


def _save(tensors: dict[str, torch.Tensor]) -> bytes:
    from safetensors.torch import save

    return save(tensors)


def _safetensors_header(entries: dict[str, dict]) -> bytes:
    offset, laid = 0, {}
    for name, entry in entries.items():
        size = int(np.prod(entry["shape"])) * 4
        laid[name] = {**entry, "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(laid).encode()
    return struct.pack("<Q", len(text)) + text


def _bomb_zip(path: Path, members: dict[str, bytes], bomb: str, head: bytes) -> None:
    """A copy of a bundle whose member ``bomb`` is ``head`` then zeros up to BOMB_BYTES,
    deflated (a few MB on disk), the other members as they were."""
    entries = [(name, data) for name, data in members.items() if name != bomb]
    _raw_zip(path, entries, bomb=(bomb, head, BOMB_BYTES))


# --------------------------------------------------------------------------- checkpoints


def _checkpoints(folder: Path, run: Path, add) -> None:
    folder.mkdir()
    add("checkpoint: sound", "model", run / "best.pt", "read")
    (folder / "text.pt").write_text("hello, I am a text file\n")
    (folder / "one_byte.pt").write_bytes(b"x")
    for name in ("text.pt", "one_byte.pt"):
        add(f"checkpoint: {name}", "model", folder / name, "refused")
    state = torch.load(run / "best.pt", weights_only=True)
    for name, change in (
        ("batch_negative", {"batch": -3}),
        ("log_rows_without_keys", {"log": [{"lr": "0.1"}, {}]}),
        ("epoch_string", {"epoch": "0"}),
    ):
        path = folder / name / "last.pt"
        path.parent.mkdir()
        torch.save({**state, **change}, path)
        add(f"checkpoint: {name}", "model", path, "refused")
    nested = folder / "config_nested"
    nested.mkdir()
    (nested / "config.json").write_text(NESTED)
    add("run: config.json nested", "config", nested / "config.json", "refused")


# --------------------------------------------------------------------------- npz


def _npz(folder: Path, add) -> None:
    folder.mkdir()
    sound = folder / "sound.npz"
    np.savez_compressed(sound, probability=np.full((20, 30), 0.25, np.float16))
    add("npz: sound", "npz", sound, "read")
    header = _npy_header("|V1500", (40, 50000))
    _raw_zip(folder / "void_1500.npz", [], bomb=("probability.npy", header, BOMB_BYTES))
    add("npz: |V1500 (40, 50000)", "npz", folder / "void_1500.npz", "refused")
    for name, dtype, shape in (("empty", "<f4", (0, 0)), ("objects", "|O", (4, 4))):
        path = folder / f"{name}.npz"
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("probability.npy", _npy_header(dtype, shape) + bytes(64))
        add(f"npz: {dtype} {shape}", "npz", path, "refused")


def _npy_header(dtype: str, shape: tuple[int, ...]) -> bytes:
    text = repr({"descr": dtype, "fortran_order": False, "shape": shape})
    padded = text + " " * (63 - (10 + len(text)) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(padded)) + padded.encode()


# --------------------------------------------------------------------------- indexes


def _indexes(folder: Path, add) -> None:
    def index(name: str, files: Iterable[str] | None, text: str | None = None) -> Path:
        out = folder / name
        (out / "sub").mkdir(parents=True)
        (out / "a.png").write_bytes(b"png")
        entry = {"image_id": "a", "shape": [1, 1], "objects": 1, "files": {}}
        entry["files"] = {f"role{k}": n for k, n in enumerate(files or ())}
        body = {"layout": "samaug-predictions", "version": 1, "made_by": {}, "images": [entry]}
        (out / "predictions.json").write_text(text if text is not None else json.dumps(body))
        return out

    add("predictions: sound", "predictions", index("sound", ["a.png"]), "read")
    add("predictions: nested", "predictions", index("nested", None, NESTED), "refused")
    for name, listed in (
        ("dot", "."),
        ("dotdot", ".."),
        ("subfolder", "sub"),
        ("itself", "predictions.json"),
        ("path", "sub/a.png"),
    ):
        add(
            f"predictions: lists {listed}", "predictions", index(name, ["a.png", listed]), "refused"
        )


# --------------------------------------------------------------------------- stores


def _stores(folder: Path, add) -> None:
    folder.mkdir()
    sound = folder / "sound.zarr"
    toy_store(sound, consolidated=True)
    add("store: sound folder", "store", sound, "read")
    packed = folder / "sound.zarr.zip"
    pack_store(sound, packed)
    add("store: sound zip", "store", packed, "read")
    for name, value in (("x", "x"), ("list", []), ("metadata_list", {"metadata": []})):
        path = folder / f"consolidated_{name}.zarr"
        shutil.copytree(sound, path)
        _edit_root(path / "zarr.json", lambda root, v=value: root.update(consolidated_metadata=v))
        add(f"store: consolidated_metadata {value!r}", "store", path, "flagged")
    members = _members(packed)
    root = json.loads(members["zarr.json"])
    copy = root["consolidated_metadata"]["metadata"]
    for key in [k for k in copy if k.startswith("images/b_2")]:
        del copy[key]
    lacking = folder / "copy_lacks_an_image.zarr.zip"
    _stored_zip(lacking, {**members, "zarr.json": json.dumps(root).encode()})
    add("store: packed copy lacking an image", "store", lacking, "flagged")
    nested = folder / "root_nested.zarr.zip"
    _stored_zip(nested, {**members, "zarr.json": f'{{"attributes": {NESTED}}}'.encode()})
    add("store: zip root zarr.json nested", "store", nested, "refused")
    overlapping = folder / "overlapping.zarr.zip"
    _overlapping_zip(folder / "same.zarr", overlapping)
    add("store: zip members sharing bytes", "store", overlapping, "refused")


def _edit_root(path: Path, change: Callable[[dict], None]) -> None:
    root = json.loads(path.read_text())
    change(root)
    path.write_text(json.dumps(root))


def _stored_zip(path: Path, members: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def identical_images_store(path: Path, count: int) -> list[str]:
    """A store of ``count`` images with the same pixels, masks and priors (same bytes in
    every shard), consolidated; returns their IDs."""
    st.prepare_store(path, st.store_root_attrs(DATASET, MASKER))
    image = np.random.default_rng(0).integers(0, 256, (48, 40, 3), dtype=np.uint8)
    ids = [f"img_{k:03d}" for k in range(count)]
    for image_id in ids:
        write_toy_image(path, image_id, "train", n=4, seed=7, image=image)
    st.set_index(path, dict.fromkeys(ids, "train"))
    st.consolidate(path)
    return ids


def _overlapping_zip(source: Path, path: Path, count: int = 12) -> None:
    """A packed store of ``count`` identical images whose every image's entries point at the
    first image's bytes: verifies clean, unpacks to ``count`` copies, unless refused."""
    ids = identical_images_store(source, count)
    packed = source.with_name("same.zarr.zip")
    pack_store(source, packed)
    members = _members(packed)
    first = ids[0]
    alias = {
        name: name.replace(f"images/{image_id}/", f"images/{first}/", 1)
        for name in members
        for image_id in ids[1:]
        if name.startswith(f"images/{image_id}/") and "/c/" in name
    }
    kept = [(name, data) for name, data in members.items() if name not in alias]
    _raw_zip(path, kept, alias=alias)


# --------------------------------------------------------------------------- raw zips


def _raw_zip(
    path: Path,
    members: list[tuple[str, bytes]],
    bomb: tuple[str, bytes, int] | None = None,
    alias: dict[str, str] | None = None,
) -> None:
    """A zip written by hand: ``members`` stored; ``bomb`` (name, head, size) a member of
    ``head`` then zeros up to ``size`` bytes, deflated from a repeated block so that a
    gigabyte costs a few megabytes and no memory; ``alias`` central-directory entries whose
    name is the key and whose bytes are those of the member named by the value."""
    central, offsets = [], {}
    with open(path, "wb") as f:
        for name, data in members:
            offsets[name] = f.tell()
            info = (zlib.crc32(data), len(data), len(data), 0)
            f.write(_local(name, *info) + data)
            central.append((name, offsets[name], *info))
        if bomb is not None:
            name, head, size = bomb
            start = f.tell()
            f.write(_local(name, 0, 0, 0, 8))  # sizes and crc patched below
            crc, written = _deflated_zeros(f, head, size)
            end = f.tell()
            f.seek(start + 14)
            f.write(struct.pack("<3L", crc, written, size))
            f.seek(end)
            central.append((name, start, crc, written, size, 8))
        for name, target in (alias or {}).items():
            entry = next(c for c in central if c[0] == target)
            central.append((name, *entry[1:]))
        directory = f.tell()
        for name, offset, crc, compressed, size, method in central:
            raw = name.encode()
            f.write(
                struct.pack(
                    "<4s6H3L5H2L",
                    *(b"PK\x01\x02", 20, 20, 0, method, 0, 0, crc, compressed, size),
                    *(len(raw), 0, 0, 0, 0, 0, offset),
                )
                + raw
            )
        length = f.tell() - directory
        f.write(
            struct.pack(
                "<4s4H2LH", b"PK\x05\x06", 0, 0, len(central), len(central), length, directory, 0
            )
        )


def _local(name: str, crc: int, compressed: int, size: int, method: int) -> bytes:
    raw = name.encode()
    return (
        struct.pack(
            "<4s5H3L2H", b"PK\x03\x04", 20, 0, method, 0, 0, crc, compressed, size, len(raw), 0
        )
        + raw
    )


def _deflated_zeros(f: io.BufferedWriter, head: bytes, size: int) -> tuple[int, int]:
    """Write the raw deflate of ``head`` then zeros up to ``size`` bytes; (crc32, bytes
    written). The zeros are one compressed block of 16 MiB written again and again (a full
    flush makes each block independent of what came before)."""
    block = 16 << 20
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = compressor.compress(head) + compressor.flush(zlib.Z_FULL_FLUSH)
    zeros = bytes(block)
    repeated = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    crc, left, written = zlib.crc32(head), size - len(head), 0
    for data in (first,):
        f.write(data)
        written += len(data)
    while left >= block:
        f.write(repeated)
        written += len(repeated)
        crc = zlib.crc32(zeros, crc)
        left -= block
    tail = compressor.compress(bytes(left)) + compressor.flush(zlib.Z_FINISH)
    crc = zlib.crc32(bytes(left), crc)
    f.write(tail)
    return crc, written + len(tail)
