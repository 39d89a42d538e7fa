# Copyright 2026 The hf_supermask Authors. Licensed under the Apache License, Version 2.0.
"""Benchmark a supermask model against a stock `MarianMTModel` of the same shape (the logic of `scripts/benchmark.py`).

For every shape, in ONE run, the two models are measured in back-to-back pairs, alternately (A B, then B A, ...):

1. bytes on disk: the weights file, the whole saved folder (model + tokenizer files), bits per maskable weight;
2. `from_pretrained` wall time in a fresh process (only the call is timed inside the subprocess; the import time and
   the parent-measured wall time of the whole process are reported too);
3. translation throughput through `pipeline("translation")` on real Multi30k test sentences, greedy and beam search,
   with `eval()` once and before each request; one fresh process per repetition, the models taking turns request by
   request;
4. `Seq2SeqTrainer` training step time and peak RSS, one fresh process per model and repetition;
5. throughput of the random-weight regeneration and the time of the weights' fingerprint (supermask only).

How a goal is judged, fixed before the runs it judges (`judge`): the ratio is the sum of the supermask's costs over
the sum of Marian's, over every back-to-back pair (requests, training steps, loads, peak RSS: what a user waits for
or holds in all), inverted for throughputs so that it stays supermask / marian. Its 95% interval is a percentile
bootstrap over repetitions (`bootstrap_ratio_interval`: the pairs of one process are resampled together, since they
share its luck). A goal is "met" when the whole interval meets it, "missed" when none of it does, and "not shown"
otherwise: on a shared 2-core host single repetitions of one cell spread by 10-20%, so a point estimate alone can
meet or miss a bound a few percent away by chance.

The Marian model is `export_dense()` of the supermask model: a stock `MarianMTModel` of the same shape that computes
the same function, so both models translate the same sentences into the same tokens (see `TRANSLATION_NOTE`).
"""

from __future__ import annotations

import json
import math
import os
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from experiments.measure import (
    BOOTSTRAP_RESAMPLES,
    INTERVAL_CONFIDENCE,
    bootstrap_ratio_interval,
    git_commit,
    machine_info,
    maskable_weights,
    median,
    peak_rss_mb,
    ratio_of_sums,
    reset_peak_rss,
    rss_mb,
    run_worker_process,
)
from hf_supermask.files import folder_bytes, read_lines


MODELS = ("supermask", "marian")

TRANSLATION_NOTE = (
    "Translation throughput is measured at a fixed generated length: min_new_tokens = max_new_tokens for both models, "
    "so every sentence gets exactly max_new_tokens new tokens (greedy and every beam), whatever the random or masked "
    "weights would otherwise do (stop after 2 tokens, or never). Sentences/s are then comparable 1:1 and "
    "tokens/s = sentences/s x max_new_tokens. Besides, the Marian model is export_dense() of the supermask model (same "
    "function), so the two would generate the same tokens anyway."
)


