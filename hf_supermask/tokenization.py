# Copyright 2026 The hf_supermask Authors. Licensed under the Apache License, Version 2.0.
"""
Joint source+target subword tokenizers trained with the 🤗 `tokenizers` library.

The tokenizers follow the opus-mt (Marian) vocabulary convention so that exported models convert cleanly to
CTranslate2 and behave like `Helsinki-NLP/opus-mt-*` checkpoints:

- id 0 is `</s>` (also the decoder start token of Marian models), id 1 is `<unk>`;
- `<pad>` is the *last* id, `vocab_size - 1`, and is part of the model vocabulary, so `tokenizer.vocab_size ==
  len(tokenizer) == vocab_size` exactly;
- every sequence (sources and `text_target` labels alike) ends with `</s>`, and nothing is prepended.

Text is NFKC-normalised with whitespace collapsed and split sentencepiece-style (a Metaspace `▁` marks word
starts), so decoding yields clean, correctly spaced text rather than byte-level artefacts.
"""

import json
from collections.abc import Iterable, Iterator

from datasets import DatasetDict
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast


EOS_TOKEN = "</s>"
UNK_TOKEN = "<unk>"
PAD_TOKEN = "<pad>"
# Order matters: the trainers give special tokens the first ids, in this order (</s> = 0, <unk> = 1).
# <pad> is deliberately not in this list; it is appended as the last id after training.
_LEADING_SPECIAL_TOKENS = [EOS_TOKEN, UNK_TOKEN]
_NUM_SPECIAL_TOKENS = len(_LEADING_SPECIAL_TOKENS) + 1

MODEL_TYPES = ("bpe", "unigram")


def _validate_arguments(vocab_size: int, model_type: str, model_max_length: int, min_frequency: int) -> None:
    if model_type not in MODEL_TYPES:
        raise ValueError(f"model_type must be one of {MODEL_TYPES}, got {model_type!r}.")
    if not isinstance(vocab_size, int) or isinstance(vocab_size, bool) or vocab_size <= _NUM_SPECIAL_TOKENS:
        raise ValueError(
            f"vocab_size must be an integer greater than the {_NUM_SPECIAL_TOKENS} special tokens "
            f"({EOS_TOKEN}, {UNK_TOKEN}, {PAD_TOKEN}), got {vocab_size!r}."
        )
    if not isinstance(model_max_length, int) or isinstance(model_max_length, bool) or model_max_length < 1:
        raise ValueError(f"model_max_length must be a positive integer, got {model_max_length!r}.")
    if not isinstance(min_frequency, int) or isinstance(min_frequency, bool) or min_frequency < 1:
        raise ValueError(f"min_frequency must be a positive integer, got {min_frequency!r}.")


