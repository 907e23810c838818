"""Dataset readers: list a dataset in its original layout, then decode one image at a time.

``DATASETS`` is the one table of datasets: each entry names its reader class, the task its
labels train for, the protocol it trains under and its help line, and adding a dataset is
one ``register_dataset`` call. ``get_reader(name, root, **options)`` builds the dataset's
reader. A reader lists ``refs()`` without decoding pixels and ``load(ref)`` gives a
``Record``: the image as HxWx3 uint8 RGB and the annotation as an HxW int32 instance label
map (0 = background, 1..N objects) or None. Pixel conversion follows ``precompute/imageio.py``.

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

Datasets (each reader's module describes its layout): ``glas`` (``glas_reader.py``),
``monuseg`` (``monuseg_reader.py``), ``kvasir`` and ``polyp`` (``polyp_readers.py``) and
``folder`` (``folder_reader.py``). Labels are optional for every reader, since priors need
none: an image of a fixed dataset whose annotation is missing is listed without a label and
with a warning naming the file expected (``ImageRef.warnings``); a ``folder`` image may have
no mask, silently. Training refuses unlabelled training images by name.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from precompute.readers.folder_reader import FolderReader
from precompute.readers.glas_reader import GlasReader
from precompute.readers.monuseg_reader import MonusegReader
from precompute.readers.polyp_readers import KvasirReader, PolypReader
from precompute.readers.reader_base import Reader, check_confined
from precompute.registry import Registry
from precompute.types import Record


@dataclass(frozen=True)
class DatasetEntry:
    """One dataset samaug can read, and what it trains for.

    reader: the ``Reader`` subclass that lists and decodes its original layout.
    task: what its labels train for by default, a ``train.tasks`` name ("glands", "nuclei"
      or "binary"); a plain string, as precompute does not import train.
    protocol: the ``train.protocols`` protocol its stores train under by default
      ("patches" or "polyp").
    help: one line saying what it is, for the command line's help.
    """

    reader: type[Reader]
    task: str
    protocol: str
    help: str


# The datasets by name (``precompute.registry``); the priors command calls it DATASET.
DATASETS: Registry[DatasetEntry] = Registry("dataset", option="DATASET")


def register_dataset(
    name: str, reader: type[Reader], *, task: str, protocol: str, help: str
) -> DatasetEntry:
    """Make ``name`` a dataset: read by ``reader`` (which takes the name for its messages),
    trained for ``task`` under ``protocol``, described by ``help``. ValueError if the name
    is taken."""
    entry = DATASETS.add(name, DatasetEntry(reader, task, protocol, help))
    reader.name = name
    return entry


register_dataset(
    "glas",
    GlasReader,
    task="glands",
    protocol="patches",
    help="GlaS 2015 glands ({train,testA,testB}_N.bmp with <name>_anno.bmp)",
)
register_dataset(
    "monuseg",
    MonusegReader,
    task="nuclei",
    protocol="patches",
    help="MoNuSeg 2018 nuclei (.tif images with Aperio .xml annotations)",
)
register_dataset(
    "kvasir",
    KvasirReader,
    task="binary",
    protocol="polyp",
    help="Kvasir-SEG polyps (images/ and masks/ of .jpg)",
)
register_dataset(
    "polyp",
    PolypReader,
    task="binary",
    protocol="polyp",
    help="PraNet's polyp sets (TrainDataset/, TestDataset/<name>/)",
)
register_dataset(
    "folder",
    FolderReader,
    task="binary",
    protocol="patches",
    help="any folder of images, masks matched by stem (--reader-option masks=DIR)",
)


def list_readers() -> list[str]:
    """The dataset names ``get_reader`` takes, sorted."""
    return DATASETS.names()


def normalise_reader_options(name: str, options: dict[str, object]) -> dict[str, object]:
    """``options`` without those equal to reader ``name``'s defaults, so that giving a
    default (``split=train``) signs a store as leaving it out does. An unknown reader or
    option is kept as given, for ``get_reader`` to refuse."""
    defaults = DATASETS.get(name).reader.option_defaults() if name in DATASETS else {}
    return {k: v for k, v in options.items() if k not in defaults or defaults[k] != v}


def get_reader(name: str, root: str | Path, *, confine: bool = False, **options) -> Reader:
    """The reader of dataset ``name`` for the data at ``root``.

    Raises SamaugError for an unknown name or option (listing the valid ones) and for a root
    that does not exist. With ``confine`` (options that came from an untrusted store), every
    folder an option names and every file the reader lists must resolve, links followed,
    inside ``root``; else SamaugError naming the option or file and where it leads.
    """
    cls = DATASETS.get(name).reader
    cls.check_options(options)
    reader = cls(root, **options)
    if confine:
        check_confined(reader)
    return reader


def iter_records(reader: Reader, split: str | None = None) -> Iterator[Record]:
    """Every record of ``reader`` (or of one split) in ``refs()`` order, decoded one at a time."""
    for ref in reader.refs():
        if split is None or ref.split == split:
            yield reader.load(ref)


__all__ = [
    "DATASETS",
    "DatasetEntry",
    "FolderReader",
    "GlasReader",
    "KvasirReader",
    "MonusegReader",
    "PolypReader",
    "Reader",
    "get_reader",
    "iter_records",
    "list_readers",
    "normalise_reader_options",
    "register_dataset",
]
