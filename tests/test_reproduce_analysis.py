"""The analysis half of ``samaug reproduce`` (samaug/reproduce): grids, the published numbers,
loading runs, tables (Markdown, CSV) with their statistics, and the differences figure, on run
directories written to disk the way evaluation writes them (the statistics on their own:
test_reproduce_stats.py)."""

import csv
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from precompute.types import InputError, SettingError
from samaug.reproduce import (
    GRIDS,
    build_table,
    get_grid,
    load_paper,
    load_run,
    load_runs,
    paired_comparison,
    to_csv,
    to_markdown,
    write_figure,
    write_table,
)
from samaug.reproduce.plots import (
    FIGURE_DPI,
    FIGURE_WIDTH,
    POINT_COLOUR,
    ZERO_COLOUR,
    figure_height,
)
from train.choices import STRATEGIES
from train.metrics import polyp_scores
from train.models import list_models
from train.modes import MODES
from train.results.tables import write_csv
from train.tasks import NUCLEI_METRICS, get_task
from train.training.config import TrainConfig

# The synthetic rows hold only each grid's metric columns: every split value is their mean
# over images, as evaluation aggregates MoNuSeg and polyp scores.
aggregate = get_task("nuclei").aggregate

GAIN = {"raw": 0.0, "samaug": 0.05, "ensemble": 0.04, "select": 0.06}  # joint model, by strategy


def scores_of(grid, model, mode, seed, strategy, image):
    """A deterministic synthetic score per metric: a per-image level, a seed wobble, and the
    joint model's gain for strategies that use the priors (varying by image, mean GAIN over
    images 0..7). The joint model's raw strategy scores exactly as the baseline."""
    level = 0.5 + 0.02 * (image % 7) + 0.003 * seed
    if mode == "joint" and strategy != "raw":
        level += GAIN[strategy] + 0.01 * ((image % 4) - 1.5)
    wobble = 0.004 * ((image * 31 + seed * 17) % 5)
    return {m.name: level + 0.01 * k + wobble for k, m in enumerate(grid.metrics)}


def write_run(root: Path, grid, model, mode, seed, images=8, splits=None) -> Path:
    """A run directory as train + eval leave it: config.json (TrainConfig.save),
    metrics.json ("test" from the task aggregation, plus select_took_samaug) and
    test_per_image.csv (evaluate.write_table)."""
    run_dir = root / f"{model}-{mode}-{seed}"
    run_dir.mkdir(parents=True)
    TrainConfig(store="x.zarr", model=model, mode=mode, seed=seed, out=str(run_dir)).save(
        run_dir / "config.json"
    )
    rows = [
        {
            "split": split,
            "image_id": f"{split}_{i}",
            "strategy": strategy,
            **scores_of(grid, model, mode, seed, strategy, i),
        }
        for split in splits or grid.splits
        for strategy in STRATEGIES
        for i in range(images)
    ]
    test = {
        split: {
            **{
                s: aggregate([r for r in rows if (r["split"], r["strategy"]) == (split, s)])
                for s in STRATEGIES
            },
            "select_took_samaug": 0.5,
        }
        for split in splits or grid.splits
    }
    (run_dir / "metrics.json").write_text(json.dumps({"test": test}))
    write_csv(rows, run_dir / "test_per_image.csv")
    return run_dir


def write_grid(root: Path, grid, seeds=(0, 1, 2), models=None, **kwargs) -> list[Path]:
    return [
        write_run(root, grid, model, mode, seed, **kwargs)
        for model in models or grid.models
        for mode in grid.modes
        for seed in seeds
    ]


def markdown_cells(text: str) -> list[list[str]]:
    """The pipe table of a Markdown text as rows of cells (header first, no separator)."""
    rows = [
        [cell.strip() for cell in line.strip()[1:-1].split("|")]
        for line in text.splitlines()
        if line.startswith("|")
    ]
    assert set(rows[1]) == {"---"}
    return [rows[0], *rows[2:]]


# --- grids and the published numbers ---------------------------------------------------------


