"""GlaS 2015 (Warwick-QU gland segmentation): one flat folder of ``{train,testA,testB}_N.bmp``
with ``<stem>_anno.bmp`` beside each, an instance label map read as stored. ``Grade.csv`` is
not read. The split is the file name's prefix; every image must be annotated."""

from __future__ import annotations

import re
from pathlib import Path

from precompute.listing import by_stem, image_files, make_refs, pair
from precompute.readers.reader_base import Reader
from precompute.types import ImageRef, SamaugError


class GlasReader(Reader):
    layout = (
        "one flat folder of train_N.bmp, testA_N.bmp, testB_N.bmp, each with <name>_anno.bmp "
        "(and Grade.csv)"
    )
    _NAME = re.compile(r"(train|testA|testB)_\d+(_anno)?")

    def refs(self) -> list[ImageRef]:
        images: list[Path] = []
        annos: list[Path] = []
        for path in image_files(self.root, (".bmp",)):
            match = self._NAME.fullmatch(path.stem)
            if match:
                (annos if match.group(2) else images).append(path)
        if not images:
            raise SamaugError(f"{self.root}: no GlaS images; expected {self.layout}")
        anno_by_image = {stem.removesuffix("_anno"): p for stem, p in by_stem(annos).items()}
        pairs = pair(
            by_stem(images), anno_by_image, self.root, required=True, label_name="{stem}_anno.bmp"
        )
        return make_refs(
            (stem, self._NAME.fullmatch(stem).group(1), image, anno)
            for stem, (image, anno) in pairs.items()
        )
