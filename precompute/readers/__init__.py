"""Dataset readers: list a dataset in its original layout, then decode one image at a time.

``get_reader(name, root, **options)`` builds a reader from the registry ``READERS``. A reader
lists ``refs()`` without decoding pixels and ``load(ref)`` gives a ``Record``: the image as
HxWx3 uint8 RGB and the annotation as an HxW int32 instance label map (0 = background,
1..N objects) or None. Pixel conversion follows ``precompute/imageio.py``.

Image IDs are file stems made safe by ``safe_id``: every character outside ``[A-Za-z0-9._-]``
(and a leading ``.``) becomes ``_``, and a name Zarr reserves (``zarr.json``, ``__*``) gets the
prefix ``id_``, so every ID is valid by ``precompute.types.image_id_problem``; ``polyp``
prefixes them with the split (``Kvasir__cju0qk...``) because PraNet's test sets reuse names.
IDs are unique ignoring case, so a store also works on a case-insensitive file system; two
files mapping to one ID are a SamaugError naming both. Hidden files and folders (names
starting with ``.``, such as macOS ``._x.png``) are skipped. ``refs()`` is sorted by split,
then by ID in natural order (``train_2`` before ``train_10``).

Reader options equal to the reader's defaults mean the same as leaving them out
(``normalise_reader_options``). A reader may attach warnings to a ``Record`` (problems that
do not stop the image, such as a MoNuSeg polygon left out), each naming the file.

Datasets (layouts under the data root):

- ``glas``: one flat folder of ``{train,testA,testB}_N.bmp`` with ``<stem>_anno.bmp`` (an
  instance label map read as stored); ``Grade.csv`` is not read.
- ``monuseg``: ``**/Tissue Images/<id>.tif`` with ``**/Annotations/<id>.xml``, or the flat
  test layout ``<folder>/<id>.{tif,xml}``. The split is ``test`` under a folder whose name
  contains "Test" and ``train`` under one containing "Train" (the deepest such folder counts),
  unless the ``split`` option is given. Each Aperio ``<Region>`` polygon is one instance,
  rasterised by the rules of ``precompute/aperio.py`` (the later region wins where they
  overlap; labels 1..N without gaps; regions with fewer than 3 vertices, a vertex far
  outside the image, or no pixel inside it are left out with a warning).
- ``kvasir``: ``images/<id>.jpg`` with ``masks/<id>.jpg`` (the root, or its ``Kvasir-SEG/``
  subfolder). Masks are 3-channel JPEGs with noise: channel 0 >= 128 -> 1 (polyp), else 0.
  Split ``train`` unless the ``split`` option is given.
- ``polyp``: PraNet's ``TrainDataset/{image,mask}/*.png`` (split ``train``) and
  ``TestDataset/<name>/{images,masks}/*.png`` (split ``<name>``); masks thresholded like
  Kvasir's (anti-aliased 0/255). IDs are ``<split>__<stem>``.
- ``folder``: the image files directly in the root (png, jpg, jpeg, bmp, tif, tiff); option
  ``masks`` names a folder (relative paths are taken from the root) of masks matched by stem.
  A single-channel mask with more than 2 distinct values is read as labels as stored; any
  other mask is binarised, 1 where any channel is > 0. Images without a mask have label None;
  a mask without an image is an error. Split from the ``split`` option (default ``train``).

Images of the fixed datasets must all be annotated: a missing annotation is a SamaugError.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import numpy as np

from precompute.imageio import (
    TIFF_SUFFIXES,
    labels_from_pixels,
    read_image,
    read_label,
    read_mask,
    read_pixels,
)
from precompute.listing import by_stem, image_files, make_refs, pair
from precompute.readers.aperio import read_aperio_label
from precompute.types import ImageRef, InputError, Record, SamaugError

# --------------------------------------------------------------------------- registry

READERS: dict[str, type[Reader]] = {}


def register_reader(name: str):
    """Class decorator: add a Reader subclass to ``READERS`` under ``name``."""

    def add(cls: type[Reader]) -> type[Reader]:
        cls.name = name
        READERS[name] = cls
        return cls

    return add


def list_readers() -> list[str]:
    return sorted(READERS)


def normalise_reader_options(name: str, options: dict[str, object]) -> dict[str, object]:
    """``options`` without those equal to reader ``name``'s defaults, so that giving a
    default (``split=train``) signs a store as leaving it out does. An unknown reader or
    option is kept as given, for ``get_reader`` to refuse."""
    cls = READERS.get(name)
    defaults = cls.option_defaults() if cls is not None else {}
    return {k: v for k, v in options.items() if k not in defaults or defaults[k] != v}


def get_reader(name: str, root: str | Path, *, confine: bool = False, **options) -> Reader:
    """The reader registered as ``name`` for the dataset at ``root``.

    Raises SamaugError for an unknown name or option (listing the valid ones) and for a root
    that does not exist. With ``confine`` (options that came from an untrusted store), every
    folder an option names and every file the reader lists must resolve, links followed,
    inside ``root``; else SamaugError naming the option or file and where it leads.
    """
    if name not in READERS:
        raise SamaugError(f"unknown dataset {name!r}; valid names: {', '.join(list_readers())}")
    cls = READERS[name]
    valid = cls.option_names()
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise SamaugError(
            f"dataset {name!r} has no option {', '.join(unknown)}; "
            f"its options: {', '.join(valid) or 'none'}"
        )
    reader = cls(root, **options)
    if confine:
        _check_confined(reader)
    return reader


def _check_confined(reader: Reader) -> None:
    inside = reader.root.resolve()

    def check(path: Path, what: str) -> None:
        resolved = Path(path).resolve()
        if resolved != inside and inside not in resolved.parents:
            raise SamaugError(
                f"{what} leads to {resolved}, outside the data root {reader.root}; "
                "only files inside the data root are read"
            )

    for option, value in vars(reader).items():
        if isinstance(value, Path) and option != "root":
            check(value, f"reader option {option}={value}")
    for ref in reader.refs():
        for path in (ref.image_path, ref.label_path):
            if path is not None:
                check(Path(path), str(path))


def iter_records(reader: Reader, split: str | None = None) -> Iterator[Record]:
    """Every record of ``reader`` (or of one split) in ``refs()`` order, decoded one at a time."""
    for ref in reader.refs():
        if split is None or ref.split == split:
            yield reader.load(ref)


# --------------------------------------------------------------------------- base


class Reader:
    """Lists a dataset (``refs``) and decodes one image with its annotation (``load``)."""

    name: ClassVar[str] = ""
    layout: ClassVar[str] = ""  # the expected layout, for error messages

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise SamaugError(
                f"data root {self.root} does not exist or is not a folder; "
                f"the {self.name} reader expects {self.layout}"
            )

    @classmethod
    def option_names(cls) -> list[str]:
        return list(cls.option_defaults())

    @classmethod
    def option_defaults(cls) -> dict[str, object]:
        """{option: its default} for every option (the keyword-only arguments)."""
        params = inspect.signature(cls.__init__).parameters.values()
        return {p.name: p.default for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}

    def refs(self) -> list[ImageRef]:
        """Every image, sorted by split then natural ID order; no pixels are decoded."""
        raise NotImplementedError

    def splits(self) -> list[str]:
        return sorted({ref.split for ref in self.refs()})

    def load(self, ref: ImageRef) -> Record:
        """Decode ``ref``: image HxWx3 uint8 RGB, label HxW int32 or None, and the reader's
        warnings (``Record.warnings``).

        Raises InputError naming the file for an unreadable image or annotation, one that
        claims more pixels than ``precompute.limits.max_pixels()``, or an annotation whose
        shape differs from the image's.
        """
        image_path = Path(ref.image_path)
        image = read_image(image_path)
        source = {"image": self._relative(image_path)}
        label = None
        warnings: list[str] = []
        if ref.label_path is not None:
            label_path = Path(ref.label_path)
            label, warnings = self._read_annotation(label_path, image.shape[:2])
            if label.shape != image.shape[:2]:
                raise InputError(
                    f"{label_path}: annotation is {label.shape[0]}x{label.shape[1]} but image "
                    f"{image_path} is {image.shape[0]}x{image.shape[1]} (HxW)"
                )
            source["label"] = self._relative(label_path)
        return Record(ref.image_id, ref.split, image, label, source, warnings)

    def _read_label(self, path: Path, shape: tuple[int, int]) -> np.ndarray:
        """HxW int32 annotation; ``shape`` is the image's (H, W) for formats that need it."""
        return read_label(path)

    def _read_annotation(self, path: Path, shape: tuple[int, int]) -> tuple[np.ndarray, list[str]]:
        """``_read_label`` and the warnings of reading it (problems that do not stop the
        image, such as a polygon left out), each naming the file. Readers that can warn
        override this; the others override ``_read_label`` only."""
        return self._read_label(path, shape), []

    def _relative(self, path: Path) -> str:
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:  # a ref built by hand, outside the root
            return str(path)

    def _folder(self, path: Path) -> Path:
        if not path.is_dir():
            raise SamaugError(
                f"{path}: folder not found; the {self.name} reader expects {self.layout}"
            )
        return path


