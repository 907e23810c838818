"""The polyp datasets: Kvasir-SEG as downloaded, and PraNet's polyp benchmark layout.

- ``KvasirReader``: ``images/<id>.jpg`` with ``masks/<id>.jpg`` (in the root, or in its
  ``Kvasir-SEG/`` subfolder). Masks are 3-channel JPEGs with noise: channel 0 >= 128 -> 1
  (polyp), else 0. Split ``train`` unless the ``split`` option is given.
- ``PolypReader``: PraNet's ``TrainDataset/{image,mask}/*.png`` (split ``train``) and
  ``TestDataset/<name>/{images,masks}/*.png`` (split ``<name>``); masks thresholded like
  Kvasir's (anti-aliased 0/255). IDs are ``<folder's split>__<stem>`` because PraNet's test
  sets reuse file names.

Both take ``split_file`` (relative paths are taken from the data root): a split list file
(``precompute/readers/split_lists.py``, e.g. a published train/test list) that moves the
images it lists to their splits, so one store holds both splits of it. The options that
only choose splits (``split_options``) do not keep stores apart when they are merged.

An image without its mask is read without a label, with a warning naming the mask expected
(its priors are computed; training refuses it by name).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from precompute.imageio import read_mask
from precompute.listing import by_stem, image_files, make_refs, pair
from precompute.readers.reader_base import Reader, check_split
from precompute.readers.split_lists import assign_splits
from precompute.types import ImageRef, SamaugError


class KvasirReader(Reader):
    layout = "Kvasir-SEG: images/<id>.jpg with masks/<id>.jpg, in the root or in root/Kvasir-SEG/"
    split_options = ("split", "split_file")

    def __init__(
        self, root: str | Path, *, split: str = "train", split_file: str | None = None
    ) -> None:
        super().__init__(root)
        self.split = check_split(split)
        self.split_file = self._option_file("split_file", split_file)

    def refs(self) -> list[ImageRef]:
        base = self.root
        if not (base / "images").is_dir() and (base / "Kvasir-SEG" / "images").is_dir():
            base = base / "Kvasir-SEG"
        images = by_stem(image_files(self._folder(base / "images")))
        masks_dir = self._folder(base / "masks")
        pairs = pair(images, by_stem(image_files(masks_dir)), masks_dir, expected=True)
        refs = make_refs((stem, self.split, im, mask) for stem, (im, mask) in pairs.items())
        return refs if self.split_file is None else assign_splits(refs, self.split_file)

    def _read_label(self, path: Path, shape: tuple[int, int]) -> np.ndarray:
        return read_mask(path, threshold=128)


class PolypReader(Reader):
    layout = (
        "PraNet: TrainDataset/{image,mask}/*.png and/or TestDataset/<name>/{images,masks}/*.png"
    )
    split_options = ("split_file",)

    def __init__(self, root: str | Path, *, split_file: str | None = None) -> None:
        super().__init__(root)
        self.split_file = self._option_file("split_file", split_file)

    def refs(self) -> list[ImageRef]:
        train, test = self.root / "TrainDataset", self.root / "TestDataset"
        if not train.is_dir() and not test.is_dir():
            raise SamaugError(
                f"{self.root}: no TrainDataset/ or TestDataset/; expected {self.layout}"
            )
        sets = [("train", train)] if train.is_dir() else []
        if test.is_dir():
            sets += [
                (p.name, p)
                for p in sorted(test.iterdir())
                if p.is_dir() and not p.name.startswith(".")
            ]
        entries = []
        for split, folder in sets:
            images = by_stem(image_files(self._either(folder, "image", "images")))
            masks_dir = self._either(folder, "mask", "masks")
            pairs = pair(images, by_stem(image_files(masks_dir)), masks_dir, expected=True)
            entries += [(f"{split}__{stem}", split, im, mask) for stem, (im, mask) in pairs.items()]
        refs = make_refs(entries)
        return refs if self.split_file is None else assign_splits(refs, self.split_file)

    def _either(self, folder: Path, singular: str, plural: str) -> Path:
        # PraNet names them image/mask in TrainDataset and images/masks in TestDataset.
        return folder / singular if (folder / singular).is_dir() else self._folder(folder / plural)

    def _read_label(self, path: Path, shape: tuple[int, int]) -> np.ndarray:
        return read_mask(path, threshold=128)
