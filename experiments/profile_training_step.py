# Copyright 2026 The hf_supermask Authors. Licensed under the Apache License, Version 2.0.
"""Where a supermask's `Seq2SeqTrainer` step spends the time its same-shape MarianMTModel's does not: each model
trains in a fresh process under `cProfile` (the benchmark's `train_worker`: same data, batch and steps), and the
functions' own time per step is printed side by side, largest difference first.

    python scripts/profile_training_step.py --output_json benchmarks/training_step_profile.json

Defaults: the benchmark's IWSLT-small shape (d512, 6+6 layers, 8k vocabulary). Run it on a quiet machine; cProfile
adds its own overhead to every Python call, so read the differences, not the absolute step times.
"""

from __future__ import annotations

import cProfile
import json
import pstats
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from experiments.benchmark_models import (
    MODELS,
    BenchmarkArguments,
    prepare_training_data,
    save_models,
    shape_config,
    train_benchmark_tokenizer,
)
from experiments.measure import git_commit, machine_info, run_worker_process


@dataclass
class ProfileArguments:
    d_model: int = field(default=512, metadata={"help": "Model width."})
    ffn_dim: int = field(default=1024, metadata={"help": "Feed-forward width."})
    layers: int = field(default=6, metadata={"help": "Encoder layers = decoder layers."})
    steps: int = field(default=20, metadata={"help": "Profiled training steps (after the warm-up steps)."})
    warmup_steps: int = field(default=5, metadata={"help": "Steps before profiling starts."})
    top: int = field(default=15, metadata={"help": "Functions to print."})
    data_dir: str | None = field(default=None, metadata={"help": "Multi30k folder (default: ../shared/data/multi30k)."})
    output_json: str | None = field(default=None, metadata={"help": "Write the results as JSON here."})


def profile_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """`train_worker` under cProfile: own seconds per step of every function (warm-up steps included, as the
    profiler cannot start mid-training; they are few)."""
    from experiments.benchmark_models import train_worker

    profiler = cProfile.Profile()
    profiler.enable()
    result = train_worker(spec)
    profiler.disable()
    total_steps = spec["warmup_steps"] + spec["train_steps"]
    own, masks = {}, 0.0
    for (path, line, name), (_, _, tottime, cumtime, _) in pstats.Stats(profiler).stats.items():
        key = f"{Path(path).name}:{line}({name})" if path != "~" else name
        own[key] = own.get(key, 0.0) + tottime / total_steps
        if name == "compute_masks":
            masks += cumtime / total_steps
    return {
        "mean_step_seconds": sum(result["step_seconds"]) / len(result["step_seconds"]),
        "own_seconds": own,
        # cProfile sees the calling thread only: the masks computed on worker threads show as this call's wait
        "compute_masks_seconds": masks,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from transformers import HfArgumentParser

    (args,) = HfArgumentParser(ProfileArguments).parse_args_into_dataclasses(args=argv)
    bench = BenchmarkArguments(
        d_model=[args.d_model],
        ffn_dim=[args.ffn_dim],
        heads=[4],
        encoder_layers=[args.layers],
        decoder_layers=[args.layers],
        vocab_size=[8000],
        train_steps=args.steps,
        warmup_steps=args.warmup_steps,
        data_dir=args.data_dir,
    )
    tokenizer = train_benchmark_tokenizer(bench, 8000)
    profiles = {}
    with tempfile.TemporaryDirectory() as tmp:
        folders = save_models(shape_config(bench, bench.shapes()[0], tokenizer), tokenizer, Path(tmp))
        data_file = Path(tmp) / "train_rows.json"
        prepare_training_data(bench, tokenizer, data_file)
        for name in MODELS:
            spec = {
                "worker": "experiments.profile_training_step:profile_worker",
                "model": name,
                "folder": str(folders["supermask"]),  # config + tokenizer (Marian is built from the same config)
                "data_file": str(data_file),
                "batch_size": bench.train_batch_size,
                "train_steps": args.steps,
                "warmup_steps": args.warmup_steps,
            }
            profiles[name] = run_worker_process(spec)
    own = {name: profiles[name]["own_seconds"] for name in MODELS}
    functions = sorted(set(own["supermask"]) | set(own["marian"]))
    rows = sorted(
        ((f, own["supermask"].get(f, 0.0), own["marian"].get(f, 0.0)) for f in functions),
        key=lambda row: abs(row[1] - row[2]),
        reverse=True,
    )[: args.top]
    steps = {name: profiles[name]["mean_step_seconds"] for name in MODELS}
    print(f"mean step under cProfile: supermask {steps['supermask']:.3f} s, marian {steps['marian']:.3f} s")
    masks = profiles["supermask"]["compute_masks_seconds"]
    print(f"the supermask's masks, computed up front on worker threads (compute_masks, wall): {masks:.4f} s per step")
    print(f"{'own seconds per step':<70} {'supermask':>10} {'marian':>10} {'difference':>10}")
    for function, mine, theirs in rows:
        print(f"{function[:70]:<70} {mine:>10.4f} {theirs:>10.4f} {mine - theirs:>+10.4f}")
    results = {
        "settings": asdict(args),
        "git_commit": git_commit(),
        "machine": machine_info(),
        "mean_step_seconds_under_profiler": steps,
        "supermask_compute_masks_seconds": masks,
        "largest_differences": [{"function": f, "supermask": s, "marian": m} for f, s, m in rows],
    }
    if args.output_json:
        Path(args.output_json).write_text(json.dumps(results, indent=2) + "\n")
    return results