# --------------------------------------------------------------------------- helpers


def _check_split(split: object) -> str | None:
    if split is not None and (not isinstance(split, str) or not split.strip()):
        raise SamaugError(f"the split option must be a non-empty name, got {split!r}")
    return split


# --------------------------------------------------------------------------- readers


@register_reader("glas")
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


@register_reader("monuseg")
class MonusegReader(Reader):
    layout = (
        "MoNuSeg 2018: '<folder>/Tissue Images/<id>.tif' with '<folder>/Annotations/<id>.xml' "
        "(training zip), or '<folder>/<id>.tif' with '<folder>/<id>.xml' (test zip)"
    )
    _TEST = re.compile(r"Test|(?<![A-Za-z])test")
    _TRAIN = re.compile(r"Train|(?<![A-Za-z])train")

    def __init__(self, root: str | Path, *, split: str | None = None) -> None:
        super().__init__(root)
        self.split = _check_split(split)

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
            if not xml.is_file():
                raise SamaugError(f"{tif} has no annotation {xml}; expected {self.layout}")
            entries.append((tif.stem, self.split or self._split_of(tif), tif, xml))
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


@register_reader("kvasir")
class KvasirReader(Reader):
    layout = "Kvasir-SEG: images/<id>.jpg with masks/<id>.jpg, in the root or in root/Kvasir-SEG/"

    def __init__(self, root: str | Path, *, split: str = "train") -> None:
        super().__init__(root)
        self.split = _check_split(split)

    def refs(self) -> list[ImageRef]:
        base = self.root
        if not (base / "images").is_dir() and (base / "Kvasir-SEG" / "images").is_dir():
            base = base / "Kvasir-SEG"
        images = by_stem(image_files(self._folder(base / "images")))
        masks_dir = self._folder(base / "masks")
        pairs = pair(images, by_stem(image_files(masks_dir)), masks_dir, required=True)
        return make_refs((stem, self.split, im, mask) for stem, (im, mask) in pairs.items())

    def _read_label(self, path: Path, shape: tuple[int, int]) -> np.ndarray:
        return read_mask(path, threshold=128)


