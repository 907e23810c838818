"""samaug: the command line, the demo and the benchmarks, above the two libraries; and the
Python API for code of one's own (MONAI, plain PyTorch)::

    from samaug import SamaugDataset, open_store, folds_of

``open_store(path_or_url)`` opens a store read-only (``precompute.store.SamaugStore``:
``ids``, ``splits``, ``read``); ``SamaugDataset(store, split, task, transform)`` is a
map-style dataset of dicts (``image``, ``seg_prior``, ``boundary_prior``, ``label``,
``id``; ``train.data.item_dataset``); ``folds_of(ids, folds)`` nnU-Net's fixed
cross-validation folds (``train.folds``).

``precompute`` (SAM masks -> priors -> a Zarr store) and ``train`` (models trained from the
store) are libraries that never import this package; it joins them into one ``samaug``
command (``samaug.cli``). The API is imported on first use, so ``import samaug`` stays light
(no torch, no zarr).
"""

from importlib import import_module

from precompute import __version__

# Public name -> the module that defines it.
_API = {
    "open_store": "precompute.store",
    "SamaugDataset": "train.data.item_dataset",
    "folds_of": "train.folds",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        return getattr(import_module(_API[name]), name)
    raise AttributeError(f"module 'samaug' has no attribute {name!r}")
