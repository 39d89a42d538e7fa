"""Smoke mode of the BLEU study (tiny shape, a few steps), so that the long script cannot rot."""

from __future__ import annotations

import json

import pytest
from conftest import DATA_DIR

from experiments.bleu_study import main
from experiments.logit_statistics import main as logit_statistics_main


def test_bleu_study_smoke_runs_resumes_and_reports(tmp_path):
    flags = [
        "--smoke",
        "true",
        "--data_dir",
        str(DATA_DIR),
        "--output_dir",
        str(tmp_path / "out"),
        "--results_dir",
        str(tmp_path / "results"),
        "--rows",
        "dense,supermask,supermask_fixed_embedding",
        "--lr_candidates",
        "supermask=5e-4,5e-3;dense=2e-3",
    ]
    table = main(flags)
    rows = {p.stem: json.loads(p.read_text()) for p in (tmp_path / "results").glob("*.json")}
    assert set(rows) == {"dense", "supermask", "supermask_fixed_embedding"}
    for row in rows.values():
        assert row["test_bleu"] is not None and row["curve"] and row["checkpoint_weights_bytes"] > 0
        # decoding chosen on validation from the whole grid, and saved with the row's model
        assert len(row["decoding_validation_bleu"]) == 4 and set(row["decoding"]) == {
            "no_repeat_ngram_size",
            "length_penalty",
        }
        saved = json.loads((tmp_path / "out" / row["row"] / "generation_config.json").read_text())
        assert saved["num_beams"] == row["num_beams"] == 2
        assert saved.get("no_repeat_ngram_size", 0) == row["decoding"]["no_repeat_ngram_size"]
    assert set(rows["supermask"]["learning_rate_probes"]) == {"0.0005", "0.005"}
    assert rows["supermask"]["learning_rate"] in (5e-4, 5e-3)
    assert rows["dense"]["learning_rate"] == 2e-3 and rows["dense"]["learning_rate_probes"] == {}  # given, not probed
    assert "| updates | dense | supermask | supermask_fixed_embedding |" in table  # the curves, side by side
    assert "supermask_fixed_embedding" in table and (tmp_path / "results" / "bleu_curves.png").stat().st_size > 0
    # each row records its machine; a ratio to a dense row from another kind of machine is flagged
    assert rows["dense"]["machine"]["cpu"] and rows["dense"]["machine"]["threads"] == 1
    assert "Machines: dense:" in table and "not comparable" not in table
    from experiments.bleu_study import write_report

    other = tmp_path / "other_machine"
    other.mkdir()
    for name in ("dense", "supermask"):
        (other / f"{name}.json").write_text(json.dumps(rows[name]))
    moved = {**rows["supermask"], "machine": {**rows["supermask"]["machine"], "cpu": "another CPU"}}
    (other / "supermask.json").write_text(json.dumps(moved))
    assert "(other machine: not comparable)" in write_report(other).split("| supermask |")[1].splitlines()[0]
    # the output-layer statistics: a supermask's last hidden states have the fixed norm sqrt(d_model) (smoke: 32)
    stats = logit_statistics_main(
        [
            str(tmp_path / "out" / "supermask"),
            str(tmp_path / "out" / "dense"),
            "--data_dir",
            str(DATA_DIR),
            "--max_pairs",
            "8",
        ]
    )
    supermask_stats = stats[str(tmp_path / "out" / "supermask")]
    # Affine-free LayerNorm pins |h| at sqrt(d_model); the dense export folds output_scale into the last one.
    output_scale = json.loads((tmp_path / "out" / "supermask" / "config.json").read_text())["output_scale"]
    assert abs(supermask_stats["hidden_norm"] - output_scale * 32**0.5) < 1e-2
    assert all(0 < s["mean_gold_probability"] < 1 and s["loss"] > 0 for s in stats.values())
    # a finished row ships as a mask-only folder with a card stating its measured scores
    from transformers import pipeline

    from experiments.bleu_study import ship_row

    shipped = ship_row(tmp_path / "results", tmp_path / "out", "supermask", tmp_path / "shipped")
    assert {p.name for p in shipped.iterdir()} >= {"config.json", "model.safetensors", "tokenizer.json", "README.md"}
    # its remote code, so that it loads with trust_remote_code=True alone; no training checkpoint
    assert {"modeling_supermask.py", "pipeline_translation.py"} <= {p.name for p in shipped.glob("*.py")}
    assert not list(shipped.glob("checkpoint-*"))
    card = (shipped / "README.md").read_text()
    assert f"| BLEU | {rows['supermask']['test_bleu']:.2f} |" in card and "scripts/bleu_study.py" in card
    assert pipeline("translation", model=str(shipped), device="cpu")(["A dog runs."], max_new_tokens=4)
    # a second run resumes: nothing is retrained
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "results").glob("*.json")}
    main(flags)
    assert before == {p.name: p.stat().st_mtime_ns for p in (tmp_path / "results").glob("*.json")}
    # a row rerun reuses its finished learning-rate probes
    probes = sorted((tmp_path / "out" / "probes").glob("supermask-lr*/all_results.json"))
    assert len(probes) == 2
    probe_times = [p.stat().st_mtime_ns for p in probes]
    (tmp_path / "results" / "supermask.json").unlink()
    main(flags)
    assert [p.stat().st_mtime_ns for p in probes] == probe_times
    rerun = json.loads((tmp_path / "results" / "supermask.json").read_text())
    assert rerun["learning_rate_probes"] == rows["supermask"]["learning_rate_probes"]


