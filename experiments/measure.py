# Copyright 2026 The hf_supermask Authors. Licensed under the Apache License, Version 2.0.
"""What the benchmarks measure with: resident memory, the machine, medians, and workers in fresh processes.

A worker is a function `module:function` taking a JSON-able spec and returning JSON-able numbers; `run_worker_process`
runs it in a fresh Python process (so that imports, caches and allocator state of one measurement never leak into the
next) and adds the wall time of the whole process.
"""

from __future__ import annotations

import functools
import importlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


REPO_ROOT = Path(__file__).resolve().parents[1]

_WORKER_BOOTSTRAP = (
    "import time; _t0 = time.perf_counter()\n"
    "import json, sys\n"
    "from experiments.measure import run_worker\n"
    "print('BENCHMARK_RESULT ' + json.dumps(run_worker(json.loads(sys.argv[1]), _t0)), flush=True)\n"
)


def rss_mb() -> float:
    """Current resident set size (MB)."""
    return proc_status_kb("VmRSS") / 1024


def trim_heap() -> None:
    """Give freed heap memory back to the OS (glibc `malloc_trim`), so that RSS shows what is held, not what a
    transient peak left in the allocator; a no-op elsewhere."""
    import ctypes

    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def peak_rss_mb() -> float:
    """Peak resident set size of this process (MB): since the last `reset_peak_rss()`, else since it started."""
    kb = proc_status_kb("VmHWM")
    return kb / 1024 if kb else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak_rss() -> bool:
    """Reset the kernel's peak RSS counter (Linux >= 4.0: `echo 5 > /proc/self/clear_refs`), after handing the
    memory that earlier work freed back to the OS (else new allocations reuse it without raising the RSS)."""
    import gc

    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def proc_status_kb(key: str) -> int:
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


@functools.cache
def git_commit() -> str | None:
    """The commit of the code this process runs: read once, when a study or benchmark starts (the code is imported
    then; later commits do not change what runs). Uncommitted changes to code files are flagged."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "*.py", "setup.cfg"],
            capture_output=True,
            text=True,
        )
        return commit + ("+uncommitted code changes" if dirty.stdout.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def machine_info() -> dict[str, Any]:
    import numpy
    import torch
    import transformers

    cpu_model = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as handle:
            names = [line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")]
        if names:
            cpu_model = names[0]
    except OSError:
        pass
    try:
        available = len(os.sched_getaffinity(0))
    except AttributeError:
        available = os.cpu_count()
    return {
        "cpu_model": cpu_model,
        "cpu_count": os.cpu_count(),
        "cpus_available": available,
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "load_average_at_start": list(os.getloadavg()),
    }


def maskable_weights(config) -> int:
    """Maskable weights of a supermask config's model, counted on the meta device (no weights generated)."""
    import torch

    from hf_supermask.modeling import SupermaskForConditionalGeneration

    with torch.device("meta"):
        return SupermaskForConditionalGeneration(config).num_maskable_weights()


def median(values: list[float]) -> float:
    return float(statistics.median(values))


INTERVAL_CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 10_000


def ratio_of_sums(clusters: list[list[tuple[float, float]]]) -> float:
    """sum(a) / sum(b) over every (a, b) pair of every cluster."""
    return sum(a for cluster in clusters for a, _ in cluster) / sum(b for cluster in clusters for _, b in cluster)


def bootstrap_ratio_interval(
    clusters: list[list[tuple[float, float]]],
    confidence: float = INTERVAL_CONFIDENCE,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> tuple[float, float] | None:
    """Percentile bootstrap interval of `ratio_of_sums(clusters)`, resampling whole clusters.

    A cluster is what one repetition measured (one fresh process, or one back-to-back pair of processes): pairs
    inside it share that process's luck (memory placement, the host's load at the time), so they are resampled
    together and the interval counts that luck as noise instead of as evidence. Seeded: the same numbers give the
    same interval. None for a single cluster: one repetition shows no spread."""
    import numpy as np

    if len(clusters) < 2:
        return None
    sums = np.array([[sum(a for a, _ in cluster), sum(b for _, b in cluster)] for cluster in clusters])
    picks = np.random.default_rng(seed).integers(0, len(clusters), size=(resamples, len(clusters)))
    ratios = sums[picks, 0].sum(axis=1) / sums[picks, 1].sum(axis=1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(ratios, [tail, 1 - tail])
    return float(low), float(high)


def run_worker(spec: dict[str, Any], start: float | None = None) -> dict[str, Any]:
    """Run the worker named by `spec["worker"]` (`module:function`) on `spec` and return its numbers, with the
    import time of the process when `start` (its first instant) is given."""
    import torch

    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    result: dict[str, Any] = {}
    if start is not None:
        result["import_seconds"] = time.perf_counter() - start
    module, _, function = spec["worker"].partition(":")
    result.update(getattr(importlib.import_module(module), function)(spec))
    return result


def run_worker_process(spec: dict[str, Any], in_process: bool = False) -> dict[str, Any]:
    """Run a worker in a fresh process (the default) or here; adds the wall time of the whole process."""
    spec = dict(spec, in_process=in_process)
    if in_process:
        return run_worker(spec)
    env = dict(os.environ)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("HF_DATASETS_OFFLINE", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))  # experiments/
    start = time.perf_counter()
    completed = subprocess.run(
        [sys.executable, "-c", _WORKER_BOOTSTRAP, json.dumps(spec)], capture_output=True, text=True, env=env
    )
    wall = time.perf_counter() - start
    lines = [line for line in completed.stdout.splitlines() if line.startswith("BENCHMARK_RESULT ")]
    if completed.returncode != 0 or not lines:
        raise RuntimeError(
            f"Benchmark worker {spec['worker']} ({spec.get('model')}) failed (exit {completed.returncode}):\n"
            f"{completed.stderr[-4000:]}"
        )
    result = json.loads(lines[-1].removeprefix("BENCHMARK_RESULT "))
    result["process_total_seconds"] = wall
    return result
