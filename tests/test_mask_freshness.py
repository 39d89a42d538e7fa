"""Masks are always fresh: one caching rule (masked_layers' docstring), checked on the paths torch and transformers
users drive the model through. Every check compares with a freshly built model holding the same scores, or with the
top-k of the scores computed here."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from conftest import read_lines, tiny_config

from hf_supermask import SupermaskForConditionalGeneration
from hf_supermask.modeling import masked_layers


ENGLISH, GERMAN = read_lines("train", "en", 8), read_lines("train", "de", 8)


@pytest.fixture(scope="module")
def batch(tiny_tokenizer):
    encoded = tiny_tokenizer(ENGLISH, text_target=GERMAN, padding=True, return_tensors="pt")
    encoded["labels"] = encoded["labels"].masked_fill(encoded["labels"] == tiny_tokenizer.pad_token_id, -100)
    return dict(encoded)


def _model(tokenizer, **overrides) -> SupermaskForConditionalGeneration:
    return SupermaskForConditionalGeneration(tiny_config(vocab_size=len(tokenizer), **overrides))


def _expected_masks(model) -> dict[str, torch.Tensor]:
    """The top-k of |scores| of every tensor, computed independently of the model's code."""
    masks = {}
    for name, module in model.masked_modules.items():
        flat = module.scores.detach().float().abs().flatten()
        mask = torch.zeros_like(flat, dtype=torch.bool)
        mask[torch.topk(flat, module.num_kept).indices] = True
        masks[name] = mask.view(module.shape)
    return masks


def _fresh_copy(model) -> SupermaskForConditionalGeneration:
    """A new model with the same config and scores, which has never cached anything."""
    fresh = SupermaskForConditionalGeneration(model.config)
    with torch.no_grad():
        for (_, mine), (_, theirs) in zip(sorted(model.masked_modules.items()), sorted(fresh.masked_modules.items())):
            theirs.scores.copy_(mine.scores.float())
    return fresh.train(model.training)


def _logits(model, batch) -> torch.Tensor:
    with torch.no_grad():
        return model(**batch).logits.float()


def _assert_fresh(model, batch) -> None:
    expected = _expected_masks(model)
    for name, module in model.masked_modules.items():
        assert torch.equal(module.current_mask(), expected[name]), name
    torch.testing.assert_close(_logits(model, batch), _logits(_fresh_copy(model), batch))


def _step(model, batch, optimizer) -> None:
    model(**batch).loss.backward()
    optimizer.step()
    optimizer.zero_grad()


def test_one_top_k_per_tensor_per_training_forward(tiny_tokenizer, batch, monkeypatch):
    """The embedding's three uses (encoder input, decoder input, output projection) share one mask per forward."""
    model = _model(tiny_tokenizer).train()
    calls = []
    real = masked_layers.topk_mask
    monkeypatch.setattr(masked_layers, "topk_mask", lambda *a, **k: calls.append(1) or real(*a, **k))
    model(**batch).loss.backward()
    assert len(calls) == len(model.masked_modules)


def test_gradient_checkpointing_trains_like_the_plain_model(tiny_tokenizer, batch):
    plain = _model(tiny_tokenizer).train()
    checkpointed = _model(tiny_tokenizer).train()
    checkpointed.activation_checkpointing_enable()  # transformers 5 name (the old one is deprecated)
    for model in (plain, checkpointed):
        model(**batch).loss.backward()
    for (name, a), (_, b) in zip(sorted(plain.masked_modules.items()), sorted(checkpointed.masked_modules.items())):
        torch.testing.assert_close(a.scores.grad, b.scores.grad, msg=name)


