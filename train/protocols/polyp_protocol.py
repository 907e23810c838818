"""Whole images resized to one square size: the data of the polyp protocol (``train.protocols``).

As PraNet's and the released SAMAug polyp loaders (``dataloader.py``) prepare them, with
``augmentation=False``:

- image: the whole RGB image resized to ``size`` x ``size`` (``transforms.Resize`` on a PIL
  image: bilinear, antialiased when shrinking; here torch's antialiased bilinear, which
  follows PIL's filter, on the image in [0, 1] rather than on its uint8 levels), then, with
  ``normalize="imagenet"``, ``(x - IMAGENET_MEAN) / IMAGENET_STD`` per channel;
- priors: resized the same way (the released ``aux`` image, loaded as RGB, resized, scaled to
  [0, 1] and *not* normalised); with ``clip_seg_prior`` the seg prior is clipped to [0, 1]
  first, as a prior saved as an 8-bit image holds it. Fusion (``train.fusion``) then adds
  them to the normalised image: ``image + aux`` in the released code, the seg prior in the
  green channel and the boundary prior in the blue one;
- target: the binary mask (``label > 0``) resized the same way, a float32 soft mask in
  [0, 1] (the released ground truth is an 8-bit image resized bilinearly, so soft at the
  edges; the structure losses take it as it is).

``rescale_batch`` is the multi-scale step of the training loop (the released
``F.upsample(..., mode="bilinear", align_corners=True)`` on images, ground truths and
priors); ``predict_resized`` the test-time path: the image prepared as above, the model's
output (a deep-supervised model's sum of maps) upsampled bilinearly (align_corners=False) to
the image's own size, sigmoid, and per image ``(p - min) / (max - min + 1e-8)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from precompute.types import SettingError
from train.data.datasets import EpochDataset, Split, StoreLike, image_float, prior_float
from train.protocols.protocol import Protocol

if TYPE_CHECKING:
    from precompute.store import SamaugStore
    from train.inference.predictor import Predictor
    from train.tasks import Task
    from train.training.config import TrainConfig

MINMAX_EPS = 1e-8  # the released test scripts' (p - min) / (max - min + 1e-8)
# torchvision's ImageNet statistics, what PraNet's and SAMAug's loaders normalise with.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SIZE_MULTIPLE = 32  # multi-scale sizes are rounded to multiples of this (the released code)


def resize_maps(maps: Tensor, size: int) -> Tensor:
    """``(..., C, h, w)`` float -> ``(..., C, size, size)``: bilinear at pixel centres
    (align_corners=False), antialiased when shrinking (PIL's ``Image.resize`` BILINEAR)."""
    lead = maps.shape[:-3]
    flat = maps.reshape(-1, *maps.shape[-3:]).float()
    out = F.interpolate(flat, (size, size), mode="bilinear", align_corners=False, antialias=True)
    return out.reshape(*lead, maps.shape[-3], size, size)


def normalize_image(image: Tensor, normalize: str) -> Tensor:
    """``(..., 3, H, W)`` RGB in [0, 1] -> the model's image input: unchanged for "unit",
    ``(x - IMAGENET_MEAN) / IMAGENET_STD`` per channel for "imagenet"."""
    if normalize == "unit":
        return image
    if normalize != "imagenet":
        raise ValueError(f"unknown normalize {normalize!r}; valid: 'unit', 'imagenet'")
    mean = torch.tensor(IMAGENET_MEAN, dtype=image.dtype, device=image.device)[:, None, None]
    std = torch.tensor(IMAGENET_STD, dtype=image.dtype, device=image.device)[:, None, None]
    return (image - mean) / std


def prepare_resized(
    image: Tensor,
    seg_prior: Tensor,
    boundary_prior: Tensor,
    size: int,
    normalize: str = "imagenet",
    clip_seg_prior: bool = True,
) -> dict[str, Tensor]:
    """A whole image and its priors as the model sees them under a resize protocol.

    image ``(3, H, W)`` float32 in [0, 1]; seg_prior, boundary_prior ``(1, H, W)`` float32 as
    stored. Returns ``image`` ``(3, size, size)`` (normalised), ``seg_prior`` (clipped to
    [0, 1] with ``clip_seg_prior``) and ``boundary_prior`` ``(1, size, size)``, float32.
    """
    seg = seg_prior.clamp(0, 1) if clip_seg_prior else seg_prior
    maps = resize_maps(torch.cat([image, seg, boundary_prior]), size)
    return {
        "image": normalize_image(maps[:3], normalize),
        "seg_prior": maps[3:4],
        "boundary_prior": maps[4:5],
    }


def rescale_batch(batch: dict, size: int | None) -> dict:
    """A training batch at another square size (the multi-scale step): ``image``,
    ``seg_prior``, ``boundary_prior`` ``(B, C, S, S)`` and the soft ``target`` ``(B, S, S)``
    resized bilinearly with align_corners=True, as the released code does; other keys kept.
    ``size`` None: the batch itself."""
    if size is None:
        return batch
    resized = dict(batch)
    for key in ("image", "seg_prior", "boundary_prior"):
        resized[key] = F.interpolate(batch[key], (size, size), mode="bilinear", align_corners=True)
    resized["target"] = F.interpolate(
        batch["target"][:, None], (size, size), mode="bilinear", align_corners=True
    )[:, 0]
    return resized


class ResizedDataset(EpochDataset):
    """Whole training images of a samaug store, resized to ``size`` squared (module doc).

    Arguments:
      store: the store (``train.data.datasets.StoreDataset``).
      split: a split name, or a list of image IDs.
      size: the side of the square (352 in PraNet and SAMAug).
      normalize: "imagenet" or "unit" (``normalize_image``).
      clip_seg_prior: clip the seg prior to [0, 1] before resizing.
      samples_per_epoch: items per epoch (default: one per image); item ``i`` of epoch ``e``
        is image ``ids[(e * samples_per_epoch + i) % len(ids)]``, so fewer items than images
        go through all of them over the epochs.
      seed: non-negative; the loader's shuffling (``make_loader``) draws from it.

    Items: ``image`` (3, S, S) float32, ``seg_prior`` and ``boundary_prior`` (1, S, S)
    float32, ``target`` (S, S) float32 soft mask in [0, 1], ``image_id`` (str). An index is
    an int (the epoch from ``set_epoch``) or an ``(epoch, index)`` pair. Nothing is random:
    the released polyp script trains with ``augmentation=False``.
    """

    def __init__(
        self,
        store: StoreLike,
        split: Split,
        size: int = 352,
        normalize: str = "imagenet",
        clip_seg_prior: bool = True,
        samples_per_epoch: int | None = None,
        seed: int = 0,
    ) -> None:
        if size < 1:
            raise ValueError(f"size must be positive, not {size}")
        normalize_image(torch.zeros(3, 1, 1), normalize)  # refuses an unknown name now
        super().__init__(store, split, samples_per_epoch, seed)
        self.size = int(size)
        self.normalize = normalize
        self.clip_seg_prior = bool(clip_seg_prior)

    def __getitem__(self, index: int | tuple[int, int]) -> dict:
        epoch, index = self.position(index)
        image_id = self.ids[(epoch * len(self) + index) % len(self.ids)]
        read = self.store.read
        item = prepare_resized(
            torch.from_numpy(image_float(read(image_id, "image"))),
            torch.from_numpy(prior_float(read(image_id, "seg_prior"))),
            torch.from_numpy(prior_float(read(image_id, "boundary_prior"))),
            self.size,
            self.normalize,
            self.clip_seg_prior,
        )
        mask = torch.from_numpy((self.read_label(image_id) > 0).astype(np.float32))
        item["target"] = resize_maps(mask[None], self.size)[0]
        item["image_id"] = image_id
        return item


def minmax(probs: Tensor) -> Tensor:
    """Per image of ``(B, K, H, W)``, ``(p - min) / (max - min + 1e-8)`` over all its values:
    the released test scripts' normalisation (a constant map becomes all zeros)."""
    flat = probs.flatten(1)
    low = flat.amin(1)[:, None, None, None]
    high = flat.amax(1)[:, None, None, None]
    return (probs - low) / (high - low + MINMAX_EPS)


@torch.no_grad()
def predict_resized(model: nn.Module, x: Tensor, out_size: tuple[int, int]) -> Tensor:
    """The resize protocol's test-time prediction of prepared inputs ``x``
    ``(B, C, S, S)``: ``model(x)`` (for a deep-supervised model the sum of its maps),
    upsampled to ``out_size`` (bilinear, align_corners=False), sigmoid, then ``minmax`` per
    image. Returns ``(B, K, H, W)`` float32 in [0, 1] on ``x``'s device. The model runs in
    eval mode; its mode is restored afterwards."""
    param = next(model.parameters(), None)
    device = param.device if param is not None else x.device
    was_training = model.training
    model.eval()
    try:
        logits = model(x.to(device)).float()
    finally:
        model.train(was_training)
    logits = F.interpolate(logits, out_size, mode="bilinear", align_corners=False)
    return minmax(logits.sigmoid()).to(x.device)


def scale_sizes(size: int, scales: tuple[float, ...]) -> tuple[int | None, ...]:
    """The training sizes of one batch of a resize protocol, in order: ``None`` for rate 1
    (as loaded) and ``int(round(size * rate / 32) * 32)`` for every other rate (the released
    code's rounding: Python's, halves to even). 352 gives 256, 352, 448."""
    return tuple(
        None if rate == 1 else int(round(size * rate / SIZE_MULTIPLE) * SIZE_MULTIPLE)
        for rate in scales
    )


@dataclass(frozen=True)
class ResizeProtocol(Protocol):
    """Whole images resized to ``patch_size`` squared (module doc): multi-scale training,
    tested on the resized image, the output brought back to the image's size."""

    def check(self, config: TrainConfig) -> None:
        super().check(config)
        if config.loss == "task":
            raise SettingError(
                f"--protocol {self.name} trains on soft (resized) masks, which the task "
                "loss does not take; use --loss structure, structure_released or "
                "structure_unweighted"
            )

    def training_data(
        self, config: TrainConfig, task: Task, store: SamaugStore, ids: list[str]
    ) -> ResizedDataset:
        return ResizedDataset(
            store,
            ids,
            size=config.patch_size,
            normalize=self.normalize,
            clip_seg_prior=self.clip_seg_prior,
            samples_per_epoch=config.samples_per_epoch,
            seed=config.seed,
        )

    def training_sizes(self, config: TrainConfig) -> tuple[int | None, ...]:
        return scale_sizes(config.patch_size, config.scales)

    def prepare(self, item: dict, size: int) -> dict:
        prepared = prepare_resized(
            item["image"],
            item["seg_prior"],
            item["boundary_prior"],
            size,
            self.normalize,
            self.clip_seg_prior,
        )
        return {k: v.unsqueeze(0) for k, v in prepared.items()}

    def predict(self, predictor: Predictor, x: Tensor, image_size: tuple[int, int]) -> Tensor:
        return predict_resized(predictor.net, x, image_size)
