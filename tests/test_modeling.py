"""SupermaskForConditionalGeneration: checkpoints, refusal of bad checkpoints, sharing, caching, export, remote code."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import torch
from conftest import read_lines, run_without_the_package, tiny_config
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from transformers import AutoConfig, AutoModel, AutoModelForSeq2SeqLM, MarianMTModel

from hf_supermask import SupermaskConfig, SupermaskForConditionalGeneration


SOURCES = read_lines("test_2016_flickr", "en", 6)


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory, tiny_tokenizer):
    """A tiny model whose masks moved away from their initial top-k, saved with its tokenizer."""
    model = SupermaskForConditionalGeneration(tiny_config(vocab_size=len(tiny_tokenizer)))
    with torch.no_grad():  # stand-in for training: scramble every mask
        for module in model.masked_modules.values():
            module.scores.copy_(torch.randn(module.shape, generator=torch.Generator().manual_seed(7)))
    model.eval()
    path = tmp_path_factory.mktemp("checkpoint")
    model.save_pretrained(path)
    tiny_tokenizer.save_pretrained(path)
    return model, path


def _batch(tokenizer, sentences=SOURCES):
    return tokenizer(sentences, return_tensors="pt", padding=True)


def _masks_equal(a, b) -> bool:
    return all(
        torch.equal(x.current_mask(), y.current_mask())
        for x, y in zip(a.masked_modules.values(), b.masked_modules.values())
    )


def test_auto_classes_are_registered():
    values = {k: v for k, v in tiny_config().to_dict().items() if k != "model_type"}
    config = AutoConfig.for_model("supermask", **values)
    assert isinstance(config, SupermaskConfig)
    assert type(AutoModelForSeq2SeqLM.from_config(config)) is SupermaskForConditionalGeneration
    assert type(AutoModel.from_config(config)).__name__ == "SupermaskModel"


def test_forward_signatures_are_those_of_the_undecorated_forwards():
    """`generate()` reads `inspect.signature(model.forward)` at every decoding step of an Auto-registered model; the
    wrapped forwards carry their signature precomputed, and it must be exactly the undecorated function's."""
    import inspect

    model = SupermaskForConditionalGeneration(tiny_config())
    for module in (model, model.model, model.model.decoder, model.model.encoder):
        signature = inspect.signature(module.forward)
        undecorated = inspect.signature(inspect.unwrap(type(module).forward))
        assert list(signature.parameters) == list(undecorated.parameters)[1:]  # bound: without `self`
    assert {"labels", "cache", "past_key_values"} <= set(inspect.signature(model.forward).parameters)
    assert "__signature__" in vars(type(model).forward)  # not rebuilt from the code object at each call


@pytest.mark.parametrize(
    "field, value",
    [
        ("density", 0.0),
        ("density", 1.5),
        ("weight_init", "orthogonal"),
        ("score_init", "zeros"),
        ("encoder_attention_heads", 5),
        ("activation_function", "swoosh"),
        ("generator_version", 99),
    ],
)
def test_invalid_config_values_name_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        tiny_config(**{field: value})


def test_opus_mt_token_convention():
    config = SupermaskConfig(vocab_size=100)
    assert config.pad_token_id == config.decoder_start_token_id == 99 and config.eos_token_id == 0
    model = SupermaskForConditionalGeneration(tiny_config())
    assert model.generation_config.bad_words_ids == [[model.config.pad_token_id]]


def test_every_maskable_tensor_keeps_exactly_k():
    model = SupermaskForConditionalGeneration(tiny_config(density=0.3))
    names = model.masked_modules
    # q/k/v/out (self; decoder also cross), fc1, fc2 per layer, plus the one embedding
    assert len(names) == 2 * 6 + 2 * 10 + 1
    for module in names.values():
        assert int(module.current_mask().sum()) == module.num_kept == round(0.3 * module.weight.numel())


