#!/usr/bin/env python
"""One model holding several mask sets (one per direction) against separately loaded models: load, switch and
generate times, resident memory; each side in a fresh process.

    python scripts/benchmark_mask_sets.py outputs/dirs/en-de outputs/dirs/de-en outputs/dirs/en-fr outputs/dirs/en-cs \
        --output_json benchmarks/mask_sets.json
"""

import argparse
import json

from hf_supermask.benchmark import benchmark_mask_sets
from hf_supermask.files import read_lines


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", help="Mask-only checkpoints found over the same random weights.")
    parser.add_argument("--sentences_file", default="../shared/data/multi30k/test_2016_flickr.en")
    parser.add_argument("--num_sentences", type=int, default=8)
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--output_json", default=None)
    args = parser.parse_args()
    results = benchmark_mask_sets(args.folders, read_lines(args.sentences_file, args.num_sentences), args.repetitions)
    print(json.dumps(results, indent=1))
    if args.output_json:
        with open(args.output_json, "w") as handle:
            json.dump(results, handle, indent=1)
