# Copyright 2026 The hf_supermask Authors. Licensed under the Apache License, Version 2.0.
"""How far below one bit per weight a found mask codes losslessly: for each checkpoint folder, the share of mask bits
that differ from the seed's initial top-k, the entropy bound of coding them with one rate per tensor (what an exact
arithmetic or ANS coder would reach), and what the `initial_xor_lzma` encoding stores.

    python scripts/mask_coding_study.py hf_supermask/pretrained/supermask-multi30k-en-de \\
        hf_supermask/pretrained/supermask-multi30k-directions/en-fr --output_json benchmarks/frontier/lossless.json
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np


def _entropy_bits(flip_rate: float) -> float:
    if flip_rate <= 0.0 or flip_rate >= 1.0:
        return 0.0
    return -(flip_rate * math.log2(flip_rate) + (1 - flip_rate) * math.log2(1 - flip_rate))


def study_folder(folder: str) -> dict[str, Any]:
    from hf_supermask.modeling import SupermaskForConditionalGeneration

    model = SupermaskForConditionalGeneration.from_pretrained(folder)
    weights = flips = entropy_bits = packed_bytes = coded_bytes = 0
    for module in model.masked_modules.values():
        found = module.current_mask()
        # Frozen positions (`frozen_fraction`) agree with the prediction by construction and are not stored.
        differs = int(np.count_nonzero((found ^ module.initial_mask()).numpy()))
        stored = module.num_free
        weights, flips = weights + found.numel(), flips + differs
        entropy_bits += stored * _entropy_bits(differs / stored)
        packed_bytes += module.pack_stored(found).numel()
        coded_bytes += module.coded_mask().numel()
    config = model.config
    return {
        "folder": str(folder),
        "masks_sha256": config.masks_sha256,
        "mask_encoding_on_disk": config.mask_encoding,
        "maskable_weights": weights,
        "bits_differing_from_initial_top_k": flips / weights,  # of all maskable weights
        "entropy_bound_bits_per_weight": entropy_bits / weights,
        "packed_bits_per_weight": 8 * packed_bytes / weights,
        "initial_xor_lzma_bits_per_weight": 8 * coded_bytes / weights,
        "initial_xor_lzma_over_entropy_bound": coded_bytes * 8 / entropy_bits if entropy_bits else None,
    }


def format_markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| checkpoint | bits differing from the initial top-k | entropy bound (bits / weight) | packed | "
        "initial_xor_lzma | lzma / bound |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        name = "/".join(Path(row["folder"]).parts[-2:])
        lines.append(
            f"| {name} | {row['bits_differing_from_initial_top_k']:.3f} | {row['entropy_bound_bits_per_weight']:.3f} | "
            f"{row['packed_bits_per_weight']:.3f} | {row['initial_xor_lzma_bits_per_weight']:.3f} | "
            f"{row['initial_xor_lzma_over_entropy_bound']:.3f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", help="checkpoint folders")
    parser.add_argument("--output_json", help="write the rows here")
    args = parser.parse_args(argv)
    rows = [study_folder(folder) for folder in args.folders]
    if args.output_json:
        Path(args.output_json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output_json).write_text(json.dumps(rows, indent=2) + "\n")
    print(format_markdown(rows))


__all__ = ["format_markdown", "study_folder"]
