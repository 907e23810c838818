"""The method as released: the joint update, schedules counted in optimizer steps, exact
resumption within an epoch, protocols recorded with each run, pretrained weights reported."""

import dataclasses
import math

import numpy as np
import pytest
import timm
import torch

from precompute.types import SettingError
from tests.support.train_helpers import checkpoint, log_rows, quiet, tiny
from train.data.datasets import WholeImageDataset
from train.data.loader import make_loader
from train.fusion import FusionSettings, model_input
from train.inference.predictor import Predictor
from train.models import create_model
from train.protocols import RECIPES, get_protocol
from train.tasks import get_task
from train.training.config import TrainConfig
from train.training.loop import train
from train.training.optim import lr_schedule, update_plan
from train.training.validation import validate

pytestmark = pytest.mark.glas_counts(train=6, testA=1)


# ---------------------------------------------------------------- the joint update


def replay(config: TrainConfig, order: list[tuple[bool, ...]]) -> dict:
    """The first batch of ``config``'s run stepped by hand: one AdamW step per entry of
    ``order``, each on the mean loss of the inputs it names (False raw, True augmented)."""
    config = config.resolve("glas")
    task = get_task(config.task)
    ids = [f"train_{i}" for i in range(1, 7)]
    dataset = get_protocol(config.protocol).training_data(config, task, config.store, ids)
    dataset.set_epoch(0)
    batch = next(iter(make_loader(dataset, config.batch_size, shuffle=True)))
    torch.manual_seed(config.seed)  # as train() seeds before it builds the model
    model = create_model("unet", in_channels=3, num_classes=3, **config.model_kwargs)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    fusion = FusionSettings()
    for inputs in order:
        loss = sum(
            task.loss(model(model_input(batch, fusion, aug, "cpu")), batch["target"])
            for aug in inputs
        ) / len(inputs)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.state_dict()


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_joint_takes_a_raw_step_then_an_augmented_step_per_batch(glas_store, tmp_path):
    # One batch (4 items of the 6 training images; testA validates), a constant learning
    # rate: the run's weights are exactly two AdamW steps, the raw input's first.
    common = dict(
        mode="joint",
        epochs=1,
        samples_per_epoch=4,
        val_split="testA",
        lr_schedule="multistep",
        lr_milestones=[],
    )
    step = tiny(glas_store, tmp_path / "step", **common)
    mean = tiny(glas_store, tmp_path / "mean", joint_update="mean", **common)
    assert train(step, log=quiet)["steps"] == 2
    assert train(mean, log=quiet)["steps"] == 1
    assert checkpoint(tmp_path / "step")["step"] == 2
    assert [row["step"] for row in log_rows(tmp_path / "step")] == ["2"]

    trained = checkpoint(tmp_path / "step")["model"]
    assert same(trained, replay(step, [(False,), (True,)]))
    assert not same(trained, replay(step, [(True,), (False,)]))  # the order shows
    assert same(checkpoint(tmp_path / "mean")["model"], replay(mean, [(False, True)]))

    # The compute-matched baseline: a raw run taking a joint run's two steps per batch.
    matched = tiny(glas_store, tmp_path / "matched", **{**common, "mode": "raw"}, steps_per_batch=2)
    assert train(matched, log=quiet)["steps"] == 2
    assert same(checkpoint(tmp_path / "matched")["model"], replay(matched, [(False,), (False,)]))