@dataclass
class BenchmarkArguments:
    """Flags of `scripts/benchmark.py`. Shape flags take one value per benchmarked shape (the lists are zipped)."""

    d_model: list[int] = field(default_factory=lambda: [512, 256], metadata={"help": "Model widths, one per shape."})
    ffn_dim: list[int] = field(default_factory=lambda: [1024, 1024], metadata={"help": "Feed-forward widths."})
    heads: list[int] = field(default_factory=lambda: [4, 4], metadata={"help": "Attention heads."})
    encoder_layers: list[int] = field(default_factory=lambda: [6, 3], metadata={"help": "Encoder layers."})
    decoder_layers: list[int] = field(default_factory=lambda: [6, 3], metadata={"help": "Decoder layers."})
    vocab_size: list[int] = field(default_factory=lambda: [8000, 8000], metadata={"help": "Vocabulary sizes."})
    density: float = field(default=0.5, metadata={"help": "Fraction of each weight tensor kept by its mask."})
    seed: int = field(default=0, metadata={"help": "Seed of the random weights (the config's `seed`)."})
    repetitions: int = field(
        default=5,
        metadata={
            "help": "Repetitions of from_pretrained (a fresh process per model) and of translation (a fresh "
            "process per repetition, every request of every beam size and mode, both models)."
        },
    )
    train_repetitions: int = field(default=5, metadata={"help": "Training runs (fresh processes) per model and shape."})
    data_dir: str | None = field(default=None, metadata={"help": "Multi30k folder (default: ../shared/data/multi30k)."})
    num_sentences: int = field(default=128, metadata={"help": "Translate the first N test_2016_flickr.en lines."})
    batch_size: int = field(default=32, metadata={"help": "Pipeline batch size."})
    num_beams: list[int] = field(default_factory=lambda: [1, 5], metadata={"help": "Beam sizes (1 = greedy)."})
    max_new_tokens: int = field(default=32, metadata={"help": "Tokens generated per sentence, same for both models."})
    fixed_length: bool = field(
        default=True, metadata={"help": "Also set min_new_tokens = max_new_tokens (see the note in the output)."}
    )
    train_batch_size: int = field(default=32, metadata={"help": "Sentence pairs per training step."})
    train_steps: int = field(default=20, metadata={"help": "Timed training steps (after the warm-up steps)."})
    warmup_steps: int = field(default=5, metadata={"help": "Untimed training steps first."})
    tokenizer_train_lines: int = field(
        default=10000, metadata={"help": "Train the tokenizer on the first N train.en + train.de lines."}
    )
    threads: int | None = field(default=None, metadata={"help": "torch threads (default: torch's own default)."})
    work_dir: str | None = field(default=None, metadata={"help": "Where the saved models go (default: a temp dir)."})
    output_json: str | None = field(default=None, metadata={"help": "Write the results as JSON here."})
    output_markdown: str | None = field(default=None, metadata={"help": "Write the markdown table here."})
    in_process: bool = field(
        default=False,
        metadata={
            "help": "Run the from_pretrained and training measurements in this process instead of fresh "
            "processes (fast, for tests; cold-start times and peak RSS are then only indicative)."
        },
    )
    smoke: bool = field(
        default=False, metadata={"help": "Tiny shapes, 1 repetition, few sentences and steps: a test of the benchmark."}
    )

    def __post_init__(self):
        if self.smoke:
            self.d_model, self.ffn_dim, self.heads = [32, 64], [64, 128], [4, 4]
            self.encoder_layers, self.decoder_layers, self.vocab_size = [2, 1], [2, 1], [320, 320]
            self.repetitions = self.train_repetitions = 1
            self.num_sentences, self.batch_size, self.max_new_tokens = 8, 4, 4
            self.train_batch_size, self.train_steps, self.warmup_steps = 8, 2, 1
            self.tokenizer_train_lines = 300
        lengths = {len(getattr(self, name)) for name in _SHAPE_FIELDS}
        if len(lengths) != 1:
            raise ValueError(f"The shape flags {_SHAPE_FIELDS} must all have the same number of values.")
        if min(self.repetitions, self.train_repetitions, self.num_sentences, self.train_steps) < 1:
            raise ValueError("repetitions, train_repetitions, num_sentences and train_steps must be >= 1.")

    def shapes(self) -> list[dict[str, int]]:
        return [dict(zip(_SHAPE_FIELDS, values)) for values in zip(*(getattr(self, name) for name in _SHAPE_FIELDS))]


_SHAPE_FIELDS = ("d_model", "ffn_dim", "heads", "encoder_layers", "decoder_layers", "vocab_size")


def shape_name(shape: dict[str, int]) -> str:
    return (
        f"d{shape['d_model']}-ffn{shape['ffn_dim']}-h{shape['heads']}-"
        f"{shape['encoder_layers']}+{shape['decoder_layers']}L-v{shape['vocab_size']}"
    )


# ----------------------------------------------------------------------------------------------------------------------
# Small helpers
# ----------------------------------------------------------------------------------------------------------------------


def _data_dir(args: BenchmarkArguments) -> Path:
    if args.data_dir:
        return Path(args.data_dir)
    from hf_supermask.data import default_data_dir

    found = default_data_dir()
    if found is None:
        raise FileNotFoundError(
            "Multi30k not found: pass --data_dir (a folder with train.en, train.de, test_2016_flickr.en)."
        )
    return Path(found)


def _alternating(repetition: int) -> tuple[str, str]:
    """A B, B A, A B, ...: neither model is always the first one after a pause or the other's run."""
    return MODELS if repetition % 2 == 0 else MODELS[::-1]


# ----------------------------------------------------------------------------------------------------------------------
# Building and saving the two models
# ----------------------------------------------------------------------------------------------------------------------


def train_benchmark_tokenizer(args: BenchmarkArguments, vocab_size: int):
    from hf_supermask.tokenization import train_tokenizer

    data_dir = _data_dir(args)
    texts = read_lines(data_dir / "train.en", args.tokenizer_train_lines) + read_lines(
        data_dir / "train.de", args.tokenizer_train_lines
    )
    tokenizer = train_tokenizer(texts, vocab_size=vocab_size)
    if len(tokenizer) != vocab_size:
        raise ValueError(f"The tokenizer has {len(tokenizer)} entries, the model {vocab_size}.")
    return tokenizer


def shape_config(args: BenchmarkArguments, shape: dict[str, int], tokenizer):
    """The supermask config of `shape`, made as the training script makes it."""
    from hf_supermask.training import ModelArguments, SupermaskArguments, build_config

    overrides = (
        f"d_model={shape['d_model']},encoder_ffn_dim={shape['ffn_dim']},decoder_ffn_dim={shape['ffn_dim']},"
        f"encoder_attention_heads={shape['heads']},decoder_attention_heads={shape['heads']},"
        f"encoder_layers={shape['encoder_layers']},decoder_layers={shape['decoder_layers']}"
    )
    return build_config(
        ModelArguments(config_overrides=f"{overrides},seed={args.seed}"),
        SupermaskArguments(density=args.density),
        tokenizer,
    )


