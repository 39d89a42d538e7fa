# Copyright 2026 The hf_supermask Authors. Licensed under the Apache License, Version 2.0.
"""
Loading and preprocessing of parallel corpora for translation, in the format of the `run_translation.py` example:
a [`~datasets.DatasetDict`] with `"train"`, `"validation"` and `"test"` splits whose rows are
`{"translation": {source_lang: ..., target_lang: ...}}`.
"""

import json
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import datasets
import torch
from datasets import Dataset, DatasetDict, DatasetInfo
from transformers import BatchEncoding, PreTrainedTokenizerBase

from .files import parse_json, read_lines


logger = logging.getLogger(__name__)

# Where Multi30k is looked for when no data is named: the shared copy beside a checkout (relative to the working
# directory, as `make demo` runs), then, online, the Hub dataset (en and de only).
SHARED_DATA_DIR = Path("..") / "shared" / "data" / "multi30k"
HUB_DATASET = "bentrevett/multi30k"

# Canonical split -> file stems (or Hub split names) accepted for it, in order of preference. Multi30k calls its
# splits train / val / test_2016_flickr.
SPLIT_ALIASES: dict[str, tuple[str, ...]] = {
    "train": ("train",),
    "validation": ("val", "valid", "validation", "dev"),
    "test": ("test", "test_2016_flickr"),
}

PathLike = str | os.PathLike


def default_data_dir() -> Path | None:
    """Returns [`SHARED_DATA_DIR`] (relative to the working directory) if it exists, else `None`."""
    return SHARED_DATA_DIR if SHARED_DATA_DIR.is_dir() else None


def _hub_offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE) or os.environ.get("HF_DATASETS_OFFLINE", "0").upper() in ("1", "ON", "YES")


def _no_data_error(looked_up: str) -> FileNotFoundError:
    return FileNotFoundError(
        f"No parallel data found: looked up {looked_up}. Pass `--data_dir PATH` to a folder of `split.lang` text "
        "files (Multi30k's train.en/train.de, val.en/val.de, test_2016_flickr.en/test_2016_flickr.de), or place "
        f"Multi30k in {SHARED_DATA_DIR} (relative to the working directory), or, online, pass "
        f"`--dataset_name {HUB_DATASET}` (en and de); jsonlines files go through `--train_file/--validation_file`."
    )


def _split_candidates(split: str, split_names: Mapping[str, str] | None) -> tuple[str, ...]:
    if split_names and split in split_names:
        return (split_names[split],)
    return SPLIT_ALIASES[split]


def _pairs_dataset(sources: list[str], targets: list[str], source_lang: str, target_lang: str, origin: str) -> Dataset:
    """A split in the `translation` format; `origin` (where it was read from) is kept as its description, for
    messages about it."""
    string = datasets.Value("string")
    features = datasets.Features({"translation": {source_lang: string, target_lang: string}})
    # `from_dict` builds an in-memory Arrow table: fast, and needs neither the network nor a cache.
    return Dataset.from_dict(
        {"translation": [{source_lang: s, target_lang: t} for s, t in zip(sources, targets)]},
        info=DatasetInfo(description=origin, features=features),
    )


def _with_origin(dataset: Dataset, origin: str) -> Dataset:
    dataset.info.description = origin
    return dataset


def _load_from_data_dir(
    data_dir: Path, source_lang: str, target_lang: str, split_names: Mapping[str, str] | None
) -> DatasetDict:
    if not data_dir.is_dir():
        raise _no_data_error(f"data_dir {str(data_dir)!r}, which is not a directory")

    splits = {}
    for split in SPLIT_ALIASES:
        stems = [
            stem
            for stem in _split_candidates(split, split_names)
            if (data_dir / f"{stem}.{source_lang}").exists() or (data_dir / f"{stem}.{target_lang}").exists()
        ]
        if not stems:
            logger.warning(f"No {split!r} split in {data_dir} (looked for {_split_candidates(split, split_names)}).")
            continue
        if len(stems) > 1:
            raise ValueError(
                f"Several files in {data_dir} could be the {split!r} split: {stems}. Choose one with "
                f"split_names={{{split!r}: {stems[0]!r}}}."
            )
        source_file, target_file = data_dir / f"{stems[0]}.{source_lang}", data_dir / f"{stems[0]}.{target_lang}"
        for path in (source_file, target_file):
            if not path.is_file():
                raise FileNotFoundError(
                    f"{path} is missing: the {split!r} split needs both {source_file.name} and {target_file.name}."
                )
        sources, targets = read_lines(source_file), read_lines(target_file)
        if len(sources) != len(targets):
            raise ValueError(
                f"{source_file} has {len(sources)} lines but {target_file} has {len(targets)}; line N of one must "
                "translate line N of the other."
            )
        splits[split] = _pairs_dataset(
            sources,
            targets,
            source_lang,
            target_lang,
            origin=f"{source_file.name} and {target_file.name} in {data_dir}",
        )

    if not splits:
        raise _no_data_error(
            f"data_dir {str(data_dir)!r} for files named `split.{source_lang}` and `split.{target_lang}` with split "
            f"in {sorted({stem for split in SPLIT_ALIASES for stem in _split_candidates(split, split_names)})}"
        )
    return DatasetDict(splits)


