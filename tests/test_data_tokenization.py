# Copyright 2026 The hf_supermask Authors. Licensed under the Apache License, Version 2.0.
"""Tests for `hf_supermask.data` and `hf_supermask.tokenization`, on slices of the real Multi30k files."""

import json
import unicodedata
from pathlib import Path

import datasets
import pytest
from conftest import DATA_DIR
from datasets import Dataset, DatasetDict
from transformers import AutoTokenizer, DataCollatorForSeq2Seq

from hf_supermask.data import (
    SHARED_DATA_DIR,
    default_data_dir,
    load_translation_dataset,
    make_preprocess_function,
    select_max_samples,
)
from hf_supermask.tokenization import train_tokenizer, train_tokenizer_on_dataset


NUM_LINES = 300
VOCAB_SIZE = 500
MULTI30K_FILES = [f"{split}.{lang}" for split in ("train", "val", "test_2016_flickr") for lang in ("en", "de")]


def _source_dir() -> Path:
    if not all((DATA_DIR / name).is_file() for name in MULTI30K_FILES):
        pytest.fail(f"Multi30k not found at {DATA_DIR}; set MULTI30K_DIR to the folder of split.lang files.")
    return DATA_DIR


def _head(path: Path, num_lines: int = NUM_LINES) -> list[str]:
    with open(path, encoding="utf-8", newline="") as handle:
        return [next(handle).removesuffix("\n") for _ in range(num_lines)]


def _write_lines(path: Path, lines: list[str]) -> None:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def _split_sizes(dataset_dict: DatasetDict) -> dict[str, int]:
    return {split: len(dataset) for split, dataset in dataset_dict.items()}


def _clean(text: str) -> str:
    """What the tokenizer's normaliser makes of `text`: NFKC, whitespace runs collapsed, ends stripped."""
    return " ".join(unicodedata.normalize("NFKC", text).split())


@pytest.fixture(scope="module")
def multi30k_dir(tmp_path_factory) -> Path:
    """A data_dir holding the first `NUM_LINES` lines of every real Multi30k file (a slice, kept out of the repo)."""
    source, target = _source_dir(), tmp_path_factory.mktemp("multi30k")
    for name in MULTI30K_FILES:
        _write_lines(target / name, _head(source / name))
    return target


@pytest.fixture(scope="module")
def train_sentences(multi30k_dir) -> list[str]:
    return _head(multi30k_dir / "train.en") + _head(multi30k_dir / "train.de")


@pytest.fixture(scope="module", params=["bpe", "unigram"])
def tokenizer(request, train_sentences):
    return train_tokenizer(train_sentences, vocab_size=VOCAB_SIZE, model_type=request.param, model_max_length=64)


# ---------------------------------------------------------------------------------------------------------------------
# Data loading
# ---------------------------------------------------------------------------------------------------------------------


def test_default_data_dir_is_relative_to_the_working_directory(tmp_path, monkeypatch, multi30k_dir):
    """No path inside the installed package: `../shared/data/multi30k` from where the user runs."""
    assert not SHARED_DATA_DIR.is_absolute()
    (tmp_path / "shared" / "data").mkdir(parents=True)
    (tmp_path / "shared" / "data" / "multi30k").symlink_to(multi30k_dir)
    (tmp_path / "repo").mkdir()
    monkeypatch.chdir(tmp_path / "repo")
    assert default_data_dir() == SHARED_DATA_DIR
    assert len(load_translation_dataset("en", "de")["validation"]) > 0
    monkeypatch.chdir(tmp_path)
    assert default_data_dir() is None


def test_data_dir_split_mapping_and_row_format(multi30k_dir):
    dataset_dict = load_translation_dataset("en", "de", data_dir=multi30k_dir)

    assert set(dataset_dict) == {"train", "validation", "test"}
    for split, stem in (("train", "train"), ("validation", "val"), ("test", "test_2016_flickr")):
        dataset = dataset_dict[split]
        assert dataset.column_names == ["translation"]
        assert len(dataset) == NUM_LINES
        english, german = _head(multi30k_dir / f"{stem}.en"), _head(multi30k_dir / f"{stem}.de")
        for index in (0, NUM_LINES - 1):
            assert dataset[index] == {"translation": {"en": english[index], "de": german[index]}}


def test_data_dir_is_verbatim_and_direction_follows_arguments(multi30k_dir):
    # German lines with trailing spaces or non-breaking spaces exist in Multi30k; the loader must not alter them.
    german = _head(multi30k_dir / "train.de")
    dataset_dict = load_translation_dataset("de", "en", data_dir=multi30k_dir)
    assert [pair["de"] for pair in dataset_dict["train"]["translation"]] == german


