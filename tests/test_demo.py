"""`make demo`'s script, run on a trained tiny model instead of the shipped one (the shipped one has its own guard)."""

from __future__ import annotations

import json

import pytest
from conftest import DATA_DIR, REPO_ROOT

from experiments.demo import DEMO_MARKER, main


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


def test_demo_refuses_a_folder_it_did_not_write(trained, tmp_path):
    """A user's folder is never emptied by the demo (it used to pass --overwrite_output_dir whatever was there); the
    refusal comes before any work."""
    model_dir, _ = trained
    users = tmp_path / "mine"
    (users / "chapter").mkdir(parents=True)
    (users / "thesis.txt").write_text("two years of work")
    with pytest.raises(SystemExit) as refused:
        main(["--model", str(model_dir), "--data_dir", str(DATA_DIR), "--output_dir", str(users), "--train_steps", "0"])
    assert "not written by an earlier demo" in str(refused.value) and str(users) in str(refused.value)
    assert (users / "thesis.txt").read_text() == "two years of work" and (users / "chapter").is_dir()


def test_demo_replaces_its_own_earlier_output(trained, tmp_path):
    model_dir, _ = trained
    flags = ["--model", str(model_dir), "--data_dir", str(DATA_DIR), "--max_test_samples", "4", "--threads", "1"]
    flags += ["--output_dir", str(tmp_path / "demo"), "--train_steps", "2", "--eval_steps", "2"]
    main(flags)
    assert (tmp_path / "demo" / DEMO_MARKER).is_file()
    summary = main(flags)  # the second run replaces the first one's folder
    assert summary["found"]["curve"] and (tmp_path / "demo" / "model.safetensors").is_file()


def test_demo_without_data_says_where_it_looked_in_one_line(trained, tmp_path, monkeypatch):
    model_dir, _ = trained
    monkeypatch.chdir(tmp_path)  # no ../shared/data/multi30k from here, and the tests run offline
    with pytest.raises(SystemExit) as refused:
        main(["--model", str(model_dir), "--output_dir", str(tmp_path / "demo"), "--train_steps", "0"])
    message = str(refused.value)
    assert message.startswith("demo: error: No parallel data found") and "\n" not in message
    assert "--data_dir" in message and "../shared/data/multi30k" in message and "bentrevett/multi30k" in message
