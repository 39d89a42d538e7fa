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
    if k >= flat.numel():
        return torch.ones(magnitudes.shape, dtype=torch.bool, device=flat.device)
    # float32 so that a low-precision copy of the scores cannot add ties.
    if flat.device.type != "cpu":
        mask = torch.zeros(flat.shape, dtype=torch.bool, device=flat.device)
        mask[torch.topk(flat.float(), k, sorted=False).indices] = True
        return mask.view(magnitudes.shape)
    # On the CPU, a k-th value selection (numpy's introselect, O(n)) and one comparison: about 8x faster than
    # torch.topk at k = n / 2, which runs every training step for every tensor. Ties at the threshold are broken
    # towards the lowest indices, so that exactly k entries are kept.
    values = flat.float().numpy()
    threshold = np.partition(values, values.size - k)[values.size - k]  # the k-th largest value
    mask = values > threshold
    missing = k - int(np.count_nonzero(mask))
    if missing:
        mask[np.flatnonzero(values == threshold)[:missing]] = True
    return torch.from_numpy(mask).view(magnitudes.shape)


class StraightThroughMask(torch.autograd.Function):
    """Forward: the given 0/1 mask (a top-k of `magnitudes`). Backward: the gradient passes to `magnitudes` unchanged."""

    @staticmethod
    def forward(ctx, magnitudes: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return mask.to(magnitudes.dtype)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        return grad_output, None


class MaskedWeightProduct(torch.autograd.Function):
    """`weight * mask` with the gradient of `weight * StraightThroughMask.apply(scores.abs(), mask)` for the scores.

    The same numbers, in one Function: the two-step form allocates |scores| and a float copy of the mask for every
    tensor at every training forward (twice the size of the model, only to be freed again), this one only the
    product. Backward computes exactly what autograd did through mul, the straight-through step and abs:
    (grad * weight) * sgn(scores).
    """

    @staticmethod
    def forward(ctx, scores: torch.Tensor, weight: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(scores, weight)  # references, not copies
        return weight * mask

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        scores, weight = ctx.saved_tensors
        return (grad_output * weight).mul_(scores.sgn()), None, None


def pack_mask(mask: torch.Tensor) -> torch.Tensor:
    """Boolean mask -> 1-D uint8 tensor, numpy.packbits layout (row-major, big-endian bit order)."""
    bits = mask.detach().reshape(-1).to("cpu", torch.bool).numpy()
    return torch.from_numpy(np.packbits(bits))


def unpack_mask(packed: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """Inverse of `pack_mask`: 1-D uint8 -> boolean mask of `shape`."""
    count = int(np.prod(shape))
    bits = np.unpackbits(packed.detach().to("cpu").numpy(), count=count)
    return torch.from_numpy(bits.view(bool)).view(shape)  # unpackbits gives 0/1 bytes: a valid bool view, no copy


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
    k = int(torch.count_nonzero(kept))
    magnitudes = flat.abs()
    # ONE stable sort, by magnitude descending (ties by index): the bit patterns of non-negative float32 values
    # order like the values, and integer keys get torch's radix sort (about 5x faster than a float sort).
    order = torch.argsort(-magnitudes.view(torch.int32), stable=True)
    sorted_magnitudes = magnitudes[order]
    top, rest = sorted_magnitudes[:k], sorted_magnitudes[k:]
    if k and rest.numel() and bool(top[-1] <= rest[0]):
        # A tie at the boundary would make the top-k ambiguous: lift the kept group by one ulp.
        top = torch.clamp(top, min=torch.nextafter(rest[0], torch.tensor(float("inf"))))
    # The kept (dropped) positions, in the order of their own magnitudes, are the kept (dropped) entries of `order`.
    kept_in_order = kept[order]
    new = torch.empty_like(flat)
    new[order[kept_in_order]] = top
    new[order[~kept_in_order]] = rest
    signs = torch.where(flat < 0, -1.0, 1.0)
    return (new * signs).view(initial_scores.shape)
