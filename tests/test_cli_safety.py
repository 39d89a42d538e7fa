"""Through the real entry points (`python -m hf_supermask`, `scripts/train_translation.py`, or their `main`): nothing is
removed or written before everything that can be checked was, a resumed run keeps its tokenizer, and a user's
mistake ends in one line naming the cause and the fix, without a traceback."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from conftest import REPO_ROOT, read_lines, training_flags
from safetensors.numpy import load_file, save_file
from transformers import AutoTokenizer

from hf_supermask.cli import main as cli_main


def _cli_error(capsys, *argv, code=1) -> str:
    """The line the command line ends with on stderr when it refuses `argv` (after progress bars, if any)."""
    with pytest.raises(SystemExit) as exited:
        cli_main(list(argv))
    assert exited.value.code == code
    return capsys.readouterr().err.rstrip("\n").split("\n")[-1]


def _run(*argv: str) -> subprocess.CompletedProcess:
    """`python -m hf_supermask ARGV` (or a script, when the first argument is one) in a fresh process."""
    command = [sys.executable, *argv] if argv[0].endswith(".py") else [sys.executable, "-m", "hf_supermask", *argv]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=600)


def _one_line_error(result: subprocess.CompletedProcess, prog: str = "hf-supermask") -> str:
    """The error line of a refused command, checked to be the last line of stderr and to come without a traceback."""
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    last = result.stderr.rstrip("\n").split("\n")[-1]
    assert last.startswith(f"{prog}: error: ")
    return last


def _snapshot(folder) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _edited_seed(trained, tmp_path):
    """A copy of the trained model whose config names another seed: the model refuses it."""
    copy = tmp_path / "edited-seed"
    shutil.copytree(trained[0], copy, ignore=shutil.ignore_patterns("checkpoint-*"))
    config = json.loads((copy / "config.json").read_text())
    config["seed"] += 5
    (copy / "config.json").write_text(json.dumps(config))
    return copy


# Item 1: a failed export leaves the previous one intact.


@pytest.mark.parametrize("command", ["export-dense", "export-ctranslate2"])
def test_a_refused_checkpoint_leaves_the_previous_export_intact(trained, tmp_path, capsys, command):
    output = tmp_path / "export"
    cli_main([command, str(trained[0]), str(output)])
    capsys.readouterr()
    before = _snapshot(output)
    error = _cli_error(capsys, command, str(_edited_seed(trained, tmp_path)), str(output), "--overwrite")
    assert error.startswith("hf-supermask: error: The random weights regenerated from seed=5")
    assert _snapshot(output) == before
    # A successful --overwrite replaces it, and leaves no staging folder behind.
    (output / "notes.txt").write_text(read_lines("test_2016_flickr", "en", 1)[0])
    cli_main([command, str(trained[0]), str(output), "--overwrite"])
    assert not (output / "notes.txt").exists() and (output / "tokenizer.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["edited-seed", "export"]


# Item 2: a resumed run writes only into its own run folder, or a new or empty one.


def test_resuming_into_another_folder_that_holds_work_is_refused(trained, tokenizer_dir, tmp_path, capsys):
    other = tmp_path / "a-users-model"
    shutil.copytree(trained[0], other, ignore=shutil.ignore_patterns("checkpoint-*"))
    before = _snapshot(other)
    checkpoint = trained[0] / "checkpoint-4"
    flags = training_flags(other, tokenizer_dir, "--do_train", "--max_steps", "8")
    error = _cli_error(capsys, "train", *flags, "--resume_from_checkpoint", str(checkpoint))
    assert error.startswith(f"hf-supermask: error: The output folder {other} is not empty (it holds ")
    assert error.endswith(
        f"a resumed run writes into the folder of its checkpoint ({trained[0]}) or into a new or empty one."
    )
    assert _snapshot(other) == before


# Item 3: --overwrite_output_dir empties nothing before the data (and everything else) passed its checks.


def test_overwrite_with_bad_data_keeps_the_old_run(trained, tokenizer_dir, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(trained[0], run)
    before = _snapshot(run)
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.en").write_text("\n".join(read_lines("train", "en", 40)) + "\n", encoding="utf-8")
    (data / "train.de").write_text("\n".join(read_lines("train", "de", 39)) + "\n", encoding="utf-8")
    flags = training_flags(run, tokenizer_dir, "--do_train", "--max_steps", "2", "--overwrite_output_dir")
    flags[flags.index("--data_dir") + 1] = str(data)
    error = _cli_error(capsys, "train", *flags)
    assert f"{data / 'train.en'} has 40 lines but {data / 'train.de'} has 39" in error
    assert _snapshot(run) == before


# Items 5 and 14: a resumed run uses its checkpoint's tokenizer, and names the tokenizer flag that differs.


def test_a_resumed_run_keeps_its_checkpoints_tokenizer(tmp_path, capsys):
    run = tmp_path / "run"
    flags = training_flags(run, "unused", "--do_train", "--tokenizer_vocab_size", "320", "--save_steps", "2")
    at = flags.index("--tokenizer_name")
    del flags[at : at + 2]  # the run trains its own tokenizer on its training split
    samples = flags.index("--max_train_samples") + 1
    flags[samples] = "100"
    cli_main(["train", *flags, "--max_steps", "2"])
    checkpoint = run / "checkpoint-2"
    trained_with = AutoTokenizer.from_pretrained(checkpoint).get_vocab()

    # Other training data would train another tokenizer: the run keeps the checkpoint's.
    flags[samples] = "150"
    cli_main(["train", *flags, "--max_steps", "4", "--resume_from_checkpoint", str(checkpoint)])
    assert AutoTokenizer.from_pretrained(run).get_vocab() == trained_with
    assert (run / "checkpoint-4").is_dir()

    # Another --tokenizer_vocab_size is refused, naming that flag (not --config_overrides).
    capsys.readouterr()
    size = flags.index("--tokenizer_vocab_size") + 1
    flags[size] = "300"
    error = _cli_error(capsys, "train", *flags, "--max_steps", "6", "--resume_from_checkpoint", str(checkpoint))
    assert "--tokenizer_vocab_size 300 in this run, 320 in the checkpoint's tokenizer" in error
    assert "--config_overrides" not in error


def test_resuming_with_another_tokenizer_is_refused(trained, tmp_path, capsys, multi30k_slice):
    from hf_supermask.tokenization import train_tokenizer

    english, german = multi30k_slice
    other = tmp_path / "other-tokenizer"
    train_tokenizer(english[:200] + german[:200], vocab_size=320, model_max_length=128).save_pretrained(other)
    checkpoint = trained[0] / "checkpoint-4"
    flags = training_flags(tmp_path / "out", other, "--do_train", "--max_steps", "8")
    error = _cli_error(capsys, "train", *flags, "--resume_from_checkpoint", str(checkpoint))
    assert f"--tokenizer_name {other} is not the tokenizer --resume_from_checkpoint {checkpoint} was trained with" in (
        error
    )
    assert not (tmp_path / "out").exists()


# Items 6, 7: the model's own reason, in one line, without a traceback.


def test_translate_prints_the_models_refusal_of_an_edited_seed(trained, tmp_path):
    text = read_lines("test_2016_flickr", "en", 1)[0]
    error = _one_line_error(_run("translate", str(_edited_seed(trained, tmp_path)), text))
    assert "The random weights regenerated from seed=5" in error and "refusing to load them" in error


def test_translate_names_a_mask_of_the_wrong_size(trained, tmp_path):
    cut = tmp_path / "cut"
    shutil.copytree(trained[0], cut, ignore=shutil.ignore_patterns("checkpoint-*"))
    masks = load_file(cut / "model.safetensors")
    name = sorted(masks)[0]
    masks[name] = masks[name][:-1]  # one byte short
    save_file(masks, cut / "model.safetensors", metadata={"format": "pt"})
    error = _one_line_error(_run("translate", str(cut), read_lines("test_2016_flickr", "en", 1)[0]))
    assert f"The checkpoint at {cut} has masks of the wrong size: [('{name}'" in error


# Item 8, 11: the wrong kind of folder.


def test_ctranslate2_backend_on_a_supermask_folder_says_how_to_make_one(trained, tmp_path, capsys):
    text = read_lines("test_2016_flickr", "en", 1)[0]
    error = _cli_error(capsys, "translate", str(trained[0]), text, "--backend", "ctranslate2")
    assert error == (
        f"hf-supermask: error: {trained[0]} is a supermask checkpoint, not a CTranslate2 model (it has no model.bin): "
        f"make one with `hf-supermask export-ctranslate2 {trained[0]} OUT` and translate OUT, or leave out --backend "
        "ctranslate2."
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    error = _cli_error(capsys, "translate", str(empty), text, "--backend", "ctranslate2")
    assert error.startswith(f"hf-supermask: error: {empty} is not a CTranslate2 model folder (it has no model.bin")
    assert "hf-supermask export-ctranslate2 CHECKPOINT OUT" in error


def test_a_folder_without_tokenizer_files_names_them(trained, tmp_path, capsys):
    folder = tmp_path / "no-tokenizer"
    shutil.copytree(trained[0], folder, ignore=shutil.ignore_patterns("checkpoint-*", "tokenizer*"))
    error = _cli_error(capsys, "translate", str(folder), read_lines("test_2016_flickr", "en", 1)[0])
    assert error.startswith(
        f"hf-supermask: error: The model folder {folder} has no tokenizer (neither tokenizer_config.json nor "
        "tokenizer.json)."
    )
    error = _cli_error(capsys, "export-dense", str(folder), str(tmp_path / "dense"))
    assert f"The checkpoint folder {folder} has no tokenizer" in error
    assert not (tmp_path / "dense").exists()


# Item 9: a beam count saved in generation_config.json.


@pytest.mark.parametrize("num_beams", [0, -2])
def test_a_saved_beam_count_below_one_is_named(trained, tmp_path, capsys, num_beams):
    folder = tmp_path / "model"
    shutil.copytree(trained[0], folder, ignore=shutil.ignore_patterns("checkpoint-*"))
    saved = json.loads((folder / "generation_config.json").read_text())
    (folder / "generation_config.json").write_text(json.dumps({**saved, "num_beams": num_beams}))
    text = read_lines("test_2016_flickr", "en", 1)[0]
    error = _cli_error(capsys, "translate", str(folder), text)
    assert error == (
        f"hf-supermask: error: The generation_config.json of {folder} sets num_beams to {num_beams}, but it must be "
        "an integer >= 1. Pass --num_beams N, or set num_beams in that file to 1 or more."
    )
    cli_main(["translate", str(folder), text, "--num_beams", "2"])  # the way out the message names
    assert len(capsys.readouterr().out.splitlines()) == 1


# Item 10: options between the model and the sentences.


def test_translate_takes_options_between_the_model_and_the_text(trained, capsys):
    texts = read_lines("test_2016_flickr", "en", 2)
    cli_main(["translate", str(trained[0]), "--num_beams", "2", texts[0], "--max_new_tokens", "8", texts[1]])
    assert len(capsys.readouterr().out.splitlines()) == 2


# Item 12: jsonl data: the file, the line, what is wrong.


def _jsonl_rows(n: int) -> list[str]:
    return [
        json.dumps({"translation": {"en": en, "de": de}}, ensure_ascii=False)
        for en, de in zip(read_lines("train", "en", n), read_lines("train", "de", n))
    ]


@pytest.mark.parametrize(
    "bad, message",
    [
        (lambda row: row.replace('"de":', '"fr":'), "the `translation` object has no 'de' entry (it has ['en', 'fr'])"),
        (lambda row: json.dumps({"translation": {**json.loads(row)["translation"], "de": None}}), "is null, not a"),
        (lambda row: json.dumps({"translation": {**json.loads(row)["translation"], "en": 7}}), "is 7, not a string"),
        (lambda row: row[: len(row) // 2], "not valid JSON (Unterminated string"),
    ],
    ids=["missing-target", "null", "number", "truncated"],
)
def test_a_bad_jsonl_line_is_named_with_file_and_line(tokenizer_dir, tmp_path, capsys, bad, message):
    rows = _jsonl_rows(40)
    rows[2] = bad(rows[2])
    train_file = tmp_path / "train.jsonl"
    train_file.write_text("\n".join(rows) + "\n", encoding="utf-8")
    flags = training_flags(tmp_path / "out", tokenizer_dir, "--do_train", "--max_steps", "2")
    flags[flags.index("--data_dir") : flags.index("--data_dir") + 2] = ["--train_file", str(train_file)]
    error = _cli_error(capsys, "train", *flags)
    assert error.startswith(f"hf-supermask: error: {train_file}, line 3") and error.split(", line 3")[1][0] in ",:"
    assert message in error
    assert not (tmp_path / "out").exists()


# Item 13: the JSON arguments file.


def test_a_malformed_arguments_file_is_named(tmp_path):
    arguments = tmp_path / "arguments.json"
    arguments.write_text('{"output_dir": "outputs/en-de",\n}\n')
    error = _one_line_error(
        _run(str(REPO_ROOT / "scripts" / "train_translation.py"), str(arguments)), "train_translation.py"
    )
    assert error.startswith(
        f"train_translation.py: error: {arguments}, line 2, column 1: not valid JSON (Expecting property name"
    )


def test_a_mistyped_flag_is_named_with_the_flag_it_resembles(tmp_path, tokenizer_dir, capsys):
    flags = training_flags(tmp_path / "out", tokenizer_dir, "--do_train", "--max_stepz", "3")
    error = _cli_error(capsys, "train", *flags)
    assert error == (
        "hf-supermask: error: Unknown arguments: --max_stepz 3 (did you mean --max_steps for --max_stepz?). "
        "`hf-supermask train --help-all` lists every flag."
    )


# Item 15: --help leads with what a user needs.


def test_train_help_is_short_and_points_to_the_full_list():
    result = _run(str(REPO_ROOT / "scripts" / "train_translation.py"), "--help")
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert lines[0].startswith("usage: train_translation.py [ARGUMENTS.json] --output_dir DIR --do_train")
    assert len(lines) < 60 and "--resume_from_checkpoint DIR" in result.stdout
    assert lines[-1].startswith("Every flag (") and lines[-1].endswith("): train_translation.py --help-all")
    everything = _run("train", "--help-all")
    assert (
        everything.stdout.startswith("usage: hf-supermask train ") and "--label_smoothing_factor" in everything.stdout
    )