def test_a_joint_run_validates_every_strategy_and_keeps_the_served_one(glas_store, tmp_path):
    common = dict(mode="joint", epochs=2, val_split="testA", samples_per_epoch=8)
    summary = train(tiny(glas_store, tmp_path / "select", **common), log=quiet)
    rows = log_rows(tmp_path / "select")
    strategies = ("raw", "samaug", "ensemble", "select")
    assert all(row[f"val_{s}"] for row in rows for s in strategies)
    assert [row["val_dice"] for row in rows] == [row["val_select"] for row in rows]
    select = [float(row["val_select"]) for row in rows]
    assert summary["best_epoch"] == int(np.argmax(select)) + 1  # counted from 1
    assert summary["best_val_dice"] == pytest.approx(max(select), abs=1e-6)
    # The last row's numbers are the last model's, predicted as eval predicts.
    state = checkpoint(tmp_path / "select")
    config = TrainConfig.from_dict(state["config"])
    assert config.val_strategy == "select"
    model = create_model("unet", in_channels=3, num_classes=3, **config.model_kwargs)
    model.load_state_dict(state["model"])
    predictor = Predictor.of_run(model.eval(), config, get_task("glands"))
    dataset = WholeImageDataset(glas_store, "testA")
    by_hand = validate(predictor, dataset, strategies)
    assert by_hand == pytest.approx({s: float(rows[-1][f"val_{s}"]) for s in strategies}, abs=1e-6)

    # --val-strategy picks another; a strategy the mode does not serve is refused.
    raw = train(tiny(glas_store, tmp_path / "raw", val_strategy="raw", **common), log=quiet)
    rows = log_rows(tmp_path / "raw")
    assert [row["val_dice"] for row in rows] == [row["val_raw"] for row in rows]
    assert raw["best_val_dice"] == pytest.approx(max(float(r["val_raw"]) for r in rows), abs=1e-6)
    with pytest.raises(SettingError, match="--mode samaug serves only samaug"):
        TrainConfig(store="s", mode="samaug", val_strategy="select")


def test_schedules_count_optimizer_steps(glas_store, tmp_path):
    # Cosine without warm-up over the run's optimizer steps: a joint run of 2 epochs of
    # 2 batches takes 8 steps, and its learning rate after epoch 1 (step 4) is
    # lr * (1 + cos(pi * 3 / 7)) / 2, not the 0 that counting batches would reach.
    config = tiny(glas_store, tmp_path / "run", mode="joint", warmup_epochs=0, val_fraction=0.0)
    train(config, log=quiet)
    rows = log_rows(tmp_path / "run")
    assert [row["step"] for row in rows] == ["4", "8"]
    expected = 3e-3 * (1 + math.cos(math.pi * 3 / 7)) / 2
    assert float(rows[0]["lr"]) == pytest.approx(expected, rel=1e-5)
    assert float(rows[1]["lr"]) == 0.0

    # The released SAMAug polyp schedule: x0.2 from the 21st epoch (index 20), whatever the
    # number of optimizer steps an epoch takes (3 scales x 2 inputs = 6 a batch here).
    polyp = TrainConfig(
        store="s", mode="joint", protocol="polyp", task="binary", recipe="samaug_polyp"
    ).resolve()
    plan = update_plan(polyp, get_protocol("polyp"))
    assert plan.sizes == (256, None, 448) and plan.steps_per_batch == 6
    factor = lr_schedule(polyp, steps_per_epoch=6 * 10)
    assert [factor(s) for s in (0, 20 * 60 - 1, 20 * 60, 38 * 60 + 59)] == [1, 1, 0.2, 0.2]
    assert polyp.epochs == 39 and polyp.lr == 5e-5 and polyp.optimizer == "adam"
    assert (polyp.loss, polyp.test_maps, polyp.grad_clip) == ("structure_unweighted", "sum", 0)

    # PraNet's adjust_lr (the polyp protocol's default recipe): before epoch e (from 1) the
    # rate is multiplied by 0.1 ** (e // 50), compounding from epoch 50 on.
    pranet = TrainConfig(store="s", mode="raw", protocol="polyp", task="binary").resolve()
    assert (pranet.recipe, pranet.lr_schedule, pranet.epochs) == ("pranet", "compound", 19)
    assert (pranet.loss, pranet.test_maps, pranet.grad_clip) == ("structure_released", "last", 0.5)
    factor = lr_schedule(dataclasses.replace(pranet, epochs=60), steps_per_epoch=3)
    by_epoch = [factor(3 * e + 2) for e in (0, 48, 49, 50, 51)]
    assert by_epoch == pytest.approx([1, 1, 0.1, 0.1**2, 0.1**3])


# ---------------------------------------------------------------- resuming mid-epoch