def _rename_splits(dataset_dict: DatasetDict, split_names: Mapping[str, str] | None) -> DatasetDict:
    """Keeps the train/validation/test splits of a Hub dataset under their canonical names."""
    renamed = {}
    for split in SPLIT_ALIASES:
        name = next((name for name in _split_candidates(split, split_names) if name in dataset_dict), None)
        if name is not None:
            renamed[split] = dataset_dict[name]
    if not renamed:
        raise ValueError(
            f"None of the splits {list(dataset_dict)} is a train, validation or test split; map them with "
            "split_names, e.g. {'test': 'test_2016_flickr'}."
        )
    return DatasetDict(renamed)


def _to_translation_format(dataset_dict: DatasetDict, source_lang: str, target_lang: str) -> DatasetDict:
    """
    Normalises every split to a single `translation` column. Rows with flat language columns, like
    `bentrevett/multi30k`'s `{"en": ..., "de": ...}`, are nested; rows that already have `translation` (jsonlines
    files, `wmt16`) are kept as they are.
    """
    normalised = {}
    for split, dataset in dataset_dict.items():
        columns = dataset.column_names
        if "translation" in columns:
            feature = dataset.features["translation"]
            # `wmt16` uses the `Translation` feature type, jsonlines files a plain struct (a dict of features).
            if isinstance(feature, datasets.Translation):
                languages = feature.languages
            else:
                languages = list(feature) if isinstance(feature, dict) else []
            missing = [lang for lang in (source_lang, target_lang) if lang not in languages]
            if missing:
                raise ValueError(
                    f"The {split!r} split's `translation` column has no {missing} entries (it has {languages})."
                )
            normalised[split] = dataset.select_columns(["translation"])
        elif source_lang in columns and target_lang in columns:
            normalised[split] = dataset.map(
                lambda batch: {
                    "translation": [
                        {source_lang: s, target_lang: t} for s, t in zip(batch[source_lang], batch[target_lang])
                    ]
                },
                batched=True,
                remove_columns=columns,
                desc=f"Nesting {source_lang}/{target_lang} columns into `translation`",
            )
        else:
            raise ValueError(
                f"The {split!r} split has columns {columns}; expected a `translation` column or the columns "
                f"{source_lang!r} and {target_lang!r}."
            )
    return DatasetDict(normalised)


