"""
Tests of the `"translation"` pipeline restored for transformers 5.x (`hf_supermask.pipelines` and
`modeling/pipeline_translation.py`).

The model is a tiny, randomly initialised `MarianMTModel` with a BPE tokenizer trained here on the first lines of
the real Multi30k training data: the tests check the pipeline mechanics, not translation quality.
"""

import json
import logging
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from conftest import DATA_DIR
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import (
    GenerationConfig,
    GPT2Config,
    GPT2LMHeadModel,
    MarianConfig,
    MarianMTModel,
    PreTrainedTokenizerFast,
    pipeline,
)


MULTI30K_DIR = DATA_DIR
N_TRAIN_LINES = 300
MODEL_MAX_LENGTH = 32  # small, so that truncation is easy to trigger
GENERATION_MAX_LENGTH = 12  # decoder start token + 11 generated tokens
PIPELINE_MODULE = Path(__file__).resolve().parents[1] / "modeling" / "pipeline_translation.py"
TRANSLATION_LOGGER = "hf_supermask.modeling.pipeline_translation"


@pytest.fixture(scope="module", autouse=True)
def single_thread():
    """Tiny models: thread synchronisation costs more than it saves (x10 on a busy 2-core machine)."""
    num_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(num_threads)


def _read_lines(path: Path, n: int) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return [next(f).strip() for _ in range(n)]


@pytest.fixture(scope="session")
def multi30k() -> dict[str, list[str]]:
    return {
        "en": _read_lines(MULTI30K_DIR / "train.en", N_TRAIN_LINES),
        "de": _read_lines(MULTI30K_DIR / "train.de", N_TRAIN_LINES),
    }


@pytest.fixture(scope="session")
def sentences(multi30k) -> list[str]:
    """A few real English source sentences to translate."""
    return multi30k["en"][:5]


def _build_tokenizer(lines: list[str]) -> PreTrainedTokenizerFast:
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.normalizer = normalizers.NFKC()
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=500, special_tokens=["</s>", "<unk>"], show_progress=False)
    tokenizer.train_from_iterator(lines, trainer)
    # Marian convention: <pad> (also the decoder start token) is the last id
    tokenizer.add_special_tokens(["<pad>"])
    eos_id = tokenizer.token_to_id("</s>")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A $B </s>", special_tokens=[("</s>", eos_id)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        model_max_length=MODEL_MAX_LENGTH,
    )
    assert fast.pad_token_id == len(fast) - 1
    return fast


@pytest.fixture(scope="session")
def tokenizer(multi30k) -> PreTrainedTokenizerFast:
    return _build_tokenizer(multi30k["en"] + multi30k["de"])


@pytest.fixture(scope="session")
def marian_dir(tmp_path_factory, tokenizer) -> Path:
    """A tiny random MarianMTModel + tokenizer, saved like a Hub checkpoint."""
    pad_id, eos_id = tokenizer.pad_token_id, tokenizer.eos_token_id
    config = MarianConfig(
        vocab_size=len(tokenizer),
        d_model=32,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_position_embeddings=64,
        pad_token_id=pad_id,
        eos_token_id=eos_id,
        forced_eos_token_id=eos_id,
        decoder_start_token_id=pad_id,
    )
    torch.manual_seed(0)
    model = MarianMTModel(config).eval()
    with torch.no_grad():
        # Random weights could emit </s> (or <pad>) at any step: forbid them, so that every translation is exactly
        # GENERATION_MAX_LENGTH long and the length limits below are observable.
        model.final_logits_bias[0, eos_id] = -1e4
        model.final_logits_bias[0, pad_id] = -1e4
    model.generation_config = GenerationConfig(
        decoder_start_token_id=pad_id,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
        max_length=GENERATION_MAX_LENGTH,
    )
    folder = tmp_path_factory.mktemp("tiny-marian")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def registered():
    from hf_supermask.pipelines import register_translation_pipeline

    register_translation_pipeline()
    register_translation_pipeline()  # idempotent


@pytest.fixture(scope="session")
def translator(registered, marian_dir):
    return pipeline("translation", model=str(marian_dir), device="cpu")


def _texts(outputs: list[dict]) -> list[str]:
    return [output["translation_text"] for output in outputs]


# --------------------------------------------------------------------------------------------------------------------
# Registration
# --------------------------------------------------------------------------------------------------------------------


def test_translation_task_is_removed_upstream():
    """The reason for this module: 5.x refuses the task, unless (in this process) it was registered already."""
    import transformers.pipelines as transformers_pipelines

    if "translation" in transformers_pipelines.REMOVED_TASKS:
        with pytest.raises(KeyError, match="has been removed"):
            transformers_pipelines.check_task("translation")


