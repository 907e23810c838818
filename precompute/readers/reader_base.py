"""The dataset reader's base class, its options, and the link checks of ``confine``.

A ``Reader`` lists a dataset (``refs``, no pixels decoded) and decodes one image with its
annotation (``load``): the image as HxWx3 uint8 RGB and the annotation as an HxW int32
instance label map (0 = background, 1..N objects) or None. A reader's options are the
keyword-only arguments of its constructor, with their defaults (``option_defaults``).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

import numpy as np

from precompute.imageio import read_image, read_label
from precompute.types import ImageRef, InputError, Record, SamaugError


class Reader:
    """Lists a dataset (``refs``) and decodes one image with its annotation (``load``).

    ``name`` is the dataset's name in ``precompute.readers.DATASETS`` (set when it is
    registered); ``layout`` the expected layout, for error messages; ``split_options`` the
    options that only choose which split an image is in (stores made with different values
    of them still merge, ``precompute.store.merge_stores``).
    """

    name: ClassVar[str] = ""
    layout: ClassVar[str] = ""
    split_options: ClassVar[tuple[str, ...]] = ()

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

    @classmethod
    def check_options(cls, options: Mapping[str, object]) -> None:
        """SamaugError naming every option the reader does not take, and the ones it does."""
        valid = cls.option_names()
        unknown = sorted(set(options) - set(valid))
        if unknown:
            raise SamaugError(
                f"dataset {cls.name!r} has no option {', '.join(unknown)}; "
                f"its options: {', '.join(valid) or 'none'}"
            )

    def refs(self) -> list[ImageRef]:
        """Every image, sorted by split then natural ID order; no pixels are decoded."""
        raise NotImplementedError

    def splits(self) -> list[str]:
        return sorted({ref.split for ref in self.refs()})

    def load(self, ref: ImageRef) -> Record:
        """Decode ``ref``: image HxWx3 uint8 RGB, label HxW int32 or None, and the warnings
        of listing and reading it (``Record.warnings``).

        Raises InputError naming the file for an unreadable image or annotation, one that
        claims more pixels than ``precompute.limits.max_pixels()``, or an annotation whose
        shape differs from the image's.
        """
        image_path = Path(ref.image_path)
        image = read_image(image_path)
        source = {"image": self._relative(image_path)}
        label = None
        warnings: list[str] = list(ref.warnings)
        if ref.label_path is not None:
            label_path = Path(ref.label_path)
            label, found = self._read_annotation(label_path, image.shape[:2])
            warnings += found
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

    def _option_file(self, option: str, value: str | None) -> Path | None:
        """The file an option names (relative paths from the data root), or None; SamaugError
        if it is not a file."""
        if value is None:
            return None
        path = self.root / str(value)  # an absolute path stays absolute
        if not path.is_file():
            raise SamaugError(f"--reader-option {option}={value}: no such file {path}")
        return path

    def _folder(self, path: Path) -> Path:
        if not path.is_dir():
            raise SamaugError(
                f"{path}: folder not found; the {self.name} reader expects {self.layout}"
            )
        return path


def check_split(split: object) -> str | None:
    """The ``split`` option as given: None, or a non-empty name (SamaugError otherwise)."""
    if split is not None and (not isinstance(split, str) or not split.strip()):
        raise SamaugError(f"the split option must be a non-empty name, got {split!r}")
    return split


def check_confined(reader: Reader) -> None:
    """SamaugError unless every folder an option of ``reader`` names and every file it lists
    resolves, links followed, inside its data root (naming the option or file and where it
    leads). For options that came from an untrusted store."""
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
