"""Partially frozen masks (`frozen_fraction`, Otsuka et al.): a seeded fraction of each masked tensor's positions is
fixed (kept or pruned) and never searched; only the free positions are trained and stored."""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import subprocess
import sys

import pytest
import torch
from conftest import (
    REPO_ROOT,
    SHAPE,
    generate_through_remote_code,
    read_lines,
    scrambled_model,
    tiny_config,
    training_flags,
)
from safetensors.torch import load_file, save_file
from transformers import AutoModelForSeq2SeqLM, MarianMTModel

from hf_supermask import SupermaskConfig, SupermaskForConditionalGeneration
from hf_supermask.modeling.binarizers import frozen_counts, pack_mask, packed_size, topk_mask, unpack_mask


SOURCES = read_lines("test_2016_flickr", "en", 4)
FROZEN = 0.7
FC1 = "model.encoder.layers.0.fc1"
# sha256 of every frozen layout of `tiny_config(frozen_fraction=0.7)` (see `_layout_digest`), recorded when the field
# was added: a change to how positions are drawn would move the masks of every frozen checkpoint onto other positions.
GOLDEN_LAYOUT_SHA256 = "0859a0dd2575d1f8b760f7ec607f3e2bcb833200021f439627efc30b2cf41a58"


def _layout_digest(model) -> str:
    digest = hashlib.sha256()
    for name, module in sorted(model.masked_modules.items()):
        free, kept = module.frozen_layout()
        digest.update(f"{name};".encode())
        digest.update(free.numpy().tobytes())
        digest.update(kept.numpy().tobytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def frozen_checkpoint(tmp_path_factory, tiny_tokenizer):
    model = scrambled_model(tiny_config(vocab_size=len(tiny_tokenizer), frozen_fraction=FROZEN))
    path = tmp_path_factory.mktemp("frozen")
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
# The config field
# ------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [1.0, -0.1, 1.5, True])
def test_invalid_frozen_fraction_is_refused_naming_the_field(value):
    with pytest.raises(ValueError, match=r"`frozen_fraction` .* 0 <= frozen_fraction < 1"):
        tiny_config(frozen_fraction=value)


def test_frozen_fraction_zero_keeps_the_fingerprint_and_the_stored_format():
    """Checkpoints saved before the field existed keep their forward_config_sha256; 0 stores every bit as before."""
    before = tiny_config().forward_config_fingerprint()
    assert before == tiny_config(frozen_fraction=0).forward_config_fingerprint()
    assert before != tiny_config(frozen_fraction=0.5).forward_config_fingerprint()
    assert tiny_config(frozen_fraction=0.5).forward_config_fingerprint() == (
        tiny_config(frozen_fraction=0.50).forward_config_fingerprint()
    )
    model = scrambled_model(tiny_config())
    for module in model.masked_modules.values():
        assert module.num_frozen == 0 and module.stored_size == packed_size(module.shape) == module.mask.numel()
        mask = module.current_mask()
        assert torch.equal(mask, topk_mask(module.scores.abs(), module.num_kept))
        packed = module.pack_stored(mask)
        assert torch.equal(packed, pack_mask(mask))
        assert torch.equal(module.unpack_stored(packed), unpack_mask(packed, module.shape))


def test_training_script_takes_it_as_a_config_override(tmp_path, tokenizer_dir):
    from hf_supermask.training import parse_args, run_translation

    flags = training_flags(tmp_path / "out", tokenizer_dir, "--do_train", "--max_steps", "2", "--save_steps", "2")
    flags[flags.index("--config_overrides") + 1] = f"{SHAPE},frozen_fraction={FROZEN}"
    results = run_translation(*parse_args(flags))
    loaded = AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "out")
    assert loaded.config.frozen_fraction == FROZEN
    fc1 = loaded.get_submodule(FC1)
    assert fc1.num_frozen == round(FROZEN * fc1.weight.numel()) and fc1.mask.numel() == fc1.stored_size
    stored = sum(t.numel() for t in load_file(tmp_path / "out" / "model.safetensors").values())
    assert stored == sum(math.ceil(m.num_free / 8) for m in loaded.masked_modules.values())
    assert "test_bleu" not in results  # (no --do_predict: two updates, only what is stored is checked)
    # the intermediate checkpoint keeps its scores: they must select exactly its (free positions') masks
    resumable = AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "out" / "checkpoint-2")
    assert resumable.get_submodule(FC1).num_frozen == fc1.num_frozen