def test_registration(registered):
    import transformers.pipelines as transformers_pipelines
    from transformers import AutoModelForSeq2SeqLM

    from hf_supermask.modeling.pipeline_translation import TranslationPipeline

    assert "translation" not in transformers_pipelines.REMOVED_TASKS
    task, targeted_task, options = transformers_pipelines.check_task("translation")
    assert task == "translation"
    assert targeted_task["impl"] is TranslationPipeline
    assert targeted_task["pt"] == (AutoModelForSeq2SeqLM,)
    assert options is None
    assert transformers_pipelines.check_task("translation_en_to_de")[1]["impl"] is TranslationPipeline
    assert "translation" in transformers_pipelines.get_supported_tasks()
    # The other removed tasks stay removed, the other tasks are untouched
    for removed in ("summarization", "text2text-generation"):
        with pytest.raises(KeyError):
            transformers_pipelines.check_task(removed)
    text_generation = transformers_pipelines.check_task("text-generation")[1]
    assert text_generation["impl"] == "transformers.pipelines.text_generation.TextGenerationPipeline"
    with pytest.raises(KeyError, match="Unknown task"):
        transformers_pipelines.check_task("translation-but-not-really")


def test_other_tasks_still_work(registered, tmp_path, tokenizer, sentences):
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_embd=32,
        n_layer=1,
        n_head=2,
        n_positions=64,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    GPT2LMHeadModel(config).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)

    generator = pipeline("text-generation", model=str(tmp_path), device="cpu")
    assert type(generator).__name__ == "TextGenerationPipeline"
    outputs = generator(sentences[0], max_new_tokens=3, do_sample=False)
    assert isinstance(outputs, list) and outputs[0]["generated_text"].startswith(sentences[0][:5])

    extractor = pipeline("feature-extraction", model=str(tmp_path), device="cpu")
    assert type(extractor).__name__ == "FeatureExtractionPipeline"
    assert len(extractor(sentences[0])[0][0]) == 32


# --------------------------------------------------------------------------------------------------------------------
# Pipeline behaviour
# --------------------------------------------------------------------------------------------------------------------


def test_str_in_list_of_dict_out(translator, sentences):
    assert type(translator).__name__ == "TranslationPipeline"
    outputs = translator(sentences[0])
    assert isinstance(outputs, list) and len(outputs) == 1
    assert set(outputs[0]) == {"translation_text"}
    assert isinstance(outputs[0]["translation_text"], str) and outputs[0]["translation_text"]


def test_list_batched_equals_one_by_one(translator, sentences):
    one_by_one = [translator(sentence)[0] for sentence in sentences]
    batched = translator(sentences, batch_size=2)
    # A list of str gives a flat list of dicts, as in 4.x
    assert batched == one_by_one
    assert translator(tuple(sentences)) == one_by_one
    assert translator([]) == []


def test_streamed_inputs(translator, sentences):
    from transformers.pipelines.pt_utils import KeyDataset

    expected = [translator(sentence) for sentence in sentences]
    # Generators and datasets are streamed, one list of dicts per input (as in 4.x)
    assert list(translator((sentence for sentence in sentences), batch_size=2)) == expected
    dataset = KeyDataset([{"text": sentence} for sentence in sentences], "text")
    assert list(translator(dataset, batch_size=3)) == expected
    with pytest.raises(TypeError, match="NoneType"):
        list(translator(text for text in [sentences[0], None]))
    # Other iterables are not streamed by `Pipeline.__call__`, hence rejected
    with pytest.raises(TypeError, match="list_iterator"):
        translator(iter(sentences))


def test_task_specific_params(registered, marian_dir, tokenizer):
    """4.x compatibility: prefix and generation defaults from `config.task_specific_params[task]` (T5 style)."""
    model = MarianMTModel.from_pretrained(marian_dir)
    model.config.task_specific_params = {"translation_en_to_de": {"prefix": "translate: ", "num_beams": 2}}
    t5_style = pipeline("translation_en_to_de", model=model, tokenizer=tokenizer, device="cpu", max_new_tokens=3)
    assert t5_style.prefix == "translate: "
    assert t5_style._generate_kwargs == {"num_beams": 2, "max_new_tokens": 3}
    with_prefix = t5_style.preprocess("A man.")["input_ids"][0].tolist()
    assert with_prefix == tokenizer("translate: A man.")["input_ids"]


