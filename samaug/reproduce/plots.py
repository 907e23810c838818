"""One figure of a table's per-image differences: is a gain carried by most images or a few?

One horizontal lane per compared row, reference and split (every non-baseline row with runs
on both sides, against the baseline, and the joint rows against the compute-matched
baseline too), top to bottom in the table's order. Each lane shows the per-image differences
of the main metric against the reference (each image averaged over seeds first, exactly the
numbers the statistics use), in the table's display units (percentage points for MoNuSeg and
polyps): a box (quartiles, whiskers at 1.5 IQR, no outlier markers), every image as a dot
jittered vertically (a fixed seed, so the figure is reproducible), and the mean as a black
diamond. A red vertical line marks zero difference; the x label says which side is better.
A table with no comparison yet gives a figure saying so; a table of short runs (a smoke run)
says so in its title.

The PNG is ``FIGURE_WIDTH`` inches wide and ``figure_height(lanes)`` high at ``FIGURE_DPI``
and is written atomically. matplotlib is imported only when a figure is drawn.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from precompute.files import atomic_save
from samaug.reproduce.grids import MODEL_LABELS
from samaug.reproduce.paper_table import Table

FIGURE_WIDTH = 8.0  # inches
FIGURE_DPI = 100
BASE_HEIGHT = 1.6  # inches for the title and the axis
LANE_HEIGHT = 0.4  # inches per lane
POINT_COLOUR = "#1f77b4"
ZERO_COLOUR = "#d62728"
BOX_COLOUR = "#7f7f7f"
JITTER_SEED = 0


def figure_height(lanes: int) -> float:
    """Height in inches of a figure of ``lanes`` lanes (at least one)."""
    return BASE_HEIGHT + LANE_HEIGHT * max(lanes, 1)


def lanes(table: Table) -> list[tuple[str, np.ndarray]]:
    """(label, per-image differences in display units) per compared row and split."""
    main = table.grid.main
    several = len(table.splits) > 1
    found = []
    for row in table.rows:
        for arm, by_split in row.comparisons.items():
            for split, comparison in by_split.items():
                if comparison.n == 0:
                    continue
                label = f"{MODEL_LABELS.get(row.model, row.model)} {row.arm}/{row.strategy}"
                label += f" vs {arm}" + (" (short)" if row.short else "")
                label = f"{split}: {label}" if several else label
                found.append((label, comparison.differences * main.scale))
    return found


def write_figure(table: Table, out_png: str | Path) -> Path:
    """Draw ``table``'s per-image differences (module doc) to ``out_png``."""
    from matplotlib.figure import Figure

    grid, main = table.grid, table.grid.main
    drawn = lanes(table)
    figure = Figure(
        figsize=(FIGURE_WIDTH, figure_height(len(drawn))), dpi=FIGURE_DPI, layout="constrained"
    )
    axes = figure.subplots()
    title = f"{grid.title}: per-image {main.label} difference against the baseline"
    if table.short:
        title = f"SMOKE RUN (short runs, not a reproduction)\n{title}"
    axes.set_title(title)
    if not drawn:
        axes.text(0.5, 0.5, "no comparison yet", ha="center", va="center")
        axes.set_axis_off()
    else:
        positions = np.arange(len(drawn))[::-1]  # the table's first row on top
        rng = np.random.default_rng(JITTER_SEED)
        for y, (_, d) in zip(positions, drawn, strict=True):
            _box(axes, d, y)
            jitter = rng.uniform(-0.2, 0.2, d.size)
            axes.scatter(d, y + jitter, s=14, color=POINT_COLOUR, zorder=3)
            axes.plot(d.mean(), y, "D", color="black", markersize=6, zorder=4)
        axes.axvline(0, color=ZERO_COLOUR, linewidth=1.5, zorder=1)
        axes.set_yticks(positions, [label for label, _ in drawn])
        unit = "percentage points" if main.unit == "%" else (main.unit or "fraction")
        better = "higher" if main.higher_is_better else "lower"
        axes.set_xlabel(f"{main.label}: row − reference, per image ({unit}; {better} is better)")
        axes.grid(axis="x", alpha=0.3)
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    atomic_save(out_png, lambda f: figure.savefig(f, format="png"))
    return out_png


def _box(axes, values: np.ndarray, y: float, half: float = 0.3) -> None:
    """A horizontal box plot of ``values`` at height ``y``: quartiles, median, whiskers to the
    furthest values within 1.5 IQR (drawn by hand: the same on every matplotlib version)."""
    from matplotlib.patches import Rectangle

    q1, median, q3 = np.percentile(values, [25, 50, 75])
    reach = 1.5 * (q3 - q1)
    low = values[values >= q1 - reach].min()
    high = values[values <= q3 + reach].max()
    style = {"color": BOX_COLOUR, "linewidth": 1.2}
    axes.add_patch(Rectangle((q1, y - half), q3 - q1, 2 * half, fill=False, edgecolor=BOX_COLOUR))
    axes.plot([median, median], [y - half, y + half], **style)
    axes.plot([low, q1], [y, y], **style)
    axes.plot([q3, high], [y, y], **style)