def save_models(config, tokenizer, folder: Path) -> dict[str, Path]:
    """A supermask model (masks = its initial top-k) and its `export_dense()` MarianMTModel, each saved with the
    tokenizer. Returns the two folders."""
    from hf_supermask.modeling import SupermaskForConditionalGeneration

    supermask = SupermaskForConditionalGeneration(config).eval()
    supermask.record_tokenizer(tokenizer)  # as the training script does: loading then verifies the tokenizer too
    marian = supermask.export_dense()
    folders = {"supermask": folder / "supermask", "marian": folder / "marian"}
    for name, model in (("supermask", supermask), ("marian", marian)):
        model.save_pretrained(folders[name])
        tokenizer.save_pretrained(folders[name])
    return folders


# ----------------------------------------------------------------------------------------------------------------------
# Workers: what runs in a fresh process (or, with --in_process, here)
# ----------------------------------------------------------------------------------------------------------------------


def load_worker(spec: dict[str, Any]) -> dict[str, Any]:
    from transformers import AutoModelForSeq2SeqLM

    import hf_supermask  # noqa: F401  (registers the supermask Auto classes, as users do)

    start = time.perf_counter()
    model = AutoModelForSeq2SeqLM.from_pretrained(spec["folder"])
    seconds = time.perf_counter() - start
    expected = "SupermaskForConditionalGeneration" if spec["model"] == "supermask" else "MarianMTModel"
    if type(model).__name__ != expected:
        raise RuntimeError(f"{spec['folder']} loaded as {type(model).__name__}, expected {expected}.")
    return {"from_pretrained_seconds": seconds}


def train_worker(spec: dict[str, Any]) -> dict[str, Any]:
    import torch
    from datasets import Dataset
    from transformers import AutoTokenizer, Seq2SeqTrainingArguments

    from hf_supermask.modeling import SupermaskConfig
    from hf_supermask.training import ModelArguments, StepTimer, build_model, build_trainer

    tokenizer = AutoTokenizer.from_pretrained(spec["folder"])
    with open(spec["data_file"]) as handle:
        dataset = Dataset.from_list(json.load(handle))
    config = SupermaskConfig.from_pretrained(spec["folder"])
    if spec["in_process"]:
        reset_peak_rss()
    baseline = rss_mb()
    torch.manual_seed(0)
    start = time.perf_counter()
    model = build_model(ModelArguments(model_type=spec["model"]), config)
    build_seconds = time.perf_counter() - start
    timer = StepTimer()
    with tempfile.TemporaryDirectory() as output_dir:
        training_args = Seq2SeqTrainingArguments(
            output_dir=output_dir,
            per_device_train_batch_size=spec["batch_size"],
            max_steps=spec["warmup_steps"] + spec["train_steps"],
            learning_rate=5e-4,
            logging_strategy="no",
            save_strategy="no",
            eval_strategy="no",
            report_to="none",
            disable_tqdm=True,
            dataloader_num_workers=0,
            seed=0,
            use_cpu=True,
        )
        trainer = build_trainer(model, tokenizer, training_args, train_dataset=dataset, callbacks=[timer])
        start = time.perf_counter()
        trainer.train()
        train_seconds = time.perf_counter() - start
    timed = timer.step_seconds[spec["warmup_steps"] :]
    peak = peak_rss_mb()
    return {
        "model_build_seconds": build_seconds,
        "train_seconds": train_seconds,
        "step_seconds": timed,
        "median_step_seconds": median(timed),
        "peak_rss_mb": peak,
        "baseline_rss_mb": baseline,
        "peak_rss_above_baseline_mb": peak - baseline,
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
    }


# ----------------------------------------------------------------------------------------------------------------------
# The measurements
# ----------------------------------------------------------------------------------------------------------------------


def measure_sizes(folders: dict[str, Path], maskable: int) -> dict[str, Any]:
    weights = {name: folder_bytes(folder, "*.safetensors") for name, folder in folders.items()}
    whole = {name: folder_bytes(folder) for name, folder in folders.items()}
    return {
        "weights_file_bytes": weights,
        "folder_bytes": whole,
        "folder_files": {name: sorted(p.name for p in folder.iterdir()) for name, folder in folders.items()},
        "bits_per_maskable_weight": 8 * weights["supermask"] / maskable,
        "maskable_weights": maskable,
    }


