# Copyright 2026 The hf_supermask Authors. Licensed under the Apache License, Version 2.0.
"""Bit-exact regeneration of the frozen random weights (and of the initial scores).

A supermask checkpoint stores no weights: only a seed and masks. Everything here therefore has one job,
to produce the *same* float32 tensors in every process, on every machine, at every thread count:

* every tensor has its own counter-based generator, numpy's Philox-4x64, keyed by
  sha256(f"{seed}/{generator_version}/{tensor name}"): adding a layer never shifts another layer's weights;
* only the generator's raw 64-bit output is used (`random_raw`, fixed by the Philox algorithm itself),
  never numpy's or torch's floating-point samplers, whose results change by an ulp between CPU kernels;
* raw bits are mapped to values with exactly rounded IEEE operations only (integer arithmetic, +, -, x, /,
  sqrt): no log, exp or trig, whose results differ between libm, numpy and torch.

The normal initialisations are therefore built from a sum of 12 uniforms (Irwin-Hall), an exact and portable
approximation of N(0, 1) (variance exactly 1, truncated at +-6 sigma) instead of an inverse CDF with `log`.

Changing anything in this file changes published checkpoints' weights: bump `GENERATOR_VERSION` instead,
keep the old behaviour reachable, and update the golden hashes in tests/test_random_weights.py.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable

import numpy as np
import torch


GENERATOR_VERSION = 1
"""Version of the weight generator. Stored in every config; a checkpoint from another version is refused."""

WEIGHT_INITS = ("kaiming_uniform", "kaiming_normal", "xavier_uniform", "signed_constant")
SCORE_INITS = ("kaiming_uniform", "constant")
ATTENTION_INITS = ("weight_init", "fairseq")

_UNIFORM_BITS = 24  # a float32 mantissa's worth of randomness per uniform draw
_UNIFORM_SCALE = float(2**_UNIFORM_BITS)


def _bit_generator(seed: int, name: str) -> np.random.Philox:
    """One independent generator per (seed, tensor name), stable across numpy versions (Philox is specified)."""
    digest = hashlib.sha256(f"{seed}/{GENERATOR_VERSION}/{name}".encode()).digest()
    key = np.frombuffer(digest[:16], dtype="<u8").copy()
    return np.random.Philox(key=key)


def _uniform_integer_blocks(seed: int, name: str, count: int, block: int):
    """`_uniform_integers(seed, name, count)` in consecutive pieces of `block` values (an even number), as (start,
    int32 array): the generator continues where the previous piece stopped, so the pieces are the stream's values."""
    generator = _bit_generator(seed, name)
    for start in range(0, count, block):
        size = min(block, count - start)
        raw = generator.random_raw((size + 1) // 2).astype("<u8", copy=False)
        # The little-endian words as (low, high) 32-bit pairs; reversed to (high, low), shifted, flattened in one pass.
        halves = raw.view("<u4").reshape(-1, 2)[:, ::-1]
        out = np.right_shift(halves, np.uint32(32 - _UNIFORM_BITS), dtype=np.uint32).reshape(-1)
        yield start, out[:size].view(np.int32)  # < 2**24: the same values as int32


def _uniform_integers(seed: int, name: str, count: int) -> np.ndarray:
    """`count` integers uniform in [0, 2**24), as int32, from the top and bottom halves of raw 64-bit words
    (in that order: the top 24 bits of the high 32-bit half, then the top 24 bits of the low half)."""
    blocks = _uniform_integer_blocks(seed, name, count, block=max(2, count + count % 2))
    return next(blocks, (0, np.empty(0, dtype=np.int32)))[1]


def _unit_interval(i: np.ndarray) -> np.ndarray:
    """(2 * i + 1) / 2**24 - 1 for int32 i in [0, 2**24): exact float64 values in (-1, 1)."""
    # The same values, computed as (2 * i + 1 - 2**24) * 2**-24: an exact integer (|.| < 2**24, in int32), converted
    # exactly, scaled exactly by a power of two. Every step of the original formula is exact too, so the results are
    # bit-identical; this form makes one float64 pass instead of three.
    centred = 2 * i + np.int32(1 - int(_UNIFORM_SCALE))
    return np.multiply(centred, 1.0 / _UNIFORM_SCALE, dtype=np.float64)


def symmetric_uniform(seed: int, name: str, count: int) -> np.ndarray:
    """Exact float64 values in (-1, 1), symmetric about 0: (2 * i + 1) / 2**24 - 1 for i uniform in [0, 2**24)."""
    return _unit_interval(_uniform_integers(seed, name, count))


# Values per block of `scaled_symmetric_uniform`: its temporaries then stay in the CPU cache. Even, so that only the
# last block can end in the middle of a 64-bit word.
_BLOCK = 1 << 16


def scaled_symmetric_uniform(seed: int, name: str, count: int, scale: float) -> np.ndarray:
    """`(symmetric_uniform(seed, name, count) * scale).astype(np.float32)` bit for bit, computed block by block:
    the same elementwise operations without full-size float64 temporaries (loading's main cost was memory traffic)."""
    out = np.empty(count, dtype=np.float32)
    for start, i in _uniform_integer_blocks(seed, name, count, _BLOCK):
        out[start : start + i.size] = _unit_interval(i) * scale  # float64 -> float32: the same rounding as astype
    return out


def irwin_hall_normal(seed: int, name: str, count: int) -> np.ndarray:
    """Approximately N(0, 1) float64 values from 12 uniforms each (exact integer sums, one division)."""
    i = _uniform_integers(seed, name, 12 * count).reshape(count, 12)
    total = i.sum(axis=1, dtype=np.int64)  # exact: < 12 * 2**24
    # sum of 12 U(0,1) - 6, with each uniform at the centre of its 2**-24 cell: (total + 6) / 2**24 - 6
    return (total + 6).astype(np.float64) / _UNIFORM_SCALE - 6.0


def random_signs(seed: int, name: str, count: int) -> np.ndarray:
    """+1.0 / -1.0 with equal probability."""
    i = _uniform_integers(seed, name, count)
    return np.where(i & 1, 1.0, -1.0)


def _fan(shape: tuple[int, ...], density: float, scale_fan: bool) -> tuple[float, float]:
    """(fan_in, fan_out) of a [out, in] weight (or [vocab, d_model] embedding, whose fan_in is d_model)."""
    fan_out, fan_in = float(shape[0]), float(shape[1])
    if scale_fan:
        # edge-popup's --scale-fan: only `density` of the inputs survive the mask, so keep the output variance.
        fan_in, fan_out = fan_in * density, fan_out * density
    return fan_in, fan_out


def init_of(name: str, weight_init: str, attention_init: str = "weight_init") -> tuple[str, float]:
    """(law, gain) of the tensor `name`: `weight_init` with gain 1, unless `attention_init="fairseq"` gives the
    attention projections fairseq's init (the paper's code): q/k/v Xavier-uniform with gain 1/sqrt(2), out_proj
    Xavier-uniform."""
    if attention_init == "fairseq":
        if name.endswith(("/q_proj", "/k_proj", "/v_proj")):
            return "xavier_uniform", 1.0 / math.sqrt(2.0)
        if name.endswith("/out_proj"):
            return "xavier_uniform", 1.0
    return weight_init, 1.0


def generate_weight(
    seed: int,
    name: str,
    shape: tuple[int, int],
    weight_init: str,
    density: float = 1.0,
    scale_fan: bool = False,
    gain: float = 1.0,
) -> torch.Tensor:
    """The frozen random float32 weight `name` of a model with this seed. Deterministic bit for bit.

    `shape` is (out_features, in_features) for linears and (vocab_size, d_model) for the embedding; in both
    cases fan_in is the second dimension. The ReLU gain is used throughout, as edge-popup and the one-layer
    paper do: kaiming_uniform is U(+-sqrt(6 / fan_in)), kaiming_normal N(0, 2 / fan_in), signed_constant
    +-sqrt(2 / fan_in), xavier_uniform U(+-sqrt(6 / (fan_in + fan_out))); every bound is multiplied by `gain`
    (x * 1.0 is exact, so gain 1 reproduces the tensors of earlier releases bit for bit).
    """
    count = math.prod(shape)
    fan_in, fan_out = _fan(shape, density, scale_fan)
    if weight_init == "kaiming_uniform":
        values = scaled_symmetric_uniform(seed, name, count, math.sqrt(6.0 / fan_in) * gain)
    elif weight_init == "kaiming_normal":
        values = irwin_hall_normal(seed, name, count) * (math.sqrt(2.0 / fan_in) * gain)
    elif weight_init == "xavier_uniform":
        values = scaled_symmetric_uniform(seed, name, count, math.sqrt(6.0 / (fan_in + fan_out)) * gain)
    elif weight_init == "signed_constant":
        values = random_signs(seed, name, count) * (math.sqrt(2.0 / fan_in) * gain)
    else:
        raise ValueError(f"weight_init must be one of {WEIGHT_INITS}, got {weight_init!r}.")
    # float64 -> float32 is a single correctly rounded conversion.
    return torch.from_numpy(values.astype(np.float32, copy=False).reshape(shape))


def generate_initial_scores(seed: int, name: str, shape: tuple[int, int], score_init: str) -> torch.Tensor:
    """Initial float32 scores of the masked tensor `name`, drawn from a key derived from the model seed.

    `kaiming_uniform`: U(+-sqrt(6 / fan_in)), edge-popup's default score scale.
    `constant`: every magnitude sqrt(6 / fan_in), random sign, times (1 + 2**-10 * u) with u uniform in (0, 1) as a
    seeded tie-break, so that the first mask is a random top-k rather than an arbitrary one.
    """
    count = math.prod(shape)
    bound = math.sqrt(6.0 / shape[1])
    if score_init == "kaiming_uniform":
        values = scaled_symmetric_uniform(seed, f"scores/{name}", count, bound)
    elif score_init == "constant":
        jitter = (symmetric_uniform(seed, f"scores/{name}/tie_break", count) + 1.0) * 0.5
        values = random_signs(seed, f"scores/{name}", count) * bound * (1.0 + jitter * 2.0**-10)
    else:
        raise ValueError(f"score_init must be one of {SCORE_INITS}, got {score_init!r}.")
    return torch.from_numpy(values.astype(np.float32, copy=False).reshape(shape))


def generate_frozen_positions(seed: int, name: str, count: int, frozen: int, frozen_kept: int):
    """The frozen positions of the masked tensor `name` (of `count` entries): `(free, kept)`, two boolean arrays of
    `count` entries, `free` False at the `frozen` frozen positions, `kept` True at the `frozen_kept` of them that are
    kept. Deterministic bit for bit (integer operations on the raw stream only).

    Each position draws a 24-bit integer from its own stream (key `frozen/{name}`); positions are ranked by that
    integer, ties by index (one unique int64 key each, so the sets below are the same whatever the selection
    algorithm): the `frozen` lowest are frozen, and the `frozen_kept` lowest of those are kept."""
    free = np.ones(count, dtype=bool)
    kept = np.zeros(count, dtype=bool)
    if frozen == 0:
        return free, kept
    keys = (_uniform_integers(seed, f"frozen/{name}", count).astype(np.int64) << 32) | np.arange(count, dtype=np.int64)
    frozen_at = np.argpartition(keys, frozen - 1)[:frozen]
    free[frozen_at] = False
    if frozen_kept:
        kept[frozen_at[np.argpartition(keys[frozen_at], frozen_kept - 1)[:frozen_kept]]] = True
    return free, kept


def update_fingerprint(digest, name: str, tensor: torch.Tensor) -> None:
    """Add one tensor to a `fingerprint` digest: its name, shape and little-endian float32 bytes."""
    array = tensor.detach().to("cpu", torch.float32).contiguous().numpy().astype("<f4", copy=False)
    digest.update(f"{name}:{tuple(array.shape)};".encode())
    digest.update(memoryview(array).cast("B"))  # the same bytes as array.tobytes(), without copying them


def fingerprint(named_tensors: Iterable[tuple[str, torch.Tensor]]) -> str:
    """sha256 over names, shapes and little-endian float32 bytes, in name order."""
    digest = hashlib.sha256()
    for name, tensor in sorted(named_tensors, key=lambda item: item[0]):
        update_fingerprint(digest, name, tensor)
    return digest.hexdigest()
