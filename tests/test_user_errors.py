"""Mistakes are refused before they cost or destroy work, with a message that names the problem and the way out (the
README's "Troubleshooting" lists these messages). Nothing here trains: every refusal comes before training."""

from __future__ import annotations

import io
import json
import shutil
import sys

import pytest
from conftest import SHAPE, read_lines, training_flags
from transformers import AutoConfig

from hf_supermask.cli import main as cli_main
from hf_supermask.data import load_translation_dataset
from hf_supermask.training import parse_args, run_translation


def _cli_error(capsys, *argv, code=1) -> str:
    """What the command line prints on stderr when it refuses `argv`."""
    with pytest.raises(SystemExit) as exited:
        cli_main(list(argv))
    assert exited.value.code == code
    return capsys.readouterr().err


def _copy_run(trained, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(trained[0], copy)
    return copy


# 1. A finished model is not overwritten by a new run into its folder.


def test_training_refuses_a_folder_that_holds_a_model(trained, tokenizer_dir, capsys):
    output_dir, _ = trained
    before = {p.name: p.stat().st_mtime_ns for p in output_dir.iterdir()}
    error = _cli_error(capsys, "train", *training_flags(output_dir, tokenizer_dir, "--do_train", "--max_steps", "2"))
    assert error.startswith(f"hf-supermask: error: The output folder {output_dir} is not empty (it holds ")
    assert "checkpoint-4" in error and "pass --overwrite_output_dir to delete its contents first" in error
    assert f"or continue the run it holds with --resume_from_checkpoint {output_dir / 'checkpoint-8'}." in error
    assert before == {p.name: p.stat().st_mtime_ns for p in output_dir.iterdir()}


def test_overwrite_output_dir_empties_the_folder_but_never_an_input(trained, tokenizer_dir, tmp_path):
    from hf_supermask.training import check_run

    copy = _copy_run(trained, tmp_path)
    # Continuing the run the folder holds needs no flag, and empties nothing.
    resume = ["--resume_from_checkpoint", str(copy / "checkpoint-8")]
    assert check_run(*parse_args(training_flags(copy, tokenizer_dir, "--do_train", *resume))) is False
    # The tokenizer this run reads lies inside the folder: emptying it is refused.
    shutil.copytree(tokenizer_dir, copy / "tokenizer")
    args = parse_args(training_flags(copy, copy / "tokenizer", "--do_train", "--overwrite_output_dir"))
    with pytest.raises(
        ValueError,
        match=f"--overwrite_output_dir would empty {copy}, which holds {copy / 'tokenizer'} "
        r"\(an input of this run\)",
    ):
        check_run(*args)
    # check_run only decides; the run empties the folder once everything else has been checked too.
    assert check_run(*parse_args(training_flags(copy, tokenizer_dir, "--do_train", "--overwrite_output_dir"))) is True
    assert (copy / "model.safetensors").exists()


# 2. Resuming builds the model the checkpoint was trained as.


@pytest.mark.parametrize(
    "flags, differences",
    [
        (
            ["--config_overrides", SHAPE + ",seed=7", "--density", "0.25"],
            [
                "density (--density): 0.5 in the checkpoint, 0.25 in this run",
                "seed (--config_overrides seed=N): 0 in the checkpoint, 7 in this run",
            ],
        ),
        (
            ["--weight_init", "kaiming_uniform"],
            ["weight_init (--weight_init): 'signed_constant' in the checkpoint, 'kaiming_uniform' in this run"],
        ),
        (
            ["--config_overrides", SHAPE.replace("d_model=32", "d_model=64")],
            ["d_model (--config_overrides): 32 in the checkpoint, 64 in this run"],
        ),
        (
            ["--model_type", "marian"],
            ["model_type (--model_type): 'supermask' in the checkpoint, 'marian' in this run"],
        ),
    ],
)
def test_resuming_with_other_weights_names_each_differing_field(trained, tokenizer_dir, tmp_path, flags, differences):
    checkpoint = trained[0] / "checkpoint-4"
    args = training_flags(
        tmp_path / "out",
        tokenizer_dir,
        "--do_train",
        "--max_steps",
        "8",
        "--resume_from_checkpoint",
        str(checkpoint),
        *flags,
    )
    with pytest.raises(ValueError) as error:
        run_translation(*parse_args(args))
    message = str(error.value)
    assert message.startswith(f"--resume_from_checkpoint {checkpoint} was trained with another model than this run")
    assert "; ".join(differences) in message
    assert message.endswith("Resume with the checkpoint's settings, or start a new run in another --output_dir.")
    assert not (tmp_path / "out").exists()


# 3. export-dense writes only into a new or empty folder, and never into the checkpoint.


def test_export_dense_refuses_to_destroy_or_mix(trained, tmp_path, capsys):
    output_dir, _ = trained
    before = {p.name: p.stat().st_mtime_ns for p in output_dir.iterdir()}
    inside = f"is the checkpoint {output_dir} or inside it: the dense model would replace or sit among its masks"
    assert inside in _cli_error(capsys, "export-dense", str(output_dir), str(output_dir))
    assert inside in _cli_error(capsys, "export-dense", str(output_dir), str(output_dir), "--overwrite")
    assert inside in _cli_error(capsys, "export-dense", str(output_dir), str(output_dir / "dense"), "--overwrite")
    a_file = tmp_path / "notes.txt"
    a_file.write_text(read_lines("test_2016_flickr", "en", 1)[0])
    error = _cli_error(capsys, "export-dense", str(output_dir), str(a_file))
    assert f"error: The output folder {a_file} is a file" in error
    folder = tmp_path / "folder"
    folder.mkdir()
    shutil.copy(a_file, folder / "notes.txt")
    error = _cli_error(capsys, "export-dense", str(output_dir), str(folder))
    assert f"error: The output folder {folder} is not empty (it holds notes.txt)" in error and "--overwrite" in error
    # The parent of the checkpoint holds it: emptying the parent would delete the checkpoint.
    error = _cli_error(capsys, "export-dense", str(output_dir), str(output_dir.parent), "--overwrite")
    assert f"--overwrite would empty {output_dir.parent}, which holds {output_dir}" in error
    assert before == {p.name: p.stat().st_mtime_ns for p in output_dir.iterdir()}

    cli_main(["export-dense", str(output_dir), str(folder), "--overwrite"])
    assert not (folder / "notes.txt").exists() and AutoConfig.from_pretrained(folder).model_type == "marian"


# 4. Invalid UTF-8 in a data file: which file, which line.


def _write_pairs(folder, split, english, german):
    folder.mkdir(exist_ok=True)
    (folder / f"{split}.en").write_bytes(b"".join(line + b"\n" for line in english))
    (folder / f"{split}.de").write_bytes(b"".join(line + b"\n" for line in german))


def _real(split, lang, n):
    return [line.encode() for line in read_lines(split, lang, n)]


def test_invalid_utf8_in_a_text_file_names_the_file_and_line(tmp_path):
    german = _real("train", "de", 5)
    german[2] = german[2][:4] + b"\xff" + german[2][4:]  # a Latin-1 byte in the third line
    _write_pairs(tmp_path, "train", _real("train", "en", 5), german)
    with pytest.raises(ValueError) as error:
        load_translation_dataset(data_dir=tmp_path)
    assert str(error.value).startswith(
        f"{tmp_path / 'train.de'}, line 3: invalid UTF-8 (byte 0xff at byte 5 of the line"
    )
    assert "Save the text as UTF-8" in str(error.value)


def test_invalid_utf8_in_a_jsonlines_file_names_the_file_and_line(tmp_path):
    rows = [
        json.dumps({"translation": {"en": en, "de": de}}, ensure_ascii=False).encode()
        for en, de in zip(read_lines("val", "en", 4), read_lines("val", "de", 4))
    ]
    rows[3] = rows[3][:-3] + b"\xe9" + rows[3][-3:]
    path = tmp_path / "validation.jsonl"
    path.write_bytes(b"\n".join(rows) + b"\n")
    with pytest.raises(ValueError, match=rf"^{path}, line 4: invalid UTF-8 \(byte 0xe9 "):
        load_translation_dataset(validation_file=path, cache_dir=tmp_path / "cache")


# 5. Every split the run will use is checked before training.


@pytest.mark.parametrize(
    "empty, flags, message",
    [
        (
            "val",
            ["--do_train", "--do_eval"],
            "The 'validation' split (val.en and val.de in {data}) has no sentence pairs, but --do_eval needs it.",
        ),
        (
            "train",
            ["--do_train"],
            "The 'train' split (train.en and train.de in {data}) has no sentence pairs, but --do_train needs it.",
        ),
        (
            "test_2016_flickr",
            ["--do_train", "--do_predict"],
            "--do_predict needs a 'test' split, but the data has none (only ['train', 'validation']).",
        ),
    ],
)
def test_splits_the_run_uses_are_checked_before_training(tokenizer_dir, tmp_path, empty, flags, message):
    data = tmp_path / "data"
    for split in ("train", "val"):
        _write_pairs(data, split, *(([], []) if split == empty else (_real(split, "en", 40), _real(split, "de", 40))))
    args = training_flags(tmp_path / "out", tokenizer_dir, "--data_dir", str(data), "--max_steps", "2", *flags)
    with pytest.raises(ValueError) as error:
        run_translation(*parse_args(args))
    assert str(error.value).startswith(message.format(data=data))
    assert not (tmp_path / "out").exists()  # refused before anything was trained or written


# 7 and 8. translate: a folder that does not exist; text that is not UTF-8.


def test_translate_says_the_model_folder_does_not_exist(tmp_path, capsys):
    missing = tmp_path / "outputs" / "no-such-model"
    error = _cli_error(capsys, "translate", str(missing), "A man.")
    assert error == (
        f"hf-supermask: error: The model folder {missing} does not exist. (A Hub id has the form "
        "`user/name`, e.g. `Helsinki-NLP/opus-mt-en-de`.)\n"
    )


@pytest.mark.parametrize("bad", [b"\xff", b"\xed\xa0\x80"], ids=["latin1-byte", "lone-surrogate"])
def test_translate_names_the_input_line_that_is_not_utf8(trained, monkeypatch, capsys, bad):
    lines = _real("test_2016_flickr", "en", 3)
    lines[1] = lines[1][:6] + bad + lines[1][6:]
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"\n".join(lines) + b"\n")))
    error = _cli_error(capsys, "translate", str(trained[0]))
    assert error.startswith(
        f"hf-supermask: error: standard input, line 2: invalid UTF-8 (byte 0x{bad[0]:02x} at byte 7"
    )


