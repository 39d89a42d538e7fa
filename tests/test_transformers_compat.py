"""The transformers internals the model code relies on (`modeling/transformers_compat.py`), on the installed release.

Written for transformers 5.23.0-5.25.0 (CI runs these on the oldest and the newest). A new release that changes one of
these internals fails here, by name.
"""

from __future__ import annotations

import inspect

import pytest
import torch
import transformers
from conftest import read_lines, tiny_config
from packaging.version import Version
from transformers.cache_utils import DynamicCache, EncoderDecoderCache

from hf_supermask import SupermaskForConditionalGeneration
from hf_supermask.modeling import transformers_compat as compat
from hf_supermask.modeling.configuration_supermask import TESTED_TRANSFORMERS
from hf_supermask.modeling.modeling_supermask import (
    SupermaskAttention,
    SupermaskDecoderLayer,
    SupermaskEncoderLayer,
    _sinusoidal_table,
    marian_config_for,
)


INSTALLED = Version(transformers.__version__)


def test_the_installed_release_is_a_supported_one():
    assert TESTED_TRANSFORMERS[0] <= INSTALLED < TESTED_TRANSFORMERS[1]


def test_the_decoder_cache_has_the_name_of_the_installed_release():
    # 5.23 calls it `past_key_values`; 5.24 renamed it `cache` (forwards, create_causal_mask, outputs, generate).
    expected = "past_key_values" if INSTALLED < Version("5.24.0") else "cache"
    assert compat.CACHE_NAME == expected
    assert expected in inspect.signature(compat.create_causal_mask).parameters
    assert expected in inspect.signature(compat.MarianDecoderLayer.forward).parameters
    assert expected in inspect.signature(compat.MarianAttention.forward).parameters


@pytest.mark.parametrize("kind", ["encoder_layer", "decoder_layer", "attention"])
def test_hand_built_layers_set_every_attribute_marian_sets(kind):
    """Marian's forwards run on layers built without Marian's `__init__`: they must set what it sets."""
    config = tiny_config()
    model = SupermaskForConditionalGeneration(config)
    marian_config = marian_config_for(config)
    if kind == "attention":
        reference = compat.MarianAttention(
            config.d_model, config.encoder_attention_heads, config=marian_config, layer_idx=0
        )
        built, ours = model.model.encoder.layers[0].self_attn, SupermaskAttention
    elif kind == "encoder_layer":
        reference = compat.MarianEncoderLayer(marian_config, layer_idx=0)
        built, ours = model.model.encoder.layers[0], SupermaskEncoderLayer
    else:
        reference = compat.MarianDecoderLayer(marian_config, layer_idx=0)
        built, ours = model.model.decoder.layers[0], SupermaskDecoderLayer
    assert isinstance(built, ours)

    def attributes(module):
        return {name for name in vars(module) if not name.startswith("_") and name != "training"}

    missing = attributes(reference) - attributes(built)
    assert not missing, f"transformers {INSTALLED}: {type(reference).__name__} sets {sorted(missing)}, ours does not"
    assert set(dict(reference.named_children())) <= set(dict(built.named_children()))


@pytest.mark.parametrize(("positions", "dim"), [(512, 512), (128, 32), (100, 33), (7, 1)])
def test_position_table_is_marians_bit_for_bit(positions, dim):
    reference = compat.MarianSinusoidalPositionalEmbedding(positions, dim)
    assert torch.equal(_sinusoidal_table(positions, dim, torch.float32), reference.create_weight())


def test_the_cache_is_taken_under_either_name(tiny_tokenizer):
    model = SupermaskForConditionalGeneration(tiny_config()).eval()
    batch = tiny_tokenizer(read_lines("test_2016_flickr", "en", 2), return_tensors="pt", padding=True)
    start = torch.full((2, 1), model.config.decoder_start_token_id)
    with torch.no_grad():
        first = model(**batch, decoder_input_ids=start, use_cache=True)
        cache = compat.output_cache(first)
        assert cache is not None and cache.get_seq_length() == 1
        next_ids = first.logits[:, -1].argmax(-1, keepdim=True)
        whole = model(**batch, decoder_input_ids=torch.cat([start, next_ids], 1), use_cache=False).logits[:, -1]
        for name in ("cache", "past_key_values"):
            step_cache = compat.output_cache(model(**batch, decoder_input_ids=start, use_cache=True))
            step = model(**batch, decoder_input_ids=next_ids, use_cache=True, **{name: step_cache})
            assert compat.output_cache(step).get_seq_length() == 2  # the positions continue after the cached one
            torch.testing.assert_close(step.logits[:, -1], whole, atol=1e-5, rtol=0)
        other = EncoderDecoderCache(DynamicCache(), DynamicCache())
        with pytest.raises(ValueError, match="not both"):
            model(**batch, decoder_input_ids=next_ids, cache=cache, past_key_values=other)


