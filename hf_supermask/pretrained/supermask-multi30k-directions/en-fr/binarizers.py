# Copyright 2026 The hf_supermask Authors. Licensed under the Apache License, Version 2.0.
"""Scores -> binary masks (edge-popup), and the packed on-disk form of masks.

The mask of a tensor keeps exactly k = round(density * numel) entries: those with the largest |score|.
Gradients reach the scores straight through the top-k (edge-popup's estimator). `abs()` is applied by the
caller, *outside* `MaskedWeightProduct`, so that autograd multiplies the straight-through gradient by sign(score):
handing it to the score unchanged would push negative scores the wrong way (`MaskedLinearFunction` applies the sign
itself).

The training step's temporaries that are as large as the weights (|scores|, sgn(scores), a linear layer's masked
weight) go into `ScratchBuffers`, reused from step to step: a fresh allocation of that size is fresh pages from the OS
at every step, whose faults cost more than the arithmetic on a small VM.
"""

from __future__ import annotations

import math
import threading

import numpy as np
import torch
from torch.autograd.function import once_differentiable
from torch.nn import functional as F


class ScratchBuffers:
    """Reusable buffers for temporaries that live inside one mask computation, one layer's forward or one backward:
    one set per thread (replicas in threads and autograd's device threads never share one), grown to the largest
    tensor asked for. Writing into fresh memory of that size pays its page faults at every step; reused memory does
    not.

    Owned by a model (`SupermaskRandomWeights.scratch`), so freed with it; a copy (`deepcopy`, pickling) starts empty.
    """

    def __init__(self):
        self._local = threading.local()

    def get(self, slot: str, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """A tensor of `shape` to overwrite, the same memory at every call with the same slot, dtype and device (in
        this thread): its content is the caller's only until the next call."""
        buffers = self._local.__dict__.setdefault("buffers", {})
        key = (slot, dtype, torch.device(device))
        numel = math.prod(shape)
        buffer = buffers.get(key)
        if buffer is None or buffer.numel() < numel:
            with torch.inference_mode(False):  # a normal tensor: later forwards outside inference_mode write into it
                buffer = buffers[key] = torch.empty(numel, dtype=dtype, device=device)
        return buffer[:numel].view(shape)

    def __deepcopy__(self, memo) -> ScratchBuffers:
        return ScratchBuffers()

    def __reduce__(self):
        return ScratchBuffers, ()


def _scratch_like(scratch: ScratchBuffers | None, slot: str, tensor: torch.Tensor) -> torch.Tensor | None:
    return None if scratch is None else scratch.get(slot, tuple(tensor.shape), tensor.dtype, tensor.device)


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
    # On the CPU, the k-th largest value (`kth_largest`, O(n)) and one comparison: far faster than torch.topk at
    # k = n / 2, which runs every training step for every tensor. Ties at the threshold are broken towards the lowest
    # indices, so that exactly k entries are kept.
    values = flat.float().numpy()
    threshold = kth_largest(values, k)
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


# Every 61st value (a prime: the sample spreads over the rows and columns of a weight of any width).
_SAMPLE_STRIDE = 61


def kth_largest(values: np.ndarray, k: int) -> np.floating:
    """The k-th largest value of a 1-D array (1 <= k <= size), exactly `np.partition`'s (NaN counts as the largest).

    On large arrays a strided sample brackets the value, one comparison counts what lies below the bracket and only
    the values inside it (a few percent) are partitioned, instead of partitioning everything (numpy's introselect,
    the largest single cost of a training step's masks). Exact whatever the sample: if the value is not inside the
    bracket, or NaN is present, it partitions the whole array instead."""
    rank = values.size - k  # from the smallest
    if values.size >= 1 << 16 and not np.isnan(values.sum()):  # (NaN escapes every comparison below)
        sample = values[::_SAMPLE_STRIDE].copy()
        quantile, size = rank / values.size, sample.size
        spread = 6.0 * math.sqrt(size * quantile * (1.0 - quantile)) + 2.0  # six standard deviations of a sample rank
        low, high = max(0, int(quantile * size - spread)), min(size - 1, int(quantile * size + spread) + 1)
        sample.partition((low, high))
        lowest, highest = (sample[low] if low > 0 else -np.inf), (sample[high] if high < size - 1 else np.inf)
        inside = values >= lowest
        below = values.size - int(np.count_nonzero(inside))
        inside &= values <= highest
        candidates = values[inside]
        if below <= rank < below + candidates.size:
            return np.partition(candidates, rank - below)[rank - below]
    return np.partition(values, rank)[rank]


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
        ctx,
        scores: torch.Tensor,
        weight: torch.Tensor,
        mask: torch.Tensor,
        free: torch.Tensor | None = None,
        scratch: ScratchBuffers | None = None,
    ) -> torch.Tensor:
        ctx.save_for_backward(scores, weight)  # references, not copies
        ctx.free, ctx.scratch = free, scratch  # constants of the module (not autograd inputs)
        return weight * mask

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        scores, weight = ctx.saved_tensors
        grad = grad_output * weight
        _to_score_gradient(grad, scores, ctx.free, ctx.scratch)
        return grad, None, None, None, None


def _to_score_gradient(
    grad: torch.Tensor, scores: torch.Tensor, free: torch.Tensor | None, scratch: ScratchBuffers | None
) -> None:
    """grad (that of the masked weight, times the weight) -> the scores' straight-through gradient, in place: times
    sgn(scores) (the `abs` of the selection), and times `free` when the tensor has frozen positions."""
    grad.mul_(torch.sgn(scores, out=_scratch_like(scratch, "sign", scores)))
    if free is not None:
        grad.mul_(free)


class MaskedLinearFunction(torch.autograd.Function):
    """`F.linear(hidden, weight * mask)` with `MaskedWeightProduct`'s straight-through gradient for the scores, fused
    so that no weight-sized tensor outlives the layer's forward: the masked weight is built in a scratch buffer (and
    rebuilt in backward, one product), and the weight's gradient becomes the scores' gradient in place. Per step that
    saves the masked weight kept for backward and two weight-sized gradients, and their page faults.

    The matrix products are F.linear's own (x W^T forward; grad W and grad^T x backward), in the dtype of the incoming
    gradient (bfloat16 under autocast, as autocast's linear computes them); the scores' gradient is float32.
    """

    @staticmethod
    def forward(
        ctx,
        hidden: torch.Tensor,
        scores: torch.Tensor,
        weight: torch.Tensor,
        mask: torch.Tensor,
        free: torch.Tensor | None,
        scratch: ScratchBuffers,
    ) -> torch.Tensor:
        ctx.save_for_backward(hidden, scores, weight, mask)
        ctx.free, ctx.scratch = free, scratch
        return F.linear(hidden, torch.mul(weight, mask, out=_scratch_like(scratch, "masked_weight", weight)))

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output: torch.Tensor):
        hidden, scores, weight, mask = ctx.saved_tensors
        grad_hidden = grad_scores = None
        if ctx.needs_input_grad[0]:
            masked = torch.mul(weight, mask, out=_scratch_like(ctx.scratch, "masked_weight", weight))
            grad_hidden = grad_output.matmul(masked.to(grad_output.dtype))
        if ctx.needs_input_grad[1]:
            rows = grad_output.reshape(-1, grad_output.shape[-1])
            grad_scores = rows.t().mm(hidden.reshape(-1, hidden.shape[-1]).to(rows.dtype)).to(scores.dtype)
            grad_scores.mul_(weight)
            _to_score_gradient(grad_scores, scores, ctx.free, ctx.scratch)
        return grad_hidden, grad_scores, None, None, None, None


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