def load_translation_dataset(
    source_lang: str = "en",
    target_lang: str = "de",
    data_dir: PathLike | None = None,
    train_file: PathLike | None = None,
    validation_file: PathLike | None = None,
    test_file: PathLike | None = None,
    dataset_name: str | None = None,
    dataset_config_name: str | None = None,
    split_names: Mapping[str, str] | None = None,
    cache_dir: PathLike | None = None,
) -> DatasetDict:
    """
    Loads a parallel corpus as a [`~datasets.DatasetDict`] with `"train"`, `"validation"` and `"test"` splits whose
    rows are `{"translation": {source_lang: ..., target_lang: ...}}`, the format of `run_translation.py`.

    The first source given wins, in this order:

    1. `train_file` / `validation_file` / `test_file`: jsonlines files with one `{"translation": {...}}` object per
       line (only the given splits are loaded);
    2. `data_dir`: a folder of `split.lang` text files, one sentence per line, where `split` is `train`,
       `val`/`valid`/`validation`/`dev` or `test`/`test_2016_flickr` (Multi30k's test set);
    3. `dataset_name`: a dataset on the Hugging Face Hub, e.g. `bentrevett/multi30k` (flat `en`/`de` columns) or
       `wmt16` with `dataset_config_name="de-en"` (already in the `translation` format);
    4. nothing: [`SHARED_DATA_DIR`] (`../shared/data/multi30k` from the working directory) if it exists, else
       (online) the Hub dataset [`HUB_DATASET`] (`bentrevett/multi30k`, en and de).

    Text is returned verbatim (no stripping or normalisation); that is the tokenizer's job.

    Args:
        source_lang (`str`, *optional*, defaults to `"en"`):
            Language code of the source side, also the file suffix in `data_dir`.
        target_lang (`str`, *optional*, defaults to `"de"`):
            Language code of the target side.
        data_dir (`str` or `os.PathLike`, *optional*):
            Folder of `split.lang` text files.
        train_file, validation_file, test_file (`str` or `os.PathLike`, *optional*):
            Jsonlines files, one per split.
        dataset_name (`str`, *optional*):
            Name of a Hub dataset, loaded with [`datasets.load_dataset`].
        dataset_config_name (`str`, *optional*):
            Configuration of `dataset_name`.
        split_names (`Mapping[str, str]`, *optional*):
            Overrides the file stem (in `data_dir`) or Hub split name read for a canonical split, e.g.
            `{"test": "test_2017_flickr"}`.
        cache_dir (`str` or `os.PathLike`, *optional*):
            Cache folder of 🤗 Datasets, for Hub datasets.

    Returns:
        [`~datasets.DatasetDict`]: the splits that were found.

    Raises:
        `FileNotFoundError`: if no data is found; the message says where it looked and which option to pass.
        `ValueError`: if the two sides of a split have different numbers of lines, rows lack a language, or a file
        is not UTF-8 or (jsonlines) has a line that is not such an object (the message names the file and the line).

    Each split's `info.description` says where it was read from. An empty file gives an empty split: see
    [`check_splits`] for refusing the ones a run needs.
    """
    if source_lang == target_lang:
        raise ValueError(f"source_lang and target_lang must differ, both are {source_lang!r}.")
    if split_names is not None and not set(split_names) <= set(SPLIT_ALIASES):
        raise ValueError(f"split_names keys must be among {list(SPLIT_ALIASES)}, got {list(split_names)}.")

    data_files = {
        split: str(path)
        for split, path in (("train", train_file), ("validation", validation_file), ("test", test_file))
        if path is not None
    }
    if data_files:
        return _load_jsonlines(data_files, source_lang, target_lang)
    if data_dir is not None:
        return _load_from_data_dir(Path(data_dir), source_lang, target_lang, split_names)
    if dataset_name is not None:
        dataset_dict = _rename_splits(
            datasets.load_dataset(dataset_name, dataset_config_name, cache_dir=cache_dir), split_names
        )
        dataset_dict = _to_translation_format(dataset_dict, source_lang, target_lang)
        return DatasetDict(
            {split: _with_origin(d, f"the {split} split of {dataset_name}") for split, d in dataset_dict.items()}
        )
    data_dir = default_data_dir()
    if data_dir is not None:
        return _load_from_data_dir(data_dir, source_lang, target_lang, split_names)
    looked_up = f"no --data_dir given, {str(SHARED_DATA_DIR)!r} (from {os.getcwd()}) does not exist"
    if _hub_offline():
        raise _no_data_error(f"{looked_up}, and the Hub is offline (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE)")
    logger.info("No local data: loading the Hub dataset %s.", HUB_DATASET)
    try:
        return load_translation_dataset(
            source_lang, target_lang, dataset_name=HUB_DATASET, split_names=split_names, cache_dir=cache_dir
        )
    except Exception as error:  # no network, or languages the Hub dataset lacks
        raise _no_data_error(f"{looked_up}, and the Hub dataset {HUB_DATASET} failed ({error})") from error


