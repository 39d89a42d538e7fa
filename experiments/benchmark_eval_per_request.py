# Copyright 2026 The hf_supermask Authors. Licensed under the Apache License, Version 2.0.
"""What `model.eval()` before every request costs: the same greedy request with and without `eval()` before it, for a
supermask and for its `export_dense()` MarianMTModel, interleaved (model order and eval order alternate), plus the two
parts of the supermask's cost timed on their own: `eval()` itself and the one content check per masked tensor that
the next `generate()` makes.

    python scripts/benchmark_eval_per_request.py --requests 24
    python scripts/benchmark_eval_per_request.py --requests 8 --config_overrides \\
        d_model=512,encoder_ffn_dim=1024,decoder_ffn_dim=1024,encoder_layers=6,decoder_layers=6

With `--config_overrides`, a fresh supermask of the shipped model's config with those fields changed (new masks: its
request times are not a trained model's, its `eval()` and content-check times are). Run it on a quiet machine.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from experiments.benchmark_models import _alternating
from experiments.measure import git_commit, machine_info


@dataclass
class EvalPerRequestArguments:
    model: str = field(
        default="hf_supermask/pretrained/supermask-multi30k-en-de", metadata={"help": "A supermask folder."}
    )
    config_overrides: str | None = field(
        default=None, metadata={"help": "Build a fresh supermask of the model's config with these fields changed."}
    )
    data_dir: str | None = field(default=None, metadata={"help": "Multi30k folder (default: ../shared/data/multi30k)."})
    requests: int = field(default=24, metadata={"help": "Requests per model and mode (medians)."})
    batch_size: int = field(default=32, metadata={"help": "Sentences per request."})
    new_tokens: int = field(default=32, metadata={"help": "Generated tokens per sentence (min = max)."})
    output_json: str | None = field(default=None, metadata={"help": "Write the results here."})


def _models(args: EvalPerRequestArguments):
    from transformers import AutoConfig, AutoModelForSeq2SeqLM, AutoTokenizer

    import hf_supermask  # noqa: F401  (registers the Auto classes)
    from hf_supermask import SupermaskForConditionalGeneration

    tokenizer = AutoTokenizer.from_pretrained(args.model)
    if args.config_overrides:  # a new model: the folder's config only
        config = AutoConfig.from_pretrained(args.model)
        config.update_from_string(args.config_overrides)
        config.weights_sha256 = config.masks_sha256 = config.forward_config_sha256 = None
        supermask = SupermaskForConditionalGeneration(config)
    else:
        supermask = AutoModelForSeq2SeqLM.from_pretrained(args.model)
    supermask.eval()
    return tokenizer, supermask, supermask.export_dense().eval()


def time_eval_and_content_check(supermask) -> tuple[float, float]:
    """Seconds of `eval()`, then of the check `generate()` makes once per call: each masked tensor's fold, whose
    content is checked once after `eval()` (and refolded if the scores changed)."""
    started = time.perf_counter()
    supermask.eval()
    evaluated = time.perf_counter()
    with torch.inference_mode(), supermask.random_weights.checked_folds(supermask.masked_modules.values()):
        pass
    return evaluated - started, time.perf_counter() - evaluated


def measure(args: EvalPerRequestArguments) -> dict[str, Any]:
    from hf_supermask.data import load_translation_dataset

    tokenizer, supermask, marian = _models(args)
    source = supermask.config.source_lang or "en"
    target = supermask.config.target_lang or "de"
    raw = load_translation_dataset(source, target, data_dir=args.data_dir)
    sentences = [pair[source] for pair in raw["test"][: args.batch_size]["translation"]]
    batch = tokenizer(sentences, return_tensors="pt", padding=True)
    generate = {"num_beams": 1, "max_new_tokens": args.new_tokens, "min_new_tokens": args.new_tokens}
    models = {"supermask": supermask, "marian": marian}

    def request(model, with_eval: bool) -> float:
        started = time.perf_counter()
        if with_eval:
            model.eval()
        with torch.inference_mode():
            model.generate(**batch, **generate)
        return time.perf_counter() - started

    for model in models.values():  # warm-up
        request(model, False)
    seconds = {(name, with_eval): [] for name in models for with_eval in (False, True)}
    for index in range(args.requests):
        for with_eval in (False, True) if index % 4 < 2 else (True, False):
            for name in _alternating(index):
                seconds[name, with_eval].append(request(models[name], with_eval))
    parts = {"eval_seconds": [], "content_check_seconds": []}
    for _ in range(args.requests):
        for key, value in zip(parts, time_eval_and_content_check(supermask)):
            parts[key].append(value)
    medians = {
        f"{name}_{'with' if e else 'without'}_eval_seconds": statistics.median(v) for (name, e), v in seconds.items()
    }
    for name in models:
        medians[f"{name}_eval_cost_seconds"] = (
            medians[f"{name}_with_eval_seconds"] - medians[f"{name}_without_eval_seconds"]
        )
    medians.update({key: statistics.median(values) for key, values in parts.items()})
    return {
        "settings": vars(args),
        "maskable_weights": supermask.num_maskable_weights(),
        "medians": medians,
        "runs": {f"{name}_{'with' if e else 'without'}_eval": v for (name, e), v in seconds.items()} | parts,
        "machine": machine_info(),
        "git_commit": git_commit(),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from transformers import HfArgumentParser

    (args,) = HfArgumentParser(EvalPerRequestArguments).parse_args_into_dataclasses(args=argv)
    results = measure(args)
    ms = {key: round(value * 1000, 2) for key, value in results["medians"].items()}
    print(f"{results['maskable_weights']:,} maskable weights; medians of {args.requests} requests (ms): {ms}")
    supermask_share = (
        results["medians"]["supermask_eval_cost_seconds"] / results["medians"]["supermask_without_eval_seconds"]
    )
    print(f"eval() before a request costs the supermask {supermask_share:.1%} of the request")
    if args.output_json:
        Path(args.output_json).write_text(json.dumps(results, indent=1) + "\n")
    return results
