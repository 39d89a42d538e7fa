# Copyright 2026 The hf_supermask Authors. Licensed under the Apache License, Version 2.0.
"""The mask-set benchmark (`scripts/benchmark_mask_sets.py`): one model holding k mask sets (`load_masks`,
`set_active_masks`) against k separately loaded models, each side in a fresh process: load and switch times,
generate time, resident memory, bits on disk per set."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from experiments.measure import machine_info, median, rss_mb, run_worker_process, trim_heap


def mask_sets_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Hold k mask sets: one model with `load_masks` ("one_model"), or k models ("separate"); translate a few
    sentences with each (the eval-mode folds then exist), then report the resident memory and the times."""
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    import hf_supermask  # noqa: F401

    tokenizer = AutoTokenizer.from_pretrained(spec["folders"][0])
    batch = tokenizer(spec["sentences"], return_tensors="pt", padding=True)
    trim_heap()
    baseline = rss_mb()
    loads = []
    if spec["mode"] == "one_model":
        started = time.perf_counter()
        model = AutoModelForSeq2SeqLM.from_pretrained(spec["folders"][0])
        loads.append(time.perf_counter() - started)
        for i, folder in enumerate(spec["folders"][1:], start=1):
            started = time.perf_counter()
            model.load_masks(folder, f"set{i}")
            loads.append(time.perf_counter() - started)
        models = {name: model for name in model.mask_sets}
    else:
        models = {}
        for i, folder in enumerate(spec["folders"]):
            started = time.perf_counter()
            models[f"set{i}"] = AutoModelForSeq2SeqLM.from_pretrained(folder)
            loads.append(time.perf_counter() - started)
    switches, generates = [], []
    for _ in range(spec["repetitions"]):
        for name, model in models.items():
            if spec["mode"] == "one_model":
                started = time.perf_counter()
                model.set_active_masks(name)
                switches.append(time.perf_counter() - started)
            started = time.perf_counter()
            model.generate(**batch, max_new_tokens=8, min_new_tokens=8, num_beams=1)
            generates.append(time.perf_counter() - started)
    any_model = next(iter(models.values()))
    trim_heap()  # `load_masks` builds a whole model to verify a checkpoint, then frees it
    return {
        "sets": len(spec["folders"]),
        "load_seconds": sum(loads),
        "first_load_seconds": loads[0],
        "median_added_set_load_seconds": median(loads[1:]) if len(loads) > 1 else None,
        "switch_seconds": median(switches) if switches else None,
        "generate_seconds": median(generates),
        "rss_above_baseline_mb": rss_mb() - baseline,
        "maskable_weights": any_model.num_maskable_weights(),
    }


@dataclass
class MaskSetsBenchmarkArguments:
    folders: list[str] = field(
        default_factory=lambda: [str(p) for p in _shipped_directions()],
        metadata={
            "help": "Mask-only checkpoints found over the same random weights (default: the shipped directions).",
            "nargs": "+",
        },
    )
    sentences_file: str | None = field(
        default=None, metadata={"help": "Sentences to translate (default: Multi30k's test_2016_flickr.en)."}
    )
    num_sentences: int = field(default=8, metadata={"help": "Sentences per generate call."})
    repetitions: int = field(default=3, metadata={"help": "Rounds over the k sets (medians are reported)."})
    output_json: str | None = field(default=None, metadata={"help": "Write the results here."})
    output_markdown: str | None = field(default=None, metadata={"help": "Write the table here."})


def _shipped_directions() -> list[Path]:
    from hf_supermask.pretrained import SHIPPED_DIRECTIONS

    return sorted(p for p in SHIPPED_DIRECTIONS.glob("*") if (p / "config.json").exists())


def benchmark_mask_sets(folders: list[str], sentences: list[str], repetitions: int = 3) -> dict[str, Any]:
    """One model holding k mask sets against k separately loaded models, each in a fresh process: load times, the
    switch time, generate time, resident memory, bytes on disk per set."""
    spec = {
        "worker": "experiments.benchmark_mask_sets:mask_sets_worker",
        "model": "supermask",
        "folders": list(folders),
        "sentences": sentences,
        "repetitions": repetitions,
        "threads": 1,
    }
    results: dict[str, Any] = {mode: run_worker_process(dict(spec, mode=mode)) for mode in ("one_model", "separate")}
    maskable = results["one_model"]["maskable_weights"]
    results["bits_per_weight_on_disk"] = {
        Path(f).name: 8 * (Path(f) / "model.safetensors").stat().st_size / maskable for f in folders
    }
    results["machine"] = machine_info()
    return results


def mask_sets_markdown(results: dict[str, Any]) -> str:
    one, separate = results["one_model"], results["separate"]
    k = one["sets"]
    ms = lambda seconds: f"{1000 * seconds:.0f} ms"  # noqa: E731
    bits = ", ".join(f"{name} {value:.3f}" for name, value in results["bits_per_weight_on_disk"].items())
    return "\n".join(
        [
            f"| {k} mask sets ({one['maskable_weights']:,} maskable weights each) | one model, `load_masks` + "
            f"`set_active_masks` | {k} separate models | ratio |",
            "|---|---|---|---|",
            f"| load all {k} | {one['load_seconds']:.2f} s | {separate['load_seconds']:.2f} s | "
            f"{one['load_seconds'] / separate['load_seconds']:.2f} |",
            f"| add one direction | `load_masks` {ms(one['median_added_set_load_seconds'])} | `from_pretrained` "
            f"{ms(separate['load_seconds'] / k)} | |",
            f"| switch direction | `set_active_masks` {ms(one['switch_seconds'])} (median) | none (another object) | |",
            f"| generate, {len(results.get('sentences', [])) or 'a'} batch, 8 tokens | {ms(one['generate_seconds'])} | "
            f"{ms(separate['generate_seconds'])} | {one['generate_seconds'] / separate['generate_seconds']:.2f} |",
            f"| resident memory after translating with each set | {one['rss_above_baseline_mb']:.0f} MB | "
            f"{separate['rss_above_baseline_mb']:.0f} MB | "
            f"{one['rss_above_baseline_mb'] / separate['rss_above_baseline_mb']:.2f} |",
            f"| bits per maskable weight on disk, per direction | {bits} | | |",
        ]
    )