def test_grids_use_the_trainers_modes_strategies_models_and_metric_names():
    evaluated = {
        "monuseg": set(NUCLEI_METRICS),
        "glas": {"object_f1", "object_dice", "object_hausdorff"},
        "polyp": set(polyp_scores(np.eye(8, dtype=bool), np.eye(8) * 0.9)),
    }
    for name, grid in GRIDS.items():
        assert set(grid.modes) <= set(MODES)
        assert set(grid.strategies) == set(STRATEGIES)
        assert grid.rows[0] == ("raw", "raw")
        assert {m.name for m in grid.metrics} <= evaluated[name]
        # PraNet is registered by the pranet branch; every other model is here already.
        assert set(grid.models) - {"pranet"} <= set(list_models())
    assert GRIDS["monuseg"].main_metric == "aji" and GRIDS["polyp"].main_metric == "mean_dice"
    assert not GRIDS["glas"].metric("object_hausdorff").higher_is_better
    with pytest.raises(
        SettingError, match="TABLE .kvasir.: no such paper table; valid: glas, monuseg, polyp"
    ):
        get_grid("kvasir")


def test_the_paper_file_fits_the_grids_and_names_a_source_for_every_number():
    paper = load_paper()
    seen = set()
    for row in paper.rows:
        grid = GRIDS[row.table]
        assert row.model in grid.models and row.split in grid.splits
        assert set(row.values) <= {m.name for m in grid.metrics}
        assert (
            "53d84a47451a992bbb38d60b884c85a42e2a43dc" in row.source or "2304.11332" in row.source
        )
        assert row.where.startswith("table ")
        assert all(0 < v < 1 for v in row.values.values())
        key = (row.table, row.model, row.split, row.samaug)
        assert key not in seen
        seen.add(key)
    assert len(paper.rows) == 16  # 3 MoNuSeg models and 5 polyp test sets, without and with
    for flag, pair in paper.mapping.items():
        assert pair in GRIDS["monuseg"].rows and pair[0] == ("joint" if flag else "raw")
    assert "OUR mapping" in paper.mapping_note
    assert {(m["table"], m["model"]) for m in paper.missing} == {
        ("monuseg", "swin_unet"),
        ("glas", "unet"),
    }
    assert all(m["reason"] for m in paper.missing)
    # Values as the README prints them, as fractions, beside the mapped rows only.
    assert paper.value("monuseg", "unet", "raw", "raw", "test", "aji") == 0.5836
    assert paper.value("monuseg", "unet", "joint", "select", "test", "pixel_f1") == 0.8256
    assert paper.value("monuseg", "unet", "joint", "samaug", "test", "aji") is None
    assert paper.value("polyp", "pranet", "joint", "select", "Kvasir", "mean_dice") == 0.897
    assert paper.value("polyp", "pranet", "raw", "raw", "ETIS-LaribPolypDB", "s_measure") == 0.761


# --- loading run directories --------------------------------------------------------------------


def test_load_run_reads_what_evaluation_writes(tmp_path):
    grid = GRIDS["monuseg"]
    run_dir = write_run(tmp_path, grid, "pnet", "joint", 4)
    run = load_run(run_dir, grid)
    assert (run.model, run.mode, run.seed, run.run_dir) == ("pnet", "joint", 4, str(run_dir))
    assert set(run.split_scores["test"]) == set(STRATEGIES)  # select_took_samaug is skipped
    expected = np.mean([scores_of(grid, "pnet", "joint", 4, "select", i)["aji"] for i in range(8)])
    assert run.split_scores["test"]["select"]["aji"] == pytest.approx(expected)
    assert len(run.per_image) == 8 * len(STRATEGIES)
    assert run.image_scores("test", "samaug", "pixel_f1")["test_3"] == pytest.approx(
        scores_of(grid, "pnet", "joint", 4, "samaug", 3)["pixel_f1"]
    )


