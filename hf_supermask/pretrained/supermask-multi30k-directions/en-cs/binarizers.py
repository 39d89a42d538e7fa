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


def frozen_counts(numel: int, density: float, frozen_fraction: float) -> tuple[int, int]:
    """(frozen, frozen_kept): how many of a tensor's `numel` positions are frozen (fixed by the seed, never searched)
    at `frozen_fraction`, and how many of those are kept.

    round(density * frozen) frozen positions are kept, so that the tensor keeps `num_kept(numel, density)` in all, as
    without frozen positions (at density 0.5, half kept and half pruned, as Otsuka et al.). At least one position
    stays free, and the free positions can always hold the remaining `num_kept - frozen_kept`."""
    if not frozen_fraction:
        return 0, 0
    kept = num_kept(numel, density)
    frozen = min(int(round(frozen_fraction * numel)), numel - 1)
    # Rounding alone already keeps 0 <= kept - frozen_kept <= numel - frozen, but for num_kept's floor of one: clamp.
    frozen_kept = min(max(int(round(density * frozen)), kept - (numel - frozen)), kept)
    return frozen, frozen_kept


def coat_counts(numel: int, density: float, coats: int = 1, coat_density_ratio: float = 0.5) -> tuple[int, ...]:
    """How many weights each of a tensor's `coats` nested masks keeps (multicoated supermasks, Okoshi et al. 2022):
    the first `num_kept(numel, density)`, each further one `coat_density_ratio` of the previous one's (at least one).
    """
    kept = [num_kept(numel, density)]
    for _ in range(coats - 1):
        kept.append(num_kept(kept[-1], coat_density_ratio))
    return tuple(kept)


@torch.no_grad()
def coated_mask(magnitudes: torch.Tensor, kept: tuple[int, ...]) -> torch.Tensor:
    """uint8 tensor of `magnitudes`' shape: at each entry, how many of the nested top-k selections (`kept`, largest
    first) hold it. The selections are nested because `topk_mask` breaks ties the same way for every k."""
    counts = topk_mask(magnitudes, kept[0]).to(torch.uint8)
    for k in kept[1:]:
        counts += topk_mask(magnitudes, k)
    return counts


@torch.no_grad()
def topk_mask(magnitudes: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean mask of `magnitudes`' shape with exactly `k` True entries at the k largest values."""
    flat = magnitudes.detach().reshape(-1)
    if k >= flat.numel():
        return torch.ones(magnitudes.shape, dtype=torch.bool, device=flat.device)
    if k <= 0:  # only the free positions of a tensor with frozen positions can keep none
        return torch.zeros(magnitudes.shape, dtype=torch.bool, device=flat.device)
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
        ties = np.flatnonzero(values == threshold)[:missing]
        if ties.size < missing:  # NaN compares false both ways: only NaN values leave fewer than k (no extra pass)
            raise ValueError(
                f"Scores hold {int(np.isnan(values).sum())} NaN value(s), so no top-{k} of them exists (the mask "
                "would keep fewer weights than its density). Training diverged: lower the learning rate, or resume "
                "from an earlier checkpoint."
            )
        mask[ties] = True
    return torch.from_numpy(mask).view(magnitudes.shape)


class MaskedWeightProduct(torch.autograd.Function):
    """`weight * mask` (a boolean mask, or with several coats each weight's number of coats), with edge-popup's
    straight-through gradient for the scores: the gradient of the product with respect to the mask, passed through the
    top-k unchanged, then through `abs` (times sgn(scores)). With coats, one gradient per score, not one per coat: the
    coats are nested selections of the same scores, and Adam would undo a constant factor anyway.

    One Function rather than mul, a straight-through step and abs: those would allocate |scores| and a float copy of
    the mask for every tensor at every training forward (twice the size of the model, only to be freed again).
    Backward: (grad * weight) * sgn(scores), times `free` when the tensor has frozen positions (their scores select
    nothing, so they get no gradient: no optimizer moves them, and they add nothing to a gradient norm).
    """

    @staticmethod
    def forward(
        ctx, scores: torch.Tensor, weight: torch.Tensor, mask: torch.Tensor, free: torch.Tensor | None = None
    ) -> torch.Tensor:
        ctx.save_for_backward(scores, weight)  # references, not copies
        ctx.free = free  # a constant of the module (not an autograd input)
        return weight * mask

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        scores, weight = ctx.saved_tensors
        grad = (grad_output * weight).mul_(scores.sgn())
        if ctx.free is not None:
            grad.mul_(ctx.free)
        return grad, None, None, None


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
    """Scores whose top-k is exactly `mask`, built from the seed's initial scores in linear time.

    Scores of the form {1, 0} would freeze a loaded mask (every kept score far above every dropped one), so we keep
    the initial scores' signs and their magnitudes, and only move the magnitudes that are on the wrong side: each
    kept position outside the initial top-k swaps magnitudes with a dropped position inside it (in index order; the
    two sets have the same size). Fine-tuning from a loaded checkpoint therefore starts as close to the mask's
    decision boundary as training from scratch does.
    """
    values = initial_scores.detach().reshape(-1).float().cpu().numpy()
    kept = mask.detach().reshape(-1).cpu().numpy().astype(bool, copy=False)
    k = int(np.count_nonzero(kept))
    magnitudes = np.abs(values)
    if k in (0, magnitudes.size):
        return initial_scores.detach().float().clone()
    # About the k-th largest magnitude: exact for small tensors, else that of a 1-in-16 sample (16x cheaper; the
    # few entries an inexact threshold leaves unpaired below simply take its value).
    sample = magnitudes if magnitudes.size < 2**16 else magnitudes[::16]
    rank = min(sample.size - 1, max(0, round(sample.size * (1 - k / magnitudes.size))))
    threshold = np.partition(sample, rank)[rank]
    # Entries equal to the threshold may stay where they are: the kept ones among them are lifted above it below.
    rise = np.flatnonzero(kept & (magnitudes < threshold))  # kept, but below the initial top-k
    fall = np.flatnonzero(~kept & (magnitudes > threshold))  # dropped, but inside it
    # Swap magnitudes pairwise; entries equal to the threshold can make one side longer: its unpaired entries are
    # given the threshold itself.
    pairs = min(rise.size, fall.size)
    new = magnitudes.copy()
    new[rise[:pairs]], new[fall[:pairs]] = magnitudes[fall[:pairs]], magnitudes[rise[:pairs]]
    new[rise[pairs:]] = threshold
    new[fall[pairs:]] = threshold
    at_threshold = np.flatnonzero(new == threshold)
    # Kept entries equal to the threshold go one ulp above it: the top-k is then unambiguous.
    new[at_threshold[kept[at_threshold]]] = np.nextafter(threshold, np.float32(np.inf), dtype=np.float32)
    return torch.from_numpy(np.copysign(new, values)).view(initial_scores.shape)