def test_fused_optimizer_with_forwards_between_backward_and_step(tiny_tokenizer, batch):
    """Case 2a-c: a no-grad forward, or eval() + generate() + train(), between backward() and step() leave no stale
    mask behind; masks read right after a step are the new ones."""
    model = _model(tiny_tokenizer).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.05, fused=True)
    model(**batch).loss.backward()
    with torch.no_grad():
        model(**batch)  # (a) a no-grad forward between backward and step
    optimizer.step()
    optimizer.zero_grad()
    _assert_fresh(model, batch)
    model(**batch).loss.backward()
    model.eval()  # (b) evaluation between backward and step
    model.generate(input_ids=batch["input_ids"][:2], max_new_tokens=3)
    model.train()
    optimizer.step()
    optimizer.zero_grad()
    model.eval()
    _assert_fresh(model, batch)
    model.train()
    _step(model, batch, optimizer)
    expected = _expected_masks(model)  # (c) read right after a step
    assert all(torch.equal(m.current_mask(), expected[n]) for n, m in model.masked_modules.items())
    exported = model.export_dense().eval()
    torch.testing.assert_close(_logits(exported, batch), _logits(_fresh_copy(model).eval(), batch))


def test_eval_mode_steps_and_in_place_edits(tiny_tokenizer, batch, tmp_path):
    """Case 2d: an optimizer step in eval mode drops the folded weights; in-place edits that no version counter sees
    (`p.data.copy_`, an EMA) are picked up by calling eval() again, the documented way to refold."""
    model = _model(tiny_tokenizer).eval()
    _logits(model, batch)  # folds
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.05, fused=True)
    model.train()
    model(**batch).loss.backward()
    model.eval()
    _logits(model, batch)  # folds again, before the step
    optimizer.step()
    _assert_fresh(model, batch)
    shuffled = {
        n: m.scores.detach().flatten()[torch.randperm(m.scores.numel())].view(m.shape)
        for n, m in model.masked_modules.items()
    }
    for name, module in model.masked_modules.items():
        module.scores.data.copy_(shuffled[name])
    model.eval()
    _assert_fresh(model, batch)
    # and what is saved then is what the scores select
    model.save_pretrained(tmp_path)
    loaded = SupermaskForConditionalGeneration.from_pretrained(tmp_path)
    expected = _expected_masks(model)
    assert all(torch.equal(m.current_mask(), expected[n]) for n, m in loaded.masked_modules.items())


def test_a_cast_never_changes_a_mask(tiny_tokenizer, batch, tmp_path):
    """Case 4: masks are the float32 ones after `.to(bfloat16)` (forward or not before it), and a checkpoint that
    keeps its scores loads with `dtype=torch.bfloat16`."""
    reference = _model(tiny_tokenizer)
    float_masks = reference.masks_fingerprint()
    cast = _model(tiny_tokenizer).to(torch.bfloat16)  # no forward before the cast
    assert cast.masks_fingerprint() == float_masks
    assert {m.scores.dtype for m in cast.masked_modules.values()} == {torch.float32}
    assert cast.model.encoder.layers[0].fc1.weight.dtype == torch.bfloat16
    with_scores = _model(tiny_tokenizer)
    with_scores.save_scores = True
    with_scores.save_pretrained(tmp_path)
    loaded = SupermaskForConditionalGeneration.from_pretrained(tmp_path, dtype=torch.bfloat16)
    assert loaded.masks_fingerprint() == float_masks
    assert loaded.generate(input_ids=batch["input_ids"][:2], max_new_tokens=3).shape[0] == 2


def test_scores_written_after_loading_are_kept(tiny_tokenizer, batch, tmp_path):
    """Case 5: reading a state_dict or calling train() never replaces scores the user wrote."""
    _model(tiny_tokenizer).save_pretrained(tmp_path)
    for write in ("copy_", "data.copy_"):
        loaded = SupermaskForConditionalGeneration.from_pretrained(tmp_path)
        layer = loaded.model.encoder.layers[0].fc1
        new = torch.linspace(-1, 1, layer.scores.numel()).view(layer.shape)
        with torch.no_grad():
            (layer.scores if write == "copy_" else layer.scores.data).copy_(new)
        loaded.state_dict()
        loaded.train()
        assert torch.equal(layer.scores.detach(), new), write
        assert torch.equal(layer.current_mask(), _expected_masks(loaded)["model.encoder.layers.0.fc1"]), write


