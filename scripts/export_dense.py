#!/usr/bin/env python
"""Fold a supermask checkpoint into a stock MarianMTModel folder: `python scripts/export_dense.py CHECKPOINT OUT`
(the same as `python -m hf_supermask export-dense CHECKPOINT OUT`, whose flags it takes)."""

import sys

from hf_supermask.cli import main


if __name__ == "__main__":
    main(["export-dense", *sys.argv[1:]])
