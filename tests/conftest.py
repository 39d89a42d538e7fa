"""Shared fixtures: tiny configs and a tokenizer trained on a slice of the real Multi30k data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


# Tests never reach the Hub (the Hub round trip starts its own local server and overrides these).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# Tiny models are dominated by per-op overhead; extra threads only contend on a 2-core machine.
import torch  # noqa: E402

torch.set_num_threads(1)

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("MULTI30K_DIR", REPO_ROOT.parent / "shared" / "data" / "multi30k"))


def read_lines(split: str, lang: str, n: int) -> list[str]:
    """The first `n` lines of a real Multi30k file."""
    path = DATA_DIR / f"{split}.{lang}"
    if not path.exists():
        pytest.fail(f"Multi30k not found at {DATA_DIR}; set MULTI30K_DIR to the folder of split.lang files.")
    with open(path, encoding="utf-8") as handle:
        return [next(handle).rstrip("\n") for _ in range(n)]


def tiny_config(**overrides):
    from hf_supermask import SupermaskConfig

    values = dict(
        vocab_size=320,
        d_model=32,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_position_embeddings=128,
        dropout=0.0,
        seed=1234,
    )
    values.update(overrides)
    return SupermaskConfig(**values)


@pytest.fixture(scope="session")
def multi30k_slice():
    """300 real en-de training pairs."""
    return read_lines("train", "en", 300), read_lines("train", "de", 300)


@pytest.fixture(scope="session")
def tiny_tokenizer(multi30k_slice):
    """A joint BPE tokenizer (opus-mt convention: </s>=0, <unk>=1, <pad> last) trained on the real slice."""
    from hf_supermask.tokenization import train_tokenizer

    english, german = multi30k_slice
    return train_tokenizer(english + german, vocab_size=320, model_max_length=128)
