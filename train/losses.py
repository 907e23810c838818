"""Losses (which task uses which: ``train.tasks``; which a run trains with: its ``loss``
setting, ``make_loss``), with pixels marked IGNORE_INDEX (padding) left out of every term.

- instance (3 classes: background, interior, boundary): cross-entropy + soft Dice
  (mean over the 3 classes of 1 - 2|P∩G| / (|P| + |G|), on softmax probabilities).
- binary (polyp; one logit channel): BCE + soft IoU (1 - |P∩G| / |P∪G| on the sigmoid),
  over the whole batch: the structure loss of PraNet without its boundary weighting.
- structure losses (binary; ``structure_loss``): PraNet's, per image, in three variants:
  "structure" (the paper's formula: boundary-weighted BCE and IoU), "structure_released"
  (as PraNet's ``MyTrain.py`` computes it: the BCE an unweighted batch mean) and
  "structure_unweighted" (as SAMAug's polyp script computes it: no weights at all).

Targets come as a patch dataset makes them, ``(B, H, W)`` int64 in {0, 1, 2} or
IGNORE_INDEX, or as a resize protocol makes them (``train.protocols.polyp_protocol``),
``(B, H, W)`` float32 soft masks in [0, 1]; the structure losses take both, the task losses the
first.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from train.targets import IGNORE_INDEX

EPS = 1.0  # smoothing of the soft Dice / IoU ratios (in pixels)

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def instance_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """logits (B, 3, H, W) float; target (B, H, W) int64 in {0, 1, 2} or IGNORE_INDEX."""
    ce = F.cross_entropy(logits.float(), target, ignore_index=IGNORE_INDEX)
    valid = (target != IGNORE_INDEX).unsqueeze(1)
    probs = logits.float().softmax(dim=1) * valid
    onehot = F.one_hot(target.clamp(min=0), logits.shape[1]).permute(0, 3, 1, 2) * valid
    inter = (probs * onehot).sum(dim=(0, 2, 3))
    total = probs.sum(dim=(0, 2, 3)) + onehot.sum(dim=(0, 2, 3))
    dice = 1 - (2 * inter + EPS) / (total + EPS)
    return ce + dice.mean()


def binary_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """logits (B, 1, H, W) float; target (B, H, W) int64 in {0, 1} or IGNORE_INDEX."""
    logits = logits.float()[:, 0]
    valid = target != IGNORE_INDEX
    truth = (target == 1).float()
    bce = F.binary_cross_entropy_with_logits(logits[valid], truth[valid])
    probs = logits.sigmoid() * valid
    truth = truth * valid
    inter = (probs * truth).sum()
    union = probs.sum() + truth.sum() - inter
    return bce + 1 - (inter + EPS) / (union + EPS)


def boundary_weights(mask: torch.Tensor) -> torch.Tensor:
    """The structure loss's pixel weights, ``1 + 5 * |avg_pool(mask) - mask|`` with a 31x31
    mean (stride 1, zero padding 15, padding counted): 1 far from any boundary (inside or
    outside the object), approaching 6 right beside it.

    ``mask``: ``(B, C, H, W)`` float in {0, 1}. Returns the same shape, float in [1, 6].
    """
    return 1 + 5 * torch.abs(F.avg_pool2d(mask, kernel_size=31, stride=1, padding=15) - mask)


def structure_loss(
    logits: torch.Tensor,
    mask: torch.Tensor,
    valid: torch.Tensor | None = None,
    *,
    released_bce: bool = False,
    boundary_weighted: bool = True,
) -> torch.Tensor:
    """PraNet's loss (from F3Net): weighted binary cross-entropy plus weighted IoU.

    The weight ``w`` of a pixel (``boundary_weights``) grows near the object's boundary. With
    ``p = sigmoid(logits)``, ``m = mask`` and sums over the pixels of one image and channel:

        wbce = sum(w * bce(logits, m)) / sum(w)
        wiou = 1 - (sum(w * p * m) + 1) / (sum(w * (p + m)) - sum(w * p * m) + 1)

    and the loss is the mean of ``wbce + wiou`` over images and channels. For a
    deep-supervised PraNet, sum it over ``PraNet.forward_all``'s maps.

    Arguments:
      logits: ``(B, C, H, W)`` float logits.
      mask: ``(B, C, H, W)`` float target in [0, 1]; each channel an independent binary mask
        (soft at the edges where it was resized, as the released loaders make it).
      valid: optional ``(B, 1 or C, H, W)`` float or bool, 1 on real pixels and 0 on padding.
        Invalid pixels count as background in the pooled mask and get weight 0, so a padded
        image gives exactly the loss of the unpadded one (``avg_pool`` already counts the
        outside of the image as zeros); with ``valid`` all ones nothing changes. An image
        without a valid pixel contributes 0.
      released_bce: reproduce the released code instead of the paper's formula. The released
        ``MyTrain.py`` passes ``reduce='none'`` (the deprecated boolean argument, which a
        string turns on) where ``reduction='none'`` was meant, so its BCE is one unweighted
        mean over all pixels of the batch, added to each image's weighted IoU.
      boundary_weighted: False sets every weight ``w`` to 1. With ``released_bce`` this is
        the loss of the SAMAug authors' polyp script (``Polyp_HSNet_SAMAug_Train_and_Test.py``,
        which trains HSNet): the unweighted BCE mean and an unweighted IoU.

    Returns a scalar tensor.
    """
    if valid is not None:
        valid = valid.to(logits.dtype)
        mask = mask * valid
    weight = boundary_weights(mask) if boundary_weighted else torch.ones_like(mask)
    if valid is not None:
        weight = weight * valid
    bce = F.binary_cross_entropy_with_logits(logits, mask, reduction="none")
    if released_bce:
        counted = torch.ones_like(bce) if valid is None else valid.expand_as(bce)
        wbce = (bce * counted).sum() / counted.sum().clamp_min(1)  # one number for the batch
    else:
        # The clamp acts only on an image with no valid pixel (otherwise sum(w) >= 1).
        wbce = (weight * bce).sum(dim=(2, 3)) / weight.sum(dim=(2, 3)).clamp_min(1e-12)
    prob = torch.sigmoid(logits)
    inter = (prob * mask * weight).sum(dim=(2, 3))
    union = ((prob + mask) * weight).sum(dim=(2, 3))
    wiou = 1 - (inter + 1) / (union - inter + 1)
    return (wbce + wiou).mean()


def binary_mask(target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(mask, valid)`` of a binary target, both ``(B, 1, H, W)`` float: an int64 target
    gives ``mask = target == 1`` and ``valid = target != IGNORE_INDEX``; a float (soft)
    target is the mask itself, every pixel valid (``valid`` None)."""
    if target.is_floating_point():
        return target.unsqueeze(1).float(), None
    return (target == 1).unsqueeze(1).float(), (target != IGNORE_INDEX).unsqueeze(1).float()


# The structure-loss variants a run can name (``TrainConfig.loss``), as structure_loss options.
STRUCTURE_VARIANTS = {
    "structure": {},
    "structure_released": {"released_bce": True},
    "structure_unweighted": {"released_bce": True, "boundary_weighted": False},
}


def make_loss(
    name: str, task_loss: LossFn
) -> Callable[[Sequence[torch.Tensor], torch.Tensor], torch.Tensor]:
    """The loss of a run: ``(outputs, target) -> scalar``, where ``outputs`` are the model's
    logit maps (one, or a deep-supervised model's several, each ``(B, K, H, W)``) and the
    loss is summed over them (PraNet's deep supervision). ``name``: "task" (``task_loss``)
    or one of ``STRUCTURE_VARIANTS`` (binary, one channel)."""
    if name == "task":
        one = task_loss
    else:
        options = STRUCTURE_VARIANTS[name]

        def one(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            mask, valid = binary_mask(target)
            return structure_loss(logits.float(), mask, valid, **options)

    def loss(outputs: Sequence[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        return sum(
            (one(logits, target) for logits in outputs), torch.zeros((), device=target.device)
        )

    return loss
