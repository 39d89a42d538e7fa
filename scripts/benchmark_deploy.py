#!/usr/bin/env python
"""The deploy benchmark: PyTorch pipeline vs CTranslate2 float32 and int8 on test_2016_flickr, greedy and beam 5.

    python scripts/benchmark_deploy.py hf_supermask/pretrained/supermask-multi30k-en-de \
        --output_markdown benchmarks/deploy_results.md --output_json benchmarks/deploy_results.json

Needs the optional extra: pip install -e .[ctranslate2]. The logic is `experiments.benchmark_deploy`.
"""

import argparse
import json
import tempfile

import _checkout  # noqa: F401  (experiments/ is beside the package, not installed)

from experiments.benchmark_deploy import backends_table, benchmark_backends


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="A translation model folder (supermask or Marian) with its tokenizer.")
    parser.add_argument("--data_dir", default=None, help="Multi30k folder (default: ../shared/data/multi30k).")
    parser.add_argument("--num_sentences", type=int, default=None, help="Default: all 1000 test sentences.")
    parser.add_argument("--repetitions", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output_json", default=None)
    parser.add_argument("--output_markdown", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work_dir:
        results = benchmark_backends(
            args.model, work_dir, args.data_dir, args.num_sentences, repetitions=args.repetitions, threads=args.threads
        )
    table = backends_table(results)
    print(table)
    if args.output_json:
        with open(args.output_json, "w") as handle:
            json.dump(results, handle, indent=1)
    if args.output_markdown:
        with open(args.output_markdown, "w") as handle:
            handle.write(table + "\n")