def test_share_layers_shares_storage():
    shared = SupermaskForConditionalGeneration(tiny_config(encoder_layers=3, decoder_layers=3))
    # one random tensor per encoder/decoder module type, plus the embedding
    assert len(shared.random_weights.shapes) == 6 + 10 + 1
    enc = shared.model.encoder.layers
    assert enc[0].fc1.weight.data_ptr() == enc[1].fc1.weight.data_ptr() == enc[2].fc1.weight.data_ptr()
    assert enc[0].fc1.scores.data_ptr() != enc[1].fc1.scores.data_ptr()  # own scores, own mask
    assert enc[0].self_attn.q_proj.weight.data_ptr() != enc[0].self_attn.k_proj.weight.data_ptr()
    assert shared.model.decoder.layers[0].fc1.weight.data_ptr() != enc[0].fc1.weight.data_ptr()
    shared.to(torch.float64)  # conversions keep one tensor, not one per layer
    assert enc[0].fc1.weight.data_ptr() == enc[2].fc1.weight.data_ptr() and enc[0].fc1.weight.dtype == torch.float64

    unshared = SupermaskForConditionalGeneration(tiny_config(encoder_layers=3, decoder_layers=3, share_layers=False))
    assert len(unshared.random_weights.shapes) == 3 * 6 + 3 * 10 + 1
    layers = unshared.model.encoder.layers
    assert not torch.equal(layers[0].fc1.weight, layers[1].fc1.weight)
    # nothing random is a trainable parameter or saved: only scores train, only masks are saved
    assert {n.rsplit(".", 1)[-1] for n, p in unshared.named_parameters()} == {"scores"}


def test_eval_caches_dense_weights_and_train_drops_them():
    model = SupermaskForConditionalGeneration(tiny_config()).eval()
    layer = model.model.encoder.layers[0].fc1
    first = layer.effective_weight()
    assert layer.effective_weight() is first  # no re-masking per call at inference
    assert torch.equal(first, layer.weight * layer.current_mask())
    model.train()
    assert layer._folded is None
    with torch.no_grad():
        layer.scores.mul_(-1).add_(torch.linspace(0, 1, layer.scores.numel()).view_as(layer.scores))
    model.eval()
    assert not torch.equal(layer.effective_weight(), first)  # scores changed: cache rebuilt


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_inference_kernels_give_the_bits_of_the_plain_ones(dtype):
    """Inference takes torch's faster CPU kernels (a zero bias beside each fold, a unit affine for each LayerNorm);
    they must give exactly the plain ops' bits, in every dtype, and leave nothing an autograd graph cannot take."""
    from torch.nn import functional as F

    from hf_supermask.modeling.modeling_supermask import PlainLayerNorm, _unit_affine

    model = SupermaskForConditionalGeneration(tiny_config()).to(dtype).eval()
    layer = model.model.decoder.layers[0]
    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(5, 3, model.config.d_model, generator=generator).mul(3).add(1).to(dtype)
    with torch.inference_mode():
        linear_out = layer.fc1(hidden)
        norm_out = layer.final_layer_norm(hidden)
    fold = layer.fc1._folded
    assert fold is not None and fold.dtype == dtype
    assert torch.equal(layer.fc1._fold_bias, torch.zeros(fold.shape[0], dtype=dtype))
    assert torch.equal(linear_out, F.linear(hidden, fold))
    assert isinstance(layer.final_layer_norm, PlainLayerNorm)
    assert torch.equal(norm_out, F.layer_norm(hidden, (model.config.d_model,), eps=layer.final_layer_norm.eps))
    # What inference made is ordinary tensors (an inference tensor could never enter an autograd graph later); a
    # grad-enabled forward right after works, and takes the plain call (its backward is the training one).
    shape = (model.config.d_model,)
    assert not any(
        torch.is_inference(t) for t in (fold, layer.fc1._fold_bias, *_unit_affine(shape, dtype, fold.device))
    )
    source = hidden.clone().requires_grad_()
    layer.final_layer_norm(layer.fc2(layer.fc1(source))).sum().backward()
    assert source.grad is not None and torch.isfinite(source.grad).all()
    with torch.no_grad():
        assert torch.equal(layer.final_layer_norm(hidden), norm_out)