def test_replicas_compute_with_their_own_tensors(tiny_tokenizer, batch, monkeypatch):
    """Case 6: nn.DataParallel's replication (simulated on the CPU) gives every replica its own random weights and
    embedding; the original's tensors are never reached."""
    import importlib

    replicate_module = importlib.import_module("torch.nn.parallel.replicate")

    def clone_to_devices(tensors, devices, detach=False):
        return [[t.detach().clone() if detach else t.clone() for t in tensors] for _ in devices]

    monkeypatch.setattr(replicate_module, "_broadcast_coalesced_reshape", clone_to_devices)
    model = _model(tiny_tokenizer).eval()
    expected = _logits(model, batch)
    replicas = replicate_module.replicate(model, [0, 1], detach=True)
    with torch.no_grad():  # wreck the original's tensors: replicas must not see it
        for buffer in model.random_weights.buffers():
            buffer.zero_()
        for module in model.masked_modules.values():
            module.scores.normal_()
            module.scores_changed()
    for replica in replicas:
        assert replica.model.encoder.embed_tokens is replica.model.shared
        fc1 = replica.model.encoder.layers[0].fc1
        assert fc1.weight.data_ptr() == replica.model.random_weights.get(fc1.weight_name).data_ptr()
        torch.testing.assert_close(_logits(replica, batch), expected)


def test_share_layers_survives_moves_copies_and_casts(tiny_tokenizer):
    model = _model(tiny_tokenizer)
    for moved in (copy.deepcopy(model), model.to(torch.bfloat16), model.to("cpu", torch.float32)):
        layers = moved.model.encoder.layers
        assert layers[0].fc1.weight.data_ptr() == layers[1].fc1.weight.data_ptr()
        assert layers[0].fc1.random_weights is moved.model.random_weights


def test_inference_mode_then_a_grad_enabled_eval_forward(tiny_tokenizer, batch):
    """Case 7: folding under inference_mode does not leave an inference tensor behind (input attribution works)."""
    model = _model(tiny_tokenizer).eval()
    with torch.inference_mode():
        model(**batch)
    embeddings = model.model.shared(batch["input_ids"]).detach().requires_grad_(True)
    inputs = {k: v for k, v in batch.items() if k != "input_ids"}
    model(inputs_embeds=embeddings, **inputs).loss.backward()
    assert embeddings.grad is not None and embeddings.grad.abs().sum() > 0


def test_return_dict_false_gives_a_tuple(tiny_tokenizer, batch):
    """Case 8."""
    model = _model(tiny_tokenizer).eval()
    with torch.no_grad():
        as_tuple = model(**batch, return_dict=False)
        as_output = model(**batch)
    assert isinstance(as_tuple, tuple)
    torch.testing.assert_close(as_tuple[0], as_output.loss)
    torch.testing.assert_close(as_tuple[1], as_output.logits)


def test_scores_stay_out_of_the_state_dict_only_when_asked(tiny_tokenizer, tmp_path):
    """The embedding is saved once (under model.shared), whatever the stacks register."""
    model = _model(tiny_tokenizer)
    model.save_pretrained(tmp_path)
    from safetensors import safe_open

    with safe_open(tmp_path / "model.safetensors", framework="pt") as reader:
        keys = set(reader.keys())
    assert keys == {f"{name}.mask" for name in model.masked_modules}
    assert json.loads((tmp_path / "config.json").read_text())["masks_sha256"] == model.masks_fingerprint()


def _trained_then_folded(model, batch, optimizer) -> None:
    """A gradient computed in training mode, then an eval forward (folds), then a fused step in eval mode."""
    model.train()
    model(**batch).loss.backward()
    model.eval()
    _logits(model, batch)
    optimizer.step()
    optimizer.zero_grad()


def test_copies_and_pickles_see_optimizer_steps(tiny_tokenizer, batch, tmp_path):
    """Item 7: what decides that a fold is stale travels with the module (deepcopy, pickling, torch.load)."""
    import pickle

    original = _model(tiny_tokenizer).eval()
    _logits(original, batch)  # a fold, which the copies must not reuse after their own steps
    torch.save(original, tmp_path / "model.pt")
    copies = {
        "deepcopy": copy.deepcopy(original),
        "pickle": pickle.loads(pickle.dumps(original)),
        "torch.load": torch.load(tmp_path / "model.pt", weights_only=False),
    }
    for how, model in copies.items():
        optimizer = torch.optim.Adam(model.parameters(), lr=0.05, fused=True)
        _trained_then_folded(model, batch, optimizer)
        expected = _expected_masks(model)
        assert any(not torch.equal(expected[n], m.current_mask()) for n, m in original.masked_modules.items()), how
        _assert_fresh(model, batch)