def test_translate_names_the_argument_that_is_not_utf8(trained, capsys):
    text = read_lines("test_2016_flickr", "en", 1)[0] + "\udcff"  # how Python passes an undecodable argument byte
    error = _cli_error(capsys, "translate", str(trained[0]), "A man.", text)
    assert f"error: Argument 2 ({text!r}) is not valid UTF-8" in error


def test_translate_checks_its_numbers(trained, capsys):
    error = _cli_error(capsys, "translate", str(trained[0]), "A man.", "--num_beams", "0", code=2)
    assert "argument --num_beams: must be at least 1, got 0" in error


# 9. A checkpoint damaged by a run stopped while saving.


@pytest.mark.parametrize("cut, reason", [(0, "it is empty"), (0.5, "it is not a complete torch archive")])
def test_a_damaged_checkpoint_is_named_with_an_earlier_one(trained, tokenizer_dir, tmp_path, cut, reason):
    copy = _copy_run(trained, tmp_path)
    optimizer = copy / "checkpoint-8" / "optimizer.pt"
    optimizer.write_bytes(optimizer.read_bytes()[: int(cut * optimizer.stat().st_size)])
    args = training_flags(
        copy, tokenizer_dir, "--do_train", "--max_steps", "12", "--resume_from_checkpoint", str(copy / "checkpoint-8")
    )
    with pytest.raises(ValueError) as error:
        run_translation(*parse_args(args))
    assert str(error.value) == (
        f"optimizer.pt of checkpoint {copy / 'checkpoint-8'} is corrupt ({reason}): the run that wrote it was probably "
        f"stopped while saving. Resume from the earlier checkpoint {copy / 'checkpoint-4'} instead "
        f"(--resume_from_checkpoint {copy / 'checkpoint-4'}), or delete {copy / 'checkpoint-8'}."
    )


# 10. A run with nothing to do.


def test_a_run_with_nothing_to_do_is_refused(tokenizer_dir, tmp_path, capsys):
    error = _cli_error(capsys, "train", *training_flags(tmp_path / "out", tokenizer_dir))
    assert error == (
        "hf-supermask: error: Nothing to do: pass --do_train (train and save the model in --output_dir), "
        "--do_eval (score it on the validation split) and/or --do_predict (score it on the test split).\n"
    )
    assert not (tmp_path / "out").exists()