def test_save_load_gives_identical_logits_and_generations(checkpoint, tiny_tokenizer):
    model, path = checkpoint
    loaded = AutoModelForSeq2SeqLM.from_pretrained(path)
    assert type(loaded) is SupermaskForConditionalGeneration and not loaded.training
    assert _masks_equal(model, loaded)
    batch = _batch(tiny_tokenizer)
    decoder_input_ids = torch.full((len(SOURCES), 3), model.config.decoder_start_token_id)
    with torch.no_grad():
        assert torch.equal(
            model(**batch, decoder_input_ids=decoder_input_ids).logits,
            loaded(**batch, decoder_input_ids=decoder_input_ids).logits,
        )
    for kwargs in ({"num_beams": 1}, {"num_beams": 3}):
        assert torch.equal(
            model.generate(**batch, max_new_tokens=8, **kwargs), loaded.generate(**batch, max_new_tokens=8, **kwargs)
        )


def test_checkpoint_holds_only_packed_uint8_masks(checkpoint):
    model, path = checkpoint
    files = sorted(os.listdir(path))
    assert "model.safetensors" in files and "config.json" in files and "generation_config.json" in files
    with safe_open(path / "model.safetensors", framework="pt") as reader:
        keys = list(reader.keys())
        assert {reader.get_slice(k).get_dtype() for k in keys} == {"U8"}
    assert all(k.endswith(".mask") for k in keys) and len(keys) == len(model.masked_modules)
    maskable = sum(m.weight.numel() for m in model.masked_modules.values())
    size = os.path.getsize(path / "model.safetensors")
    assert maskable / 8 <= size <= 1.01 * maskable / 8 + 16 * 1024
    config = json.loads((path / "config.json").read_text())
    assert config["weights_sha256"] == model.random_weights.fingerprint
    assert config["auto_map"]["AutoModelForSeq2SeqLM"] == "modeling_supermask.SupermaskForConditionalGeneration"
    for name in ("seed", "density", "weight_init", "generator_version", "masks_sha256"):
        assert name in config


def _tamper_config(path, **changes):
    config = json.loads((path / "config.json").read_text())
    config.update(changes)
    (path / "config.json").write_text(json.dumps(config))


def _tamper_tensors(path, edit):
    tensors = load_file(path / "model.safetensors")
    edit(tensors)
    save_file(tensors, path / "model.safetensors", metadata={"format": "pt"})


FC1 = "model.encoder.layers.0.fc1.mask"


def _flip_a_byte(t):
    t[FC1][3] = 0 if t[FC1][3] else 0xFF


def _swap_two_bytes(t):  # same number of kept weights: only the fingerprint of the masks can tell
    mask = t[FC1]
    differing = next(i for i in range(1, mask.numel()) if mask[i] != mask[0])
    mask[0], mask[differing] = mask[differing].clone(), mask[0].clone()


TAMPERINGS = {
    "edited seed": (lambda p: _tamper_config(p, seed=99), ValueError, "seed=99"),
    "edited init": (lambda p: _tamper_config(p, weight_init="xavier_uniform"), ValueError, "sha256"),
    "other generator": (lambda p: _tamper_config(p, generator_version=2), ValueError, "generator_version"),
    "flipped mask byte": (lambda p: _tamper_tensors(p, _flip_a_byte), ValueError, "keeps"),
    "swapped mask bytes": (lambda p: _tamper_tensors(p, _swap_two_bytes), ValueError, "masks_sha256"),
    "truncated file": (
        lambda p: (p / "model.safetensors").write_bytes((p / "model.safetensors").read_bytes()[:-64]),
        OSError,
        "truncated",
    ),
    "wrong shape": (
        lambda p: _tamper_tensors(p, lambda t: t.update({FC1: t[FC1][:-1].clone()})),
        RuntimeError,
        "ignore_mismatched_sizes",
    ),
    "missing mask": (lambda p: _tamper_tensors(p, lambda t: t.pop(FC1)), ValueError, "no mask"),
    "float mask": (lambda p: _tamper_tensors(p, lambda t: t.update({FC1: t[FC1].float()})), ValueError, "uint8"),
}


@pytest.mark.parametrize("tampering", sorted(TAMPERINGS))
def test_bad_checkpoints_are_refused(checkpoint, tmp_path, tampering):
    _, path = checkpoint
    edit, error, message = TAMPERINGS[tampering]
    copy = tmp_path / "copy"
    shutil.copytree(path, copy)
    edit(copy)
    with pytest.raises(error, match=message):
        AutoModelForSeq2SeqLM.from_pretrained(copy)


