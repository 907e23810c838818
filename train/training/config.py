"""One frozen dataclass of settings per job: what a training run is, saved with every result."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from precompute import checks
from precompute.devices import check_device
from precompute.files import atomic_write_json
from precompute.limits import max_patch_size
from precompute.received import read_json_file
from precompute.types import SamaugError, SettingError
from train.choices import JOINT_UPDATES, LOSSES, LR_SCHEDULES, OPTIMIZERS, TEST_MAPS
from train.modes import get_mode
from train.protocols import (
    DEFAULT_PROTOCOL,
    check_scales,
    get_protocol,
    get_recipe,
    protocol_for_dataset,
)

# Patches smaller than this leave the deeper models (a U-Net of depth 4, Swin-UNet's
# 4 x 4 patches in 7 x 7 windows) almost nothing but padding to learn from.
MIN_PATCH_SIZE = 32

# Seeds reach numpy and torch generators (and DataLoader workers, seed + worker): 32 bits.
MAX_SEED = 2**32 - 1

# Settings that do not change what a run computes: a run may resume with other values.
# The store counts by its identity (``precompute.store.signature`` and the images), not by
# how its path is spelt, so ``store`` is compared apart (``train.training.checkpoint``).
INCIDENTAL = ("store", "out", "workers", "device", "save_every")

# Fields a protocol or a recipe fills where a config leaves them None (``resolve``).
PROTOCOL_FIELDS = ("patch_size", "scales", "loss", "recipe", "val_fraction")
RECIPE_FIELDS = (
    "test_maps",
    "optimizer",
    "lr",
    "weight_decay",
    "batch_size",
    "epochs",
    "lr_schedule",
    "warmup_epochs",
    "lr_milestones",
    "lr_gamma",
    "grad_clip",
)


def option(name: str) -> str:
    """How the command line spells a setting: ``batch_size`` -> ``--batch-size``."""
    return "--" + name.replace("_", "-")


@dataclass(frozen=True)
class TrainConfig:
    """A training run. Saved as ``config.json`` in the run directory and in every checkpoint.

    mode: "joint" (the default: raw and augmented input both, as the released SAMAug code
      trains), "raw" (image only, the baseline) or "samaug" (image + priors only).
    joint_update: how a joint run updates the model: "step" (the released code: for every
      batch, and at every training scale, one optimizer step on the loss of the raw input,
      then one on the loss of the augmented input) or "mean" (one step on the mean of the
      two losses: half the optimizer steps of "step"). Ignored by the other modes.
    steps_per_batch: every batch's optimizer steps are taken this many times. 2 with
      ``--mode raw`` gives a raw run the optimizer steps of a joint run (two per batch, the
      same batches and schedule): the compute-matched baseline.
    val_strategy: the test-time strategy validation scores and ``best.pt`` follows; None:
      the one the mode serves by default (``train.modes``: select for joint runs).
    test_maps: how a deep-supervised model's maps make its test prediction: "sum" (the
      released SAMAug polyp script) or "last" (PraNet's MyTest.py scores ``res2``, the last
      map); None: the recipe's.
    fusion / seg_scale: how priors enter the model (train/fusion.py).
    protocol: "patches" or "polyp" (``train.protocols``); None: the dataset's (polyp stores:
      "polyp", others "patches").
    recipe: the optimiser and schedule preset (``train.protocols.RECIPES``); None: the
      protocol's.
    Every other field left None is filled from the protocol (``patch_size``, ``scales``,
      ``loss``, ``val_fraction``) or the recipe (``test_maps``, ``optimizer``, ``lr``,
      ``weight_decay``, ``batch_size``, ``epochs``, ``lr_schedule``, ``warmup_epochs``,
      ``lr_milestones``, ``lr_gamma``, ``grad_clip``; and ``loss`` where the recipe has its
      own) when the run starts (``resolve``), ``val_strategy`` from the mode: what a run
      saves is always resolved, with the protocol's fixed settings beside (``to_dict``).
    patch_size: side of the training patches ("patches"), or of the square the whole images
      are resized to ("polyp"); also the test-time window or size. None: the protocol's for
      the model (``Protocol.patch_size_for``: under the patches protocol
      the model's own side if it has one, Swin-UNet's 224; else 256, or 352 for polyp).
    scales: multi-scale training factors (a resize protocol only; ``Protocol.training_sizes``).
    loss: "task" (the task's, ``train.tasks``) or a structure loss (binary task:
      "structure" PraNet's paper formula, "structure_released" as PraNet's MyTrain.py
      computes it, "structure_unweighted" as SAMAug's polyp script does); a model with deep
      supervision trains on the sum of it over its maps.
    lr_schedule / warmup_epochs / lr_milestones / lr_gamma: ``protocols.Recipe``; every
      schedule counts optimizer steps.
    grad_clip: clamp every gradient element to [-grad_clip, grad_clip] (0: off).
    train_split / val_split: splits of the store; with val_split None, ``val_fraction`` of
      the training images (a fixed, seeded choice) is held out for validation.
    fold / folds: with ``fold`` (0-based) the training split is cut into ``folds`` fixed
      folds, nnU-Net v2's own (``train.folds``), and fold ``fold`` validates: ``val_split``
      must be None and ``val_fraction`` is not used.
    samples_per_epoch: training items per epoch (default: the protocol's: as many patches as
      tile the training images once, or one per image for whole-image protocols).
    save_every: also save ``last.pt`` every this many batches within an epoch (0: at the end
      of each epoch only), so a job killed mid-epoch resumes from there, exactly.
    task: a name of ``train.tasks`` (what is learnt and scored); None: the dataset's.
    model_kwargs: passed to ``create_model`` (e.g. {"base_channels": 16}).

    Every value is checked on construction (SettingError naming the option), so a bad one is
    refused before a store is opened; ``check_files`` checks the files a run reads.
    """

    store: str
    model: str = "unet"
    mode: str = "joint"
    out: str = "runs/run"
    fusion: str = "add"
    seg_scale: float = 1.0
    protocol: str | None = None
    recipe: str | None = None
    joint_update: str = "step"
    steps_per_batch: int = 1
    val_strategy: str | None = None
    test_maps: str | None = None
    epochs: int | None = None
    batch_size: int | None = None
    patch_size: int | None = None
    scales: tuple[float, ...] | None = None
    samples_per_epoch: int | None = None
    optimizer: str | None = None
    lr: float | None = None
    weight_decay: float | None = None
    lr_schedule: str | None = None
    warmup_epochs: int | None = None
    lr_milestones: tuple[int, ...] | None = None
    lr_gamma: float | None = None
    grad_clip: float | None = None
    loss: str | None = None
    amp: bool = True
    seed: int = 0
    workers: int = 2
    train_split: str = "train"
    val_split: str | None = None
    val_fraction: float | None = None
    fold: int | None = None
    folds: int = 5
    val_every: int = 1
    save_every: int = 0
    device: str = "auto"
    task: str | None = None
    model_kwargs: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        # The registries import torch; imported here so that the command line can build a
        # config (and refuse a bad one) without paying for torch at start-up.
        from train.fusion import FUSIONS
        from train.models import check_model_name, check_model_options
        from train.tasks import get_task

        for name in ("store", "out", "train_split"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise SettingError(f"{option(name)} must be given, not {getattr(self, name)!r}")
        check_model_name(self.model)
        if not isinstance(self.model_kwargs, dict):
            raise SettingError(f"model_kwargs must be a dict, not {self.model_kwargs!r}")
        check_model_options(self.model, self.model_kwargs)
        mode = get_mode(self.mode)
        checks.choice("--joint-update", self.joint_update, JOINT_UPDATES)
        checks.integer("--steps-per-batch", self.steps_per_batch, minimum=1, maximum=8)
        if self.val_strategy is not None:
            mode.strategy(self.val_strategy)
        if self.test_maps is not None:
            checks.choice("--test-maps", self.test_maps, TEST_MAPS)
        FUSIONS.check(self.fusion)
        checks.number("--seg-scale", self.seg_scale)
        if self.recipe is not None:
            get_recipe(self.recipe)
        self._check_numbers()
        self._check_splits()
        check_device(self.device)
        if self.task is not None:
            get_task(self.task)
        if self.protocol is not None:
            get_protocol(self.protocol).check(self)
        if self.loss not in (None, "task") and self.task not in (None, "binary"):
            raise SettingError(
                f"--loss {self.loss} is a binary (one-channel) loss; the {self.task} task "
                "trains with --loss task"
            )

    def _check_numbers(self) -> None:
        """The numeric settings and the choices among fixed names, each against its range."""
        for name in ("epochs", "batch_size", "samples_per_epoch"):
            if getattr(self, name) is not None:
                checks.integer(option(name), getattr(self, name), minimum=1)
        checks.integer("--val-every", self.val_every, minimum=1)
        if self.patch_size is not None:
            largest = max_patch_size()
            checks.integer("--patch-size", self.patch_size, minimum=MIN_PATCH_SIZE)
            if self.patch_size > largest:
                raise SettingError(
                    f"--patch-size must be at most {largest}, not {self.patch_size} (set "
                    "SAMAUG_MAX_PATCH_SIZE to train on larger patches)"
                )
        if self.scales is not None:
            object.__setattr__(self, "scales", check_scales(self.scales))
        for name, choices in (
            ("optimizer", OPTIMIZERS),
            ("lr_schedule", LR_SCHEDULES),
            ("loss", LOSSES),
        ):
            if getattr(self, name) is not None:
                checks.choice(option(name), getattr(self, name), choices)
        if self.lr is not None:
            checks.number("--lr", self.lr, positive=True)
        for name in ("weight_decay", "grad_clip"):
            if getattr(self, name) is not None:
                checks.number(option(name), getattr(self, name), minimum=0)
        if self.lr_gamma is not None:
            checks.number("--lr-gamma", self.lr_gamma, positive=True)
        if self.lr_milestones is not None:
            if not isinstance(self.lr_milestones, (list, tuple)):
                raise SettingError(
                    f"--lr-milestones must be a list of epochs like 20,40, not "
                    f"{self.lr_milestones!r}"
                )
            milestones = tuple(
                checks.integer("--lr-milestones", m, minimum=1) for m in self.lr_milestones
            )
            object.__setattr__(self, "lr_milestones", milestones)
        for name in ("warmup_epochs", "workers", "save_every"):
            if getattr(self, name) is not None:
                checks.integer(option(name), getattr(self, name), minimum=0)
        checks.integer("--seed", self.seed, minimum=0, maximum=MAX_SEED)
        if not isinstance(self.amp, bool):
            raise SettingError(f"--amp must be true or false, not {self.amp!r}")

    def _check_splits(self) -> None:
        if (
            self.val_fraction is not None
            and checks.number("--val-fraction", self.val_fraction, minimum=0) >= 1
        ):
            raise SettingError(f"--val-fraction must be in [0, 1), not {self.val_fraction}")
        if self.fold is not None:
            checks.integer("--folds", self.folds, minimum=2)
            if checks.integer("--fold", self.fold, minimum=0) >= self.folds:
                raise SettingError(
                    f"--fold {self.fold}: folds count from 0, so at most {self.folds - 1} of "
                    f"--folds {self.folds}"
                )
            given = [f"--val-split {self.val_split!r}"] if self.val_split is not None else []
            given += (
                [f"--val-fraction {self.val_fraction}"] if self.val_fraction is not None else []
            )
            if given:
                raise SettingError(
                    f"--fold {self.fold} validates on a fold of the training split; leave out "
                    f"{' and '.join(given)}"
                )
        if self.val_split is not None and (
            not isinstance(self.val_split, str) or self.val_split == self.train_split
        ):
            raise SettingError(
                f"--val-split {self.val_split!r} must be a split other than the training "
                f"split {self.train_split!r}; leave it out to hold out --val-fraction of it"
            )

    # ------------------------------------------------------------------ protocol

    @property
    def resolved(self) -> bool:
        """Whether every protocol and recipe setting is filled in (``resolve``)."""
        return all(
            getattr(self, name) is not None
            for name in ("protocol", *PROTOCOL_FIELDS, *RECIPE_FIELDS)
        )

    def resolve(self, dataset: str | None = None) -> TrainConfig:
        """This config with the protocol (the dataset's where None), the task (the
        dataset's where None and ``dataset`` is given) and every setting left None filled
        from the protocol and its recipe. SettingError for a combination the protocol cannot
        train (e.g. the polyp protocol on a glands store)."""
        from train.tasks import task_for_dataset

        if self.protocol is None and dataset is None:
            raise SettingError("no --protocol given and no dataset to take it from")
        protocol = get_protocol(self.protocol or protocol_for_dataset(dataset))
        task = self.task or (task_for_dataset(dataset) if dataset is not None else None)
        recipe = get_recipe(self.recipe or protocol.recipe)
        filled = {
            name: getattr(protocol, name) for name in PROTOCOL_FIELDS if getattr(self, name) is None
        }
        if self.patch_size is None:
            filled["patch_size"] = protocol.patch_size_for(self.model)
        filled |= {
            name: getattr(recipe, name) for name in RECIPE_FIELDS if getattr(self, name) is None
        }
        if self.loss is None and recipe.loss is not None:
            filled["loss"] = recipe.loss  # the recipe's pipeline trains with its own loss
        filled["recipe"] = recipe.name
        filled["val_strategy"] = get_mode(self.mode).strategy(self.val_strategy)
        return replace(self, protocol=protocol.name, task=task, **filled)

    def check_files(self) -> None:
        """SettingError naming a file the run would read but that is not there (a model's
        ``pretrained`` weights); called before a store is opened."""
        pretrained = self.model_kwargs.get("pretrained")
        if pretrained is not None and not Path(str(pretrained)).is_file():
            raise SettingError(
                f"--model-option pretrained={pretrained}: no such file; fetch the weights "
                "with `make weights` (samaug weights) or give the path of your copy"
            )

    # ------------------------------------------------------------------ files

    def to_dict(self) -> dict:
        """The fields as plain values, and ``protocol_settings`` (the protocol's fixed
        settings, ``Protocol.settings``) once the protocol is known."""
        values = asdict(self)
        if self.protocol is not None:
            values["protocol_settings"] = get_protocol(self.protocol).settings()
        return values

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        """A config from its ``to_dict`` (keys it does not know are left out).

        A config saved before protocols existed is read as what it was trained with: the
        patches protocol, with the mean joint update; one saved before ``test_maps`` and
        ``val_strategy`` existed, as tested with the maps' sum and validated on the input
        its mode trains on last (samaug, or raw for a raw run)."""
        if not isinstance(values, dict):
            raise SettingError(f"a training config is a JSON object, not {type(values).__name__}")
        if "protocol" not in values:
            values = {**values, "protocol": DEFAULT_PROTOCOL, "joint_update": "mean"}
        if "recipe" in values and "test_maps" not in values:  # resolved before test_maps
            # existed: tested with the maps' sum, validated on the input it trained on last.
            last = "raw" if values.get("mode") == "raw" else "samaug"
            values = {**values, "test_maps": "sum", "val_strategy": last}
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    def save(self, path: str | Path) -> None:
        atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        """The config of a ``config.json``; SamaugError naming the file if it is unreadable."""
        try:
            values = read_json_file(path)
        except SamaugError as err:
            raise SamaugError(f"{err}; not a training config") from err
        try:
            return cls.from_dict(values)
        except SettingError as err:
            raise SettingError(f"{path}: {err}") from err


def differences(run: Mapping, this: Mapping, prefix: str = "") -> list[str]:
    """What differs between two settings dicts (a config's ``to_dict``, a store signature),
    one ``"lr: run has 0.001, this run 0.01"`` each, nested keys joined by dots
    (``model_kwargs.base_channels``). At the top level (no ``prefix``) the ``INCIDENTAL``
    settings are left out."""
    found: list[str] = []
    for key in dict.fromkeys([*run, *this]):
        if not prefix and key in INCIDENTAL:
            continue
        a, b = run.get(key, "<unset>"), this.get(key, "<unset>")
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            found += differences(a, b, f"{prefix}{key}.")
        elif _plain(a) != _plain(b):
            found.append(f"{prefix}{key}: run has {a!r}, this run {b!r}")
    return found


def _plain(value):
    # Values come back from JSON or a checkpoint: a tuple may have become a list.
    return [_plain(v) for v in value] if isinstance(value, (list, tuple)) else value
