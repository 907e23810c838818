"""Evaluate trained runs on the store's test splits with the paper's test-time strategies.

For every test image, one pass gives the raw-input and the augmented-input probabilities
(whole image, overlapping sliding windows); from them the four strategies: ``raw``,
``samaug``, ``ensemble`` (mean of the two) and ``select`` (per image the more certain).
Each is scored with the dataset's own metrics (``train.metrics``):

- glas: object F1, object Dice, object Hausdorff per split and for all test splits together;
- monuseg: AJI, AJI+, PQ, pixel F1;
- polyp datasets (kvasir, polyp, folder): mean Dice, mean IoU, Dice at 0.5, S-measure,
  mean/max E-measure, weighted F-measure, MAE.

MoNuSeg and polyp metrics are computed per image and averaged over the images of a split
(the way the PraNet and MoNuSeg evaluation scripts report them). The GlaS scores are the
challenge's: pooled over all images of a split (F1 from the summed counts; object Dice and
Hausdorff weighting each object by its share of the whole split's gland area); their
per-image means are reported too, as ``*_image_mean``. Results go to ``metrics.json`` in
the run directory, under "test", and every image's scores to ``test_per_image.csv``.
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, fields
from pathlib import Path

import numpy as np
import torch

from precompute.store import open_store
from precompute.types import SamaugError, SettingError

from . import metrics as M
from .config import TrainConfig
from .data import WholeImageDataset
from .fusion import FusionSettings
from .inference import STRATEGIES, all_strategies, check_certainty, sliding_window_probs
from .loop import model_input, resolve_device
from .models import create_model
from .postprocess import instances_from_probs

NUCLEI_METRICS = {"aji": M.aji, "aji_plus": M.aji_plus, "pq": M.pq, "pixel_f1": M.pixel_f1}
GLAS_PARTS = [f.name for f in fields(M.GlasParts)]
IMAGE_KEYS = ("split", "image_id", "strategy")  # what names a row of test_per_image.csv


def load_run(run_dir: str | Path, checkpoint: str = "best.pt", device: str = "auto"):
    """(model in eval mode, config, checkpoint state) of a run directory."""
    device = resolve_device(device)
    path = Path(run_dir) / checkpoint
    if not path.exists():
        raise SamaugError(f"{path}: no checkpoint; has `samaug train` finished this run?")
    state = torch.load(path, map_location=device, weights_only=False)
    config = TrainConfig.from_dict(state["config"])
    model = create_model(
        config.model,
        in_channels=state["in_channels"],
        num_classes=state["num_outputs"],
        **config.model_kwargs,
    )
    model.load_state_dict(state["model"])
    return model.to(device).eval(), config, state


def test_splits(store, config: TrainConfig) -> list[str]:
    """Every split the run did not train or validate on."""
    used = {config.train_split, config.val_split}
    return [s for s in store.splits() if s not in used]


def score_image(
    dataset_name: str, task: str, probs: torch.Tensor, label: np.ndarray, min_size: int = 10
) -> dict:
    """Metrics of one prediction. probs: (K, H, W) probabilities; label: instance labels;
    min_size: predicted objects of fewer pixels are removed (instance tasks).

    For glas: the image's own object F1 / Dice / Hausdorff and its GlasParts fields, from
    which ``aggregate`` pools a split the challenge's way.
    """
    if task == "binary":
        return M.polyp_scores(label > 0, probs[0].cpu().numpy())
    predicted = instances_from_probs(probs.cpu().numpy(), min_size=min_size)
    if dataset_name == "glas":
        parts = M.glas_parts(label, predicted)
        return {**M.glas_pooled([parts]), **asdict(parts)}
    return {name: fn(label, predicted) for name, fn in NUCLEI_METRICS.items()}


def aggregate(rows: list[dict]) -> dict[str, float]:
    """One split's (or group's) scores from its images' ``score_image`` rows (any
    ``IMAGE_KEYS`` in them are ignored).

    GlaS rows: object_f1 / object_dice / object_hausdorff pooled over all the images (the
    challenge's definition: counts summed, objects weighted by their share of the whole
    part's area) and the same three averaged over images as ``*_image_mean``. Other
    datasets: the mean over images of each metric.
    """
    if not rows:
        return {}
    if GLAS_PARTS[0] in rows[0]:
        parts = [M.GlasParts(**{f: r[f] for f in GLAS_PARTS}) for r in rows]
        pooled = M.glas_pooled(parts)
        means = {f"{k}_image_mean": float(np.mean([r[k] for r in rows])) for k in pooled}
        return {**pooled, **means}
    metrics = [key for key in rows[0] if key not in IMAGE_KEYS]
    return {key: float(np.mean([r[key] for r in rows])) for key in metrics}


@torch.no_grad()
def evaluate_run(
    run_dir: str | Path,
    store_location: str | None = None,
    splits: list[str] | None = None,
    certainty: str = "margin",
    overlap: float = 0.5,
    device: str = "auto",
    min_size: int = 10,
    checkpoint: str = "best.pt",
) -> dict:
    """Score a run on its test splits; writes and returns metrics.json's "test" part:
    {split: {strategy: {metric: value}}} (see ``aggregate``), plus "select_took_samaug" per
    split, and writes every image's scores to ``test_per_image.csv``."""
    check_certainty(certainty)
    if min_size < 0:
        raise SettingError(f"min_size must be >= 0, not {min_size}")
    device = resolve_device(device)
    model, config, state = load_run(run_dir, checkpoint, device)
    location = store_location or config.store
    store = open_store(location)
    dataset_name = store.attrs["dataset"]["name"]
    task = state["task"]
    fusion = FusionSettings(config.fusion, config.seg_scale)
    activation = "sigmoid" if state["num_outputs"] == 1 else "softmax"
    splits = splits or test_splits(store, config)
    if not splits:
        raise SettingError(f"{location} has no split besides the training ones to evaluate on")

    took: dict[str, list[bool]] = {}
    image_rows: list[dict] = []  # one per image and strategy, named by IMAGE_KEYS
    for split in splits:
        dataset = WholeImageDataset(location, split)
        took[split] = []
        for index in range(len(dataset)):
            item = dataset[index]
            batch = {k: v.unsqueeze(0) for k, v in item.items() if isinstance(v, torch.Tensor)}
            probs = {
                aug: sliding_window_probs(
                    model,
                    model_input(batch, fusion, aug, device),
                    state["num_outputs"],
                    window=config.patch_size,
                    overlap=overlap,
                    activation=activation,
                )
                for aug in (False, True)
            }
            combined, took_samaug = all_strategies(probs[False], probs[True], certainty)
            took[split].append(bool(took_samaug[0]))
            label = item["label"].numpy()
            for strategy, p in combined.items():
                scores = score_image(dataset_name, task, p[0], label, min_size)
                image_rows.append(
                    {"split": split, "image_id": item["image_id"], "strategy": strategy, **scores}
                )

    results: dict = {}
    groups = {split: [split] for split in splits}
    if dataset_name == "glas" and len(splits) > 1:
        groups["all"] = list(splits)  # the GlaS "testA + testB" column
    for name, members in groups.items():
        results[name] = {
            strategy: aggregate(
                [r for r in image_rows if r["split"] in members and r["strategy"] == strategy]
            )
            for strategy in STRATEGIES
        }
        picks = [t for m in members for t in took[m]]
        results[name]["select_took_samaug"] = float(np.mean(picks)) if picks else float("nan")
    path = Path(run_dir) / "metrics.json"
    saved = json.loads(path.read_text()) if path.exists() else {}
    saved["test"] = results
    saved["test_settings"] = {
        "store": location,
        "certainty": certainty,
        "overlap": overlap,
        "min_size": min_size,
        "checkpoint": checkpoint,
    }
    path.write_text(json.dumps(saved, indent=2) + "\n")
    write_table(image_rows, Path(run_dir) / "test_per_image.csv")
    return results


def comparison_rows(run_dirs: list[str | Path]) -> list[dict]:
    """One row per run, split and strategy, one column per metric (from metrics.json)."""
    rows = []
    for run_dir in run_dirs:
        config = TrainConfig.load(Path(run_dir) / "config.json")
        results = json.loads((Path(run_dir) / "metrics.json").read_text())["test"]
        for split, by_strategy in results.items():
            for strategy in STRATEGIES:
                rows.append(
                    {
                        "run": Path(run_dir).name,
                        "model": config.model,
                        "trained_on": config.mode,
                        "split": split,
                        "strategy": strategy,
                        **by_strategy[strategy],
                    }
                )
    return rows


def format_table(rows: list[dict]) -> str:
    """Aligned plain-text table (numbers to 4 decimals)."""
    if not rows:
        return "(no results)"
    columns = list(dict.fromkeys(k for row in rows for k in row))
    cells = [[_cell(row.get(c, "")) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(lines)


def write_table(rows: list[dict], path: str | Path) -> None:
    """Rows (dicts) as CSV, one column per key, floats in full precision."""
    columns = list(dict.fromkeys(k for row in rows for k in row))
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def _cell(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)
