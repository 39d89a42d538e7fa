#!/usr/bin/env python
"""Benchmark supermask models against stock MarianMTModels of the same shapes (sizes, loading, translation, training).

    HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 python scripts/benchmark.py \
        --output_json benchmarks/benchmark_results.json --output_markdown benchmarks/benchmark_results.md

Defaults: the IWSLT-small shape (d_model 512, ffn 1024, 4 heads, 6+6 layers, 8k vocab) and d_model 256 / 3+3 layers.
`--smoke` runs tiny shapes once, in well under a minute. The logic is in `experiments.benchmark_models`.
"""

import shlex
import sys

import _checkout  # noqa: F401  (experiments/ is beside the package, not installed)
from transformers import HfArgumentParser

from experiments.benchmark_models import BenchmarkArguments, run_benchmark


if __name__ == "__main__":
    (args,) = HfArgumentParser(BenchmarkArguments).parse_args_into_dataclasses()
    results = run_benchmark(args, command=shlex.join(["python", "scripts/benchmark.py", *sys.argv[1:]]))
    print(results["markdown"])
