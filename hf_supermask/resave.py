# Copyright 2026 The hf_supermask Authors. Licensed under the Apache License, Version 2.0.
"""Bring a checkpoint folder up to the current identity from its unchanged masks (no retraining).

A checkpoint written before an identity field existed (`forward_config_sha256`, `tokenizer_sha256`, `source_lang` /
`target_lang`) loads with a warning naming what could not be verified. `resave_checkpoint` loads it (every check that
its config can support), records the tokenizer next to it and its direction, and rewrites `config.json` and the remote
code in place. The masks, the random weights and the decoding settings are left exactly as they were: the re-saved
folder translates bit-identically, and `weights_sha256` / `masks_sha256` are unchanged (checked before anything is
written).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from .modeling.checkpoint import TOKENIZER_FILE


# What the re-save rewrites: the config (new identity fields) and the remote code. The masks and the decoding
# settings (model.safetensors, generation_config.json), the tokenizer and the card stay as they are.
_KEPT_FILES = ("model.safetensors", "generation_config.json", TOKENIZER_FILE, "tokenizer_config.json", "README.md")


def resave_checkpoint(folder, source_lang: str | None = None, target_lang: str | None = None) -> dict:
    """Re-save the checkpoint `folder` in place with the current identity; return its new config.json as a dict.

    Args:
        folder (`str` or `os.PathLike`):
            A local checkpoint folder written by `save_pretrained`.
        source_lang (`str`, *optional*):
            The language it translates from, if its config does not record it yet (e.g. `"en"`).
        target_lang (`str`, *optional*):
            The language it translates into, if its config does not record it yet.
    """
    from transformers import AutoTokenizer

    from .modeling import SupermaskForConditionalGeneration

    folder = Path(folder)
    before = json.loads((folder / "config.json").read_text())
    model = SupermaskForConditionalGeneration.from_pretrained(folder)
    for name, value in (("source_lang", source_lang), ("target_lang", target_lang)):
        recorded = getattr(model.config, name)
        if value is not None and recorded is not None and value != recorded:
            raise ValueError(f"{folder} records {name}={recorded!r}; refusing to re-save it as {value!r}.")
        if value is not None:
            setattr(model.config, name, value)
    model.config.check_supermask_fields()
    if (folder / TOKENIZER_FILE).exists():
        model.record_tokenizer(AutoTokenizer.from_pretrained(folder))
    with tempfile.TemporaryDirectory(dir=folder.parent) as scratch:
        model.save_pretrained(scratch)
        after = json.loads((Path(scratch) / "config.json").read_text())
        changed = sorted(k for k in before if k != "transformers_version" and before[k] != after.get(k))
        if changed:
            raise RuntimeError(f"Re-saving {folder} would change {changed}; nothing was written.")
        written = [path for path in Path(scratch).iterdir() if path.name not in _KEPT_FILES]
        for path in written:
            shutil.copyfile(path, folder / path.name)
    return after


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", help="the checkpoint folder to re-save in place")
    parser.add_argument("--source_lang", help="the language it translates from, if its config does not say")
    parser.add_argument("--target_lang", help="the language it translates into, if its config does not say")
    args = parser.parse_args(argv)
    config = resave_checkpoint(args.folder, args.source_lang, args.target_lang)
    print(
        f"{args.folder}: re-saved; forward_config_sha256 {config['forward_config_sha256']}, tokenizer_sha256 "
        f"{config['tokenizer_sha256']}, direction {config['source_lang']}->{config['target_lang']}"
    )
