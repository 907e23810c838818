"""GlaS 2015 (Warwick-QU gland segmentation): one flat folder of ``{train,testA,testB}_N.bmp``
with ``<stem>_anno.bmp`` beside each, an instance label map read as stored. ``Grade.csv`` is
not read. The split is the file name's prefix.

The folder is the data root, or the one subfolder of it that holds GlaS images: the official
archive unpacks to ``Warwick QU Dataset (Released 2016_07_08)/``. An image without its
``_anno`` file is read without a label, with a warning (its priors are computed; training
refuses it by name).
"""

from __future__ import annotations

import re
from pathlib import Path

from precompute.listing import by_stem, image_files, make_refs, pair
from precompute.readers.reader_base import Reader
from precompute.types import ImageRef, SamaugError


class GlasReader(Reader):
    layout = (
        "one flat folder of train_N.bmp, testA_N.bmp, testB_N.bmp, each with <name>_anno.bmp "
        "(and Grade.csv), in the root or in one subfolder of it (the official archive's "
        "'Warwick QU Dataset (Released 2016_07_08)/')"
    )
    _NAME = re.compile(r"(train|testA|testB)_\d+(_anno)?")

    def refs(self) -> list[ImageRef]:
        folder = self._glas_folder()
        images: list[Path] = []
        annos: list[Path] = []
        for path in self._named(folder):
            (annos if self._NAME.fullmatch(path.stem).group(2) else images).append(path)
        if not images:
            raise SamaugError(f"{folder}: no GlaS images, only annotations; expected {self.layout}")
        anno_by_image = {stem.removesuffix("_anno"): p for stem, p in by_stem(annos).items()}
        pairs = pair(
            by_stem(images), anno_by_image, folder, expected=True, label_name="{stem}_anno.bmp"
        )
        return make_refs(
            (stem, self._NAME.fullmatch(stem).group(1), image, anno)
            for stem, (image, anno) in pairs.items()
        )

    def _named(self, folder: Path) -> list[Path]:
        """The .bmp files of ``folder`` named as GlaS names them."""
        return [p for p in image_files(folder, (".bmp",)) if self._NAME.fullmatch(p.stem)]

    def _glas_folder(self) -> Path:
        """The root if it holds GlaS files, else its one subfolder that does."""
        if self._named(self.root):
            return self.root
        found = [
            sub
            for sub in sorted(self.root.iterdir())
            if sub.is_dir() and not sub.name.startswith(".") and self._named(sub)
        ]
        if not found:
            raise SamaugError(f"{self.root}: no GlaS images; expected {self.layout}")
        if len(found) > 1:
            names = ", ".join(f.name for f in found)
            raise SamaugError(
                f"{self.root}: GlaS images in {len(found)} subfolders ({names}); give the one "
                "to read as --data-root"
            )
        return found[0]
