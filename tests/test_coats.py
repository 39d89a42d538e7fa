"""Multicoated masks (`coats`, Okoshi et al. 2022): nested top-|score| masks on the same scores, a weight in c coats
counting c times; stored as one bit per weight for the first coat and one per kept weight of each coat before the last.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from conftest import SHAPE, generate_through_remote_code, read_lines, scrambled_model, tiny_config, training_flags
from safetensors.torch import load_file, save_file
from transformers import AutoModelForSeq2SeqLM, MarianMTModel

from hf_supermask import SupermaskConfig, SupermaskForConditionalGeneration
from hf_supermask.modeling.binarizers import coat_counts, packed_size, topk_mask


SOURCES = read_lines("test_2016_flickr", "en", 4)
FC1 = "model.encoder.layers.0.fc1"


@pytest.fixture(scope="module")
def coated_checkpoint(tmp_path_factory, tiny_tokenizer):
    model = scrambled_model(tiny_config(vocab_size=len(tiny_tokenizer), coats=2))
    path = tmp_path_factory.mktemp("coated")
    model.save_pretrained(path)
    tiny_tokenizer.save_pretrained(path)
    return model, path


def _batch(tokenizer):
    return tokenizer(SOURCES, return_tensors="pt", padding=True)


def _logits(model, tokenizer):
    batch = _batch(tokenizer)
    with torch.no_grad():
        return model(**batch, decoder_input_ids=batch["input_ids"][:, :5]).logits


def _copy(path, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(path, copy)
    return copy


# ------------------------------------------------------------------------------------------------------------------
# The config fields
# ------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"coats": 0}, r"`coats` .* \[1, 255\]"),
        ({"coats": True}, r"`coats` .* \[1, 255\]"),
        ({"coats": 2.0}, r"`coats` .* \[1, 255\]"),
        ({"coat_density_ratio": 1.0}, r"`coat_density_ratio` .* 0 < coat_density_ratio < 1"),
        ({"coat_density_ratio": 0}, r"`coat_density_ratio` .* 0 < coat_density_ratio < 1"),
        ({"coats": 2, "frozen_fraction": 0.5}, "cannot be combined"),
    ],
)
def test_invalid_coat_fields_are_refused_naming_the_field(fields, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(**fields)


def test_one_coat_keeps_the_fingerprint_and_the_binary_mask():
    """Checkpoints saved before the fields existed keep their forward_config_sha256 and their stored format."""
    before = tiny_config().forward_config_fingerprint()
    assert before == tiny_config(coats=1, coat_density_ratio=0.5).forward_config_fingerprint()
    assert before != tiny_config(coats=2).forward_config_fingerprint()
    assert tiny_config(coats=2).forward_config_fingerprint() != (
        tiny_config(coats=2, coat_density_ratio=0.25).forward_config_fingerprint()
    )
    module = scrambled_model(tiny_config()).get_submodule(FC1)
    assert module.coat_kept == (module.num_kept,) and module.current_mask().dtype == torch.bool
    assert module.stored_size == packed_size(module.shape)
    assert SupermaskConfig.from_dict(tiny_config(coats=3).to_dict()).coats == 3


# ------------------------------------------------------------------------------------------------------------------
# The coats
# ------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("coats, ratio", [(2, 0.5), (3, 0.4)])
def test_coats_are_nested_top_k_selections_of_the_same_scores(coats, ratio):
    model = scrambled_model(tiny_config(coats=coats, coat_density_ratio=ratio))
    for name, module in model.masked_modules.items():
        counts = module.current_mask()
        numel = module.weight.numel()
        assert counts.dtype == torch.uint8 and int(counts.max()) == coats, name
        assert module.coat_kept == coat_counts(numel, 0.5, coats, ratio), name
        magnitudes = module.scores.detach().abs()
        for coat, kept in enumerate(module.coat_kept, start=1):
            assert torch.equal(counts >= coat, topk_mask(magnitudes, kept)), (name, coat)
        assert module.coat_kept[1] == round(ratio * module.coat_kept[0]), name


def test_the_effective_weight_is_the_random_weight_times_its_coat_count(tiny_tokenizer):
    model = scrambled_model(tiny_config(vocab_size=len(tiny_tokenizer), coats=2))
    module = model.get_submodule(FC1)
    counts = module.current_mask()
    expected = module.weight * counts.float()
    assert torch.equal(module.effective_weight(), expected)  # eval: the fold
    model.train()
    assert torch.equal(module.effective_weight(), expected)  # training: the straight-through product
    # and the coats change what the model computes (doubled weights are not a no-op)
    binary = scrambled_model(tiny_config(vocab_size=len(tiny_tokenizer)))
    assert not torch.allclose(_logits(binary, tiny_tokenizer), _logits(model.eval(), tiny_tokenizer))


@pytest.mark.parametrize("fused", [False, True])
def test_training_moves_every_coat_through_the_scores(tiny_tokenizer, fused):
    model = SupermaskForConditionalGeneration(tiny_config(vocab_size=len(tiny_tokenizer), coats=2))
    english, german = read_lines("train", "en", 16), read_lines("train", "de", 16)
    batch = tiny_tokenizer(english, text_target=german, padding=True, return_tensors="pt")
    batch["labels"] = batch["labels"].masked_fill(batch["labels"] == tiny_tokenizer.pad_token_id, -100)
    before = {name: m.current_mask().clone() for name, m in model.masked_modules.items()}
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05, fused=fused)
    for _ in range(3):
        loss = model(**batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()  # the fold must follow the fused steps (their version counters are bumped by our hook)
    changed_first = changed_second = 0
    for name, module in model.masked_modules.items():
        counts = module.current_mask()
        assert torch.equal(module.effective_weight(), module.weight * counts.float()), name
        assert [int((counts >= c).sum()) for c in (1, 2)] == list(module.coat_kept), name
        changed_first += int(((counts >= 1) != (before[name] >= 1)).sum())
        changed_second += int(((counts >= 2) != (before[name] >= 2)).sum())
    assert changed_first > 0 and changed_second > 0


# ------------------------------------------------------------------------------------------------------------------
# What is stored
# ------------------------------------------------------------------------------------------------------------------


def test_pack_stored_holds_each_coat_over_the_one_before():
    module = scrambled_model(tiny_config(coats=3, coat_density_ratio=0.5)).get_submodule(FC1)
    counts = module.current_mask()
    packed = module.pack_stored(counts)
    numel = counts.numel()
    assert (
        packed.numel()
        == module.stored_size
        == (packed_size((numel,)) + packed_size((module.coat_kept[0],)) + packed_size((module.coat_kept[1],)))
    )
    assert torch.equal(module.unpack_stored(packed), counts)
    # 1 + 0.5 + 0.25 bits per weight
    assert 8 * packed.numel() / numel == pytest.approx(1.75, abs=0.01)


@pytest.mark.parametrize("coats", [2, 3])
def test_scores_rebuilt_from_coat_counts_select_exactly_those_counts(coats):
    model = scrambled_model(tiny_config(coats=coats))
    for name, module in model.masked_modules.items():
        counts = module.current_mask()
        rebuilt = module.scores_selecting(counts)
        assert rebuilt.dtype == torch.float32 and rebuilt.shape == module.shape
        assert torch.equal(module.mask_from_scores(rebuilt), counts), name


@pytest.mark.parametrize("mask_encoding", ["packed", "initial_xor_lzma"])
def test_save_and_load_give_identical_coats_and_outputs(coated_checkpoint, tiny_tokenizer, tmp_path, mask_encoding):
    model, path = coated_checkpoint
    if mask_encoding != "packed":
        model.config.mask_encoding = mask_encoding
        try:
            model.save_pretrained(tmp_path / "coded")
        finally:
            model.config.mask_encoding = "packed"
        path = tmp_path / "coded"
        assert all(key.endswith(".mask_coded") for key in load_file(path / "model.safetensors"))
    loaded = AutoModelForSeq2SeqLM.from_pretrained(path)
    assert loaded.config.coats == 2
    for name, module in model.masked_modules.items():
        assert torch.equal(loaded.get_submodule(name).current_mask(), module.current_mask()), name
    assert loaded.masks_fingerprint() == model.masks_fingerprint() == loaded.config.masks_sha256
    assert torch.equal(_logits(loaded, tiny_tokenizer), _logits(model, tiny_tokenizer))
    batch = _batch(tiny_tokenizer)
    assert torch.equal(
        loaded.generate(**batch, max_new_tokens=8, num_beams=2), model.generate(**batch, max_new_tokens=8, num_beams=2)
    )


def test_the_mask_file_is_one_and_a_half_bits_per_weight_at_two_coats(coated_checkpoint):
    model, path = coated_checkpoint
    stored = sum(t.numel() for t in load_file(path / "model.safetensors").values())
    assert stored == sum(m.stored_size for m in model.masked_modules.values())
    maskable = sum(m.weight.numel() for m in model.masked_modules.values())
    assert 8 * stored / maskable == pytest.approx(1.5, abs=0.01)


def _flip_a_second_coat_bit(tensors):  # coat 1 intact: only the second coat's count can tell
    mask = tensors[f"{FC1}.mask"]
    mask[-1] ^= 0x80


def _flip_a_first_coat_bit(tensors):
    tensors[f"{FC1}.mask"][0] ^= 1


def _swap_second_coat_bytes(tensors):  # same counts in every coat: only masks_sha256 can tell
    mask = tensors[f"{FC1}.mask"]
    start = mask.numel() - 1
    other = next(i for i in range(start - 1, 0, -1) if mask[i] != mask[start])
    mask[start], mask[other] = mask[other].clone(), mask[start].clone()


@pytest.mark.parametrize(
    "tamper, message",
    [
        (_flip_a_first_coat_bit, "coat 1 keeps|keeps .* weights but density"),
        (_flip_a_second_coat_bit, "its last coat does not keep"),
        (_swap_second_coat_bytes, "masks_sha256"),
    ],
)
def test_a_tampered_coat_is_refused(coated_checkpoint, tmp_path, tamper, message):
    _, path = coated_checkpoint
    copy = _copy(path, tmp_path)
    tensors = load_file(copy / "model.safetensors")
    tamper(tensors)
    save_file(tensors, copy / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match=message):
        AutoModelForSeq2SeqLM.from_pretrained(copy)


@pytest.mark.parametrize("field, value", [("coats", 1), ("coats", 3), ("coat_density_ratio", 0.25)])
def test_an_edited_coat_field_is_refused(coated_checkpoint, tmp_path, field, value):
    _, path = coated_checkpoint
    copy = _copy(path, tmp_path)
    config = json.loads((copy / "config.json").read_text())
    config[field] = value
    (copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="forward_config_sha256"):
        AutoModelForSeq2SeqLM.from_pretrained(copy)


def test_mask_sets_of_coated_checkpoints_switch_exactly(coated_checkpoint, tiny_tokenizer, tmp_path):
    model, path = coated_checkpoint
    other = scrambled_model(tiny_config(vocab_size=len(tiny_tokenizer), coats=2), seed=8)
    other.save_pretrained(tmp_path / "other")
    combined = SupermaskForConditionalGeneration.from_pretrained(path)
    combined.load_masks(tmp_path / "other", "other")
    combined.set_active_masks("other")
    assert torch.equal(_logits(combined, tiny_tokenizer), _logits(other, tiny_tokenizer))
    combined.set_active_masks("default")
    assert torch.equal(_logits(combined, tiny_tokenizer), _logits(model, tiny_tokenizer))
    binary = tmp_path / "binary"
    scrambled_model(tiny_config(vocab_size=len(tiny_tokenizer))).save_pretrained(binary)
    with pytest.raises(ValueError, match="coats: 2 -> 1"):
        combined.load_masks(binary, "binary")


def test_training_script_takes_them_as_config_overrides(tmp_path, tokenizer_dir):
    from hf_supermask.training import parse_args, run_translation

    flags = training_flags(tmp_path / "out", tokenizer_dir, "--do_train", "--max_steps", "2", "--save_steps", "2")
    flags[flags.index("--config_overrides") + 1] = f"{SHAPE},coats=2,coat_density_ratio=0.5"
    run_translation(*parse_args(flags))
    loaded = AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "out")
    assert loaded.config.coats == 2
    fc1 = loaded.get_submodule(FC1)
    assert int(fc1.current_mask().max()) == 2 and fc1.mask.numel() == fc1.stored_size
    # the intermediate checkpoint keeps its scores: they must select exactly its coats
    resumable = AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "out" / "checkpoint-2")
    assert resumable.get_submodule(FC1).coat_kept == fc1.coat_kept


# ------------------------------------------------------------------------------------------------------------------
# Dense export and remote code
# ------------------------------------------------------------------------------------------------------------------


def test_export_dense_gives_a_marian_model_with_equal_outputs(coated_checkpoint, tiny_tokenizer):
    model, _ = coated_checkpoint
    dense = model.export_dense()
    assert type(dense) is MarianMTModel
    torch.testing.assert_close(_logits(dense, tiny_tokenizer), _logits(model, tiny_tokenizer), atol=1e-5, rtol=0)
    batch = _batch(tiny_tokenizer)
    assert torch.equal(
        dense.generate(**batch, max_new_tokens=8, num_beams=2), model.generate(**batch, max_new_tokens=8, num_beams=2)
    )


def test_the_remote_code_loads_it(coated_checkpoint, tiny_tokenizer, tmp_path):
    model, path = coated_checkpoint
    out = generate_through_remote_code(path, SOURCES, tmp_path, probe=f"list(model.get_submodule({FC1!r}).coat_kept)")
    assert out["module"].startswith("transformers_modules")
    assert out["probe"] == list(model.get_submodule(FC1).coat_kept)
    assert out["generated"] == model.generate(**_batch(tiny_tokenizer), max_new_tokens=8, num_beams=2).tolist()
