# Copyright 2026 The hf_supermask Authors. Licensed under the Apache License, Version 2.0.
"""How a mask-only checkpoint stores its masks (`config.mask_encoding`), and the coder of the compact encoding.

- `"packed"` (the default; every checkpoint written before the field existed): one bit per weight, the `{name}.mask`
  uint8 tensors in `numpy.packbits` layout.
- `"initial_xor_lzma"`: the loader already knows a good prediction of every mask, the top-k of the seed's initial
  scores (found masks keep much of it: in the shipped models 61% of the bits agree after 4750 updates, 73% after
  1500). The checkpoint stores the found mask XOR that prediction, packed, then LZMA2-coded (Python's `lzma`: no extra
  dependency for the remote code), as `{name}.mask_coded` uint8 tensors. LZMA's adaptive binary range coder brings
  such a stream within about 2% of its entropy (`benchmarks/frontier/lossless.md`). Decoding gives back exactly the
  packed masks, so `masks_sha256` (over the packed masks) is the same for both encodings and verifies either.

Training checkpoints that keep their scores (`save_scores`) always store packed masks: they are resume files, and the
scores are what they are for.
"""

from __future__ import annotations

import lzma

import numpy as np
import torch


MASK_ENCODINGS = ("packed", "initial_xor_lzma")
CODED_SUFFIX = ".mask_coded"
# The stream's format: raw LZMA2 (no .xz container: its 60-byte header per tensor would be noise next to the masks).
# lc=lp=pb=0: the XOR bits carry no byte or position context worth modelling. A binary-tree match finder with the
# shortest matches and depth 1: matches are rare in such a stream, and preset 9's search costs 15x the time for nothing.
# Decoding needs the filter id and dictionary size only; the rest is the encoder's choice.
_FILTERS = [
    {"id": lzma.FILTER_LZMA2, "preset": 9, "lc": 0, "lp": 0, "pb": 0, "mf": lzma.MF_BT2, "nice_len": 5, "depth": 1}
]


def check_mask_encoding(encoding: str) -> None:
    if encoding not in MASK_ENCODINGS:
        raise ValueError(
            f"mask_encoding={encoding!r} is not one this code knows ({', '.join(MASK_ENCODINGS)}). A checkpoint that "
            "records another was saved by a newer hf_supermask: upgrade it (pip install -U hf_supermask) or load the "
            "checkpoint with trust_remote_code=True, which runs the code saved with it."
        )


def encode_mask(packed: torch.Tensor, predicted: torch.Tensor) -> torch.Tensor:
    """A packed mask coded against a packed prediction of it (both 1-D uint8 of the same size): 1-D uint8 bytes."""
    flips = np.bitwise_xor(packed.detach().cpu().numpy(), predicted.detach().cpu().numpy())
    coded = lzma.compress(flips.tobytes(), format=lzma.FORMAT_RAW, filters=_FILTERS)
    return torch.frombuffer(bytearray(coded), dtype=torch.uint8)


def decode_mask(coded: torch.Tensor, predicted: torch.Tensor, where: str) -> torch.Tensor:
    """Inverse of `encode_mask`; a clear error (naming `where`) for bytes that are not such a stream or decode to
    another size than the prediction's."""
    if coded.dtype != torch.uint8 or coded.dim() != 1:
        raise ValueError(
            f"{where} must be a 1-D uint8 tensor (an LZMA2 stream), got {coded.dtype} of shape {list(coded.shape)}. "
            "The checkpoint is corrupted; re-save or re-download it."
        )
    try:
        flips = lzma.decompress(coded.cpu().numpy().tobytes(), format=lzma.FORMAT_RAW, filters=_FILTERS)
    except lzma.LZMAError as error:
        raise ValueError(
            f"{where} is not a valid coded mask ({error}): the checkpoint is corrupted. Re-save or re-download it."
        ) from None
    expected = predicted.numel()
    if len(flips) != expected:
        raise ValueError(
            f"{where} decodes to {len(flips)} bytes, but this tensor's packed mask has {expected}: the checkpoint is "
            "corrupted or belongs to another configuration. Re-save or re-download it."
        )
    packed = np.bitwise_xor(np.frombuffer(flips, dtype=np.uint8), predicted.detach().cpu().numpy())
    return torch.from_numpy(packed)


__all__ = ["CODED_SUFFIX", "MASK_ENCODINGS", "check_mask_encoding", "decode_mask", "encode_mask"]
