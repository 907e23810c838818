"""A table written out: Markdown in the paper's layout, CSV with every value in full precision.

Markdown (``to_markdown``): the settings the table was made with (store, masker, seeds, how
long each model's arms trained), a warning where any run is shorter than its recipe, one
pipe table, then notes. Columns: the test set (polyp, which has several), model, arm
("Trained": raw, raw_x2 (raw with a joint run's optimizer steps) or joint), test-time
strategy, the seeds, the run's length ("full", or "short" for a smoke run), then per metric
(per split for GlaS) ``mean ± std`` over seeds, printed as the paper prints it (MoNuSeg and
polyp in percent, to two and one decimals; GlaS F1 and Dice as fractions, Hausdorff in
pixels) with the published value in a "(paper)" column beside it when the paper has numbers
for that table; last the main metric's mean per-image difference against the baseline with
its bootstrap 95% interval and the Wilcoxon p-value (the paper's comparison), and the same
against the compute-matched baseline for the joint rows (the fair one). "—" marks no value:
a row not run yet, a comparison the row does not make, an unpublished number; "n/a" a
comparison on too few images (``stats.MIN_IMAGES``). p below 0.001 is printed in scientific
notation. The notes say what the numbers are, which comparison is which, where the published
ones come from (and that their placement is OUR mapping), which published numbers are
missing and why, and any comparison whose test could not run.

CSV (``to_csv``): one line per row and split: ``table, split, model, trained, strategy,
seeds`` (the seeds joined by ";"), ``length`` ("full" or "short") and ``trained_for`` (its
runs' epochs, items per epoch and optimizer steps), then ``<metric>_mean``, ``<metric>_std``,
``<metric>_paper`` and ``<metric>_seed<S>`` per seed (unscaled fractions; Hausdorff in
pixels), then the main metric's name (``compared_metric``) and its statistics against each
reference, prefixed ``vs_raw_`` and ``vs_raw_x2_``: ``n_images``, ``n_excluded``,
``baseline_mean``, ``row_mean``, ``mean_difference``, ``ci_low``, ``ci_high``,
``wilcoxon_statistic``, ``p_value``, ``note``. An empty field is a value that does not exist
(a std of one seed, a p-value not computed).
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from precompute.files import atomic_write_text
from samaug.reproduce.grids import BASELINE, MATCHED, MODEL_LABELS, Metric
from samaug.reproduce.paper_table import Table, TableRow
from samaug.reproduce.stats import MIN_IMAGES, PairedComparison

NONE = "—"
REFERENCES = (BASELINE[0], MATCHED[0])  # the arms rows are compared with: paper's, fair
UNIT_WORDS = {"%": "in percent", "px": "in pixels"}
STAT_COLUMNS = (
    "n_images",
    "n_excluded",
    "baseline_mean",
    "row_mean",
    "mean_difference",
    "ci_low",
    "ci_high",
    "wilcoxon_statistic",
    "p_value",
    "note",
)


def write_table(table: Table, out_dir: str | Path, stem: str | None = None) -> dict[str, Path]:
    """Write ``<stem>.md`` and ``<stem>.csv`` (stem: the grid's name) into ``out_dir``,
    each atomically. Returns {"markdown": path, "csv": path}."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = stem or table.grid.name
    paths = {"markdown": out_dir / f"{stem}.md", "csv": out_dir / f"{stem}.csv"}
    atomic_write_text(paths["markdown"], to_markdown(table))
    atomic_write_text(paths["csv"], to_csv(table))
    return paths


def to_markdown(table: Table) -> str:
    grid = table.grid
    with_paper = table.paper.has_table(grid.name)
    split_column = grid.split_axis == "rows" and len(grid.splits) > 1
    column_splits = table.splits if grid.split_axis == "columns" else (None,)
    references = [arm for arm in REFERENCES if any(arm in r.comparisons for r in table.rows)]
    header = (["Test set"] if split_column else []) + [
        "Model",
        "Trained",
        "Test-time",
        "Seeds",
        "Run",
    ]
    for split in column_splits:
        for m in grid.metrics:
            header.append(_name(m.label, split))
            if with_paper:
                header.append(_name(m.label, split) + " (paper)")
    for split in column_splits:
        for arm in references:
            header += [_name(f"Δ {grid.main.label} vs {arm}", split) + " [95% CI]"]
            header += [_name(f"p vs {arm}", split)]

    lines = [_line(header), _line(["---"] * len(header))]
    for row in table.rows:
        cells = ([row.splits[0]] if split_column else []) + [
            MODEL_LABELS.get(row.model, row.model),
            row.arm,
            row.strategy,
            ", ".join(map(str, row.seeds)) if row.seeds else NONE,
            NONE if not row.lengths else "short" if row.short else "full",
        ]
        for split in column_splits:
            split = split or row.splits[0]
            for m in grid.metrics:
                cells.append(_mean_std(row, split, m))
                if with_paper:
                    value = row.paper.get((split, m.name))
                    cells.append(NONE if value is None else m.show(value))
        for split in column_splits:
            for arm in references:
                comparison = row.comparisons.get(arm, {}).get(split or row.splits[0])
                cells += [_delta(comparison, grid.main), _p(comparison)]
        lines.append(_line(cells))
    return (
        f"## {grid.title}\n\n{_settings(table)}\n\n"
        + "\n".join(lines)
        + "\n\n"
        + _notes(table, references)
        + "\n"
    )


def _settings(table: Table) -> str:
    """The lines above the table: what it was made from, and a warning for smoke runs."""
    lines = []
    if table.store:
        lines.append(
            f"Store: {table.store.get('location')} ({table.store.get('dataset')}); masker: "
            f"{table.store.get('masker')}."
        )
    seeds = sorted({s for row in table.rows for s in row.seeds})
    lines.append(f"Seeds: {', '.join(map(str, seeds)) or 'none yet'}.")
    seen = set()
    for row in table.rows:
        if (row.model, row.arm) in seen or not row.lengths:
            continue
        seen.add((row.model, row.arm))
        lengths = sorted({length.describe() for length in row.lengths})
        label = MODEL_LABELS.get(row.model, row.model)
        lines.append(f"{label} {row.arm}: trained {'; '.join(lengths)}.")
    text = "\n".join(f"- {line}" for line in lines)
    if table.short:
        text = (
            "**Smoke run: runs marked short trained fewer epochs than their recipe, or a "
            "budget of items per epoch. These numbers are not a reproduction of the paper "
            "and are not comparable with its numbers.**\n\n" + text
        )
    return text


def to_csv(table: Table) -> str:
    grid = table.grid
    seeds = sorted({s for row in table.rows for s in row.seeds})
    columns = ["table", "split", "model", "trained", "strategy", "seeds", "length", "trained_for"]
    for m in grid.metrics:
        columns += [f"{m.name}_mean", f"{m.name}_std", f"{m.name}_paper"]
        columns += [f"{m.name}_seed{s}" for s in seeds]
    columns += ["compared_metric"]
    columns += [f"vs_{arm}_{column}" for arm in REFERENCES for column in STAT_COLUMNS]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in table.rows:
        for split in row.splits:
            line = {
                "table": grid.name,
                "split": split,
                "model": row.model,
                "trained": row.arm,
                "strategy": row.strategy,
                "seeds": ";".join(map(str, row.seeds)),
                "length": "" if not row.lengths else "short" if row.short else "full",
                "trained_for": "; ".join(sorted({n.describe() for n in row.lengths})),
                "compared_metric": grid.main_metric,
            }
            for m in grid.metrics:
                cell = row.cells[(split, m.name)]
                line[f"{m.name}_mean"] = _full(cell.mean)
                line[f"{m.name}_std"] = _full(cell.std)
                line[f"{m.name}_paper"] = _full(row.paper.get((split, m.name)))
                for s, value in cell.values.items():
                    line[f"{m.name}_seed{s}"] = _full(value)
            for arm, by_split in row.comparisons.items():
                if split in by_split:
                    fields = _stat_fields(by_split[split])
                    line.update({f"vs_{arm}_{k}": v for k, v in fields.items()})
            writer.writerow(line)
    return out.getvalue()


def _stat_fields(c: PairedComparison) -> dict[str, str]:
    values = {
        "n_images": c.n,
        "n_excluded": c.n_excluded,
        "baseline_mean": c.mean_baseline,
        "row_mean": c.mean_other,
        "mean_difference": c.mean_difference,
        "ci_low": c.ci_low,
        "ci_high": c.ci_high,
        "wilcoxon_statistic": c.statistic,
        "p_value": c.p_value,
    }
    return {**{k: _full(v) for k, v in values.items()}, "note": c.note}


def _notes(table: Table, references: list[str]) -> str:
    grid, paper = table.grid, table.paper
    by_unit: dict[str, list[str]] = {}
    for m in grid.metrics:
        by_unit.setdefault(UNIT_WORDS.get(m.unit, "as fractions"), []).append(m.label)
    units = "; ".join(f"{', '.join(labels)} {words}" for words, labels in by_unit.items())
    direction = "higher" if grid.main.higher_is_better else "lower"
    lower = [m.label for m in grid.metrics if not m.higher_is_better]
    units += f"; lower is better for {', '.join(lower)}" if lower else ""
    notes = [
        f"Values: mean ± sample standard deviation (ddof=1) over seeds, the mean alone for one "
        f"seed; {units}.",
        f"Δ {grid.main.label} vs raw: mean per-image difference, row − baseline (raw-trained, "
        f"raw strategy, same model): the paper's comparison; {direction} is better; each image "
        f"averaged over its seeds first. [95% CI]: bootstrap percentile interval over images "
        f"({table.n_boot} resamples, seed {table.seed}). p: two-sided Wilcoxon signed-rank "
        f"test on the same per-image differences; neither below {MIN_IMAGES} images (n/a).",
    ]
    if MATCHED[0] in references:
        notes.append(
            f"Δ vs {MATCHED[0]}: the joint rows against the compute-matched baseline, a raw "
            "run taking a joint run's two optimizer steps per batch (the same batches and "
            "schedule): the fair comparison, since a joint run makes twice the baseline's "
            "updates. Ours, not the paper's."
        )
    if grid.split_axis == "columns":
        notes.append(
            "The table's values are pooled over each test split as the challenge scores them; "
            "the statistics pair per-image scores, so Δ is not the difference of two cells."
        )
    if paper.has_table(grid.name):
        without, with_ = paper.mapping[False], paper.mapping[True]
        sources = "; ".join(
            f"{source}, {', '.join(where)}" for source, where in paper.sources(grid.name).items()
        )
        notes.append(
            f"(paper): {sources}. Placed by OUR mapping: "
            f"without SAMAug beside {without[0]}-trained/{without[1]}, with SAMAug beside "
            f"{with_[0]}-trained/{with_[1]}. {paper.mapping_note}"
        )
    for missing in paper.missing_for(grid.name):
        label = MODEL_LABELS.get(missing["model"], missing["model"])
        notes.append(f"No published {label} numbers here: {missing['reason']}")
    for row in table.rows:
        for arm, by_split in row.comparisons.items():
            for split, c in by_split.items():
                problems = [c.note] if c.note else []
                if c.n_excluded:
                    problems.append(f"{c.n_excluded} image(s) with a non-finite score left out")
                if problems:
                    label = MODEL_LABELS.get(row.model, row.model)
                    notes.append(
                        f"{label} {row.arm}/{row.strategy} vs {arm}, {split}: "
                        f"{'; '.join(problems)}."
                    )
    return "\n".join(f"- {note}" for note in notes)


def _name(label: str, split: str | None) -> str:
    return f"{label} {split}" if split else label


def _line(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _mean_std(row: TableRow, split: str, m: Metric) -> str:
    cell = row.cells[(split, m.name)]
    if cell.n == 0:
        return NONE
    if cell.n == 1:
        return m.show(cell.mean)
    return f"{m.show(cell.mean)} ± {m.show(cell.std)}"


def _delta(c: PairedComparison | None, m: Metric) -> str:
    if c is None:
        return NONE
    if math.isnan(c.mean_difference):
        return "n/a"
    scale, d = m.scale, m.decimals
    if math.isnan(c.ci_low):  # too few images for an interval (stats.MIN_IMAGES)
        return f"{c.mean_difference * scale:+.{d}f} (n={c.n}: no CI)"
    return (
        f"{c.mean_difference * scale:+.{d}f} "
        f"[{c.ci_low * scale:+.{d}f}, {c.ci_high * scale:+.{d}f}]"
    )


def _p(c: PairedComparison | None) -> str:
    if c is None:
        return NONE
    if math.isnan(c.p_value):
        return "n/a"
    return f"{c.p_value:.3f}" if c.p_value >= 0.001 else f"{c.p_value:.1e}"


def _full(value: float | None) -> str:
    """Full precision (Python's shortest round-trip repr); "" for no value or NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return repr(float(value)) if isinstance(value, float) else str(value)
