"""One identity: a checkpoint's fingerprints cover everything that changes its outputs (weights, masks, the forward
settings of config.json, the tokenizer), decoding settings are validated, and every load path (both classes'
`from_pretrained`, `load_masks`, the translation pipeline, the remote code) checks the same identity and names what
differs. Copies of the shipped folders stand in for an attacker's edits."""

from __future__ import annotations

import json
import logging
import shutil

import pytest
import torch
from conftest import REPO_ROOT, read_lines, run_without_the_package, tiny_config
from safetensors.torch import load_file, save_file
from transformers import AutoModel, AutoModelForSeq2SeqLM, AutoTokenizer, pipeline

import hf_supermask  # noqa: F401  (registers the Auto classes and the translation pipeline)
from hf_supermask import SupermaskConfig, SupermaskForConditionalGeneration, SupermaskModel
from hf_supermask.modeling.checkpoint import tokenizer_fingerprint
from hf_supermask.modeling.configuration_supermask import FORWARD_FIELDS
from hf_supermask.pretrained import SHIPPED_DIRECTIONS, SHIPPED_MODEL


SHIPPED_FOLDERS = [SHIPPED_MODEL, *sorted(p for p in SHIPPED_DIRECTIONS.iterdir() if (p / "config.json").exists())]


@pytest.fixture(scope="module")
def saved(tmp_path_factory, tiny_tokenizer):
    """A tiny model saved with its tokenizer recorded (what the training script writes)."""
    model = SupermaskForConditionalGeneration(tiny_config(vocab_size=len(tiny_tokenizer), source_lang="en"))
    model.config.target_lang = "de"
    model.record_tokenizer(tiny_tokenizer)
    path = tmp_path_factory.mktemp("saved")
    model.save_pretrained(path)
    tiny_tokenizer.save_pretrained(path)
    return path


def _copy(folder, tmp_path, name="copy"):
    copy = tmp_path / name
    shutil.copytree(folder, copy)
    return copy


def _edit_json(path, **changes):
    content = json.loads(path.read_text())
    for key, value in changes.items():
        if value is ...:
            content.pop(key)
        else:
            content[key] = value
    path.write_text(json.dumps(content))


def _swap_two_ids(tokenizer_json: dict) -> dict:
    """The same tokenizer with the ids of two ordinary tokens exchanged."""
    vocab = tokenizer_json["model"]["vocab"]
    first, second = sorted(vocab, key=vocab.get)[100:102]
    vocab[first], vocab[second] = vocab[second], vocab[first]
    return tokenizer_json


# ------------------------------------------------------------------------------------------------------------------
# Item 1: the forward settings are fingerprinted
# ------------------------------------------------------------------------------------------------------------------


def test_the_forward_fields_are_written_down_once_and_fingerprinted(saved):
    config = json.loads((saved / "config.json").read_text())
    loaded = SupermaskConfig.from_pretrained(saved)
    assert config["forward_config_sha256"] == loaded.forward_config_fingerprint()
    assert {"output_scale", "activation_function", "scale_embedding", "embedding_scale"} <= set(FORWARD_FIELDS)
    assert {"encoder_layers", "decoder_layers", "encoder_attention_heads", "decoder_attention_heads"} <= set(
        FORWARD_FIELDS
    )
    # an int spelling of a float field is the same model
    fingerprints = {tiny_config(output_scale=scale).forward_config_fingerprint() for scale in (2, 2.0)}
    assert len(fingerprints) == 1


@pytest.mark.parametrize(
    "field, value",
    [("output_scale", 3.0), ("activation_function", "gelu"), ("scale_embedding", False), ("encoder_layers", 1)],
)
def test_an_edited_forward_setting_is_refused_by_both_classes(saved, tmp_path, field, value):
    copy = _copy(saved, tmp_path)
    _edit_json(copy / "config.json", **{field: value})
    for model_class in (AutoModelForSeq2SeqLM, AutoModel):
        with pytest.raises(ValueError, match="forward settings .* not the ones the checkpoint was saved with"):
            model_class.from_pretrained(copy)


