# Copyright 2026 The hf_supermask Authors. Licensed under the Apache License, Version 2.0.
"""Masked layers over frozen random weights, and the module that owns those weights.

Layout (peft-style: the tiny trainable state next to a declared, regenerated base):

* `SupermaskRandomWeights` owns every frozen random tensor as a non-persistent buffer (never saved) and
  regenerates them from the seed. With `share_layers`, one tensor serves every layer of a stack, so storage is
  shared by construction and survives `.to()` (there is one buffer, not one per layer).
* `MaskedWeight` (and its `MaskedLinear` / `MaskedEmbedding` forms) owns one tensor's trainable `scores` and its
  persistent packed `mask` (uint8, numpy.packbits layout): the only thing a checkpoint stores. Layers reach
  their random weight through a plain reference to the owner, which is not registered as a submodule.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .binarizers import MaskedWeightProduct, num_kept, pack_mask, packed_size, scores_for_mask, topk_mask, unpack_mask
from .random_weights import fingerprint, generate_initial_scores, generate_weight, init_of


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
        # Masks are cached (per tensor) until the scores change. Optimizers may change scores in place without
        # bumping their version counters (fused kernels, `.data` updates), so every training forward also marks the
        # scores as "may change before the next use": the next outermost forward (or save) starts a new epoch.
        self.scores_epoch = 0
        # Set by `save_pretrained` while it writes a mask-only checkpoint (no need to materialize deferred scores).
        self.saving_masks_only = False
        self._forward_depth = 0
        self._scores_may_change = False
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
        """Regenerate every tensor in place (on the CPU, then moved) and return their fingerprint."""
        generated = {name: self.generate(name) for name in self.shapes}
        self.fingerprint = fingerprint(generated.items())
        for name, weight in generated.items():
            # copy_ (not reassignment): from_pretrained has already placed these buffers on their device and dtype.
            self._buffers[name].copy_(weight)
        return self.fingerprint

    def begin_scores_use(self) -> None:
        """Start a new scores epoch if a training step may have changed the scores since masks were cached."""
        if self._forward_depth == 0 and self._scores_may_change:
            self.scores_epoch += 1
            self._scores_may_change = False

    @contextlib.contextmanager
    def forward_scope(self, training: bool):
        """Wraps every model-level forward; only the outermost one counts (one top-k per tensor per step)."""
        self.begin_scores_use()
        self._forward_depth += 1
        try:
            yield
        finally:
            self._forward_depth -= 1
            if self._forward_depth == 0 and training:
                self._scores_may_change = True

    def initial_scores(self, name: str, shape: tuple[int, int]) -> torch.Tensor:
        return generate_initial_scores(self.seed, name, shape, self.score_init)

    def extra_repr(self) -> str:
        return f"seed={self.seed}, weight_init={self.weight_init!r}, tensors={len(self.shapes)}"


EXTERNAL_EMBEDDING_KEYS = ("model.shared.weight", "model.encoder.embed_tokens.weight", "shared.weight")


def tensor_sha256(tensor: torch.Tensor) -> str:
    """sha256 of a tensor's little-endian float32 bytes."""
    import hashlib

    return hashlib.sha256(tensor.detach().to("cpu", torch.float32).contiguous().numpy().astype("<f4").tobytes()).hexdigest()


