# Copyright 2026 The hf_supermask Authors. Licensed under the Apache License, Version 2.0.
"""Scores -> binary masks (edge-popup), and the packed on-disk form of masks.

The mask of a tensor keeps exactly k = round(density * numel) entries: those with the largest |score|.
Gradients reach the scores straight through the top-k (edge-popup's estimator). `abs()` is applied by the
caller, *outside* the autograd Function, so that autograd multiplies the straight-through gradient by
sign(score): handing it to the score unchanged would push negative scores the wrong way.
"""

from __future__ import annotations

import numpy as np
import torch


def num_kept(numel: int, density: float) -> int:
    """Number of weights a tensor of `numel` entries keeps at `density` (fraction KEPT), at least one."""
    return max(1, min(numel, int(round(density * numel))))


@torch.no_grad()
def topk_mask(magnitudes: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean mask of `magnitudes`' shape with exactly `k` True entries at the k largest values."""
    flat = magnitudes.detach().reshape(-1)
    mask = torch.zeros(flat.shape, dtype=torch.bool, device=flat.device)
    if k >= flat.numel():
        mask.fill_(True)
    else:
        # topk selects (no full sort); float32 so that a low-precision copy of the scores cannot add ties.
        mask[torch.topk(flat.float(), k, sorted=False).indices] = True
    return mask.view(magnitudes.shape)


class StraightThroughMask(torch.autograd.Function):
    """Forward: the given 0/1 mask (a top-k of `magnitudes`). Backward: the gradient passes to `magnitudes` unchanged."""

    @staticmethod
    def forward(ctx, magnitudes: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return mask.to(magnitudes.dtype)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        return grad_output, None


def pack_mask(mask: torch.Tensor) -> torch.Tensor:
    """Boolean mask -> 1-D uint8 tensor, numpy.packbits layout (row-major, big-endian bit order)."""
    bits = mask.detach().reshape(-1).to("cpu", torch.bool).numpy()
    return torch.from_numpy(np.packbits(bits))


def unpack_mask(packed: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """Inverse of `pack_mask`: 1-D uint8 -> boolean mask of `shape`."""
    count = int(np.prod(shape))
    bits = np.unpackbits(packed.detach().to("cpu").numpy(), count=count)
    return torch.from_numpy(bits.astype(bool)).view(shape)


def packed_size(shape: tuple[int, ...]) -> int:
    """Bytes of a packed mask for a tensor of `shape`."""
    return (int(np.prod(shape)) + 7) // 8


@torch.no_grad()
def scores_for_mask(initial_scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Scores whose top-k is exactly `mask`, built from the seed's initial scores.

    Scores of the form {1, 0} would freeze a loaded mask (every kept score far above every dropped one), so we
    keep the initial scores' distribution and signs and only re-deal the magnitudes: the k largest go to the
    kept positions, the rest to the dropped ones, each group in the order of its own initial magnitudes.
    Fine-tuning from a loaded checkpoint therefore starts as close to the mask's decision boundary as
    training from scratch does.
    """
    flat = initial_scores.reshape(-1).float()
    kept = mask.reshape(-1).to(flat.device)
    k = int(kept.sum())
    magnitudes = flat.abs()
    sorted_magnitudes = torch.sort(magnitudes, descending=True).values
    top, rest = sorted_magnitudes[:k], sorted_magnitudes[k:]
    if k and rest.numel() and bool(top[-1] <= rest[0]):
        # A tie at the boundary would make the top-k ambiguous: lift the kept group by one ulp.
        top = torch.clamp(top, min=torch.nextafter(rest[0], torch.tensor(float("inf"))))
    kept_index = kept.nonzero().squeeze(1)
    dropped_index = (~kept).nonzero().squeeze(1)
    new = torch.empty_like(flat)
    new[kept_index[torch.argsort(magnitudes[kept_index], descending=True, stable=True)]] = top
    new[dropped_index[torch.argsort(magnitudes[dropped_index], descending=True, stable=True)]] = rest
    signs = torch.where(flat < 0, -1.0, 1.0)
    return (new * signs).view(initial_scores.shape)
