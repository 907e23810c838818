"""Any folder of images: the image files directly in the root (png, jpg, jpeg, bmp, tif,
tiff), and with the ``masks`` option a folder (relative paths are taken from the root) of
masks matched by file stem.

A single-channel mask with more than 2 distinct values is read as labels as stored; any
other mask is binarised, 1 where any channel is > 0. Images without a mask have label None;
a mask without an image is an error. The split comes from the ``split`` option (default
``train``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from precompute.imageio import labels_from_pixels, read_pixels
from precompute.listing import by_stem, image_files, make_refs, pair
from precompute.readers.reader_base import Reader, check_split
from precompute.types import ImageRef, SamaugError


class FolderReader(Reader):
    layout = (
        "a folder of images (png, jpg, jpeg, bmp, tif, tiff), with masks matched by file stem "
        "in the folder given by the masks option"
    )
    split_options = ("split",)

    def __init__(self, root: str | Path, *, masks: str | None = None, split: str = "train") -> None:
        super().__init__(root)
        self.split = check_split(split)
        self.masks = None if masks is None else self.root / masks  # absolute stays absolute

    def refs(self) -> list[ImageRef]:
        images = by_stem(image_files(self.root))
        if not images:
            raise SamaugError(f"{self.root}: no image files; expected {self.layout}")
        masks = {} if self.masks is None else by_stem(image_files(self._folder(self.masks)))
        pairs = pair(images, masks, self.masks or self.root, expected=False)
        return make_refs((stem, self.split, im, mask) for stem, (im, mask) in pairs.items())

    def _read_label(self, path: Path, shape: tuple[int, int]) -> np.ndarray:
        pixels = read_pixels(path, expand_palette=False)
        if pixels.ndim == 3 and pixels.shape[2] <= 2:  # gray, or gray + alpha
            pixels = pixels[..., 0]
        if pixels.ndim == 2:
            if len(np.unique(pixels)) > 2:
                return labels_from_pixels(pixels, path)
            return (pixels > 0).astype(np.int32)
        # Colour: foreground where any of R, G, B is set; alpha is not foreground.
        return (pixels[..., :3] > 0).any(axis=2).astype(np.int32)
