# Copyright 2026 The hf_supermask Authors. Licensed under the Apache License, Version 2.0.
"""Command line: `python -m hf_supermask translate FOLDER "A man rides a bike."` (also `hf-supermask ...`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable


# What a user can cause and fix (a missing or non-empty folder, bad text, wrong flags): reported as
# `hf-supermask: error: ...` with exit status 1, without a traceback.
USER_ERRORS = (ValueError, OSError, ImportError)  # ImportError: a missing optional extra (CTranslate2)

OVERWRITE_HELP = (
    "Replace what output_dir holds, once the checkpoint has loaded and the export is written (a failed export leaves "
    "it intact; never the checkpoint's folder)."
)


def _read_texts(args) -> list[str]:
    """The sentences to translate, checked to be UTF-8 before any model is loaded."""
    from .files import check_utf8_text, decode_lines

    if not args.text:
        return decode_lines(sys.stdin.buffer.read(), "standard input")
    for number, text in enumerate(args.text, start=1):
        check_utf8_text(text, f"Argument {number} ({text!r})")
    return args.text


def _check_saved_num_beams(num_beams, model: str) -> None:
    """A beam count saved in the model's generation_config.json (used when --num_beams is not given) must be one
    that generation can use: 0 would divide by zero, a negative one build a tensor of negative size."""
    if isinstance(num_beams, bool) or not isinstance(num_beams, int) or num_beams < 1:
        raise ValueError(
            f"The generation_config.json of {model} sets num_beams to {num_beams!r}, but it must be an integer >= 1. "
            "Pass --num_beams N, or set num_beams in that file to 1 or more."
        )


def _translate(args) -> None:
    from .files import check_model_location, check_tokenizer_files, loading

    check_model_location(args.model)
    if args.backend == "ctranslate2":
        from .deploy import check_ctranslate2_folder

        check_ctranslate2_folder(args.model)
    check_tokenizer_files(args.model)
    texts = _read_texts(args)
    # Unset flags keep the decoding settings saved with the model (generation_config.json).
    settings = {k: v for k, v in (("num_beams", args.num_beams), ("max_new_tokens", args.max_new_tokens)) if v}
    if args.backend == "ctranslate2":
        from .deploy import CTranslate2Translator

        translator = CTranslate2Translator(args.model)
        if args.num_beams is None and "num_beams" in translator.defaults:
            _check_saved_num_beams(translator.defaults["num_beams"], args.model)
        translations = translator(texts, batch_size=args.batch_size, **settings)
    else:
        from transformers import AutoTokenizer, pipeline

        import hf_supermask  # noqa: F401  (registers the model type and the translation task)

        from .export import load_seq2seq_model

        # Loaded here rather than by pipeline(), which would bury the model's own refusal (e.g. of a checkpoint
        # whose masks do not match its weights) in a report of every class it tried.
        model = load_seq2seq_model(args.model, revision=args.revision)
        if args.num_beams is None:
            _check_saved_num_beams(model.generation_config.num_beams, args.model)
        with loading(args.model):
            tokenizer = AutoTokenizer.from_pretrained(args.model, revision=args.revision)
        translator = pipeline("translation", model=model, tokenizer=tokenizer)
        translations = [o["translation_text"] for o in translator(texts, batch_size=args.batch_size, **settings)]
    for translation in translations:
        print(translation)


def _export(args) -> None:
    from .export import export_ctranslate2_folder, export_dense_folder

    if args.command == "export-ctranslate2":
        print(export_ctranslate2_folder(args.checkpoint, args.output_dir, args.quantization, overwrite=args.overwrite))
    else:
        print(export_dense_folder(args.checkpoint, args.output_dir, overwrite=args.overwrite))


def _run(prog: str, command: Callable[[], object]) -> None:
    """Run `command`, reporting a user's mistake as `PROG: error: ...` with exit status 1, without a traceback."""
    try:
        command()
    except USER_ERRORS as error:
        sys.stderr.write(f"{prog}: error: {error}\n")
        sys.exit(1)


def train_main(argv: list[str] | None = None, prog: str = "hf-supermask train") -> None:
    """The training script's entry point (`scripts/train_translation.py`, `hf-supermask train`)."""
    from .training import main as training_main

    argv = sys.argv[1:] if argv is None else argv
    _run(prog.split()[0], lambda: training_main(argv, prog=prog))


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(prog="hf-supermask", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    translate = commands.add_parser("translate", help="Translate sentences (arguments, or stdin lines) with a model.")
    translate.add_argument("model", help="Model folder or Hub id (supermask or any seq2seq translation model).")
    translate.add_argument(
        "text", nargs="*", help="Sentences to translate; read from stdin (UTF-8) when none are given."
    )
    translate.add_argument("--num_beams", type=_positive_int, default=None, help="Default: the model's saved setting.")
    translate.add_argument("--max_new_tokens", type=_positive_int, default=None)
    translate.add_argument("--batch_size", type=_positive_int, default=32)
    translate.add_argument("--revision", default=None, help="Hub revision (pin a commit hash).")
    translate.add_argument(
        "--backend",
        choices=("pytorch", "ctranslate2"),
        default="pytorch",
        help="pytorch: pipeline('translation'); ctranslate2: a folder written by export-ctranslate2.",
    )

    export = commands.add_parser("export-dense", help="Fold masks into a stock MarianMTModel folder.")
    export.add_argument("checkpoint", help="Supermask checkpoint folder or Hub id.")
    export.add_argument("output_dir", help="A new or empty folder for the MarianMTModel and its tokenizer.")
    export.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)

    ct2 = commands.add_parser(
        "export-ctranslate2", help="Fold masks and convert for CTranslate2 (pip install hf_supermask[ctranslate2])."
    )
    ct2.add_argument("checkpoint", help="Supermask checkpoint folder or Hub id.")
    ct2.add_argument("output_dir", help="A new or empty folder for the CTranslate2 model and its tokenizer.")
    ct2.add_argument("--quantization", default=None, help="Weights' type, e.g. int8 (default: float32).")
    ct2.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)

    commands.add_parser(
        "train", help="Train (same flags as scripts/train_translation.py; --help-all lists them all).", add_help=False
    )

    args, rest = parser.parse_known_args(argv)
    if args.command == "train":
        train_main(rest, prog=f"{parser.prog} train")
        return
    if args.command == "translate":
        # Options may come between the model and the sentences (`translate MODEL --num_beams 2 "text"`).
        args = translate.parse_intermixed_args(argv[argv.index("translate") + 1 :])
        args.command = "translate"
    elif rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    _run(parser.prog, lambda: _translate(args) if args.command == "translate" else _export(args))


if __name__ == "__main__":
    main()
