"""``SamaugDataset``: a store's images as dicts, for MONAI transforms and plain PyTorch.

The public face of the store for code other than samaug's trainer (``from samaug import
SamaugDataset``). Every array is channel-first, as MONAI's dictionary transforms expect::

    image           (3, H, W) float32, RGB in [0, 1] (the stored uint8 / 255)
    seg_prior       (1, H, W) float32, the segmentation prior as stored (0 and up: a sum
                    of SAM stability scores)
    boundary_prior  (1, H, W) float32, 0 or 1
    label           (1, H, W) int64: the instance map as stored (0 background, 1.. the
                    objects); with ``task`` the task's training classes instead
                    (``train.targets``: glands / nuclei 0 background, 1 interior,
                    2 boundary; binary 0 / 1). Absent for an unlabelled image (priors need
                    no labels): give MONAI transforms ``allow_missing_keys=True``, or a
                    labelled split.
    id              the image ID (str)

The paper's augmented image is ``image + cat([0, seg_prior, boundary_prior])`` on the
channel axis; the trainer's ``train.fusion`` has the others. Images keep their own size:
batch them with a cropping or resizing transform, or one at a time.

It is map-style and safe in ``torch.utils.data.DataLoader`` workers: it never pickles an
open store (``train.data.datasets.StoreDataset``), each worker opens its own. Start workers
with ``multiprocessing_context="spawn"`` (or "forkserver"), never fork: zarr's event-loop
thread (``train.data.loader``).
"""

from __future__ import annotations

from collections.abc import Callable

from train.data.datasets import Split, StoreLike, WholeImageDataset
from train.targets import BOUNDARY_WIDTH


class SamaugDataset(WholeImageDataset):
    """A store's images of ``split`` (a split name or image IDs) as dicts (module doc),
    each passed through ``transform`` (a MONAI ``Compose``, or any callable on the dict)
    when given. ``task``: a ``train.tasks`` name whose classes ``label`` holds."""

    def __init__(
        self,
        store: StoreLike,
        split: Split = "train",
        task: str | None = None,
        transform: Callable[[dict], dict] | None = None,
        boundary_width: int = BOUNDARY_WIDTH,
    ) -> None:
        super().__init__(store, split, task, boundary_width)
        self.transform = transform

    def __getitem__(self, index: int) -> dict:
        whole = super().__getitem__(index)
        item = {key: whole[key] for key in ("image", "seg_prior", "boundary_prior")}
        label = whole.get("target", whole.get("label"))
        if label is not None:
            item["label"] = label[None]
        item["id"] = whole["image_id"]
        return item if self.transform is None else self.transform(item)