@pytest.mark.parametrize("field, value", [("output_scale", 3.0), ("scale_embedding", False)])
def test_a_copy_of_the_shipped_model_with_an_edited_forward_setting_is_refused(tmp_path, field, value):
    copy = _copy(SHIPPED_MODEL, tmp_path)
    _edit_json(copy / "config.json", **{field: value})
    with pytest.raises(ValueError, match="forward_config_sha256"):
        AutoModelForSeq2SeqLM.from_pretrained(copy)
    with pytest.raises(ValueError, match="forward_config_sha256"):
        pipeline("translation", model=str(copy), device="cpu")


# ------------------------------------------------------------------------------------------------------------------
# Item 2: the tokenizer is compared with the model
# ------------------------------------------------------------------------------------------------------------------


def test_another_models_tokenizer_is_refused(tmp_path):
    # the directions' 10k joint tokenizer put into the 8k en-de model
    copy = _copy(SHIPPED_MODEL, tmp_path)
    shutil.copyfile(SHIPPED_DIRECTIONS / "en-de" / "tokenizer.json", copy / "tokenizer.json")
    with pytest.raises(ValueError, match="has 10000 tokens, but the model's vocabulary has vocab_size=8000"):
        AutoModelForSeq2SeqLM.from_pretrained(copy)
    model = AutoModelForSeq2SeqLM.from_pretrained(SHIPPED_MODEL)
    joint = AutoTokenizer.from_pretrained(SHIPPED_DIRECTIONS / "en-de")
    with pytest.raises(ValueError, match="has 10000 tokens"):
        pipeline("translation", model=model, tokenizer=joint, device="cpu")


def test_a_tokenizer_with_two_ids_swapped_is_refused(saved, tmp_path, tiny_tokenizer):
    copy = _copy(saved, tmp_path)
    swapped = _swap_two_ids(json.loads((copy / "tokenizer.json").read_text()))
    (copy / "tokenizer.json").write_text(json.dumps(swapped))
    with pytest.raises(ValueError, match=r"tokenizer.json at .* has sha256 .*\(config.tokenizer_sha256\)"):
        AutoModelForSeq2SeqLM.from_pretrained(copy)
    with pytest.raises(ValueError, match="config.tokenizer_sha256"):
        pipeline("translation", model=str(copy), device="cpu")
    # and given as an object to a model loaded from the intact folder
    model = AutoModelForSeq2SeqLM.from_pretrained(saved)
    swapped_tokenizer = AutoTokenizer.from_pretrained(copy)
    with pytest.raises(ValueError, match="The tokenizer given has sha256"):
        pipeline("translation", model=model, tokenizer=swapped_tokenizer, device="cpu")
    # the right one passes, even after encoding with truncation changed its runtime state
    tiny_tokenizer("A dog runs.", truncation=True, max_length=3)
    assert pipeline("translation", model=model, tokenizer=tiny_tokenizer, device="cpu")("A dog.", max_new_tokens=3)


def test_the_tokenizer_fingerprint_ignores_runtime_state_only(saved, tiny_tokenizer):
    on_disk = json.loads((saved / "tokenizer.json").read_text())
    assert tokenizer_fingerprint(on_disk) == tokenizer_fingerprint({**on_disk, "truncation": {"max_length": 3}})
    assert tokenizer_fingerprint(_swap_two_ids(on_disk)) != tokenizer_fingerprint(
        tiny_tokenizer.backend_tokenizer.to_str()
    )


# ------------------------------------------------------------------------------------------------------------------
# Item 3: generation_config.json is validated at load
# ------------------------------------------------------------------------------------------------------------------


def test_a_generation_config_that_is_not_json_is_refused(saved, tmp_path):
    copy = _copy(saved, tmp_path)
    (copy / "generation_config.json").write_text('{"num_beams": 5, "max_length": ')
    with pytest.raises(ValueError, match="generation_config.json of the checkpoint at .* is not valid JSON"):
        AutoModelForSeq2SeqLM.from_pretrained(copy)


