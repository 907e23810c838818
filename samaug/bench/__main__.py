"""``python -m samaug.bench [--quick]``: every figure of ``make bench``."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from . import prior_bench, store_bench, training_bench


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        prior_bench.bench_priors(n_masks=120, repeat=1 if args.quick else 3)
        prior_bench.bench_masker(directory)
        prior_bench.bench_variants(directory, quick=args.quick)
        prior_bench.bench_vit_b(directory, image_size=256 if args.quick else 1000)
        prior_bench.bench_mask_bytes(directory)
        prior_bench.bench_throughput(
            directory, images=4 if args.quick else 16, points=8 if args.quick else 32
        )
        training_bench.main(directory)
        store_bench.main(directory, images=3 if args.quick else 6)


main()
