#!/usr/bin/env python
"""Overlap of the masks of models found over one random network (e.g. one per translation direction), by module kind
and by layer, against the chance level (= density).

    python scripts/mask_overlap.py en-de=outputs/dirs/en-de en-fr=outputs/dirs/en-fr de-en=outputs/dirs/de-en \
        --output_markdown benchmarks/mask_overlap.md --output_png benchmarks/mask_overlap.png
"""

import argparse
import itertools

import _checkout  # noqa: F401  (experiments/ is beside the package, not installed)
from transformers import AutoModelForSeq2SeqLM

import hf_supermask  # noqa: F401
from experiments.mask_analysis import mask_overlap, overlap_table, plot_overlaps


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="name=folder (or Hub id), at least two")
    parser.add_argument("--output_markdown", default=None)
    parser.add_argument("--output_png", default=None)
    args = parser.parse_args()
    if len(args.models) < 2:
        parser.error("give at least two models, as name=folder")
    models = {}
    for item in args.models:
        name, _, location = item.partition("=")
        if not location:
            parser.error(f"{item!r} is not of the form name=folder")
        models[name] = AutoModelForSeq2SeqLM.from_pretrained(location)
    overlaps = {f"{a} / {b}": mask_overlap(models[a], models[b]) for a, b in itertools.combinations(models, 2)}
    table = overlap_table(overlaps)
    print(table)
    if args.output_markdown:
        with open(args.output_markdown, "w") as handle:
            handle.write(table + "\n")
    if args.output_png:
        plot_overlaps(overlaps, args.output_png)
