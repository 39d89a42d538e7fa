"""Top-k masks, the straight-through estimator, packing, and scores rebuilt from masks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hf_supermask.modeling.binarizers import (
    MaskedWeightProduct,
    ScratchBuffers,
    kth_largest,
    num_kept,
    pack_mask,
    packed_size,
    scores_for_mask,
    topk_mask,
    unpack_mask,
)
from hf_supermask.modeling.random_weights import generate_initial_scores


@pytest.mark.parametrize("density", [0.01, 0.3, 0.5, 0.77, 1.0])
def test_topk_keeps_exactly_k_largest(density):
    scores = generate_initial_scores(0, "w", (37, 53), "kaiming_uniform")
    k = num_kept(scores.numel(), density)
    assert k == max(1, round(density * scores.numel()))
    mask = topk_mask(scores.abs(), k)
    assert mask.dtype == torch.bool and mask.shape == scores.shape
    assert int(mask.sum()) == k
    if k < scores.numel():
        assert scores.abs()[mask].min() > scores.abs()[~mask].max()


def test_straight_through_gradient_has_the_sign_of_the_score():
    """abs() outside the Function: d loss / d score = sign(score) * d loss / d mask."""
    scores = torch.tensor([[2.0, -3.0], [-0.5, 0.1]], requires_grad=True)
    weight = torch.tensor([[1.0, 2.0], [1.0, 1.0]])
    mask = topk_mask(scores.detach().abs(), 2)
    product = MaskedWeightProduct.apply(scores, weight, mask)
    assert product.tolist() == [[1.0, 2.0], [0.0, 0.0]]
    upstream = torch.tensor([[1.0, 1.0], [-1.0, -1.0]])
    (product * upstream).sum().backward()
    # grad wrt the mask is weight * upstream (straight through the top-k); wrt the score times sign(score)
    assert scores.grad.tolist() == [[1.0, -2.0], [1.0, -1.0]]


def test_pack_unpack_round_trip_matches_numpy_packbits():
    import numpy as np

    mask = topk_mask(generate_initial_scores(1, "w", (13, 7), "kaiming_uniform").abs(), 40)
    packed = pack_mask(mask)
    assert packed.dtype == torch.uint8 and packed.numel() == packed_size(mask.shape) == (13 * 7 + 7) // 8
    assert np.array_equal(packed.numpy(), np.packbits(mask.numpy().reshape(-1)))
    assert torch.equal(unpack_mask(packed, mask.shape), mask)


@pytest.mark.parametrize("score_init", ["kaiming_uniform", "constant"])
def test_scores_rebuilt_from_a_mask_select_it_and_stay_trainable(score_init):
    initial = generate_initial_scores(2, "w", (40, 30), score_init)
    k = 600
    # an arbitrary mask, unrelated to the initial scores' own top-k
    target = topk_mask(generate_initial_scores(9, "other", (40, 30), "kaiming_uniform").abs(), k)
    rebuilt = scores_for_mask(initial, target)
    assert torch.equal(topk_mask(rebuilt.abs(), k), target)
    # same magnitudes (but at the threshold, where one entry may move by an ulp or take the threshold's value) and
    # the same signs as the seed's scores: not a frozen {1, 0} pattern
    before, after = initial.abs().flatten().sort().values, rebuilt.abs().flatten().sort().values
    assert int((before != after).sum()) <= 2 and torch.allclose(before, after, rtol=0, atol=1e-2 * before.max())
    assert torch.equal(torch.sign(rebuilt), torch.sign(initial))
    margin = rebuilt.abs()[target].min() - rebuilt.abs()[~target].max()
    assert 0 < margin < 1e-2 * initial.abs().max()


def _partition_kth_largest(values, k):
    import numpy as np

    return np.partition(values, values.size - k)[values.size - k]


CASES = ["spread", "few_values", "many_ties", "sorted", "nan", "small", "sample_misses"]


@pytest.mark.parametrize("case", CASES)
def test_kth_largest_is_exactly_what_a_full_partition_gives(case):
    """The sampled bracket is a shortcut only: every k, ties, sorted input (a sample of one end), NaN, small arrays,
    and a sample that sees only zeros (its bracket holds exactly the values ranked below the k-th)."""
    import numpy as np

    from hf_supermask.modeling.binarizers import _SAMPLE_STRIDE

    rng = np.random.default_rng(CASES.index(case))
    for _ in range(40):
        size = int(rng.integers(1000, 4000)) if case == "small" else int(rng.integers(1 << 16, 200_000))
        values = np.abs(rng.standard_normal(size)).astype(np.float32)
        if case == "few_values":
            values = rng.integers(0, 7, size).astype(np.float32)
        elif case == "many_ties":
            values[rng.integers(0, size, size // 2)] = values[0]
        elif case == "sorted":
            values.sort()
        elif case == "nan":
            values[rng.integers(0, size, int(rng.integers(1, 4)))] = np.nan
        ks = [1, int(rng.integers(1, size)), size // 2, size]
        if case == "sample_misses":
            values[::_SAMPLE_STRIDE] = 0.0
            ks.append(size - values[::_SAMPLE_STRIDE].size)
        for k in ks:
            got, expected = kth_largest(values, k), _partition_kth_largest(values, k)
            assert got == expected or (np.isnan(got) and np.isnan(expected)), (case, size, k)


def test_kth_largest_takes_the_shortcut_on_large_arrays(monkeypatch):
    """The whole array is partitioned only when the sample misses (never on i.i.d. scores) or NaN is present."""
    import numpy as np

    from hf_supermask.modeling import binarizers

    sizes = []
    real = np.partition
    monkeypatch.setattr(binarizers.np, "partition", lambda a, kth: sizes.append(a.size) or real(a, kth))
    values = np.abs(np.random.default_rng(0).standard_normal(1 << 18)).astype(np.float32)
    kth_largest(values, values.size // 2)
    assert sizes and max(sizes) < values.size // 10
    values[3] = np.nan
    kth_largest(values, values.size // 2)
    assert sizes[-1] == values.size


def _fused_and_unfused(module, hidden, upstream):
    """(output, scores grad, hidden grad) of a training-mode MaskedLinear, fused and through MaskedWeightProduct."""
    results = []
    for fused in (True, False):
        module.scores.grad = None
        inputs = hidden.detach().clone().requires_grad_(True)
        if fused:
            output = module(inputs)
        else:
            free = module.frozen_layout()[0] if module.num_frozen else None
            weight = MaskedWeightProduct.apply(module.scores, module.weight, module.current_mask(), free)
            output = torch.nn.functional.linear(inputs, weight)
        (output.float() * upstream).sum().backward()
        results.append((output.detach(), module.scores.grad.clone(), inputs.grad.clone()))
    return results


@pytest.mark.parametrize("overrides", [{}, {"frozen_fraction": 0.3}, {"coats": 3}], ids=["plain", "frozen", "coats"])
def test_the_fused_masked_linear_computes_the_straight_through_step_exactly(overrides):
    """MaskedLinearFunction (the masked weight built in scratch memory, rebuilt in backward) gives the output and the
    gradients of F.linear over MaskedWeightProduct, bit for bit."""
    from conftest import tiny_config

    from hf_supermask import SupermaskForConditionalGeneration

    model = SupermaskForConditionalGeneration(tiny_config(**overrides)).train()
    for name in ("model.encoder.layers.0.fc1", "model.decoder.layers.1.encoder_attn.k_proj"):
        module = model.get_submodule(name)
        hidden = torch.randn(3, 5, module.shape[1], generator=torch.Generator().manual_seed(0))
        upstream = torch.randn(3, 5, module.shape[0], generator=torch.Generator().manual_seed(1))
        (out, scores_grad, hidden_grad), (ref_out, ref_scores_grad, ref_hidden_grad) = _fused_and_unfused(
            module, hidden, upstream
        )
        assert torch.equal(out, ref_out) and torch.equal(hidden_grad, ref_hidden_grad), name
        assert torch.equal(scores_grad, ref_scores_grad) and scores_grad.abs().sum() > 0, name
        if module.num_frozen:
            assert not scores_grad[~module.frozen_layout()[0]].any()


def test_the_fused_masked_linear_under_autocast_and_in_bfloat16():
    """Autocast (bfloat16 products, float32 inputs) and a bfloat16 model: the float32 scores get float32 gradients
    that agree with the unfused path's to bfloat16 precision."""
    from conftest import tiny_config

    from hf_supermask import SupermaskForConditionalGeneration

    model = SupermaskForConditionalGeneration(tiny_config()).train()
    module = model.model.encoder.layers[0].fc1
    hidden = torch.randn(4, 6, module.shape[1], generator=torch.Generator().manual_seed(0))
    upstream = torch.randn(4, 6, module.shape[0], generator=torch.Generator().manual_seed(1))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        (out, scores_grad, hidden_grad), (ref_out, ref_scores_grad, ref_hidden_grad) = _fused_and_unfused(
            module, hidden, upstream
        )
    assert out.dtype == torch.bfloat16 and scores_grad.dtype == torch.float32 and hidden_grad.dtype == torch.float32
    torch.testing.assert_close(out, ref_out)
    torch.testing.assert_close(scores_grad, ref_scores_grad, rtol=2e-2, atol=2e-2)
    torch.testing.assert_close(hidden_grad, ref_hidden_grad, rtol=2e-2, atol=2e-2)
    model.to(torch.bfloat16)
    (out, scores_grad, _), (ref_out, ref_scores_grad, _) = _fused_and_unfused(module, hidden.bfloat16(), upstream)
    assert out.dtype == torch.bfloat16 and scores_grad.dtype == torch.float32
    torch.testing.assert_close(out, ref_out)
    torch.testing.assert_close(scores_grad, ref_scores_grad, rtol=2e-2, atol=2e-2)