def test_load_errors_name_the_file(tmp_path):
    grid = GRIDS["monuseg"]
    run_dir = write_run(tmp_path, grid, "unet", "raw", 0)
    (run_dir / "metrics.json").rename(run_dir / "metrics.bak")
    with pytest.raises(InputError, match=f"{run_dir / 'metrics.json'}: missing"):
        load_run(run_dir)
    (run_dir / "metrics.bak").rename(run_dir / "metrics.json")

    csv_path = run_dir / "test_per_image.csv"
    original = csv_path.read_text()
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    write_csv([{k: v for k, v in r.items() if k != "aji"} for r in rows], csv_path)
    load_run(run_dir)  # without a grid the columns are not checked
    with pytest.raises(InputError, match=f"{csv_path}: no 'aji' column"):
        load_run(run_dir, grid)
    lines = original.splitlines()
    lines[3] = ",".join([*lines[3].split(",")[:3], "oops", *lines[3].split(",")[4:]])
    csv_path.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match=f"{csv_path}, line 4, aji: expected a number"):
        load_run(run_dir)
    csv_path.write_text(original)

    other = write_run(tmp_path / "b", GRIDS["polyp"], "pranet", "raw", 0)
    with pytest.raises(InputError, match="model 'pranet' is not in the monuseg table"):
        load_run(other, grid)
    metrics = json.loads((other / "metrics.json").read_text())
    metrics["test"]["Kvasir"]["samaug"].pop("mean_iou")  # a raw-trained run's samaug: unused
    metrics["test"]["Kvasir"]["raw"].pop("mean_iou")
    (other / "metrics.json").write_text(json.dumps(metrics))
    with pytest.raises(InputError, match="split 'Kvasir', strategy 'raw' has no mean_iou"):
        load_run(other, GRIDS["polyp"])
    (other / "metrics.json").write_text(json.dumps({"train": {}}))
    with pytest.raises(InputError, match="no test results; evaluate the run first"):
        load_run(other)

    again = write_run(tmp_path / "c", grid, "unet", "raw", 0)
    with pytest.raises(InputError, match="are both model unet, mode raw, seed 0"):
        load_runs([run_dir, again], grid)


# --- tables -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def monuseg(tmp_path_factory):
    """MoNuSeg runs: every model and mode with three seeds, except Swin-UNet with one."""
    grid = GRIDS["monuseg"]
    root = tmp_path_factory.mktemp("monuseg")
    dirs = write_grid(root, grid, models=grid.models[:3])
    dirs += write_grid(root, grid, seeds=(5,), models=("swin_unet",))
    runs = load_runs(dirs, grid)
    return grid, runs, build_table(grid, runs, n_boot=500, seed=1)


def test_table_cells_are_numpys_mean_and_std_over_seeds(monuseg):
    grid, runs, table = monuseg
    assert len(table.rows) == len(grid.models) * len(grid.rows)
    assert [(r.mode, r.strategy) for r in table.rows[:5]] == list(grid.rows)
    for row in table.rows:
        for m in grid.metrics:
            values = [
                r.split_scores["test"][row.strategy][m.name]
                for r in sorted(runs, key=lambda r: r.seed)
                if (r.model, r.mode) == (row.model, row.mode)
            ]
            cell = row.cells[("test", m.name)]
            assert cell.mean == np.mean(values)
            if len(values) > 1 and np.isfinite(values).all():
                assert cell.std == np.std(values, ddof=1)
            else:
                assert math.isnan(cell.std)


def test_an_infinite_value_has_no_spread_and_no_warning():
    import warnings

    from samaug.reproduce.paper_table import Cell

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cell = Cell({0: 3.0, 1: math.inf, 2: 5.0})
        assert cell.mean == math.inf and math.isnan(cell.std)
        assert Cell({0: 3.0, 1: 5.0}).std == np.std([3.0, 5.0], ddof=1)


def test_paper_numbers_land_beside_the_mapped_rows(monuseg):
    _, _, table = monuseg
    paper = {(r.model, r.mode, r.strategy): r.paper for r in table.rows}
    assert paper[("unet", "raw", "raw")] == {("test", "aji"): 0.5836, ("test", "pixel_f1"): 0.757}
    assert paper[("pnet", "joint", "select")] == {
        ("test", "aji"): 0.6398,
        ("test", "pixel_f1"): 0.8256,
    }
    assert paper[("attention_unet", "joint", "select")][("test", "aji")] == 0.6315
    assert paper[("unet", "joint", "ensemble")] == {}
    assert paper[("swin_unet", "raw", "raw")] == {}  # not published where we could read it


def test_comparisons_pair_seed_averaged_images_against_the_baseline(monuseg):
    grid, runs, table = monuseg
    row = next(
        r for r in table.rows if (r.model, r.mode, r.strategy) == ("pnet", "joint", "samaug")
    )

    def averaged(mode, strategy):
        mine = [r for r in runs if (r.model, r.mode) == ("pnet", mode)]
        return {
            f"test_{i}": np.mean(
                [r.image_scores("test", strategy, "aji")[f"test_{i}"] for r in mine]
            )
            for i in range(8)
        }

    expected = paired_comparison(averaged("raw", "raw"), averaged("joint", "samaug"), True, 500, 1)
    got = row.comparisons["test"]
    assert (got.n, got.statistic, got.p_value) == (8, expected.statistic, expected.p_value)
    assert (got.ci_low, got.ci_high) == pytest.approx((expected.ci_low, expected.ci_high))
    assert got.mean_difference == pytest.approx(GAIN["samaug"])
    baseline = next(
        r for r in table.rows if (r.model, r.mode, r.strategy) == ("pnet", "raw", "raw")
    )
    assert baseline.is_baseline and baseline.comparisons == {}


