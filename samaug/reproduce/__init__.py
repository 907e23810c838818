"""``samaug reproduce``: the paper's tables from runs it trains and evaluates.

``driver`` (imported on its own, as it imports the trainer and torch) trains and evaluates
a grid's runs, resumably, and writes its table with the modules below, the analysis half:

- ``grids``: the three tables (monuseg, glas, polyp) as data: models, training modes, rows,
  test splits, metrics and their direction, the main metric.
- ``runs``: ``load_run`` / ``load_runs`` read a run directory (config.json, metrics.json,
  test_per_image.csv) into a ``RunResult``; errors name the file.
- ``paper``: the published numbers (``paper_results.json``) and OUR mapping of them onto
  our rows.
- ``stats``: paired per-image comparison against the baseline (Wilcoxon signed-rank,
  bootstrap 95% interval of the mean difference).
- ``tables``: ``build_table(grid, runs)``: mean ± std over seeds, paper numbers, statistics.
- ``render``: ``write_table`` (Markdown in the paper's layout and a full-precision CSV).
- ``figure``: ``write_figure``: the per-image differences as one PNG.

Typical use, once every run of a grid is trained and evaluated::

    grid = get_grid("monuseg")
    table = build_table(grid, load_runs(run_dirs, grid))
    write_table(table, out_dir)                  # monuseg.md, monuseg.csv
    write_figure(table, out_dir / "monuseg.png")
"""

from samaug.reproduce.grids import GRIDS, Grid, Metric, get_grid
from samaug.reproduce.paper import load_paper
from samaug.reproduce.paper_table import Table, build_table
from samaug.reproduce.plots import write_figure
from samaug.reproduce.render import to_csv, to_markdown, write_table
from samaug.reproduce.runs import RunResult, load_run, load_runs
from samaug.reproduce.stats import PairedComparison, paired_comparison

__all__ = [
    "GRIDS",
    "Grid",
    "Metric",
    "PairedComparison",
    "RunResult",
    "Table",
    "build_table",
    "get_grid",
    "load_paper",
    "load_run",
    "load_runs",
    "paired_comparison",
    "to_csv",
    "to_markdown",
    "write_figure",
    "write_table",
]
