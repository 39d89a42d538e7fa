#!/usr/bin/env python
"""The goals of several benchmark runs (e.g. one per transformers release) side by side in one table.

    python scripts/benchmark_summary.py benchmarks/benchmark_results.json \
        benchmarks/benchmark_results_transformers-5.25.json --output_markdown benchmarks/benchmark_summary.md
"""

import argparse
from pathlib import Path

import _checkout  # noqa: F401  (experiments/ is beside the package, not installed)

from experiments.benchmark_summary import format_summary, load_runs


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="+", help="--output_json files of scripts/benchmark.py")
    parser.add_argument("--output_markdown", help="also write the table here")
    args = parser.parse_args()
    markdown = format_summary(load_runs(args.results), args.results)
    if args.output_markdown:
        Path(args.output_markdown).write_text(markdown)
    print(markdown)
