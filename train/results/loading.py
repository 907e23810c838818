"""Every way a trained model is taken: a run directory, a model bundle or a checkpoint file.

``read_model`` reads the checkpoint-like state of any of them without unpickling anything
that could run code: checkpoints through ``train.training.checkpoint.load_checkpoint``
(``weights_only``), bundles through ``train.results.bundle.read_bundle`` (safetensors and
JSON). ``load_model`` builds the network from that state, in eval mode on a device.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from precompute.devices import resolve_device
from precompute.types import SamaugError, SettingError
from train.models import create_model
from train.results.bundle import is_bundle, read_bundle
from train.tasks import Task, get_task
from train.training.checkpoint import REQUIRED, load_checkpoint
from train.training.config import TrainConfig
from train.training.divergence import check_weights


def read_model(
    source: str | Path, checkpoint: str = "best.pt", device: torch.device | str = "cpu"
) -> tuple[dict, Path]:
    """(checkpoint-like state, the file it came from) of a run directory (its
    ``checkpoint``), a bundle or a checkpoint file. Checkpoints are checked by
    ``load_checkpoint`` (unsafe files refused), bundles by ``read_bundle``."""
    source = Path(source)
    if source.is_dir() or (not source.exists() and not source.suffix):  # a run directory
        path = source / checkpoint
        return load_checkpoint(path, device, "restore it, or train the run again"), path
    if is_bundle(source):
        return read_bundle(source, device), source
    if source.is_file():
        state = load_checkpoint(source, device, "give a run directory, a bundle or a checkpoint")
        missing = [key for key in REQUIRED if key not in state]
        assert not missing, missing  # load_checkpoint refuses such files
        return state, source
    raise SamaugError(
        f"{source}: no such run directory, model bundle (.zip) or checkpoint; give one of them"
    )


@dataclass
class LoadedModel:
    """A model ready to predict: the network in eval mode, its config and task, the
    checkpoint-like state it came from (``read_model``), where it was named
    (``source``) and the file read (``path``)."""

    model: torch.nn.Module
    config: TrainConfig
    task: Task
    state: dict
    source: Path
    path: Path


def load_model(
    source: str | Path, checkpoint: str = "best.pt", device: str | torch.device = "auto"
) -> LoadedModel:
    """The model of a run directory (its ``checkpoint``), a bundle or a checkpoint file.

    Read without unpickling code (``read_model``); a missing, damaged, unsafe
    or foreign file is a SamaugError naming it.
    """
    device = resolve_device(device) if isinstance(device, str) else device
    state, path = read_model(source, checkpoint, device)
    check_weights(state["model"], path)  # a diverged run's, or a foreign file's
    try:
        config = TrainConfig.from_dict(state["config"])
    except SettingError as err:
        raise SamaugError(f"{path}: its config is not valid here ({err})") from err
    # The checkpoint holds every weight: a pretrained file the run started from is not read
    # again (it may have moved since training).
    kwargs = {k: v for k, v in config.model_kwargs.items() if k != "pretrained"}
    model = create_model(
        config.model, in_channels=state["in_channels"], num_classes=state["num_outputs"], **kwargs
    )
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as err:
        raise SamaugError(f"{path}: its weights do not fit its model ({err})") from err
    return LoadedModel(
        model.to(device).eval(), config, get_task(state["task"]), state, Path(source), path
    )