def test_bfloat16_load_keeps_uint8_masks(checkpoint, tiny_tokenizer):
    model, path = checkpoint
    loaded = AutoModelForSeq2SeqLM.from_pretrained(path, dtype=torch.bfloat16)
    assert {b.dtype for n, b in loaded.named_buffers() if n.endswith(".mask")} == {torch.uint8}
    assert loaded.model.encoder.layers[0].fc1.weight.dtype == torch.bfloat16
    assert _masks_equal(model, loaded)
    # the weights were fingerprinted in float32, before the cast
    assert loaded.random_weights.fingerprint == model.random_weights.fingerprint
    assert loaded.generate(**_batch(tiny_tokenizer), max_new_tokens=4).shape[0] == len(SOURCES)


def test_batched_and_one_by_one_translations_are_equal(checkpoint, tiny_tokenizer):
    model, _ = checkpoint
    batched = model.generate(**_batch(tiny_tokenizer), max_new_tokens=10, num_beams=2)
    for i, sentence in enumerate(SOURCES):
        single = model.generate(**_batch(tiny_tokenizer, [sentence]), max_new_tokens=10, num_beams=2)
        row = batched[i][: single.shape[1]]
        assert torch.equal(row, single[0])
        assert (batched[i][single.shape[1] :] == model.config.pad_token_id).all()


def test_generate_uses_a_kv_cache(checkpoint, tiny_tokenizer):
    model, _ = checkpoint
    batch = _batch(tiny_tokenizer)
    calls = []
    hook = model.model.decoder.register_forward_pre_hook(
        lambda module, args, kwargs: calls.append(kwargs["input_ids"].shape[1]), with_kwargs=True
    )
    try:
        cached = model.generate(**batch, max_new_tokens=6, min_new_tokens=6, use_cache=True)
    finally:
        hook.remove()
    assert calls and max(calls) == 1  # one new token per step, not the whole prefix
    assert torch.equal(cached, model.generate(**batch, max_new_tokens=6, min_new_tokens=6, use_cache=False))


def test_generation_never_emits_pad(checkpoint, tiny_tokenizer):
    model, _ = checkpoint
    out = model.generate(**_batch(tiny_tokenizer), max_new_tokens=12)
    for row in out:
        tokens = row[1:].tolist()
        body = tokens[: tokens.index(0) + 1] if 0 in tokens else tokens
        assert model.config.pad_token_id not in body


def test_num_items_in_batch_normalises_by_tokens(checkpoint, tiny_tokenizer):
    model, _ = checkpoint
    batch = tiny_tokenizer(
        SOURCES[:2], text_target=read_lines("test_2016_flickr", "de", 2), padding=True, return_tensors="pt"
    )
    labels = batch["labels"].masked_fill(batch["labels"] == tiny_tokenizer.pad_token_id, -100)
    mean = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=labels).loss
    items = int((labels != -100).sum())
    summed = model(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        labels=labels,
        num_items_in_batch=2 * items,
    ).loss
    torch.testing.assert_close(summed * 2, mean)


def test_fine_tuning_a_loaded_checkpoint_moves_masks_and_lowers_loss(checkpoint, tiny_tokenizer):
    _, path = checkpoint
    model = AutoModelForSeq2SeqLM.from_pretrained(path)
    english, german = read_lines("train", "en", 16), read_lines("train", "de", 16)
    batch = tiny_tokenizer(english, text_target=german, padding=True, return_tensors="pt")
    batch["labels"] = batch["labels"].masked_fill(batch["labels"] == tiny_tokenizer.pad_token_id, -100)
    before = {name: m.current_mask().clone() for name, m in model.masked_modules.items()}
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    losses = []
    for _ in range(12):
        loss = model(**batch).loss
        losses.append(loss.item())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    changed = sum(int((m.current_mask() != before[n]).sum()) for n, m in model.masked_modules.items())
    assert changed > 0
    assert losses[-1] < losses[0]
    # the random weights never change
    assert model.random_weights.regenerate() == model.config.weights_sha256


