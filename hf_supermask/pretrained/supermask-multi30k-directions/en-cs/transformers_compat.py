# Copyright 2026 The hf_supermask Authors. Licensed under the Apache License, Version 2.0.
"""Every transformers internal the model code relies on, in one place, and what differs between the releases.

Written for transformers 5.23.0 to 5.25.0 (`configuration_supermask.TESTED_TRANSFORMERS`, checked on import).
`tests/test_transformers_compat.py` checks, on the installed release, that each internal still has the shape this
module assumes; a new release that breaks one fails there, by name, before anything else does.

* The decoder cache: 5.23 calls it `past_key_values` everywhere; from 5.24 on it is `cache` in model and layer
  forwards, in `create_causal_mask` and in the output classes, and `generate()` passes it as `cache` (the old name is
  deprecated, with a warning per use). The model code takes either name from its callers (`resolve_cache`) and hands
  it on under the installed release's name (`CACHE_NAME`).
* `masking_utils.create_causal_mask` / `create_bidirectional_mask`: the attention masks of every attention
  implementation (eager, sdpa), as Marian builds them; there is no public equivalent.
* `loss.loss_utils.fixed_cross_entropy`: transformers' token loss (sum / `num_items_in_batch`), as the Trainer expects.
* `utils.output_capturing.capture_outputs` / `OutputRecorder`: `output_hidden_states` / `output_attentions` as every
  transformers model implements them (hooks on the layers named in `_can_record_outputs`).
* Beam search: `generate()` reorders the decoder cache at every step through the model's `_reorder_cache(cache,
  beam_idx)` when the model has one (`reorder_beam_cache`, which reads the cache layers' `keys` / `values`).
* Marian's attention and layer forwards are reused on layers that `modeling_supermask` builds by hand (Marian's
  `__init__` would build dense projections only to replace them): the test checks that they set every attribute
  Marian's own `__init__` sets. `MarianSinusoidalPositionalEmbedding` is only the reference of the position table.
"""

from __future__ import annotations

import dataclasses
import weakref

import torch
from transformers.cache_utils import EncoderDecoderCache
from transformers.loss.loss_utils import fixed_cross_entropy
from transformers.masking_utils import create_bidirectional_mask, create_causal_mask
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import Seq2SeqLMOutput
from transformers.models.marian.modeling_marian import (
    MarianAttention,
    MarianDecoderLayer,
    MarianEncoderLayer,
    MarianSinusoidalPositionalEmbedding,
    shift_tokens_right,
)
from transformers.utils.output_capturing import OutputRecorder, capture_outputs


# The name of the decoder cache in forwards, in `create_causal_mask` and in the output classes of the installed release.
CACHE_NAME = "cache" if "cache" in {field.name for field in dataclasses.fields(Seq2SeqLMOutput)} else "past_key_values"


def resolve_cache(cache, past_key_values):
    """The decoder cache, whichever name the caller used (`generate()` from 5.24 on passes `cache`; code written for
    5.23 passes `past_key_values`)."""
    if cache is not None and past_key_values is not None and cache is not past_key_values:
        raise ValueError("Pass the decoder cache as `cache` or as `past_key_values` (its name before 5.24), not both.")
    return cache if cache is not None else past_key_values


def cache_kwargs(cache) -> dict:
    """`{name: cache}` under the installed release's name, for a Marian layer, `create_causal_mask` or an output."""
    return {CACHE_NAME: cache}


def output_cache(output):
    """The decoder cache an output of the installed release carries (without the deprecation warning)."""
    return getattr(output, CACHE_NAME)


# Per cross-attention cache: (its states, when labelled; each row's label, equal labels meaning bit-identical rows).
_row_labels: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _cross_states(cache) -> tuple[torch.Tensor, ...] | None:
    """Every layer's cross-attention keys and values, or None if some layer holds none yet."""
    states = []
    for layer in cache.layers:
        if not getattr(layer, "is_initialized", False) or layer.keys is None or layer.keys.numel() == 0:
            return None
        states += [layer.keys, layer.values]
    return tuple(states)


def _row_runs(states: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """For each batch row, the index of the run of neighbouring rows it belongs to, rows being in one run when they
    are bit for bit equal in every tensor of `states` (compared as integers of the same width: -0.0 and 0.0 differ,
    NaNs compare)."""
    same_as_previous = None
    for state in states:
        bits = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[state.element_size()]
        rows = state.view(bits).reshape(state.shape[0], -1)
        equal = (rows[1:] == rows[:-1]).all(1)
        same_as_previous = equal if same_as_previous is None else same_as_previous & equal
    first = torch.ones(1, dtype=torch.bool, device=states[0].device)
    return torch.cumsum(torch.cat([first, ~same_as_previous]), 0)


def reorder_beam_cache(cache, beam_idx: torch.Tensor):
    """Beam search's reorder of the decoder cache, what `generate()` asks at every step: the self-attention states are
    reordered, the cross-attention states only where the reorder would change them.

    Those are the encoder's states projected, one copy per beam of a sentence (`generate()` repeats each sentence's
    encoder output for its beams), and beam search picks among a sentence's own beams: the reorder copies every row
    onto a bit-identical one. So which rows are equal is checked once per cross-attention state (neighbouring rows,
    bit for bit, in every layer; each row labelled with its run), and a reorder that maps every row onto a row of its
    own label is skipped; any other reorder is done as before, and carries the labels along. The states and generated
    tokens are the same as with the full reorder."""
    if not isinstance(cache, EncoderDecoderCache):
        cache.reorder_cache(beam_idx)
        return cache
    cache.self_attention_cache.reorder_cache(beam_idx)
    cross = cache.cross_attention_cache
    states = _cross_states(cross)
    if states is None or states[0].shape[0] != beam_idx.numel():
        cross.reorder_cache(beam_idx)
        return cache
    labelled, labels = _row_labels.get(cross, ((), None))
    if len(labelled) != len(states) or any(a is not b for a, b in zip(labelled, states)):
        labels = _row_runs(states)
    moved = labels[beam_idx.to(labels.device)]
    if torch.equal(moved, labels):
        _row_labels[cross] = (states, labels)
    else:
        cross.reorder_cache(beam_idx)
        _row_labels[cross] = (_cross_states(cross), moved)  # row i now holds old row beam_idx[i]: no new comparison
    return cache


__all__ = [
    "CACHE_NAME",
    "GradientCheckpointingLayer",
    "MarianAttention",
    "MarianDecoderLayer",
    "MarianEncoderLayer",
    "MarianSinusoidalPositionalEmbedding",
    "OutputRecorder",
    "cache_kwargs",
    "capture_outputs",
    "create_bidirectional_mask",
    "create_causal_mask",
    "fixed_cross_entropy",
    "output_cache",
    "reorder_beam_cache",
    "resolve_cache",
    "shift_tokens_right",
]
