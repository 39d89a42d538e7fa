# Copyright 2026 The hf_supermask Authors. Licensed under the Apache License, Version 2.0.
"""Weights taken from another checkpoint instead of generated: the paper's fixed pre-trained embedding.

The mask-only checkpoint references the source (folder or Hub repo id) and the sha256 of the tensor it was found
with; a source that changed since, or that holds non-finite values, is refused.
"""

from __future__ import annotations

import hashlib
import os

import torch


EXTERNAL_EMBEDDING_KEYS = ("model.shared.weight", "model.encoder.embed_tokens.weight", "shared.weight")


def tensor_sha256(tensor: torch.Tensor) -> str:
    """sha256 of a tensor's little-endian float32 bytes."""
    return hashlib.sha256(
        tensor.detach().to("cpu", torch.float32).contiguous().numpy().astype("<f4").tobytes()
    ).hexdigest()


def load_external_tensor(source: str, expected_sha256: str | None, shape: tuple[int, int]) -> torch.Tensor:
    """The embedding of the checkpoint `source` (folder or Hub repo id), refusing a shape or sha256 mismatch."""
    from safetensors import safe_open
    from transformers.utils import SAFE_WEIGHTS_NAME, cached_file

    if not os.path.isdir(source):
        from huggingface_hub.utils import HFValidationError, validate_repo_id

        try:
            validate_repo_id(source)
        except HFValidationError:
            raise FileNotFoundError(
                f"`embedding_source` not found: {source} is not a folder, nor a Hub repo id (which looks like "
                "'owner/name')."
            ) from None
    path = cached_file(source, SAFE_WEIGHTS_NAME)
    with safe_open(path, framework="pt") as reader:
        key = next((k for k in EXTERNAL_EMBEDDING_KEYS if k in reader.keys()), None)
        if key is None:
            raise ValueError(f"{path} holds no embedding (looked for {EXTERNAL_EMBEDDING_KEYS}).")
        tensor = reader.get_tensor(key).to(torch.float32)
    if tuple(tensor.shape) != tuple(shape):
        raise ValueError(
            f"The embedding of {source} has shape {list(tensor.shape)}, but this config needs {list(shape)}."
        )
    if not bool(torch.isfinite(tensor).all()):
        raise ValueError(
            f"The embedding of {source} holds NaN or infinite values: it cannot serve as a fixed embedding. Point "
            "`embedding_source` at a checkpoint whose training did not diverge."
        )
    actual = tensor_sha256(tensor)
    if expected_sha256 is not None and actual != expected_sha256:
        raise ValueError(
            f"The embedding of {source} has sha256 {actual}, but this checkpoint's masks were found with an embedding "
            f"of sha256 {expected_sha256} (`embedding_sha256`): the source changed. Point `embedding_source` at the "
            "original embedding (pin a Hub revision)."
        )
    return tensor.clone()