def test_a_training_forward_keeps_no_masked_weight_for_backward(tiny_tokenizer):
    """What a training step saves for backward: the linear layers' inputs, scores, weights and masks, but no
    weight-sized masked copy (each would be fresh memory at every step: the cost the fused Function removes)."""
    from conftest import tiny_config

    from hf_supermask import SupermaskForConditionalGeneration

    model = SupermaskForConditionalGeneration(tiny_config(vocab_size=len(tiny_tokenizer))).train()
    # (either way round: autograd may save the transpose; the embedding's too, for its output projection)
    linear_shapes = {shape for module in model.masked_modules.values() for shape in (module.shape, module.shape[::-1])}
    own = {t.data_ptr() for module in model.masked_modules.values() for t in (module.scores, module.weight)}
    saved = []
    batch = tiny_tokenizer(["A man rides a bike."], text_target=["Ein Mann fährt Rad."], return_tensors="pt")
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        model(**batch).loss.backward()
    masked_copies = [
        t for t in saved if t.is_floating_point() and tuple(t.shape) in linear_shapes and t.data_ptr() not in own
    ]
    assert not masked_copies
    assert all(module.scores.grad is not None for module in model.masked_modules.values())


def test_scratch_buffers_are_reused_per_thread_and_not_copied():
    import copy
    import pickle
    import threading

    scratch = ScratchBuffers()
    first = scratch.get("slot", (4, 8), torch.float32, torch.device("cpu"))
    again = scratch.get("slot", (2, 8), torch.float32, torch.device("cpu"))
    assert again.data_ptr() == first.data_ptr() and again.shape == (2, 8)
    assert scratch.get("other", (4, 8), torch.float32, "cpu").data_ptr() != first.data_ptr()
    assert scratch.get("slot", (4, 16), torch.float32, "cpu").numel() == 64  # grown
    elsewhere = []
    thread = threading.Thread(target=lambda: elsewhere.append(scratch.get("slot", (4, 8), torch.float32, "cpu")))
    thread.start()
    thread.join()
    assert elsewhere[0].data_ptr() != scratch.get("slot", (4, 8), torch.float32, "cpu").data_ptr()
    for copied in (copy.deepcopy(scratch), pickle.loads(pickle.dumps(scratch))):
        assert not copied._local.__dict__
    with torch.inference_mode():
        fresh = ScratchBuffers().get("slot", (3,), torch.float32, "cpu")
    assert not fresh.is_inference()