# Swin-UNet draws random numbers while training (drop path 0.2, dropout 0.1): the resumed run
# must draw the uninterrupted run's.
RANDOM_IN_TRAINING = {
    "base_channels": 12,
    "num_heads": (1, 1, 2, 2),
    "window_size": 4,
    "drop_rate": 0.1,
}


@pytest.mark.parametrize(
    "model,options",
    [("unet", {"base_channels": 4}), ("swin_unet", RANDOM_IN_TRAINING)],
    ids=["unet", "swin_unet_dropout"],
)
def test_a_run_stopped_mid_epoch_resumes_exactly(glas_store, tmp_path, model, options):
    # 3 batches an epoch, joint: stop after 2 batches (mid-epoch 0), again after 2 more
    # (the end of epoch 0, then mid-epoch 1), then finish: the same run as uninterrupted.
    settings = dict(
        mode="joint",
        samples_per_epoch=12,
        save_every=1,
        warmup_epochs=0,
        val_fraction=0.0,
        model=model,
        model_kwargs=options,
    )
    whole = train(tiny(glas_store, tmp_path / "whole", **settings), log=quiet)
    run = tiny(glas_store, tmp_path / "cut", **settings)
    train(run, log=quiet, stop_after_batches=2)
    state = checkpoint(tmp_path / "cut")
    assert (state["epoch"], state["batch"], state["step"]) == (-1, 2, 4)
    assert len(state["epoch_losses"]) == 4 and not (tmp_path / "cut" / "best.pt").exists()
    seen = []
    train(run, log=seen.append, stop_after_batches=2)
    steps = "2 epochs x 3 batches of 4 = 12 optimizer steps (2 per batch: raw, then augmented)"
    resuming = f"resuming {tmp_path / 'cut'} at epoch 1, batch 3 of 3"
    assert seen[0] == steps and seen[2] == resuming
    state = checkpoint(tmp_path / "cut")
    assert (state["epoch"], state["batch"], state["step"]) == (0, 1, 8)
    assert len(log_rows(tmp_path / "cut")) == 1
    assert train(run, log=quiet) == whole
    assert same(checkpoint(tmp_path / "cut")["model"], checkpoint(tmp_path / "whole")["model"])
    assert log_rows(tmp_path / "cut") == log_rows(tmp_path / "whole")
    assert checkpoint(tmp_path / "cut")["batch"] == 0


def test_each_batch_draws_from_its_own_seed():
    from train.training.loop import seed_batch

    def draws(*key):
        seed_batch(*key)
        return torch.rand(4)

    first = draws(0, 0, 1, 5)
    torch.rand(100)  # whatever ran before does not matter
    assert torch.equal(draws(0, 0, 1, 5), first)
    for other in ((1, 0, 1, 5), (0, 1, 1, 5), (0, 0, 2, 5), (0, 0, 1, 6)):
        assert not torch.equal(draws(*other), first), other


# ---------------------------------------------------------------- protocols and settings


def test_the_resolved_protocol_and_recipe_are_recorded(glas_store, tmp_path):
    config = tiny(glas_store, tmp_path / "run", epochs=1, samples_per_epoch=4)
    assert config.protocol is None and config.optimizer is None and not config.resolved
    train(config, log=quiet)
    saved = TrainConfig.load(tmp_path / "run" / "config.json")
    assert saved.resolved and saved.protocol == "patches" and saved.recipe == "patches"
    assert (saved.optimizer, saved.lr_schedule, saved.scales, saved.loss) == (
        "adamw",
        "cosine",
        (1.0,),
        "task",
    )
    assert saved.lr == 3e-3  # given, not the recipe's
    assert saved.weight_decay == RECIPES.get("patches").weight_decay
    recorded = checkpoint(tmp_path / "run")["config"]["protocol_settings"]
    assert recorded == get_protocol("patches").settings()
    assert recorded["source"] == "this project's own" and recorded["test"] == "windows"


