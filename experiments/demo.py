# Copyright 2026 The hf_supermask Authors. Licensed under the Apache License, Version 2.0.
"""`make demo`: both halves of the product in about ten minutes on two CPU cores (measured: README).

1. **Using found masks**: the mask-only model shipped with the package (`SHIPPED_MODEL`, found by the BLEU study;
   its card says how) is loaded through `pipeline("translation")`, translates all of test_2016_flickr, and is scored
   with sacreBLEU; a few translations are printed.
2. **Finding masks**: a fresh supermask of the same shape is trained for a few minutes with `Seq2SeqTrainer` (a
   progress bar; validation BLEU printed at every evaluation, as it climbs).

The closing summary puts the figures side by side: BLEU, bytes on disk against the dense model of the same shape,
load time, sentences per second.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback

from hf_supermask.pretrained import SHIPPED_MODEL


# The dense MarianMTModel row of the BLEU study that found the shipped model (round 4: same shape, data and batching,
# both trained until validation BLEU stopped improving); in a checkout of the repository.
DENSE_REFERENCE = Path(__file__).resolve().parents[1] / "benchmarks" / "bleu_study" / "round4" / "dense.json"
# The shipped model's batching (its card's recipe): length-bucketed batches of at most this many tokens.
SHIPPED_MAX_TOKENS_PER_BATCH = 2048
# About nine minutes of training on two cores (8.8 measured: docs/usage.md).
TRAIN_STEPS, EVAL_STEPS = 900, 300


@dataclass
class DemoArguments:
    model: str = field(default=str(SHIPPED_MODEL), metadata={"help": "The found model to use (folder or Hub id)."})
    data_dir: str | None = field(default=None, metadata={"help": "Multi30k folder (default: ../shared/data/multi30k)."})
    num_examples: int = field(default=4, metadata={"help": "Test sentences printed with their translations."})
    max_test_samples: int | None = field(default=None, metadata={"help": "Test sentences scored (default: all 1000)."})
    train_steps: int = field(default=TRAIN_STEPS, metadata={"help": "Updates of the training half (0 skips it)."})
    eval_steps: int = field(default=EVAL_STEPS, metadata={"help": "Validation BLEU every N updates."})
    max_tokens_per_batch: int = field(
        default=SHIPPED_MAX_TOKENS_PER_BATCH,
        metadata={"help": "Token budget of a training batch (the shipped model's recipe)."},
    )
    output_dir: str = field(default="outputs/demo", metadata={"help": "Where the trained model goes (not committed)."})
    threads: int = field(default=2, metadata={"help": "torch threads."})
    dense_reference: str | None = field(
        default=str(DENSE_REFERENCE) if DENSE_REFERENCE.exists() else None,
        metadata={
            "help": "A BLEU-study row JSON of the dense model to compare with (default: the study's, if present)."
        },
    )


class PrintValidationBleu(TrainerCallback):
    """Prints validation BLEU at every evaluation, next to the progress bar."""

    def __init__(self):
        self.curve: list[tuple[int, float]] = []

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if metrics and "eval_bleu" in metrics and (not self.curve or self.curve[-1][0] != state.global_step):
            # (the evaluation after training repeats the last update's when it falls on an eval step)
            self.curve.append((state.global_step, metrics["eval_bleu"]))
            print(
                f"\n  update {state.global_step:4d}: validation BLEU {metrics['eval_bleu']:.2f} (greedy, "
                f"{args.eval_steps and 'every ' + str(args.eval_steps) + ' updates'})",
                flush=True,
            )


def use_found_masks(args: DemoArguments) -> dict[str, Any]:
    """Load the found model through the pipeline, translate and score the test set, report its size."""
    from transformers import pipeline

    from experiments.bleu_study import translate_and_score
    from hf_supermask.data import load_translation_dataset, select_max_samples
    from hf_supermask.files import folder_bytes
    from hf_supermask.metrics import load_translation_metric
    from hf_supermask.training import dense_fp32_weights_bytes

    raw = select_max_samples(
        load_translation_dataset("en", "de", data_dir=args.data_dir), None, None, args.max_test_samples
    )
    started = time.perf_counter()
    translator = pipeline("translation", model=args.model, device="cpu")
    load_seconds = time.perf_counter() - started
    model = translator.model
    decoding = {
        k: v
        for k, v in model.generation_config.to_diff_dict().items()
        if k in ("num_beams", "no_repeat_ngram_size", "length_penalty")
    }
    print(
        f"Loaded {args.model} in {load_seconds:.2f} s: seed {model.config.seed}, density {model.config.density}, "
        f"decoding {decoding}"
    )
    started = time.perf_counter()
    scores = translate_and_score(translator, raw["test"], decoding.get("num_beams", 1), {}, load_translation_metric())
    translate_seconds = time.perf_counter() - started
    examples = raw["test"].select(range(min(args.num_examples, len(raw["test"]))))["translation"]
    for example, output in zip(examples, translator([e["en"] for e in examples])):
        print(
            f"\n  source:      {example['en']}\n  reference:   {example['de']}\n  translation: "
            f"{output['translation_text']}"
        )
    folder = Path(args.model)
    return {
        "test_bleu": scores["bleu"],
        "test_chrf": scores["chrf"],
        "test_sentences": len(raw["test"]),
        "bleu_signature": scores["bleu_signature"],
        "load_seconds": load_seconds,
        "sentences_per_second": len(raw["test"]) / translate_seconds,
        "weights_bytes": folder_bytes(folder, "*.safetensors") if folder.is_dir() else None,
        "dense_fp32_weights_bytes": dense_fp32_weights_bytes(model),
        "decoding": decoding,
    }


# Written into the demo's output folder: a later demo may replace a folder that holds it, and no other.
DEMO_MARKER = ".written-by-hf-supermask-demo"


def claim_output_dir(output_dir: Path) -> bool:
    """Whether the training run must overwrite `output_dir`: only when an earlier demo wrote it. A non-empty folder
    without the demo's marker is the user's, and is refused before anything is written."""
    if not output_dir.exists() or not any(output_dir.iterdir()):
        return False
    if not (output_dir / DEMO_MARKER).is_file():
        raise SystemExit(
            f"--output_dir {output_dir} is not empty and was not written by an earlier demo (no {DEMO_MARKER} in "
            "it): the demo replaces only its own output. Pass an empty or new --output_dir."
        )
    return True


def find_masks(args: DemoArguments, shipped_config, overwrite: bool) -> dict[str, Any]:
    """Train a fresh supermask of the shipped model's shape and recipe for a few minutes."""
    from hf_supermask.model_card import architecture_summary
    from hf_supermask.training import parse_args, run_translation

    # The shipped model's defining fields but its identity (seed, fingerprints, embedding source): same shape, sharing,
    # density and initialisation, a new draw.
    identity = {
        "vocab_size",
        "seed",
        "generator_version",
        "weights_sha256",
        "masks_sha256",
        "forward_config_sha256",
        "tokenizer_sha256",
        "embedding_sha256",
        "embedding_source",
    }
    shape = {k: v for k, v in architecture_summary(shipped_config).items() if k not in identity}
    shape["dropout"] = shipped_config.dropout  # a training setting of its recipe, kept in its config
    flags = [
        "--output_dir",
        args.output_dir,
        *(["--overwrite_output_dir"] if overwrite else []),
        "--model_type",
        "supermask",
        "--tokenizer_name",
        args.model,
        "--config_overrides",
        ",".join(f"{k}={v}" for k, v in shape.items()),
        "--max_steps",
        str(args.train_steps),
        "--max_tokens_per_batch",
        str(args.max_tokens_per_batch),  # the rest of the recipe: the training script's defaults
        "--do_train",
        "--do_eval",
        "--predict_with_generate",
        "--eval_strategy",
        "steps",
        "--eval_steps",
        str(args.eval_steps),
        "--save_strategy",
        "no",
        "--logging_steps",
        str(args.eval_steps),
        "--max_eval_samples",
        "200",
        "--max_source_length",
        "64",
        "--max_target_length",
        "64",
        "--seed",
        "42",
        "--report_to",
        "none",
        "--num_examples",
        "0",
        "--num_beams",
        "1",
    ]
    if args.data_dir:
        flags += ["--data_dir", args.data_dir]
    printer = PrintValidationBleu()
    started = time.perf_counter()
    results = run_translation(*parse_args(flags), callbacks=[printer])
    (Path(args.output_dir) / DEMO_MARKER).write_text(
        "This folder is the output of scripts/demo.py; a later demo replaces it.\n"
    )
    return {
        "curve": printer.curve,
        "train_seconds": time.perf_counter() - started,
        "weights_bytes": results.get("checkpoint_weights_bytes"),
    }