def _read_jsonlines(path: PathLike, source_lang: str, target_lang: str) -> Dataset:
    """The pairs of a JSON Lines file, one `{"translation": {source_lang: ..., target_lang: ...}}` object per line
    (blank lines skipped, other keys ignored), checked line by line: a mistake is named with the file and the line
    (counted from 1), where the json builder of 🤗 Datasets would fail later without either."""
    example = f'{{"translation": {{"{source_lang}": "...", "{target_lang}": "..."}}}}'
    hint = f"Each line must be one JSON object, e.g. {example} (a line cut short fails so too)."
    sources, targets = [], []
    for number, line in enumerate(read_lines(path), start=1):
        if not line.strip():
            continue
        where = f"{path}, line {number}"
        row = parse_json(line, str(path), hint, first_line=number)
        pair = row.get("translation") if isinstance(row, dict) else None
        if not isinstance(pair, dict):
            found = f"keys {sorted(row)}" if isinstance(row, dict) else f"a JSON {type(row).__name__}"
            raise ValueError(f"{where}: expected an object with a `translation` object, e.g. {example}; found {found}.")
        for lang in (source_lang, target_lang):
            if lang not in pair:
                raise ValueError(
                    f"{where}: the `translation` object has no {lang!r} entry (it has {sorted(pair)}). Add it, or set "
                    "--source_lang/--target_lang to the languages of the file."
                )
            if not isinstance(pair[lang], str):
                raise ValueError(
                    f"{where}: the {lang!r} entry is {json.dumps(pair[lang])}, not a string. Give the sentence as a "
                    "JSON string, or remove the line."
                )
        sources.append(pair[source_lang])
        targets.append(pair[target_lang])
    return _pairs_dataset(sources, targets, source_lang, target_lang, origin=str(path))


def _load_jsonlines(data_files: dict[str, str], source_lang: str, target_lang: str) -> DatasetDict:
    for path in data_files.values():
        if not Path(path).is_file():
            raise _no_data_error(f"the file {path!r}, which does not exist")
    # An empty file is an empty split, which `check_splits` reports when the split is used.
    return DatasetDict({split: _read_jsonlines(path, source_lang, target_lang) for split, path in data_files.items()})


def check_splits(dataset_dict: DatasetDict, needs: Mapping[str, str]) -> None:
    """Raise before any work is done if a split that will be used is missing or empty.

    Args:
        needs: split -> what uses it, named in the message, e.g. `{"validation": "--do_eval"}`.

    Raises:
        `ValueError`: naming the split, where it was read from and what needs it.
    """
    for split, user in needs.items():
        if split not in dataset_dict:
            raise ValueError(
                f"{user} needs a {split!r} split, but the data has none (only {sorted(dataset_dict) or 'nothing'}). "
                f"Add one (a `{SPLIT_ALIASES[split][0]}.<lang>` file pair in --data_dir, or --{split}_file), "
                f"or drop {user}."
            )
        if len(dataset_dict[split]) == 0:
            origin = dataset_dict[split].info.description or "the data"
            raise ValueError(
                f"The {split!r} split ({origin}) has no sentence pairs, but {user} needs it. Fill it, use another "
                f"file, or drop {user}."
            )


def select_max_samples(
    dataset_dict: DatasetDict,
    max_train_samples: int | None = None,
    max_eval_samples: int | None = None,
    max_predict_samples: int | None = None,
) -> DatasetDict:
    """
    Keeps the first `max_train_samples` rows of `"train"`, `max_eval_samples` of `"validation"` and
    `max_predict_samples` of `"test"` (for debugging or quicker runs, as in `run_translation.py`). `None` keeps a
    split whole; absent splits are ignored.
    """
    limits = {"train": max_train_samples, "validation": max_eval_samples, "test": max_predict_samples}
    selected = {}
    for split, dataset in dataset_dict.items():
        limit = limits.get(split)
        if limit is not None and limit < 0:
            raise ValueError(f"The maximum number of {split} samples must be >= 0 or None, got {limit}.")
        selected[split] = dataset if limit is None else dataset.select(range(min(limit, len(dataset))))
    return DatasetDict(selected)


def make_preprocess_function(
    tokenizer: PreTrainedTokenizerBase,
    source_lang: str,
    target_lang: str,
    max_source_length: int,
    max_target_length: int,
    source_prefix: str = "",
) -> Callable[[dict[str, list[Any]]], BatchEncoding]:
    """
    Returns a batched [`~datasets.Dataset.map`] function that tokenizes `{"translation": ...}` rows into
    `input_ids`, `attention_mask` and `labels`, as in `run_translation.py`.

    Sequences are truncated to `max_source_length` / `max_target_length` tokens (special tokens included) but not
    padded: [`DataCollatorForSeq2Seq`] pads each batch dynamically and masks label padding with -100.

    Args:
        tokenizer ([`PreTrainedTokenizerBase`]):
            Tokenizer for both sides, e.g. from [`~hf_supermask.tokenization.train_tokenizer`].
        source_lang (`str`), target_lang (`str`):
            Keys of the `translation` dicts.
        max_source_length (`int`), max_target_length (`int`):
            Maximum lengths of the tokenized inputs and labels.
        source_prefix (`str`, *optional*, defaults to `""`):
            Text prepended to every source, e.g. `"translate English to German: "` for T5.

    Example:

    ```python
    >>> preprocess = make_preprocess_function(tokenizer, "en", "de", 128, 128)
    >>> tokenized = dataset_dict.map(preprocess, batched=True, remove_columns=["translation"])
    ```
    """

    def preprocess_function(examples: dict[str, list[Any]]) -> BatchEncoding:
        sources = [source_prefix + pair[source_lang] for pair in examples["translation"]]
        targets = [pair[target_lang] for pair in examples["translation"]]
        model_inputs = tokenizer(sources, max_length=max_source_length, truncation=True)
        # Tokenized separately because sources and targets have their own maximum length.
        labels = tokenizer(text_target=targets, max_length=max_target_length, truncation=True)
        model_inputs["labels"] = labels["input_ids"]
        return model_inputs

    return preprocess_function