@pytest.mark.parametrize("field", ["decoder_start_token_id", "pad_token_id", "eos_token_id"])
def test_out_of_vocabulary_ids_in_the_generation_config_are_refused(saved, tmp_path, field):
    copy = _copy(saved, tmp_path)
    _edit_json(copy / "generation_config.json", **{field: 5000})
    with pytest.raises(ValueError, match=f"`{field}` in the generation_config.json .* outside the vocabulary"):
        AutoModelForSeq2SeqLM.from_pretrained(copy)


# ------------------------------------------------------------------------------------------------------------------
# Item 4: the bare model adopts the checkpoint's masks and verifies them
# ------------------------------------------------------------------------------------------------------------------


def test_the_bare_model_adopts_the_checkpoints_masks(saved, tmp_path):
    full = AutoModelForSeq2SeqLM.from_pretrained(saved).eval()
    bare = AutoModel.from_pretrained(saved).eval()
    assert isinstance(bare, SupermaskModel)
    assert bare.masks_fingerprint() == full.masks_fingerprint() == full.config.masks_sha256
    ids = torch.tensor([[5, 6, 7, 0]])
    with torch.no_grad():
        expected = full.model(input_ids=ids, decoder_input_ids=ids).last_hidden_state
        assert torch.equal(bare(input_ids=ids, decoder_input_ids=ids).last_hidden_state, expected)
    # and it verifies the masks' fingerprint
    copy = _copy(saved, tmp_path)
    tensors = load_file(copy / "model.safetensors")
    key = next(k for k in sorted(tensors) if k.endswith("fc1.mask"))
    tensors[key] = tensors[key].flip(0)  # the same number of kept weights, other positions
    save_file(tensors, copy / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match="do not match the `masks_sha256`"):
        AutoModel.from_pretrained(copy)


# ------------------------------------------------------------------------------------------------------------------
# Item 5: load_masks refuses a set of another model, naming the difference, and changes nothing
# ------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides, named",
    [
        ({"encoder_layers": 1}, "encoder_layers: 2 -> 1"),
        ({"decoder_layers": 3}, "decoder_layers: 2 -> 3"),
        ({"encoder_attention_heads": 2}, "encoder_attention_heads: 4 -> 2"),
        ({"output_scale": 3.0}, "output_scale: 2.0 -> 3.0"),
        ({"activation_function": "gelu"}, "activation_function: 'relu' -> 'gelu'"),
        ({"scale_embedding": False}, "scale_embedding: True -> False"),
    ],
)
def test_load_masks_refuses_a_set_of_another_model(saved, tiny_tokenizer, tmp_path, overrides, named):
    model = AutoModelForSeq2SeqLM.from_pretrained(saved).eval()
    other = SupermaskForConditionalGeneration(tiny_config(vocab_size=len(tiny_tokenizer), **overrides))
    assert other.random_weights.fingerprint == model.random_weights.fingerprint  # shared layers: weights alike
    other.save_pretrained(tmp_path / "other")
    ids = torch.tensor([[5, 6, 7, 0]])
    with torch.no_grad():
        before = model(input_ids=ids, decoder_input_ids=ids).logits
    with pytest.raises(ValueError, match=f"belong to another model than this one .*{named}"):
        model.load_masks(tmp_path / "other", "other")
    assert model.mask_sets == ("default",) and model.active_masks == "default"
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids, decoder_input_ids=ids).logits, before)


def test_load_masks_from_a_missing_folder_says_so(saved, tmp_path):
    model = AutoModelForSeq2SeqLM.from_pretrained(saved)
    with pytest.raises(FileNotFoundError, match="checkpoint folder missing/local/path does not exist"):
        model.load_masks("missing/local/path", "other")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        SupermaskForConditionalGeneration.from_pretrained(tmp_path / "nowhere")


# ------------------------------------------------------------------------------------------------------------------
# Checkpoints written before the identity fields: they load, with a warning naming what could not be verified
# ------------------------------------------------------------------------------------------------------------------