def measure_from_pretrained(args: BenchmarkArguments, folders: dict[str, Path]) -> dict[str, dict[str, list[float]]]:
    runs: dict[str, dict[str, list[float]]] = {name: {} for name in MODELS}
    for repetition in range(args.repetitions):
        for name in _alternating(repetition):
            spec = {"worker": "experiments.benchmark_models:load_worker", "model": name, "folder": str(folders[name])}
            spec["threads"] = args.threads
            for key, value in run_worker_process(spec, args.in_process).items():
                runs[name].setdefault(key, []).append(value)
    return runs


def measure_translation(args: BenchmarkArguments, folders: dict[str, Path], sentences: list[str]) -> dict[str, Any]:
    """Every cell (beam size x `eval()` once / per request), one fresh process per repetition. Returns per cell the
    seconds of every request, by model and repetition."""
    results: dict[str, Any] = {}
    for repetition in range(args.repetitions):
        spec = {
            "worker": "experiments.benchmark_models:translate_worker",
            "folders": {name: str(folder) for name, folder in folders.items()},
            "sentences": sentences,
            "batch_size": args.batch_size,
            "num_beams": args.num_beams,
            "max_new_tokens": args.max_new_tokens,
            "fixed_length": args.fixed_length,
            "repetition": repetition,
            "threads": args.threads,
        }
        measured = run_worker_process(spec, args.in_process)
        for key, cell in measured["cells"].items():
            result = results.setdefault(
                key,
                {
                    "request_seconds": {name: [] for name in MODELS},
                    "mean_generated_tokens_first_batch": cell["mean_generated_tokens_first_batch"],
                    "eval_per_request": cell["eval_per_request"],
                },
            )
            for name in MODELS:
                result["request_seconds"][name].append(cell["request_seconds"][name])
    return results


def translate_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """One repetition of every translation cell: both pipelines built (in alternating order), each beam size warmed up
    on its first request, then every request timed, the two models taking turns."""
    import torch
    from transformers import pipeline

    import hf_supermask  # noqa: F401  (restores the "translation" task)

    sentences, batch_size = spec["sentences"], spec["batch_size"]
    translators = {
        name: pipeline("translation", model=spec["folders"][name], device="cpu")
        for name in _alternating(spec["repetition"])
    }
    cells: dict[str, Any] = {}
    for beams in spec["num_beams"]:
        generate = {"num_beams": beams, "max_new_tokens": spec["max_new_tokens"], "do_sample": False}
        if spec["fixed_length"]:
            generate["min_new_tokens"] = spec["max_new_tokens"]
        lengths = {}
        for name in _alternating(spec["repetition"]):  # warm-up (allocator, caches), and a check of the lengths
            with torch.inference_mode():
                out = translators[name](sentences[:batch_size], batch_size=batch_size, return_tensors=True, **generate)
            # Generated tokens: everything after the decoder start token.
            lengths[name] = statistics.mean(int(row["translation_token_ids"].numel()) - 1 for row in out)
        for eval_per_request in (False, True):
            key = f"beam{beams}_eval_per_request" if eval_per_request else f"beam{beams}"
            cells[key] = {
                "request_seconds": _timed_translation(
                    translators, sentences, batch_size, generate, eval_per_request, spec["repetition"]
                ),
                "mean_generated_tokens_first_batch": lengths,
                "eval_per_request": eval_per_request,
            }
    return {"cells": cells}


def _timed_translation(
    translators: dict[str, Any],
    sentences: list[str],
    batch_size: int,
    generate: dict,
    eval_per_request: bool,
    repetition: int,
) -> dict[str, list[float]]:
    """Seconds each model's pipeline takes for each request (one per batch of `sentences`): with `eval()` once (when
    the pipeline was built), or as a server does, with `model.eval()` before each request (a common pattern; on
    unchanged scores it must cost nothing). The two modes differ in that call only.

    The models alternate request by request (A B, B A, ...), so each pair of requests is timed seconds apart and the
    host's drift (runs of 128 sentences spread by 15-25% at d512 on a shared machine) falls on both models alike."""
    import torch

    requests = [sentences[i : i + batch_size] for i in range(0, len(sentences), batch_size)]
    seconds: dict[str, list[float]] = {name: [] for name in translators}
    for index, request in enumerate(requests):
        for name in _alternating(repetition + index):
            translator = translators[name]
            start = time.perf_counter()
            if eval_per_request:
                translator.model.eval()
            with torch.inference_mode():
                translator(request, batch_size=batch_size, **generate)
            seconds[name].append(time.perf_counter() - start)
    return seconds


def prepare_training_data(args: BenchmarkArguments, tokenizer, path: Path) -> int:
    """The first batch_size x steps real train.en/train.de pairs, tokenized, as JSON rows for the workers."""
    data_dir = _data_dir(args)
    count = args.train_batch_size * (args.train_steps + args.warmup_steps)
    sources, targets = read_lines(data_dir / "train.en", count), read_lines(data_dir / "train.de", count)
    inputs = tokenizer(sources, max_length=128, truncation=True)
    labels = tokenizer(text_target=targets, max_length=128, truncation=True)["input_ids"]
    rows = [
        {"input_ids": ids, "attention_mask": mask, "labels": label}
        for ids, mask, label in zip(inputs["input_ids"], inputs["attention_mask"], labels)
    ]
    path.write_text(json.dumps(rows))
    return len(rows)