def load_external_tensor(source: str, expected_sha256: str | None, shape: tuple[int, int]) -> torch.Tensor:
    """The embedding of the checkpoint `source` (folder or Hub repo id), refusing a shape or sha256 mismatch."""
    from safetensors import safe_open
    from transformers.utils import SAFE_WEIGHTS_NAME, cached_file

    path = cached_file(source, SAFE_WEIGHTS_NAME)
    with safe_open(path, framework="pt") as reader:
        key = next((k for k in EXTERNAL_EMBEDDING_KEYS if k in reader.keys()), None)
        if key is None:
            raise ValueError(f"{path} holds no embedding (looked for {EXTERNAL_EMBEDDING_KEYS}).")
        tensor = reader.get_tensor(key).to(torch.float32)
    if tuple(tensor.shape) != tuple(shape):
        raise ValueError(f"The embedding of {source} has shape {list(tensor.shape)}, but this config needs {list(shape)}.")
    actual = tensor_sha256(tensor)
    if expected_sha256 is not None and actual != expected_sha256:
        raise ValueError(
            f"The embedding of {source} has sha256 {actual}, but this checkpoint's masks were found with an embedding "
            f"of sha256 {expected_sha256} (`embedding_sha256`): the source changed. Point `embedding_source` at the "
            "original embedding (pin a Hub revision)."
        )
    return tensor.clone()