def format_summary(used: dict[str, Any], found: dict[str, Any] | None) -> str:
    mib = lambda n: f"{n / 2**20:.2f} MiB"  # noqa: E731
    lines = [
        "",
        "=" * 78,
        "Using found masks (the shipped model, test_2016_flickr)",
        f"  test BLEU {used['test_bleu']:.2f}  chrF {used['test_chrf']:.2f}  on {used['test_sentences']} "
        f"sentences  ({used['bleu_signature']})",
    ]
    if used["weights_bytes"]:
        lines.append(
            f"  weights file {mib(used['weights_bytes'])} vs {mib(used['dense_fp32_weights_bytes'])} for the "
            f"dense fp32 model of the same shape ({used['dense_fp32_weights_bytes'] / used['weights_bytes']:.1f}x "
            "smaller)"
        )
    if used.get("dense_reference"):
        dense = used["dense_reference"]
        lines.append(
            "  the dense MarianMTModel of the same shape, data and batching, trained to its plateau (the study's "
            f"dense row): test BLEU {dense['test_bleu']:.2f} "
            "on all of test_2016_flickr (this model on the sentences above: "
            f"{used['test_bleu'] / dense['test_bleu']:.2f}x; "
            "the BLEU study)"
        )
    lines.append(
        f"  load {used['load_seconds']:.2f} s, translation {used['sentences_per_second']:.1f} sentences/s "
        f"({used['decoding']})"
    )
    if found is not None:
        curve = ", ".join(f"{step}: {bleu:.2f}" for step, bleu in found["curve"])
        lines += [
            "Finding masks (a fresh model of the same shape, a few minutes of training)",
            f"  validation BLEU by update (greedy, 200 pairs): {curve}",
            f"  {found['train_seconds'] / 60:.1f} min; the shipped model is the same recipe run longer (its card "
            "gives the budget and the command)",
        ]
    lines.append("=" * 78)
    return "\n".join(lines)


