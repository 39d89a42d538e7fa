"""Token-budget batches (`--max_tokens_per_batch`), stopping on a plateau (`--early_stopping_patience`) and the
target tokens a run has trained on, counted across resumptions."""

from __future__ import annotations

import json

import pytest
from conftest import read_lines, training_flags

from hf_supermask.data import TokenBudgetBatchSampler
from hf_supermask.training import parse_args, run_translation


def _lengths(tiny_tokenizer, n: int = 300):
    sources = tiny_tokenizer(read_lines("train", "en", n))["input_ids"]
    targets = tiny_tokenizer(text_target=read_lines("train", "de", n))["input_ids"]
    return [len(s) for s in sources], [len(t) for t in targets]


def test_token_budget_batches_stay_within_the_budget_and_cover_every_pair_once(tiny_tokenizer):
    sources, targets = _lengths(tiny_tokenizer)
    sampler = TokenBudgetBatchSampler(sources, targets, max_tokens=256, seed=0)
    batches = list(sampler)
    assert sorted(i for batch in batches for i in batch) == list(range(len(sources)))  # an epoch: each pair once
    for batch in batches:
        padded = len(batch) * (max(sources[i] for i in batch) + max(targets[i] for i in batch))
        assert padded <= 256
    real = sum(sources) + sum(targets)
    padded = sum(len(b) * (max(sources[i] for i in b) + max(targets[i] for i in b)) for b in batches)
    assert padded < 1.2 * real  # similar lengths share a batch: little padding
    assert len({len(b) for b in batches}) > 1  # short pairs come many to a batch, long ones few


def test_token_budget_batches_are_reshuffled_each_epoch_and_reproducible(tiny_tokenizer):
    sources, targets = _lengths(tiny_tokenizer)
    sampler = TokenBudgetBatchSampler(sources, targets, max_tokens=256, seed=0)
    first = list(sampler)
    sampler.set_epoch(1)
    second = list(sampler)
    assert sorted(map(tuple, first)) == sorted(map(tuple, second)) and first != second  # same batches, new order
    sampler.set_epoch(0)
    assert list(sampler) == first == list(TokenBudgetBatchSampler(sources, targets, max_tokens=256, seed=0))
    assert len(sampler) == len(first)


def test_a_budget_smaller_than_a_pair_is_refused(tiny_tokenizer):
    sources, targets = _lengths(tiny_tokenizer)
    with pytest.raises(ValueError, match="--max_tokens_per_batch 8 is smaller than the longest training pair"):
        TokenBudgetBatchSampler(sources, targets, max_tokens=8, seed=0)


def test_training_on_token_budget_batches_counts_target_tokens(tokenizer_dir, tmp_path):
    flags = training_flags(tmp_path / "out", tokenizer_dir, "--do_train", "--max_steps", "4")
    flags += ["--max_tokens_per_batch", "600", "--logging_steps", "1"]
    results = run_translation(*parse_args(flags))
    history = json.loads((tmp_path / "out" / "log_history.json").read_text())
    counted = [entry["train_target_tokens"] for entry in history if "loss" in entry]
    assert len(counted) == 4 and counted == sorted(counted) and counted[0] > 0
    assert results["train_target_tokens_per_second"] > 0


def test_training_stops_on_a_plateau_and_keeps_the_best_checkpoint(tokenizer_dir, tmp_path):
    flags = training_flags(tmp_path / "out", tokenizer_dir, "--do_train", "--do_eval", "--max_steps", "40")
    flags += ["--eval_strategy", "steps", "--eval_steps", "2", "--save_strategy", "steps", "--save_steps", "2"]
    flags += ["--early_stopping_patience", "1", "--learning_rate", "0"]  # nothing changes: no evaluation improves
    _, _, _, training_args = parse_args(flags)
    assert training_args.load_best_model_at_end and training_args.metric_for_best_model == "loss"
    run_translation(*parse_args(flags))
    history = json.loads((tmp_path / "out" / "log_history.json").read_text())
    assert max(entry["step"] for entry in history) == 4  # the first evaluation, then one without a gain


def test_early_stopping_patience_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="--early_stopping_patience must be at least 1"):
        parse_args(["--output_dir", str(tmp_path), "--early_stopping_patience", "0"])


def test_token_budget_and_length_buckets_are_not_both_given(tmp_path):
    with pytest.raises(ValueError, match="give one of them"):
        parse_args(
            ["--output_dir", str(tmp_path), "--max_tokens_per_batch", "600", "--length_bucketed_batches", "true"]
        )
