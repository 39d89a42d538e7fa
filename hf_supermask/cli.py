# Copyright 2026 The hf_supermask Authors. Licensed under the Apache License, Version 2.0.
"""Command line: `python -m hf_supermask translate FOLDER "A man rides a bike."` (also `hf-supermask ...`)."""

from __future__ import annotations

import argparse
import sys


# What a user can cause and fix (a missing or non-empty folder, bad text, wrong flags): reported as
# `hf-supermask: error: ...` with exit status 1, without a traceback.
USER_ERRORS = (ValueError, OSError, ImportError)  # ImportError: a missing optional extra (CTranslate2)


def _read_texts(args) -> list[str]:
    """The sentences to translate, checked to be UTF-8 before any model is loaded."""
    from .files import check_utf8_text, decode_lines

    if not args.text:
        return decode_lines(sys.stdin.buffer.read(), "standard input")
    for number, text in enumerate(args.text, start=1):
        check_utf8_text(text, f"Argument {number} ({text!r})")
    return args.text


def _translate(args) -> None:
    from .files import check_model_location, loading

    check_model_location(args.model)
    texts = _read_texts(args)
    # Unset flags keep the decoding settings saved with the model (generation_config.json).
    settings = {k: v for k, v in (("num_beams", args.num_beams), ("max_new_tokens", args.max_new_tokens)) if v}
    if args.backend == "ctranslate2":
        from .deploy import CTranslate2Translator

        with loading(args.model):
            translator = CTranslate2Translator(args.model)
        translations = translator(texts, batch_size=args.batch_size, **settings)
    else:
        from transformers import pipeline

        import hf_supermask  # noqa: F401  (registers the model type and the translation task)

        with loading(args.model):
            translator = pipeline("translation", model=args.model, revision=args.revision)
        translations = [o["translation_text"] for o in translator(texts, batch_size=args.batch_size, **settings)]
    for translation in translations:
        print(translation)


def _export(args) -> None:
    from .export import export_ctranslate2_folder, export_dense_folder

    if args.command == "export-ctranslate2":
        print(export_ctranslate2_folder(args.checkpoint, args.output_dir, args.quantization, overwrite=args.overwrite))
    else:
        print(export_dense_folder(args.checkpoint, args.output_dir, overwrite=args.overwrite))


def _train(args, rest) -> None:
    from .training import main

    main(rest)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def main(argv: list[str] | None = None) -> None:
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
    export.add_argument(
        "--overwrite", action="store_true", help="Delete what output_dir holds first (never the checkpoint's folder)."
    )

    ct2 = commands.add_parser(
        "export-ctranslate2", help="Fold masks and convert for CTranslate2 (pip install hf_supermask[ctranslate2])."
    )
    ct2.add_argument("checkpoint", help="Supermask checkpoint folder or Hub id.")
    ct2.add_argument("output_dir", help="A new or empty folder for the CTranslate2 model and its tokenizer.")
    ct2.add_argument("--quantization", default=None, help="Weights' type, e.g. int8 (default: float32).")
    ct2.add_argument(
        "--overwrite", action="store_true", help="Delete what output_dir holds first (never the checkpoint's folder)."
    )

    commands.add_parser("train", help="Train (same flags as scripts/train_translation.py).", add_help=False)

    args, rest = parser.parse_known_args(argv)
    if args.command != "train" and rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    try:
        if args.command == "train":
            _train(args, rest)
        elif args.command == "translate":
            _translate(args)
        else:
            _export(args)
    except USER_ERRORS as error:
        parser.exit(1, f"{parser.prog}: error: {error}\n")


if __name__ == "__main__":
    main()
