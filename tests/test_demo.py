"""`make demo`'s script, run on a trained tiny model instead of the shipped one (the shipped one has its own guard)."""

from __future__ import annotations

import json

from conftest import DATA_DIR, REPO_ROOT

from hf_supermask.demo import main


def test_demo_uses_a_found_model_then_finds_masks(trained, tmp_path, capsys):
    model_dir, _ = trained
    summary = main(
        [
            "--model",
            str(model_dir),
            "--data_dir",
            str(DATA_DIR),
            "--max_test_samples",
            "8",
            "--train_steps",
            "4",
            "--eval_steps",
            "2",
            "--output_dir",
            str(tmp_path / "demo"),
            "--threads",
            "1",
            "--dense_reference",
            str(REPO_ROOT / "benchmarks/bleu_study/first_study/dense.json"),
        ]
    )
    out = capsys.readouterr().out
    used, found = summary["used"], summary["found"]
    assert used["test_sentences"] == 8 and 0 <= used["test_bleu"] <= 100 and used["sentences_per_second"] > 0
    assert used["weights_bytes"] * 20 < used["dense_fp32_weights_bytes"]
    assert [step for step, _ in found["curve"]] == [2, 4]  # every evaluation once (the final one repeats update 4)
    assert "validation BLEU" in out and "test BLEU" in out and "x smaller" in out
    assert "the dense MarianMTModel of the same shape" in out  # the study's dense row, side by side
    assert json.loads((tmp_path / "demo" / "demo_summary.json").read_text())["used"]["test_sentences"] == 8
