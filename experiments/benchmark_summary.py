# Copyright 2026 The hf_supermask Authors. Licensed under the Apache License, Version 2.0.
"""Side by side: the goals of several `scripts/benchmark.py` runs (one per transformers release, say) in one table.

    python scripts/benchmark_summary.py benchmarks/benchmark_results.json \
        benchmarks/benchmark_results_transformers-5.25.json --output_markdown benchmarks/benchmark_summary.md

Each run keeps its own full table; this one shows, per shape and metric with a goal, every run's ratio
(supermask / MarianMTModel), its 95% interval and the verdict on the goal (met, missed, or not shown: the rule is
`experiments.benchmark_models.judge`), with the release and CPU that measured it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def load_runs(paths: list[str]) -> list[dict[str, Any]]:
    runs = []
    for path in paths:
        try:
            runs.append(json.loads(Path(path).read_text()))
        except (OSError, json.JSONDecodeError) as error:
            raise SystemExit(
                f"{path}: not a benchmark results file ({error}); pass --output_json files of scripts/benchmark.py."
            ) from None
    return runs


def _run_label(run: dict[str, Any]) -> str:
    machine = run["machine"]
    return f"transformers {machine['transformers']}"


def format_summary(runs: list[dict[str, Any]], paths: list[str]) -> str:
    labels = [_run_label(run) for run in runs]
    lines = ["# Supermask vs MarianMTModel: the goals, release by release", ""]
    for run, path in zip(runs, paths):
        machine = run["machine"]
        lines.append(
            f"- `{path}`: {_run_label(run)}, torch {machine['torch']}, {machine['cpu_model']} "
            f"({machine['cpus_available']} CPUs, {machine['torch_threads']} torch threads), load average at start "
            f"{[round(x, 2) for x in machine['load_average_at_start']]}; commit {run.get('git_commit')}; command "
            f"`{run.get('command')}`"
        )
    lines += [
        "",
        "Ratio = supermask / MarianMTModel over all back-to-back pairs, [its 95% bootstrap interval]; a goal is met "
        "when the whole interval meets it, missed when none of it does, else not shown.",
        "",
    ]
    shapes = {shape["name"]: {} for run in runs for shape in run["shapes"]}
    for index, run in enumerate(runs):
        for shape in run["shapes"]:
            shapes[shape["name"]][index] = shape["metrics"]
    for name, by_run in shapes.items():
        lines += [f"## {name}", "", "| metric | goal | " + " | ".join(labels) + " |", "|---|---|" + "---|" * len(runs)]
        metric_names = [m for metrics in by_run.values() for m, entry in metrics.items() if "goal" in entry]
        for metric in dict.fromkeys(metric_names):
            goal = next(metrics[metric]["goal"] for metrics in by_run.values() if metric in metrics)
            cells = []
            for index in range(len(runs)):
                entry = by_run.get(index, {}).get(metric)
                if entry is None:
                    cells.append("not run")
                    continue
                value = entry["ratio"] if goal.startswith("ratio") else entry["supermask"]
                interval = " [{:.3f}, {:.3f}]".format(*entry["interval"]) if entry.get("interval") else ""
                verdict = entry["verdict"] if entry["verdict"] == "met" else f"**{entry['verdict']}**"
                cells.append(f"{value:.3f}{interval} {verdict}")
            lines.append(f"| {metric} | {goal} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


__all__ = ["format_summary", "load_runs"]
