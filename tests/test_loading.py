"""How `from_pretrained` does its work: weights regenerated in parallel and hashed as they arrive (one pass), scores
rebuilt from the masks in parallel, the position table without Marian's per-entry loop; results bit-identical."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch
from conftest import tiny_config

from hf_supermask import SupermaskForConditionalGeneration
from hf_supermask.modeling import masked_layers, random_weights, transformers_compat
from hf_supermask.modeling.random_weights import fingerprint


@pytest.fixture
def two_threads():
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(threads)


def _recording_threads(monkeypatch, owner, name):
    """Patch `owner.name` to record the threads that call it (each call waits a little, so that a second worker
    starts while the first is busy)."""
    threads, original = set(), getattr(owner, name)

    def recorded(*args, **kwargs):
        threads.add(threading.get_ident())
        time.sleep(0.02)
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, recorded)
    return threads


def test_regeneration_runs_in_parallel_and_hashes_each_tensor_once(monkeypatch, two_threads):
    weights = SupermaskForConditionalGeneration(tiny_config()).random_weights
    expected = fingerprint((name, weights.generate(name)) for name in weights.shapes)
    threads = _recording_threads(monkeypatch, masked_layers.SupermaskRandomWeights, "generate")
    hashed = []
    update = masked_layers.update_fingerprint
    monkeypatch.setattr(
        masked_layers, "update_fingerprint", lambda digest, name, t: hashed.append(name) or update(digest, name, t)
    )
    assert weights.regenerate() == expected == weights.fingerprint
    assert len(threads) == 2
    assert hashed == sorted(weights.shapes)  # one pass, in the fingerprint's order
    for name in weights.shapes:
        assert torch.equal(weights.get(name), weights.generate(name))


def test_scores_are_rebuilt_in_parallel_on_load(monkeypatch, two_threads, tmp_path):
    model = SupermaskForConditionalGeneration(tiny_config()).eval()
    model.save_pretrained(tmp_path)
    threads = _recording_threads(monkeypatch, masked_layers.MaskedWeight, "load_packed_mask")
    loaded = SupermaskForConditionalGeneration.from_pretrained(tmp_path).eval()
    assert len(threads) == 2
    for name, module in loaded.masked_modules.items():
        mask = module.current_mask()
        assert torch.equal(mask, model.masked_modules[name].current_mask()), name
        assert torch.equal(module.effective_weight(), module.weight * mask.float()), name  # the fold built at load
    assert loaded.masks_fingerprint() == model.masks_fingerprint()


def test_position_table_does_not_run_marians_loop(monkeypatch):
    # Marian's create_weight loops in Python over every entry (about 0.6 s at 512 x 512, twice per model).
    def refuse(self):
        raise AssertionError("Marian's per-entry loop was used")

    monkeypatch.setattr(transformers_compat.MarianSinusoidalPositionalEmbedding, "create_weight", refuse)
    from hf_supermask.modeling import modeling_supermask

    modeling_supermask._sinusoidal_table.cache_clear()
    model = SupermaskForConditionalGeneration(tiny_config(max_position_embeddings=96))
    assert model.model.encoder.embed_positions.weight.shape == (96, 32)


@pytest.mark.parametrize("count", [1, 2, 3, 65535, 65536, 65537, 200_001])
def test_blocked_uniform_draws_are_the_reference_ones_bit_for_bit(count):
    reference = (random_weights.symmetric_uniform(7, "probe", count) * 0.0625123).astype(np.float32)
    blocked = random_weights.scaled_symmetric_uniform(7, "probe", count, 0.0625123)
    assert blocked.dtype == np.float32 and blocked.tobytes() == reference.tobytes()
