"""Recipes: a training pipeline's optimiser, schedule, loss and test rule (``train.protocols``).

============  =====  ====  ====  =====  ======  ==================  ====  ====================  ====
recipe        optim  lr    wd    batch  epochs  schedule            clip  loss                  test
============  =====  ====  ====  =====  ======  ==================  ====  ====================  ====
patches       AdamW  1e-3  1e-4  8      100     2 warm-up, cosine   none  the protocol's        sum
samaug_polyp  Adam   5e-5  0     8      39      x0.2 from epoch 21  none  structure_unweighted  sum
pranet        Adam   1e-4  0     16     19      x0.1^(e // 50)      0.5   structure_released    last
============  =====  ====  ====  =====  ======  ==================  ====  ====================  ====

The optimiser steps counted by the schedules are *optimizer steps* (a joint run takes two per
batch and scale, ``train.training.optim``). ``samaug_polyp`` is ``Polyp_HSNet_SAMAug.py`` of
the released SAMAug code, which trains HSNet (``--model hsnet``): ``Adam(lr=5e-5,
weight_decay=0)``, batch 8, ``for epoch in range(1, 40)`` (39 epochs),
``MultiStepLR(milestones=[20], gamma=0.2)`` stepped after each epoch, no clipping, its
``structure_loss`` (``reduce='none'`` makes the BCE an unweighted mean, and its IoU has no
weights: ``structure_unweighted``), tested on the sum of the four maps. ``pranet`` is
PraNet's ``MyTrain.py`` and ``MyTest.py``: ``Adam(lr=1e-4)``, batch 16, ``range(1, 20)`` (19
epochs), ``clip_gradient`` clamping every gradient element to [-0.5, 0.5], ``adjust_lr``
multiplying the rate by ``0.1 ** (epoch // 50)`` at every epoch (from epoch 50 on it falls
every epoch; never within 19), its ``structure_loss`` (the same ``reduce='none'`` makes its
BCE unweighted while its IoU is weighted: ``structure_released``), tested on ``res2``, the
last lateral map, alone. ``patches`` is this project's.
"""

from __future__ import annotations

from dataclasses import dataclass

from precompute.registry import Registry


@dataclass(frozen=True)
class Recipe:
    """An optimiser and its learning-rate schedule (module table).

    lr_schedule "cosine": linear warm-up over ``warmup_epochs``, then cosine decay to zero at
    the last optimizer step; "multistep": the learning rate times ``lr_gamma`` for every
    epoch of ``lr_milestones`` (0-based epoch indices) the run has reached, constant
    otherwise (no milestones: constant); "compound": PraNet's ``adjust_lr``, called at the
    start of every epoch ``e`` (numbered from 1) and multiplying the current rate by
    ``lr_gamma ** (e // lr_milestones[0])``, so from epoch ``lr_milestones[0]`` on the rate
    falls again every epoch. grad_clip: every gradient element clamped to
    [-grad_clip, grad_clip] before each step (0: none). loss: the loss the pipeline trains
    with (None: the protocol's). test_maps: how a deep-supervised model's maps make the test
    prediction ("sum" or "last").
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
    loss: str | None = None
    test_maps: str = "sum"


RECIPES: Registry[Recipe] = Registry("recipe")
for _recipe in (
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
        loss="structure_unweighted",
        test_maps="sum",
    ),
    Recipe(
        name="pranet",
        source="PraNet's released MyTrain.py",
        optimizer="adam",
        lr=1e-4,
        weight_decay=0.0,
        batch_size=16,
        epochs=19,
        lr_schedule="compound",
        lr_milestones=(50,),
        lr_gamma=0.1,
        grad_clip=0.5,
        loss="structure_released",
        test_maps="last",
    ),
):
    RECIPES.add(_recipe.name, _recipe)


def get_recipe(name: str) -> Recipe:
    """The recipe called ``name`` (SettingError listing the names otherwise)."""
    return RECIPES.get(name)