@pytest.mark.parametrize("fused", [False, True])
def test_masks_follow_optimizer_steps_that_bypass_version_counters(fused):
    """Fused optimizers update scores without bumping their version counters: cached masks must still refresh."""
    model = SupermaskForConditionalGeneration(tiny_config())
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.05, fused=fused)
    ids = torch.tensor([[5, 6, 7, 0]])  # token ids only; no sentence pairs are involved
    for _ in range(3):
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    with torch.no_grad():
        model(input_ids=ids, labels=ids)
    for module in model.masked_modules.values():
        fresh = torch.topk(module.scores.detach().abs().flatten(), module.num_kept).indices
        assert module.current_mask().flatten()[fresh].all()


def test_export_dense_is_a_stock_marian_model_with_equal_outputs(checkpoint, tiny_tokenizer, tmp_path):
    model, _ = checkpoint
    dense = model.export_dense()
    assert type(dense) is MarianMTModel
    batch = _batch(tiny_tokenizer)
    decoder_input_ids = tiny_tokenizer(read_lines("test_2016_flickr", "de", 6), return_tensors="pt", padding=True)[
        "input_ids"
    ]
    with torch.no_grad():
        ours = model(**batch, decoder_input_ids=decoder_input_ids).logits
        theirs = dense(**batch, decoder_input_ids=decoder_input_ids).logits
    torch.testing.assert_close(theirs, ours, atol=1e-5, rtol=0)
    for kwargs in ({"num_beams": 1}, {"num_beams": 4}):
        assert torch.equal(
            model.generate(**batch, max_new_tokens=10, **kwargs), dense.generate(**batch, max_new_tokens=10, **kwargs)
        )
    dense.save_pretrained(tmp_path / "dense")
    reloaded = MarianMTModel.from_pretrained(tmp_path / "dense")
    assert torch.equal(reloaded.generate(**batch, max_new_tokens=10), dense.generate(**batch, max_new_tokens=10))


_WITHOUT_PACKAGE = """
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, MarianMTModel
try:
    import hf_supermask
    raise SystemExit("hf_supermask is importable")
except ImportError:
    pass
path, dense_path = sys.argv[1], sys.argv[2]
tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=True)
batch = tokenizer(json.loads(sys.argv[3]), return_tensors="pt", padding=True)
model = AutoModelForSeq2SeqLM.from_pretrained(path, trust_remote_code=True)
dense = MarianMTModel.from_pretrained(dense_path)
from transformers import pipeline
translator = pipeline("translation", model=path, trust_remote_code=True, max_new_tokens=8, num_beams=2)
emit({
    "module": type(model).__module__,
    "pipeline": [type(translator).__module__] + [r["translation_text"] for r in translator(json.loads(sys.argv[3]))],
    "remote": model.generate(**batch, max_new_tokens=8, num_beams=2).tolist(),
    "dense": dense.generate(**batch, max_new_tokens=8, num_beams=2).tolist(),
})
"""


def test_loads_with_remote_code_and_exports_without_the_package(checkpoint, tiny_tokenizer, tmp_path):
    model, path = checkpoint
    for module_file in (
        "configuration_supermask.py",
        "modeling_supermask.py",
        "masked_layers.py",
        "binarizers.py",
        "random_weights.py",
        "external_weights.py",
        "mask_sets.py",
        "dense_export.py",
        "pipeline_translation.py",
    ):
        assert (path / module_file).exists(), module_file
    model.export_dense().save_pretrained(tmp_path / "dense")
    out = run_without_the_package(
        _WITHOUT_PACKAGE, str(path), str(tmp_path / "dense"), json.dumps(SOURCES), tmp_path=tmp_path
    )
    assert out["module"].startswith("transformers_modules")
    expected = model.generate(**_batch(tiny_tokenizer), max_new_tokens=8, num_beams=2).tolist()
    assert out["remote"] == expected == out["dense"]
    assert out["pipeline"][0].startswith("transformers_modules")  # the pipeline shipped in the checkpoint
    assert out["pipeline"][1:] == tiny_tokenizer.batch_decode(expected, skip_special_tokens=True)


