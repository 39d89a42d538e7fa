# Copyright 2026 The hf_supermask Authors. Licensed under the Apache License, Version 2.0.
"""Fold a supermask checkpoint into a stock dense MarianMTModel folder (served by any Marian tooling), or straight
into a CTranslate2 model folder (the deploy path; `pip install hf_supermask[ctranslate2]`)."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

from transformers import AutoConfig, AutoModelForSeq2SeqLM, AutoTokenizer

from .files import check_model_location, check_output_folder, check_tokenizer_files, is_within, loading, staged_folder
from .modeling import SupermaskConfig, SupermaskForConditionalGeneration


def load_seq2seq_model(name: str | os.PathLike, **load_kwargs):
    """`AutoModelForSeq2SeqLM.from_pretrained(name)`, such that a supermask checkpoint's own refusal (masks of the
    wrong size, other weights, a corrupted mask file) is what the user reads.

    transformers itself refuses a tensor of the wrong size first, with "look at the above report"; supermask models
    refuse any such mismatch themselves, naming the tensor, so for them the mismatch is left to the model. Other
    models load as usual.
    """
    hub_kwargs = {k: v for k, v in load_kwargs.items() if k in ("revision", "cache_dir", "token", "trust_remote_code")}
    with loading(str(name)):
        config = AutoConfig.from_pretrained(name, **hub_kwargs)
        if config.model_type == SupermaskConfig.model_type:
            load_kwargs = {"ignore_mismatched_sizes": True, **load_kwargs}
        return AutoModelForSeq2SeqLM.from_pretrained(name, **load_kwargs)


def _check_export(checkpoint, output_dir, overwrite: bool) -> None:
    """Everything but the checkpoint's verification (loading it), checked before anything is written."""
    check_model_location(str(checkpoint), what="checkpoint")
    check_tokenizer_files(str(checkpoint), what="checkpoint")
    if Path(checkpoint).is_dir() and is_within(output_dir, checkpoint):
        raise ValueError(
            f"The output folder {output_dir} is the checkpoint {checkpoint} or inside it: the dense model would "
            "replace or sit among its masks. Choose a folder outside the checkpoint."
        )
    check_output_folder(output_dir, overwrite=overwrite, overwrite_flag="--overwrite", inputs=[checkpoint])


def _dense_model_and_tokenizer(checkpoint, accept_dense: bool = False, **load_kwargs):
    """The dense MarianMTModel of a supermask checkpoint (folded), or with `accept_dense`, of a Marian checkpoint as
    it is; and its tokenizer."""
    model = load_seq2seq_model(checkpoint, **load_kwargs)
    if isinstance(model, SupermaskForConditionalGeneration):
        model = model.export_dense()
    elif not accept_dense:
        raise ValueError(f"{checkpoint} holds a {type(model).__name__}, not a supermask checkpoint; nothing to fold.")
    return model, AutoTokenizer.from_pretrained(checkpoint, **load_kwargs)


def export_dense_folder(
    checkpoint: str | os.PathLike, output_dir: str | os.PathLike, overwrite: bool = False, **load_kwargs
) -> Path:
    """Load `checkpoint` (folder or Hub id), fold its masks into dense weights and save a `MarianMTModel` with the
    checkpoint's tokenizer to `output_dir`. The result loads with plain transformers (no hf_supermask code).

    `output_dir` must be new or empty, or `overwrite=True` replaces what it holds: only once the checkpoint has loaded
    (and so passed its verification) and the export is written, so that a failed export leaves it as it was. The
    checkpoint's own folder, or a folder inside it, is refused either way: the dense weights would replace or sit
    among the masks.
    """
    _check_export(checkpoint, output_dir, overwrite)
    dense, tokenizer = _dense_model_and_tokenizer(checkpoint, **load_kwargs)
    with staged_folder(output_dir) as staging:
        dense.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
    return Path(output_dir)


