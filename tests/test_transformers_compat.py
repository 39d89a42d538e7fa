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
