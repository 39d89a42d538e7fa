"""The benchmark (scripts/benchmark.py, experiments/benchmark_models.py) in smoke mode: every metric is measured
and positive."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest
import torch
from conftest import DATA_DIR, REPO_ROOT

from experiments.benchmark_models import BenchmarkArguments, run_benchmark
from experiments.benchmark_summary import format_summary


IN_PROCESS_METRICS = {
    "weights_file_bytes",
    "folder_bytes",
    "bits_per_maskable_weight",
    "from_pretrained_seconds",
    "translation_greedy_sentences_per_second",
    "translation_beam5_sentences_per_second",
    "translation_greedy_eval_per_request_sentences_per_second",
    "translation_beam5_eval_per_request_sentences_per_second",
    "train_step_seconds",
    "train_peak_rss_mb",
    "train_peak_rss_above_baseline_mb",
    "regeneration_megabytes_per_second",
    "regenerate_megabytes_per_second",
    "fingerprint_seconds",
    "regenerate_seconds",
}
# Only measured when the workers run in fresh processes.
PROCESS_METRICS = {"load_process_total_seconds", "load_process_import_seconds"}
COMPARED = IN_PROCESS_METRICS - {
    "bits_per_maskable_weight",
    "regeneration_megabytes_per_second",
    "regenerate_megabytes_per_second",
    "fingerprint_seconds",
    "regenerate_seconds",
}


def _positive(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def _check_results(results: dict, expected_metrics: set[str]) -> None:
    machine = results["machine"]
    for key in ("cpu_model", "cpu_count", "torch_threads", "torch", "transformers", "numpy"):
        assert machine[key], key
    assert "min_new_tokens" in results["translation_length_note"]
    assert len(results["shapes"]) == 2  # smoke mode still runs two (tiny) shapes
    for shape in results["shapes"]:
        metrics = shape["metrics"]
        assert set(metrics) == expected_metrics
        for name, entry in metrics.items():
            assert _positive(entry["supermask"]), (shape["name"], name, entry)
            if name in COMPARED:
                assert _positive(entry["marian"]) and _positive(entry["ratio"]), (shape["name"], name, entry)
                assert entry["ratio"] == pytest.approx(entry["supermask"] / entry["marian"])
            if name in COMPARED - {"weights_file_bytes", "folder_bytes"}:  # measured in pairs
                # Smoke runs are one repetition: no spread, so no interval, and no goal shown either way.
                assert entry["interval"] is None and entry.get("verdict", "not shown") == "not shown", (name, entry)
            for runs in ("supermask_runs", "marian_runs"):
                assert all(_positive(v) for v in entry.get(runs, [])), (shape["name"], name, runs)
            if "goal" in entry:
                assert entry["verdict"] in ("met", "missed", "not shown")
                assert entry["met"] is (entry["verdict"] == "met")
        # A packed mask is a bit per weight, plus the safetensors header.
        assert 1.0 <= metrics["bits_per_maskable_weight"]["supermask"] < 2.0
        assert metrics["weights_file_bytes"]["ratio"] < 0.1
        lengths = shape["raw"]["translation"]["beam1"]["mean_generated_tokens_first_batch"]
        assert lengths["supermask"] == lengths["marian"] == 4  # fixed length: min_new_tokens = max_new_tokens
    assert "| metric | supermask | marian | ratio | 95% interval | goal | verdict |" in results["markdown"]


def test_smoke_benchmark_in_process(tmp_path):
    args = BenchmarkArguments(
        smoke=True,
        in_process=True,
        data_dir=str(DATA_DIR),
        output_json=str(tmp_path / "results.json"),
        output_markdown=str(tmp_path / "results.md"),
    )
    returned = run_benchmark(args, command="pytest", log=lambda message: None)
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["command"] == "pytest" and results["settings"]["smoke"] is True
    assert (tmp_path / "results.md").read_text() == returned["markdown"] == results["markdown"]
    _check_results(results, IN_PROCESS_METRICS)
    # Both paths translate one request per batch; only the per-request one calls eval() before each.
    translation = results["shapes"][0]["raw"]["translation"]
    assert translation["beam1_eval_per_request"]["eval_per_request"] is True
    assert translation["beam1"]["eval_per_request"] is False

    # Two runs side by side (here the same one twice, as if from two transformers releases).
    other = json.loads(json.dumps(results))
    other["machine"]["transformers"] = "9.9.9"
    results["shapes"][0]["metrics"]["train_step_seconds"]["verdict"] = "met"
    other["shapes"][0]["metrics"]["train_step_seconds"]["verdict"] = "not shown"
    summary = format_summary([results, other], ["a.json", "b.json"])
    assert f"| transformers {results['machine']['transformers']} | transformers 9.9.9 |" in summary
    row = next(line for line in summary.splitlines() if line.startswith("| train_step_seconds |"))
    assert row.count(" met") == 1 and row.count("**not shown**") == 1
    assert "translation_greedy_eval_per_request_sentences_per_second" in summary


@pytest.mark.slow
def test_smoke_benchmark_script_with_fresh_processes(tmp_path):
    """The script end to end, with its fresh-process workers (about 2 minutes: every worker imports torch)."""
    output = tmp_path / "results.json"
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "scripts" / "benchmark.py"),
            "--smoke",
            "--data_dir",
            str(DATA_DIR),
            "--output_json",
            str(output),
        ],
        check=True,
        env=env,
        cwd=tmp_path,
        capture_output=True,
    )
    _check_results(json.loads(output.read_text()), IN_PROCESS_METRICS | PROCESS_METRICS)


def test_per_request_translation_calls_eval_before_each_batch_alternating_the_models():
    """The per-request path is what a server does: `model.eval()`, then one batch, for every batch, the two models
    taking turns request by request; the other path takes the same turns with no `eval()`."""
    from experiments.benchmark_models import MODELS, _timed_translation

    class Model:
        evals = 0

        def eval(self):
            self.evals += 1

    calls = []

    class Translator:
        def __init__(self, name):
            self.name, self.model = name, Model()

        def __call__(self, sentences, batch_size, **generate):
            calls.append((self.name, list(sentences), self.model.evals))

    sentences = [f"s{i}" for i in range(5)]
    first, second = MODELS
    seconds = _timed_translation({n: Translator(n) for n in MODELS}, sentences, 2, {}, True, repetition=0)
    assert set(seconds) == set(MODELS) and all(len(s) == 3 and min(s) > 0 for s in seconds.values())
    assert calls == [
        (first, ["s0", "s1"], 1),
        (second, ["s0", "s1"], 1),
        (second, ["s2", "s3"], 2),
        (first, ["s2", "s3"], 2),
        (first, ["s4"], 3),
        (second, ["s4"], 3),
    ]
    calls.clear()
    _timed_translation({n: Translator(n) for n in MODELS}, sentences, 2, {}, False, repetition=1)
    assert calls == [
        (second, ["s0", "s1"], 0),
        (first, ["s0", "s1"], 0),
        (first, ["s2", "s3"], 0),
        (second, ["s2", "s3"], 0),
        (second, ["s4"], 0),
        (first, ["s4"], 0),
    ]


def test_eval_per_request_benchmark_times_both_models_both_ways(trained, tmp_path):
    from experiments.benchmark_eval_per_request import main

    model_dir, _ = trained
    flags = ["--model", str(model_dir), "--data_dir", str(DATA_DIR), "--requests", "2", "--batch_size", "2"]
    results = main([*flags, "--new_tokens", "2", "--output_json", str(tmp_path / "eval.json")])
    runs = json.loads((tmp_path / "eval.json").read_text())["runs"]
    for name in ("supermask", "marian"):
        assert len(runs[f"{name}_with_eval"]) == len(runs[f"{name}_without_eval"]) == 2
        assert all(seconds > 0 for seconds in runs[f"{name}_with_eval"] + runs[f"{name}_without_eval"])
    assert results["medians"]["content_check_seconds"] > 0 and results["maskable_weights"] > 0


def test_the_timed_content_check_is_the_one_that_sees_data_edits():
    """What `time_eval_and_content_check` times is the real check: scores edited through `.data` (which no version
    counter sees) are refolded by it. A second such edit after it is not seen before the next `eval()` (the documented
    rule), so the fold then in use shows that the timed call, not a later forward, made the check."""
    from conftest import scrambled_model, tiny_config

    from experiments.benchmark_eval_per_request import time_eval_and_content_check

    model = scrambled_model(tiny_config())
    modules = list(model.masked_modules.values())
    for module in modules:
        module.effective_weight()  # the folds a first eval-mode forward builds
    module = modules[1]
    stale = module.effective_weight().clone()
    module.scores.data.copy_(torch.randn(module.shape, generator=torch.Generator().manual_seed(1)))
    expected = module.weight * module.mask_from_scores(module.scores).to(module.weight.dtype)
    seconds = time_eval_and_content_check(model)
    module.scores.data.copy_(torch.randn(module.shape, generator=torch.Generator().manual_seed(2)))
    assert all(value >= 0 for value in seconds)
    assert not torch.equal(stale, expected) and torch.equal(module.effective_weight(), expected)


def test_a_goal_is_met_only_when_its_whole_interval_meets_it():
    from experiments.benchmark_models import judge

    assert judge("ratio >= 0.95", 0.96, 1.02) == "met"
    assert judge("ratio >= 0.95", 0.94, 1.02) == "not shown"
    assert judge("ratio >= 0.95", 0.90, 0.949) == "missed"
    assert judge("ratio <= 1.3", 1.1, 1.3) == "met"
    assert judge("ratio <= 1.3", 1.25, 1.35) == "not shown"
    assert judge("ratio <= 1/25", 0.05, 0.05) == "missed"
    assert judge("value <= 1.01", 1.002, 1.002) == "met"


def test_the_ratio_interval_resamples_whole_repetitions():
    from experiments.measure import bootstrap_ratio_interval, ratio_of_sums

    # Every pair of a repetition agrees, repetitions disagree: the interval must span the repetitions' own ratios
    # (resampling single pairs would have shrunk it about the pooled ratio, as if 40 independent draws).
    clusters = [[(1.0 + 0.2 * (r % 2), 1.0)] * 20 for r in range(4)]
    low, high = bootstrap_ratio_interval(clusters)
    assert ratio_of_sums(clusters) == pytest.approx(1.1)
    assert low < 1.05 and high > 1.15
    assert bootstrap_ratio_interval(clusters) == (low, high)  # seeded
    # Repetitions that agree leave no doubt.
    assert bootstrap_ratio_interval([[(1.2, 1.0), (2.4, 2.0)]] * 5) == pytest.approx((1.2, 1.2))
    assert bootstrap_ratio_interval([[(1.2, 1.0), (2.4, 2.0)]]) is None  # one repetition: no spread to show


def test_a_throughput_row_inverts_the_cost_ratio_and_its_interval():
    from experiments.benchmark_models import _paired_metric

    # Three repetitions of 64 sentences in two requests each; the supermask takes 1.02-1.04x Marian's seconds.
    clusters = [[(1.02, 1.0), (2.04, 2.0)], [(1.03, 1.0), (2.06, 2.0)], [(1.04, 1.0), (2.08, 2.0)]]
    entry = _paired_metric("sentences/s", clusters, goal="ratio >= 0.95", items_per_repetition=64)
    assert entry["supermask"] == pytest.approx(192 / (3.06 + 3.09 + 3.12))
    assert entry["ratio"] == pytest.approx(entry["supermask"] / entry["marian"]) == pytest.approx(9 / 9.27)
    low, high = entry["interval"]
    assert 1 / 1.04 - 1e-9 <= low < entry["ratio"] < high <= 1 / 1.02 + 1e-9
    assert entry["verdict"] == "met" and entry["pairs"] == 6 and entry["repetitions"] == 3
    assert _paired_metric("s", clusters, goal="ratio <= 1.03")["verdict"] == "not shown"


def test_the_training_profile_finds_the_mask_work_in_the_supermask_step_only(tmp_path):
    from experiments.benchmark_models import (
        BenchmarkArguments,
        prepare_training_data,
        save_models,
        shape_config,
        train_benchmark_tokenizer,
    )
    from experiments.profile_training_step import profile_worker

    bench = BenchmarkArguments(smoke=True, data_dir=str(DATA_DIR))
    tokenizer = train_benchmark_tokenizer(bench, 320)
    folders = save_models(shape_config(bench, bench.shapes()[0], tokenizer), tokenizer, tmp_path)
    prepare_training_data(bench, tokenizer, tmp_path / "rows.json")
    own, masks = {}, {}
    for name in ("supermask", "marian"):
        spec = {"model": name, "folder": str(folders["supermask"]), "data_file": str(tmp_path / "rows.json")}
        spec |= {"batch_size": 8, "train_steps": 2, "warmup_steps": 1, "in_process": True}
        result = profile_worker(spec)
        assert result["mean_step_seconds"] > 0
        own[name] = result["own_seconds"]
        masks[name] = result["compute_masks_seconds"]
    # the supermask's masks: computed up front (on worker threads, which cProfile does not see: the call's wall time)
    assert masks["supermask"] > 0 and masks["marian"] == 0
    assert any("compute_masks" in function for function in own["supermask"])
    assert not any("topk_mask" in function for function in own["marian"])