def test_generation_kwargs_pass_through(translator, marian_dir, sentences):
    tokenizer = translator.tokenizer
    default_ids = translator(sentences[0], return_tensors=True)[0]["translation_token_ids"]
    assert len(default_ids) == GENERATION_MAX_LENGTH  # the model's generation config

    short = translator(sentences[0], max_new_tokens=2)[0]["translation_text"]
    assert len(tokenizer(short, add_special_tokens=False)["input_ids"]) <= 2
    short_ids = translator(sentences[0], max_new_tokens=2, return_tensors=True)[0]["translation_token_ids"]
    assert len(short_ids) == 1 + 2  # decoder start token + 2 new tokens
    assert len(translator(sentences[0], max_length=5, return_tensors=True)[0]["translation_token_ids"]) == 5

    # Beam search: `num_beams`/`num_return_sequences` reach `generate()`
    beams = translator(sentences[0], num_beams=3, num_return_sequences=2)
    assert len(beams) == 2 and all(isinstance(b["translation_text"], str) for b in beams)
    nested = translator(sentences[:3], num_beams=2, num_return_sequences=2, batch_size=2)
    assert [len(n) for n in nested] == [2, 2, 2]
    assert translator(sentences[0], no_repeat_ngram_size=1, num_beams=2)[0]["translation_text"]

    # Unknown generation arguments are rejected by `generate()` instead of being silently ignored
    with pytest.raises(ValueError):
        translator(sentences[0], not_a_generation_argument=1)

    # Construction-time generation kwargs apply to every call, call-time ones win
    short_translator = pipeline("translation", model=str(marian_dir), device="cpu", max_new_tokens=2)
    assert len(short_translator(sentences[0], return_tensors=True)[0]["translation_token_ids"]) == 3
    assert len(short_translator(sentences[0], max_new_tokens=4, return_tensors=True)[0]["translation_token_ids"]) == 5


def test_src_tgt_lang_and_parametrized_task(registered, marian_dir, translator, sentences):
    expected = translator(sentences[0])
    assert translator(sentences[0], src_lang="en", tgt_lang="de") == expected
    en_de = pipeline("translation_en_to_de", model=str(marian_dir), device="cpu")
    assert type(en_de).__name__ == "TranslationPipeline"
    assert en_de._preprocess_params == {"src_lang": "en", "tgt_lang": "de"}
    assert en_de(sentences[0]) == expected


def test_long_input_is_truncated_with_warning(translator, multi30k, caplog):
    long_text = " ".join(multi30k["en"][:10])
    assert len(translator.tokenizer(long_text)["input_ids"]) > MODEL_MAX_LENGTH
    truncated_ids = translator.tokenizer(long_text, truncation=True)["input_ids"]
    assert len(truncated_ids) == MODEL_MAX_LENGTH and truncated_ids[-1] == translator.tokenizer.eos_token_id

    with caplog.at_level(logging.WARNING, logger=TRANSLATION_LOGGER):
        outputs = translator([long_text, multi30k["en"][0], long_text + " " + long_text], batch_size=2)
    assert len(outputs) == 3 and all(o["translation_text"] for o in outputs)
    warnings = [r for r in caplog.records if r.name == TRANSLATION_LOGGER and r.levelno == logging.WARNING]
    assert len(warnings) == 1  # once per call
    message = warnings[0].getMessage()
    assert str(MODEL_MAX_LENGTH) in message and "model_max_length" in message
    full_length = len(translator.tokenizer(long_text, verbose=False)["input_ids"])
    assert str(full_length) in message

    # Same translation as the input truncated by hand, and a new call warns again
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=TRANSLATION_LOGGER):
        assert translator(long_text) == [outputs[0]]
    assert len([r for r in caplog.records if r.name == TRANSLATION_LOGGER]) == 1

    # Short inputs: no warning
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=TRANSLATION_LOGGER):
        translator(multi30k["en"][0])
    assert not [r for r in caplog.records if r.name == TRANSLATION_LOGGER]


def test_empty_string(translator, sentences, monkeypatch):
    calls = []
    generate = translator.model.generate

    def counting_generate(*args, **kwargs):
        calls.append(kwargs["input_ids"].shape[0])
        return generate(*args, **kwargs)

    monkeypatch.setattr(translator.model, "generate", counting_generate)
    assert translator("") == [{"translation_text": ""}]
    assert translator("   ") == [{"translation_text": ""}]
    assert translator(["", ""], batch_size=2) == [{"translation_text": ""}] * 2
    assert calls == []  # the model never ran

    expected = [translator(sentence)[0] for sentence in sentences[:2]]
    calls.clear()
    mixed = ["", sentences[0], "", sentences[1], ""]
    for batch_size in (1, 2, 3):
        outputs = translator(mixed, batch_size=batch_size)
        assert _texts(outputs) == ["", _texts(expected)[0], "", _texts(expected)[1], ""]
    # Empty inputs are dropped from the batches given to the model
    assert sum(calls) == 3 * 2
    assert translator("", num_beams=2, num_return_sequences=2) == [{"translation_text": ""}] * 2


