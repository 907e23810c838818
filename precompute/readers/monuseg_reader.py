"""MoNuSeg 2018 nuclei: ``**/Tissue Images/<id>.tif`` with ``**/Annotations/<id>.xml`` (the
training zip), or the flat test layout ``<folder>/<id>.{tif,xml}`` (the test zip).

The split is ``test`` under a folder whose name contains "Test" and ``train`` under one
containing "Train" (the deepest such folder counts), unless the ``split`` option is given.
Each Aperio ``<Region>`` polygon is one instance, rasterised by the rules of
``precompute/readers/aperio.py`` (the later region wins where they overlap; labels 1..N
without gaps; regions with fewer than 3 vertices, a vertex far outside the image, or no
pixel inside it are left out with a warning). A tile without its XML is read without a
label, with a warning naming the XML expected (the priors need none; training refuses the
image by name): MoNuSeg's held-out copies miss some.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from precompute.imageio import TIFF_SUFFIXES
from precompute.listing import Missing, make_refs
from precompute.readers.aperio import read_aperio_label
from precompute.readers.reader_base import Reader, check_split
from precompute.types import ImageRef, SamaugError


class MonusegReader(Reader):
    layout = (
        "MoNuSeg 2018: '<folder>/Tissue Images/<id>.tif' with '<folder>/Annotations/<id>.xml' "
        "(training zip), or '<folder>/<id>.tif' with '<folder>/<id>.xml' (test zip)"
    )
    split_options = ("split",)
    _TEST = re.compile(r"Test|(?<![A-Za-z])test")
    _TRAIN = re.compile(r"Train|(?<![A-Za-z])train")

    def __init__(self, root: str | Path, *, split: str | None = None) -> None:
        super().__init__(root)
        self.split = check_split(split)

    def refs(self) -> list[ImageRef]:
        entries = []
        for tif in sorted(self.root.rglob("*")):
            relative = tif.relative_to(self.root)
            if tif.suffix.lower() not in TIFF_SUFFIXES or not tif.is_file():
                continue
            if any(part.startswith(".") for part in relative.parts):
                continue
            folder = tif.parent
            if folder.name.lower().replace("_", " ") == "tissue images":
                xml = folder.parent / "Annotations" / f"{tif.stem}.xml"
            else:
                xml = folder / f"{tif.stem}.xml"
            label = xml if xml.is_file() else Missing(xml)
            entries.append((tif.stem, self.split or self._split_of(tif), tif, label))
        if not entries:
            raise SamaugError(f"{self.root}: no .tif images found; expected {self.layout}")
        return make_refs(entries)

    def _split_of(self, tif: Path) -> str:
        folders = [self.root.resolve().name, *tif.relative_to(self.root).parts[:-1]]
        for folder in reversed(folders):
            if self._TEST.search(folder):
                return "test"
            if self._TRAIN.search(folder):
                return "train"
        raise SamaugError(
            f"{tif}: no folder above it names the split ('Training' or 'Test'); "
            "give it with the split option (--reader-option split=train)"
        )

    def _read_annotation(self, path: Path, shape: tuple[int, int]) -> tuple[np.ndarray, list[str]]:
        return read_aperio_label(path, shape)