# ------------------------------------------------------------------------------------------------------------------
# The frozen positions
# ------------------------------------------------------------------------------------------------------------------


_OTHER_PROCESS = """
import sys
sys.path.insert(0, sys.argv[1])
import torch
torch.set_num_threads(1)
from conftest import tiny_config
from test_frozen_masks import _layout_digest
from hf_supermask import SupermaskForConditionalGeneration
print("DIGEST", _layout_digest(SupermaskForConditionalGeneration(tiny_config(frozen_fraction=0.7))))
"""


def test_frozen_positions_are_the_same_in_every_construction_and_process():
    first = SupermaskForConditionalGeneration(tiny_config(frozen_fraction=FROZEN))
    second = SupermaskForConditionalGeneration(tiny_config(frozen_fraction=FROZEN))
    assert _layout_digest(first) == _layout_digest(second) == GOLDEN_LAYOUT_SHA256
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), ATEN_CPU_CAPABILITY="default")
    result = subprocess.run(
        [sys.executable, "-c", _OTHER_PROCESS, str(REPO_ROOT / "tests")], env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert next(line.split()[1] for line in result.stdout.splitlines() if line.startswith("DIGEST")) == (
        GOLDEN_LAYOUT_SHA256
    )
    # their own stream per tensor and per seed
    free = {name: m.frozen_layout()[0] for name, m in first.masked_modules.items()}
    assert not torch.equal(free[FC1], free[FC1.replace("layers.0", "layers.1")])
    other_seed = SupermaskForConditionalGeneration(tiny_config(frozen_fraction=FROZEN, seed=99))
    assert not torch.equal(other_seed.get_submodule(FC1).frozen_layout()[0], free[FC1])


@pytest.mark.parametrize("density", [0.5, 0.3])
def test_each_tensor_keeps_num_kept_with_its_frozen_positions_fixed(density):
    model = SupermaskForConditionalGeneration(tiny_config(frozen_fraction=FROZEN, density=density))
    for name, module in model.masked_modules.items():
        numel = module.weight.numel()
        free, kept = module.frozen_layout()
        mask = module.current_mask()
        assert int(mask.sum()) == module.num_kept == round(density * numel), name
        assert int((~free).sum()) == module.num_frozen == round(FROZEN * numel), name
        # the frozen kept share follows density, so the tensor's density is unchanged
        assert int(kept.sum()) == module.num_frozen_kept == round(density * module.num_frozen), name
        assert not (kept & free).any() and torch.equal(mask & ~free, kept), name
        # the initial mask is the seed's scores' selection, through the one method the coder uses too
        initial = model.random_weights.initial_scores(module.score_name, module.shape)
        assert torch.equal(mask, module.mask_from_scores(initial)), name


def test_frozen_counts_leave_the_free_positions_room_for_the_rest():
    for numel in (1, 2, 3, 7, 10, 101):
        for density in (0.01, 0.3, 0.5, 0.9, 1.0):
            for fraction in (0.0, 0.1, 0.5, 0.7, 0.99):
                frozen, frozen_kept = frozen_counts(numel, density, fraction)
                kept = max(1, min(numel, round(density * numel)))
                assert 0 <= frozen < numel and 0 <= frozen_kept <= frozen
                assert 0 <= kept - frozen_kept <= numel - frozen, (numel, density, fraction)
    # at a low density the free positions may keep none: an empty top-k
    assert not topk_mask(torch.rand(5), 0).any()
    module = SupermaskForConditionalGeneration(tiny_config(density=0.002, frozen_fraction=0.9)).get_submodule(FC1)
    assert module.num_kept - module.num_frozen_kept == 0 and int(module.current_mask().sum()) == module.num_kept


@pytest.mark.parametrize("fused", [False, True])
def test_frozen_positions_never_change_and_their_scores_get_no_gradient(tiny_tokenizer, fused):
    model = SupermaskForConditionalGeneration(tiny_config(vocab_size=len(tiny_tokenizer), frozen_fraction=FROZEN))
    english, german = read_lines("train", "en", 16), read_lines("train", "de", 16)
    batch = tiny_tokenizer(english, text_target=german, padding=True, return_tensors="pt")
    batch["labels"] = batch["labels"].masked_fill(batch["labels"] == tiny_tokenizer.pad_token_id, -100)
    modules = model.masked_modules
    before = {name: (m.current_mask().clone(), m.scores.detach().clone()) for name, m in modules.items()}
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05, fused=fused)
    for _ in range(4):
        loss = model(**batch).loss
        optimizer.zero_grad()
        loss.backward()
        for name, module in modules.items():
            free, _ = module.frozen_layout()
            assert not module.scores.grad[~free].any(), name
            assert module.scores.grad[free].any(), name
        optimizer.step()
    moved = 0
    for name, module in modules.items():
        free, kept = module.frozen_layout()
        mask, scores = module.current_mask(), module.scores.detach()
        assert torch.equal(mask[~free], kept[~free]) and int(mask.sum()) == module.num_kept, name
        assert torch.equal(scores[~free], before[name][1][~free]), name  # Adam never moved them
        moved += int((mask != before[name][0]).sum())
    assert moved > 0  # the free positions were searched