@pytest.mark.parametrize("bad_input", [None, 5, [1, 2], {"text": "A man."}, ["A man.", None], [["A man."]], 1.5])
def test_non_string_input_raises_type_error(translator, bad_input):
    with pytest.raises(TypeError, match=r"expects a `str` or a list of `str`.*but got"):
        translator(bad_input)


def test_type_error_message_names_the_input(translator):
    with pytest.raises(TypeError, match="NoneType"):
        translator(None)
    with pytest.raises(TypeError, match=r"int \(1\) at position 0"):
        translator([1, 2])


# --------------------------------------------------------------------------------------------------------------------
# Remote code: the pipeline file shipped in the checkpoint, loaded without hf_supermask
# --------------------------------------------------------------------------------------------------------------------


def test_custom_pipelines_entry(registered, marian_dir, tmp_path):
    from hf_supermask.pipelines import translation_custom_pipelines_entry

    entry = translation_custom_pipelines_entry()
    assert entry == {
        "translation": {
            "impl": "pipeline_translation.TranslationPipeline",
            "pt": ["AutoModelForSeq2SeqLM"],
            "type": "text",
        }
    }
    assert json.loads(json.dumps(entry)) == entry
    with_default = translation_custom_pipelines_entry("user/model", "0123abc")
    assert with_default["translation"]["default"] == {"model": ["user/model", "0123abc"]}

    # Same format as transformers' own `Pipeline.save_pretrained` writes for a registered pipeline, which also copies
    # the pipeline module next to the weights
    pipeline("translation", model=str(marian_dir), device="cpu").save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["custom_pipelines"] == entry
    assert (tmp_path / "pipeline_translation.py").read_text() == PIPELINE_MODULE.read_text()


@pytest.fixture(scope="session")
def remote_code_dir(tmp_path_factory, marian_dir) -> Path:
    from hf_supermask.pipelines import translation_custom_pipelines_entry

    folder = tmp_path_factory.mktemp("tiny-marian-remote-code")
    shutil.copytree(marian_dir, folder, dirs_exist_ok=True)
    shutil.copy(PIPELINE_MODULE, folder / "pipeline_translation.py")
    config_file = folder / "config.json"
    config = json.loads(config_file.read_text())
    config["custom_pipelines"] = translation_custom_pipelines_entry()
    config_file.write_text(json.dumps(config, indent=2))
    return folder


def test_remote_code_route_without_hf_supermask(remote_code_dir, marian_dir, translator, sentences, tmp_path):
    script = textwrap.dedent(
        """
        import json, sys

        sys.modules["hf_supermask"] = None  # makes any `import hf_supermask` fail, even if pip-installed
        try:
            import hf_supermask  # noqa: F401
        except ImportError:
            pass
        else:
            raise AssertionError("hf_supermask should not be importable here")

        from transformers import pipeline

        model_dir, plain_dir, texts = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
        # Nothing registered: the plain checkpoint still hits the 5.x removal
        try:
            pipeline("translation", model=plain_dir, device="cpu")
        except KeyError as error:
            removed = "has been removed" in str(error)
        else:
            removed = False
        translator = pipeline("translation", model=model_dir, trust_remote_code=True, device="cpu")
        print(json.dumps({
            "removed": removed,
            "class": type(translator).__name__,
            "module": type(translator).__module__,
            "single": translator(texts[0]),
            "batch": translator(texts, batch_size=2),
        }))
        """
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path)}
    env["OMP_NUM_THREADS"] = "1"
    env.pop("PYTHONPATH", None)
    completed = subprocess.run(
        [sys.executable, "-c", script, str(remote_code_dir), str(marian_dir), json.dumps(sentences[:3])],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert result["removed"] is True
    assert result["class"] == "TranslationPipeline"
    assert result["module"].startswith("transformers_modules.")
    assert result["single"] == translator(sentences[0])
    assert result["batch"] == translator(sentences[:3], batch_size=2)


def test_custom_pipelines_take_precedence_over_registration(registered, remote_code_dir, translator, sentences):
    """transformers checks `config.custom_pipelines` before its registry: such checkpoints need trust_remote_code, or
    an explicit `pipeline_class`."""
    from hf_supermask.modeling.pipeline_translation import TranslationPipeline

    with pytest.raises(ValueError, match="trust_remote_code"):
        pipeline("translation", model=str(remote_code_dir), device="cpu")
    local = pipeline("translation", model=str(remote_code_dir), pipeline_class=TranslationPipeline, device="cpu")
    assert type(local) is TranslationPipeline
    assert local(sentences[0]) == translator(sentences[0])
