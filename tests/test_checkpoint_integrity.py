"""No checkpoint loads unverified, no config field is accepted unchecked, and no length the position table cannot
hold reaches an IndexError: each is refused with a message that names the problem."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import torch
from conftest import read_lines, tiny_config
from safetensors.torch import load_file, save_file
from transformers import AutoModelForSeq2SeqLM, MarianMTModel, pipeline

import hf_supermask  # noqa: F401  (registers the Auto classes and the translation pipeline)
from hf_supermask import SupermaskConfig, SupermaskForConditionalGeneration


@pytest.fixture(scope="module")
def saved(tmp_path_factory, tiny_tokenizer):
    """A tiny model with a 16-position table, saved with its tokenizer."""
    model = SupermaskForConditionalGeneration(tiny_config(vocab_size=len(tiny_tokenizer), max_position_embeddings=16))
    model.record_tokenizer(tiny_tokenizer)
    path = tmp_path_factory.mktemp("saved")
    model.save_pretrained(path)
    tiny_tokenizer.save_pretrained(path)
    return path


def _copy(saved, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(saved, copy)
    return copy


def _edit_config(path, **changes):
    config = json.loads((path / "config.json").read_text())
    for key, value in changes.items():
        if value is ...:
            config.pop(key)
        else:
            config[key] = value
    (path / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize("field", ["weights_sha256", "masks_sha256"])
@pytest.mark.parametrize("how", ["missing", "null"])
def test_checkpoints_without_fingerprints_are_refused(saved, tmp_path, field, how):
    copy = _copy(saved, tmp_path)
    _edit_config(copy, **{field: ... if how == "missing" else None, "seed": 99})  # and an edited seed
    with pytest.raises(ValueError, match=f"no `{field}`"):
        AutoModelForSeq2SeqLM.from_pretrained(copy)


def test_pickled_weights_are_refused_without_being_unpickled(saved, tmp_path, monkeypatch):
    copy = _copy(saved, tmp_path)
    tensors = load_file(copy / "model.safetensors")
    (copy / "model.safetensors").unlink()
    torch.save(tensors, copy / "pytorch_model.bin")
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("a pickle was opened"))
    with pytest.raises(ValueError, match="safetensors only"):
        AutoModelForSeq2SeqLM.from_pretrained(copy)


def test_extra_tensors_are_refused(saved, tmp_path):
    copy = _copy(saved, tmp_path)
    tensors = load_file(copy / "model.safetensors")
    tensors["model.encoder.layers.0.fc1.bias"] = torch.zeros(64)
    save_file(tensors, copy / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match="fc1.bias"):
        AutoModelForSeq2SeqLM.from_pretrained(copy)


@pytest.mark.parametrize(
    "field, value",
    [
        ("seed", True),
        ("density", True),
        ("decoder_start_token_id", 320),
        ("forced_eos_token_id", 320),
        ("eos_token_id", -1),
        ("output_scale", 0.0),
        ("embedding_scale", float("nan")),
        ("attention_init", "xavier"),
    ],
)
def test_config_fields_are_checked(field, value):
    with pytest.raises(ValueError, match=f"`{field}`"):
        tiny_config(**{field: value})


def test_fixed_embedding_sources_are_checked(tmp_path):
    from hf_supermask.modeling.modeling_supermask import marian_config_for

    with pytest.raises(FileNotFoundError, match=f"not found: {tmp_path / 'nowhere'}"):
        SupermaskForConditionalGeneration(tiny_config(embedding_source=str(tmp_path / "nowhere")))
    dense = MarianMTModel(marian_config_for(tiny_config()))
    with torch.no_grad():
        dense.model.shared.weight[5, 2] = float("nan")
    dense.save_pretrained(tmp_path / "dense")
    with pytest.raises(ValueError, match="NaN or infinite"):
        SupermaskForConditionalGeneration(tiny_config(embedding_source=str(tmp_path / "dense")))


def test_lengths_beyond_the_position_table(saved, tmp_path, caplog):
    translator = pipeline("translation", model=str(saved), device="cpu")
    long_source = " ".join(read_lines("train", "en", 6))  # far more than 16 tokens
    with caplog.at_level("WARNING"):
        assert isinstance(translator(long_source, max_new_tokens=4)[0]["translation_text"], str)  # truncated
    assert "position table" in caplog.text
    with pytest.raises(ValueError, match="`max_new_tokens` is 17, but this model's position table covers 16"):
        translator("A dog runs.", max_new_tokens=17)
    with pytest.raises(ValueError, match="`max_length` is 40"):
        translator("A dog runs.", max_length=40)
    for beams in (0, -1):
        with pytest.raises(ValueError, match="`num_beams` must be an integer >= 1"):
            translator("A dog runs.", num_beams=beams)
    assert translator("A dog runs.", max_new_tokens=16, min_new_tokens=16)  # the whole table is usable
    # a saved generation config beyond the table (what the training script used to write) is refused at load
    copy = _copy(saved, tmp_path)
    generation = json.loads((copy / "generation_config.json").read_text())
    (copy / "generation_config.json").write_text(json.dumps({**generation, "max_length": 128}))
    with pytest.raises(ValueError, match="`max_length` in the generation_config.json .* is 128, but the model"):
        AutoModelForSeq2SeqLM.from_pretrained(copy)
    with pytest.raises(ValueError, match="`max_length` in the generation_config.json"):
        pipeline("translation", model=str(copy), device="cpu")
    # and the model itself, driven directly, says what is wrong instead of an IndexError
    model = AutoModelForSeq2SeqLM.from_pretrained(saved)
    with pytest.raises(ValueError, match="position table covers 16"):
        model.generate(input_ids=torch.tensor([[5, 6, 0]]), max_new_tokens=20, min_new_tokens=20)


def test_remote_code_refuses_an_untested_transformers():
    code = (
        "import transformers; transformers.__version__ = '5.99.0'\n"
        "from hf_supermask.modeling import configuration_supermask"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode != 0
    assert "supports transformers >=5.23.0,<5.26.0 (the releases it is tested with), but transformers 5.99.0 is" in (
        result.stderr
    )


def test_config_validation_runs_once(monkeypatch):
    calls = []
    real = SupermaskConfig.check_supermask_fields
    monkeypatch.setattr(SupermaskConfig, "check_supermask_fields", lambda self: calls.append(1) or real(self))
    tiny_config()
    assert len(calls) == 1
