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
  scores. (Gradient-accumulation micro-steps therefore pay for one top-k each.)
* An eval-mode forward uses the folded weight W * mask, cached per tensor (a constant: grad-enabled eval forwards,
  e.g. for input attribution, get gradients for their inputs, not for the scores). It is dropped by `eval()` and
  `train()`, by any load, by `_apply` (`.to()`, casts) and after every optimizer step over the scores. After
  editing scores in place in eval mode (`p.data.copy_`, an EMA), call `model.eval()` to refold, and
  `module.scores_changed()` if the model holds several mask sets (an inactive set keeps only its packed mask while
  its scores are a loaded mask's rebuild; see `swap_mask_set`).
* Scores stay float32 whatever the model's dtype: a cast never changes a mask.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import weakref
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.optim.optimizer import register_optimizer_step_post_hook

from .binarizers import MaskedWeightProduct, num_kept, pack_mask, packed_size, scores_for_mask, topk_mask, unpack_mask
from .external_weights import load_external_tensor, tensor_sha256
from .random_weights import generate_initial_scores, generate_weight, init_of, update_fingerprint


def threaded_map(function, items):
    """`map(function, items)` on `torch.get_num_threads()` threads (torch's default: one per core), yielding the
    results in order as they come. For independent numpy / torch work on large arrays, which releases the GIL."""
    items = list(items)
    with ThreadPoolExecutor(max_workers=max(1, min(torch.get_num_threads(), len(items)))) as pool:
        yield from pool.map(function, items)


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
    def forward_scope(self):
        """Wraps every model-level forward: the masks computed inside are shared by every use of a tensor and
        dropped when the outermost forward ends (nested forwards, e.g. the encoder's, join the outer one)."""
        outermost = self._forward_masks is None
        if outermost:
            self._forward_masks = {}
        try:
            yield
        finally:
            if outermost:
                self._forward_masks = None

    def initial_scores(self, name: str, shape: tuple[int, int]) -> torch.Tensor:
        return generate_initial_scores(self.seed, name, shape, self.score_init)

    def extra_repr(self) -> str:
        return f"seed={self.seed}, weight_init={self.weight_init!r}, tensors={len(self.shapes)}"


class MaskedWeight(nn.Module):
    """One frozen random weight, its trainable float32 scores and its binary mask (top-k of |scores|).

    The effective weight is W * mask, with a straight-through gradient to the scores; see the module docstring for
    when masks are computed and what is cached.
    """

    def __init__(self, random_weights: SupermaskRandomWeights, weight_name: str, score_name: str, density: float):
        super().__init__()
        shape = random_weights.shapes[weight_name]
        self.weight_name = weight_name
        self.score_name = score_name
        self.shape = tuple(shape)
        self.num_kept = num_kept(math.prod(shape), density)
        # float32 whatever the default dtype (from_pretrained(dtype=...)): scores select, they are not weights.
        self.scores = nn.Parameter(torch.empty(shape, dtype=torch.float32))
        self.register_buffer("mask", torch.zeros(packed_size(shape), dtype=torch.uint8))
        self.random_weights = random_weights  # the one shared owner, registered here too (see the module docstring)
        self._folded: torch.Tensor | None = None
        # True while the scores are exactly what `load_packed_mask` built from a mask (nothing trained or edited
        # since): such scores hold no more than their packed mask, which is all an inactive mask set then keeps.
        self._scores_from_mask = False
        _MASKED_WEIGHTS.add(self)
        self.register_state_dict_pre_hook(_pack_mask_before_state_dict)

    @property
    def weight(self) -> torch.Tensor:
        """The frozen random weight (shared with other layers when `share_layers` is set)."""
        return self.random_weights.get(self.weight_name)

    def current_mask(self) -> torch.Tensor:
        """Boolean mask: the `num_kept` largest |scores| (computed once per model-level forward)."""
        forward_masks = self.random_weights._forward_masks
        if forward_masks is not None and self in forward_masks:
            return forward_masks[self]
        mask = topk_mask(self.scores.detach().abs(), self.num_kept)
        if forward_masks is not None:
            forward_masks[self] = mask
        return mask

    def effective_weight(self) -> torch.Tensor:
        if self._folded is not None:
            return self._folded  # only ever held in eval mode (see the rule above); the hot path of generation
        weight = self.weight
        if self.num_kept == weight.numel():
            return weight  # nothing masked (a fixed embedding)
        if self.training:
            if self.scores.requires_grad and torch.is_grad_enabled():
                return MaskedWeightProduct.apply(self.scores, weight, self.current_mask())
            return weight * self.current_mask().to(weight.dtype)
        if self._folded is None:
            # A normal tensor even under inference_mode: a later grad-enabled forward may save it for backward.
            with torch.inference_mode(False), torch.no_grad():
                self._folded = weight * self.current_mask().to(weight.dtype)
        return self._folded

    def scores_changed(self) -> None:
        """The scores were changed (an optimizer step, a reset, loaded scores): they are no longer a mask's rebuild."""
        self._folded = None
        self._scores_from_mask = False

    @torch.no_grad()
    def swap_mask_set(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Compute with another mask set from now on; return this set's state, to hold on to while inactive.

        A set whose scores are a mask's rebuild (loaded and not trained since) is held as its packed mask only, one
        bit per weight; activating it rebuilds the same scores from that mask (and, in eval mode, the fold). A set
        whose scores were trained or edited is held whole (its float32 scores, by reference), so nothing a
        training run learned beyond the mask is lost. No random weight is regenerated either way.
        """
        if self._scores_from_mask:
            mine = {"packed": pack_mask(self.current_mask()).to(self.mask.device)}
        else:
            mine = {"scores": self.scores.data}
        if "packed" in state:
            self.scores.data = torch.empty_like(self.scores.data)  # `mine` may hold the old tensor: no in-place write
            self.load_packed_mask(state["packed"])
        else:
            self.scores.data = state["scores"].to(self.scores.device)
            self.scores_changed()
        return mine

    def train(self, mode: bool = True):
        self._folded = None  # eval() refolds from the scores as they are then
        return super().train(mode)

    def _apply(self, fn, recurse=True):
        scores = self.scores.data
        super()._apply(fn, recurse)
        if self.scores.dtype != torch.float32:
            # A cast: keep the exact float32 scores (a lower precision would tie the top-k), follow the device only.
            self.scores.data = scores.to(self.scores.device)
            if self.scores.grad is not None:
                self.scores.grad = self.scores.grad.float()
        self._folded = None
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
        mask = self._check_packed(packed, prefix)
        initial = self.random_weights.initial_scores(self.score_name, self.shape)
        scores = scores_for_mask(initial, mask)
        if self.scores.device == scores.device and self.scores.dtype == scores.dtype:
            self.scores.data = scores  # fresh memory already: no second copy of the scores (the Parameter stays)
        else:
            self.scores.copy_(scores)
        if packed is not self.mask:
            self.mask.copy_(packed)
        # The fold eval() would build from these scores, built now from the mask at hand (no top-k to recompute);
        # W * bool gives the same values as W * mask.float() without a float copy of the mask.
        self._folded = None if self.training else self.weight * mask.to(self.weight.device)
        self._scores_from_mask = True

    def _check_packed(self, packed: torch.Tensor, prefix: str) -> torch.Tensor:
        """The boolean mask a packed tensor holds, if it is a valid mask for this weight; else a clear error."""
        where = f"`{prefix}mask`" if prefix else f"the mask of `{self.score_name}`"
        if packed.dtype != torch.uint8 or packed.dim() != 1 or packed.numel() != packed_size(self.shape):
            raise ValueError(
                f"{where} must be a 1-D uint8 tensor of {packed_size(self.shape)} bytes (packed bits of a "
                f"{list(self.shape)} weight), got {packed.dtype} of shape {list(packed.shape)}. The checkpoint is "
                "corrupted or was saved for another configuration; re-save or re-download it."
            )
        mask = unpack_mask(packed, self.shape)
        kept = int(np.count_nonzero(mask.numpy()))  # numpy: no thread-pool start for a one-off count
        if kept != self.num_kept:
            raise ValueError(
                f"{where} keeps {kept} weights but density {self.random_weights.density} keeps exactly "
                f"{self.num_kept} of {math.prod(self.shape)}. The mask file is corrupted or does not belong to this "
                "config; re-save or re-download the checkpoint."
            )
        return mask

    @torch.no_grad()
    def verify_scores_match_mask(self, prefix: str = "") -> None:
        """Check that loaded scores select exactly the loaded packed mask (training checkpoints keep both)."""
        self._check_packed(self.mask, prefix)
        if not torch.equal(pack_mask(self.current_mask()), self.mask.cpu()):
            raise ValueError(
                f"`{prefix}scores` and `{prefix}mask` disagree: the checkpoint was modified after saving. "
                "Re-save or re-download it."
            )
        self.scores_changed()  # trained scores, loaded whole: more than their mask

    @torch.no_grad()
    def sync_packed_mask(self) -> None:
        """Write the current mask into the persistent `mask` buffer (what checkpoints store)."""
        if self.scores.device.type != "meta":
            self.mask.copy_(pack_mask(self.current_mask()).to(self.mask.device))

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ):
        # torch's load_state_dict path (Trainer resume, user code). A mask-only state dict rebuilds the scores.
        has_scores = f"{prefix}scores" in state_dict
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )
        self.scores_changed()
        if has_scores and f"{prefix}mask" in state_dict:
            self.verify_scores_match_mask(prefix)
        elif not has_scores and f"{prefix}mask" in state_dict:
            if f"{prefix}scores" in missing_keys:
                missing_keys.remove(f"{prefix}scores")
            self.load_packed_mask(prefix=prefix)

    def __repr__(self) -> str:
        # One line: the shared random-weights owner registered under every masked layer is not repeated.
        return f"{type(self).__name__}({self.extra_repr()})"

    def extra_repr(self) -> str:
        return f"weight={self.weight_name!r}, shape={list(self.shape)}, kept={self.num_kept}"


# Optimizer steps change scores in place, where no version counter reliably shows it (fused kernels): every step
# tells the masked tensors whose scores it updated (their fold is stale, their scores are no mask's rebuild).
_MASKED_WEIGHTS: weakref.WeakSet[MaskedWeight] = weakref.WeakSet()


def _scores_changed_after_step(optimizer, args, kwargs) -> None:
    watched = [m for m in list(_MASKED_WEIGHTS) if m._folded is not None or m._scores_from_mask]
    if watched:
        stepped = {id(param) for group in optimizer.param_groups for param in group["params"]}
        for module in watched:
            if id(module.scores) in stepped:
                module.scores_changed()


register_optimizer_step_post_hook(_scores_changed_after_step)


def _pack_mask_before_state_dict(module: MaskedWeight, prefix: str, keep_vars: bool) -> None:
    module.sync_packed_mask()


class MaskedLinear(MaskedWeight):
    """A bias-free linear layer whose weight is a frozen random tensor times a learned binary mask."""

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return F.linear(hidden_states, self.effective_weight())


class MaskedEmbedding(MaskedWeight):
    """The one masked embedding of the model: encoder input, decoder input and output projection."""

    def __init__(self, random_weights, weight_name, score_name, density, padding_idx: int):
        super().__init__(random_weights, weight_name, score_name, density)
        self.padding_idx = padding_idx

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(input_ids, self.effective_weight(), self.padding_idx)

    def project(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """Output projection onto the vocabulary with the same masked weight (tied, as in Marian)."""
        return F.linear(hidden_states, self.effective_weight())