def measure_training(args: BenchmarkArguments, folders: dict[str, Path], data_file: Path) -> dict[str, dict[str, list]]:
    runs: dict[str, dict[str, list]] = {name: {} for name in MODELS}
    for repetition in range(args.train_repetitions):
        for name in _alternating(repetition):
            spec = {
                "worker": "experiments.benchmark_models:train_worker",
                "model": name,
                "folder": str(
                    folders["supermask"]
                ),  # config + tokenizer (the Marian model is built from the same config)
                "data_file": str(data_file),
                "batch_size": args.train_batch_size,
                "train_steps": args.train_steps,
                "warmup_steps": args.warmup_steps,
                "threads": args.threads,
            }
            for key, value in run_worker_process(spec, args.in_process).items():
                runs[name].setdefault(key, []).append(value)
    return runs


def measure_regeneration(args: BenchmarkArguments, config) -> dict[str, Any]:
    """Throughput of `SupermaskRandomWeights.regenerate()` (float32 MB/s), of the generation alone, and the
    fingerprint."""
    from hf_supermask.modeling import SupermaskForConditionalGeneration
    from hf_supermask.modeling.random_weights import fingerprint

    weights = SupermaskForConditionalGeneration(config).random_weights
    megabytes = sum(buffer.numel() for buffer in weights.buffers()) * 4 / 1e6
    generate, digest, regenerate = [], [], []
    for _ in range(args.repetitions):
        start = time.perf_counter()
        generated = {name: weights.generate(name) for name in weights.shapes}
        generate.append(time.perf_counter() - start)
        start = time.perf_counter()
        fingerprint(generated.items())
        digest.append(time.perf_counter() - start)
        start = time.perf_counter()
        weights.regenerate()
        regenerate.append(time.perf_counter() - start)
    return {
        "random_weights_megabytes": megabytes,
        "generate_seconds": generate,
        "fingerprint_seconds": digest,
        "regenerate_seconds": regenerate,
    }


# ----------------------------------------------------------------------------------------------------------------------
# Putting it together
# ----------------------------------------------------------------------------------------------------------------------


def _metric(
    unit: str,
    supermask: list[float] | float,
    marian: float | None = None,
    goal: str | None = None,
    note: str | None = None,
) -> dict[str, Any]:
    """A row of numbers that are not timed in pairs: sizes (exact), or the supermask's own runs (their median)."""
    entry: dict[str, Any] = {"unit": unit, "supermask": median(supermask) if isinstance(supermask, list) else supermask}
    if isinstance(supermask, list):
        entry["supermask_runs"] = supermask
    if marian is not None:
        entry["marian"] = marian
        entry["ratio"] = entry["supermask"] / marian
    if goal is not None:
        value = entry["ratio"] if goal.startswith("ratio") else entry["supermask"]
        _add_verdict(entry, goal, value, value)
    if note:
        entry["note"] = note
    return entry


def _paired_metric(
    unit: str,
    clusters: list[list[tuple[float, float]]],
    goal: str | None = None,
    items_per_repetition: int | None = None,
    note: str | None = None,
) -> dict[str, Any]:
    """A row of costs measured in back-to-back (supermask, marian) pairs, one list of pairs per repetition: seconds
    or megabytes, shown as their mean, or with `items_per_repetition` (sentences) as a throughput, items per second
    over all repetitions. The ratio (supermask / marian) and its interval are `ratio_of_sums` and
    `bootstrap_ratio_interval` of the costs, inverted for a throughput; the goal is judged on the interval (`judge`)."""
    cost_ratio, interval = ratio_of_sums(clusters), bootstrap_ratio_interval(clusters)
    sizes = [len(cluster) for cluster in clusters]
    entry: dict[str, Any] = {"unit": unit, "pairs": sum(sizes), "repetitions": len(clusters)}
    for index, name in enumerate(MODELS):
        totals = [sum(pair[index] for pair in cluster) for cluster in clusters]  # per repetition
        if items_per_repetition:
            entry[name] = items_per_repetition * len(clusters) / sum(totals)
            entry[f"{name}_runs"] = [items_per_repetition / total for total in totals]
        else:
            entry[name] = sum(totals) / sum(sizes)
            entry[f"{name}_runs"] = [total / size for total, size in zip(totals, sizes)]
    entry["ratio"] = 1 / cost_ratio if items_per_repetition else cost_ratio
    entry["interval"] = None
    if interval is not None:
        low, high = interval
        entry["interval"] = [1 / high, 1 / low] if items_per_repetition else [low, high]
    if goal is not None:  # one repetition shows no spread: then its goal is not shown either way
        _add_verdict(entry, goal, *(entry["interval"] or (-math.inf, math.inf)))
    if note:
        entry["note"] = note
    return entry


