"""One way to say which weights a model starts from: ``--pretrained PATH|none|MODEL=PATH`` in
``samaug train`` and ``samaug reproduce`` (and make's ``PRETRAINED=``), the paper's ImageNet
file in ``--weights-dir`` by default, and a log line saying what a run started from."""

from pathlib import Path

import pytest

from precompute.types import SettingError
from samaug.commands.options import model_kwargs, pretrained_choice
from tests.support.train_helpers import tiny
from train.models.backbones import PAPER_WEIGHTS, pretrained_for
from train.training.loop import train


def test_the_paper_weights_are_the_default_and_none_is_a_random_start(tmp_path):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    swin = folder / PAPER_WEIGHTS["swin_unet"]
    with pytest.raises(SettingError) as err:
        pretrained_for("swin_unet", None, folder)
    assert str(err.value) == (
        f"{swin}: no such file, and swin_unet starts from these ImageNet weights as its paper "
        "trains it; fetch them (make weights), give --pretrained PATH, or --pretrained none "
        "for a random start"
    )
    swin.write_bytes(b"weights")
    assert pretrained_for("swin_unet", None, folder) == str(swin)
    assert pretrained_for("swin_unet", "none", folder) is None
    assert pretrained_for("unet", None, folder) is None  # no paper weights: random
    assert set(PAPER_WEIGHTS) == {"swin_unet", "pranet", "hsnet"}
    with pytest.raises(SettingError, match="--pretrained x.pth: unet takes no pretrained"):
        pretrained_for("unet", "x.pth", folder)
    with pytest.raises(SettingError, match="--pretrained /no/x.pth: no such file"):
        pretrained_for("swin_unet", "/no/x.pth", folder)


def test_train_and_reproduce_read_the_option_alike(tmp_path):
    assert pretrained_choice(["none"]) == {"*": "none"}
    assert pretrained_choice(["pranet=w.pth", "none"]) == {"pranet": "w.pth", "*": "none"}
    with pytest.raises(SettingError, match="given twice"):
        pretrained_choice(["a.pth", "b.pth"])
    weights = tmp_path / "mine.pth"
    weights.write_bytes(b"weights")
    base = ["base_channels=12"]
    assert model_kwargs("swin_unet", base, ["none"], tmp_path) == {"base_channels": 12}
    assert model_kwargs("swin_unet", base, [str(weights)], tmp_path) == {
        "base_channels": 12,
        "pretrained": str(weights),
    }
    assert model_kwargs("swin_unet", None, [f"swin_unet={weights}"], Path("/no"))[
        "pretrained"
    ] == str(weights)
    with pytest.raises(SettingError, match="give the weights with --pretrained"):
        model_kwargs("swin_unet", ["pretrained=none"], None, tmp_path)


def test_a_run_says_what_its_model_starts_from(glas_store, tmp_path):
    lines = []
    train(tiny(glas_store, tmp_path / "run", epochs=1), log=lines.append, stop_after=0)
    assert lines[1] == "unet: random initial weights (no pretrained file)"