def test_translation_pipeline_after_import_needs_no_remote_code(checkpoint, tiny_tokenizer):
    from transformers import pipeline

    model, path = checkpoint
    assert json.loads((path / "config.json").read_text())["custom_pipelines"]["translation"]["impl"] == (
        "pipeline_translation.TranslationPipeline"
    )
    assert (path / "pipeline_translation.py").exists()
    translator = pipeline("translation", model=str(path), max_new_tokens=8)
    assert type(translator.model) is SupermaskForConditionalGeneration
    expected = model.generate(**_batch(tiny_tokenizer, SOURCES[:2]), max_new_tokens=8)
    assert [r["translation_text"] for r in translator(SOURCES[:2], batch_size=2)] == tiny_tokenizer.batch_decode(
        expected, skip_special_tokens=True
    )


def test_ctranslate2_serves_the_export_unchanged(checkpoint, tiny_tokenizer, tmp_path):
    ctranslate2 = pytest.importorskip("ctranslate2", reason="install the test extra: pip install -e .[test]")
    model, _ = checkpoint
    dense_path = tmp_path / "dense"
    model.export_dense().save_pretrained(dense_path)
    tiny_tokenizer.save_pretrained(dense_path)
    ct2_path = tmp_path / "ct2"
    ctranslate2.converters.TransformersConverter(str(dense_path)).convert(str(ct2_path))
    translator = ctranslate2.Translator(str(ct2_path), device="cpu")
    sources = [tiny_tokenizer.convert_ids_to_tokens(tiny_tokenizer(s)["input_ids"]) for s in SOURCES]
    # generate() forces </s> at max_length, CTranslate2 does not: give ours one more step
    results = translator.translate_batch(sources, beam_size=1, max_decoding_length=10)
    ours = model.generate(**_batch(tiny_tokenizer), max_new_tokens=11, num_beams=1)
    for result, row in zip(results, ours):
        expected = tiny_tokenizer.convert_ids_to_tokens(
            [t for t in row[1:].tolist() if t not in (0, model.config.pad_token_id)]
        )
        assert result.hypotheses[0] == expected


def test_fixed_embedding_from_another_checkpoint(tmp_path):
    """The paper's fixed pre-trained embedding: referenced by path + sha256, never stored in the mask-only
    checkpoint."""
    from hf_supermask.modeling.modeling_supermask import marian_config_for

    dense = MarianMTModel(marian_config_for(tiny_config()))
    dense.save_pretrained(tmp_path / "dense")
    model = SupermaskForConditionalGeneration(tiny_config(embedding_source=str(tmp_path / "dense")))
    shared = model.model.shared
    assert model.config.mask_embedding is False and not shared.scores.requires_grad
    assert shared.num_kept == shared.weight.numel()  # kept whole
    assert torch.equal(shared.weight[:-1], dense.model.shared.weight[:-1])
    model.save_pretrained(tmp_path / "masks")
    with safe_open(tmp_path / "masks" / "model.safetensors", framework="pt") as reader:
        assert {reader.get_slice(k).get_dtype() for k in reader.keys()} == {"U8"}
    config = json.loads((tmp_path / "masks" / "config.json").read_text())
    assert config["embedding_source"] == str(tmp_path / "dense") and len(config["embedding_sha256"]) == 64
    loaded = AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "masks")
    assert torch.equal(loaded.model.shared.weight, shared.weight) and not loaded.model.shared.scores.requires_grad
    tensors = load_file(tmp_path / "dense" / "model.safetensors")
    tensors["model.shared.weight"][3, 3] += 1.0
    save_file(tensors, tmp_path / "dense" / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match="embedding_sha256"):
        AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "masks")


def test_num_maskable_weights_counts_every_mask_once_and_needs_no_weights():
    config = tiny_config()
    model = SupermaskForConditionalGeneration(config)
    scores = sum(p.numel() for name, p in model.named_parameters() if name.endswith("scores"))
    assert model.num_maskable_weights() == scores > 0  # one score per masked position, shared layers included
    with torch.device("meta"):
        assert SupermaskForConditionalGeneration(config).num_maskable_weights() == scores
