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
from samaug.reproduce.grids import ARMS
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


def scores_of(grid, model, arm, seed, strategy, image):
    """A deterministic synthetic score per metric: a per-image level, a seed wobble, and the
    joint model's gain for strategies that use the priors (varying by image, mean GAIN over
    images 0..7). The joint model's raw strategy scores exactly as the baseline."""
    level = 0.5 + 0.02 * (image % 7) + 0.003 * seed
    if ARMS[arm].mode == "joint" and strategy != "raw":
        level += GAIN[strategy] + 0.01 * ((image % 4) - 1.5)
    wobble = 0.004 * ((image * 31 + seed * 17) % 5)
    return {m.name: level + 0.01 * k + wobble for k, m in enumerate(grid.metrics)}


def write_run(root: Path, grid, model, arm, seed, images=12, splits=None, **config) -> Path:
    """A run directory as train + eval leave it: config.json (TrainConfig.save, resolved as
    a run saves it; ``config``: other settings), metrics.json ("train" with its optimizer
    steps, "test" from the task aggregation, plus select_took_samaug) and test_per_image.csv
    (train.results.tables.write_csv)."""
    run_dir = root / f"{model}-{arm}-{seed}"
    run_dir.mkdir(parents=True)
    mode, steps = ARMS[arm].mode, ARMS[arm].steps_per_batch
    TrainConfig(
        store="x.zarr",
        model=model,
        mode=mode,
        steps_per_batch=steps,
        seed=seed,
        out=str(run_dir),
        **config,
    ).resolve(grid.dataset).save(run_dir / "config.json")
    rows = [
        {
            "split": split,
            "image_id": f"{split}_{i}",
            "strategy": strategy,
            **scores_of(grid, model, arm, seed, strategy, i),
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
    train = {"steps": 1000 * (2 if mode == "joint" or steps == 2 else 1)}
    (run_dir / "metrics.json").write_text(json.dumps({"train": train, "test": test}))
    write_csv(rows, run_dir / "test_per_image.csv")
    return run_dir


def write_grid(root: Path, grid, seeds=(0, 1, 2), models=None, **kwargs) -> list[Path]:
    return [
        write_run(root, grid, model, arm, seed, **kwargs)
        for model in models or grid.models
        for arm in grid.arms
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
        assert {ARMS[arm].mode for arm in grid.arms} <= set(MODES)
        assert set(grid.strategies) == set(STRATEGIES)
        assert grid.rows[:2] == (("raw", "raw"), ("raw_x2", "raw"))
        # The compute-matched baseline: raw input, a joint run's two optimizer steps a batch.
        assert (ARMS["raw_x2"].mode, ARMS["raw_x2"].steps_per_batch) == ("raw", 2)
        assert grid.references(("joint", "select")) == (("raw", "raw"), ("raw_x2", "raw"))
        assert grid.references(("raw_x2", "raw")) == (("raw", "raw"),)
        assert grid.references(("raw", "raw")) == ()
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
    assert (run.model, run.arm, run.seed, run.run_dir) == ("pnet", "joint", 4, str(run_dir))
    assert run.length.describe() == "100 of 100 epochs, 2000 optimizer steps"
    assert not run.length.short
    matched = load_run(write_run(tmp_path, grid, "pnet", "raw_x2", 4), grid)
    assert matched.arm == "raw_x2"  # mode raw, two steps a batch
    assert set(run.split_scores["test"]) == set(STRATEGIES)  # select_took_samaug is skipped
    expected = np.mean([scores_of(grid, "pnet", "joint", 4, "select", i)["aji"] for i in range(12)])
    assert run.split_scores["test"]["select"]["aji"] == pytest.approx(expected)
    assert len(run.per_image) == 12 * len(STRATEGIES)
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
    with pytest.raises(InputError, match="are both model unet, arm raw, seed 0"):
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
    assert [(r.arm, r.strategy) for r in table.rows[:6]] == list(grid.rows)
    for row in table.rows:
        for m in grid.metrics:
            values = [
                r.split_scores["test"][row.strategy][m.name]
                for r in sorted(runs, key=lambda r: r.seed)
                if (r.model, r.arm) == (row.model, row.arm)
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
    paper = {(r.model, r.arm, r.strategy): r.paper for r in table.rows}
    assert paper[("unet", "raw", "raw")] == {("test", "aji"): 0.5836, ("test", "pixel_f1"): 0.757}
    assert paper[("pnet", "joint", "select")] == {
        ("test", "aji"): 0.6398,
        ("test", "pixel_f1"): 0.8256,
    }
    assert paper[("attention_unet", "joint", "select")][("test", "aji")] == 0.6315
    assert paper[("unet", "joint", "ensemble")] == {}
    assert paper[("unet", "raw_x2", "raw")] == {}  # ours: the paper has no such baseline
    assert paper[("swin_unet", "raw", "raw")] == {}  # not published where we could read it


def test_comparisons_pair_seed_averaged_images_against_the_baseline(monuseg):
    grid, runs, table = monuseg
    row = next(r for r in table.rows if (r.model, r.arm, r.strategy) == ("pnet", "joint", "samaug"))

    def averaged(arm, strategy):
        mine = [r for r in runs if (r.model, r.arm) == ("pnet", arm)]
        return {
            f"test_{i}": np.mean(
                [r.image_scores("test", strategy, "aji")[f"test_{i}"] for r in mine]
            )
            for i in range(12)
        }

    expected = paired_comparison(averaged("raw", "raw"), averaged("joint", "samaug"), True, 500, 1)
    got = row.comparisons["raw"]["test"]
    assert (got.n, got.statistic, got.p_value) == (12, expected.statistic, expected.p_value)
    assert (got.ci_low, got.ci_high) == pytest.approx((expected.ci_low, expected.ci_high))
    assert got.mean_difference == pytest.approx(GAIN["samaug"])
    baseline = next(r for r in table.rows if (r.model, r.arm, r.strategy) == ("pnet", "raw", "raw"))
    assert baseline.is_baseline and baseline.comparisons == {}


def test_markdown_parses_into_the_expected_cells(monuseg):
    grid, _, table = monuseg
    cells = markdown_cells(to_markdown(table))
    assert cells[0] == [
        "Model", "Trained", "Test-time", "Seeds", "Run", "AJI", "AJI (paper)", "Pixel F-score",
        "Pixel F-score (paper)", "Δ AJI vs raw [95% CI]", "p vs raw",
        "Δ AJI vs raw_x2 [95% CI]", "p vs raw_x2",
    ]  # fmt: skip
    body = {tuple(c[:3]): c for c in cells[1:]}
    assert len(body) == len(table.rows)
    row = table.rows[0]  # U-Net, raw, raw
    aji = row.cells[("test", "aji")]
    assert body[("U-Net", "raw", "raw")] == [
        "U-Net", "raw", "raw", "0, 1, 2", "full",
        f"{aji.mean * 100:.2f} ± {aji.std * 100:.2f}", "58.36",
        f"{row.cells[('test', 'pixel_f1')].mean * 100:.2f} ± "
        f"{row.cells[('test', 'pixel_f1')].std * 100:.2f}", "75.70",
        "—", "—", "—", "—",
    ]  # fmt: skip
    select = next(
        r for r in table.rows if (r.model, r.arm, r.strategy) == ("unet", "joint", "select")
    )
    line = body[("U-Net", "joint", "select")]
    assert line[6] == "64.30" and line[8] == "82.56"
    for at, reference in ((9, "raw"), (11, "raw_x2")):  # the paper's comparison, the fair one
        c = select.comparisons[reference]["test"]
        low, high = c.ci_low * 100, c.ci_high * 100
        assert line[at] == f"{c.mean_difference * 100:+.2f} [{low:+.2f}, {high:+.2f}]"
        assert line[at + 1] == (f"{c.p_value:.3f}" if c.p_value >= 0.001 else f"{c.p_value:.1e}")
    matched = body[("U-Net", "raw_x2", "raw")]  # compared with the baseline only
    assert matched[9] != "—" and matched[11:] == ["—", "—"]
    swin = body[("Swin-UNet", "joint", "samaug")]  # one seed: the mean alone
    assert swin[3] == "5" and "±" not in swin[5] and swin[6] == "—"
    text = to_markdown(table)
    assert "- Seeds: 0, 1, 2, 5." in text and "Smoke run" not in text
    assert "- U-Net raw_x2: trained 100 of 100 epochs, 2000 optimizer steps." in text
    assert "the fair comparison" in text


def test_csv_holds_every_value_in_full_precision(monuseg, tmp_path):
    grid, _, table = monuseg
    paths = write_table(table, tmp_path / "out")
    assert paths["markdown"].read_text() == to_markdown(table)
    with open(paths["csv"], newline="") as f:
        lines = list(csv.DictReader(f))
    assert len(lines) == len(table.rows)
    for line, row in zip(lines, table.rows, strict=True):
        assert (line["model"], line["trained"], line["strategy"], line["length"]) == (
            row.model,
            row.arm,
            row.strategy,
            "full",
        )
        cell = row.cells[("test", "aji")]
        assert float(line["aji_mean"]) == cell.mean
        for seed, value in cell.values.items():
            assert float(line[f"aji_seed{seed}"]) == value
        assert line["aji_std"] == ("" if cell.n == 1 else repr(cell.std))
        assert line["aji_paper"] == (
            "" if ("test", "aji") not in row.paper else repr(row.paper[("test", "aji")])
        )
        for reference in ("raw", "raw_x2"):
            c = row.comparisons.get(reference, {}).get("test")
            field = f"vs_{reference}_" + "{}"
            if c is None:
                assert line[field.format("p_value")] == line[field.format("n_images")] == ""
                continue
            assert int(line[field.format("n_images")]) == c.n
            assert line[field.format("note")] == c.note
            if math.isnan(c.p_value):  # the joint model's raw strategy: every difference is 0
                assert row.strategy == "raw" and line[field.format("p_value")] == ""
            else:
                assert float(line[field.format("p_value")]) == c.p_value
            assert float(line[field.format("ci_low")]) == c.ci_low
            assert float(line[field.format("mean_difference")]) == c.mean_difference


def test_glas_puts_the_test_parts_in_columns_and_polyp_in_rows(tmp_path):
    glas = GRIDS["glas"]
    table = build_table(glas, load_runs(write_grid(tmp_path / "g", glas, seeds=(0, 1)), glas), 200)
    cells = markdown_cells(to_markdown(table))
    assert cells[0][5:] == [
        "Object F1 testA", "Object Dice testA", "Object Hausdorff testA",
        "Object F1 testB", "Object Dice testB", "Object Hausdorff testB",
        "Δ Object Dice vs raw testA [95% CI]", "p vs raw testA",
        "Δ Object Dice vs raw_x2 testA [95% CI]", "p vs raw_x2 testA",
        "Δ Object Dice vs raw testB [95% CI]", "p vs raw testB",
        "Δ Object Dice vs raw_x2 testB [95% CI]", "p vs raw_x2 testB",
    ]  # fmt: skip
    assert len(cells) == 1 + len(glas.rows)
    hausdorff = table.rows[0].cells[("testB", "object_hausdorff")]
    assert cells[1][10] == f"{hausdorff.mean:.2f} ± {hausdorff.std:.2f}"
    assert set(table.rows[2].comparisons["raw"]) == {"testA", "testB"}
    assert "lower is better for Object Hausdorff" in to_markdown(table)

    polyp = GRIDS["polyp"]
    table = build_table(polyp, load_runs(write_grid(tmp_path / "p", polyp, seeds=(0,)), polyp), 200)
    cells = markdown_cells(to_markdown(table))
    assert cells[0][:2] == ["Test set", "Model"] and "Sm (paper)" in cells[0]
    assert len(cells) == 1 + len(polyp.splits) * len(polyp.rows)
    kvasir = [c for c in cells[1:] if c[0] == "Kvasir"]
    column = cells[0].index("meanDic (paper)")
    assert [c[column] for c in kvasir] == ["85.4", "—", "—", "—", "—", "89.7"]
    assert len(list(csv.DictReader(io.StringIO(to_csv(table))))) == len(table.rows)


def test_a_grid_still_running_shows_its_rows_and_runs_must_share_splits_and_images(tmp_path):
    grid = GRIDS["monuseg"]
    dirs_monuseg = [write_run(tmp_path, grid, "unet", arm, 0) for arm in ("raw", "joint")]
    dirs_monuseg.append(write_run(tmp_path, grid, "pnet", "joint", 0))  # no baseline yet
    table = build_table(grid, load_runs(dirs_monuseg, grid), n_boot=100)
    body = {tuple(c[:3]): c for c in markdown_cells(to_markdown(table))[1:]}
    assert body[("Attention U-Net", "raw", "raw")][3:7] == ["—", "—", "—", "58.76"]
    assert body[("P-Net", "joint", "select")][9:] == ["—", "—"]  # no raw_x2 runs: no columns
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


def test_a_smoke_run_says_so_on_every_row_and_gives_no_statistics(tmp_path):
    grid = GRIDS["monuseg"]
    short = dict(epochs=1, samples_per_epoch=4)
    dirs = [write_run(tmp_path, grid, "unet", a, s, 2, **short) for a in grid.arms for s in (0, 1)]
    table = build_table(grid, load_runs(dirs, grid), n_boot=100)
    assert table.short and all(row.short for row in table.rows if row.seeds)
    text = to_markdown(table)
    assert text.splitlines()[2].startswith("**Smoke run:")
    assert "- U-Net joint: trained 1 of 100 epochs, 4 items/epoch, 2000 optimizer steps." in text
    body = {tuple(c[:3]): c for c in markdown_cells(text)[1:]}
    select = body[("U-Net", "joint", "select")]
    no_ci = "+5.00 (n=2: no CI)"  # the mean difference alone, no interval, no p
    assert select[4] == "short" and select[9:] == [no_ci, "n/a", no_ci, "n/a"]
    comparison = next(r for r in table.rows if r.strategy == "select").comparisons["raw"]["test"]
    assert comparison.n == 2 and math.isnan(comparison.p_value) and math.isnan(comparison.ci_low)
    assert "2 paired image(s), below 10: no test or interval" in text
    lines = list(csv.DictReader(io.StringIO(to_csv(table))))
    assert {line["length"] for line in lines if line["seeds"]} == {"short"}
    assert all(line["vs_raw_p_value"] == "" for line in lines)
    from samaug.reproduce.plots import write_figure as draw

    draw(table, tmp_path / "smoke.png")  # the title says SMOKE RUN (drawn, not read back)


# --- the figure ---------------------------------------------------------------------------------


def colour_pixels(png: Path, colour: str) -> np.ndarray:
    rgb = np.array(Image.open(png).convert("RGB")).astype(int)
    target = np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)])
    return np.abs(rgb - target).sum(axis=2) <= 12


def test_figure_draws_one_lane_per_comparison_and_the_zero_line(monuseg, tmp_path):
    _, _, table = monuseg
    out = write_figure(table, tmp_path / "fig" / "monuseg.png")
    lanes = sum(len(by_split) for r in table.rows for by_split in r.comparisons.values())
    assert lanes == 4 * (1 + 4 + 4)  # per model: raw_x2 and joint vs raw, joint vs raw_x2
    with Image.open(out) as image:
        assert image.size == (
            round(FIGURE_WIDTH * FIGURE_DPI),
            round(figure_height(lanes) * FIGURE_DPI),
        )
    zero = colour_pixels(out, ZERO_COLOUR)
    assert zero.sum(axis=0).max() > 0.6 * zero.shape[0]  # a vertical line down the plot
    zero_x = int(zero.sum(axis=0).argmax())
    _, dots_x = np.nonzero(colour_pixels(out, POINT_COLOUR))
    assert dots_x.size > lanes * 40  # the dots of 12 images a lane, some overlapping
    # 12 of the 16 lanes are gains of 2.5 to 7.5 points: most dots lie right of the zero line.
    assert (dots_x > zero_x + 100).mean() > 0.6


def test_figure_without_comparisons_says_so(tmp_path):
    grid = GRIDS["monuseg"]
    table = build_table(grid, [load_run(write_run(tmp_path, grid, "unet", "raw", 0), grid)], 10)
    out = write_figure(table, tmp_path / "empty.png")
    assert Image.open(out).size == (800, round(figure_height(0) * FIGURE_DPI))
    assert colour_pixels(out, POINT_COLOUR).sum() == 0
    assert (np.array(Image.open(out).convert("L")) < 128).sum() > 100  # the title and the text
