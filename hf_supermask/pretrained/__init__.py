# Copyright 2026 The hf_supermask Authors. Licensed under the Apache License, Version 2.0.
"""The mask-only models shipped with the package: folders that load with `from_pretrained` like any checkpoint.

Each folder holds config, packed masks, tokenizer and a model card that states its measured test scores and the
command that found it.
"""

from pathlib import Path


_HERE = Path(__file__).resolve().parent

#: Multi30k en->de, the BLEU study's supermask row (`make demo` translates with it).
SHIPPED_MODEL = _HERE / "supermask-multi30k-en-de"

#: Four Multi30k directions (en-de, de-en, en-fr, en-cs) found over ONE seed: `SHIPPED_DIRECTIONS / "de-en"` etc.
#: share their random weights, so one model can hold all four as mask sets (`load_masks`).
SHIPPED_DIRECTIONS = _HERE / "supermask-multi30k-directions"

__all__ = ["SHIPPED_DIRECTIONS", "SHIPPED_MODEL"]