def judge(goal: str, low: float, high: float) -> str:
    """The verdict on `goal` from an interval: "met" when every value of [low, high] meets it, "missed" when none
    does, else "not shown". Goals are written `ratio <= x`, `ratio >= x` or `value <= x` (value: the supermask
    number); x may be a fraction ("1/25")."""
    _, operator, bound = goal.split()
    numerator, _, denominator = bound.partition("/")
    limit = float(numerator) / float(denominator or 1)
    meets = [value <= limit if operator == "<=" else value >= limit for value in (low, high)]
    return "met" if all(meets) else "missed" if not any(meets) else "not shown"


def _add_verdict(entry: dict[str, Any], goal: str, low: float, high: float) -> None:
    entry["goal"] = goal
    entry["verdict"] = judge(goal, low, high)
    entry["met"] = entry["verdict"] == "met"


def benchmark_shape(
    args: BenchmarkArguments, shape: dict[str, int], tokenizer, sentences: list[str], folder: Path, log=print
) -> dict[str, Any]:
    """Both models at one shape: their measurements, and the metrics made of them (means, ratios, verdicts)."""
    name = shape_name(shape)
    config = shape_config(args, shape, tokenizer)
    measured = measure_shape(args, config, tokenizer, sentences, folder, log=lambda message: log(f"[{name}] {message}"))
    sizes = measured.pop("sizes")
    metrics = {
        **_size_metrics(sizes, shape),
        **_load_metrics(args, measured["from_pretrained"]),
        **_translation_metrics(args, measured["translation"], len(sentences)),
        **_training_metrics(args, measured["training"]),
        **_regeneration_metrics(measured["regeneration"]),
    }
    return {
        "shape": shape,
        "name": name,
        "config": {k: v for k, v in config.to_dict().items() if k not in ("weights_sha256", "masks_sha256")},
        "sizes": sizes,
        "metrics": metrics,
        "raw": measured,
    }


def measure_shape(args: BenchmarkArguments, config, tokenizer, sentences: list[str], folder: Path, log=print):
    """Every measurement of both models built from `config`, saved in `folder`."""
    in_process = "in process" if args.in_process else "fresh processes"
    log("building and saving both models")
    folders = save_models(config, tokenizer, folder)
    maskable = maskable_weights(config)
    sizes = measure_sizes(folders, maskable)
    log(f"from_pretrained ({in_process})")
    loads = measure_from_pretrained(args, folders)
    log("translation pipeline")
    translation = measure_translation(args, folders, sentences)
    log(f"training ({in_process})")
    data_file = folder / "train_rows.json"
    prepare_training_data(args, tokenizer, data_file)
    training = measure_training(args, folders, data_file)
    log("regeneration")
    regeneration = measure_regeneration(args, config)
    return {
        "sizes": sizes,
        "from_pretrained": loads,
        "translation": translation,
        "training": training,
        "regeneration": regeneration,
    }


def _size_metrics(sizes: dict[str, Any], shape: dict[str, int]) -> dict[str, Any]:
    is_iwslt_small = (
        shape["d_model"],
        shape["ffn_dim"],
        shape["heads"],
        shape["encoder_layers"],
        shape["decoder_layers"],
        shape["vocab_size"],
    ) == (512, 1024, 4, 6, 6, 8000)
    return {
        "weights_file_bytes": _metric(
            "bytes",
            float(sizes["weights_file_bytes"]["supermask"]),
            float(sizes["weights_file_bytes"]["marian"]),
            note="model.safetensors only: packed uint8 masks vs dense fp32 weights",
        ),
        "folder_bytes": _metric(
            "bytes",
            float(sizes["folder_bytes"]["supermask"]),
            float(sizes["folder_bytes"]["marian"]),
            goal="ratio <= 1/25" if is_iwslt_small else None,
            note="every file of the saved folder: weights, config, generation config, tokenizer (and, for supermask, "
            "the remote-code .py files it ships)",
        ),
        "bits_per_maskable_weight": _metric(
            "bits",
            sizes["bits_per_maskable_weight"],
            goal="value <= 1.01",
            note=f"8 x weights file bytes / {sizes['maskable_weights']} maskable weights (safetensors header included)",
        ),
    }


def _pairs(runs: dict[str, dict[str, list]], key: str) -> list[list[tuple[float, float]]]:
    """One (supermask, marian) pair per repetition of `key`, each its own cluster."""
    return [[pair] for pair in zip(runs["supermask"][key], runs["marian"][key])]