def test_decoding_grid_is_every_combination():
    from experiments.bleu_study import decoding_grid

    grid = decoding_grid("no_repeat_ngram_size=0,3;length_penalty=1.0,1.5")
    assert grid == [
        {"no_repeat_ngram_size": 0, "length_penalty": 1.0},
        {"no_repeat_ngram_size": 0, "length_penalty": 1.5},
        {"no_repeat_ngram_size": 3, "length_penalty": 1.0},
        {"no_repeat_ngram_size": 3, "length_penalty": 1.5},
    ]
    assert isinstance(grid[2]["no_repeat_ngram_size"], int)
    assert decoding_grid("") == [{}]  # one candidate: the model's own settings


def test_lever_probes_and_resume_inside_a_row(tmp_path):
    """Lever probes run next to a baseline and land in the report; an interrupted row resumes from its checkpoint."""
    base = [
        "--smoke",
        "true",
        "--data_dir",
        str(DATA_DIR),
        "--output_dir",
        str(tmp_path / "out"),
        "--results_dir",
        str(tmp_path / "results"),
        "--rows",
        "supermask",
    ]
    levers = "logits_x4:output_scale=4;smoothing:label_smoothing_factor=0.1,max_grad_norm=0.5;rate:learning_rate=4e-3"
    table = main([*base, "--levers", levers, "--recipe", "adam_beta2=0.98"])
    probes = json.loads((tmp_path / "results" / "levers" / "supermask.json").read_text())
    assert set(probes) == {"baseline", "logits_x4", "smoothing", "rate"}
    assert probes["rate"]["learning_rate"] == 4e-3 and probes["baseline"]["learning_rate"] == 2e-3

    def first_rate(name):  # the rate the probe's Trainer ran with (its first logged step)
        history = json.loads((tmp_path / "out" / "levers" / "supermask" / name / "log_history.json").read_text())
        return next(e["learning_rate"] for e in history if "learning_rate" in e)

    assert first_rate("rate") == pytest.approx(2 * first_rate("baseline"))
    assert probes["logits_x4"]["recipe"]["output_scale"] == "4" and "output_scale" not in probes["baseline"]["recipe"]
    assert all(p["recipe"]["adam_beta2"] == "0.98" for p in probes.values())  # --recipe applies to every probe
    saved = json.loads((tmp_path / "out" / "levers" / "supermask" / "logits_x4" / "config.json").read_text())
    assert saved["output_scale"] == 4.0
    assert probes["smoothing"]["train_target_tokens_per_second"] > 0
    assert "| supermask | logits_x4 | output_scale=4 |" in table
    assert "test BLEU" not in table and "target tokens/s" in table  # probes only: no empty row table
    speed = f"| {probes['smoothing']['train_target_tokens_per_second']:.0f} |"
    assert any(line.startswith("| supermask | smoothing |") and line.endswith(speed) for line in table.splitlines())
    assert not (tmp_path / "results" / "supermask.json").exists()  # probing does not run the row
    # the same probes again are reused; under another recipe they are refused, never reported as the new recipe's
    main([*base, "--levers", levers, "--recipe", "adam_beta2=0.98"])
    with pytest.raises(ValueError, match="holds a run of"):
        main([*base, "--levers", levers, "--recipe", "adam_beta2=0.95"])

    # A row interrupted after its first checkpoint continues from it with the same command.
    from experiments import bleu_study as study_module

    calls = []
    real = study_module.run_translation

    def interrupted(*args, **kwargs):
        calls.append(args[3].resume_from_checkpoint)
        if len(calls) == 1:
            args[3].max_steps = 2  # stop after the first evaluation's checkpoint, as a killed run would
            real(*args, **kwargs)
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    study_module.run_translation = interrupted
    try:
        try:
            main(base)
        except KeyboardInterrupt:
            pass
        main(base)
    finally:
        study_module.run_translation = real
    assert calls[0] is None and calls[1].endswith("checkpoint-2")
    row = json.loads((tmp_path / "results" / "supermask.json").read_text())
    assert [p["step"] for p in row["curve"]][-1] == 4 and row["git_commit"]
    assert set(row["lever_probes"]) == {"baseline", "logits_x4", "smoothing", "rate"}

    # Two processes probing other levers of one row into one file: what the other wrote mid-run is kept.
    target = tmp_path / "results" / "levers" / "supermask.json"
    real_probe = study_module._run_probe

    def other_process_writes(*args, **kwargs):
        found = json.loads(target.read_text())
        found.setdefault("other_process", dict(found["baseline"], settings="dropout=0"))
        target.write_text(json.dumps(found))
        return real_probe(*args, **kwargs)

    study_module._run_probe = other_process_writes
    try:
        table = main([*base, "--levers", levers, "--recipe", "adam_beta2=0.98"])  # every probe reused
    finally:
        study_module._run_probe = real_probe
    assert set(json.loads(target.read_text())) == {"baseline", "logits_x4", "smoothing", "rate", "other_process"}
    assert "| supermask | other_process | dropout=0 |" in table