# ------------------------------------------------------------------------------------------------------------------
# What is stored
# ------------------------------------------------------------------------------------------------------------------


def test_pack_stored_holds_the_free_bits_and_unpack_stored_fills_the_frozen_ones():
    model = scrambled_model(tiny_config(frozen_fraction=FROZEN))
    module = model.get_submodule(FC1)
    mask = module.current_mask()
    packed = module.pack_stored(mask)
    free, _ = module.frozen_layout()
    assert packed.dtype == torch.uint8 and packed.numel() == packed_size((int(free.sum()),)) == module.stored_size
    assert torch.equal(packed, pack_mask(mask[free]))
    assert torch.equal(module.unpack_stored(packed), mask)
    changed = mask.clone()
    changed[~free] = ~changed[~free]
    with pytest.raises(ValueError, match="changes some of its frozen positions"):
        module.pack_stored(changed)


def test_scores_rebuilt_from_a_mask_select_exactly_that_mask():
    model = scrambled_model(tiny_config(frozen_fraction=FROZEN))
    for name, module in model.masked_modules.items():
        mask = module.current_mask()
        rebuilt = module.scores_selecting(mask)
        assert rebuilt.dtype == torch.float32 and rebuilt.shape == module.shape
        assert torch.equal(module.mask_from_scores(rebuilt), mask), name


def test_save_and_load_give_identical_masks_and_outputs(frozen_checkpoint, tiny_tokenizer):
    model, path = frozen_checkpoint
    loaded = AutoModelForSeq2SeqLM.from_pretrained(path)
    assert loaded.config.frozen_fraction == FROZEN
    for name, module in model.masked_modules.items():
        assert torch.equal(loaded.get_submodule(name).current_mask(), module.current_mask()), name
    assert loaded.masks_fingerprint() == model.masks_fingerprint() == loaded.config.masks_sha256
    assert torch.equal(_logits(loaded, tiny_tokenizer), _logits(model, tiny_tokenizer))
    batch = _batch(tiny_tokenizer)
    assert torch.equal(
        loaded.generate(**batch, max_new_tokens=8, num_beams=2), model.generate(**batch, max_new_tokens=8, num_beams=2)
    )
    # and a loaded model fine-tunes its free positions only
    loaded.train()
    loaded(**batch, labels=batch["input_ids"]).loss.backward()
    fc1 = loaded.get_submodule(FC1)
    assert not fc1.scores.grad[~fc1.frozen_layout()[0]].any()


def test_the_mask_file_is_about_the_free_fraction_of_a_full_one(frozen_checkpoint, tiny_tokenizer, tmp_path):
    model, path = frozen_checkpoint
    full = scrambled_model(tiny_config(vocab_size=len(tiny_tokenizer)))
    full.save_pretrained(tmp_path / "full")
    stored = {k: v.numel() for k, v in load_file(path / "model.safetensors").items()}
    everything = {k: v.numel() for k, v in load_file(tmp_path / "full" / "model.safetensors").items()}
    assert stored.keys() == everything.keys()
    ratio = sum(stored.values()) / sum(everything.values())
    assert abs(ratio - (1 - FROZEN)) < 0.01, ratio
    maskable = sum(m.weight.numel() for m in model.masked_modules.values())
    assert sum(stored.values()) == sum(math.ceil(m.num_free / 8) for m in model.masked_modules.values())
    assert 8 * sum(stored.values()) / maskable == pytest.approx(1 - FROZEN, abs=0.01)


def _flip_one_bit(tensors):
    tensors[f"{FC1}.mask"][0] ^= 1