def _build_backend(model_type: str) -> Tokenizer:
    """Returns an untrained `tokenizers.Tokenizer` with the normaliser, pre-tokenizer and decoder of both models."""
    model = models.BPE(unk_token=UNK_TOKEN) if model_type == "bpe" else models.Unigram()
    tokenizer = Tokenizer(model)
    # Like sentencepiece's `nmt_nfkc` + `remove_extra_whitespaces`: Multi30k contains non-breaking spaces, tabs,
    # doubled and trailing spaces, which must not become vocabulary entries or leak into detokenized output.
    tokenizer.normalizer = normalizers.Sequence(
        [normalizers.NFKC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Strip()]
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    return tokenizer


def _build_trainer(model_type: str, vocab_size: int, min_frequency: int) -> trainers.Trainer:
    # One slot is kept free for <pad>, appended after training.
    if model_type == "bpe":
        return trainers.BpeTrainer(
            vocab_size=vocab_size - 1,
            min_frequency=min_frequency,
            special_tokens=_LEADING_SPECIAL_TOKENS,
            show_progress=False,
        )
    # The unigram trainer has no frequency threshold: it prunes by likelihood instead.
    return trainers.UnigramTrainer(
        vocab_size=vocab_size - 1,
        special_tokens=_LEADING_SPECIAL_TOKENS,
        unk_token=UNK_TOKEN,
        show_progress=False,
    )


def _finalize_model_vocab(tokenizer: Tokenizer) -> Tokenizer:
    """
    Returns a copy of `tokenizer` whose *model* vocabulary ends with `<pad>` and, for unigram, has canonical ids.

    `Tokenizer.add_special_tokens` would also give `<pad>` the next free id, but only as an added token: it would then
    be missing from `tokenizer.vocab_size` (`with_added_tokens=False`), and a model sized from that number has one
    embedding row fewer than the exported vocabulary. Editing the serialised model puts it in both.
    """
    state = json.loads(tokenizer.to_str())
    model_state = state["model"]
    pad_id = tokenizer.get_vocab_size(with_added_tokens=True)
    if model_state["type"] == "BPE":
        model_state["vocab"][PAD_TOKEN] = pad_id
    else:
        # The unigram trainer returns the same pieces and segmentations on every run, but not the same ids: it orders
        # pieces by scores that vary in their last digits (parallel float sums) and gives the rarest characters score
        # penalties in hash-set order. Sorting the pieces by text makes the ids deterministic; the ids carry no
        # meaning for segmentation, which only uses the scores.
        num_leading = len(_LEADING_SPECIAL_TOKENS)
        leading, pieces = model_state["vocab"][:num_leading], model_state["vocab"][num_leading:]
        # Score 0.0 is what the trainer gives the other special tokens; added-token matching extracts "<pad>" before
        # the model ever segments text, so the score never influences segmentation.
        model_state["vocab"] = leading + sorted(pieces, key=lambda piece: piece[0]) + [[PAD_TOKEN, 0.0]]
    state["added_tokens"].append(
        {
            "id": pad_id,
            "content": PAD_TOKEN,
            "single_word": False,
            "lstrip": False,
            "rstrip": False,
            "normalized": False,
            "special": True,
        }
    )
    return Tokenizer.from_str(json.dumps(state))


def _check_vocabulary(tokenizer: Tokenizer, vocab_size: int) -> None:
    """Fails loudly if training did not produce the exact opus-mt layout, e.g. with a corpus too small for it."""
    trained_size = tokenizer.get_vocab_size(with_added_tokens=True)
    if trained_size != vocab_size:
        raise ValueError(
            f"The training texts only support a vocabulary of {trained_size} entries (special tokens included), "
            f"but vocab_size={vocab_size} was requested. Pass vocab_size={trained_size} or smaller (the training "
            "script's --tokenizer_vocab_size), or train on more text."
        )
    expected_ids = {EOS_TOKEN: 0, UNK_TOKEN: 1, PAD_TOKEN: vocab_size - 1}
    actual_ids = {token: tokenizer.token_to_id(token) for token in expected_ids}
    if actual_ids != expected_ids:
        raise ValueError(f"Special token ids {actual_ids} do not follow the opus-mt convention {expected_ids}.")


def train_tokenizer(
    texts: Iterable[str],
    vocab_size: int = 8000,
    model_type: str = "bpe",
    model_max_length: int = 512,
    min_frequency: int = 2,
) -> PreTrainedTokenizerFast:
    """
    Trains a joint subword tokenizer with the opus-mt (Marian) special-token layout.

    Args:
        texts (`Iterable[str]`):
            Training sentences, typically the source *and* target side of the training split, so that both
            languages share one vocabulary (and, possibly, tied embeddings).
        vocab_size (`int`, *optional*, defaults to 8000):
            Exact size of the final vocabulary, special tokens included: `len(tokenizer) == vocab_size`.
        model_type (`str`, *optional*, defaults to `"bpe"`):
            Either `"bpe"` or `"unigram"` (the sentencepiece default).
        model_max_length (`int`, *optional*, defaults to 512):
            Maximum number of tokens of a sequence, stored on the returned tokenizer.
        min_frequency (`int`, *optional*, defaults to 2):
            Minimum count of a pair for a BPE merge. Ignored by `"unigram"`.

    Returns:
        [`PreTrainedTokenizerFast`]: a tokenizer with `</s>` = 0, `<unk>` = 1, `<pad>` = `vocab_size - 1` that
        appends `</s>` to every sequence and can be saved with `save_pretrained` and reloaded with
        `AutoTokenizer.from_pretrained`.

    Raises:
        `ValueError`: if an argument is invalid, or if `texts` are too few to fill `vocab_size` entries.

    Example:

    ```python
    >>> tokenizer = train_tokenizer(sentences, vocab_size=8000)
    >>> tokenizer.decode(tokenizer("Ein Mann fährt Fahrrad.")["input_ids"], skip_special_tokens=True)
    'Ein Mann fährt Fahrrad.'
    ```
    """
    _validate_arguments(vocab_size, model_type, model_max_length, min_frequency)

    backend = _build_backend(model_type)
    backend.train_from_iterator(texts, trainer=_build_trainer(model_type, vocab_size, min_frequency))
    backend = _finalize_model_vocab(backend)
    _check_vocabulary(backend, vocab_size)

    # Marian appends </s> to inputs and labels and prepends nothing. The transformers wrapper keeps an existing
    # post-processor as long as `add_bos_token`/`add_eos_token` are not passed, also after a reload.
    backend.post_processor = processors.TemplateProcessing(
        single=f"$A {EOS_TOKEN}",
        pair=f"$A $B {EOS_TOKEN}",
        special_tokens=[(EOS_TOKEN, backend.token_to_id(EOS_TOKEN))],
    )

    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token=EOS_TOKEN,
        unk_token=UNK_TOKEN,
        pad_token=PAD_TOKEN,
        model_max_length=model_max_length,
        padding_side="right",
        model_input_names=["input_ids", "attention_mask"],
        # The Metaspace decoder already restores the original spacing; the legacy clean-up would turn e.g.
        # "the dog 's" into "the dog's", which is not what the reference says.
        clean_up_tokenization_spaces=False,
    )


def _iter_training_sentences(dataset_dict: DatasetDict, source_lang: str, target_lang: str) -> Iterator[str]:
    # Batched iteration avoids materialising the whole column while keeping a fixed, deterministic order.
    for batch in dataset_dict["train"].iter(batch_size=1000):
        for pair in batch["translation"]:
            yield pair[source_lang]
            yield pair[target_lang]


def train_tokenizer_on_dataset(
    dataset_dict: DatasetDict,
    source_lang: str = "en",
    target_lang: str = "de",
    vocab_size: int = 8000,
    model_type: str = "bpe",
    model_max_length: int = 512,
    min_frequency: int = 2,
) -> PreTrainedTokenizerFast:
    """
    Trains a joint tokenizer (see [`train_tokenizer`]) on both languages of the `"train"` split of `dataset_dict`, a
    [`~datasets.DatasetDict`] in the `{"translation": {source_lang: ..., target_lang: ...}}` format returned by
    [`~hf_supermask.data.load_translation_dataset`].
    """
    if "train" not in dataset_dict:
        raise ValueError(f"dataset_dict needs a 'train' split to train a tokenizer on, got {list(dataset_dict)}.")
    return train_tokenizer(
        _iter_training_sentences(dataset_dict, source_lang, target_lang),
        vocab_size=vocab_size,
        model_type=model_type,
        model_max_length=model_max_length,
        min_frequency=min_frequency,
    )
