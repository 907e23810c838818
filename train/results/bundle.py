"""Model bundles: a trained model as one zip file to hand to a colleague.

``export_bundle`` writes, from a run directory's checkpoint, a zip holding:

- ``model.safetensors`` -- the weights (safetensors: tensors only, nothing to unpickle);
- ``model.json`` -- ``{"format": "samaug-bundle/1", "samaug_version", "exported", "source",
  "config" (the full TrainConfig), "task", "in_channels", "num_outputs", "epoch", "step",
  "best_epoch", "best_val_dice", "identity" (the store's signature and the images trained and
  validated on)}``;
- ``provenance.json`` -- the training store's provenance: where it was, its dataset, the
  masker (kind, every setting, the SAM checkpoint's sha256, architecture), the prior
  definitions and the schema version;
- ``metrics.json`` -- the run's ``metrics.json`` as it was ({} for a run without one);
- ``README.md`` -- what the model was trained on and how to run it.

``read_bundle`` reads one back without unpickling anything (safetensors and JSON); every
command takes a model through ``train.results.loading``, which reads bundles with it. A
bundle is received from someone else: each JSON member is bounded and checked against its
schema below (``precompute.received``), and the weights are read only once their header
agrees with the model the config describes, built on the meta device
(``train.results.weights_member``), so a hostile bundle is refused in one line before
anything it claims is allocated.
"""

from __future__ import annotations

import json
import zipfile
import zlib
from datetime import datetime, timezone
from pathlib import Path

import torch
from safetensors.torch import save as save_safetensors

from precompute import __version__
from precompute.files import atomic_file
from precompute.limits import max_json_bytes
from precompute.maskers import describe_masker, recorded_checkpoint
from precompute.received import INTEGER, NAMES, OBJECT, STRING, nullable, read_json
from precompute.types import SamaugError, SettingError
from train.models import MAX_CHANNELS, model_skeleton
from train.results.weights_member import read_weights
from train.training.checkpoint import MORE_RUN_FILES, RUN_FILES, load_checkpoint
from train.training.checkpoint import read_json as read_run_json
from train.training.config import TrainConfig

FORMAT = "samaug-bundle/1"
WEIGHTS = "model.safetensors"
ABOUT = "model.json"
PROVENANCE = "provenance.json"
METRICS = "metrics.json"
README = "README.md"
# Checkpoint keys a bundle keeps in model.json (the states for resuming are left out).
KEPT = ("config", "task", "in_channels", "num_outputs", "epoch", "step", "best_epoch")
KEPT_OPTIONAL = ("best_val_dice", "identity")

# What reading a bundle relies on, as JSON Schemas (``precompute.received``): anything else
# is refused in one line naming the member and the place.
_CHANNELS = {**INTEGER, "minimum": 1, "maximum": MAX_CHANNELS}
_MASKER = {
    "type": "object",
    "required": ["kind", "settings"],
    "properties": {
        "kind": STRING,
        "settings": OBJECT,
        "checkpoint": nullable(STRING),
        "checkpoint_sha256": nullable(STRING),
    },
}
_SIGNATURE = {
    "type": "object",
    "required": ["masker", "priors"],
    "properties": {
        "masker": _MASKER,
        "priors": OBJECT,
        "dataset": OBJECT,
    },
}
ABOUT_SCHEMA = {
    "type": "object",
    "required": ["format", *KEPT, "identity"],
    "properties": {
        "format": {"const": FORMAT},
        "config": {
            "type": "object",
            "required": ["model"],
            "properties": {
                "model": STRING,
                "mode": STRING,
                "model_kwargs": OBJECT,
            },
        },
        "task": STRING,
        "in_channels": _CHANNELS,
        "num_outputs": _CHANNELS,
        "epoch": {**INTEGER, "minimum": -1},
        "step": {**INTEGER, "minimum": 0},
        "best_epoch": nullable({**INTEGER, "minimum": -1}),
        "best_val_dice": nullable({"type": "number"}),
        "identity": {
            "type": "object",
            "required": ["signature"],
            "properties": {
                "signature": _SIGNATURE,
                "train_ids": NAMES,
                "val_ids": NAMES,
            },
        },
        "source": OBJECT,
    },
}
PROVENANCE_SCHEMA = {
    "type": "object",
    "required": ["masker"],
    "properties": {
        "masker": _MASKER,
        "dataset": OBJECT,
        "priors": OBJECT,
        "location": nullable(STRING),
    },
}
METRICS_SCHEMA = {"type": "object", "properties": {"test": OBJECT, "train": OBJECT}}


