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


def benchmark_backends(
    model_dir: str | os.PathLike,
    work_dir: str | os.PathLike,
    data_dir: str | None = None,
    num_sentences: int | None = None,
    beams: tuple[int, ...] = (1, 5),
    repetitions: int = 2,
    threads: int = 1,
    batch_size: int = 32,
    log=print,
) -> dict[str, Any]:
    """Sentences per second and BLEU on test_2016_flickr of the PyTorch pipeline, CTranslate2 float32 and
    CTranslate2 int8, side by side in one run (the backends alternate, in reversed order every other repetition;
    medians of the repetitions). Decoding: the model's saved settings, with `num_beams` from `beams`."""
    import time

    import torch
    from transformers import GenerationConfig, pipeline

    import hf_supermask  # noqa: F401

    from .data import load_translation_dataset
    from .export import export_ctranslate2_folder
    from .metrics import load_translation_metric

    torch.set_num_threads(threads)
    pairs = load_translation_dataset("en", "de", data_dir=data_dir)["test"]
    if num_sentences:
        pairs = pairs.select(range(min(num_sentences, len(pairs))))
    sources = [p["translation"]["en"] for p in pairs]
    references = [p["translation"]["de"] for p in pairs]
    saved = GenerationConfig.from_pretrained(model_dir)
    settings = {
        "no_repeat_ngram_size": saved.no_repeat_ngram_size or 0,
        "length_penalty": saved.length_penalty or 1.0,
        "max_new_tokens": min(saved.max_length or 64, 64),
    }
    backends = {"pytorch": pipeline("translation", model=str(model_dir), device="cpu")}
    for quantization in ("float32", "int8"):
        folder = export_ctranslate2_folder(model_dir, f"{work_dir}/ct2-{quantization}", quantization, overwrite=True)
        backends[f"ctranslate2_{quantization}"] = CTranslate2Translator(folder, threads=threads)

    def translate(name: str, beams_: int) -> list[str]:
        if name == "pytorch":
            # max_length=None: the saved max_length would otherwise sit beside max_new_tokens (a warning per call)
            outputs = backends[name](sources, batch_size=batch_size, num_beams=beams_, max_length=None, **settings)
            return [o["translation_text"] for o in outputs]
        return backends[name](sources, batch_size=batch_size, num_beams=beams_, **settings)

    metric = load_translation_metric()
    results: dict[str, Any] = {
        "model": str(model_dir),
        "sentences": len(sources),
        "threads": threads,
        "settings": settings,
        "rows": {},
    }
    for beams_ in beams:
        seconds: dict[str, list[float]] = {name: [] for name in backends}
        for repetition in range(repetitions):
            order = list(backends) if repetition % 2 == 0 else list(reversed(backends))
            for name in order:
                started = time.perf_counter()
                translations = translate(name, beams_)
                seconds[name].append(time.perf_counter() - started)
                if repetition == 0:
                    scores = metric.compute(predictions=translations, references=references)
                    results["rows"][f"{name}_beam{beams_}"] = {"bleu": scores["bleu"], "chrf": scores["chrf"]}
        for name in backends:
            row = results["rows"][f"{name}_beam{beams_}"]
            row["seconds"] = sorted(seconds[name])[len(seconds[name]) // 2]
            row["sentences_per_second"] = len(sources) / row["seconds"]
            row["speedup"] = (
                row["sentences_per_second"] / results["rows"][f"pytorch_beam{beams_}"]["sentences_per_second"]
            )
            log(f"{name} beam {beams_}: {row['sentences_per_second']:.1f} sentences/s, BLEU {row['bleu']:.2f}")
    return results


def backends_table(results: dict[str, Any]) -> str:
    """The markdown table of `benchmark_backends`."""
    lines = [
        f"{results['sentences']} test_2016_flickr sentences, {results['threads']} thread(s), decoding "
        f"{results['settings']}:",
        "",
        "| backend | beams | sentences/s | × PyTorch | BLEU | chrF |",
        "|---|---|---|---|---|---|",
    ]
    for key, row in results["rows"].items():
        name, beams = key.rsplit("_beam", 1)
        lines.append(
            f"| {name} | {beams} | {row['sentences_per_second']:.1f} | {row['speedup']:.2f} | "
            f"{row['bleu']:.2f} | {row['chrf']:.2f} |"
        )
    return "\n".join(lines)