def _filled_cache(
    rows_per_sentence: int, sentences: int = 3, layers: int = 2, dtype: torch.dtype = torch.float32, head_dim: int = 4
) -> EncoderDecoderCache:
    """A cache as beam search holds it: self-attention states that differ per row, cross-attention states repeated
    for each sentence's beams (what `generate()` makes)."""
    generator = torch.Generator().manual_seed(0)
    cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
    rows = sentences * rows_per_sentence
    for layer in range(layers):
        self_states = [torch.randn(rows, 2, 3, head_dim, generator=generator).to(dtype) for _ in range(2)]
        cache.self_attention_cache.update(*self_states, layer)
        cross = [torch.randn(sentences, 2, 5, head_dim, generator=generator).to(dtype) for _ in range(2)]
        cache.cross_attention_cache.update(*(s.repeat_interleave(rows_per_sentence, 0) for s in cross), layer)
    return cache


def _states(cache: DynamicCache) -> list[torch.Tensor]:
    return [state.clone() for layer in cache.layers for state in (layer.keys, layer.values)]


def test_beam_reorder_check_compares_bits_of_any_width():
    """Half-precision states with an odd last dimension (no int32 view of them exists) are compared bit for bit too."""
    cache = _filled_cache(3, dtype=torch.bfloat16, head_dim=3)
    cross_before = [layer.keys for layer in cache.cross_attention_cache.layers]
    compat.reorder_beam_cache(cache, torch.tensor([1, 1, 0, 3, 5, 5, 8, 7, 6]))
    assert all(a is b.keys for a, b in zip(cross_before, cache.cross_attention_cache.layers))


@pytest.mark.parametrize(
    "beam_idx, edit, skipped",
    [
        ([1, 1, 0, 3, 5, 5, 8, 7, 6], None, True),  # within each sentence's beams: nothing to copy
        ([1, 1, 0, 3, 5, 5, 8, 7, 6], (1, 2), False),  # one value of row 2 differs: copied
        ([0, 1, 2, 3, 4, 5, 6, 7, 0], None, False),  # a beam taken from another sentence
    ],
)
def test_beam_reorder_skips_only_cross_attention_copies_that_change_nothing(beam_idx, edit, skipped):
    cache, reference = _filled_cache(3), _filled_cache(3)
    for target in (cache, reference):
        if edit is not None:  # one entry of one row of the last layer's values, in both
            layer, row = edit
            target.cross_attention_cache.layers[layer].values[row, 0, 0, 0] += 1.0
    cross_before = [layer.keys for layer in cache.cross_attention_cache.layers]
    beam_idx = torch.tensor(beam_idx)
    for _ in range(2):  # the check is remembered between steps
        assert compat.reorder_beam_cache(cache, beam_idx) is cache
        reference.reorder_cache(beam_idx)  # transformers' own: every state reordered
    for ours, theirs in zip(
        _states(cache.self_attention_cache) + _states(cache.cross_attention_cache),
        _states(reference.self_attention_cache) + _states(reference.cross_attention_cache),
    ):
        assert torch.equal(ours.view(torch.int32), theirs.view(torch.int32))
    kept = all(a is b.keys for a, b in zip(cross_before, cache.cross_attention_cache.layers))
    assert kept == skipped


def test_beam_search_reorders_through_the_hook_and_generates_as_with_the_full_reorder(tiny_tokenizer, monkeypatch):
    """`generate()` reorders the cache through the model's `_reorder_cache` at every beam step (the internal), and the
    skipped cross-attention copies change no token and no score."""
    model = SupermaskForConditionalGeneration(tiny_config()).eval()
    batch = tiny_tokenizer(read_lines("test_2016_flickr", "en", 3), return_tensors="pt", padding=True)
    settings = dict(num_beams=3, max_new_tokens=6, min_new_tokens=6, return_dict_in_generate=True, output_scores=True)
    reorders = []  # every DynamicCache reorder: self-attention and cross-attention caches alike
    real_reorder = DynamicCache.reorder_cache

    def counting_reorder(self, beam_idx):
        reorders.append(self)
        return real_reorder(self, beam_idx)

    hooked = []
    real_hook = type(model)._reorder_cache
    monkeypatch.setattr(type(model), "_reorder_cache", lambda self, *a: hooked.append(1) or real_hook(self, *a))
    monkeypatch.setattr(DynamicCache, "reorder_cache", counting_reorder)
    checks = []
    real_row_runs = compat._row_runs
    monkeypatch.setattr(compat, "_row_runs", lambda states: checks.append(1) or real_row_runs(states))
    ours = model.generate(**batch, **settings)
    assert len(checks) == 1  # the rows are compared once per generate call, not once per step
    assert len(hooked) == settings["max_new_tokens"]  # every step
    assert len(reorders) == len(hooked)  # the self-attention cache's only: no cross-attention copy

    def full_reorder(self, cache, beam_idx):
        cache.reorder_cache(beam_idx)
        return cache

    monkeypatch.setattr(type(model), "_reorder_cache", full_reorder)
    theirs = model.generate(**batch, **settings)
    assert torch.equal(ours.sequences, theirs.sequences)
    assert torch.equal(ours.sequences_scores, theirs.sequences_scores)