def test_frontier_table_measures_what_each_row_stores(tmp_path):
    """A two-coat row through the study's smoke mode, then `scripts/frontier.py table`: the row's JSON gains its stored
    bits (packed as saved, and coded after re-saving), and the table and figure are written."""
    from experiments.frontier import main as frontier_main

    variant = tmp_path / "results" / "coats_2"
    flags = ["--smoke", "true", "--data_dir", str(DATA_DIR), "--rows", "dense,supermask", "--recipe", "coats=2"]
    main([*flags, "--output_dir", str(tmp_path / "out" / "coats_2"), "--results_dir", str(variant)])
    frontier_main(
        [
            "table",
            "--results_dir",
            str(tmp_path / "results"),
            "--checkpoints_dir",
            str(tmp_path / "out"),
            "--dense_row",
            str(variant / "dense.json"),
            "--references_json",
            "",
        ]
    )
    row = json.loads((variant / "supermask.json").read_text())
    from hf_supermask.modeling import SupermaskForConditionalGeneration

    saved = SupermaskForConditionalGeneration.from_pretrained(tmp_path / "out" / "coats_2" / "supermask")
    assert row["maskable_weights"] == sum(m.weight.numel() for m in saved.masked_modules.values())
    assert row["stored_bits_per_weight"] == 8 * row["checkpoint_weights_bytes"] / row["maskable_weights"]
    # coat 1 over every weight, coat 2 over half of them: 1.5 bits, plus the file's header (large for a tiny model)
    assert 1.5 < row["stored_bits_per_weight"] < 2.5
    assert 0 < row["stored_bits_per_weight_coded"] and row["coded_weights_bytes"] > 0
    points = json.loads((tmp_path / "results" / "frontier.json").read_text())["points"]
    assert {(p["variant"], p["encoding"]) for p in points} == {
        ("2 coats (ratio 0.5)", "packed"),
        ("2 coats (ratio 0.5)", "initial_xor_lzma"),
    }
    assert (tmp_path / "results" / "frontier.png").stat().st_size > 0
