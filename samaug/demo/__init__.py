"""``make demo``: the whole SAMAug job offline on CPU in a few minutes, on data made on the spot.

1. a small gland-like dataset in the GlaS layout (deterministic synthetic images with
   instance labels; precompute/synthetic.py);
2. priors with the ``superpixel`` masker (no SAM weights needed) into a Zarr store;
3. a small U-Net trained ``raw`` and ``samaug``;
4. evaluation with the four test-time strategies and the comparison table;
5. the paper's Fig. 2 for one image (image, seg prior, boundary prior, augmented input).

The numbers show that the machinery works end to end; synthetic images and superpixel
priors say nothing about SAMAug's real gains.
"""

from __future__ import annotations

from pathlib import Path

from precompute import checks
from precompute.pipeline import PriorsConfig, run
from precompute.types import SettingError
from samaug.demo.synthetic import write_glas_like
from train.results.evaluation import evaluate_run
from train.results.show import show
from train.results.tables import comparison_rows, format_table, write_csv
from train.training.config import TrainConfig
from train.training.loop import train


def run_demo(out: str | Path, epochs: int = 12, log=print) -> dict:
    """Run the demo into the folder ``out``; returns the paths it wrote (store, runs, table,
    figure). SettingError, before anything is written, for epochs < 1 or an ``out`` that is
    a file. Running it again in the same folder reuses what is there."""
    checks.integer("--epochs", epochs, minimum=1)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise SettingError(f"--out {out} is a file; give a folder for the demo")
    data = write_glas_like(
        out / "data" / "glas", {"train": 16, "testA": 4, "testB": 4}, size=(160, 224), seed=0
    )
    log(f"1/5 synthetic GlaS-layout dataset: {data}")
    store = out / "stores" / "glas.zarr"
    summary = run(
        PriorsConfig(
            dataset="glas", data_root=str(data), store=str(store), masker="superpixel", workers=0
        )
    )
    log(f"2/5 superpixel priors: {summary.done} images, {summary.mean_masks():.0f} masks each")
    figure = show(str(store), "testA_1", out / "fig_priors.png")
    runs = []
    for mode in ("raw", "samaug"):
        config = TrainConfig(
            store=str(store),
            model="unet",
            mode=mode,
            out=str(out / "runs" / f"unet-{mode}-0"),
            epochs=epochs,
            batch_size=4,
            patch_size=128,
            samples_per_epoch=48,
            lr=3e-3,
            warmup_epochs=1,
            workers=0,
            device="cpu",
            amp=False,
            val_fraction=0.15,
            model_kwargs={"base_channels": 8},
        )
        result = train(config, log=lambda line, mode=mode: log(f"   {mode}: {line}"))
        log(
            f"3/5 trained {mode}: best validation Dice {result['best_val_dice']:.3f} "
            f"at epoch {result['best_epoch']}"
        )
        runs.append(config.out)
    for run_dir in runs:
        evaluate_run(run_dir)
    rows = comparison_rows(runs)
    table_path = out / "comparison.csv"
    write_csv(rows, table_path)
    log("4/5 comparison (synthetic data: mechanics only)\n" + format_table(rows))
    log(f"5/5 figure: {figure}")
    return {"store": str(store), "runs": runs, "table": str(table_path), "figure": str(figure)}