def test_markdown_parses_into_the_expected_cells(monuseg):
    grid, _, table = monuseg
    cells = markdown_cells(to_markdown(table))
    assert cells[0] == [
        "Model", "Trained", "Test-time", "Seeds", "AJI", "AJI (paper)", "Pixel F-score",
        "Pixel F-score (paper)", "Δ AJI [95% CI]", "p",
    ]  # fmt: skip
    body = {tuple(c[:3]): c for c in cells[1:]}
    assert len(body) == len(table.rows)
    row = table.rows[0]  # U-Net, raw, raw
    aji = row.cells[("test", "aji")]
    assert body[("U-Net", "raw", "raw")] == [
        "U-Net", "raw", "raw", "3",
        f"{aji.mean * 100:.2f} ± {aji.std * 100:.2f}", "58.36",
        f"{row.cells[('test', 'pixel_f1')].mean * 100:.2f} ± "
        f"{row.cells[('test', 'pixel_f1')].std * 100:.2f}", "75.70",
        "—", "—",
    ]  # fmt: skip
    select = next(
        r for r in table.rows if (r.model, r.mode, r.strategy) == ("unet", "joint", "select")
    )
    c = select.comparisons["test"]
    line = body[("U-Net", "joint", "select")]
    assert line[5] == "64.30" and line[7] == "82.56"
    assert (
        line[8] == f"{c.mean_difference * 100:+.2f} [{c.ci_low * 100:+.2f}, {c.ci_high * 100:+.2f}]"
    )
    assert line[9] == (f"{c.p_value:.3f}" if c.p_value >= 0.001 else f"{c.p_value:.1e}")
    swin = body[("Swin-UNet", "joint", "samaug")]  # one seed: the mean alone
    assert swin[3] == "1" and "±" not in swin[4] and swin[5] == "—"


def test_csv_holds_every_value_in_full_precision(monuseg, tmp_path):
    grid, _, table = monuseg
    paths = write_table(table, tmp_path / "out")
    assert paths["markdown"].read_text() == to_markdown(table)
    with open(paths["csv"], newline="") as f:
        lines = list(csv.DictReader(f))
    assert len(lines) == len(table.rows)
    for line, row in zip(lines, table.rows, strict=True):
        assert (line["model"], line["trained"], line["strategy"]) == (
            row.model,
            row.mode,
            row.strategy,
        )
        cell = row.cells[("test", "aji")]
        assert float(line["aji_mean"]) == cell.mean
        for seed, value in cell.values.items():
            assert float(line[f"aji_seed{seed}"]) == value
        assert line["aji_std"] == ("" if cell.n == 1 else repr(cell.std))
        assert line["aji_paper"] == (
            "" if ("test", "aji") not in row.paper else repr(row.paper[("test", "aji")])
        )
        c = row.comparisons.get("test")
        if c is None:
            assert line["p_value"] == line["n_images"] == ""
        else:
            assert int(line["n_images"]) == c.n and line["note"] == c.note
            if math.isnan(c.p_value):  # the joint model's raw strategy: every difference is 0
                assert row.strategy == "raw" and line["p_value"] == ""
            else:
                assert float(line["p_value"]) == c.p_value
            assert (
                float(line["ci_low"]) == c.ci_low
                and float(line["mean_difference"]) == c.mean_difference
            )