def _load_metrics(args: BenchmarkArguments, loads: dict[str, Any]) -> dict[str, Any]:
    metrics = {
        "from_pretrained_seconds": _paired_metric(
            "s",
            _pairs(loads, "from_pretrained_seconds"),
            goal="ratio <= 1.5",
            note="only the from_pretrained call, timed inside a fresh process (AutoModelForSeq2SeqLM after `import "
            "hf_supermask`)"
            if not args.in_process
            else "only the from_pretrained call, IN THIS PROCESS (--in_process: imports and caches already warm)",
        ),
    }
    if not args.in_process:
        metrics["load_process_total_seconds"] = _paired_metric(
            "s",
            _pairs(loads, "process_total_seconds"),
            note="wall time of the whole fresh process (interpreter start, imports, from_pretrained), from the parent",
        )
        metrics["load_process_import_seconds"] = _paired_metric(
            "s",
            _pairs(loads, "import_seconds"),
            note="imports inside the fresh process, before from_pretrained (torch, transformers, hf_supermask)",
        )
    return metrics


def _translation_metrics(args: BenchmarkArguments, translation: dict[str, Any], num_sentences: int) -> dict[str, Any]:
    metrics = {}
    for key, result in translation.items():
        beams, _, per_request = key.removeprefix("beam").partition("_")
        label = ("greedy" if beams == "1" else f"beam{beams}") + ("_eval_per_request" if per_request else "")
        how = f"one request per batch of {args.batch_size}, " + (
            "`model.eval()` before each" if per_request else "`eval()` once"
        )
        seconds = result["request_seconds"]
        metrics[f"translation_{label}_sentences_per_second"] = _paired_metric(
            "sentences/s",
            [list(zip(*repetition)) for repetition in zip(seconds["supermask"], seconds["marian"])],
            goal="ratio >= 0.95",
            items_per_repetition=num_sentences,
            note=f"pipeline('translation'), {num_sentences} Multi30k test sentences per repetition (a fresh process), "
            f"{how}, the models taking turns request by request, num_beams={beams}, max_new_tokens="
            f"{args.max_new_tokens}"
            + (" = min_new_tokens" if args.fixed_length else "")
            + f"; mean generated tokens (first batch) {result['mean_generated_tokens_first_batch']}",
        )
    return metrics


def _training_metrics(args: BenchmarkArguments, training: dict[str, Any]) -> dict[str, Any]:
    steps = [list(zip(s, m)) for s, m in zip(training["supermask"]["step_seconds"], training["marian"]["step_seconds"])]
    return {
        "train_step_seconds": _paired_metric(
            "s",
            steps,
            goal="ratio <= 1.3",
            note=f"Seq2SeqTrainer, batch {args.train_batch_size} real train pairs, {args.train_steps} steps after "
            f"{args.warmup_steps} warm-up steps per run, {args.train_repetitions} runs per model (fresh processes); "
            "mean step time, each step paired with the same step (the same batch) of the other model's run",
        ),
        "train_peak_rss_mb": _paired_metric(
            "MB",
            _pairs(training, "peak_rss_mb"),
            goal="ratio <= 1.2",
            note="peak RSS of the whole training process (VmHWM), imports and data included"
            if not args.in_process
            else "peak RSS (VmHWM) of this process while training (--in_process: reset before, so only indicative)",
        ),
        "train_peak_rss_above_baseline_mb": _paired_metric(
            "MB",
            _pairs(training, "peak_rss_above_baseline_mb"),
            note="peak RSS minus the RSS just before the model is built (model, gradients, optimizer, activations)",
        ),
    }


def _regeneration_metrics(regeneration: dict[str, Any]) -> dict[str, Any]:
    megabytes = regeneration["random_weights_megabytes"]
    return {
        "regeneration_megabytes_per_second": _metric(
            "MB/s",
            [megabytes / s for s in regeneration["generate_seconds"]],
            note=f"generate_weight() for every random tensor ({megabytes:.1f} MB of float32)",
        ),
        "regenerate_megabytes_per_second": _metric(
            "MB/s",
            [megabytes / s for s in regeneration["regenerate_seconds"]],
            note="SupermaskRandomWeights.regenerate(): generation + fingerprint + copy into the buffers",
        ),
        "fingerprint_seconds": _metric(
            "s", regeneration["fingerprint_seconds"], note="sha256 of the float32 random weights (weights_sha256)"
        ),
        "regenerate_seconds": _metric("s", regeneration["regenerate_seconds"]),
    }