@register_reader("polyp")
class PolypReader(Reader):
    layout = (
        "PraNet: TrainDataset/{image,mask}/*.png and/or TestDataset/<name>/{images,masks}/*.png"
    )

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
            pairs = pair(images, by_stem(image_files(masks_dir)), masks_dir, required=True)
            entries += [(f"{split}__{stem}", split, im, mask) for stem, (im, mask) in pairs.items()]
        return make_refs(entries)

    def _either(self, folder: Path, singular: str, plural: str) -> Path:
        # PraNet names them image/mask in TrainDataset and images/masks in TestDataset.
        return folder / singular if (folder / singular).is_dir() else self._folder(folder / plural)

    def _read_label(self, path: Path, shape: tuple[int, int]) -> np.ndarray:
        return read_mask(path, threshold=128)


@register_reader("folder")
class FolderReader(Reader):
    layout = (
        "a folder of images (png, jpg, jpeg, bmp, tif, tiff), with masks matched by file stem "
        "in the folder given by the masks option"
    )

    def __init__(self, root: str | Path, *, masks: str | None = None, split: str = "train") -> None:
        super().__init__(root)
        self.split = _check_split(split)
        self.masks = None if masks is None else self.root / masks  # absolute stays absolute

    def refs(self) -> list[ImageRef]:
        images = by_stem(image_files(self.root))
        if not images:
            raise SamaugError(f"{self.root}: no image files; expected {self.layout}")
        masks = {} if self.masks is None else by_stem(image_files(self._folder(self.masks)))
        pairs = pair(images, masks, self.masks or self.root, required=False)
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