def test_checkpoints_without_the_new_identity_fields_load_with_a_warning(saved, tmp_path, caplog):
    copy = _copy(saved, tmp_path)
    _edit_json(copy / "config.json", forward_config_sha256=..., tokenizer_sha256=..., source_lang=..., target_lang=...)
    with caplog.at_level(logging.WARNING):
        model = AutoModelForSeq2SeqLM.from_pretrained(copy)
    assert "records no forward_config_sha256" in caplog.text and "no tokenizer_sha256" in caplog.text
    assert "scripts/resave_checkpoint.py" in caplog.text
    assert model.masks_fingerprint() == json.loads((saved / "config.json").read_text())["masks_sha256"]
    # the size check still applies to them
    shutil.copyfile(SHIPPED_MODEL / "tokenizer.json", copy / "tokenizer.json")
    with pytest.raises(ValueError, match="has 8000 tokens"):
        AutoModelForSeq2SeqLM.from_pretrained(copy)


def test_resave_records_the_identity_from_unchanged_masks(saved, tmp_path, caplog):
    from hf_supermask.resave import resave_checkpoint

    copy = _copy(saved, tmp_path)
    original = json.loads((saved / "config.json").read_text())
    _edit_json(copy / "config.json", forward_config_sha256=..., tokenizer_sha256=..., source_lang=..., target_lang=...)
    masks = (copy / "model.safetensors").read_bytes()
    config = resave_checkpoint(copy, source_lang="en", target_lang="de")
    for field in ("weights_sha256", "masks_sha256", "forward_config_sha256", "tokenizer_sha256"):
        assert config[field] == original[field], field
    assert (config["source_lang"], config["target_lang"]) == ("en", "de")
    assert (copy / "model.safetensors").read_bytes() == masks
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        AutoModelForSeq2SeqLM.from_pretrained(copy)
    assert "records no" not in caplog.text


# ------------------------------------------------------------------------------------------------------------------
# Numbered item 2 of the brief: a checkpoint records its direction
# ------------------------------------------------------------------------------------------------------------------


def test_the_direction_is_kept_through_save_and_load(saved):
    config = AutoModelForSeq2SeqLM.from_pretrained(saved).config
    assert (config.source_lang, config.target_lang) == ("en", "de")
    with pytest.raises(ValueError, match="`source_lang` must be a language code"):
        tiny_config(source_lang="en_US")
    assert tiny_config().source_lang is None and tiny_config().target_lang is None


def test_the_training_script_records_direction_and_tokenizer(trained, tokenizer_dir):
    output_dir, _ = trained
    config = json.loads((output_dir / "config.json").read_text())
    assert (config["source_lang"], config["target_lang"]) == ("en", "de")
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    assert config["tokenizer_sha256"] == tokenizer_fingerprint(tokenizer.backend_tokenizer.to_str())
    assert config["forward_config_sha256"] == SupermaskConfig(**config).forward_config_fingerprint()


# ------------------------------------------------------------------------------------------------------------------
# Smaller holes
# ------------------------------------------------------------------------------------------------------------------


def test_use_safetensors_false_never_unpickles(saved, tmp_path, monkeypatch):
    copy = _copy(saved, tmp_path)
    torch.save(load_file(copy / "model.safetensors"), copy / "pytorch_model.bin")  # beside model.safetensors
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("a pickle was opened"))
    with pytest.raises(ValueError, match="`use_safetensors=False` asks for pytorch_model.bin"):
        AutoModelForSeq2SeqLM.from_pretrained(copy, use_safetensors=False)


