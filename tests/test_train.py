"""Training and evaluation end to end on a small synthetic store (superpixel priors).

The run directory's robustness (kills, damaged and unsafe checkpoints, resuming, option
errors) is tested in test_train_runs.py.
"""

import csv
import json
import os
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
import torch

from precompute.pipeline import PriorsConfig, run
from tests.support.cli import ROOT, samaug
from tests.support.train_helpers import checkpoint, tiny, write_pranet_like
from train.choices import STRATEGIES
from train.metrics import GlasParts, glas_pooled
from train.results.evaluation import evaluate_run
from train.results.tables import comparison_rows, format_table
from train.training.loop import train


def weights(run_dir, name="last.pt") -> dict:
    return checkpoint(run_dir, name)["model"]


def test_short_training_learns(glas_store, tmp_path):
    config = tiny(
        glas_store,
        tmp_path / "run",
        epochs=25,
        samples_per_epoch=24,
        batch_size=8,
        model_kwargs={"base_channels": 8},
    )
    summary = train(config, log=lambda line: None)
    assert summary["best_val_dice"] > 0.8
    rows = (tmp_path / "run" / "log.csv").read_text().splitlines()
    header = "epoch,step,lr,train_loss,val_dice,val_raw,val_samaug,val_ensemble,val_select,seconds"
    assert rows[0] == header and len(rows) == 26
    # A samaug run serves (and validates) the samaug strategy only.
    cells = [row.split(",") for row in rows[1:]]
    assert all(c[4] == c[6] and c[5] == c[7] == c[8] == "" for c in cells)
    first, last = float(rows[1].split(",")[3]), float(rows[-1].split(",")[3])
    assert last < first / 2
    state = checkpoint(tmp_path / "run", "best.pt")
    assert state["config"] == config.resolve("glas").to_dict()
    assert state["store"]["masker"]["kind"] == "superpixel"
    assert state["task"] == "glands" and state["num_outputs"] == 3
    # best.pt is the epoch of the best validation Dice, as the log records it.
    dice = [float(row.split(",")[4]) for row in rows[1:]]
    # Epochs in log.csv and metrics.json count from 1, the checkpoint's index from 0.
    assert [row.split(",")[0] for row in rows[1:]] == [str(e) for e in range(1, 26)]
    assert state["epoch"] + 1 == summary["best_epoch"] == int(np.argmax(dice)) + 1
    assert summary["best_val_dice"] == pytest.approx(max(dice), abs=1e-6)


def test_cpu_runs_repeat_and_resume_equals_uninterrupted(glas_store, tmp_path):
    train(tiny(glas_store, tmp_path / "a", epochs=3), log=lambda line: None)
    train(tiny(glas_store, tmp_path / "b", epochs=3), log=lambda line: None)
    a, b = weights(tmp_path / "a"), weights(tmp_path / "b")
    assert all(torch.equal(a[k], b[k]) for k in a)
    train(tiny(glas_store, tmp_path / "c", epochs=3), log=lambda line: None, stop_after=1)
    assert checkpoint(tmp_path / "c")["epoch"] == 0
    train(tiny(glas_store, tmp_path / "c", epochs=3), log=lambda line: None)
    c = weights(tmp_path / "c")
    assert all(torch.equal(a[k], c[k]) for k in a)
    assert len((tmp_path / "c" / "log.csv").read_text().splitlines()) == 4


@pytest.mark.parametrize("mode,fusion", [("raw", "add"), ("joint", "add"), ("samaug", "concat")])
def test_modes_and_fusions_train(glas_store, tmp_path, mode, fusion):
    summary = train(
        tiny(glas_store, tmp_path / "r", mode=mode, fusion=fusion, epochs=1), log=lambda line: None
    )
    assert summary["steps"] == (4 if mode == "joint" else 2)  # joint: raw step, then augmented
    state = checkpoint(tmp_path / "r")
    assert state["in_channels"] == (5 if fusion == "concat" else 3)
    assert np.isfinite(
        float((tmp_path / "r" / "log.csv").read_text().splitlines()[1].split(",")[3])
    )


