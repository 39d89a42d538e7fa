# Copyright 2026 The hf_supermask Authors. Licensed under the Apache License, Version 2.0.
"""How much do the masks of two models found over the same random weights overlap, and what do they compute combined?

The overlap of two masks of one tensor is the fraction of the kept positions of one that the other keeps too. Two
independent random masks of density d overlap by d on average (chance level); 1 means the same mask.

Masks found over one seed are not independent draws, though: every run starts from the same initial scores, so each
mask keeps much of the initial top-k. The baseline that separates shared structure from that shared start is the
overlap two masks would have if each kept what it keeps of the initial top-k (and of the rest) independently of the
other: `a·b + (1-a)(1-b)·k/(n-k)` for fractions a, b of their k kept positions inside the initial top-k (n weights).
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from typing import Any

import torch


def module_kind(name: str) -> str:
    """`decoder.encoder_attn.q_proj` for `model.decoder.layers.2.encoder_attn.q_proj`, `embedding` for the shared
    one."""
    if name.endswith("shared"):
        return "embedding"
    return re.sub(r"^model\.|layers\.\d+\.", "", name)


def module_layer(name: str) -> str:
    """ "encoder 0" for "model.encoder.layers.0.fc1", "embedding" for the shared one."""
    match = re.search(r"(encoder|decoder)\.layers\.(\d+)\.", name)
    return f"{match.group(1)} {match.group(2)}" if match else "embedding"


def mask_overlap(first, second) -> dict[str, Any]:
    """Per masked tensor, the fraction of `first`'s kept positions that `second` keeps too, and the same pooled by
    module kind and by layer. Both models must hold masks over the same random weights (same `weights_sha256`)."""
    if first.random_weights.fingerprint != second.random_weights.fingerprint:
        raise ValueError("The two models' masks were found over different random weights: their overlap means nothing.")
    per_tensor, kept, shared, expected = {}, defaultdict(int), defaultdict(int), defaultdict(float)
    theirs = second.masked_modules
    for name, module in first.masked_modules.items():
        a, b = module.current_mask(), theirs[name].current_mask()
        k, n = module.num_kept, a.numel()
        if k == n:
            continue  # a fixed (unmasked) embedding
        common = int((a & b).sum())
        initial = module.initial_mask()  # the seed's initial selection (frozen positions included)
        a_in, b_in = int((a & initial).sum()), int((b & initial).sum())
        per_tensor[name] = common / k
        for group in (f"kind:{module_kind(name)}", f"layer:{module_layer(name)}", "all"):
            kept[group] += k
            shared[group] += common
            expected[group] += a_in * b_in / k + (k - a_in) * (k - b_in) / (n - k)
    pooled = lambda counts, prefix: {g[len(prefix) :]: counts[g] / kept[g] for g in kept if g.startswith(prefix)}  # noqa: E731
    return {
        "density": first.config.density,
        "per_tensor": per_tensor,
        "by_kind": pooled(shared, "kind:"),
        "by_layer": pooled(shared, "layer:"),
        "all": shared["all"] / kept["all"] if kept["all"] else None,
        # what the shared initial top-k alone would give (see the module docstring)
        "expected_by_kind": pooled(expected, "kind:"),
        "expected_by_layer": pooled(expected, "layer:"),
        "expected_all": expected["all"] / kept["all"] if kept["all"] else None,
    }


@torch.no_grad()
def combine_masks(encoder_source, decoder_source, embedding_from: str = "encoder"):
    """A model computing with `encoder_source`'s encoder masks and `decoder_source`'s decoder masks (a non-target
    combination: e.g. the en->de encoder with the en->fr decoder). The embedding, shared by both stacks, comes from
    `embedding_from` ("encoder" or "decoder"). Both models must hold masks over the same random weights."""
    import copy

    if encoder_source.random_weights.fingerprint != decoder_source.random_weights.fingerprint:
        raise ValueError("The two models' masks were found over different random weights: they cannot be combined.")
    combined = copy.deepcopy(encoder_source)
    donors = decoder_source.masked_modules
    for name, module in combined.masked_modules.items():
        part = "decoder" if ".decoder." in name else "encoder" if ".encoder." in name else embedding_from
        if part == "decoder":
            module.scores.copy_(donors[name].scores)
            module.scores_changed()
    return combined.eval()  # eval() refolds from the copied scores


def overlap_table(overlaps: dict[str, dict[str, Any]]) -> str:
    """Markdown: one column per pair of models, one row per module kind and per layer, chance level first."""
    pairs = list(overlaps)
    first = overlaps[pairs[0]]
    cell = lambda o, section, key: f"{o[section][key]:.3f} ({o['expected_' + section][key]:.3f})"  # noqa: E731
    lines = [
        "Each cell: the overlap, and in brackets what the shared initial top-k alone would give.",
        "",
        "| | " + " | ".join(pairs) + " |",
        "|---" * (len(pairs) + 1) + "|",
        "| chance (= density) | " + " | ".join(f"{o['density']:.2f}" for o in overlaps.values()) + " |",
        "| all tensors | " + " | ".join(f"{o['all']:.3f} ({o['expected_all']:.3f})" for o in overlaps.values()) + " |",
    ]
    for section, label in (("by_kind", "{}"), ("by_layer", "layer: {}")):
        for key in first[section]:
            lines.append(
                f"| {label.format(key)} | " + " | ".join(cell(o, section, key) for o in overlaps.values()) + " |"
            )
    return "\n".join(lines)


def plot_overlaps(overlaps: dict[str, dict[str, Any]], path: str | os.PathLike) -> str:
    """A bar chart of the overlap by module kind for each pair, with the chance level."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    kinds = list(next(iter(overlaps.values()))["by_kind"])
    figure = Figure(figsize=(11, 4))
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    width = 0.8 / len(overlaps)
    for i, (pair, overlap) in enumerate(overlaps.items()):
        positions = [k + i * width for k in range(len(kinds))]
        axes.bar(positions, [overlap["by_kind"][k] for k in kinds], width, label=pair)
        axes.scatter(
            positions,
            [overlap["expected_by_kind"][k] for k in kinds],
            marker="_",
            s=60,
            color="black",
            label="from the shared initial top-k alone" if i == 0 else None,
            zorder=3,
        )
    axes.axhline(next(iter(overlaps.values()))["density"], color="black", linestyle="--", label="chance (density)")
    axes.set_xticks([k + 0.4 - width / 2 for k in range(len(kinds))], kinds, rotation=30, ha="right", fontsize=8)
    axes.set_ylabel("fraction of kept positions in common")
    axes.set_ylim(0, 1)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    return str(path)
