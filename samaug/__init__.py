"""samaug: the command line, the demo and the benchmarks, above the two libraries.

``precompute`` (SAM masks -> priors -> a Zarr store) and ``train`` (models trained from the
store) are libraries that never import this package; it joins them into one ``samaug``
command (``samaug.cli``).
"""

from precompute import __version__

__all__ = ["__version__"]