def export_ctranslate2_folder(
    checkpoint: str | os.PathLike,
    output_dir: str | os.PathLike,
    quantization: str | None = None,
    overwrite: bool = False,
    **load_kwargs,
) -> Path:
    """`export_dense_folder`, then CTranslate2's converter: a folder that `translate --backend ctranslate2` (and any
    CTranslate2 runtime) serves, with the tokenizer and generation settings next to the converted model.

    `quantization` is the converted weights' type (e.g. "int8"); None keeps float32. The same folder rules as
    `export_dense_folder` apply. A dense MarianMTModel checkpoint is converted as it is (the study's dense baseline
    deploys through the same path).
    """
    from .deploy import QUANTIZATIONS, require_ctranslate2

    ctranslate2 = require_ctranslate2()
    if quantization is not None and quantization not in QUANTIZATIONS:
        raise ValueError(f"--quantization must be one of {list(QUANTIZATIONS)}, got {quantization!r}.")
    _check_export(checkpoint, output_dir, overwrite)
    dense, tokenizer = _dense_model_and_tokenizer(checkpoint, accept_dense=True, **load_kwargs)
    start_row = dense.get_input_embeddings().weight[dense.config.decoder_start_token_id]
    loader = contextlib.nullcontext() if not start_row.any() else _marian_start_embedding_kept()
    with tempfile.TemporaryDirectory() as tmp, staged_folder(output_dir) as staging, loader:
        dense.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        # force: the staging folder exists already (the converter would rather create it itself).
        ctranslate2.converters.TransformersConverter(tmp).convert(str(staging), quantization=quantization, force=True)
        for name in os.listdir(tmp):
            if name.startswith("tokenizer") or name in ("special_tokens_map.json", "generation_config.json"):
                shutil.copyfile(Path(tmp) / name, staging / name)
    return Path(output_dir)


@contextlib.contextmanager
def _marian_start_embedding_kept():
    """CTranslate2's Marian converter, for a Marian whose decoder start row (`<pad>`) is not zero.

    The stock converter assumes opus-mt's zero `<pad>` embedding: it drops `<pad>` from the vocabulary and starts the
    decoder from a zero vector. A supermask's export has that zero row (the padding row is zeroed), but a Marian trained
    with tied embeddings learns a `<pad>` row through the output projection, and its first decoding step then starts
    elsewhere (the study's trained dense model: 34.11 BLEU in PyTorch, 30.82 converted). This loader keeps the row and
    starts from it, and gives `<pad>` an output bias of -1e9, as transformers bans it (`bad_words_ids`)."""
    import torch
    from ctranslate2.converters import transformers as converters

    class MarianStartEmbeddingLoader(converters.MarianMTLoader):
        def get_model_spec(self, model):
            model.config.normalize_before = False
            model.config.normalize_embedding = False
            spec = converters.BartLoader.get_model_spec(self, model)  # the whole vocabulary, `<pad>` included
            projection = spec.decoder.projection
            bias = projection.bias if projection.has_bias() else None
            bias = torch.zeros(model.config.vocab_size) if bias is None else torch.as_tensor(bias).clone()
            bias[model.config.pad_token_id] = -1e9
            projection.bias = bias
            return spec

        def set_config(self, config, model, tokenizer):
            super().set_config(config, model, tokenizer)
            config.decoder_start_token = tokenizer.convert_ids_to_tokens(model.config.decoder_start_token_id)

        def set_decoder(self, spec, decoder):
            converters.BartLoader.set_decoder(self, spec, decoder)  # start from the start token's own embedding

        def get_vocabulary(self, model, tokenizer):
            return converters.BartLoader.get_vocabulary(self, model, tokenizer)

    stock = converters._MODEL_LOADERS["MarianConfig"]
    converters._MODEL_LOADERS["MarianConfig"] = MarianStartEmbeddingLoader()
    try:
        yield
    finally:
        converters._MODEL_LOADERS["MarianConfig"] = stock
