# Copyright 2026 The hf_supermask Authors. Licensed under the Apache License, Version 2.0.
"""Command line: `python -m hf_supermask translate FOLDER "A man rides a bike."` (also `hf-supermask ...`)."""

from __future__ import annotations

import argparse
import sys


def _translate(args) -> None:
    from transformers import pipeline

    import hf_supermask  # noqa: F401  (registers the model type and the translation task)

    texts = args.text or [line.rstrip("\n") for line in sys.stdin]
    translator = pipeline("translation", model=args.model, revision=args.revision)
    kwargs = {"num_beams": args.num_beams, "batch_size": args.batch_size}
    if args.max_new_tokens is not None:
        kwargs["max_new_tokens"] = args.max_new_tokens
    for output in translator(texts, **kwargs):
        print(output["translation_text"])


def _export(args) -> None:
    from .export import export_dense_folder

    print(export_dense_folder(args.checkpoint, args.output_dir))


def _train(args, rest) -> None:
    from .training import main

    main(rest)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="hf-supermask", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    translate = commands.add_parser("translate", help="Translate sentences (arguments, or stdin lines) with a model.")
    translate.add_argument("model", help="Model folder or Hub id (supermask or any seq2seq translation model).")
    translate.add_argument("text", nargs="*", help="Sentences to translate; read from stdin when none are given.")
    translate.add_argument("--num_beams", type=int, default=4)
    translate.add_argument("--max_new_tokens", type=int, default=None)
    translate.add_argument("--batch_size", type=int, default=32)
    translate.add_argument("--revision", default=None, help="Hub revision (pin a commit hash).")

    export = commands.add_parser("export-dense", help="Fold masks into a stock MarianMTModel folder.")
    export.add_argument("checkpoint")
    export.add_argument("output_dir")

    commands.add_parser("train", help="Train (same flags as scripts/train_translation.py).", add_help=False)

    args, rest = parser.parse_known_args(argv)
    if args.command == "train":
        _train(args, rest)
    elif rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    elif args.command == "translate":
        _translate(args)
    else:
        _export(args)


if __name__ == "__main__":
    main()
