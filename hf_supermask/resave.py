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
from .modeling.mask_coding import MASK_ENCODINGS


# What the re-save rewrites: the config (new identity fields) and the remote code. The masks and the decoding
# settings (model.safetensors, generation_config.json), the tokenizer and the card stay as they are.
_KEPT_FILES = ("model.safetensors", "generation_config.json", TOKENIZER_FILE, "tokenizer_config.json", "README.md")


def resave_checkpoint(
    folder, source_lang: str | None = None, target_lang: str | None = None, mask_encoding: str | None = None
) -> dict:
    """Re-save the checkpoint `folder` in place with the current identity; return its new config.json as a dict.

    Args:
        folder (`str` or `os.PathLike`):
            A local checkpoint folder written by `save_pretrained`.
        source_lang (`str`, *optional*):
            The language it translates from, if its config does not record it yet (e.g. `"en"`).
        target_lang (`str`, *optional*):
            The language it translates into, if its config does not record it yet.
        mask_encoding (`str`, *optional*):
            Store the masks in this encoding (`"packed"` or `"initial_xor_lzma"`, see `SupermaskConfig`), rewriting
            model.safetensors; the masks themselves, and so `masks_sha256`, stay the same (checked after decoding).
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
    recoding = mask_encoding is not None and mask_encoding != model.config.mask_encoding
    if recoding:
        model.config.mask_encoding = mask_encoding
    model.config.check_supermask_fields()
    if (folder / TOKENIZER_FILE).exists():
        model.record_tokenizer(AutoTokenizer.from_pretrained(folder))
    with tempfile.TemporaryDirectory(dir=folder.parent) as scratch:
        model.save_pretrained(scratch)
        after = json.loads((Path(scratch) / "config.json").read_text())
        allowed = {"transformers_version", "mask_encoding"}
        changed = sorted(k for k in before if k not in allowed and before[k] != after.get(k))
        if changed:
            raise RuntimeError(f"Re-saving {folder} would change {changed}; nothing was written.")
        if recoding:  # the new file must decode to the very same masks before it replaces the old one
            from .modeling import SupermaskForConditionalGeneration as Model

            if Model.from_pretrained(scratch).masks_fingerprint(sync=False) != after["masks_sha256"]:
                raise RuntimeError(f"Re-encoding the masks of {folder} did not round-trip; nothing was written.")
        kept = tuple(name for name in _KEPT_FILES if not (recoding and name == "model.safetensors"))
        written = [path for path in Path(scratch).iterdir() if path.name not in kept]
        card = folder / "README.md"
        if recoding and card.exists():
            card_text = _refreshed_card(card.read_text(encoding="utf-8"), model, Path(scratch))
        for path in written:
            shutil.copyfile(path, folder / path.name)
        if recoding and card.exists():
            card.write_text(card_text, encoding="utf-8")
    return after


def _refreshed_card(card_text: str, model, folder: Path) -> str:
    """The card's "Checkpoint format" lines for the re-encoded masks in `folder`."""
    from .files import folder_bytes
    from .model_card import refresh_checkpoint_format
    from .training import dense_fp32_weights_bytes

    checkpoint_bytes = folder_bytes(folder, "*.safetensors")
    maskable = model.num_maskable_weights()
    return refresh_checkpoint_format(
        card_text,
        model.config.mask_encoding,
        checkpoint_bytes,
        dense_fp32_weights_bytes(model),
        8 * checkpoint_bytes / maskable,
    )


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", help="the checkpoint folder to re-save in place")
    parser.add_argument("--source_lang", help="the language it translates from, if its config does not say")
    parser.add_argument("--target_lang", help="the language it translates into, if its config does not say")
    parser.add_argument(
        "--mask_encoding",
        choices=MASK_ENCODINGS,
        help="store the masks in this encoding (initial_xor_lzma: coded against the seed's initial top-k, lossless)",
    )
    args = parser.parse_args(argv)
    config = resave_checkpoint(args.folder, args.source_lang, args.target_lang, args.mask_encoding)
    print(
        f"{args.folder}: re-saved; forward_config_sha256 {config['forward_config_sha256']}, tokenizer_sha256 "
        f"{config['tokenizer_sha256']}, direction {config['source_lang']}->{config['target_lang']}, masks "
        f"{config.get('mask_encoding', 'packed')}"
    )