def test_a_copied_loaded_model_keeps_its_trained_scores_across_switches(tiny_tokenizer, batch, tmp_path):
    """Item 7: a copy of a loaded model, trained, switched away and back, keeps what it learned (its scores are no
    longer a mask's rebuild)."""
    _model(tiny_tokenizer).save_pretrained(tmp_path / "a")
    loaded = SupermaskForConditionalGeneration.from_pretrained(tmp_path / "a")
    model = copy.deepcopy(loaded).train()
    model.load_masks(tmp_path / "a", "other")
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05, fused=True)
    model(**batch).loss.backward()
    optimizer.step()
    trained = {n: m.scores.detach().clone() for n, m in model.masked_modules.items()}
    model.set_active_masks("other")
    model.set_active_masks("default")
    assert all(torch.equal(m.scores, trained[n]) for n, m in model.masked_modules.items())


def test_replicas_compute_with_their_own_tensors_after_an_eval_forward(tiny_tokenizer, batch, monkeypatch):
    """Item 11: after an eval forward on the master, each replica folds its own tensors. The CPU stand-in for a second
    device gives replica 1 float64 copies: with the master's float32 fold it could not compute at all."""
    import importlib

    replicate_module = importlib.import_module("torch.nn.parallel.replicate")

    def to_devices(tensors, devices, detach=False):
        dtypes = {0: torch.float32, 1: torch.float64}
        return [
            [t.detach().to(dtypes[d], copy=True) if t.is_floating_point() else t.detach().clone() for t in tensors]
            for d in devices
        ]

    monkeypatch.setattr(replicate_module, "_broadcast_coalesced_reshape", to_devices)
    model = _model(tiny_tokenizer).eval()
    expected = _logits(model, batch)  # folds the master's float32 tensors
    replicas = replicate_module.replicate(model, [0, 1], detach=True)
    for replica, dtype in zip(replicas, (torch.float32, torch.float64)):
        with torch.no_grad():
            logits = replica(**batch).logits
        assert logits.dtype == dtype
        torch.testing.assert_close(logits.float(), expected, atol=1e-5, rtol=1e-5)
        assert replica.model.encoder.layers[0].fc1._folded.dtype == dtype
    assert model.model.encoder.layers[0].fc1._folded.dtype == torch.float32  # the master's own fold, untouched


def test_eval_with_unchanged_scores_does_not_refold(tiny_tokenizer, batch, monkeypatch):
    """A server calling eval() before each request pays no top-k and no fold while the scores are
    unchanged; an edit through `.data` (no version counter sees it) is still picked up by the next eval()."""
    model = _model(tiny_tokenizer).eval()
    _logits(model, batch)
    folds = []
    real = masked_layers.topk_mask
    monkeypatch.setattr(masked_layers, "topk_mask", lambda *a, **k: folds.append(1) or real(*a, **k))
    for _ in range(3):
        model.eval()
        model.generate(input_ids=batch["input_ids"][:2], max_new_tokens=3)
    assert folds == []
    layer = model.model.decoder.layers[1].fc2
    layer.scores.data.copy_(layer.scores.data.flip(0))  # rows swapped: the same values, another mask
    model.eval()
    _assert_fresh(model, batch)
    assert len(folds) >= 1


