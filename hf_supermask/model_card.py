# Copyright 2025 The hf_supermask Authors.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""Model cards (README.md with Hub metadata) for supermask translation checkpoints."""

import importlib.resources
import os
import re
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData
from huggingface_hub.repocard_data import eval_results_to_model_index, model_index_to_eval_results


__all__ = ["build_model_card", "save_model_card", "validate_model_card_metadata"]

# The template lives in the repository's model_cards/, which setup.cfg installs as the package data of
# `hf_supermask.model_cards` (one copy, found through importlib.resources in any kind of install).
_TEMPLATE_NAME = "supermask_translation.md"

_LANGUAGE_NAMES = {"en": "English", "de": "German", "fr": "French", "cs": "Czech"}
# First line of Multi30k test_2016_flickr.en, used as the usage example for English sources.
_EXAMPLE_INPUTS = {"en": "A man in an orange hat starring at something."}
_TEST_SPLIT = "test_2016_flickr"
_LANGUAGE_CODE = re.compile(r"^[a-z]{2,3}$")


def _template_path() -> Path:
    path = Path(str(importlib.resources.files("hf_supermask.model_cards") / _TEMPLATE_NAME))
    if not path.is_file():
        raise FileNotFoundError(f"Model card template not found at {path}; reinstall hf_supermask.")
    return path


