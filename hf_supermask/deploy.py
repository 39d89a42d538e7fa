# Copyright 2026 The hf_supermask Authors. Licensed under the Apache License, Version 2.0.
"""Serving a found model with CTranslate2 (the deploy path; `export.export_ctranslate2_folder` writes the folder).

CTranslate2 is an optional extra (`pip install hf_supermask[ctranslate2]`): a C++ inference engine for Transformer
translation models, faster than PyTorch generation on CPUs, with int8 weights. Its converter takes the
`export_dense()` of a supermask model as it takes any Marian checkpoint.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


QUANTIZATIONS = ("int8", "int8_float32", "int16", "float16", "bfloat16", "float32")


def require_ctranslate2():
    try:
        import ctranslate2
    except ImportError:
        raise ImportError(
            "CTranslate2 is not installed. It is an optional extra: pip install 'hf_supermask[ctranslate2]' (or "
            "pip install ctranslate2)."
        ) from None
    return ctranslate2


def check_ctranslate2_folder(model_dir: str | os.PathLike) -> None:
    """`model_dir` must be a local folder holding a converted model (`model.bin`), e.g. not the supermask checkpoint
    it was exported from.

    Raises:
        `FileNotFoundError`: naming what the folder is instead, and the command that makes a CTranslate2 model.
    """
    folder = Path(model_dir).expanduser()
    if (folder / "model.bin").is_file():
        return
    try:
        model_type = json.loads((folder / "config.json").read_text()).get("model_type")
    except (OSError, ValueError, AttributeError):
        model_type = None
    if model_type == "supermask":
        raise FileNotFoundError(
            f"{model_dir} is a supermask checkpoint, not a CTranslate2 model (it has no model.bin): make one with "
            f"`hf-supermask export-ctranslate2 {model_dir} OUT` and translate OUT, or leave out --backend ctranslate2."
        )
    raise FileNotFoundError(
        f"{model_dir} is not a CTranslate2 model folder (it has no model.bin; --backend ctranslate2 reads local "
        "folders only): make one from a supermask checkpoint with `hf-supermask export-ctranslate2 CHECKPOINT OUT`."
    )


class CTranslate2Translator:
    """Translates with a CTranslate2 model folder written by `export_ctranslate2_folder`, like the PyTorch pipeline
    does (same tokenizer, same decoding settings from the folder's generation_config.json unless overridden)."""

    def __init__(self, model_dir: str | os.PathLike, compute_type: str = "default", threads: int = 0):
        ctranslate2 = require_ctranslate2()
        from transformers import AutoTokenizer, GenerationConfig

        check_ctranslate2_folder(model_dir)
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.translator = ctranslate2.Translator(
            str(model_dir), device="cpu", compute_type=compute_type, intra_threads=threads
        )
        try:
            saved = GenerationConfig.from_pretrained(model_dir)
            self.defaults = {
                "num_beams": saved.num_beams,
                "no_repeat_ngram_size": saved.no_repeat_ngram_size,
                "length_penalty": saved.length_penalty,
                "max_length": saved.max_length,
            }
        except OSError:
            self.defaults = {}

    def __call__(self, sentences: list[str], batch_size: int = 32, **settings: Any) -> list[str]:
        """Translations of `sentences`. Settings as for the pipeline: num_beams, no_repeat_ngram_size,
        length_penalty, max_new_tokens (or max_length)."""
        options = {**self.defaults, **settings}
        max_tokens = options.get("max_new_tokens") or options.get("max_length") or 256
        tokens = [self.tokenizer.convert_ids_to_tokens(self.tokenizer(s)["input_ids"]) for s in sentences]
        results = self.translator.translate_batch(
            tokens,
            max_batch_size=batch_size,
            beam_size=int(options.get("num_beams") or 1),
            no_repeat_ngram_size=int(options.get("no_repeat_ngram_size") or 0),
            length_penalty=float(options.get("length_penalty") or 1.0),
            max_decoding_length=int(max_tokens),
        )
        return [
            self.tokenizer.decode(self.tokenizer.convert_tokens_to_ids(r.hypotheses[0]), skip_special_tokens=True)
            for r in results
        ]
