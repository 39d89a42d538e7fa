# Copyright 2026 The hf_supermask Authors. Licensed under the Apache License, Version 2.0.
"""The deploy benchmark (`scripts/benchmark_deploy.py`): the PyTorch pipeline against CTranslate2 float32 and int8
exports of the same model on test_2016_flickr, sentences per second and BLEU side by side."""

from __future__ import annotations

import os
from typing import Any

from hf_supermask.deploy import CTranslate2Translator


def saved_decoding(model_dir) -> dict[str, Any]:
    """The decoding settings a model folder saved (`generation_config.json`), as both backends take them; the number
    of beams is the caller's."""
    from transformers import GenerationConfig

    saved = GenerationConfig.from_pretrained(model_dir)
    return {
        "no_repeat_ngram_size": saved.no_repeat_ngram_size or 0,
        "length_penalty": saved.length_penalty or 1.0,
        "max_new_tokens": min(saved.max_length or 64, 64),
    }


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
    from transformers import pipeline

    import hf_supermask  # noqa: F401
    from hf_supermask.data import load_translation_dataset
    from hf_supermask.export import export_ctranslate2_folder
    from hf_supermask.metrics import load_translation_metric

    torch.set_num_threads(threads)
    pairs = load_translation_dataset("en", "de", data_dir=data_dir)["test"]
    if num_sentences:
        pairs = pairs.select(range(min(num_sentences, len(pairs))))
    sources = [p["translation"]["en"] for p in pairs]
    references = [p["translation"]["de"] for p in pairs]
    settings = saved_decoding(model_dir)
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
