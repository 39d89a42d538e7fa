#!/usr/bin/env python
"""Fold a supermask checkpoint into a stock MarianMTModel folder: `python scripts/export_dense.py CHECKPOINT OUT`."""

import argparse

from hf_supermask.export import export_dense_folder


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("checkpoint", help="Supermask checkpoint folder or Hub id.")
    parser.add_argument("output_dir", help="Where to write the MarianMTModel and its tokenizer.")
    args = parser.parse_args()
    print(export_dense_folder(args.checkpoint, args.output_dir))