def test_eval_sees_an_edit_of_one_ulp_through_data(tiny_tokenizer, batch):
    """The content check is exact: two near-tied scores swapping places in the top-k by an edit of a couple of ulps
    through `.data` (no version counter sees it) is seen by the next eval(), like any larger edit."""
    model = _model(tiny_tokenizer).eval()
    _logits(model, batch)
    layer = model.model.decoder.layers[1].fc2
    scores = layer.scores.data
    magnitudes = scores.abs().flatten()
    order = torch.argsort(magnitudes, descending=True)
    last_kept, first_dropped = order[layer.num_kept - 1], order[layer.num_kept]
    threshold = magnitudes[last_kept]
    flat = scores.view(-1)
    sign = torch.sign(flat[first_dropped])
    flat[first_dropped] = sign * torch.nextafter(threshold, torch.tensor(0.0))  # just below: still dropped
    model.eval()
    _assert_fresh(model, batch)
    flat[first_dropped] = sign * torch.nextafter(threshold, torch.tensor(1.0))  # just above: now kept, another mask
    model.eval()
    _assert_fresh(model, batch)
    assert layer.current_mask().view(-1)[first_dropped] and not layer.current_mask().view(-1)[last_kept]


def test_nan_scores_are_refused(tiny_tokenizer, batch, tmp_path):
    """One NaN score made the CPU top-k keep k-1 weights and save_pretrained write a folder that cannot be loaded."""
    model = _model(tiny_tokenizer)
    with torch.no_grad():
        model.model.encoder.layers[0].fc1.scores[0, 0] = float("nan")
    with pytest.raises(ValueError, match="hold 1 NaN value"):
        model.save_pretrained(tmp_path)
    assert not (tmp_path / "model.safetensors").exists()
    with pytest.raises(ValueError, match="NaN value.*Training diverged"):
        model.train()(**batch)
    with pytest.raises(ValueError, match="NaN"):
        _logits(model.eval(), batch)


def test_a_cast_keeps_the_accumulated_score_gradients(tiny_tokenizer, batch):
    """`.to(bfloat16)` between backward() and step() does not round the scores' gradients."""
    model = _model(tiny_tokenizer).train()
    model(**batch).loss.backward()
    grads = {n: m.scores.grad.clone() for n, m in model.masked_modules.items()}
    model.to(torch.bfloat16)
    for name, module in model.masked_modules.items():
        assert module.scores.dtype == module.scores.grad.dtype == torch.float32, name
        assert torch.equal(module.scores.grad, grads[name]), name


def test_a_fold_follows_its_random_weight(tiny_tokenizer, batch):
    """The fold is keyed on the random weight too: replacing or editing it in place (a regeneration) refolds."""
    model = _model(tiny_tokenizer).eval()
    _logits(model, batch)
    layer = model.model.encoder.layers[0].fc1
    with torch.no_grad():
        layer.weight.mul_(2.0)
    assert torch.equal(layer.effective_weight(), layer.weight * layer.current_mask())


def test_generate_checks_each_fold_once_per_call(tiny_tokenizer, batch, monkeypatch):
    """The decoding loop uses the folds checked at the start of `generate`, not a check per layer and step; what
    changed between calls (an edit through `.data`, then eval()) is still seen by the next call."""
    model = _model(tiny_tokenizer).eval()
    inputs = batch["input_ids"][:2]
    model.generate(input_ids=inputs, max_new_tokens=2)
    checks = []
    real = masked_layers.MaskedWeight._fold_is_fresh
    monkeypatch.setattr(masked_layers.MaskedWeight, "_fold_is_fresh", lambda self: checks.append(self) or real(self))
    model.generate(input_ids=inputs, max_new_tokens=8, min_new_tokens=8)
    assert len(checks) == len(model.masked_modules)  # one per masked tensor, whatever the number of steps
    assert not model.random_weights._folds_checked[0]  # the trust ends with the call

    layer = model.model.decoder.layers[0].fc1
    layer.scores.data.copy_(layer.scores.data.flip(0))
    model.eval()
    edited = model.generate(
        input_ids=inputs, max_new_tokens=8, min_new_tokens=8, output_logits=True, return_dict_in_generate=True
    )
    fresh = _model(tiny_tokenizer).eval()
    fresh.load_state_dict(model.state_dict())
    expected = fresh.generate(
        input_ids=inputs, max_new_tokens=8, min_new_tokens=8, output_logits=True, return_dict_in_generate=True
    )
    assert torch.equal(edited.sequences, expected.sequences)
    assert all(torch.equal(a, b) for a, b in zip(edited.logits, expected.logits))