def _human_bytes(num_bytes: int) -> str:
    value = float(num_bytes)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:,.0f} B" if unit == "B" else f"{value:,.2f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _signature_args(signature: str | None) -> dict[str, str] | None:
    # Kept in the model-index so that the score stays reproducible from the metadata alone.
    return {"signature": signature} if signature else None


def validate_model_card_metadata(card: ModelCard) -> dict[str, Any]:
    """
    Check a card's YAML metadata offline and return it as a dict.

    `ModelCard.validate` posts the card to the Hub's `/api/validate-yaml` endpoint and therefore needs the network. This
    performs the checks that `huggingface_hub` can do locally:

    - the card text round-trips: `ModelCard(str(card))` re-parses the YAML block (`yaml.safe_load`, the same block regex
      as the Hub) and rebuilds `ModelCardData`, which raises on a `model-index` that cannot be parsed;
    - the `model-index` converts back to `EvalResult`s with `model_index_to_eval_results` and again to the same
      `model-index` with `eval_results_to_model_index`;
    - fields the Hub indexes have the expected shape: `language` is a list of ISO 639-1/639-3 codes, `license`,
      `library_name` and `pipeline_tag` are strings, `tags` and `datasets` are lists of strings, and each
      `EvalResult` has a numeric `metric_value`.

    It cannot check values against the Hub's live lists (known licenses, pipeline tags, dataset ids).

    Args:
        card (`huggingface_hub.ModelCard`): the card to check.

    Returns:
        `dict`: the parsed metadata (`card.data.to_dict()` of the re-parsed card).

    Raises:
        `ValueError`: if a check fails.
    """
    reparsed = ModelCard(str(card), ignore_metadata_errors=False)
    metadata = reparsed.data.to_dict()

    languages = metadata.get("language")
    if isinstance(languages, str):
        languages = [languages]
    if not languages or not all(isinstance(code, str) and _LANGUAGE_CODE.match(code) for code in languages):
        raise ValueError(f"`language` must be a list of ISO 639 codes, got {metadata.get('language')!r}")
    for key in ("license", "library_name", "pipeline_tag"):
        if not isinstance(metadata.get(key), str):
            raise ValueError(f"`{key}` must be a string, got {metadata.get(key)!r}")
    for key in ("tags", "datasets"):
        value = metadata.get(key)
        if value is not None and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            raise ValueError(f"`{key}` must be a list of strings, got {value!r}")

    model_index = metadata.get("model-index")
    if model_index is not None:
        model_name, eval_results = model_index_to_eval_results(model_index)
        if eval_results_to_model_index(model_name, eval_results) != model_index:
            raise ValueError("`model-index` does not round-trip through huggingface_hub's EvalResult conversion.")
        for result in eval_results:
            if isinstance(result.metric_value, bool) or not isinstance(result.metric_value, (int, float)):
                raise ValueError(f"metric {result.metric_type!r} has a non-numeric value {result.metric_value!r}")
    return metadata


def build_model_card(
    *,
    model_name: str,
    output_dir_or_repo_id: str | os.PathLike,
    dataset_name: str = "multi30k",
    dataset_id: str = "bentrevett/multi30k",
    source_lang: str = "en",
    target_lang: str = "de",
    test_bleu: float | None = None,
    test_chrf: float | None = None,
    bleu_signature: str | None = None,
    hyperparameters: dict,
    checkpoint_bytes: int | None,
    dense_fp32_bytes: int | None,
    plot_filename: str | None,
    base_config: dict | None = None,
    bits_per_weight: float | None = None,
    license: str = "apache-2.0",
    chrf_signature: str | None = None,
    revision: str | None = None,
    **template_kwargs: Any,
) -> ModelCard:
    """
    Build the model card of a supermask translation checkpoint from `model_cards/supermask_translation.md`.

    The YAML metadata (a [`~huggingface_hub.ModelCardData`]) carries `language: [source, target]`, the license,
    `library_name: transformers`, `pipeline_tag: translation`, tags (`supermask`, `edge-popup`, `translation`,
    `hf_supermask`), the training dataset and, for each test score given, an `EvalResult` on the `test_2016_flickr`
    split (task `translation`, metric `bleu` / `chrf`), which `huggingface_hub` serializes as the `model-index`.

    The card is validated offline before being returned (see [`validate_model_card_metadata`]): the YAML parses back
    into `ModelCardData`, the `model-index` round-trips through `model_index_to_eval_results` /
    `eval_results_to_model_index`, and the indexed fields have the expected types. The Hub-side check
    (`ModelCard.validate`) needs the network and is left to `push_to_hub`.

    Args:
        model_name (`str`):
            Name of the model, used as the card title and as the `model-index` name.
        output_dir_or_repo_id (`str` or `os.PathLike`):
            Hub repo id (`"user/name"`) or local directory; shown in the usage examples.
        dataset_name (`str`, *optional*, defaults to `"multi30k"`):
            Human-readable dataset name.
        dataset_id (`str`, *optional*, defaults to `"bentrevett/multi30k"`):
            Hub dataset id, listed under `datasets` and used as the `model-index` dataset type.
        source_lang (`str`, *optional*, defaults to `"en"`) and target_lang (`str`, *optional*, defaults to `"de"`):
            ISO 639-1 codes of the translation direction.
        test_bleu (`float`, *optional*) and test_chrf (`float`, *optional*):
            sacreBLEU BLEU / chrF on `test_2016_flickr`; omitted from the metadata when `None`.
        bleu_signature (`str`, *optional*) and chrf_signature (`str`, *optional*):
            sacreBLEU signatures, shown in the card and stored as `metric_args` of the results.
        hyperparameters (`dict`):
            Training hyper-parameters, rendered as a table.
        checkpoint_bytes (`int`, *optional*) and dense_fp32_bytes (`int`, *optional*):
            Size of `model.safetensors` and of the same architecture stored as dense fp32, to report the saving.
        plot_filename (`str`, *optional*):
            File name of the training-curve PNG stored next to the README (embedded in the card), or `None`.
        base_config (`dict`, *optional*):
            Architecture settings to list (`architecture_summary(config)`: what defines the model, not every field
            of `config.json`); `weights_sha256` and `generator_version` are also shown in the checkpoint-format
            section.
        bits_per_weight (`float`, *optional*):
            Bits of `model.safetensors` per maskable weight.
        license (`str`, *optional*, defaults to `"apache-2.0"`):
            License identifier of the model.
        revision (`str`, *optional*):
            Commit to pin in the `trust_remote_code=True` example.
        template_kwargs:
            Extra variables for the Jinja template (override the computed ones).

    Returns:
        `huggingface_hub.ModelCard`
    """
    eval_results = _eval_results(
        source_lang,
        target_lang,
        dataset_name,
        dataset_id,
        {"bleu": (test_bleu, bleu_signature), "chrf": (test_chrf, chrf_signature)},
    )
    card_data = ModelCardData(
        language=[source_lang, target_lang],
        license=license,
        library_name="transformers",
        pipeline_tag="translation",
        tags=["supermask", "edge-popup", "translation", "hf_supermask"],
        datasets=[dataset_id],
        metrics=["bleu", "chrf"],
        eval_results=eval_results or None,
        # Without results, ModelCardData would dump `model_name` as a stray top-level key.
        model_name=model_name if eval_results else None,
    )
    base_config = dict(base_config) if base_config else None
    variables = {
        "model_name": model_name,
        "repo_id": str(output_dir_or_repo_id),
        "source_lang": source_lang,
        "target_lang": target_lang,
        "source_lang_name": _LANGUAGE_NAMES.get(source_lang, source_lang),
        "target_lang_name": _LANGUAGE_NAMES.get(target_lang, target_lang),
        "dataset_name": dataset_name,
        "dataset_id": dataset_id,
        "example_input": _EXAMPLE_INPUTS.get(source_lang, "..."),
        "hyperparameters": dict(hyperparameters or {}),
        "base_config": base_config,
        "weights_sha256": (base_config or {}).get("weights_sha256"),
        "generator_version": (base_config or {}).get("generator_version"),
        "test_bleu": f"{test_bleu:.2f}" if test_bleu is not None else None,
        "test_chrf": f"{test_chrf:.2f}" if test_chrf is not None else None,
        "bleu_signature": bleu_signature,
        "chrf_signature": chrf_signature,
        **_size_variables(checkpoint_bytes, dense_fp32_bytes, bits_per_weight),
        "mask_storage": MASK_STORAGE[(base_config or {}).get("mask_encoding", "packed")],
        "plot_filename": plot_filename,
        "revision": revision,
        "license": license,
        **template_kwargs,
    }
    card = ModelCard.from_template(card_data, template_path=str(_template_path()), **variables)
    validate_model_card_metadata(card)
    return card


def _eval_results(
    source_lang: str,
    target_lang: str,
    dataset_name: str,
    dataset_id: str,
    scores: dict[str, tuple[float | None, str | None]],
) -> list[EvalResult]:
    """One `EvalResult` per test score given (metric -> (value, sacreBLEU signature)), on the test split."""
    names = {"bleu": "BLEU", "chrf": "chrF"}
    return [
        EvalResult(
            task_type="translation",
            task_name=f"Translation {source_lang}-{target_lang}",
            # The model-index spec asks for the Hub dataset id as the dataset type; the split names the test set.
            dataset_type=dataset_id,
            dataset_name=f"{dataset_name} ({_TEST_SPLIT})",
            dataset_split=_TEST_SPLIT,
            metric_type=metric_type,
            metric_name=f"{names[metric_type]} ({_TEST_SPLIT}, sacreBLEU)",
            metric_value=round(float(value), 2),
            metric_args=_signature_args(signature),
        )
        for metric_type, (value, signature) in scores.items()
        if value is not None
    ]


# What defines a supermask model, in the order a reader needs it (the card lists these, not all of config.json).
ARCHITECTURE_FIELDS = (
    "d_model",
    "encoder_layers",
    "decoder_layers",
    "encoder_attention_heads",
    "decoder_attention_heads",
    "encoder_ffn_dim",
    "decoder_ffn_dim",
    "activation_function",
    "vocab_size",
    "max_position_embeddings",
    "share_layers",
    "density",
    "frozen_fraction",
    "coats",
    "coat_density_ratio",
    "mask_embedding",
    "mask_encoding",
    "weight_init",
    "attention_init",
    "scale_fan",
    "score_init",
    "embedding_scale",
    "output_scale",
    "embedding_source",
    "seed",
    "generator_version",
    "weights_sha256",
    "masks_sha256",
    "forward_config_sha256",
    "tokenizer_sha256",
    "embedding_sha256",
)


def architecture_summary(config) -> dict[str, Any]:
    """The config fields that define a supermask model (shape, sharing, density, init, seed, fingerprints, generator
    version), for the card's "Architecture" table; unset optional fields are left out."""
    values = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    return {name: values[name] for name in ARCHITECTURE_FIELDS if values.get(name) is not None}


# What `model.safetensors` holds, by `config.mask_encoding` (the card's "Checkpoint format").
MASK_STORAGE = {
    "packed": "**only `uint8` tensors of packed masks** (8 mask bits per byte)",
    "initial_xor_lzma": "**only `uint8` tensors of coded masks**: each mask XOR the top-k of the seed's initial "
    "scores, LZMA2-coded (lossless; `mask_encoding` in `config.json`)",
}


def refresh_checkpoint_format(
    card_text: str, mask_encoding: str, checkpoint_bytes: int, dense_fp32_bytes: int, bits_per_weight: float
) -> str:
    """A card's "Checkpoint format" lines brought up to a re-encoded `model.safetensors` (what it holds, its size, and
    its ratio to the dense model), the rest of the card unchanged."""
    sizes = _size_variables(checkpoint_bytes, dense_fp32_bytes, bits_per_weight)
    storage = "|".join(re.escape(text) for text in MASK_STORAGE.values())
    replacements = (
        (rf"(`model\.safetensors` holds )(?:{storage})", rf"\g<1>{MASK_STORAGE[mask_encoding]}"),
        (r"(Size of `model\.safetensors`: \*\*)[^*]+(\*\*)", rf"\g<1>{sizes['checkpoint_size']}\g<2>"),
        (r"\([0-9.]+ bits per(\s+)maskable weight\)", rf"({sizes['bits_per_weight']} bits per\g<1>maskable weight)"),
        (
            r"\(the mask checkpoint is [0-9.]+× smaller\)",
            f"(the mask checkpoint is {sizes['compression_ratio']} smaller)",
        ),
    )
    for pattern, replacement in replacements:
        card_text, count = re.subn(pattern, replacement, card_text)
        if count != 1:
            raise ValueError(
                f"The model card has no single line matching {pattern!r}: it was not written by this library."
            )
    return card_text


def _size_variables(
    checkpoint_bytes: int | None, dense_fp32_bytes: int | None, bits_per_weight: float | None = None
) -> dict[str, str | None]:
    """The checkpoint's size against the dense fp32 model's, as the card shows them."""
    return {
        "bits_per_weight": f"{bits_per_weight:.3f}" if bits_per_weight else None,
        "checkpoint_size": _human_bytes(checkpoint_bytes) if checkpoint_bytes else None,
        "dense_size": _human_bytes(dense_fp32_bytes) if dense_fp32_bytes else None,
        "compression_ratio": f"{dense_fp32_bytes / checkpoint_bytes:.1f}×"
        if checkpoint_bytes and dense_fp32_bytes
        else None,
    }


def save_model_card(card: ModelCard, output_dir: str | os.PathLike) -> Path:
    """
    Write `card` as `README.md` in `output_dir` (created if needed) and return the path.

    Args:
        card (`huggingface_hub.ModelCard`): the card, e.g. from [`build_model_card`].
        output_dir (`str` or `os.PathLike`): the checkpoint directory.

    Returns:
        `Path`: path of the written `README.md`.
    """
    path = Path(output_dir) / "README.md"
    card.save(path)
    return path