def export_bundle(run_dir: str | Path, out: str | Path, checkpoint: str = "best.pt") -> Path:
    """Write the bundle of ``run_dir``'s ``checkpoint`` to ``out`` (a zip, replaced
    atomically; its folder is created). SamaugError naming the file for a missing, damaged
    or unsafe checkpoint; SettingError when ``run_dir`` is not a folder or ``out`` is one.
    Returns ``out``."""
    run_dir, out = Path(run_dir), Path(out)
    if not run_dir.is_dir():
        raise SettingError(f"{run_dir}: not a run directory; give the folder `samaug train` made")
    if out.is_dir():
        raise SettingError(f"{out} is a folder; give the bundle's file name, e.g. model.zip")
    _check_replaceable(out)
    state = load_checkpoint(run_dir / checkpoint, "cpu", "restore it, or train the run again")
    metrics_path = run_dir / METRICS
    metrics = read_run_json(metrics_path) if metrics_path.exists() else {}
    about = {
        "format": FORMAT,
        "samaug_version": __version__,
        "exported": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "source": {"run": str(run_dir), "checkpoint": checkpoint},
        **{key: state[key] for key in KEPT},
        **{key: state.get(key) for key in KEPT_OPTIONAL},
    }
    weights = {name: tensor.contiguous() for name, tensor in state["model"].items()}
    provenance = state.get("store", {})
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(out) as f, zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(WEIGHTS, save_safetensors(weights, metadata={"format": FORMAT}))
        archive.writestr(ABOUT, _json(about))
        archive.writestr(PROVENANCE, _json(provenance))
        archive.writestr(METRICS, _json(metrics))
        archive.writestr(README, bundle_readme(about, provenance, metrics))
    return out


def _check_replaceable(out: Path) -> None:
    """SettingError unless ``out`` is a new file or a bundle: a run's own file (its
    ``last.pt``, which resuming needs, even where missing) or any file that is not a bundle
    is never replaced by one."""
    if out.name in (*RUN_FILES, *MORE_RUN_FILES) and (
        (out.parent / "config.json").is_file() or (out.parent / "last.pt").is_file()
    ):
        raise SettingError(
            f"{out} is a file of the run in {out.parent}; give the bundle a name of its own, "
            "e.g. model.zip"
        )
    if out.exists() and not is_bundle(out):
        raise SettingError(
            f"{out} exists and is not a model bundle; give a new file name, e.g. model.zip "
            "(only a bundle is replaced)"
        )


def is_bundle(path: str | Path) -> bool:
    """Whether ``path`` is a zip file holding a ``model.json`` (a checkpoint written by
    ``torch.save`` is a zip too, but never holds one)."""
    path = Path(path)
    if not path.is_file() or not zipfile.is_zipfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as archive:
            return ABOUT in archive.namelist()
    except (OSError, zipfile.BadZipFile):
        return False


def read_bundle(path: str | Path, device: torch.device | str = "cpu") -> dict:
    """A bundle as a checkpoint-like dict: model.json's keys, ``model`` (the weights on
    ``device``), ``store`` (provenance.json) and ``metrics`` (metrics.json).

    SamaugError naming the file for anything that is not a bundle of this format: not a
    zip, a missing member, JSON that does not parse or does not match its schema, a config
    this samaug cannot build (options out of bounds included), weights that are not
    safetensors or not the weights of the model the config describes (checked from their
    header before they are read).
    """
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            missing = [m for m in (WEIGHTS, ABOUT, PROVENANCE) if m not in names]
            if missing:
                raise SamaugError(
                    f"{path}: not a samaug model bundle (no {', '.join(missing)}); make one "
                    "with `samaug export RUN OUT.zip`"
                )
            about = _read_member_json(archive, ABOUT, path, ABOUT_SCHEMA)
            provenance = _read_member_json(archive, PROVENANCE, path, PROVENANCE_SCHEMA)
            metrics = {}
            if METRICS in names:
                metrics = _read_member_json(archive, METRICS, path, METRICS_SCHEMA)
            tensors = read_weights(archive, WEIGHTS, path, _skeleton_state(about, path))
    except (OSError, zipfile.BadZipFile, EOFError, zlib.error) as err:
        raise SamaugError(f"{path}: cannot read the bundle ({err})") from err
    model = {name: tensor.to(device) for name, tensor in tensors.items()}
    return {**about, "model": model, "store": provenance, "metrics": metrics}


