"""A table written out: Markdown in the paper's layout, CSV with every value in full precision.

Markdown (``to_markdown``): one pipe table, then notes. Columns: the test set (polyp, which
has several), model, training mode, test-time strategy, the seeds, then per metric (per split
for GlaS) ``mean ± std`` over seeds, printed as the paper prints it (MoNuSeg and polyp in
percent, to two and one decimals; GlaS F1 and Dice as fractions, Hausdorff in pixels) with
the published value in a "(paper)" column beside it when the paper has numbers for that
table; last the main metric's mean per-image difference against the baseline with its
bootstrap 95% interval, and the Wilcoxon p-value. "—" marks no value: a row not run yet,
the baseline's own difference, an unpublished number. p below 0.001 is printed in
scientific notation. The notes say what the numbers are, where the published ones come
from (and that their placement is OUR mapping), which published numbers are missing and why,
and any comparison whose test could not run.

CSV (``to_csv``): one line per row and split: ``table, split, model, trained, strategy,
seeds`` (the seeds joined by ";"), then ``<metric>_mean``, ``<metric>_std``,
``<metric>_paper`` and ``<metric>_seed<S>`` per seed (unscaled fractions; Hausdorff in
pixels), then the statistics of the main metric (``compared_metric``): ``n_images``, ``n_excluded``,
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
from samaug.reproduce.grids import MODEL_LABELS, Metric
from samaug.reproduce.paper_table import Table, TableRow
from samaug.reproduce.stats import PairedComparison

NONE = "—"
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
    header = (["Test set"] if split_column else []) + ["Model", "Trained", "Test-time", "Seeds"]
    for split in column_splits:
        for m in grid.metrics:
            header.append(_name(m.label, split))
            if with_paper:
                header.append(_name(m.label, split) + " (paper)")
    for split in column_splits:
        header += [_name(f"Δ {grid.main.label}", split) + " [95% CI]", _name("p", split)]

    lines = [_line(header), _line(["---"] * len(header))]
    for row in table.rows:
        cells = ([row.splits[0]] if split_column else []) + [
            MODEL_LABELS.get(row.model, row.model),
            row.mode,
            row.strategy,
            str(len(row.seeds)) if row.seeds else NONE,
        ]
        for split in column_splits:
            split = split or row.splits[0]
            for m in grid.metrics:
                cells.append(_mean_std(row, split, m))
                if with_paper:
                    value = row.paper.get((split, m.name))
                    cells.append(NONE if value is None else m.show(value))
        for split in column_splits:
            comparison = row.comparisons.get(split or row.splits[0])
            cells += [_delta(comparison, grid.main), _p(comparison)]
        lines.append(_line(cells))
    return f"## {grid.title}\n\n" + "\n".join(lines) + "\n\n" + _notes(table) + "\n"


def to_csv(table: Table) -> str:
    grid = table.grid
    seeds = sorted({s for row in table.rows for s in row.seeds})
    columns = ["table", "split", "model", "trained", "strategy", "seeds"]
    for m in grid.metrics:
        columns += [f"{m.name}_mean", f"{m.name}_std", f"{m.name}_paper"]
        columns += [f"{m.name}_seed{s}" for s in seeds]
    columns += ["compared_metric", *STAT_COLUMNS]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in table.rows:
        for split in row.splits:
            line = {
                "table": grid.name,
                "split": split,
                "model": row.model,
                "trained": row.mode,
                "strategy": row.strategy,
                "seeds": ";".join(map(str, row.seeds)),
                "compared_metric": grid.main_metric,
            }
            for m in grid.metrics:
                cell = row.cells[(split, m.name)]
                line[f"{m.name}_mean"] = _full(cell.mean)
                line[f"{m.name}_std"] = _full(cell.std)
                line[f"{m.name}_paper"] = _full(row.paper.get((split, m.name)))
                for s, value in cell.values.items():
                    line[f"{m.name}_seed{s}"] = _full(value)
            comparison = row.comparisons.get(split)
            if comparison is not None:
                line.update(_stat_fields(comparison))
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


def _notes(table: Table) -> str:
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
        f"Δ {grid.main.label}: mean per-image difference, row − baseline ({grid.rows[0][0]}-"
        f"trained, {grid.rows[0][1]} strategy, same model), {direction} is better; each image "
        f"averaged over its seeds first. [95% CI]: bootstrap percentile interval over images "
        f"({table.n_boot} resamples, seed {table.seed}). p: two-sided Wilcoxon signed-rank "
        "test on the same per-image differences.",
    ]
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
        for split, c in row.comparisons.items():
            problems = [c.note] if c.note else []
            if c.n_excluded:
                problems.append(f"{c.n_excluded} image(s) with a non-finite score left out")
            if problems:
                label = MODEL_LABELS.get(row.model, row.model)
                notes.append(f"{label} {row.mode}/{row.strategy}, {split}: {'; '.join(problems)}.")
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