def _swap_two_bytes(tensors):  # same number of kept weights: only masks_sha256 can tell
    mask = tensors[f"{FC1}.mask"]
    other = next(i for i in range(1, mask.numel()) if mask[i] != mask[0])
    mask[0], mask[other] = mask[other].clone(), mask[0].clone()


@pytest.mark.parametrize(
    "tamper, message",
    [(_flip_one_bit, "keeps .* weights but density"), (_swap_two_bytes, "masks_sha256")],
)
def test_a_tampered_mask_is_refused(frozen_checkpoint, tmp_path, tamper, message):
    _, path = frozen_checkpoint
    copy = _copy(path, tmp_path)
    tensors = load_file(copy / "model.safetensors")
    tamper(tensors)
    save_file(tensors, copy / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match=message):
        AutoModelForSeq2SeqLM.from_pretrained(copy)


@pytest.mark.parametrize("value", [0.5, 0.0])
def test_an_edited_frozen_fraction_is_refused(frozen_checkpoint, tmp_path, value):
    _, path = frozen_checkpoint
    copy = _copy(path, tmp_path)
    config = json.loads((copy / "config.json").read_text())
    config["frozen_fraction"] = value
    (copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="forward_config_sha256"):
        AutoModelForSeq2SeqLM.from_pretrained(copy)


def test_mask_sets_of_frozen_checkpoints_switch_exactly(frozen_checkpoint, tiny_tokenizer, tmp_path):
    model, path = frozen_checkpoint
    other = scrambled_model(tiny_config(vocab_size=len(tiny_tokenizer), frozen_fraction=FROZEN), seed=8)
    other.save_pretrained(tmp_path / "other")
    combined = SupermaskForConditionalGeneration.from_pretrained(path)
    combined.load_masks(tmp_path / "other", "other")
    combined.set_active_masks("other")
    assert torch.equal(_logits(combined, tiny_tokenizer), _logits(other, tiny_tokenizer))
    combined.set_active_masks("default")
    assert torch.equal(_logits(combined, tiny_tokenizer), _logits(model, tiny_tokenizer))
    unfrozen = tmp_path / "unfrozen"
    scrambled_model(tiny_config(vocab_size=len(tiny_tokenizer))).save_pretrained(unfrozen)
    with pytest.raises(ValueError, match="frozen_fraction: 0.7 -> 0.0"):
        combined.load_masks(unfrozen, "unfrozen")


# ------------------------------------------------------------------------------------------------------------------
# Dense export and remote code
# ------------------------------------------------------------------------------------------------------------------


def test_export_dense_gives_a_marian_model_with_equal_outputs(frozen_checkpoint, tiny_tokenizer):
    model, _ = frozen_checkpoint
    dense = model.export_dense()
    assert type(dense) is MarianMTModel
    torch.testing.assert_close(_logits(dense, tiny_tokenizer), _logits(model, tiny_tokenizer), atol=1e-5, rtol=0)
    batch = _batch(tiny_tokenizer)
    assert torch.equal(
        dense.generate(**batch, max_new_tokens=8, num_beams=2), model.generate(**batch, max_new_tokens=8, num_beams=2)
    )


def test_the_remote_code_loads_it(frozen_checkpoint, tiny_tokenizer, tmp_path):
    model, path = frozen_checkpoint
    out = generate_through_remote_code(path, SOURCES, tmp_path, probe=f"model.get_submodule({FC1!r}).num_frozen")
    assert out["module"].startswith("transformers_modules")
    assert out["probe"] == model.get_submodule(FC1).num_frozen > 0
    assert out["generated"] == model.generate(**_batch(tiny_tokenizer), max_new_tokens=8, num_beams=2).tolist()


def test_config_round_trips_through_json():
    config = tiny_config(frozen_fraction=FROZEN)
    assert SupermaskConfig.from_dict(config.to_dict()).frozen_fraction == FROZEN


def test_the_training_curves_mask_change_counts_only_searched_positions():
    """`eval_mask_changed_fraction` is over the free positions: frozen ones cannot change and would dilute it."""
    from hf_supermask.training import _all_mask_bits

    model = scrambled_model(tiny_config(frozen_fraction=FROZEN))
    values = _all_mask_bits(model)
    assert values.numel() == sum(m.num_free for m in model.masked_modules.values())
    assert int(values.sum()) == sum(m.num_kept - m.num_frozen_kept for m in model.masked_modules.values())