def run_benchmark(args: BenchmarkArguments, command: str | None = None, log=print) -> dict[str, Any]:
    """Run every measurement for every shape; write `args.output_json` / `args.output_markdown` when set.

    `command` is recorded in the results (the script passes its exact command line)."""
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    started = time.perf_counter()
    results: dict[str, Any] = {
        "command": command,
        "git_commit": git_commit(),
        "machine": machine_info(),
        "settings": asdict(args),
        "translation_length_note": TRANSLATION_NOTE,
        "shapes": [],
    }
    sentences = read_lines(_data_dir(args) / "test_2016_flickr.en", args.num_sentences)
    tokenizers: dict[int, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.work_dir) if args.work_dir else Path(tmp)
        for shape in args.shapes():
            vocab = shape["vocab_size"]
            if vocab not in tokenizers:
                log(f"training a {vocab}-entry tokenizer on {args.tokenizer_train_lines} train.en + train.de lines")
                tokenizers[vocab] = train_benchmark_tokenizer(args, vocab)
            folder = root / shape_name(shape)
            folder.mkdir(parents=True, exist_ok=True)
            results["shapes"].append(benchmark_shape(args, shape, tokenizers[vocab], sentences, folder, log=log))
    results["machine"]["load_average_at_end"] = list(os.getloadavg())
    results["total_seconds"] = time.perf_counter() - started
    markdown = format_markdown(results)
    results["markdown"] = markdown
    if args.output_json:
        Path(args.output_json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output_json).write_text(json.dumps(results, indent=2) + "\n")
    if args.output_markdown:
        Path(args.output_markdown).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output_markdown).write_text(markdown)
    return results


def _format_number(value: float, unit: str) -> str:
    if unit == "bytes":
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:,.1f}"
    return f"{value:.4g}" if abs(value) < 1 else f"{value:.3f}"


def format_markdown(results: dict[str, Any]) -> str:
    machine = results["machine"]
    settings = results["settings"]
    lines = [
        "# Supermask vs MarianMTModel benchmark",
        "",
        f"Command: `{results.get('command')}` (commit {results.get('git_commit')})",
        "",
        f"Machine: {machine['cpu_model']}, {machine['cpus_available']} CPUs available, "
        f"{machine['torch_threads']} torch "
        f"threads, {machine['memory_gb']} GB; torch {machine['torch']}, transformers {machine['transformers']}, numpy "
        f"{machine['numpy']}, Python {machine['python']}. Load average at start {machine['load_average_at_start']}, "
        f"at end {machine.get('load_average_at_end')} (the machine is shared: timings are noisy).",
        "",
        f"{settings['repetitions']} repetitions of loading and translation, {settings['train_repetitions']} training "
        "runs per model; the two models are measured in back-to-back pairs, alternating (A B, B A, ...). Times and "
        "sizes are means over every pair (throughputs: sentences over all seconds). Ratio = supermask / marian, the "
        "ratio of the two sums over all pairs; interval: its "
        f"{INTERVAL_CONFIDENCE:.0%} percentile bootstrap over repetitions ({BOOTSTRAP_RESAMPLES} resamples, the pairs "
        "of one repetition together). A goal is met when the whole interval meets it, missed when none of it does, "
        "else not shown (the rule was fixed before the run). The Marian model is `export_dense()` of the supermask "
        "model: a stock `MarianMTModel` of the same shape computing the same function.",
        "",
        f"Translation lengths: {results['translation_length_note']}",
        "",
    ]
    for shape in results["shapes"]:
        lines += [
            f"## {shape['name']}",
            "",
            f"| metric | supermask | marian | ratio | {INTERVAL_CONFIDENCE:.0%} interval | goal | verdict |",
            "|---|---:|---:|---:|---|---|---|",
        ]
        for name, entry in shape["metrics"].items():
            unit = entry["unit"]
            marian = _format_number(entry["marian"], unit) if "marian" in entry else ""
            ratio = f"{entry['ratio']:.3f}" if "ratio" in entry else ""
            interval = "{:.3f}-{:.3f}".format(*entry["interval"]) if entry.get("interval") else ""
            verdict = entry.get("verdict", "")
            lines.append(
                f"| {name} ({unit}) | {_format_number(entry['supermask'], unit)} | {marian} | {ratio} | {interval} | "
                f"{entry.get('goal', '')} | {verdict if verdict == 'met' else f'**{verdict}**' if verdict else ''} |"
            )
        sizes = shape["sizes"]
        lines += [
            "",
            "Weights-only ratio "
            f"{sizes['weights_file_bytes']['supermask'] / sizes['weights_file_bytes']['marian']:.4f} "
            f"(1/{sizes['weights_file_bytes']['marian'] / sizes['weights_file_bytes']['supermask']:.1f}); whole-folder "
            f"ratio {sizes['folder_bytes']['supermask'] / sizes['folder_bytes']['marian']:.4f} "
            f"(1/{sizes['folder_bytes']['marian'] / sizes['folder_bytes']['supermask']:.1f}).",
            "",
        ]
        for name, entry in shape["metrics"].items():
            if entry.get("note"):
                lines.append(f"- `{name}`: {entry['note']}")
        lines.append("")
    return "\n".join(lines)


__all__ = ["BenchmarkArguments", "TRANSLATION_NOTE", "format_markdown", "judge", "run_benchmark"]