def length_bucketed_order(
    lengths: list[int], batch_size: int, examples: int, seed: int, batches_per_bucket: int = 50
) -> list[int]:
    """An order of training examples (indices into `lengths`, as many epochs as `examples` needs) in which every run of
    `batch_size` consecutive examples has similar lengths, and the batches come in random order.

    Each epoch is shuffled, cut into buckets of `batches_per_bucket` batches, each bucket sorted by length and cut
    into batches, and then every batch of the epoch is shuffled (fairseq-style bucketing). transformers'
    `group_by_length` sampler stops before that last shuffle: every bucket runs from its longest sentences to its
    shortest, and a model evaluated at a bucket boundary has just seen only short ones.
    """
    import torch

    generator = torch.Generator().manual_seed(seed)
    order: list[int] = []
    bucket = batch_size * batches_per_bucket
    while len(order) < examples:
        epoch = torch.randperm(len(lengths), generator=generator).tolist()
        batches = []
        for start in range(0, len(epoch), bucket):
            ordered = sorted(epoch[start : start + bucket], key=lambda i: lengths[i])
            batches += [ordered[i : i + batch_size] for i in range(0, len(ordered), batch_size)]
        for b in torch.randperm(len(batches), generator=generator).tolist():
            order += batches[b]
    return order[:examples]


class TokenBudgetBatchSampler(torch.utils.data.Sampler):
    """Batches of similar lengths, each at most `max_tokens` padded tokens (source plus target), in a new random order
    every epoch: fairseq's `--max-tokens` batching.

    The batches are cut once from the examples sorted by length (ties in random order, from `seed`), so an epoch has
    the same number of batches every time and a resumed run skips exactly what it saw; `set_epoch` (called by the
    Trainer) reshuffles only their order. Short sentences thus come many to a batch and long ones few, with little
    padding either way, and a model evaluated at any point has seen every length.

    Args:
        source_lengths, target_lengths (`list[int]`): tokens of each example's input and labels.
        max_tokens (`int`): budget of one batch: pairs x (longest source + longest target) in it.
        seed (`int`): seeds the tie order and every epoch's batch order.
    """

    def __init__(self, source_lengths: list[int], target_lengths: list[int], max_tokens: int, seed: int):
        if len(source_lengths) != len(target_lengths):
            raise ValueError("source_lengths and target_lengths must be as long as each other.")
        longest = max(s + t for s, t in zip(source_lengths, target_lengths))
        if max_tokens < longest:
            raise ValueError(
                f"--max_tokens_per_batch {max_tokens} is smaller than the longest training pair ({longest} tokens, "
                "source plus target): raise it, or lower --max_source_length/--max_target_length."
            )
        self.seed, self.epoch = seed, 0
        tie_order = torch.randperm(len(source_lengths), generator=torch.Generator().manual_seed(seed)).tolist()
        by_length = sorted(tie_order, key=lambda i: (target_lengths[i], source_lengths[i]))
        self.batches: list[list[int]] = []
        batch: list[int] = []
        longest_source = longest_target = 0
        for index in by_length:
            source, target = max(longest_source, source_lengths[index]), max(longest_target, target_lengths[index])
            if batch and (len(batch) + 1) * (source + target) > max_tokens:
                self.batches.append(batch)
                batch, source, target = [], source_lengths[index], target_lengths[index]
            batch.append(index)
            longest_source, longest_target = source, target
        if batch:
            self.batches.append(batch)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + 1 + self.epoch)
        for b in torch.randperm(len(self.batches), generator=generator).tolist():
            yield self.batches[b]
