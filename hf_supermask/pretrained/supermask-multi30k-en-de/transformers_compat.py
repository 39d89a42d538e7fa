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
* Marian's attention and layer forwards are reused on layers that `modeling_supermask` builds by hand (Marian's
  `__init__` would build dense projections only to replace them): the test checks that they set every attribute
  Marian's own `__init__` sets. `MarianSinusoidalPositionalEmbedding` is only the reference of the position table.
"""

from __future__ import annotations

import dataclasses

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
    "resolve_cache",
    "shift_tokens_right",
]
