"""Training and evaluation data streamed from a samaug store.

Everything is read through ``precompute.store``'s reader API (``open_store``, ``ids``,
``read`` with a window, ``image_attrs``), so a random patch fetches only the chunks it
covers, from a local path or a read-only fsspec URL (``http://...``).

Conventions:

- Tensors: ``image`` (3, h, w) float32 RGB in [0, 1] (uint8 / 255); ``seg_prior`` and
  ``boundary_prior`` (1, h, w) float32 (as stored; the boundary prior becomes fractional
  where a scale augmentation interpolates it); ``target`` (h, w) int64.
- Targets by task (``train.tasks``): ``glands`` and ``nuclei``: 0 background, 1 object
  interior, 2 object boundary; ``binary``: 0 background, 1 foreground. See
  ``train.targets`` for the boundary.
- Padding: an image smaller than the patch is padded at the bottom and right (before the
  flips and rotations move the padding around) with 0 in the image and both priors and
  ``IGNORE_INDEX`` (-100, the default ``ignore_index`` of ``torch.nn.CrossEntropyLoss``) in
  the target, so padded pixels add nothing to a loss that ignores them. A Dice-type loss
  must mask ``target == IGNORE_INDEX`` itself.
- Randomness: item ``i`` of epoch ``e`` draws everything (window, scale, flips, rotation,
  jitter) from ``np.random.default_rng((seed, e, i))``, so it is the same in any worker,
  any order, any run.

The datasets never pickle an open store: each process (a DataLoader worker, see
``train.data.loader``) opens its own on first use.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from precompute.store import SamaugStore, StoreAccess, access_of
from precompute.types import SamaugError
from train.data.augment import AugmentSettings, draw_scale, flip_rotate, jitter, resize
from train.targets import BOUNDARY_WIDTH, IGNORE_INDEX
from train.tasks import get_task


def image_float(image: np.ndarray) -> np.ndarray:
    """(h, w, 3) uint8 -> (3, h, w) float32 in [0, 1]."""
    return np.moveaxis(image, -1, 0).astype(np.float32) / np.float32(255)


def prior_float(prior: np.ndarray) -> np.ndarray:
    """(h, w) float32 or uint8 -> (1, h, w) float32."""
    return np.asarray(prior, np.float32)[None]


def tile_count(shape: tuple[int, int], size: int) -> int:
    """Squares of side ``size`` that tile an image of ``shape`` (H, W): ceil(H/size) *
    ceil(W/size)."""
    return math.ceil(shape[0] / size) * math.ceil(shape[1] / size)


# --------------------------------------------------------------------------- datasets

StoreLike = SamaugStore | StoreAccess | str | Path  # an opened store, how to reach one, or where
Split = str | Sequence[str]  # a split name, or image IDs


class StoreDataset(Dataset):
    """Items of a samaug store's images; never pickles the store open (see module doc).

    store: the opened store (``precompute.store.open_store``), a ``StoreAccess`` or a bare
    location. A DataLoader worker opens it again from its ``access`` (location, fsspec
    options, cache bound to its root metadata: no request to reopen it, and with a cache
    nothing read twice over the network).
    split: a split name, or a list of image IDs.
    """

    def __init__(self, store: StoreLike, split: Split) -> None:
        store = store if isinstance(store, SamaugStore) else access_of(store).open()
        self.access: StoreAccess = store.access
        if isinstance(split, str):
            ids = store.ids(split)
            if not ids:
                raise SamaugError(
                    f"{store.location}: no complete images in split {split!r}; the store "
                    f"has {store.splits() or 'no complete images'}"
                )
        else:
            ids = list(split)
            unknown = sorted(set(ids) - set(store.ids()))
            if unknown or not ids:
                raise SamaugError(
                    f"{store.location}: no complete image(s) {unknown or ids}; "
                    "list them with `samaug store info`"
                )
        self.ids: list[str] = ids
        self._store: SamaugStore | None = store
        self._shapes: dict[str, tuple[int, int]] = {}

    @property
    def store(self) -> SamaugStore:
        if self._store is None:
            self._store = self.access.open()
        return self._store

    @property
    def store_location(self) -> str:
        return self.access.location

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_store"] = None
        return state

    def shape(self, image_id: str) -> tuple[int, int]:
        """(H, W) of an image, from its attributes (cached)."""
        if image_id not in self._shapes:
            height, width = self.store.image_attrs(image_id)["shape"]
            self._shapes[image_id] = (int(height), int(width))
        return self._shapes[image_id]

    def read_label(self, image_id: str, window=None) -> np.ndarray:
        try:
            return self.store.read(image_id, "label", window)
        except KeyError as err:
            raise SamaugError(
                f"{self.store_location}: image {image_id!r} has no label; train and evaluate "
                "on annotated splits only"
            ) from err


class EpochDataset(StoreDataset):
    """A training dataset whose items depend on the epoch: ``samples_per_epoch`` items an
    epoch (default: one per image), indexed by an int (the epoch from ``set_epoch``) or an
    ``(epoch, index)`` pair (``make_loader``'s sampler). ``seed``: non-negative."""

    def __init__(
        self, store: StoreLike, split: Split, samples_per_epoch: int | None, seed: int
    ) -> None:
        if seed < 0:
            raise ValueError(f"seed must be non-negative, not {seed}")
        if samples_per_epoch is not None and samples_per_epoch < 1:
            raise ValueError(f"samples_per_epoch must be positive, not {samples_per_epoch}")
        super().__init__(store, split)
        self.samples_per_epoch = samples_per_epoch
        self.seed = int(seed)
        self.epoch = 0

    def __len__(self) -> int:
        return self.samples_per_epoch or len(self.ids)

    def set_epoch(self, epoch: int) -> None:
        """Use the draws of this epoch for plain int indices (and in make_loader)."""
        self.epoch = int(epoch)

    def position(self, index: int | tuple[int, int]) -> tuple[int, int]:
        """``(epoch, index)`` of an item index; IndexError outside the epoch's items."""
        epoch, index = index if isinstance(index, tuple) else (self.epoch, index)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        return int(epoch), int(index)


class PatchDataset(EpochDataset):
    """Random, augmented training patches from a samaug store.

    Arguments:
      store: the store (``StoreDataset``).
      split: a split name, or a list of image IDs.
      patch_size: side of the square patches (smaller images are padded, see module doc).
      task: a name from ``train.tasks.list_tasks()`` (``task_for_dataset``): its target.
      augment: ``AugmentSettings``; ``AugmentSettings(enabled=False)`` for none.
      samples_per_epoch: items per epoch. Default: as many as tile every image once with
        ``patch_size`` squares (the sum over images of ceil(H / P) * ceil(W / P)), item ``i``
        a patch of the image whose tile ``i`` is (images in ID order, each drawn in
        proportion to its area), so an epoch covers the data about once. Given: that many
        items, item ``i`` a patch of image ``ids[i % len(ids)]``.
      seed: non-negative; with the epoch and the index it fixes every random choice.
      boundary_width: width in pixels of the instance boundary class.

    Items: a dict with ``image`` (3, P, P) float32 [0, 1], ``seg_prior`` and
    ``boundary_prior`` (1, P, P) float32, ``target`` (P, P) int64, ``image_id`` (str) and
    ``window`` (4,) int64, the (y0, x0, y1, x1) region of the image the patch was read from.
    An index is an int (the epoch from ``set_epoch``) or an ``(epoch, index)`` pair.
    """

    def __init__(
        self,
        store: StoreLike,
        split: Split,
        patch_size: int = 256,
        task: str = "glands",
        augment: AugmentSettings = AugmentSettings(),  # noqa: B008 (frozen, so shared safely)
        samples_per_epoch: int | None = None,
        seed: int = 0,
        boundary_width: int = BOUNDARY_WIDTH,
    ) -> None:
        self.task = get_task(task)
        if patch_size < 1:
            raise ValueError(f"patch_size must be positive, not {patch_size}")
        if boundary_width < 1:
            raise ValueError(f"boundary_width must be at least 1, not {boundary_width}")
        super().__init__(store, split, samples_per_epoch, seed)
        self.task_name = task
        self.patch_size = int(patch_size)
        self.augment = augment
        self.boundary_width = int(boundary_width)
        # The first tile of each image, and the tiles of all: an epoch's default length.
        tiles = [tile_count(self.shape(i), self.patch_size) for i in self.ids]
        self._first_tile = np.cumsum([0, *tiles[:-1]])
        self.tiles = int(sum(tiles))

    def __len__(self) -> int:
        return self.samples_per_epoch or self.tiles

    def image_of(self, index: int) -> str:
        """The image item ``index`` of an epoch is a patch of (``samples_per_epoch``)."""
        if self.samples_per_epoch:
            return self.ids[index % len(self.ids)]
        return self.ids[int(np.searchsorted(self._first_tile, index, side="right")) - 1]

    def __getitem__(self, index: int | tuple[int, int]) -> dict:
        epoch, index = self.position(index)
        rng = np.random.default_rng((self.seed, epoch, index))
        return self._patch(self.image_of(index), rng)

    def _target(self, image_id: str, window: tuple[int, int, int, int]) -> np.ndarray:
        """The target of ``window``, computed on the label with a margin around it."""
        height, width = self.shape(image_id)
        y0, x0, y1, x1 = window
        margin = self.boundary_width if self.task.needs_context else 0
        outer = (max(0, y0 - margin), max(0, x0 - margin))
        outer_window = (*outer, min(height, y1 + margin), min(width, x1 + margin))
        target = self.task.target(self.read_label(image_id, outer_window), self.boundary_width)
        top, left = y0 - outer[0], x0 - outer[1]
        return target[top : top + y1 - y0, left : left + x1 - x0]

    def _patch(self, image_id: str, rng: np.random.Generator) -> dict:
        # numpy throughout (torch only to resize): torch's intra-op threads on tensors this
        # small cost more than they save, several times more on a busy machine.
        size, settings = self.patch_size, self.augment
        height, width = self.shape(image_id)
        scale = draw_scale(rng, settings)
        source = math.ceil(size / scale - 1e-9)
        src_h, src_w = min(height, source), min(width, source)
        y0 = int(rng.integers(0, height - src_h + 1))
        x0 = int(rng.integers(0, width - src_w + 1))
        window = (y0, x0, y0 + src_h, x0 + src_w)

        read = self.store.read
        maps = np.concatenate(
            [
                image_float(read(image_id, "image", window)),
                prior_float(read(image_id, "seg_prior", window)),
                prior_float(read(image_id, "boundary_prior", window)),
            ]
        )
        target = self._target(image_id, window)

        out_h = max(1, min(size, round(src_h * scale)))
        out_w = max(1, min(size, round(src_w * scale)))
        if (out_h, out_w) != (src_h, src_w):
            maps, target = resize(maps, target, (out_h, out_w))
        if settings.enabled:
            maps[:3] = jitter(maps[:3], rng, settings)

        padded = np.zeros((5, size, size), np.float32)
        padded[:, :out_h, :out_w] = maps
        padded_target = np.full((size, size), IGNORE_INDEX, np.int64)
        padded_target[:out_h, :out_w] = target
        maps, target = padded, padded_target
        if settings.enabled:
            maps, target = flip_rotate([maps, target], rng, settings)
        maps = torch.from_numpy(maps)
        return {
            "image": maps[:3],
            "seg_prior": maps[3:4],
            "boundary_prior": maps[4:5],
            "target": torch.from_numpy(target),
            "image_id": image_id,
            "window": torch.tensor(window, dtype=torch.int64),
        }


class WholeImageDataset(StoreDataset):
    """Whole images with their priors and labels, for evaluation (no augmentation).

    Items: ``image`` (3, H, W) float32 [0, 1], ``seg_prior`` and ``boundary_prior``
    (1, H, W) float32, ``image_id``, and for an annotated image ``label`` (H, W) int64
    instance labels (0 = background, what the metrics take) and, when ``task`` is given,
    ``target`` (H, W) int64 as in ``PatchDataset``. Sizes differ: use batch size 1.
    """

    def __init__(
        self,
        store: StoreLike,
        split: Split,
        task: str | None = None,
        boundary_width: int = BOUNDARY_WIDTH,
    ) -> None:
        self.task = get_task(task) if task is not None else None
        super().__init__(store, split)
        self.boundary_width = int(boundary_width)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict:
        image_id = self.ids[index]
        store = self.store
        item = {
            "image": torch.from_numpy(image_float(store.read(image_id, "image"))),
            "seg_prior": torch.from_numpy(prior_float(store.read(image_id, "seg_prior"))),
            "boundary_prior": torch.from_numpy(prior_float(store.read(image_id, "boundary_prior"))),
            "image_id": image_id,
        }
        if store.has(image_id, "label"):
            label = store.read(image_id, "label")
            item["label"] = torch.from_numpy(label.astype(np.int64))
            if self.task is not None:
                item["target"] = torch.from_numpy(self.task.target(label, self.boundary_width))
        return item


def iter_images(store: StoreLike, split: Split, task: str | None = None) -> Iterator[dict]:
    """Yield the items of ``WholeImageDataset`` one image at a time, in ID order."""
    dataset = WholeImageDataset(store, split, task)
    for index in range(len(dataset)):
        yield dataset[index]
