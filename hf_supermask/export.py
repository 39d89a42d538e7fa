# Copyright 2026 The hf_supermask Authors. Licensed under the Apache License, Version 2.0.
"""Fold a supermask checkpoint into a stock dense MarianMTModel folder (served by any Marian tooling, e.g. CTranslate2)."""

from __future__ import annotations

import os
from pathlib import Path

from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

from .files import check_model_location, is_within, loading, prepare_output_folder
from .modeling import SupermaskForConditionalGeneration


def export_dense_folder(
    checkpoint: str | os.PathLike, output_dir: str | os.PathLike, overwrite: bool = False, **load_kwargs
) -> Path:
    """Load `checkpoint` (folder or Hub id), fold its masks into dense weights and save a `MarianMTModel` with the
    checkpoint's tokenizer to `output_dir`. The result loads with plain transformers (no hf_supermask code).

    `output_dir` must be new or empty; `overwrite=True` empties it first. The checkpoint's own folder, or a folder
    inside it, is refused either way: the dense weights would replace or sit among the masks.
    """
    check_model_location(str(checkpoint), what="checkpoint")
    if Path(checkpoint).is_dir() and is_within(output_dir, checkpoint):
        raise ValueError(
            f"The output folder {output_dir} is the checkpoint {checkpoint} or inside it: the dense model would "
            "replace or sit among its masks. Choose a folder outside the checkpoint."
        )
    prepare_output_folder(output_dir, overwrite=overwrite, overwrite_flag="--overwrite", inputs=[checkpoint])
    with loading(str(checkpoint)):
        model = AutoModelForSeq2SeqLM.from_pretrained(checkpoint, **load_kwargs)
    if not isinstance(model, SupermaskForConditionalGeneration):
        raise ValueError(f"{checkpoint} holds a {type(model).__name__}, not a supermask checkpoint; nothing to fold.")
    output_dir = Path(output_dir)
    model.export_dense().save_pretrained(output_dir)
    AutoTokenizer.from_pretrained(checkpoint, **load_kwargs).save_pretrained(output_dir)
    return output_dir
