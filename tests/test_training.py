"""End-to-end training on a slice of Multi30k: output folder, model card, reload, exact resume, dense baseline."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from conftest import training_flags
from safetensors import safe_open
from transformers import AutoModelForSeq2SeqLM, TrainerCallback, pipeline

from hf_supermask import SupermaskForConditionalGeneration
from hf_supermask.training import SupermaskArguments, build_optimizer, parse_args, run_translation


def _args(output_dir, tokenizer_dir, *extra):
    return parse_args(training_flags(output_dir, tokenizer_dir, *extra))


def _run(output_dir, tokenizer_dir, *extra, callbacks=None):
    return run_translation(*_args(output_dir, tokenizer_dir, *extra), callbacks=callbacks)


def test_output_folder_is_what_a_user_needs(trained):
    output_dir, results = trained
    files = {p.name for p in output_dir.iterdir()}
    for name in (
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "README.md",
        "training_curves.png",
        "modeling_supermask.py",
        "pipeline_translation.py",
    ):
        assert name in files, name
    assert "training_args.bin" not in files and "optimizer.pt" not in files
    with safe_open(output_dir / "model.safetensors", framework="pt") as reader:
        assert {reader.get_slice(k).get_dtype() for k in reader.keys()} == {"U8"}
    generation = json.loads((output_dir / "generation_config.json").read_text())
    assert generation["max_length"] == 24 and generation["bad_words_ids"] == [[generation["pad_token_id"]]]
    for key in ("test_bleu", "test_chrf", "eval_bleu", "checkpoint_weights_bytes", "dense_fp32_weights_bytes"):
        assert key in results, key
    assert results["dense_fp32_weights_bytes"] > 5 * results["checkpoint_weights_bytes"]
    assert len(results["examples"]) == 2 and all(e["translation"] is not None for e in results["examples"])


def test_intermediate_checkpoints_keep_scores_for_resuming(trained):
    output_dir, _ = trained
    checkpoint = output_dir / "checkpoint-4"
    with safe_open(checkpoint / "model.safetensors", framework="pt") as reader:
        kinds = {k.rsplit(".", 1)[-1]: reader.get_slice(k).get_dtype() for k in reader.keys()}
    assert kinds == {"scores": "F32", "mask": "U8"}
    assert (checkpoint / "optimizer.pt").exists() and (checkpoint / "rng_state.pth").exists()


def test_model_card_metadata(trained):
    output_dir, results = trained
    text = (output_dir / "README.md").read_text()
    metadata = yaml.safe_load(text.split("---")[1])
    assert metadata["language"] == ["en", "de"] and metadata["pipeline_tag"] == "translation"
    assert "supermask" in metadata["tags"] and metadata["library_name"] == "transformers"
    values = {m["type"]: m["value"] for m in metadata["model-index"][0]["results"][0]["metrics"]}
    assert values["bleu"] == pytest.approx(results["test_bleu"], abs=0.01)
    assert values["chrf"] == pytest.approx(results["test_chrf"], abs=0.01)
    assert "non-commercial" in text.lower() and "training_curves.png" in text
    # The architecture table lists what defines the model, not every config.json field
    architecture = text.split("### Architecture")[1].split("##")[0]
    config = json.loads((output_dir / "config.json").read_text())
    for field in (
        "d_model",
        "share_layers",
        "density",
        "weight_init",
        "seed",
        "generator_version",
        "weights_sha256",
        "masks_sha256",
    ):
        assert f"| `{field}` | `{config[field]}` |" in architecture, field
    for noise in ("id2label", "chunk_size_feed_forward", "output_hidden_states", "problem_type", "auto_map"):
        assert noise not in architecture
    assert f"{results['bits_per_maskable_weight']:.3f} bits per" in text


def test_log_history_has_time_and_mask_changes(trained):
    output_dir, _ = trained
    history = json.loads((output_dir / "log_history.json").read_text())
    evaluations = [entry for entry in history if "eval_bleu" in entry]
    assert len(evaluations) >= 2
    assert all("elapsed_seconds" in entry for entry in history)
    assert all(0.0 <= e["eval_mask_changed_fraction"] <= 1.0 for e in evaluations)
    assert evaluations[0]["eval_mask_changed_fraction"] > 0  # 4 steps at lr 5e-3 move some mask bits


def test_reload_translates_identically(trained, tiny_tokenizer):
    output_dir, results = trained
    model = AutoModelForSeq2SeqLM.from_pretrained(output_dir)
    assert isinstance(model, SupermaskForConditionalGeneration)
    sources = [e["source"] for e in results["examples"]]
    batch = tiny_tokenizer(sources, return_tensors="pt", padding=True)
    expected = tiny_tokenizer.batch_decode(model.generate(**batch), skip_special_tokens=True)
    assert [e["translation"] for e in results["examples"]] == expected
    translator = pipeline("translation", model=str(output_dir))
    assert [r["translation_text"] for r in translator(sources)] == expected


class _Interrupt(TrainerCallback):
    """Stops training after `step` steps, as a killed job would (its last checkpoint is what remains)."""

    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= self.step:
            control.should_training_stop = True
            control.should_save = True


def _masks(output_dir):
    model = AutoModelForSeq2SeqLM.from_pretrained(output_dir)
    return {name: m.current_mask() for name, m in model.masked_modules.items()}


def test_interrupted_and_resumed_run_ends_with_identical_masks(tmp_path, tokenizer_dir):
    common = ("--do_train", "--max_steps", "8", "--save_steps", "4")  # dropout stays on (0.1): RNG state resumes too
    _run(tmp_path / "straight", tokenizer_dir, *common)
    _run(tmp_path / "resumed", tokenizer_dir, *common, callbacks=[_Interrupt(4)])
    assert (tmp_path / "resumed" / "checkpoint-4").exists()
    _run(
        tmp_path / "resumed",
        tokenizer_dir,
        *common,
        "--resume_from_checkpoint",
        str(tmp_path / "resumed" / "checkpoint-4"),
    )
    straight, resumed = _masks(tmp_path / "straight"), _masks(tmp_path / "resumed")
    interrupted_at_4 = AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "resumed" / "checkpoint-4")
    assert any(not torch.equal(m.current_mask(), straight[n]) for n, m in interrupted_at_4.masked_modules.items())
    assert all(torch.equal(straight[name], resumed[name]) for name in straight)


def test_dense_marian_baseline_runs_with_the_same_pipeline(tmp_path, tokenizer_dir):
    results = _run(
        tmp_path / "marian",
        tokenizer_dir,
        "--model_type",
        "marian",
        "--do_train",
        "--do_predict",
        "--predict_with_generate",
        "--max_steps",
        "4",
    )
    assert results["model_type"] == "marian" and "test_bleu" in results
    model = AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "marian")
    assert type(model).__name__ == "MarianMTModel" and model.config.d_model == 32
    assert results["checkpoint_weights_bytes"] == results["dense_fp32_weights_bytes"]


def test_scores_get_their_own_learning_rate(tokenizer_dir, tmp_path):
    model_args, data_args, _, training_args = _args(tmp_path, tokenizer_dir, "--learning_rate", "1e-4")
    from conftest import tiny_config

    from hf_supermask import SupermaskForConditionalGeneration as Model

    model = Model(tiny_config())
    optimizer = build_optimizer(
        model, training_args, SupermaskArguments(score_learning_rate=0.02, score_weight_decay=0.0)
    )
    assert [group["lr"] for group in optimizer.param_groups] == [0.02]
    assert optimizer.param_groups[0]["weight_decay"] == 0.0
    assert len(optimizer.param_groups[0]["params"]) == len(model.masked_modules)
    assert build_optimizer(model, training_args, SupermaskArguments()) is None  # the Trainer's own optimizer
    frozen = build_optimizer(model, training_args, SupermaskArguments(score_learning_rate=0.0))  # 0.0 is a rate too
    assert [group["lr"] for group in frozen.param_groups] == [0.0]


def test_json_file_then_overriding_flags(tmp_path):
    from conftest import REPO_ROOT

    demo = REPO_ROOT / "scripts" / "supermask_en_de.json"
    model_args, data_args, _, training_args = parse_args(
        [str(demo), "--max_steps", "20", "--output_dir", str(tmp_path)]
    )
    assert (training_args.max_steps, training_args.output_dir, training_args.do_train) == (20, str(tmp_path), True)
    assert data_args.num_beams == 5 and "d_model=256" in model_args.config_overrides  # from the file
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({**json.loads(demo.read_text()), "max_step": 20}))
    with pytest.raises(
        ValueError, match=r"wrong.json has keys that are no arguments of the training script: \['max_step'\]"
    ):
        parse_args([str(wrong)])


def test_the_model_loaded_decides_what_it_is(trained, tokenizer_dir, tmp_path):
    """--model_name_or_path of a dense Marian folder, with --model_type left at its default (supermask)."""
    from hf_supermask.export import export_dense_folder

    export_dense_folder(trained[0], tmp_path / "dense")
    results = _run(
        tmp_path / "out",
        tokenizer_dir,
        "--model_name_or_path",
        str(tmp_path / "dense"),
        "--do_eval",
        "--num_examples",
        "0",
    )
    assert results["model_type"] == "marian" and results["eval_loss"] > 0


def test_command_line_translate_and_export(trained, tmp_path):
    import subprocess
    import sys

    from transformers import MarianMTModel

    from hf_supermask.cli import main as cli_main
    from hf_supermask.export import export_dense_folder

    output_dir, results = trained
    source = results["examples"][0]["source"]
    expected = pipeline("translation", model=str(output_dir))(source, num_beams=2)[0]["translation_text"]
    completed = subprocess.run(
        [sys.executable, "-m", "hf_supermask", "translate", str(output_dir), source, "--num_beams", "2"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert completed.stdout.rstrip("\n").split("\n")[-1] == expected

    cli_main(["export-dense", str(output_dir), str(tmp_path / "dense")])
    dense = MarianMTModel.from_pretrained(tmp_path / "dense")
    dense_translator = pipeline("translation", model=str(tmp_path / "dense"))
    assert dense_translator(source, num_beams=2)[0]["translation_text"] == expected
    with pytest.raises(ValueError, match="not a supermask"):
        export_dense_folder(tmp_path / "dense", tmp_path / "again")
    assert dense.config.model_type == "marian"


def test_length_bucketed_batches_train(tokenizer_dir, tmp_path):
    from hf_supermask.training import load_data, load_tokenizer, parse_args, tokenize

    model_args, data_args, _, training_args = parse_args(
        training_flags(tmp_path / "out", tokenizer_dir, "--do_train", "--max_steps", "4", "--length_bucketed_batches")
    )
    raw = load_data(model_args, data_args, training_args)
    train = tokenize(raw, load_tokenizer(model_args, data_args, training_args, raw), data_args, training_args)["train"]
    assert len(train) == 4 * 16 and training_args.train_sampling_strategy == "sequential"
    lengths = [len(s) + len(t) for s, t in zip(train["input_ids"], train["labels"])]
    spread = [max(lengths[i : i + 16]) - min(lengths[i : i + 16]) for i in range(0, 64, 16)]
    assert max(spread) < (max(lengths) - min(lengths)) / 2  # each batch holds similar lengths