def main(args: list[str] | None = None) -> dict[str, Any]:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # before tokenizers fork
    from transformers import HfArgumentParser

    import hf_supermask  # noqa: F401  (registers the translation pipeline and the Auto classes)

    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", level=logging.WARNING)
    (demo,) = HfArgumentParser(DemoArguments).parse_args_into_dataclasses(args=args)
    torch.set_num_threads(demo.threads)
    overwrite = claim_output_dir(Path(demo.output_dir))  # before minutes of work, not after
    print("== Using found masks: the shipped model through pipeline('translation') ==", flush=True)
    try:
        used = use_found_masks(demo)
    except FileNotFoundError as error:  # no Multi30k anywhere: the user's to fix, so one line, no traceback
        raise SystemExit(f"demo: error: {error}") from None
    if demo.dense_reference:
        row = json.loads(Path(demo.dense_reference).read_text())
        used["dense_reference"] = {"test_bleu": row["test_bleu"], "file": demo.dense_reference}
    found = None
    if demo.train_steps > 0:
        print("\n== Finding masks: a fresh supermask trained for a few minutes ==", flush=True)
        from transformers import AutoConfig

        found = find_masks(demo, AutoConfig.from_pretrained(demo.model), overwrite)
    print(format_summary(used, found))
    summary = {"used": used, "found": found}
    Path(demo.output_dir).mkdir(parents=True, exist_ok=True)
    (Path(demo.output_dir) / DEMO_MARKER).write_text(
        "Written by scripts/demo.py; a later demo may replace this folder.\n"
    )
    (Path(demo.output_dir) / "demo_summary.json").write_text(json.dumps(summary, indent=1))
    return summary
