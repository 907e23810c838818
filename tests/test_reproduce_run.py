"""``samaug reproduce`` end to end on a tiny synthetic GlaS store: 1 epoch, 2 seeds, the table
against the runs' own files, the statistics against scipy, and resumption run by run."""

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.stats import wilcoxon

from precompute.types import SettingError
from samaug.reproduce.driver import ReproduceSettings, plan_runs, reproduce
from samaug.reproduce.plots import figure_height
from tests.support.cli import one_error_line, samaug

pytestmark = pytest.mark.glas_counts(train=4, testA=3, testB=2)


def settings(store, out, **overrides) -> ReproduceSettings:
    values = dict(
        table="glas",
        store=str(store),
        out=str(out),
        seeds=2,
        epochs=1,
        budget=4,
        device="cpu",
        workers=0,
        model_kwargs={"base_channels": 4},
        train_options={"patch_size": 64, "batch_size": 4},
        n_boot=500,
    )
    return ReproduceSettings(**{**values, **overrides})


def per_image(run_dir: Path, split: str, strategy: str) -> dict[str, float]:
    with open(run_dir / "test_per_image.csv") as f:
        return {
            r["image_id"]: float(r["object_dice"])
            for r in csv.DictReader(f)
            if r["split"] == split and r["strategy"] == strategy
        }


def mtimes(out: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in sorted((out / "runs").glob("*/last.pt"))}


def test_reproduce_runs_the_grid_writes_the_table_and_resumes(glas_store, tmp_path):
    out = tmp_path / "glas"
    lines: list[str] = []
    first = reproduce(settings(glas_store, out), log=lines.append)
    runs = [out / "runs" / f"unet-{mode}-{seed}" for mode in ("raw", "joint") for seed in (0, 1)]
    assert first["runs"] == [str(r) for r in runs]
    assert (first["trained"], first["evaluated"]) == (4, 4)
    for run in runs:
        config = json.loads((run / "config.json").read_text())
        assert (config["epochs"], config["samples_per_epoch"], config["protocol"]) == (
            1,
            4,
            "patches",
        )
        assert config["joint_update"] == "step"

    # The table: per row and split, mean and std over the two seeds of metrics.json's values.
    with open(first["csv"]) as f:
        table = list(csv.DictReader(f))
    assert [(r["trained"], r["strategy"]) for r in table if r["split"] == "testA"] == [
        ("raw", "raw"),
        ("joint", "raw"),
        ("joint", "samaug"),
        ("joint", "ensemble"),
        ("joint", "select"),
    ]
    assert {r["split"] for r in table} == {"testA", "testB"}
    for row in table:
        mode, split, strategy = row["trained"], row["split"], row["strategy"]
        values = [
            json.loads((out / "runs" / f"unet-{mode}-{s}" / "metrics.json").read_text())["test"][
                split
            ][strategy]["object_dice"]
            for s in (0, 1)
        ]
        assert float(row["object_dice_mean"]) == pytest.approx(np.mean(values), abs=1e-12)
        assert float(row["object_dice_std"]) == pytest.approx(np.std(values, ddof=1), abs=1e-12)
        assert row["seeds"] == "0;1"

    # The statistics: each image averaged over seeds, joint/select against raw/raw, the
    # Wilcoxon p-value as scipy computes it, the interval around the mean difference.
    for split in ("testA", "testB"):
        row = next(r for r in table if r["split"] == split and r["strategy"] == "select")
        base = [per_image(out / "runs" / f"unet-raw-{s}", split, "raw") for s in (0, 1)]
        other = [per_image(out / "runs" / f"unet-joint-{s}", split, "select") for s in (0, 1)]
        images = sorted(base[0])
        diff = np.array(
            [np.mean([o[i] for o in other]) - np.mean([b[i] for b in base]) for i in images]
        )
        finite = np.isfinite(diff)
        assert int(row["n_images"]) == finite.sum() and int(row["n_excluded"]) == (~finite).sum()
        assert float(row["mean_difference"]) == pytest.approx(diff[finite].mean(), abs=1e-12)
        if np.any(diff[finite]):
            assert float(row["p_value"]) == pytest.approx(wilcoxon(diff[finite]).pvalue)
        assert float(row["ci_low"]) <= float(row["mean_difference"]) <= float(row["ci_high"])
    markdown = Path(first["markdown"]).read_text()
    assert markdown.startswith("## GlaS (glands)") and "| U-Net | joint | select | 2 |" in markdown
    figure = Image.open(first["figure"])
    assert figure.size[1] == round(figure_height(2 * 4) * 100)  # 4 comparisons x 2 splits

    # Again: nothing is trained or evaluated, the table is the same.
    before = mtimes(out)
    again = reproduce(settings(glas_store, out), log=lines.append)
    assert (again["trained"], again["evaluated"]) == (0, 0)
    assert mtimes(out) == before
    assert Path(again["csv"]).read_text() == Path(first["csv"]).read_text()

    # A lost run is trained and evaluated again, and only it; CPU runs repeat exactly.
    shutil.rmtree(runs[3])
    (runs[0] / "test_per_image.csv").unlink()
    resumed = reproduce(settings(glas_store, out), log=lines.append)
    assert (resumed["trained"], resumed["evaluated"]) == (1, 2)
    assert {k: v for k, v in mtimes(out).items() if "joint-1" not in k} == {
        k: v for k, v in before.items() if "joint-1" not in k
    }
    assert Path(resumed["csv"]).read_text() == Path(first["csv"]).read_text()


def test_reproduce_checks_everything_before_the_first_run(glas_store, tmp_path):
    with pytest.raises(
        SettingError, match="TABLE 'kvasir': no such paper table; valid: glas, monuseg, polyp"
    ):
        settings(glas_store, tmp_path, table="kvasir")
    with pytest.raises(SettingError, match="--seeds must be at least 1"):
        settings(glas_store, tmp_path, seeds=0)
    with pytest.raises(SettingError, match="--train-option seed: not a training setting"):
        settings(glas_store, tmp_path, train_options={"seed": 3})
    with pytest.raises(SettingError, match="is a 'glas' store; the monuseg table"):
        reproduce(settings(glas_store, tmp_path / "m", table="monuseg"))
    monuseg = settings(glas_store, tmp_path / "m", table="monuseg", weights_dir=str(tmp_path))
    with pytest.raises(SettingError, match=r"swin_tiny_patch4_window7_224.pth: no such file"):
        plan_runs(monuseg)
    assert not (tmp_path / "m").exists()
    result = samaug("reproduce", "glas", "--store", str(glas_store), "--seeds", "0")
    assert "--seeds must be at least 1, not 0" in one_error_line(result)
