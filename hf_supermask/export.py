# Copyright 2026 The hf_supermask Authors. Licensed under the Apache License, Version 2.0.
"""Fold a supermask checkpoint into a stock dense MarianMTModel folder (served by any Marian tooling, e.g. CTranslate2)."""

from __future__ import annotations

import os
from pathlib import Path

from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

from .modeling import SupermaskForConditionalGeneration


def export_dense_folder(checkpoint: str | os.PathLike, output_dir: str | os.PathLike, **load_kwargs) -> Path:
    """Load `checkpoint` (folder or Hub id), fold its masks into dense weights and save a `MarianMTModel` with the
    checkpoint's tokenizer to `output_dir`. The result loads with plain transformers (no hf_supermask code)."""
    model = AutoModelForSeq2SeqLM.from_pretrained(checkpoint, **load_kwargs)
    if not isinstance(model, SupermaskForConditionalGeneration):
        raise ValueError(f"{checkpoint} holds a {type(model).__name__}, not a supermask checkpoint; nothing to fold.")
    output_dir = Path(output_dir)
    model.export_dense().save_pretrained(output_dir)
    AutoTokenizer.from_pretrained(checkpoint, **load_kwargs).save_pretrained(output_dir)
    return output_dir
