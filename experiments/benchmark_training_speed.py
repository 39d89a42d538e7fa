# Copyright 2026 The hf_supermask Authors. Licensed under the Apache License, Version 2.0.
"""Training speed at the BLEU study's shape: target tokens per second and seconds per update of the dense
MarianMTModel and of the supermask, with random 64-pair batches and with token-budget batches
(`--max_tokens_per_batch`), each in a fresh process with one torch thread (the study's setting).

    python scripts/benchmark_training_speed.py --output_json benchmarks/training_speed.json \
        --output_markdown benchmarks/training_speed.md

Run it on a quiet machine: nothing else may compete for the cores. The time to a validation BLEU is the number of
updates the study's curves needed (deterministic on one machine) times the seconds per update measured here.
"""

from __future__ import annotations

import json
import statistics
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from experiments.measure import machine_info, run_worker_process


STUDY_SHAPE = (
    "d_model=256,encoder_layers=3,decoder_layers=3,encoder_ffn_dim=1024,decoder_ffn_dim=1024,"
    "encoder_attention_heads=4,decoder_attention_heads=4,max_position_embeddings=256"
)
BATCHINGS = {"random 64 pairs": [], "token budget 2048": ["--max_tokens_per_batch", "2048"]}
MODELS = {"dense": ["--model_type", "marian", "--learning_rate", "1e-3"], "supermask": ["--model_type", "supermask"]}


@dataclass
class TrainingSpeedArguments:
    tokenizer: str = field(
        default="hf_supermask/pretrained/supermask-multi30k-en-de",
        metadata={"help": "An 8k en-de tokenizer (default: the shipped model's, the study's)."},
    )
    data_dir: str | None = field(default=None, metadata={"help": "Multi30k folder (default: ../shared/data/multi30k)."})
    updates: int = field(default=60, metadata={"help": "Updates per run (the median update time is reported)."})
    repetitions: int = field(default=2, metadata={"help": "Runs per model and batching, alternating (medians)."})
    output_json: str | None = field(default=None, metadata={"help": "Write the results here."})
    output_markdown: str | None = field(default=None, metadata={"help": "Write the table here."})


def speed_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """One short training run: the median seconds per update (forward, backward, optimizer step) and the target
    tokens per second over all its updates (the training script's own count)."""
    from hf_supermask.training import StepTimer, parse_args, run_translation

    timer = StepTimer()
    with tempfile.TemporaryDirectory() as output_dir:
        flags = [
            "--output_dir",
            output_dir,
            "--tokenizer_name",
            spec["tokenizer"],
            "--config_overrides",
            STUDY_SHAPE,
            "--max_steps",
            str(spec["updates"]),
            "--do_train",
            "--save_strategy",
            "no",
            "--report_to",
            "none",
            "--disable_tqdm",
            "true",
            "--num_examples",
            "0",
            "--max_source_length",
            "64",
            "--max_target_length",
            "64",
            "--seed",
            "42",
            "--logging_steps",
            "1000",
            *spec["flags"],
        ]
        if spec.get("data_dir"):
            flags += ["--data_dir", spec["data_dir"]]
        results = run_translation(*parse_args(flags), callbacks=[timer])
    return {
        "seconds_per_update": statistics.median(timer.step_seconds),
        "target_tokens_per_second": results["train_target_tokens_per_second"],
    }


def run_training_speed(args: TrainingSpeedArguments) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {}
    for repetition in range(args.repetitions):
        order = [(m, b) for m in MODELS for b in BATCHINGS]
        for model, batching in order if repetition % 2 == 0 else reversed(order):
            spec = {
                "worker": "experiments.benchmark_training_speed:speed_worker",
                "model": model,
                "flags": MODELS[model] + BATCHINGS[batching],
                "tokenizer": args.tokenizer,
                "data_dir": args.data_dir,
                "updates": args.updates,
                "threads": 1,
            }
            runs.setdefault(f"{model} | {batching}", []).append(run_worker_process(spec))
    rows = {
        key: {
            name: statistics.median(r[name] for r in results) for name in results[0] if name != "process_total_seconds"
        }
        for key, results in runs.items()
    }
    return {"machine": machine_info(), "settings": vars(args), "rows": rows, "runs": runs}


def training_speed_markdown(results: dict[str, Any]) -> str:
    """The table: per model and batching, seconds per update and target tokens per second, and the supermask's time
    per target token against the dense model's under the same batching."""
    rows, machine = results["rows"], results["machine"]
    lines = [
        f"Machine: {machine['cpu_model']}, 1 torch thread per run; {results['settings']['updates']} updates per run, "
        f"medians of {results['settings']['repetitions']} runs (each a fresh process).",
        "",
        "| model | batching | s / update | target tokens / s | time per target token vs dense (same batching) |",
        "|---|---|---|---|---|",
    ]
    for key, row in rows.items():
        model, batching = key.split(" | ")
        dense = rows.get(f"dense | {batching}")
        ratio = (
            dense["target_tokens_per_second"] / row["target_tokens_per_second"] if dense and model != "dense" else None
        )
        lines.append(
            f"| {model} | {batching} | {row['seconds_per_update']:.3f} | {row['target_tokens_per_second']:.0f} | "
            f"{'' if ratio is None else f'{ratio:.2f}x'} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from transformers import HfArgumentParser

    (args,) = HfArgumentParser(TrainingSpeedArguments).parse_args_into_dataclasses(args=argv)
    results = run_training_speed(args)
    table = training_speed_markdown(results)
    print(table)
    if args.output_json:
        Path(args.output_json).write_text(json.dumps(results, indent=1))
    if args.output_markdown:
        Path(args.output_markdown).write_text(table + "\n")
    return results