class MaskedWeight(nn.Module):
    """One frozen random weight, its trainable scores and its binary mask.

    Training mode (with grad): the effective weight is W * m with m = top-k(|scores|) and a straight-through
    gradient to the scores. Otherwise the effective weight is computed once and cached as a dense tensor until
    the scores or the weight change (inference costs what a dense layer costs); `train()` drops the cache.
    The top-k itself is cached too, keyed by the scores' version counter, so gradient-accumulation
    micro-steps and the embedding's three uses per step pay for it once.
    """

    def __init__(self, random_weights: SupermaskRandomWeights, weight_name: str, score_name: str, density: float):
        super().__init__()
        shape = random_weights.shapes[weight_name]
        self.weight_name = weight_name
        self.score_name = score_name
        self.shape = tuple(shape)
        self.num_kept = num_kept(math.prod(shape), density)
        self.scores = nn.Parameter(torch.empty(shape))
        self.register_buffer("mask", torch.zeros(packed_size(shape), dtype=torch.uint8))
        # A plain reference: the owner is registered once, in the model, not under every layer.
        object.__setattr__(self, "_random_weights", random_weights)
        self._mask: torch.Tensor | None = None
        self._mask_key: tuple | None = None
        self._packed_key: tuple | None = None
        self._dense: torch.Tensor | None = None
        self._dense_key: tuple | None = None
        # True while `scores` hold the placeholder of a loaded mask (see `load_packed_mask(defer_scores=True)`).
        self._scores_pending = False
        self.register_state_dict_pre_hook(_pack_mask_before_state_dict)

    @property
    def weight(self) -> torch.Tensor:
        """The frozen random weight (shared with other layers when `share_layers` is set)."""
        return self._random_weights.get(self.weight_name)

    def _scores_key(self) -> tuple:
        scores = self.scores
        return (self._random_weights.scores_epoch, scores._version, scores.data_ptr(), scores.device, scores.dtype)

    def current_mask(self) -> torch.Tensor:
        """Boolean mask: the `num_kept` largest |scores|."""
        key = self._scores_key()
        if self._mask_key != key:
            self._mask = topk_mask(self.scores.abs(), self.num_kept)
            self._mask_key = key
        return self._mask

    def effective_weight(self) -> torch.Tensor:
        weight = self.weight
        if self.training and torch.is_grad_enabled() and self.scores.requires_grad:
            if self._scores_pending:
                self.materialize_scores()
            return MaskedWeightProduct.apply(self.scores, weight, self.current_mask())
        key = (self._scores_key(), weight._version, weight.data_ptr(), weight.dtype)
        if self._dense_key != key:
            with torch.no_grad():
                self._dense = weight * self.current_mask().to(weight.dtype)
            self._dense_key = key
        return self._dense

    def train(self, mode: bool = True):
        self._dense, self._dense_key = None, None
        if mode:
            self.materialize_scores()
        return super().train(mode)

    def _apply(self, fn, recurse=True):
        # Moving or casting the scores never changes the mask: carry it over instead of re-deriving it from
        # scores whose lower precision could create ties at the top-k boundary.
        mask = self._mask if self._mask_key == self._scores_key() else None
        super()._apply(fn, recurse)
        self._dense, self._dense_key = None, None
        if mask is not None:
            self._mask = mask.to(self.scores.device)
            self._mask_key = self._scores_key()
        return self

    @torch.no_grad()
    def reset_scores(self) -> None:
        """Initial scores from the seed (not from the training seed), and the mask they select."""
        self.scores.copy_(self._random_weights.initial_scores(self.score_name, self.shape))
        self._scores_pending = False

    @torch.no_grad()
    def load_packed_mask(self, packed: torch.Tensor | None = None, prefix: str = "", defer_scores: bool = False) -> None:
        """Adopt a packed mask (default: the `mask` buffer) and rebuild scores whose top-k is exactly that mask.

        Refuses a mask of the wrong type, size or number of kept entries: a checkpoint is never silently
        loaded with a mask other than the one that was saved.

        `defer_scores` (what `from_pretrained` does): inference needs the mask only, and rebuilding the scores
        (seed-derived initial scores and a sort, `scores_for_mask`) costs more than everything else loading does.
        The scores are then set to the mask itself (1.0 kept, 0.0 dropped: the same top-k, without ties) and
        replaced by the rebuilt ones on first need: `train()`, a training forward, or a `state_dict()` that keeps
        scores (see `materialize_scores`).
        """
        packed = self.mask if packed is None else packed
        mask = self._check_packed(packed, prefix)
        if defer_scores:
            self.scores.copy_(mask)
        else:
            initial = self._random_weights.initial_scores(self.score_name, self.shape)
            self.scores.copy_(scores_for_mask(initial, mask))
        self._scores_pending = defer_scores
        if packed is not self.mask:
            self.mask.copy_(packed)
        self._mask = mask.to(self.scores.device)
        self._mask_key = self._scores_key()
        self._packed_key = self._mask_key
        self._dense, self._dense_key = None, None

    @torch.no_grad()
    def materialize_scores(self) -> None:
        """Replace the placeholder scores of a deferred `load_packed_mask` by `scores_for_mask` (same mask)."""
        if not self._scores_pending or self.scores.device.type == "meta":
            return
        mask = self.current_mask()  # the loaded mask (also after a copy or a move: the placeholder selects it)
        synced = self._packed_key == self._mask_key
        initial = self._random_weights.initial_scores(self.score_name, self.shape)
        self.scores.copy_(scores_for_mask(initial, mask.cpu()))
        self._scores_pending = False
        # Same mask: keep it rather than re-deriving it from scores that a low-precision dtype may have tied.
        self._mask, self._mask_key = mask, self._scores_key()
        if synced:
            self._packed_key = self._mask_key

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
                f"{where} keeps {kept} weights but density {self._random_weights.density} keeps exactly "
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
        self._packed_key = self._scores_key()

    @torch.no_grad()
    def sync_packed_mask(self) -> None:
        """Write the current mask into the persistent `mask` buffer (what checkpoints store)."""
        self._random_weights.begin_scores_use()
        if self.scores.device.type == "meta" or self._packed_key == self._scores_key():
            return
        self.mask.copy_(pack_mask(self.current_mask()).to(self.mask.device))
        self._packed_key = self._scores_key()

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs):
        # torch's load_state_dict path (Trainer resume, user code). A mask-only state dict rebuilds the scores.
        has_scores = f"{prefix}scores" in state_dict
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )
        if has_scores:
            self._scores_pending = False
        if not has_scores and f"{prefix}mask" in state_dict:
            if f"{prefix}scores" in missing_keys:
                missing_keys.remove(f"{prefix}scores")
            self.load_packed_mask(prefix=prefix)

    def extra_repr(self) -> str:
        return f"weight={self.weight_name!r}, shape={list(self.shape)}, kept={self.num_kept}"


def _pack_mask_before_state_dict(module: MaskedWeight, prefix: str, keep_vars: bool) -> None:
    if not module._random_weights.saving_masks_only:
        module.materialize_scores()  # a state dict that keeps scores must not hold placeholders
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
