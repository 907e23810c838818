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

# testA holds enough images for the statistics (stats.MIN_IMAGES), testB too few.
pytestmark = pytest.mark.glas_counts(train=4, testA=10, testB=2)


def settings(store, out, **overrides) -> ReproduceSettings:
    values = dict(
        table="glas",
        store=str(store),
        out=str(out),
        seeds=2,
        epochs=1,
        samples_per_epoch=4,
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
    arms = ("raw", "raw_x2", "joint")
    runs = [out / "runs" / f"unet-{arm}-{seed}" for arm in arms for seed in (0, 1)]
    assert first["runs"] == [str(r) for r in runs]
    assert (first["trained"], first["evaluated"]) == (6, 6)
    for run in runs:
        config = json.loads((run / "config.json").read_text())
        assert (config["epochs"], config["samples_per_epoch"], config["protocol"]) == (
            1,
            4,
            "patches",
        )
        assert config["joint_update"] == "step"
        # raw_x2: a raw run with the joint run's optimizer steps, the same batches.
        steps = json.loads((run / "metrics.json").read_text())["train"]["steps"]
        assert (config["mode"], config["steps_per_batch"], steps) == {
            "raw": ("raw", 1, 1),
            "raw_x2": ("raw", 2, 2),
            "joint": ("joint", 1, 2),
        }[run.name.rsplit("-", 2)[1]]

    # The table: per row and split, mean and std over the two seeds of metrics.json's values.
    with open(first["csv"]) as f:
        table = list(csv.DictReader(f))
    assert [(r["trained"], r["strategy"]) for r in table if r["split"] == "testA"] == [
        ("raw", "raw"),
        ("raw_x2", "raw"),
        ("joint", "raw"),
        ("joint", "samaug"),
        ("joint", "ensemble"),
        ("joint", "select"),
    ]
    assert {r["split"] for r in table} == {"testA", "testB"}
    for row in table:
        arm, split, strategy = row["trained"], row["split"], row["strategy"]
        values = [
            json.loads((out / "runs" / f"unet-{arm}-{s}" / "metrics.json").read_text())["test"][
                split
            ][strategy]["object_dice"]
            for s in (0, 1)
        ]
        assert row["length"] == "short"  # 1 of the recipe's 100 epochs: a smoke run
        assert float(row["object_dice_mean"]) == pytest.approx(np.mean(values), abs=1e-12)
        assert float(row["object_dice_std"]) == pytest.approx(np.std(values, ddof=1), abs=1e-12)
        assert row["seeds"] == "0;1"

    # The statistics: each image averaged over seeds, joint/select against raw/raw (the
    # paper's) and raw_x2/raw (the fair one), the Wilcoxon p-value as scipy computes it, the
    # interval around the mean difference; testB's 2 images are too few for either.
    for split, reference in (("testA", "raw"), ("testA", "raw_x2"), ("testB", "raw")):
        row = next(r for r in table if r["split"] == split and r["strategy"] == "select")
        stat = f"vs_{reference}_" + "{}"
        base = [per_image(out / "runs" / f"unet-{reference}-{s}", split, "raw") for s in (0, 1)]
        other = [per_image(out / "runs" / f"unet-joint-{s}", split, "select") for s in (0, 1)]
        images = sorted(base[0])
        diff = np.array(
            [np.mean([o[i] for o in other]) - np.mean([b[i] for b in base]) for i in images]
        )
        finite = np.isfinite(diff)
        assert int(row[stat.format("n_images")]) == finite.sum()
        assert int(row[stat.format("n_excluded")]) == (~finite).sum()
        mean = float(row[stat.format("mean_difference")])
        assert mean == pytest.approx(diff[finite].mean(), abs=1e-12)
        if split == "testB":
            assert row[stat.format("p_value")] == row[stat.format("ci_low")] == ""
            continue
        if np.any(diff[finite]):
            assert float(row[stat.format("p_value")]) == pytest.approx(
                wilcoxon(diff[finite]).pvalue
            )
        assert float(row[stat.format("ci_low")]) <= mean <= float(row[stat.format("ci_high")])
    markdown = Path(first["markdown"]).read_text()
    assert markdown.startswith("## GlaS (glands)\n\n**Smoke run:")
    assert "| U-Net | joint | select | 0, 1 | short |" in markdown
    assert f"- Store: {glas_store} (glas); masker: superpixel." in markdown
    figure = Image.open(first["figure"])
    # Per split: raw_x2 vs raw, the 4 joint rows vs raw and vs raw_x2.
    assert figure.size[1] == round(figure_height(2 * 9) * 100)

    # Again: nothing is trained or evaluated, the table is the same.
    before = mtimes(out)
    again = reproduce(settings(glas_store, out), log=lines.append)
    assert (again["trained"], again["evaluated"]) == (0, 0)
    assert mtimes(out) == before
    assert Path(again["csv"]).read_text() == Path(first["csv"]).read_text()

    # A lost run is trained and evaluated again, and only it; CPU runs repeat exactly.
    shutil.rmtree(runs[5])
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
    # Every model is built with its options before the first run: Swin-UNet's width must
    # divide among its heads; a per-model option reaches that model only.
    no_weights = dict(table="monuseg", pretrained={"swin_unet": "none"})
    narrow = settings(glas_store, tmp_path / "n", **no_weights)
    with pytest.raises(SettingError, match=r"^swin_unet: .* \(--model-option\)$"):
        plan_runs(narrow)
    wide = settings(
        glas_store,
        tmp_path / "n",
        **no_weights,
        model_kwargs={"base_channels": 4, "swin_unet.base_channels": 24},
    )
    configs = plan_runs(wide)
    by_model = {c.model: c.model_kwargs["base_channels"] for c in configs}
    assert by_model == {"unet": 4, "pnet": 4, "attention_unet": 4, "swin_unet": 24}
    with pytest.raises(SettingError, match="--model-option hsnet.x: hsnet is not a model"):
        settings(glas_store, tmp_path, model_kwargs={"hsnet.x": 1})
    assert not (tmp_path / "n").exists()
