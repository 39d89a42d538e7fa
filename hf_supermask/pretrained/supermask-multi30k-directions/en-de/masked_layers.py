# Copyright 2026 The hf_supermask Authors. Licensed under the Apache License, Version 2.0.
"""Masked layers over frozen random weights, and the module that owns those weights.

Layout (peft-style: the tiny trainable state next to a declared, regenerated base):

* `SupermaskRandomWeights` owns every frozen random tensor as a non-persistent buffer (never saved) and
  regenerates them from the seed. It is ONE module registered under every masked layer (and the model), so that
  `.to()`, casts, `deepcopy` and `nn.DataParallel` replication, which all map modules by identity, keep one tensor
  per random weight (with `share_layers`, one per stack) and give every replica its own device's copy.
* `MaskedWeight` (and its `MaskedLinear` / `MaskedEmbedding` forms) owns one tensor's trainable float32 `scores`
  and its persistent packed `mask` (uint8, numpy.packbits layout): the only thing a checkpoint stores.

The caching rule, the only one (everything else is computed from the scores when it is needed):

* A training-mode forward computes each mask from the scores once per model-level forward (the embedding's three
  uses share it) and drops it when that forward ends; with grad enabled the scores get straight-through gradients.
  The recomputation of gradient checkpointing, and a layer called on its own, compute it again from the same
  scores. (Gradient-accumulation micro-steps therefore pay for one top-k each.) Linear layers do not keep their
  masked weight W * mask for backward, which rebuilds it (`binarizers.MaskedLinearFunction`); the step's other
  weight-sized temporaries go into reused scratch memory (`binarizers.ScratchBuffers`).
* An eval-mode forward uses the folded weight W * mask, cached per tensor (a constant: grad-enabled eval forwards,
  e.g. for input attribution, get gradients for their inputs, not for the scores). Nothing outside the module
  decides whether it is stale: the fold records the scores and the random weight it was built from, as tensors
  (`data_ptr`) and version counters, checked at every eval forward, and the scores' content checksum (two
  elementwise passes), checked at the first eval forward after `eval()`. So every in-place change torch counts
  (an optimizer step, `scores.copy_` under no_grad, a load) refolds at once, edits that no version counter sees
  (`scores.data.copy_`, an EMA through `.data`) are seen by the next `eval()`, and `eval()` on unchanged scores
  keeps the fold (one checksum, no top-k). Fused optimizer kernels skip the version counter: a stateless
  optimizer-step hook bumps it for every parameter a step updated. The fold is dropped by `train()`, `.to()` and
  casts; it is not copied or pickled (`deepcopy`, `torch.save`), and a replica (`nn.DataParallel`), whose tensors
  are others, folds its own. It is never an inference tensor, even when built under `inference_mode`.
* Scores stay float32 whatever the model's dtype, and so do their gradients: a cast never changes a mask.
* Mask sets (`mask_sets.py`): each set owns its scores `Parameter`; the inactive ones are held by the model, not
  registered. A set whose scores are exactly what `load_packed_mask` rebuilt from a mask (same tensor and version
  since, no gradient pending) is held as that packed mask only, its `Parameter` emptied; see
  `outgoing_mask_set_state`.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import math
import os
from concurrent.futures import ThreadPoolExecutor, wait

import numpy as np
import torch
from torch import nn
from torch.autograd.graph import increment_version
from torch.nn import functional as F
from torch.optim.optimizer import register_optimizer_step_post_hook

from .binarizers import (
    MaskedLinearFunction,
    MaskedWeightProduct,
    ScratchBuffers,
    coat_counts,
    coated_mask,
    frozen_counts,
    pack_mask,
    packed_size,
    scores_for_mask,
    topk_mask,
    unpack_mask,
)
from .external_weights import load_external_tensor, tensor_sha256
from .mask_coding import CODED_SUFFIX, decode_mask, encode_mask
from .random_weights import (
    generate_frozen_positions,
    generate_initial_scores,
    generate_weight,
    init_of,
    update_fingerprint,
)


_pool: tuple[int, int, ThreadPoolExecutor] | None = None  # the kept threads: (process id, threads, pool)


def threaded_map(function, items, keep_threads: bool = False):
    """`map(function, items)` on `torch.get_num_threads()` threads (torch's default: one per core), yielding the
    results in order as they come. For independent numpy / torch work on large arrays, which releases the GIL.

    The threads end with the call, unless `keep_threads`: then they are kept for the next such call (a training
    step's masks run there at every step, and their scratch buffers are per thread), made anew in a forked child and
    when torch's thread count changes. Kept threads must run numpy work only: a thread that runs a parallel torch op
    gets its own OpenMP team, and while it lives the process has more OpenMP threads than cores, so libgomp stops
    spinning between parallel regions: every small op of the main thread (a decoding step's) then waits for a
    wake-up. No task outlives the call: when it ends early (an error, a caller that stops iterating), the rest are
    cancelled or awaited."""
    global _pool
    threads = torch.get_num_threads()
    if not keep_threads:
        pool = ThreadPoolExecutor(threads, thread_name_prefix="supermask")
    else:
        if _pool is None or _pool[:2] != (os.getpid(), threads):
            if _pool is not None and _pool[0] == os.getpid():
                _pool[2].shutdown(wait=False)
            _pool = (os.getpid(), threads, ThreadPoolExecutor(threads, thread_name_prefix="supermask-kept"))
        pool = _pool[2]
    futures = [pool.submit(function, item) for item in items]
    try:
        for future in futures:
            yield future.result()
    finally:
        for future in futures:
            future.cancel()
        wait(futures)
        if not keep_threads:
            pool.shutdown()


class SupermaskRandomWeights(nn.Module):
    """The frozen random tensors of a model, regenerated bit-exactly from `config.seed`.

    Buffer names are the generator keys ("embed_tokens", "encoder/self_attn/q_proj" when layers share weights,
    "encoder/layers/3/self_attn/q_proj" when they do not), so the name of a tensor is also its random stream.
    """

    def __init__(
        self,
        config,
        shapes: dict[str, tuple[int, int]],
        padding_rows: dict[str, int] | None = None,
        external: dict[str, tuple[str, str | None]] | None = None,
        scales: dict[str, float] | None = None,
    ):
        super().__init__()
        self.seed = config.seed
        self.weight_init = config.weight_init
        self.score_init = config.score_init
        self.density = config.density
        self.frozen_fraction = config.frozen_fraction
        self.coats = config.coats
        self.coat_density_ratio = config.coat_density_ratio
        self.scale_fan = config.scale_fan
        self.attention_init = config.attention_init
        self.shapes = dict(shapes)
        # Rows set to zero after generation (the padding token's embedding, as the reference code does).
        self.padding_rows = dict(padding_rows or {})
        # Tensors multiplied by a constant once generated or loaded (`embedding_scale`); part of the fingerprint.
        self.scales = {name: scale for name, scale in (scales or {}).items() if scale != 1.0}
        # Tensors taken from another checkpoint instead of generated: {name: (source, expected sha256 or None)}.
        self.external = dict(external or {})
        self.external_sha256: dict[str, str] = {}
        self.fingerprint: str | None = None
        # Masks of the model-level forward in progress (see `forward_scope`), by masked module.
        self._forward_masks: dict[nn.Module, torch.Tensor] | None = None
        # [True] inside `checked_folds` (a `generate` call): the eval-mode folds were checked once for the whole call.
        # A list that every masked tensor holds too, so that the decoding loop's test is one plain attribute read.
        self._folds_checked = [False]
        # Reused memory for the training step's weight-sized temporaries (`binarizers.ScratchBuffers`).
        self.scratch = ScratchBuffers()
        for name, shape in self.shapes.items():
            self.register_buffer(name, torch.empty(shape), persistent=False)

    def get(self, name: str) -> torch.Tensor:
        return self._buffers[name]

    def generate(self, name: str) -> torch.Tensor:
        """The float32 tensor `name`, exactly as every process regenerates it (or loads it, for an external one)."""
        if name in self.external:
            weight = load_external_tensor(*self.external[name], self.shapes[name])
            self.external_sha256[name] = tensor_sha256(weight)
        else:
            law, gain = init_of(name, self.weight_init, self.attention_init)
            weight = generate_weight(self.seed, name, self.shapes[name], law, self.density, self.scale_fan, gain)
        if name in self.scales:
            weight.mul_(self.scales[name])
        if name in self.padding_rows:
            weight[self.padding_rows[name]] = 0.0
        return weight

    @torch.no_grad()
    def regenerate(self) -> str:
        """Regenerate every tensor in place and return their fingerprint.

        The tensors are independent streams, generated in parallel (numpy releases the GIL; `torch.get_num_threads()`
        workers, torch's own default) and hashed in name order as they arrive, while the later ones are still being
        generated: one pass over the weights. Every tensor is still generated alone, so the result is bit-identical
        at any thread count."""
        digest = hashlib.sha256()
        names = sorted(self.shapes)  # the fingerprint's order
        for name, weight in zip(names, threaded_map(self.generate, names)):
            update_fingerprint(digest, name, weight)
            buffer = self._buffers[name]
            if buffer.device == weight.device and buffer.dtype == weight.dtype:
                buffer.set_(weight)  # the generated tensor itself: no copy (the buffer object stays the same)
            else:
                buffer.copy_(weight)  # from_pretrained has already placed the buffers on their device and dtype
        self.fingerprint = digest.hexdigest()
        return self.fingerprint

    @contextlib.contextmanager
    def forward_scope(self, root: nn.Module | None = None):
        """Wraps every model-level forward (of `root`): the masks computed inside are shared by every use of a tensor
        and dropped when the outermost forward ends (nested forwards, e.g. the encoder's, join the outer one).

        A training forward computes the masks of `root`'s masked tensors up front, on torch's threads
        (`compute_masks`): the selection is numpy work, one thread per tensor, that would otherwise run on one core."""
        outermost = self._forward_masks is None
        if outermost:
            self._forward_masks = {}
            if root is not None and root.training:
                self.compute_masks(module for module in root.modules() if isinstance(module, MaskedWeight))
        try:
            yield
        finally:
            if outermost:
                self._forward_masks = None

    def compute_masks(self, modules) -> None:
        """Compute the masks of the forward in progress for the training-mode `modules` in parallel (`threaded_map`):
        those whose selection is numpy work alone (CPU scores, no frozen positions, one coat). The others, and every
        mask when torch has one thread, are computed where they are first used."""
        pending = [module for module in modules if module.training and module.masks_anything and module.numpy_mask]
        if len(pending) > 1 and torch.get_num_threads() > 1:
            masks = threaded_map(lambda module: module.mask_from_scores(module.scores), pending, keep_threads=True)
            self._forward_masks.update(zip(pending, masks))

    @contextlib.contextmanager
    def checked_folds(self, modules):
        """Wraps `generate`: check every masked tensor's eval-mode fold once (refolding a stale one), then let every
        forward of the decoding loop use the folds unchecked. Scores do not change while a batch is decoded, and a
        check per layer and decoding step is a measurable share of a small model's step."""
        if self._folds_checked[0]:  # a nested call: the outer one has checked
            yield
            return
        for module in modules:
            if not module.training:
                module.effective_weight()
        self._folds_checked[0] = True
        try:
            yield
        finally:
            self._folds_checked[0] = False

    def initial_scores(self, name: str, shape: tuple[int, int]) -> torch.Tensor:
        return generate_initial_scores(self.seed, name, shape, self.score_init)

    def frozen_positions(
        self, name: str, shape: tuple[int, int], frozen: int, frozen_kept: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(free, kept): boolean tensors of `shape`, False at the masked tensor `name`'s frozen positions, and True at
        the frozen positions that are kept (`random_weights.generate_frozen_positions`)."""
        free, kept = generate_frozen_positions(self.seed, name, math.prod(shape), frozen, frozen_kept)
        return torch.from_numpy(free).view(shape), torch.from_numpy(kept).view(shape)

    def extra_repr(self) -> str:
        return f"seed={self.seed}, weight_init={self.weight_init!r}, tensors={len(self.shapes)}"


class MaskedWeight(nn.Module):
    """One frozen random weight, its trainable float32 scores and its binary mask (top-k of |scores|).

    The effective weight is W * mask, with a straight-through gradient to the scores; see the module docstring for
    when masks are computed and what is cached.

    With `config.frozen_fraction` > 0, `num_frozen` positions are frozen by the seed (`num_frozen_kept` of them kept,
    the rest pruned): the mask keeps those as they are and the top-|score| `num_kept - num_frozen_kept` of the free
    positions (`mask_from_scores`), the frozen positions' scores get no gradient, and the `mask` buffer holds the free
    positions' bits only (`pack_stored` / `unpack_stored`). The scores keep the weight's shape (a frozen position's
    score is simply never used): every shape-keyed path (casts, the fold's checksum, mask sets, optimizers, resuming
    from scores) stays as it is.

    With `config.coats` > 1 (multicoated supermasks, Okoshi et al. 2022), the mask is a uint8 tensor of coat counts:
    `coat_kept[i]` weights are in coat i + 1, each coat the top-|score| part of the one before, and a weight in c coats
    counts c times (W * c). The `mask` buffer stores coat 1's bits for every position, then each further coat's bits
    for the positions of the coat before it (`pack_stored`): 1 + density + density * ratio + ... bits per weight.
    """

    def __init__(self, random_weights: SupermaskRandomWeights, weight_name: str, score_name: str, density: float):
        super().__init__()
        shape = random_weights.shapes[weight_name]
        self.weight_name = weight_name
        self.score_name = score_name
        self.shape = tuple(shape)
        # Weights each coat keeps (one coat: `num_kept`); `num_kept` is the first coat's, the nonzero weights.
        self.coat_kept = coat_counts(math.prod(shape), density, random_weights.coats, random_weights.coat_density_ratio)
        self.num_kept = self.coat_kept[0]
        self.num_frozen, self.num_frozen_kept = frozen_counts(math.prod(shape), density, random_weights.frozen_fraction)
        # float32 whatever the default dtype (from_pretrained(dtype=...)): scores select, they are not weights.
        self.scores = nn.Parameter(torch.empty(shape, dtype=torch.float32))
        self.register_buffer("mask", torch.zeros(self.stored_size, dtype=torch.uint8))
        self.random_weights = random_weights  # the one shared owner, registered here too (see the module docstring)
        self._folds_checked = random_weights._folds_checked  # the owner's flag itself (see `checked_folds`)
        self.__dict__.update(self._NO_CACHES)
        # The frozen layout by device, made on first use (outside from_pretrained's meta-device construction): a plain
        # attribute, not a buffer, so that loading never replaces it with an uninitialised placeholder.
        self._frozen_layouts: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}
        self.register_state_dict_pre_hook(_pack_mask_before_state_dict)

    # The caches and what they were built from, all empty. `_folded`: the eval-mode fold; `_fold_key`: (data_ptr,
    # version) of the scores and of the random weight it was built from; `_fold_checksum`: the scores' content then;
    # `_check_fold_content`: set by eval(), compare that checksum at the next eval forward. `_rebuilt_key`: (data_ptr,
    # version) of the scores `load_packed_mask` rebuilt from a mask: while the scores are still those, they hold no
    # more than their packed mask, which is all an inactive mask set then keeps. `_fold_bias`: zeros made with the
    # fold, used only beside it (`masked_linear`).
    _NO_CACHES = dict(
        _folded=None, _fold_bias=None, _fold_key=None, _fold_checksum=None, _check_fold_content=False, _rebuilt_key=None
    )

    @property
    def weight(self) -> torch.Tensor:
        """The frozen random weight (shared with other layers when `share_layers` is set)."""
        return self.random_weights.get(self.weight_name)

    def _scores_key(self) -> tuple[int, int]:
        return _tensor_key(self.scores)

    def _fold_source(self) -> tuple[tuple[int, int], tuple[int, int]]:
        return _tensor_key(self.scores), _tensor_key(self.weight)

    def current_mask(self) -> torch.Tensor:
        """Boolean mask the scores select (`mask_from_scores`), computed once per model-level forward."""
        forward_masks = self.random_weights._forward_masks
        if forward_masks is not None and self in forward_masks:
            return forward_masks[self]
        mask = self.mask_from_scores(self.scores)
        if forward_masks is not None:
            forward_masks[self] = mask
        return mask

    @torch.no_grad()
    def mask_from_scores(self, scores: torch.Tensor) -> torch.Tensor:
        """The boolean mask (of the weight's shape) that `scores` select: the `num_kept` largest |scores|, or with
        frozen positions, the frozen kept ones plus the `num_kept - num_frozen_kept` largest |scores| among the free
        positions, or with several coats, the uint8 coat counts of the nested top-|score| selections (`coat_kept`).
        `mask_from_scores(random_weights.initial_scores(score_name, shape))` is the seed's initial mask."""
        scores = scores.detach()
        magnitudes = self.random_weights.scratch.get("magnitudes", scores.shape, scores.dtype, scores.device)
        if scores.device.type == "cpu" and scores.dtype == torch.float32:
            np.abs(scores.numpy(), out=magnitudes.numpy())  # numpy, not torch's thread pool (see `compute_masks`)
        else:
            torch.abs(scores, out=magnitudes)
        if len(self.coat_kept) > 1:
            return coated_mask(magnitudes, self.coat_kept)
        if not self.num_frozen:
            return topk_mask(magnitudes, self.num_kept)
        free, kept = self.frozen_layout(magnitudes.device)
        mask = kept.clone()
        mask[free] = topk_mask(magnitudes[free], self.num_kept - self.num_frozen_kept)
        return mask

    @property
    def num_free(self) -> int:
        """Positions the mask searches (and a checkpoint stores): all but the frozen ones."""
        return math.prod(self.shape) - self.num_frozen

    @property
    def stored_size(self) -> int:
        """Bytes of the packed `mask` buffer: one bit per free position, and with several coats one more bit for each
        position of every coat but the last (each coat packed on its own)."""
        return packed_size((self.num_free,)) + sum(packed_size((kept,)) for kept in self.coat_kept[:-1])

    def frozen_layout(self, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """(free, kept): boolean tensors of the weight's shape on `device`, False at the frozen positions, True at the
        frozen positions that are kept. The same in every process (from the seed, key `frozen/{score_name}`)."""
        device = torch.device(device)
        layouts = self._frozen_layouts
        if device not in layouts:
            # Normal tensors even under inference_mode: a later training backward multiplies by `free`.
            with torch.inference_mode(False):
                cpu = torch.device("cpu")
                if cpu not in layouts:
                    layouts[cpu] = self.random_weights.frozen_positions(
                        self.score_name, self.shape, self.num_frozen, self.num_frozen_kept
                    )
                layouts[device] = tuple(t.to(device) for t in layouts[cpu])
        return layouts[device]

    @torch.no_grad()
    def pack_stored(self, mask: torch.Tensor) -> torch.Tensor:
        """A boolean mask of the weight's shape -> what the `mask` buffer stores (1-D uint8, numpy.packbits layout):
        the bits of the free positions, in row-major order (every bit when nothing is frozen: `pack_mask(mask)`).
        Refuses a mask that does not hold the frozen positions' values. With several coats: coat 1's bits, then each
        further coat's bits over the positions of the coat before it."""
        if len(self.coat_kept) > 1:
            counts = mask.detach().to("cpu").reshape(-1)
            parts = [pack_mask(counts >= 1)]
            for coat in range(1, len(self.coat_kept)):
                parts.append(pack_mask(counts[counts >= coat] > coat))
            return torch.cat(parts)
        if not self.num_frozen:
            return pack_mask(mask)
        free, kept = self.frozen_layout()
        mask = mask.detach().to("cpu", torch.bool).view(self.shape)
        if not torch.equal(mask.masked_fill(free, False), kept):
            raise ValueError(
                f"The mask given for `{self.score_name}` changes some of its frozen positions (fixed by the seed and "
                "frozen_fraction): only the free positions can be stored. Compute masks with `mask_from_scores`."
            )
        return pack_mask(mask[free])

    @torch.no_grad()
    def unpack_stored(self, packed: torch.Tensor) -> torch.Tensor:
        """Inverse of `pack_stored`: 1-D uint8 -> boolean mask of the weight's shape, the frozen positions filled in
        (`unpack_mask(packed, shape)` when nothing is frozen), or the uint8 coat counts with several coats. A coat
        that does not keep `coat_kept` weights leaves the next coat's bits nowhere to go: a ValueError."""
        if len(self.coat_kept) > 1:
            numel = math.prod(self.shape)
            counts = unpack_mask(packed[: packed_size((numel,))], (numel,)).to(torch.uint8)
            offset = packed_size((numel,))
            for coat, kept in enumerate(self.coat_kept[:-1], start=1):
                inside = torch.from_numpy(np.flatnonzero(counts.numpy() >= coat))
                if inside.numel() != kept:
                    raise ValueError(f"coat {coat} keeps {inside.numel()} weights, not {kept}")
                counts[inside] += unpack_mask(packed[offset : offset + packed_size((kept,))], (kept,))
                offset += packed_size((kept,))
            return counts.view(self.shape)
        if not self.num_frozen:
            return unpack_mask(packed, self.shape)
        free, kept = self.frozen_layout()
        mask = kept.clone()
        mask[free] = unpack_mask(packed, (self.num_free,))
        return mask

    def scores_selecting(self, mask: torch.Tensor, initial: torch.Tensor | None = None) -> torch.Tensor:
        """Float32 scores, built from the seed's initial scores, whose selection (`mask_from_scores`) is exactly
        `mask`, a mask of `num_kept` entries that holds the frozen positions' values (`scores_for_mask` on the free
        positions; a frozen position keeps its initial score, which selects nothing)."""
        if initial is None:  # (callers that have generated them already pass them)
            initial = self.random_weights.initial_scores(self.score_name, self.shape)
        if len(self.coat_kept) > 1:
            # Coat by coat: each rebuild only moves magnitudes within the coat before (values from there, or its own
            # threshold), so every position of it stays above everything outside it.
            counts = mask.detach().to("cpu").reshape(-1)
            scores = scores_for_mask(initial, counts >= 1).reshape(-1)
            for coat in range(1, len(self.coat_kept)):
                inside = counts >= coat
                scores[inside] = scores_for_mask(scores[inside], counts[inside] > coat)
            return scores.view(self.shape)
        if not self.num_frozen:
            return scores_for_mask(initial, mask)
        free, _ = self.frozen_layout()
        initial[free] = scores_for_mask(initial[free], mask.cpu()[free])
        return initial

    def effective_weight(self) -> torch.Tensor:
        if self._folds_checked[0] and self._folded is not None and not self.training:
            return self._folded  # the hot path of generation (checked once per `generate` call)
        if not self.training and self._fold_is_fresh():
            return self._folded
        weight = self.weight
        if not self.masks_anything:
            return weight  # a fixed embedding
        if self.training:
            if self.scores.requires_grad and torch.is_grad_enabled():
                return MaskedWeightProduct.apply(
                    self.scores, weight, self.current_mask(), self._free_positions(), self.random_weights.scratch
                )
            return weight * self.current_mask().to(weight.dtype)
        self._set_fold(self.current_mask())
        return self._folded

    def masked_linear(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """`F.linear(hidden_states, effective_weight())`; in training fused (`MaskedLinearFunction`), so that the
        masked weight lives only inside this forward and its backward."""
        if self.training and self.masks_anything:
            return MaskedLinearFunction.apply(
                hidden_states,
                self.scores,
                self.weight,
                self.current_mask(),
                self._free_positions(),
                self.random_weights.scratch,
            )
        weight = self.effective_weight()
        # A zero bias beside the fold: torch's CPU linear then takes its addmm path, not matmul -> mm; same bits, and
        # generation about 2% faster at d256 (an A/B of one model, greedy, 32 sentences per request).
        return F.linear(hidden_states, weight, self._fold_bias if weight is self._folded else None)

    @property
    def numpy_mask(self) -> bool:
        """Whether `mask_from_scores` of the scores is numpy work alone (no torch op): CPU scores, nothing frozen,
        one coat. Such masks can be computed on worker threads without starting torch's thread pool in each."""
        return self.scores.device.type == "cpu" and not self.num_frozen and len(self.coat_kept) == 1

    @property
    def masks_anything(self) -> bool:
        """False for a tensor that keeps every weight in one coat (a fixed embedding): its weight is used as it is."""
        return self.num_kept < math.prod(self.shape) or len(self.coat_kept) > 1

    def _free_positions(self) -> torch.Tensor | None:
        """The training backward's `free` (None when nothing is frozen)."""
        return self.frozen_layout(self.scores.device)[0] if self.num_frozen else None

    def _fold_is_fresh(self) -> bool:
        if self._folded is None or self._fold_key != self._fold_source():
            return False
        if self._check_fold_content:
            self._check_fold_content = False
            if not torch.equal(_scores_checksum(self.scores), self._fold_checksum):
                return False  # edited where no version counter sees it (`.data`)
        return True

    def _set_fold(self, mask: torch.Tensor) -> None:
        # Normal tensors even under inference_mode: a later grad-enabled forward may save them for backward.
        with torch.inference_mode(False), torch.no_grad():
            weight = self.weight
            self._folded = weight * mask.to(weight.device)  # W * bool (or coat counts): no float copy of the mask
            self._fold_bias = self._folded.new_zeros(self._folded.shape[0])
            self._fold_key = self._fold_source()
            self._fold_checksum = _scores_checksum(self.scores)
            self._check_fold_content = False

    def scores_changed(self) -> None:
        """The scores were changed (an optimizer step, a reset, loaded scores): they are no longer a mask's rebuild.

        Only needed after edits no version counter sees (through `.data`) when the model holds several mask sets
        and is switched without an `eval()` in between; everything else is seen on its own (module docstring).
        """
        self._folded = self._fold_key = self._fold_checksum = self._rebuilt_key = None

    def train(self, mode: bool = True):
        if mode:
            self._folded = None  # a fold is an eval-mode cache; training computes masks per forward
        elif self._folded is not None:
            self._check_fold_content = True  # eval(): refold only if the scores changed (checked lazily, once)
        return super().train(mode)

    def __getstate__(self):
        # deepcopy and pickling: caches (and the data_ptr they are keyed on) do not travel; the copy folds its own.
        state = super().__getstate__()
        state.update(self._NO_CACHES)
        return state

    def _apply(self, fn, recurse=True):
        # `.data` (a second reference to the float32 storage): torch swaps the Parameter's and its grad's data in place
        scores = self.scores.data
        grad = None if self.scores.grad is None else self.scores.grad.data
        rebuilt = self._rebuilt_key is not None and self._rebuilt_key == self._scores_key()
        super()._apply(fn, recurse)
        if self.scores.dtype != torch.float32:
            # A cast: keep the exact float32 scores (a lower precision would tie the top-k) and their accumulated
            # gradient (rounding it would change the next step), follow the device only.
            self.scores.data = scores.to(self.scores.device)
            if grad is not None:
                self.scores.grad = grad.to(self.scores.device)
        self._folded = None
        if rebuilt:  # a move copies the scores, it does not edit them: still a mask's rebuild (packed when inactive)
            self._rebuilt_key = self._scores_key()
        return self

    @torch.no_grad()
    def reset_scores(self) -> None:
        """Initial scores from the seed (not from the training seed)."""
        self.scores.copy_(self.random_weights.initial_scores(self.score_name, self.shape))
        self.scores_changed()

    @torch.no_grad()
    def load_packed_mask(self, packed: torch.Tensor | None = None, prefix: str = "") -> None:
        """Adopt a packed mask (default: the `mask` buffer) and rebuild scores whose top-k is exactly that mask.

        Refuses a mask of the wrong type, size or number of kept entries: a checkpoint is never silently
        loaded with a mask other than the one that was saved.
        """
        packed = self.mask if packed is None else packed
        self._adopt_mask(packed, self._check_packed(packed, prefix))

    def _adopt_mask(self, packed: torch.Tensor, mask: torch.Tensor, initial: torch.Tensor | None = None) -> None:
        """`load_packed_mask` once `packed` is checked and unpacked into `mask` (`initial`: the initial scores, if
        the caller has generated them already)."""
        with torch.inference_mode(False), torch.no_grad():
            scores = self.scores_selecting(mask, initial)
            if self.scores.device == scores.device and self.scores.dtype == scores.dtype:
                self.scores.data = scores  # fresh memory already: no second copy (the Parameter object stays)
            else:
                self.scores.copy_(scores)
            if packed is not self.mask:
                self.mask.copy_(packed)
            self.scores_changed()
            if not self.training:  # the fold eval() would build from these scores, from the mask at hand (no top-k)
                self._set_fold(mask)
            self._rebuilt_key = self._scores_key()

    # ---- the compact mask encoding (`mask_coding.py`): masks coded against the seed's initial top-k ----

    def initial_mask(self, initial_scores: torch.Tensor | None = None) -> torch.Tensor:
        """The mask the seed's initial scores select: what training starts from, and what the loader can regenerate
        to predict a found mask."""
        if initial_scores is None:
            initial_scores = self.random_weights.initial_scores(self.score_name, self.shape)
        return self.mask_from_scores(initial_scores)

    @torch.no_grad()
    def coded_mask(self, sync: bool = True) -> torch.Tensor:
        """The current mask coded against `initial_mask()` (what an `"initial_xor_lzma"` checkpoint stores);
        `sync=False` codes the `mask` buffer as it is (a caller that has just synced it)."""
        if sync:
            self.sync_packed_mask()
        return encode_mask(self.mask, self.pack_stored(self.initial_mask()))

    @torch.no_grad()
    def load_coded_mask(self, coded: torch.Tensor, prefix: str = "") -> None:
        """`load_packed_mask` for a mask coded by `coded_mask` (the initial scores generated once, for both)."""
        initial = self.random_weights.initial_scores(self.score_name, self.shape)
        packed = decode_mask(coded, self.pack_stored(self.initial_mask(initial)), f"`{prefix}mask_coded`")
        self._adopt_mask(packed, self._check_packed(packed, prefix), initial)

    # ---- mask sets (driven by `mask_sets.MaskSetsMixin`, which validates every module before changing any) ----

    def outgoing_mask_set_state(self) -> dict[str, torch.Tensor]:
        """What this module's active mask set becomes when another is activated (computed, nothing changed yet).

        Always its scores `Parameter` (so its `.grad` and optimizer state stay its own). If the scores are exactly a
        loaded mask's rebuild (nothing trained or edited since, no gradient pending), the packed mask too: the
        `Parameter` is then emptied on deactivation and refilled from the mask on activation (one bit per weight
        while inactive). Otherwise the float32 scores are kept whole, so nothing training learned is lost.
        """
        if self._rebuilt_key == self._scores_key() and self.scores.grad is None:
            # The `mask` buffer is the mask these scores were rebuilt from (no top-k needed).
            return {"packed": self.mask.clone(), "scores": self.scores}
        return {"scores": self.scores}

    def check_mask_set_state(self, state: dict[str, torch.Tensor], where: str) -> torch.Tensor | None:
        """Refuse an incoming mask set's state that does not fit this tensor (a clear error, nothing changed);
        return the unpacked mask of a packed state."""
        if "packed" in state:
            return self._check_packed(state["packed"], where)
        scores = state["scores"]
        if tuple(scores.shape) != self.shape or scores.dtype != torch.float32:
            raise ValueError(
                f"{where}: scores of shape {list(scores.shape)} and dtype {scores.dtype}, but this tensor needs "
                f"float32 scores of shape {list(self.shape)}. The set belongs to another configuration."
            )
        return None

    def adopt_mask_set_state(
        self, state: dict[str, torch.Tensor], mask: torch.Tensor | None, outgoing_state: dict[str, torch.Tensor]
    ) -> None:
        """Compute with an incoming mask set (checked by `check_mask_set_state`) instead of the active one, whose
        state `outgoing_mask_set_state` computed."""
        outgoing, incoming = self.scores, state.get("scores")
        trainable = outgoing.requires_grad
        with torch.inference_mode(False), torch.no_grad():
            if incoming is None:  # a set loaded by `load_masks`: its Parameter is made on first activation
                incoming = nn.Parameter(torch.empty(0, dtype=torch.float32, device=outgoing.device))
            if mask is not None:
                incoming.data = torch.empty(self.shape, dtype=torch.float32, device=outgoing.device)
            elif incoming.device != outgoing.device:  # the model was moved while this set was inactive
                incoming.data = incoming.data.to(outgoing.device)
                if incoming.grad is not None:
                    incoming.grad = incoming.grad.to(outgoing.device)
            # Only the active set trains: the inactive ones' Parameters are no model parameters and need no grad.
            outgoing.requires_grad_(False)
            self.scores = incoming.requires_grad_(trainable)
            if mask is not None:
                self._adopt_mask(state["packed"], mask)
            else:
                self.scores_changed()
            if "packed" in outgoing_state:
                outgoing.data = torch.empty(0, dtype=torch.float32, device=outgoing.device)  # its mask is all it held

    def _check_packed(self, packed: torch.Tensor, prefix: str) -> torch.Tensor:
        """The boolean mask a packed tensor holds, if it is a valid mask for this weight; else a clear error."""
        where = f"`{prefix}mask`" if prefix else f"the mask of `{self.score_name}`"
        if packed.dtype != torch.uint8 or packed.dim() != 1 or packed.numel() != self.stored_size:
            bits = f"the {self.num_free} free positions of a" if self.num_frozen else "a"
            raise ValueError(
                f"{where} must be a 1-D uint8 tensor of {self.stored_size} bytes (packed bits of {bits} "
                f"{list(self.shape)} weight), got {packed.dtype} of shape {list(packed.shape)}. The checkpoint is "
                "corrupted or was saved for another configuration; re-save or re-download it."
            )
        corrupted = (
            "The mask file is corrupted or does not belong to this config; re-save or re-download the checkpoint."
        )
        try:
            mask = self.unpack_stored(packed)
        except ValueError as error:  # a coat of the wrong size
            raise ValueError(f"{where}: {error} ({self.random_weights.coats} coats). {corrupted}") from None
        values = mask.numpy()
        kept = int(np.count_nonzero(values))  # numpy: no thread-pool start for a one-off count
        if kept != self.num_kept:
            raise ValueError(
                f"{where} keeps {kept} weights but density {self.random_weights.density} keeps exactly "
                f"{self.num_kept} of {math.prod(self.shape)}. {corrupted}"
            )
        if len(self.coat_kept) > 1 and int(np.count_nonzero(values == len(self.coat_kept))) != self.coat_kept[-1]:
            raise ValueError(f"{where}: its last coat does not keep {self.coat_kept[-1]} weights. {corrupted}")
        return mask

    @torch.no_grad()
    def verify_scores_match_mask(self, prefix: str = "") -> None:
        """Check that loaded scores select exactly the loaded packed mask (training checkpoints keep both)."""
        self._check_packed(self.mask, prefix)
        if not torch.equal(self.pack_stored(self.current_mask()), self.mask.cpu()):
            raise ValueError(
                f"`{prefix}scores` and `{prefix}mask` disagree: the checkpoint was modified after saving. "
                "Re-save or re-download it."
            )
        self.scores_changed()  # trained scores, loaded whole: more than their mask

    @torch.no_grad()
    def sync_packed_mask(self) -> None:
        """Write the current mask into the persistent `mask` buffer (what checkpoints store)."""
        if self.scores.device.type != "meta":
            nans = int(torch.isnan(self.scores).sum())
            if nans:  # every device (CUDA's top-k would keep NaN entries as the largest): refuse at the source
                raise ValueError(
                    f"The scores of `{self.score_name}` hold {nans} NaN value(s): they select no well-defined top-k, "
                    "and a checkpoint of them could not be loaded. Training diverged (lower the learning rate, or "
                    "resume from an earlier checkpoint); nothing was saved from them."
                )
            self.mask.copy_(self.pack_stored(self.current_mask()).to(self.mask.device))

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ):
        # torch's load_state_dict path (Trainer resume, user code). A mask-only state dict rebuilds the scores.
        has_scores = f"{prefix}scores" in state_dict
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )
        self.scores_changed()
        coded_key = prefix + CODED_SUFFIX.lstrip(".")
        if coded_key in state_dict and f"{prefix}mask" not in state_dict:  # a mask-only checkpoint, coded
            for keys, key in ((missing_keys, f"{prefix}mask"), (missing_keys, f"{prefix}scores")):
                if key in keys:
                    keys.remove(key)
            if coded_key in unexpected_keys:
                unexpected_keys.remove(coded_key)
            self.load_coded_mask(state_dict[coded_key], prefix)
        elif has_scores and f"{prefix}mask" in state_dict:
            self.verify_scores_match_mask(prefix)
        elif not has_scores and f"{prefix}mask" in state_dict:
            if f"{prefix}scores" in missing_keys:
                missing_keys.remove(f"{prefix}scores")
            self.load_packed_mask(prefix=prefix)

    def __repr__(self) -> str:
        # One line: the shared random-weights owner registered under every masked layer is not repeated.
        return f"{type(self).__name__}({self.extra_repr()})"

    def extra_repr(self) -> str:
        frozen = f", frozen={self.num_frozen} ({self.num_frozen_kept} kept)" if self.num_frozen else ""
        coats = f", coats={list(self.coat_kept)}" if len(self.coat_kept) > 1 else ""
        return f"weight={self.weight_name!r}, shape={list(self.shape)}, kept={self.num_kept}{frozen}{coats}"


def _tensor_key(tensor: torch.Tensor) -> tuple[int, int]:
    """Which tensor, and how many in-place changes torch has counted on it (an inference tensor has no counter, and
    cannot be changed outside inference_mode)."""
    return tensor.data_ptr(), -1 if tensor.is_inference() else tensor._version


def _scores_checksum(scores: torch.Tensor) -> torch.Tensor:
    """What the scores' content was when a fold was built: per row, the sum of the scores' bits (as int32) times odd
    multipliers, in wrapping int32 arithmetic. Exact and order-free: an edit of any one entry, however small, always
    changes its row's sum (an odd multiplier is invertible mod 2**32), and the multipliers of neighbouring entries
    are far apart (a golden-ratio sequence), so moved or swapped entries change it too. Two elementwise passes, about
    half the time of a float matrix-vector product on CPU (BLAS's is slow for this shape)."""
    bits = scores.detach().reshape(scores.shape[0], -1).view(torch.int32)
    return (bits * _checksum_multipliers(bits.shape[1], bits.device)).sum(1, dtype=torch.int32)


@functools.lru_cache(maxsize=16)
def _checksum_multipliers(length: int, device: torch.device) -> torch.Tensor:
    with torch.inference_mode(False):  # a normal tensor even when first made under inference_mode
        odd = (torch.arange(length, dtype=torch.int64, device=device) * 0x9E3779B9 % 2**32) | 1
        return torch.where(odd >= 2**31, odd - 2**32, odd).to(torch.int32)  # the same bits, as int32


def _count_steps_in_version_counters(optimizer, args, kwargs) -> None:
    # Fused optimizer kernels update parameters in place without bumping their version counters, on which the fold
    # cache is keyed; bump them for every parameter the step updated. Stateless: it reaches every model and every
    # copy of one (deepcopy, pickling) without a registry, and only does what torch asks of in-place kernels.
    stepped = [param for group in optimizer.param_groups for param in group["params"] if param.grad is not None]
    increment_version(stepped)


register_optimizer_step_post_hook(_count_steps_in_version_counters)


def _pack_mask_before_state_dict(module: MaskedWeight, prefix: str, keep_vars: bool) -> None:
    module.sync_packed_mask()


class MaskedLinear(MaskedWeight):
    """A bias-free linear layer whose weight is a frozen random tensor times a learned binary mask."""

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.masked_linear(hidden_states)


class MaskedEmbedding(MaskedWeight):
    """The one masked embedding of the model: encoder input, decoder input and output projection."""

    def __init__(self, random_weights, weight_name, score_name, density, padding_idx: int):
        super().__init__(random_weights, weight_name, score_name, density)
        self.padding_idx = padding_idx

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(input_ids, self.effective_weight(), self.padding_idx)

    def project(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """Output projection onto the vocabulary with the same masked weight (tied, as in Marian)."""
        return self.masked_linear(hidden_states)
