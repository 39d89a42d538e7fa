# Copyright 2026 The hf_supermask Authors. Licensed under the Apache License, Version 2.0.
"""Fold a supermask checkpoint into a stock dense MarianMTModel folder (served by any Marian tooling), or straight
into a CTranslate2 model folder (the deploy path; `pip install hf_supermask[ctranslate2]`)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

from .files import check_model_location, is_within, loading, prepare_output_folder
from .modeling import SupermaskForConditionalGeneration


def _check_export(checkpoint, output_dir, overwrite: bool) -> None:
    check_model_location(str(checkpoint), what="checkpoint")
    if Path(checkpoint).is_dir() and is_within(output_dir, checkpoint):
        raise ValueError(
            f"The output folder {output_dir} is the checkpoint {checkpoint} or inside it: the dense model would "
            "replace or sit among its masks. Choose a folder outside the checkpoint."
        )
    prepare_output_folder(output_dir, overwrite=overwrite, overwrite_flag="--overwrite", inputs=[checkpoint])


def _dense_model(checkpoint, **load_kwargs):
    with loading(str(checkpoint)):
        model = AutoModelForSeq2SeqLM.from_pretrained(checkpoint, **load_kwargs)
    if not isinstance(model, SupermaskForConditionalGeneration):
        raise ValueError(f"{checkpoint} holds a {type(model).__name__}, not a supermask checkpoint; nothing to fold.")
    return model.export_dense()


def export_dense_folder(
    checkpoint: str | os.PathLike, output_dir: str | os.PathLike, overwrite: bool = False, **load_kwargs
) -> Path:
    """Load `checkpoint` (folder or Hub id), fold its masks into dense weights and save a `MarianMTModel` with the
    checkpoint's tokenizer to `output_dir`. The result loads with plain transformers (no hf_supermask code).

    `output_dir` must be new or empty; `overwrite=True` empties it first. The checkpoint's own folder, or a folder
    inside it, is refused either way: the dense weights would replace or sit among the masks.
    """
    _check_export(checkpoint, output_dir, overwrite)
    dense = _dense_model(checkpoint, **load_kwargs)
    output_dir = Path(output_dir)
    dense.save_pretrained(output_dir)
    AutoTokenizer.from_pretrained(checkpoint, **load_kwargs).save_pretrained(output_dir)
    return output_dir


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
    `export_dense_folder` apply.
    """
    from .deploy import QUANTIZATIONS, require_ctranslate2

    ctranslate2 = require_ctranslate2()
    if quantization is not None and quantization not in QUANTIZATIONS:
        raise ValueError(f"--quantization must be one of {list(QUANTIZATIONS)}, got {quantization!r}.")
    _check_export(checkpoint, output_dir, overwrite)
    dense = _dense_model(checkpoint, **load_kwargs)
    output_dir = Path(output_dir)
    with tempfile.TemporaryDirectory() as tmp:
        dense.save_pretrained(tmp)
        AutoTokenizer.from_pretrained(checkpoint, **load_kwargs).save_pretrained(tmp)
        # The folder was checked (new, empty or emptied) above; the converter wants to create it itself.
        ctranslate2.converters.TransformersConverter(tmp).convert(
            str(output_dir), quantization=quantization, force=True
        )
        for name in os.listdir(tmp):
            if name.startswith("tokenizer") or name in ("special_tokens_map.json", "generation_config.json"):
                shutil.copyfile(Path(tmp) / name, output_dir / name)
    return output_dir