def test_split_aliases_and_split_names(multi30k_dir, tmp_path):
    for name in ("train.en", "train.de"):
        _write_lines(tmp_path / name, _head(multi30k_dir / name, 20))
    for lang in ("en", "de"):
        _write_lines(tmp_path / f"dev.{lang}", _head(multi30k_dir / f"val.{lang}", 10))
        _write_lines(tmp_path / f"test.{lang}", _head(multi30k_dir / f"test_2016_flickr.{lang}", 5))
        _write_lines(tmp_path / f"test_2017_flickr.{lang}", _head(multi30k_dir / f"test_2016_flickr.{lang}", 7))

    dataset_dict = load_translation_dataset(data_dir=tmp_path)
    assert _split_sizes(dataset_dict) == {"train": 20, "validation": 10, "test": 5}

    dataset_dict = load_translation_dataset(data_dir=tmp_path, split_names={"test": "test_2017_flickr"})
    assert len(dataset_dict["test"]) == 7


def test_ambiguous_split_files(multi30k_dir, tmp_path):
    for stem in ("test", "test_2016_flickr"):
        for lang in ("en", "de"):
            _write_lines(tmp_path / f"{stem}.{lang}", _head(multi30k_dir / f"test_2016_flickr.{lang}", 5))
    with pytest.raises(ValueError, match="split_names"):
        load_translation_dataset(data_dir=tmp_path)


def test_line_count_mismatch(multi30k_dir, tmp_path):
    _write_lines(tmp_path / "train.en", _head(multi30k_dir / "train.en", 30))
    _write_lines(tmp_path / "train.de", _head(multi30k_dir / "train.de", 29))
    with pytest.raises(ValueError) as error:
        load_translation_dataset(data_dir=tmp_path)
    message = str(error.value)
    assert str(tmp_path / "train.en") in message and str(tmp_path / "train.de") in message
    assert "30" in message and "29" in message


def test_missing_target_file(multi30k_dir, tmp_path):
    _write_lines(tmp_path / "train.en", _head(multi30k_dir / "train.en", 10))
    with pytest.raises(FileNotFoundError, match="train.de"):
        load_translation_dataset(data_dir=tmp_path)


@pytest.mark.parametrize("folder", ["missing", "empty"])
def test_missing_data_dir_error(tmp_path, folder):
    data_dir = tmp_path / folder
    if folder == "empty":
        data_dir.mkdir()
    with pytest.raises(FileNotFoundError) as error:
        load_translation_dataset(data_dir=data_dir)
    message = str(error.value)
    assert str(data_dir) in message
    assert "--data_dir" in message and "--dataset_name" in message and "--train_file" in message


