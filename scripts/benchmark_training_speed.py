#!/usr/bin/env python
"""Training speed of the dense model and the supermask at the study's shape, random vs token-budget batches.

    python scripts/benchmark_training_speed.py \
        --output_json benchmarks/training_speed.json --output_markdown benchmarks/training_speed.md

Run on a quiet machine (one torch thread per run, each in a fresh process).
"""

import _checkout  # noqa: F401  (experiments/ is beside the package, not installed)

from experiments.benchmark_training_speed import main


if __name__ == "__main__":
    main()
