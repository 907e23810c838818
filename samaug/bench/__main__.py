"""``python -m samaug.bench [--quick] [--device cuda]``: every figure of ``make bench``
(on the CPU), or the GPU benchmark (``gpu_bench``; exit 2 where torch sees no GPU)."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from . import prior_bench, store_bench, training_bench


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    parser.add_argument(
        "--device", choices=["cpu", "cuda"], default="cpu", help="cuda: the GPU benchmark"
    )
    args = parser.parse_args(argv)
    if args.device == "cuda":
        from . import gpu_bench

        sys.exit(gpu_bench.main(quick=args.quick))
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
