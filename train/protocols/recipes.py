"""Recipes: an optimiser and its learning-rate schedule (``train.protocols`` names them).

============  =======  =======  =====  ======  ======  ==========================  ========
recipe        optim.   lr       wd     batch   epochs  schedule                    clip
============  =======  =======  =====  ======  ======  ==========================  ========
patches       AdamW    1e-3     1e-4   8       100     2 warm-up epochs, cosine    none
samaug_polyp  Adam     5e-5     0      8       39      x0.2 from epoch 21          none
pranet        Adam     1e-4     0      16      19      x0.1 every 50 epochs        0.5
============  =======  =======  =====  ======  ======  ==========================  ========

The optimiser steps counted by the schedules are *optimizer steps* (a joint run takes two per
batch and scale, ``train.training.optim``). ``samaug_polyp`` is
``Polyp_HSNet_SAMAug_Train_and_Test.py`` of the released SAMAug code (``Adam(lr=5e-5,
weight_decay=0)``, batch 8, ``for epoch in range(1, 40)``: 39 epochs,
``MultiStepLR(milestones=[20], gamma=0.2)`` stepped after each epoch). ``pranet`` is PraNet's
``MyTrain.py`` (``Adam(lr=1e-4)``, batch 16, ``range(1, 20)``: 19 epochs, ``clip_gradient``
clamping every gradient element to [-0.5, 0.5], ``adjust_lr`` decaying by 0.1 every 50
epochs, so never within its 19). ``patches`` is this project's.
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
):
    RECIPES.add(_recipe.name, _recipe)


def get_recipe(name: str) -> Recipe:
    """The recipe called ``name`` (SettingError listing the names otherwise)."""
    return RECIPES.get(name)