def _skeleton_state(about: dict, path: Path) -> dict[str, torch.Tensor]:
    """The state dict (meta tensors: names, shapes, dtypes) of the model ``about`` (a checked
    model.json) describes; SamaugError naming the bundle for a config that cannot build one
    here (bounds included)."""
    try:
        config = TrainConfig.from_dict(about["config"])
        kwargs = dict(config.model_kwargs)
        skeleton = model_skeleton(
            config.model,
            in_channels=about["in_channels"],
            num_classes=about["num_outputs"],
            **kwargs,
        )
    except SettingError as err:
        raise SamaugError(f"{path}: its config is not valid here ({err})") from err
    return skeleton.state_dict()


def bundle_readme(about: dict, provenance: dict, metrics: dict) -> str:
    """The README.md of a bundle: what the model is, what it was trained on, how to run it."""
    config = about["config"]
    dataset = provenance.get("dataset", {})
    masker = provenance.get("masker", {})
    described = describe_masker(masker)
    identity = about.get("identity") or {}
    train_ids, val_ids = identity.get("train_ids", []), identity.get("val_ids", [])
    best = about.get("best_val_dice")
    lines = [
        f"# samaug model: {config['model']} ({config['mode']}, task {about['task']})",
        "",
        f"Exported by samaug {about['samaug_version']} on {about['exported']} from "
        f"`{about['source']['run']}/{about['source']['checkpoint']}` (epoch "
        f"{about['epoch'] + 1}, step {about['step']}"
        + (f", validation Dice {best:.4f}" if isinstance(best, (int, float)) else "")
        + ").",
        "",
        "## Trained on",
        "",
        f"- dataset: {dataset.get('name')} (reader options {dataset.get('reader_options')}), "
        f"split {config['train_split']!r}: {len(train_ids)} training and {len(val_ids)} "
        "validation images",
        f"- store: {provenance.get('location')} (schema {provenance.get('schema_version')})",
        f"- masker: {masker.get('kind')}" + (f", {described}" if described else ""),
        f"- masker settings: {json.dumps(masker.get('settings', {}), sort_keys=True)}",
        f"- fusion {config['fusion']} (seg scale {config['seg_scale']}), patch "
        f"{config['patch_size']}, epochs {config['epochs']}",
        "",
        "## Running it",
        "",
        "```bash",
        "samaug predict model.zip --images DIR --out PREDICTIONS"
        + (" --checkpoint SAM_CHECKPOINT.pth" if recorded_checkpoint(masker) else ""),
        "samaug eval model.zip --store STORE",
        "```",
        "",
    ]
    if config["mode"] != "raw":
        lines += [
            "The model takes SAM priors as input: `samaug predict` computes them for new "
            "images with the masker above, and refuses a SAM checkpoint of another sha256.",
            "",
        ]
    test = metrics.get("test") if isinstance(metrics, dict) else None
    if isinstance(test, dict) and test:
        lines += ["## Test scores", "", *_score_table(test), ""]
    lines += [
        "Files: model.safetensors (weights), model.json (config and training summary), "
        "provenance.json (the training store), metrics.json (the run's scores).",
        "",
    ]
    return "\n".join(lines)


def _score_table(test: dict) -> list[str]:
    """metrics.json's "test" ({split: {strategy: {metric: value}}}) as a Markdown table."""
    rows = [
        (split, strategy, scores)
        for split, by_strategy in test.items()
        if isinstance(by_strategy, dict)
        for strategy, scores in by_strategy.items()
        if isinstance(scores, dict)
    ]
    metrics = list(dict.fromkeys(name for _, _, scores in rows for name in scores))
    lines = [
        "| split | strategy | " + " | ".join(metrics) + " |",
        "|---|---|" + "---|" * len(metrics),
    ]
    for split, strategy, scores in rows:
        cells = [_cell(scores.get(name)) for name in metrics]
        lines.append(f"| {split} | {strategy} | " + " | ".join(cells) + " |")
    return lines


def _cell(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value if value is not None else "")


def _json(value) -> str:
    return json.dumps(value, indent=2) + "\n"


def _read_member_json(archive: zipfile.ZipFile, name: str, path: Path, schema: dict):
    """A JSON member, bounded before it is read (``limits.max_json_bytes``: zipfile stops at
    the size the directory states) and checked against ``schema``."""
    where = f"{path}: {name}"
    size, limit = archive.getinfo(name).file_size, max_json_bytes()
    if size > limit:
        raise SamaugError(
            f"{where} claims {size:,} bytes, more than the limit of {limit:,} for JSON (set "
            "SAMAUG_MAX_JSON_BYTES to read larger files)"
        )
    return read_json(archive.read(name), schema, where)


__all__ = ["export_bundle", "is_bundle", "read_bundle", "bundle_readme"]
