"""Losses (which task uses which: ``train.tasks``), with pixels marked IGNORE_INDEX (padding)
left out of every term.

- instance (3 classes: background, interior, boundary): cross-entropy + soft Dice
  (mean over the 3 classes of 1 - 2|P∩G| / (|P| + |G|), on softmax probabilities).
- binary (polyp; one logit channel): BCE + soft IoU (1 - |P∩G| / |P∪G| on the sigmoid),
  the structure loss of PraNet without its boundary weighting.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .targets import IGNORE_INDEX

EPS = 1.0  # smoothing of the soft Dice / IoU ratios (in pixels)


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
