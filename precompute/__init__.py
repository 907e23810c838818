"""Offline SAMAug prior precomputation: SAM masks -> priors -> a chunked Zarr store.

Importing this package (and ``precompute.store``) never imports torch or SAM; the
SAM masker is loaded lazily inside the workers that need it.
"""

__version__ = "0.2.0"
