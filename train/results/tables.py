"""Result tables: one row per run, split and strategy, as aligned text and as CSV."""

from __future__ import annotations

import csv
from pathlib import Path

from precompute.files import atomic_file
from precompute.types import SamaugError
from train.choices import STRATEGIES
from train.training.checkpoint import read_json
from train.training.config import TrainConfig


def comparison_rows(run_dirs: list[str | Path]) -> list[dict]:
    """One row per run, split and strategy, one column per metric (from metrics.json)."""
    rows = []
    for run_dir in run_dirs:
        config = TrainConfig.load(Path(run_dir) / "config.json")
        metrics = read_json(Path(run_dir) / "metrics.json")
        if not isinstance(metrics, dict) or "test" not in metrics:
            raise SamaugError(f"{run_dir}: no test results in metrics.json; run `samaug eval`")
        results = metrics["test"]
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


def write_csv(rows: list[dict], path: str | Path) -> None:
    """Rows (dicts) as CSV, one column per key, floats in full precision."""
    columns = list(dict.fromkeys(k for row in rows for k in row))
    with atomic_file(path, "w") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def _cell(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)