@pytest.mark.parametrize(
    "setting, message",
    [
        ({"protocol": "polyp", "task": "glands"}, "--protocol polyp trains the binary task"),
        ({"protocol": "patches", "scales": [0.75, 1]}, "multi-scale training needs whole"),
        ({"task": "nuclei", "loss": "structure"}, "--loss structure is a binary"),
        ({"protocol": "polyp", "loss": "task"}, "trains on soft"),
        ({"protocol": "sliding"}, "--protocol 'sliding': no such protocol; valid: patches, polyp"),
        ({"recipe": "sgd"}, "--recipe 'sgd': no such recipe; valid: patches, pranet, samaug_polyp"),
        ({"joint_update": "sum"}, "--joint-update must be one of step, mean"),
        ({"lr_milestones": [0]}, "--lr-milestones must be at least 1, not 0"),
        ({"save_every": -1}, "--save-every must be at least 0"),
    ],
)
def test_protocol_settings_are_checked_when_the_config_is_made(setting, message):
    with pytest.raises(SettingError, match=message):
        TrainConfig(store="any.zarr", **setting)


def test_a_polyp_store_defaults_to_the_polyp_protocol_and_a_glas_store_is_refused_it(
    glas_store, tmp_path
):
    polyp = TrainConfig(store="s").resolve("polyp")
    assert (polyp.protocol, polyp.task, polyp.patch_size, polyp.val_fraction) == (
        "polyp",
        "binary",
        352,
        0.0,
    )
    # PraNet's own pipeline (MyTrain.py / MyTest.py) is the polyp protocol's recipe.
    assert (polyp.recipe, polyp.batch_size, polyp.lr_milestones) == ("pranet", 16, (50,))
    assert (polyp.lr, polyp.epochs, polyp.grad_clip, polyp.weight_decay) == (1e-4, 19, 0.5, 0)
    hsnet = TrainConfig(store="s", recipe="samaug_polyp").resolve("kvasir")
    assert (hsnet.lr, hsnet.batch_size, hsnet.epochs, hsnet.grad_clip) == (5e-5, 8, 39, 0.0)
    assert (hsnet.lr_milestones, hsnet.loss) == ((20,), "structure_unweighted")
    given = TrainConfig(store="s", recipe="pranet", loss="structure").resolve("kvasir")
    assert given.loss == "structure"  # given, not the recipe's
    with pytest.raises(SettingError, match="--protocol polyp trains the binary task, not 'glands'"):
        train(tiny(glas_store, tmp_path / "run", protocol="polyp"), log=quiet)
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------- pretrained weights


def test_pretrained_weights_are_logged_and_recorded_and_a_missing_file_refused(
    glas_store, tmp_path
):
    missing = tiny(
        tmp_path / "nosuch.zarr",
        tmp_path / "missing",
        model="swin_unet",
        model_kwargs={"pretrained": str(tmp_path / "swin.pth")},
    )
    with pytest.raises(SettingError, match=r"pretrained=.*swin.pth: no such file.*make weights"):
        train(missing, log=quiet)  # before the (absent) store is opened

    narrow = {"base_channels": 24, "num_heads": [1, 2, 4, 8]}
    source = timm.create_model("swin_tiny_patch4_window7_224", embed_dim=24, num_heads=(1, 2, 4, 8))
    torch.save(source.state_dict(), tmp_path / "swin.pth")
    config = tiny(
        glas_store,
        tmp_path / "run",
        model="swin_unet",
        epochs=1,
        samples_per_epoch=4,
        val_fraction=0.0,
        model_kwargs={**narrow, "pretrained": str(tmp_path / "swin.pth")},
    )
    lines = []
    summary = train(config, log=lines.append)
    expected = create_model(
        "swin_unet", num_classes=3, **narrow, pretrained=str(tmp_path / "swin.pth")
    ).pretrained_report.summary()
    assert lines[0] == "1 epoch x 1 batch of 4 = 1 optimizer step"  # a samaug run
    assert lines[1] == expected and "timm layout" in expected
    assert summary["pretrained"] == expected
    assert checkpoint(tmp_path / "run")["pretrained"] == expected
    metrics = (tmp_path / "run" / "metrics.json").read_text()
    assert expected.split(" (")[0] in metrics