def test_a_training_forward_computes_its_masks_on_worker_threads(tiny_tokenizer, monkeypatch):
    """`compute_masks`: the masks of a training forward are computed up front on torch's threads (numpy work), and are
    exactly the masks the scores select; frozen positions and coats (torch work) are left to the calling thread."""
    from conftest import tiny_config

    from hf_supermask import SupermaskForConditionalGeneration
    from hf_supermask.modeling import masked_layers

    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)  # as on the 2-core CI machine, whatever this one has
    mapped = []
    real_map = masked_layers.threaded_map
    monkeypatch.setattr(
        masked_layers,
        "threaded_map",
        lambda f, items, **kwargs: mapped.append(list(items)) or real_map(f, items, **kwargs),
    )
    seen = {}  # each masked tensor's mask, as its layer first used it
    real_current = masked_layers.MaskedWeight.current_mask
    monkeypatch.setattr(
        masked_layers.MaskedWeight, "current_mask", lambda self: seen.setdefault(self, real_current(self))
    )
    batch = tiny_tokenizer(["A man rides a bike."], text_target=["Ein Mann fährt Rad."], return_tensors="pt")
    for overrides, parallel in (({}, True), ({"frozen_fraction": 0.2}, False), ({"coats": 2}, False)):
        model = SupermaskForConditionalGeneration(tiny_config(vocab_size=len(tiny_tokenizer), **overrides)).train()
        with torch.no_grad():
            for module in model.masked_modules.values():
                module.scores.normal_()  # masks away from the initial ones
        seen.clear()
        mapped.clear()
        model(**batch).loss.backward()
        assert bool(mapped) == parallel, overrides
        if parallel:
            assert set(mapped[0]) == set(model.masked_modules.values())
        assert set(seen) == set(model.masked_modules.values())
        for module, mask in seen.items():
            assert torch.equal(mask, module.mask_from_scores(module.scores)), overrides


