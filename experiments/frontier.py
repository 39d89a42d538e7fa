# Copyright 2026 The hf_supermask Authors. Licensed under the Apache License, Version 2.0.
"""The compression frontier: test BLEU against stored bits per weight (`scripts/frontier.py`).

This module measures the dense model's reference points: the same trained MarianMTModel stored as float32, as float16
(weights rounded to float16 and computed in float32, so the figure is the storage's cost alone) and as CTranslate2
exports (float32, to separate what the conversion does from what int8 does, and int8), each translating
test_2016_flickr with the model's saved decoding settings. Bits per weight are the
stored file's bits over the model's parameters (the tied embedding counted once); the whole folder's bytes sit beside
them.

    python scripts/frontier.py references --dense_dir outputs/round4/dense \\
        --output_json benchmarks/frontier/dense_references.json
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from experiments.benchmark_deploy import saved_decoding
from experiments.measure import git_commit, machine_info


def _test_set(data_dir: str | None, source_lang: str, target_lang: str) -> tuple[list[str], list[str]]:
    from hf_supermask.data import load_translation_dataset

    pairs = load_translation_dataset(source_lang, target_lang, data_dir=data_dir)["test"]
    return [p["translation"][source_lang] for p in pairs], [p["translation"][target_lang] for p in pairs]


def _decoding(model_dir: Path) -> dict[str, Any]:
    from transformers import GenerationConfig

    return {"num_beams": GenerationConfig.from_pretrained(model_dir).num_beams or 5, **saved_decoding(model_dir)}


def measure_dense_references(
    dense_dir: str,
    data_dir: str | None = None,
    source_lang: str = "en",
    target_lang: str = "de",
    batch_size: int = 32,
    log=print,
) -> dict[str, Any]:
    import torch
    from transformers import AutoTokenizer, MarianMTModel, pipeline

    from hf_supermask.deploy import CTranslate2Translator
    from hf_supermask.export import export_ctranslate2_folder
    from hf_supermask.files import folder_bytes
    from hf_supermask.metrics import load_translation_metric

    dense_dir = Path(dense_dir)
    sources, references = _test_set(data_dir, source_lang, target_lang)
    decoding = _decoding(dense_dir)
    metric = load_translation_metric()
    model = MarianMTModel.from_pretrained(dense_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(dense_dir)
    parameters = sum(p.numel() for p in model.parameters())  # tied tensors once (`parameters()` deduplicates)

    def score(translations: list[str]) -> dict[str, float]:
        result = metric.compute(predictions=translations, references=references)
        return {"test_bleu": result["bleu"], "test_chrf": result["chrf"]}

    def pipeline_bleu(model) -> dict[str, float]:
        translator = pipeline("translation", model=model, tokenizer=tokenizer, device="cpu")
        with torch.inference_mode():
            outputs = translator(sources, batch_size=batch_size, max_length=None, **decoding)
        return score([o["translation_text"] for o in outputs])

    rows = []
    with tempfile.TemporaryDirectory() as work:
        for name, dtype in (("dense float32", torch.float32), ("dense float16", torch.float16)):
            log(f"{name}: translating {len(sources)} test sentences")
            stored = MarianMTModel.from_pretrained(dense_dir, dtype=dtype)
            folder = Path(work) / name.replace(" ", "_")
            stored.save_pretrained(folder)
            tokenizer.save_pretrained(folder)
            computing = stored.float().eval()  # float16 storage, float32 compute: the storage's cost alone
            weights_bytes = folder_bytes(folder, "*.safetensors")
            rows.append(
                {
                    "row": name,
                    **pipeline_bleu(computing),
                    "stored_bits_per_weight": 8 * weights_bytes / parameters,
                    "weights_file_bytes": weights_bytes,
                    "folder_bytes": folder_bytes(folder),
                }
            )
        for quantization in ("float32", "int8"):  # float32 too: what the conversion alone does to the scores
            name = f"dense CTranslate2 {quantization}"
            log(f"{name}: exporting and translating")
            exported = export_ctranslate2_folder(
                dense_dir, Path(work) / f"ct2-{quantization}", None if quantization == "float32" else quantization
            )
            translator = CTranslate2Translator(exported, threads=torch.get_num_threads())
            weights_bytes = folder_bytes(exported, "model.bin")
            rows.append(
                {
                    "row": name,
                    **score(translator(sources, batch_size=batch_size, **decoding)),
                    "stored_bits_per_weight": 8 * weights_bytes / parameters,
                    "weights_file_bytes": weights_bytes,
                    "folder_bytes": folder_bytes(exported),
                }
            )
    for row in rows:
        log(f"{row['row']}: test BLEU {row['test_bleu']:.2f}, {row['stored_bits_per_weight']:.2f} bits per weight")
    return {
        "dense_dir": str(dense_dir),
        "parameters": parameters,
        "decoding": decoding,
        "test_sentences": len(sources),
        "git_commit": git_commit(),
        "machine": machine_info(),
        "rows": rows,
    }


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    references = commands.add_parser("references", help="the dense model's float32, float16 and int8 points")
    references.add_argument("--dense_dir", required=True, help="a trained MarianMTModel folder (the study's dense row)")
    references.add_argument("--data_dir", help="Multi30k folder (default: ../shared/data/multi30k)")
    references.add_argument("--output_json", required=True)
    args = parser.parse_args(argv)
    results = measure_dense_references(args.dense_dir, data_dir=args.data_dir)
    Path(args.output_json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output_json).write_text(json.dumps(results, indent=2) + "\n")


__all__ = ["measure_dense_references"]
