#!/usr/bin/env python
"""One model holding several mask sets (one per direction) against separately loaded models: load, switch and
generate times, resident memory, bits on disk; each side in a fresh process, one torch thread.

    python scripts/benchmark_mask_sets.py \
        --output_json benchmarks/mask_sets.json --output_markdown benchmarks/mask_sets.md

Default folders: the directions shipped with the package (`hf_supermask/pretrained/supermask-multi30k-directions/*`);
pass `--folders A B ...` for others (mask-only checkpoints over the same random weights).
"""

import json
import os
import shlex
import sys

import _checkout  # noqa: F401  (experiments/ is beside the package, not installed)
from transformers import HfArgumentParser

from experiments.benchmark_mask_sets import MaskSetsBenchmarkArguments, benchmark_mask_sets, mask_sets_markdown
from hf_supermask.data import SHARED_DATA_DIR
from hf_supermask.files import read_lines


if __name__ == "__main__":
    (args,) = HfArgumentParser(MaskSetsBenchmarkArguments).parse_args_into_dataclasses()
    if len(args.folders) < 2:
        sys.exit(f"Need at least two mask-only checkpoints over the same random weights; got {args.folders}.")
    sentences_file = args.sentences_file or str(SHARED_DATA_DIR / "test_2016_flickr.en")
    if not os.path.isfile(sentences_file):
        sys.exit(f"No sentences file at {sentences_file}: pass --sentences_file PATH (one source sentence a line).")
    results = benchmark_mask_sets(args.folders, read_lines(sentences_file, args.num_sentences), args.repetitions)
    results["command"] = shlex.join(["python", "scripts/benchmark_mask_sets.py", *sys.argv[1:]])
    table = mask_sets_markdown(results)
    print(table)
    if args.output_json:
        with open(args.output_json, "w") as handle:
            json.dump(results, handle, indent=1)
    if args.output_markdown:
        with open(args.output_markdown, "w") as handle:
            handle.write(table + "\n")