def test_the_thread_pool_works_in_a_forked_child():
    """The persistent pool's threads do not survive a fork: a child makes its own (else its first map would hang)."""
    import multiprocessing

    from hf_supermask.modeling.masked_layers import threaded_map

    assert list(threaded_map(abs, [-1, -2], keep_threads=True)) == [1, 2]  # the parent's pool exists
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=lambda: queue.put(list(threaded_map(abs, [-3, -4], keep_threads=True))))
    child.start()
    child.join(timeout=60)
    assert child.exitcode == 0 and queue.get(timeout=5) == [3, 4]


_THREADS_SCRIPT = """
import json, os, sys, threading, time, torch
sys.path.insert(0, {tests!r})
from conftest import tiny_config
from hf_supermask import SupermaskForConditionalGeneration

torch.set_num_threads(2)
torch.randn(512, 512).mul_(2)  # the main thread's own OpenMP team, before counting
# Threads Python did not start: torch's OpenMP teams (and other native threads).
native_threads = lambda: len(os.listdir("/proc/self/task")) - len(threading.enumerate())
before = native_threads()
# Tensors large enough for torch's parallel ops (what gives a thread an OpenMP team).
config = tiny_config(vocab_size=2048, d_model=256, encoder_ffn_dim=1024, decoder_ffn_dim=1024)
SupermaskForConditionalGeneration(config).save_pretrained({folder!r})
model = SupermaskForConditionalGeneration.from_pretrained({folder!r})
for _ in range(50):  # an ended thread's OpenMP team exits just after it
    after_loading = native_threads()
    if after_loading == before:
        break
    time.sleep(0.1)
alive = [thread.name for thread in threading.enumerate() if thread.name.startswith("supermask")]
ids = torch.randint(4, 2048, (2, 8))
model.train()(input_ids=ids, labels=ids).loss.backward()
kept = [thread.name for thread in threading.enumerate() if thread.name.startswith("supermask")]
print(json.dumps([before, after_loading, alive, native_threads(), kept]))
"""


def test_no_thread_that_ran_torch_work_outlives_loading_or_a_training_step(tmp_path):
    """Loading's worker threads (torch work: each gets its own OpenMP team) end with the load; the training step's
    kept threads run numpy work only. Either left alive with a team would leave more OpenMP threads than cores, and
    every small op of the main thread (a decoding step's) would then wait for a wake-up."""
    code = _THREADS_SCRIPT.format(tests=str(Path(__file__).parent), folder=str(tmp_path / "model"))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    before, after_loading, alive, after_training, kept = json.loads(result.stdout.strip().splitlines()[-1])
    assert alive == [] and after_loading == before  # loading's threads ended, and their OpenMP teams with them
    assert len(kept) == 2 and after_training == before  # the training step's threads are kept, without teams