def test_a_missing_shard_is_named(saved, tmp_path):
    copy = _copy(saved, tmp_path)
    tensors = load_file(copy / "model.safetensors")
    (copy / "model.safetensors").unlink()
    keys = sorted(tensors)
    shards = {
        "model-00001-of-00002.safetensors": keys[: len(keys) // 2],
        "model-00002-of-00002.safetensors": keys[len(keys) // 2 :],
    }
    save_file(
        {k: tensors[k] for k in shards["model-00001-of-00002.safetensors"]},
        copy / "model-00001-of-00002.safetensors",
        metadata={"format": "pt"},
    )
    weight_map = {key: shard for shard, names in shards.items() for key in names}
    (copy / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    with pytest.raises(
        FileNotFoundError, match="lists the shard model-00002-of-00002.safetensors .* but the file is missing"
    ):
        AutoModelForSeq2SeqLM.from_pretrained(copy)


@pytest.mark.parametrize("field", ["embedding_scale", "output_scale"])
def test_scales_must_be_finite_in_float32(field):
    with pytest.raises(ValueError, match=f"`{field}` must be a positive number that is finite in float32"):
        tiny_config(**{field: 1e40})


# ------------------------------------------------------------------------------------------------------------------
# Shipped folders: each loads through the code it ships, where hf_supermask cannot be imported
# ------------------------------------------------------------------------------------------------------------------

# Translates one sentence with each folder through its own remote code, then loads an edited one.
_TRANSLATE_EACH_THEN_LOAD_EDITED = """
from transformers import AutoModelForSeq2SeqLM, pipeline

jobs, edited = json.loads(sys.argv[1]), sys.argv[2]
results = {}
for folder, sentence in jobs:
    translator = pipeline("translation", model=folder, trust_remote_code=True, device="cpu")
    results[folder] = [translator(sentence, num_beams=1, max_new_tokens=40)[0]["translation_text"],
                       type(translator.model).__module__]
try:
    AutoModelForSeq2SeqLM.from_pretrained(edited, trust_remote_code=True)
    results["edited"] = "loaded"
except ValueError as error:
    results["edited"] = str(error)
results["imported"] = sorted(name for name, module in sys.modules.items() if name.startswith("hf_supermask") and module)
emit(results)
"""


def test_every_shipped_folder_loads_through_its_own_code_without_the_package(tmp_path):
    jobs, expected = [], {}
    for folder in SHIPPED_FOLDERS:
        copy = _copy(folder, tmp_path, name=f"{folder.parent.name}-{folder.name}")
        source = json.loads((folder / "config.json").read_text())["source_lang"]
        sentence = read_lines("test_2016_flickr", source, 1)[0]
        jobs.append((str(copy), sentence))
        translator = pipeline("translation", model=str(folder), device="cpu")
        expected[str(copy)] = translator(sentence, num_beams=1, max_new_tokens=40)[0]["translation_text"]
    edited = _copy(SHIPPED_MODEL, tmp_path, name="edited")
    _edit_json(edited / "config.json", output_scale=3.0)
    # One process for every folder: their remote code shares one module cache, as a user's does.
    results = run_without_the_package(
        _TRANSLATE_EACH_THEN_LOAD_EDITED, json.dumps(jobs), str(edited), tmp_path=tmp_path
    )
    assert results["imported"] == []
    for folder, text in expected.items():
        translation, module = results[folder]
        assert module.startswith("transformers_modules.")
        assert translation == text and translation, folder
    assert "forward_config_sha256" in results["edited"]


def test_saved_folders_carry_every_module_the_remote_code_imports(saved):
    from transformers.dynamic_module_utils import get_relative_import_files

    needed = {path.split("/")[-1] for path in get_relative_import_files(str(saved / "modeling_supermask.py"))}
    assert {"checkpoint.py", "configuration_supermask.py", "masked_layers.py"} <= needed
    assert needed <= {path.name for path in saved.glob("*.py")}
    assert (saved / "pipeline_translation.py").exists()
    for folder in SHIPPED_FOLDERS:
        assert needed | {"modeling_supermask.py", "pipeline_translation.py"} <= {p.name for p in folder.glob("*.py")}


def test_shipped_folders_carry_the_current_model_code():
    """A shipped folder's remote code is a copy of `modeling/`: a change to the model code must be re-saved into
    every shipped folder (`python scripts/resave_checkpoint.py FOLDER`), or remote-code users run old code."""
    modeling = REPO_ROOT / "modeling"
    for folder in SHIPPED_FOLDERS:
        for copy in folder.glob("*.py"):
            assert copy.read_bytes() == (modeling / copy.name).read_bytes(), f"{copy} differs from modeling/{copy.name}"
