"""``strip``, ``subset``, ``merge``, ``pack``, ``unpack`` and ``upgrade``: new stores made from
stores (local folders, ``.zarr.zip`` files or URLs of either) by the engine in ``copying``.

Each checks everything first (the sources open and agree, the destination is free) and
writes nothing until then; each ends with a complete store under the destination's name,
consolidated, or nothing there at all. ``subset`` and ``merge`` keep the sources' provenance
(signature, masker, dataset) and add a ``lineage`` entry saying where each image came from.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from precompute import __version__
from precompute.readers import DATASETS
from precompute.store.copying import Built, Part, build, check_destination
from precompute.store.in_place import leftovers, remove_leftovers, swap_in, upgraded_name
from precompute.store.location import is_url, is_zip
from precompute.store.lock import holding
from precompute.store.reader import SamaugStore, open_store
from precompute.store.resume import signature_differences
from precompute.store.schema import ARRAY_NAMES, EVERY_CHUNK_WRITTEN, SCHEMA_VERSION
from precompute.store.target import Target
from precompute.store.writer import now
from precompute.types import SamaugError, image_id_problem


def _open(location: str | Path, storage_options: dict | None) -> SamaugStore:
    return open_store(location, storage_options)


def _lineage(attrs: dict, entry: dict) -> list:
    return [*attrs.get("lineage", []), {"at": now(), "samaug": __version__, **entry}]


def _source_entry(store: SamaugStore, image_ids: list[str]) -> dict:
    return {
        "store": store.location,
        "created": store.attrs.get("created"),
        "schema_version": store.attrs["schema_version"],
        "images": image_ids,
    }


def strip_images(
    src: str | Path, dst: str | Path, storage_options: dict | None = None
) -> list[str]:
    """Copy a store without its ``image`` arrays, for sharing where images may not be.

    Everything else stays, ``image_sha256`` included, so the receiver can attach their own
    copy of the images and prove they are the same pixels. Returns what was left out of a
    local source (paths relative to it: links, stray files, leftovers); the copy is made
    beside ``dst`` and renamed to it when complete.
    """
    store = _open(src, storage_options)
    if not (is_url(src) or is_zip(src)) and (Path(src) / "zarr.json").is_symlink():
        raise SamaugError(f"{Path(src) / 'zarr.json'} is a symbolic link; strip copies no links")
    path = check_destination(dst, [str(src)], one_file=False)
    attrs = {**store.attrs, "images_stripped": True, "updated": now()}
    built = build(path, attrs, [Part(store, store.ids())], store.layout.version, drop_image=True)
    return built.left_out


def pack_store(src: str | Path, dst: str | Path, storage_options: dict | None = None) -> Built:
    """Write the store at ``src`` as one ``.zarr.zip`` file at ``dst`` (members stored, root
    metadata last, consolidated); its attributes unchanged."""
    store = _open(src, storage_options)
    path = check_destination(dst, [str(src)], one_file=True)
    return build(path, dict(store.attrs), [Part(store, store.ids())], store.layout.version, True)


def unpack_store(src: str | Path, dst: str | Path, storage_options: dict | None = None) -> Built:
    """Write the one-file store at ``src`` as a store folder at ``dst``."""
    if not is_zip(src):
        raise SamaugError(f"{src} is not a .zarr.zip file; unpack reads what `pack` wrote")
    store = _open(src, storage_options)
    path = check_destination(dst, [str(src)], one_file=False)
    return build(path, dict(store.attrs), [Part(store, store.ids())], store.layout.version)


def read_ids(path: str | Path) -> list[str]:
    """Image IDs from a text file, one per line (blank lines and ``#`` comments skipped)."""
    try:
        lines = Path(path).read_text().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise SamaugError(f"{path}: cannot read the ID list ({err})") from err
    ids = []
    for number, line in enumerate(lines, 1):
        item = line.split("#", 1)[0].strip()
        if not item:
            continue
        problem = image_id_problem(item)
        if problem:
            raise SamaugError(f"{path}, line {number}: {problem}")
        ids.append(item)
    return list(dict.fromkeys(ids))


def subset_store(
    src: str | Path,
    dst: str | Path,
    splits: Iterable[str] = (),
    ids: Iterable[str] = (),
    storage_options: dict | None = None,
) -> Built:
    """A new store of the images of ``splits`` and the images ``ids`` of ``src``.

    IDs the store does not hold, and splits it has no image of, are refused (listed).
    """
    store = _open(src, storage_options)
    splits, ids = list(splits), list(ids)
    if not splits and not ids:
        raise SamaugError("choose what to keep: --split NAME (repeatable) and/or --ids FILE")
    unknown_splits = [s for s in splits if not store.ids(s)]
    if unknown_splits:
        raise SamaugError(
            f"{src} has no complete image in split(s) {', '.join(unknown_splits)}; its splits: "
            f"{store.splits() or 'none'}"
        )
    unknown = [i for i in ids if i not in set(store.ids())]
    if unknown:
        more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
        raise SamaugError(
            f"{src} holds no complete image {', '.join(unknown[:10])}{more}; `samaug store "
            "info` shows what it holds"
        )
    chosen = sorted(set(store.ids(splits) if splits else []) | set(ids))
    path = check_destination(dst, [str(src)], one_file=False)
    stamp = now()
    selection = {"splits": splits, "ids": len(ids)}
    attrs = {
        **store.attrs,
        "created": stamp,
        "updated": stamp,
        "lineage": _lineage(
            store.attrs,
            {
                "operation": "subset",
                "selection": selection,
                "sources": [_source_entry(store, chosen)],
            },
        ),
    }
    return build(path, attrs, [Part(store, chosen)], store.layout.version)


def merge_stores(
    sources: list[str | Path], dst: str | Path, storage_options: dict | None = None
) -> Built:
    """A new store holding every image of every source store.

    The sources must share their signature (dataset, reader options, masker provenance,
    priors; not the schema version: older ones are re-encoded), else the differing settings
    are named. Reader options that only choose splits (the reader's ``split_options``: a
    kvasir store of ``split=test`` merges with one of ``split=train``) may differ: the merged
    store keeps those all sources agree on, and its lineage each source's. An image ID in
    several sources is taken once, and only if its split and its arrays' sha256 agree
    everywhere, else it is named. Each image comes from the first source that holds it with
    its pixels (a stripped source's copy only where no other has them).
    """
    if len(sources) < 2:
        raise SamaugError("merge needs at least two stores (and the destination last)")
    stores = [_open(s, storage_options) for s in sources]
    first = stores[0]
    split_only = _split_options(first.attrs)
    _check_signatures(stores, split_only)
    holder: dict[str, SamaugStore] = {}
    for store in stores:
        for image_id in store.ids():
            if image_id not in holder:
                holder[image_id] = store
                continue
            _check_same(holder[image_id], store, image_id)
            if not holder[image_id].has(image_id, "image") and store.has(image_id, "image"):
                holder[image_id] = store
    path = check_destination(dst, [str(s) for s in sources], one_file=False)
    version = max(s.attrs["schema_version"] for s in stores)
    parts = [Part(s, sorted(i for i, h in holder.items() if h is s)) for s in stores]
    stamp = now()
    splits: dict[str, int] = {}
    for store in stores:
        for split, count in store.attrs["dataset"].get("splits", {}).items():
            splits[split] = max(splits.get(split, 0), count)
    written = version >= 2 or all(s.attrs.get(EVERY_CHUNK_WRITTEN) is True for s in stores)
    stripped = not all(p.store.has(i, "image") for p in parts for i in p.image_ids)
    attrs = {
        **{k: v for k, v in first.attrs.items() if k not in ("lineage", EVERY_CHUNK_WRITTEN)},
        "schema_version": version,
        "created": stamp,
        "updated": stamp,
        "dataset": {
            **_without_options(first.attrs, _differing(stores, split_only))["dataset"],
            "splits": dict(sorted(splits.items())),
        },
        "lineage": [
            {
                "at": stamp,
                "samaug": __version__,
                "operation": "merge",
                "sources": [
                    {
                        **_source_entry(p.store, p.image_ids),
                        "reader_options": p.store.attrs["dataset"].get("reader_options", {}),
                        "lineage": p.store.attrs.get("lineage", []),
                    }
                    for p in parts
                ],
            }
        ],
        **({EVERY_CHUNK_WRITTEN: True} if written else {}),
    }
    if stripped or any("images_stripped" in s.attrs for s in stores):
        attrs["images_stripped"] = stripped
    return build(path, attrs, parts, version)


def _check_signatures(stores: list[SamaugStore], split_only: tuple[str, ...]) -> None:
    """SamaugError naming the differing settings unless every store has the first's
    signature, the schema version and the reader options ``split_only`` aside."""
    first = stores[0]
    for other in stores[1:]:
        neutral = {**other.attrs, "schema_version": first.attrs["schema_version"]}
        diffs = signature_differences(
            _without_options(first.attrs, split_only),
            _without_options(neutral, split_only),
            (_short(first.location), _short(other.location)),
        )
        if diffs:
            raise SamaugError(
                f"{other.location} was made with other settings than {first.location}:\n  "
                + "\n  ".join(diffs)
                + "\nMerge stores made with the same settings only."
            )


def _split_options(attrs: dict) -> tuple[str, ...]:
    """The reader options of the store's dataset that only choose splits (none for a dataset
    this samaug has no reader of)."""
    name = attrs["dataset"].get("name")
    return DATASETS.get(name).reader.split_options if name in DATASETS else ()


def _without_options(attrs: dict, options: Iterable[str]) -> dict:
    """``attrs`` with the dataset's reader ``options`` left out."""
    dataset = attrs["dataset"]
    kept = {k: v for k, v in dataset.get("reader_options", {}).items() if k not in set(options)}
    return {**attrs, "dataset": {**dataset, "reader_options": kept}}


def _differing(stores: list[SamaugStore], options: tuple[str, ...]) -> list[str]:
    """Those of ``options`` whose values are not the same in every store."""
    values = [s.attrs["dataset"].get("reader_options", {}) for s in stores]
    return [k for k in options if len({repr(v.get(k)) for v in values}) > 1]


def _short(location: str) -> str:
    return location.rstrip("/").rsplit("/", 1)[-1]


def _check_same(a: SamaugStore, b: SamaugStore, image_id: str) -> None:
    """SamaugError unless image ``image_id`` is the same in stores ``a`` and ``b``."""
    ours, theirs = a.image_attrs(image_id), b.image_attrs(image_id)
    if ours["split"] != theirs["split"]:
        raise SamaugError(
            f"image {image_id} is in split {ours['split']!r} in {a.location} but "
            f"{theirs['split']!r} in {b.location}; merge refuses to choose"
        )
    for name in ARRAY_NAMES:  # the pixels first
        if ours["sha256"].get(name) != theirs["sha256"].get(name):
            raise SamaugError(
                f"image {image_id} differs between {a.location} and {b.location} ({name}: "
                "sha256 differs); remove it from one of them (`samaug store subset`) to merge"
            )


def upgrade_store(
    src: str | Path, dst: str | Path | None = None, storage_options: dict | None = None
) -> Built | None:
    """Rewrite a store of an older schema version in the current one: to ``dst``, or in place
    (a local folder: the new store is built beside it and takes its name when complete,
    ``in_place``; what a killed upgrade left is recovered or removed). Returns None when the
    store is already current."""
    store = _open(src, storage_options)
    in_place_folder = dst is None and not is_url(src) and not is_zip(src)
    if store.attrs["schema_version"] == SCHEMA_VERSION:
        if in_place_folder and leftovers(Path(src)):
            with holding(Target(Path(src)), "samaug store upgrade"):
                remove_leftovers(Path(src))  # of a killed upgrade
        return None
    attrs = {
        **store.attrs,
        "schema_version": SCHEMA_VERSION,
        EVERY_CHUNK_WRITTEN: True,
        "updated": now(),
        "lineage": _lineage(
            store.attrs, {"operation": "upgrade", "from_version": store.attrs["schema_version"]}
        ),
    }
    parts = [Part(store, store.ids())]
    if dst is not None:
        path = check_destination(dst, [str(src)], one_file=False)
        return build(path, attrs, parts, SCHEMA_VERSION)
    if not in_place_folder:
        raise SamaugError(f"{src}: only a local store folder is upgraded in place; give --out")
    folder = Path(src)
    with holding(Target(folder), "samaug store upgrade"):  # no run writes it meanwhile
        remove_leftovers(folder)  # of a killed upgrade
        fresh = upgraded_name(folder)
        built = build(fresh, attrs, parts, SCHEMA_VERSION)
        swap_in(fresh, folder, store.attrs["schema_version"])  # NAME never missing
    return built