def test_no_data_anywhere_names_all_three_places(tmp_path, monkeypatch):
    """Offline, without --data_dir and without ../shared: the error names --data_dir, ../shared/data/multi30k and
    the Hub dataset."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(FileNotFoundError) as error:
        load_translation_dataset()
    message = str(error.value)
    assert "--data_dir" in message and str(SHARED_DATA_DIR) in message and str(tmp_path) in message
    assert "--dataset_name bentrevett/multi30k" in message and "offline" in message


def test_jsonlines_route(multi30k_dir, tmp_path):
    files = {}
    for split, stem, num_lines in (("train", "train", 40), ("validation", "val", 15)):
        english, german = _head(multi30k_dir / f"{stem}.en", num_lines), _head(multi30k_dir / f"{stem}.de", num_lines)
        files[split] = tmp_path / f"{split}.json"
        with open(files[split], "w", encoding="utf-8") as handle:
            for source, target in zip(english, german):
                handle.write(json.dumps({"translation": {"en": source, "de": target}}, ensure_ascii=False) + "\n")

    dataset_dict = load_translation_dataset(
        train_file=files["train"],
        validation_file=files["validation"],
        data_dir=tmp_path / "ignored",  # explicit files take priority
        cache_dir=tmp_path / "cache",
    )

    assert _split_sizes(dataset_dict) == {"train": 40, "validation": 15}
    assert dataset_dict["validation"][3] == {
        "translation": {"en": _head(multi30k_dir / "val.en")[3], "de": _head(multi30k_dir / "val.de")[3]}
    }
    with pytest.raises(ValueError, match="'fr'"):
        load_translation_dataset("en", "fr", train_file=files["train"], cache_dir=tmp_path / "cache")


def test_hub_flat_columns_are_nested(multi30k_dir, monkeypatch):
    # `bentrevett/multi30k` rows are {"en": ..., "de": ...}; stand in for the Hub with the same layout.
    english, german = _head(multi30k_dir / "val.en", 12), _head(multi30k_dir / "val.de", 12)
    flat = Dataset.from_dict({"en": english, "de": german})
    hub = DatasetDict({"train": flat, "validation": flat.select(range(4)), "test": flat.select(range(2))})
    calls = []

    def fake_load_dataset(name, config_name=None, **kwargs):
        calls.append((name, config_name))
        return hub

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    dataset_dict = load_translation_dataset(dataset_name="bentrevett/multi30k")

    assert calls == [("bentrevett/multi30k", None)]
    assert _split_sizes(dataset_dict) == {"train": 12, "validation": 4, "test": 2}
    assert dataset_dict["train"].column_names == ["translation"]
    assert dataset_dict["train"][5] == {"translation": {"en": english[5], "de": german[5]}}


def test_hub_translation_rows_are_kept(multi30k_dir, monkeypatch):
    # `wmt16`-style rows already have a `translation` column (of the `Translation` feature type); its splits may use
    # other names, mapped with `split_names`.
    english, german = _head(multi30k_dir / "val.en", 6), _head(multi30k_dir / "val.de", 6)
    features = datasets.Features({"translation": datasets.Translation(languages=["de", "en"])})
    rows = Dataset.from_dict(
        {"translation": [{"de": target, "en": source} for source, target in zip(english, german)]}, features=features
    )
    hub = DatasetDict({"train": rows, "dev": rows.select(range(3)), "newstest2016": rows.select(range(2))})
    monkeypatch.setattr(datasets, "load_dataset", lambda name, config_name=None, **kwargs: hub)

    dataset_dict = load_translation_dataset(
        dataset_name="wmt16", dataset_config_name="de-en", split_names={"test": "newstest2016"}
    )
    assert _split_sizes(dataset_dict) == {"train": 6, "validation": 3, "test": 2}
    assert dataset_dict["test"][1]["translation"] == {"de": german[1], "en": english[1]}
    with pytest.raises(ValueError, match="'fr'"):
        load_translation_dataset("en", "fr", dataset_name="wmt16", dataset_config_name="de-en")


def test_select_max_samples(multi30k_dir):
    dataset_dict = load_translation_dataset(data_dir=multi30k_dir)
    selected = select_max_samples(dataset_dict, max_train_samples=10, max_eval_samples=None, max_predict_samples=10**6)
    assert _split_sizes(selected) == {"train": 10, "validation": NUM_LINES, "test": NUM_LINES}
    assert selected["train"][:] == dataset_dict["train"][:10]
    with pytest.raises(ValueError, match="train"):
        select_max_samples(dataset_dict, max_train_samples=-1)


# ---------------------------------------------------------------------------------------------------------------------
# Tokenizer
# ---------------------------------------------------------------------------------------------------------------------


def test_special_token_ids_and_exact_size(tokenizer):
    assert tokenizer.convert_ids_to_tokens([0, 1, VOCAB_SIZE - 1]) == ["</s>", "<unk>", "<pad>"]
    assert (tokenizer.eos_token_id, tokenizer.unk_token_id, tokenizer.pad_token_id) == (0, 1, VOCAB_SIZE - 1)
    assert tokenizer.bos_token is None
    # <pad> is in the model vocabulary, so the base size (what configs are often sized from) is exact too.
    assert len(tokenizer) == tokenizer.vocab_size == VOCAB_SIZE
    assert sorted(tokenizer.get_vocab().values()) == list(range(VOCAB_SIZE))
    assert tokenizer.model_input_names == ["input_ids", "attention_mask"]
    assert tokenizer.padding_side == "right" and tokenizer.model_max_length == 64


def test_eos_appended_to_inputs_and_labels(tokenizer, multi30k_dir):
    sources, targets = _head(multi30k_dir / "val.en", 8), _head(multi30k_dir / "val.de", 8)
    encoded = tokenizer(sources, text_target=targets)
    for ids in encoded["input_ids"] + encoded["labels"]:
        assert ids[-1] == tokenizer.eos_token_id
        assert tokenizer.eos_token_id not in ids[:-1] and tokenizer.pad_token_id not in ids


def test_decode_round_trip(tokenizer, train_sentences):
    decoded = tokenizer.batch_decode(tokenizer(train_sentences)["input_ids"], skip_special_tokens=True)
    assert decoded == [_clean(sentence) for sentence in train_sentences]
    # Most lines are already clean and must come back byte for byte, umlauts and punctuation included.
    exact = [sentence for sentence, text in zip(train_sentences, decoded) if sentence == text]
    assert any(any(char in sentence for char in "äöüß") and "," in sentence for sentence in exact)
    assert len(exact) > 0.9 * len(train_sentences)


def test_decode_round_trip_unseen_sentences(tokenizer, train_sentences, multi30k_dir):
    alphabet = set("".join(_clean(sentence) for sentence in train_sentences))
    test_sentences = _head(multi30k_dir / "test_2016_flickr.en", 50) + _head(multi30k_dir / "test_2016_flickr.de", 50)
    unseen = [sentence for sentence in test_sentences if set(_clean(sentence)) <= alphabet]
    assert len(unseen) > 50
    decoded = tokenizer.batch_decode(tokenizer(unseen)["input_ids"], skip_special_tokens=True)
    assert decoded == [_clean(sentence) for sentence in unseen]


def test_whitespace_normalisation(tokenizer, train_sentences):
    # Multi30k has doubled spaces and non-breaking spaces; neither may reach the vocabulary or the output.
    messy = [sentence for sentence in train_sentences if sentence != _clean(sentence)]
    assert messy
    assert tokenizer(messy)["input_ids"] == tokenizer([_clean(sentence) for sentence in messy])["input_ids"]
    assert not [token for token in tokenizer.get_vocab() if "\xa0" in token or "▁▁" in token]


def test_save_and_reload_identical(tokenizer, train_sentences, multi30k_dir, tmp_path):
    tokenizer.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)

    assert len(reloaded) == reloaded.vocab_size == VOCAB_SIZE
    assert reloaded.get_vocab() == tokenizer.get_vocab()
    assert reloaded.special_tokens_map == tokenizer.special_tokens_map
    assert (reloaded.eos_token_id, reloaded.unk_token_id, reloaded.pad_token_id) == (0, 1, VOCAB_SIZE - 1)
    assert reloaded.model_input_names == tokenizer.model_input_names
    assert (reloaded.padding_side, reloaded.model_max_length) == ("right", 64)
    sources, targets = train_sentences[:20], _head(multi30k_dir / "val.de", 20)
    assert reloaded(sources, text_target=targets) == tokenizer(sources, text_target=targets)
    ids = tokenizer(sources)["input_ids"]
    assert reloaded.batch_decode(ids, skip_special_tokens=True) == tokenizer.batch_decode(ids, skip_special_tokens=True)


def test_deterministic(tokenizer, train_sentences):
    # The raw unigram trainer orders pieces differently on every run; ids must not depend on that.
    model_type = tokenizer.backend_tokenizer.model.__class__.__name__.lower()
    again = train_tokenizer(train_sentences, vocab_size=VOCAB_SIZE, model_type=model_type, model_max_length=64)
    assert again.get_vocab() == tokenizer.get_vocab()
    assert again(train_sentences)["input_ids"] == tokenizer(train_sentences)["input_ids"]


def test_train_tokenizer_on_dataset(multi30k_dir, train_sentences):
    dataset_dict = load_translation_dataset(data_dir=multi30k_dir)
    tokenizer = train_tokenizer_on_dataset(dataset_dict, "en", "de", vocab_size=VOCAB_SIZE, model_type="bpe")
    assert len(tokenizer) == VOCAB_SIZE and tokenizer.pad_token_id == VOCAB_SIZE - 1
    # Both languages are in the joint vocabulary.
    for sentence in (train_sentences[0], train_sentences[NUM_LINES]):
        assert tokenizer.unk_token_id not in tokenizer(sentence)["input_ids"]
    assert tokenizer.get_vocab() == train_tokenizer(train_sentences, vocab_size=VOCAB_SIZE).get_vocab()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"vocab_size": 3}, "vocab_size"),
        ({"vocab_size": "8000"}, "vocab_size"),
        ({"model_type": "wordpiece"}, r"model_type must be one of \('bpe', 'unigram'\)"),
        ({"model_max_length": 0}, "model_max_length"),
        ({"min_frequency": 0}, "min_frequency"),
    ],
)
def test_invalid_arguments(train_sentences, kwargs, match):
    with pytest.raises(ValueError, match=match):
        train_tokenizer(train_sentences[:10], **kwargs)


@pytest.mark.parametrize("model_type", ["bpe", "unigram"])
def test_vocab_size_larger_than_corpus_supports(train_sentences, model_type):
    with pytest.raises(ValueError, match="vocab_size=8000"):
        train_tokenizer(train_sentences[:20], vocab_size=8000, model_type=model_type)


# ---------------------------------------------------------------------------------------------------------------------
# Preprocessing
# ---------------------------------------------------------------------------------------------------------------------


def test_preprocess_function(tokenizer, multi30k_dir):
    dataset = load_translation_dataset(data_dir=multi30k_dir)["validation"].select(range(32))
    preprocess = make_preprocess_function(tokenizer, "en", "de", max_source_length=64, max_target_length=64)
    tokenized = dataset.map(preprocess, batched=True, remove_columns=["translation"])
    input_ids, labels = list(tokenized["input_ids"]), list(tokenized["labels"])

    assert set(tokenized.column_names) == {"input_ids", "attention_mask", "labels"}
    first = dataset[0]["translation"]
    assert tokenized[0]["input_ids"] == tokenizer(first["en"])["input_ids"]
    assert tokenized[0]["labels"] == tokenizer(text_target=first["de"])["input_ids"]
    # Padding is left to the collator: lengths vary and no <pad> is in the data.
    assert len({len(ids) for ids in input_ids}) > 1
    assert all(tokenizer.pad_token_id not in ids for ids in input_ids + labels)

    batch = DataCollatorForSeq2Seq(tokenizer)([tokenized[i] for i in range(4)])
    longest = max(len(tokenized[i]["input_ids"]) for i in range(4))
    assert batch["input_ids"].shape[1] == longest
    shortest = min(range(4), key=lambda i: len(tokenized[i]["input_ids"]))
    assert batch["input_ids"][shortest, -1].item() == tokenizer.pad_token_id  # padded on the right
    assert (batch["labels"] == -100).any()


def test_preprocess_truncation_and_prefix(tokenizer, multi30k_dir):
    dataset = load_translation_dataset(data_dir=multi30k_dir)["train"].select(range(32))
    preprocess = make_preprocess_function(tokenizer, "en", "de", max_source_length=8, max_target_length=6)
    tokenized = dataset.map(preprocess, batched=True, remove_columns=["translation"])
    input_ids, labels = list(tokenized["input_ids"]), list(tokenized["labels"])

    assert max(len(ids) for ids in input_ids) == 8
    assert max(len(ids) for ids in labels) == 6
    # Truncation keeps room for the closing </s>.
    assert all(ids[-1] == tokenizer.eos_token_id for ids in input_ids + labels)

    # A prefix is prepended to sources only (a real Multi30k word, so the prefix is in the vocabulary).
    prefix = dataset[0]["translation"]["en"].split()[0] + " "
    prefixed = make_preprocess_function(tokenizer, "en", "de", 64, 64, source_prefix=prefix)(dataset[:2])
    plain = make_preprocess_function(tokenizer, "en", "de", 64, 64)(dataset[:2])
    assert prefixed["labels"] == plain["labels"]
    assert tokenizer.decode(prefixed["input_ids"][1], skip_special_tokens=True) == _clean(
        prefix + dataset[1]["translation"]["en"]
    )


def test_length_bucketed_order_groups_lengths_and_shuffles_batches():
    from conftest import read_lines as _conftest_read_lines

    from hf_supermask.data import length_bucketed_order

    lengths = [len(line.split()) for line in _conftest_read_lines("train", "en", 1000)]
    order = length_bucketed_order(lengths, batch_size=16, examples=2500, seed=0, batches_per_bucket=10)
    assert len(order) == 2500
    assert sorted(order[:1000]) == list(range(1000)) and sorted(order[1000:2000]) == list(range(1000))  # epochs
    batches = [order[i : i + 16] for i in range(0, 992, 16)]
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches) / len(batches)
    shuffled_spread = sum(
        max(lengths[i] for i in b) - min(lengths[i] for i in b)
        for b in (list(range(j, j + 16)) for j in range(0, 992, 16))
    ) / len(batches)
    assert spread < shuffled_spread / 3  # less padding
    # the batches are not sorted by length within a bucket (the group_by_length pitfall): longest batch lengths
    # go up and down
    maxima = [max(lengths[i] for i in b) for b in batches[:10]]
    assert maxima != sorted(maxima) and maxima != sorted(maxima, reverse=True)
    assert order == length_bucketed_order(lengths, batch_size=16, examples=2500, seed=0, batches_per_bucket=10)
