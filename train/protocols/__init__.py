"""Training and test protocols: how a run's data is shaped and which recipe trains on it.

A *protocol* fixes what a run sees: patches or whole resized images, the input's
normalisation, how priors are prepared, the data augmentation, the loss and how a test image
is predicted. A *recipe* fixes the optimiser and its schedule. Every value either sets is a
``TrainConfig`` field (``None`` there means "the protocol's" or "the recipe's") except the
fixed ones of ``Protocol``, which ``TrainConfig.to_dict`` records beside the fields as
``protocol_settings``, so each run's ``config.json`` spells out all of them.

==========  =====================================================================  ===========
protocol    what it is                                                             source
==========  =====================================================================  ===========
patches     random 256 x 256 patches (flips, 90-degree rotations, scale, colour    this
            jitter), image in [0, 1], priors as stored; the task's loss; test by   project's
            overlapping windows. Every task (glands, nuclei, binary).              own
polyp       whole images resized to 352 x 352, ImageNet normalisation, the seg     PraNet and
            prior clipped to [0, 1] (as the released prior images hold it) and     the released
            both priors added after normalisation; no augmentation; multi-scale    SAMAug polyp
            training at 0.75 / 1 / 1.25 of 352 rounded to multiples of 32          script
            (bilinear, align_corners=True); PraNet's structure loss summed over
            the deep-supervision maps; test: the image resized to 352, the model's
            summed output upsampled to the image's size (bilinear,
            align_corners=False), sigmoid, per-image min-max normalisation.
            Binary task only.
==========  =====================================================================  ===========

Recipes (the optimiser steps counted by the schedules are *optimizer steps*: a joint run
takes two per batch and scale, see ``train.training.loop``):

============  =======  =======  =====  ======  ======  ==========================  ========
recipe        optim.   lr       wd     batch   epochs  schedule                    clip
============  =======  =======  =====  ======  ======  ==========================  ========
patches       AdamW    1e-3     1e-4   8       100     2 warm-up epochs, cosine    none
samaug_polyp  Adam     5e-5     0      8       39      x0.2 from epoch 21          none
pranet        Adam     1e-4     0      16      19      x0.1 every 50 epochs        0.5
============  =======  =======  =====  ======  ======  ==========================  ========

``samaug_polyp`` is ``Polyp_HSNet_SAMAug_Train_and_Test.py`` of the released SAMAug code
(``Adam(lr=5e-5, weight_decay=0)``, batch 8, ``for epoch in range(1, 40)``: 39 epochs,
``MultiStepLR(milestones=[20], gamma=0.2)`` stepped after each epoch). ``pranet`` is
PraNet's ``MyTrain.py`` (``Adam(lr=1e-4)``, batch 16, ``range(1, 20)``: 19 epochs,
``clip_gradient`` clamping every gradient element to [-0.5, 0.5], ``adjust_lr`` decaying by
0.1 every 50 epochs, so never within its 19). ``patches`` is this project's.

Datasets choose their protocol (``DATASET_PROTOCOLS``): the polyp stores (``kvasir``,
``polyp``) the ``polyp`` protocol, every other the ``patches`` one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal, get_args

from precompute import checks
from precompute.types import SettingError

Optimizer = Literal["adamw", "adam"]
LrSchedule = Literal["cosine", "multistep"]
JointUpdate = Literal["step", "mean"]
# The losses a run can train with (``train.losses.make_loss``): "task" is the task's own
# (``train.tasks``); the structure losses are binary (one sigmoid channel).
Loss = Literal["task", "structure", "structure_released", "structure_unweighted"]

OPTIMIZERS: tuple[str, ...] = get_args(Optimizer)
LR_SCHEDULES: tuple[str, ...] = get_args(LrSchedule)
JOINT_UPDATES: tuple[str, ...] = get_args(JointUpdate)
LOSSES: tuple[str, ...] = get_args(Loss)

# torchvision's ImageNet statistics, what PraNet's and SAMAug's loaders normalise with.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SIZE_MULTIPLE = 32  # multi-scale sizes are rounded to multiples of this (the released code)


@dataclass(frozen=True)
class Recipe:
    """An optimiser and its learning-rate schedule (module table).

    lr_schedule "cosine": linear warm-up over ``warmup_epochs``, then cosine decay to zero at
    the last optimizer step; "multistep": the learning rate times ``lr_gamma`` for every
    epoch of ``lr_milestones`` (0-based epoch indices) the run has reached, constant
    otherwise (no milestones: constant). grad_clip: every gradient element clamped to
    [-grad_clip, grad_clip] before each step (0: none).
    """

    name: str
    source: str
    optimizer: str
    lr: float
    weight_decay: float
    batch_size: int
    epochs: int
    lr_schedule: str
    warmup_epochs: int = 0
    lr_milestones: tuple[int, ...] = ()
    lr_gamma: float = 1.0
    grad_clip: float = 0.0


@dataclass(frozen=True)
class Protocol:
    """What a run's data looks like and how its test images are predicted (module table).

    Fields a run may change (``TrainConfig`` fields of the same name): ``patch_size`` (the
    patch side, or the side whole images are resized to), ``scales``, ``loss``, ``recipe``,
    ``val_fraction``. Fixed: ``input`` ("patches": random patches; "resize": whole images
    resized to ``patch_size`` squared), ``normalize`` ("unit": RGB in [0, 1]; "imagenet":
    then ``(x - IMAGENET_MEAN) / IMAGENET_STD``), ``clip_seg_prior`` (the seg prior clipped
    to [0, 1] before fusion), ``augment`` (``train.data.augment``'s random augmentation of
    patches), ``test`` ("windows": overlapping ``patch_size`` windows, Gaussian blending;
    "resize": the whole image resized, the output upsampled to the image's size, sigmoid,
    per-image min-max), ``tasks`` (the tasks it can train).
    """

    name: str
    source: str
    input: str
    normalize: str
    clip_seg_prior: bool
    augment: bool
    test: str
    tasks: tuple[str, ...]
    patch_size: int
    scales: tuple[float, ...]
    loss: str
    recipe: str
    val_fraction: float

    def settings(self) -> dict:
        """Every setting as plain JSON values (recorded with each run's config)."""
        return asdict(self)


RECIPES: dict[str, Recipe] = {
    recipe.name: recipe
    for recipe in (
        Recipe(
            name="patches",
            source="this project's",
            optimizer="adamw",
            lr=1e-3,
            weight_decay=1e-4,
            batch_size=8,
            epochs=100,
            lr_schedule="cosine",
            warmup_epochs=2,
        ),
        Recipe(
            name="samaug_polyp",
            source="SAMAug's released Polyp_HSNet_SAMAug_Train_and_Test.py",
            optimizer="adam",
            lr=5e-5,
            weight_decay=0.0,
            batch_size=8,
            epochs=39,
            lr_schedule="multistep",
            lr_milestones=(20,),
            lr_gamma=0.2,
        ),
        Recipe(
            name="pranet",
            source="PraNet's released MyTrain.py",
            optimizer="adam",
            lr=1e-4,
            weight_decay=0.0,
            batch_size=16,
            epochs=19,
            lr_schedule="multistep",
            lr_milestones=(50,),
            lr_gamma=0.1,
            grad_clip=0.5,
        ),
    )
}

PROTOCOLS: dict[str, Protocol] = {
    protocol.name: protocol
    for protocol in (
        Protocol(
            name="patches",
            source="this project's own",
            input="patches",
            normalize="unit",
            clip_seg_prior=False,
            augment=True,
            test="windows",
            tasks=("glands", "nuclei", "binary"),
            patch_size=256,
            scales=(1.0,),
            loss="task",
            recipe="patches",
            val_fraction=0.1,
        ),
        Protocol(
            name="polyp",
            source="PraNet and SAMAug's released polyp script",
            input="resize",
            normalize="imagenet",
            clip_seg_prior=True,
            augment=False,
            test="resize",
            tasks=("binary",),
            patch_size=352,
            scales=(0.75, 1.0, 1.25),
            loss="structure",
            recipe="samaug_polyp",
            val_fraction=0.0,
        ),
    )
}

DEFAULT_PROTOCOL = "patches"


def get_protocol(name: str) -> Protocol:
    """The protocol called ``name`` (SettingError listing the names otherwise)."""
    return PROTOCOLS[checks.choice("--protocol", name, PROTOCOLS)]


def get_recipe(name: str) -> Recipe:
    """The recipe called ``name`` (SettingError listing the names otherwise)."""
    return RECIPES[checks.choice("--recipe", name, RECIPES)]


def protocol_for_dataset(dataset: str) -> str:
    """The protocol a dataset reader's stores train under by default: its entry's in the
    table of datasets (``precompute.readers.DATASETS``), else DEFAULT_PROTOCOL."""
    from precompute.readers import DATASETS

    return DATASETS.get(dataset).protocol if dataset in DATASETS else DEFAULT_PROTOCOL


def scale_sizes(size: int, scales: tuple[float, ...]) -> list[int | None]:
    """The training sizes of one batch of a resize protocol, in order: ``None`` for rate 1
    (as loaded) and ``int(round(size * rate / 32) * 32)`` for every other rate (the released
    code's rounding: Python's, halves to even). 352 gives 256, 352, 448."""
    return [
        None if rate == 1 else int(round(size * rate / SIZE_MULTIPLE) * SIZE_MULTIPLE)
        for rate in scales
    ]


def check_scales(scales) -> tuple[float, ...]:
    """A non-empty list of finite scale factors > 0, as a tuple (SettingError otherwise)."""
    if not isinstance(scales, (list, tuple)) or not scales:
        raise SettingError(f"--scales must be a list of factors like 0.75,1,1.25, not {scales!r}")
    return tuple(checks.number("--scales", s, positive=True) for s in scales)