def test_training_and_eval_never_import_sam(glas_store, tmp_path):
    config = tiny(glas_store, tmp_path / "r", mode="joint", epochs=1)
    config.save(tmp_path / "config.json")
    code = (
        "import sys, json\n"
        "from train.training.config import TrainConfig\n"
        "from train.training.loop import train\n"
        "from train.results.evaluation import evaluate_run\n"
        f"train(TrainConfig.load({str(tmp_path / 'config.json')!r}), log=lambda l: None)\n"
        f"evaluate_run({str(tmp_path / 'r')!r}, checkpoint='last.pt')\n"
        "print(json.dumps([m for m in sys.modules if m.startswith('segment_anything')]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_ddp_two_cpu_processes_with_gloo(glas_store, tmp_path):
    config = tiny(glas_store, tmp_path / "ddp", epochs=2, samples_per_epoch=16)
    config.save(tmp_path / "config.json")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "train.training.loop",
            "--config",
            str(tmp_path / "config.json"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    metrics = json.loads((tmp_path / "ddp" / "metrics.json").read_text())["train"]
    assert metrics["world_size"] == 2
    # 16 patches per epoch, 8 per rank, batches of 4: 2 steps an epoch on each rank.
    assert metrics["steps"] == 4
    assert np.isfinite(metrics["best_val_dice"])


def torchrun(script: Path, *args: str) -> None:
    """``script`` under torchrun in two CPU processes (gloo), one torch thread each."""
    out = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
        + [str(script), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]


def test_ddp_resumed_mid_epoch_equals_the_uninterrupted_run(glas_store, tmp_path):
    # Swin-UNet with dropout and drop path: each rank draws its own random numbers, and a
    # resumed run must draw, in every rank, what the uninterrupted one drew.
    script = tmp_path / "run.py"
    script.write_text(
        "import sys\n"
        "from train.training.config import TrainConfig\n"
        "from train.training.loop import train\n"
        "stop = int(sys.argv[2]) if len(sys.argv) > 2 else None\n"
        "train(TrainConfig.load(sys.argv[1]), log=lambda line: None, stop_after_batches=stop)\n"
    )
    options = {"base_channels": 12, "num_heads": (1, 1, 2, 2), "window_size": 4}
    for name in ("whole", "cut"):
        config = tiny(
            glas_store,
            tmp_path / name,
            model="swin_unet",
            model_kwargs={**options, "drop_rate": 0.1},
            epochs=2,
            samples_per_epoch=24,  # 12 a rank: 3 batches of 4
            save_every=1,
            val_fraction=0.0,
        )
        config.save(tmp_path / f"{name}.json")
    torchrun(script, str(tmp_path / "whole.json"))
    torchrun(script, str(tmp_path / "cut.json"), "2")  # mid-epoch 1
    assert checkpoint(tmp_path / "cut")["batch"] == 2
    torchrun(script, str(tmp_path / "cut.json"))
    whole, cut = weights(tmp_path / "whole"), weights(tmp_path / "cut")
    assert all(torch.equal(whole[k], cut[k]) for k in whole)
    # The log too (each rank's losses kept across the break), but for the seconds taken.
    rows = {}
    for name in ("whole", "cut"):
        with open(tmp_path / name / "log.csv", newline="") as f:
            rows[name] = [
                {k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(f)
            ]
    assert rows["cut"] == rows["whole"] and len(rows["whole"]) == 2


def test_training_from_a_store_served_over_http(glas_store, tmp_path):
    from tests.support.http import serve

    with serve(glas_store.parent) as url:
        remote = train(
            tiny(f"{url}/{glas_store.name}", tmp_path / "http", epochs=1), log=lambda line: None
        )
    local = train(tiny(glas_store, tmp_path / "local", epochs=1), log=lambda line: None)
    assert remote["steps"] == local["steps"] == 2
    a, b = weights(tmp_path / "http"), weights(tmp_path / "local")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_eval_scores_every_strategy_and_tabulates(glas_store, tmp_path):
    for mode in ("raw", "samaug"):
        train(
            tiny(glas_store, tmp_path / f"unet-{mode}", mode=mode, epochs=1), log=lambda line: None
        )
        results = evaluate_run(tmp_path / f"unet-{mode}", checkpoint="last.pt")
        assert set(results) == {"testA", "testB", "all"}
        for split in results:
            assert set(STRATEGIES) <= set(results[split])
            for strategy in STRATEGIES:
                scores = results[split][strategy]
                names = ("object_f1", "object_dice", "object_hausdorff")
                assert set(scores) == {*names, *(f"{n}_image_mean" for n in names)}
                assert 0 <= scores["object_f1"] <= 1 and 0 <= scores["object_dice"] <= 1
            assert results[split]["select_took_samaug"] in (0.0, 0.5, 1.0)
        # Every image's scores are kept; the splits' scores are pooled from them.
        with open(tmp_path / f"unet-{mode}" / "test_per_image.csv") as f:
            images = list(csv.DictReader(f))
        assert len(images) == 4 * len(STRATEGIES)
        for split, members in {"testA": ["testA"], "all": ["testA", "testB"]}.items():
            rows = [r for r in images if r["split"] in members and r["strategy"] == "ensemble"]
            parts = [
                GlasParts(**{f.name: float(r[f.name]) for f in fields(GlasParts)}) for r in rows
            ]
            assert results[split]["ensemble"] == {
                **glas_pooled(parts),
                **{
                    f"{n}_image_mean": pytest.approx(np.mean([float(r[n]) for r in rows]))
                    for n in names
                },
            }
    rows = comparison_rows([tmp_path / "unet-raw", tmp_path / "unet-samaug"])
    assert len(rows) == 2 * 3 * 4
    assert {r["trained_on"] for r in rows} == {"raw", "samaug"}
    table = format_table(rows)
    assert "object_f1" in table.splitlines()[0] and len(table.splitlines()) == 2 + len(rows)


def test_show_writes_the_prior_panels_and_the_ground_truth(glas_store, tmp_path):
    from PIL import Image

    from train.results.show import label_panel

    out = samaug("show", glas_store, "testA_1", "--out", tmp_path / "fig.png")
    assert out.returncode == 0, out.stderr
    figure = np.asarray(Image.open(tmp_path / "fig.png"))
    title = figure.shape[0] - 96  # a band of titles above the panels
    assert title >= 15 and figure.shape[1:] == (5 * 128 + 4 * 8, 3)
    from precompute.store import open_store

    store = open_store(glas_store)
    image = store.read("testA_1", "image")
    np.testing.assert_array_equal(figure[title:, :128], image)
    # The augmented panel is the add fusion: green + seg prior, blue + boundary prior.
    augmented = image / 255.0
    augmented[..., 1] += store.read("testA_1", "seg_prior")
    augmented[..., 2] += store.read("testA_1", "boundary_prior")
    expected = (np.clip(augmented, 0, 1) * 255).round().astype(np.uint8)
    np.testing.assert_array_equal(figure[title:, 3 * (128 + 8) : 3 * (128 + 8) + 128], expected)
    # The ground truth: every object a colour of its own on black.
    label = store.read("testA_1", "label")
    truth = figure[title:, 4 * (128 + 8) :]
    np.testing.assert_array_equal(truth, label_panel(label))
    assert (truth[label == 0] == 0).all()
    colours = {tuple(truth[label == k][0]) for k in np.unique(label[label > 0])}
    assert len(colours) == len(np.unique(label[label > 0])) and (0, 0, 0) not in colours
    # The titles are drawn (dark pixels in the white title band of each panel).
    assert all((figure[:title, k * 136 : k * 136 + 128] < 100).any() for k in range(5))


def test_polyp_store_trains_a_one_channel_model_and_scores_the_polyp_metrics(tmp_path):
    data = write_pranet_like(tmp_path / "polyp")
    store = tmp_path / "polyp.zarr"
    run(PriorsConfig("polyp", str(data), str(store), masker="superpixel", workers=0))
    out = tmp_path / "unet-joint"
    train(tiny(store, out, mode="joint", epochs=1, val_fraction=0.2), log=lambda line: None)
    assert checkpoint(out)["num_outputs"] == 1  # BCE + IoU
    results = evaluate_run(out, checkpoint="last.pt")
    assert set(results) == {"Kvasir"}
    keys = {"mean_dice", "mean_iou", "dice", "s_measure", "mean_e_measure", "max_e_measure"}
    keys |= {"soft_dice"}
    with open(out / "test_per_image.csv") as f:
        images = list(csv.DictReader(f))
    assert sorted(r["image_id"] for r in images if r["strategy"] == "raw") == [
        "Kvasir__0",
        "Kvasir__1",
    ]
    for strategy in STRATEGIES:
        scores = results["Kvasir"][strategy]
        assert keys | {"weighted_f", "mae"} == set(scores)
        assert all(0 <= scores[k] <= 1 for k in keys)
        rows = [r for r in images if r["strategy"] == strategy]
        for key, value in scores.items():  # polyp scores: the mean over images
            assert value == pytest.approx(np.mean([float(r[key]) for r in rows]))