def test_glas_puts_the_test_parts_in_columns_and_polyp_in_rows(tmp_path):
    glas = GRIDS["glas"]
    table = build_table(glas, load_runs(write_grid(tmp_path / "g", glas, seeds=(0, 1)), glas), 200)
    cells = markdown_cells(to_markdown(table))
    assert cells[0][4:] == [
        "Object F1 testA", "Object Dice testA", "Object Hausdorff testA",
        "Object F1 testB", "Object Dice testB", "Object Hausdorff testB",
        "Δ Object Dice testA [95% CI]", "p testA", "Δ Object Dice testB [95% CI]", "p testB",
    ]  # fmt: skip
    assert len(cells) == 1 + len(glas.rows)
    hausdorff = table.rows[0].cells[("testB", "object_hausdorff")]
    assert cells[1][9] == f"{hausdorff.mean:.2f} ± {hausdorff.std:.2f}"
    assert set(table.rows[1].comparisons) == {"testA", "testB"}
    assert "lower is better for Object Hausdorff" in to_markdown(table)

    polyp = GRIDS["polyp"]
    table = build_table(polyp, load_runs(write_grid(tmp_path / "p", polyp, seeds=(0,)), polyp), 200)
    cells = markdown_cells(to_markdown(table))
    assert cells[0][:2] == ["Test set", "Model"] and "Sm (paper)" in cells[0]
    assert len(cells) == 1 + len(polyp.splits) * len(polyp.rows)
    kvasir = [c for c in cells[1:] if c[0] == "Kvasir"]
    column = cells[0].index("meanDic (paper)")
    assert [c[column] for c in kvasir] == ["85.4", "—", "—", "—", "89.7"]
    assert len(list(csv.DictReader(io.StringIO(to_csv(table))))) == len(table.rows)


def test_a_grid_still_running_shows_its_rows_and_runs_must_share_splits_and_images(tmp_path):
    grid = GRIDS["monuseg"]
    dirs_monuseg = [write_run(tmp_path, grid, "unet", mode, 0) for mode in ("raw", "joint")]
    dirs_monuseg.append(write_run(tmp_path, grid, "pnet", "joint", 0))  # no baseline yet
    table = build_table(grid, load_runs(dirs_monuseg, grid), n_boot=100)
    body = {tuple(c[:3]): c for c in markdown_cells(to_markdown(table))[1:]}
    assert body[("Attention U-Net", "raw", "raw")][3:6] == ["—", "—", "58.76"]
    assert body[("P-Net", "joint", "select")][8:] == ["—", "—"]
    assert "±" not in body[("U-Net", "joint", "select")][4]

    polyp = GRIDS["polyp"]
    dirs = [
        write_run(tmp_path / "a", polyp, "pranet", "raw", 0),
        write_run(tmp_path / "b", polyp, "pranet", "joint", 0, splits=("Kvasir",)),
    ]
    with pytest.raises(InputError, match="not evaluated on CVC-ClinicDB, CVC-300"):
        build_table(polyp, load_runs(dirs, polyp))

    fewer = write_run(tmp_path / "c", grid, "pnet", "raw", 0, images=7)
    csv_path = fewer / "test_per_image.csv"
    with pytest.raises(InputError, match=f"{csv_path}: split 'test', strategy 'raw' has 7 images"):
        build_table(grid, load_runs([*dirs_monuseg, fewer], grid))


# --- the figure ---------------------------------------------------------------------------------


def colour_pixels(png: Path, colour: str) -> np.ndarray:
    rgb = np.array(Image.open(png).convert("RGB")).astype(int)
    target = np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)])
    return np.abs(rgb - target).sum(axis=2) <= 12


def test_figure_draws_one_lane_per_comparison_and_the_zero_line(monuseg, tmp_path):
    _, _, table = monuseg
    out = write_figure(table, tmp_path / "fig" / "monuseg.png")
    lanes = sum(len(r.comparisons) for r in table.rows)
    assert lanes == 16
    with Image.open(out) as image:
        assert image.size == (
            round(FIGURE_WIDTH * FIGURE_DPI),
            round(figure_height(lanes) * FIGURE_DPI),
        )
    zero = colour_pixels(out, ZERO_COLOUR)
    assert zero.sum(axis=0).max() > 0.6 * zero.shape[0]  # a vertical line down the plot
    zero_x = int(zero.sum(axis=0).argmax())
    _, dots_x = np.nonzero(colour_pixels(out, POINT_COLOUR))
    assert dots_x.size > lanes * 40  # the dots of 8 images a lane, some overlapping
    # 12 of the 16 lanes are gains of 2.5 to 7.5 points: most dots lie right of the zero line.
    assert (dots_x > zero_x + 100).mean() > 0.6


def test_figure_without_comparisons_says_so(tmp_path):
    grid = GRIDS["monuseg"]
    table = build_table(grid, [load_run(write_run(tmp_path, grid, "unet", "raw", 0), grid)], 10)
    out = write_figure(table, tmp_path / "empty.png")
    assert Image.open(out).size == (800, round(figure_height(0) * FIGURE_DPI))
    assert colour_pixels(out, POINT_COLOUR).sum() == 0
    assert (np.array(Image.open(out).convert("L")) < 128).sum() > 100  # the title and the text
