# Copyright 2026 The hf_supermask Authors. Licensed under the Apache License, Version 2.0.
"""PyTorch Supermask model: a Marian-shaped translation Transformer whose weights are random and frozen.

Only a binary mask per weight tensor is learned (edge-popup, Ramanujan et al. 2020). With `share_layers`
(the default) this is the one-layer model of Shen et al. 2021, "What's Hidden in a One-layer Randomly
Weighted Transformer?": every encoder layer applies its own mask to ONE layer's worth of random weights, and
likewise the decoder. A checkpoint is the config (seed, density, init, fingerprints) plus packed bitmasks.

The computation mirrors `MarianMTModel` (post-norm layers, sinusoidal positions, sqrt(d_model) embedding
scale, one embedding tied to the output projection), reusing Marian's attention and layer forwards, so that
`export_dense()` gives a stock `MarianMTModel` with the same logits.
"""

from __future__ import annotations

import functools
import inspect
import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from transformers.activations import ACT2FN
from transformers.cache_utils import Cache, DynamicCache, EncoderDecoderCache
from transformers.generation import GenerationMixin
from transformers.modeling_outputs import (
    BaseModelOutput,
    BaseModelOutputWithPastAndCrossAttentions,
    Seq2SeqLMOutput,
    Seq2SeqModelOutput,
)
from transformers.modeling_utils import PreTrainedModel
from transformers.utils import can_return_tuple, logging

from .checkpoint import EMBEDDING, LOADING_MASKS, SupermaskCheckpointMixin
from .configuration_supermask import SupermaskConfig
from .dense_export import DenseExportMixin, marian_config_for
from .mask_sets import MaskSetsMixin
from .masked_layers import MaskedEmbedding, MaskedLinear, MaskedWeight, SupermaskRandomWeights
from .transformers_compat import (
    GradientCheckpointingLayer,
    MarianAttention,
    MarianDecoderLayer,
    MarianEncoderLayer,
    OutputRecorder,
    cache_kwargs,
    capture_outputs,
    create_bidirectional_mask,
    create_causal_mask,
    fixed_cross_entropy,
    output_cache,
    reorder_beam_cache,
    resolve_cache,
    shift_tokens_right,
)


logger = logging.get_logger(__name__)

_ATTENTION_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "out_proj")


def _layer_weight_shapes(config: SupermaskConfig, stack: str) -> dict[str, tuple[int, int]]:
    """Shapes of one layer's maskable tensors, by their path inside the layer."""
    d, ffn = config.d_model, getattr(config, f"{stack}_ffn_dim")
    attentions = ("self_attn", "encoder_attn") if stack == "decoder" else ("self_attn",)
    shapes = {f"{attn}/{proj}": (d, d) for attn in attentions for proj in _ATTENTION_PROJECTIONS}
    shapes.update({"fc1": (ffn, d), "fc2": (d, ffn)})
    return shapes


def random_weight_name(config: SupermaskConfig, stack: str, layer_idx: int, path: str) -> str:
    """Generator key of a layer tensor: one per stack with `share_layers`, one per layer otherwise."""
    return f"{stack}/{path}" if config.share_layers else f"{stack}/layers/{layer_idx}/{path}"


def random_weight_shapes(config: SupermaskConfig) -> dict[str, tuple[int, int]]:
    """Every frozen random tensor of the model, by generator key."""
    shapes = {EMBEDDING: (config.vocab_size, config.d_model)}
    for stack in ("encoder", "decoder"):
        for layer_idx in range(getattr(config, f"{stack}_layers")):
            for path, shape in _layer_weight_shapes(config, stack).items():
                shapes[random_weight_name(config, stack, layer_idx, path)] = shape
    return shapes


def _masked_linear(random_weights, config, stack, layer_idx, path) -> MaskedLinear:
    return MaskedLinear(
        random_weights,
        weight_name=random_weight_name(config, stack, layer_idx, path),
        score_name=f"{stack}/layers/{layer_idx}/{path}",
        density=config.density,
    )


class PlainLayerNorm(nn.LayerNorm):
    """A LayerNorm without affine parameters: nothing but masks is learned (the paper's setting). eps as in Marian.

    Without grad it passes a unit weight and a zero bias: the same bits, but torch's CPU kernel has a vectorized path
    only for that case (about twice as fast at a decoding step's 32 x 256). Training keeps the plain call, whose
    backward is the one every training result was measured with.
    """

    def __init__(self, dim: int):
        super().__init__(dim, eps=1e-5, elementwise_affine=False)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():
            return super().forward(hidden_states)
        weight, bias = _unit_affine(self.normalized_shape, hidden_states.dtype, hidden_states.device)
        return F.layer_norm(hidden_states, self.normalized_shape, weight, bias, self.eps)


@functools.lru_cache(maxsize=16)
def _unit_affine(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    # Normal tensors even under inference_mode (a cached inference tensor could not enter a later autograd graph).
    with torch.inference_mode(False):
        return torch.ones(shape, dtype=dtype, device=device), torch.zeros(shape, dtype=dtype, device=device)


def _in_forward_scope(forward):
    """Run a model-level forward inside `random_weights.forward_scope()`: the masks it computes live as long as the
    outermost such forward (the caching rule, stated in `masked_layers`)."""

    @functools.wraps(forward)
    def wrapper(self, *args, **kwargs):
        with self.random_weights.forward_scope(self):
            return forward(self, *args, **kwargs)

    # Computed once: `generate()` inspects the forward's signature at every decoding step of a model registered for
    # the Auto classes (to serve remote code that still takes `cache_position`), about 0.1 ms each time otherwise.
    wrapper.__signature__ = inspect.signature(forward)
    return wrapper


class SupermaskAttention(MarianAttention):
    """Marian's multi-head attention (same forward), with bias-free masked projections."""

    def __init__(self, config, random_weights, stack, layer_idx, name, num_heads, is_decoder=False, is_causal=False):
        nn.Module.__init__(self)  # MarianAttention.__init__ would build dense projections only to replace them
        self.embed_dim = config.d_model
        self.num_heads = num_heads
        self.dropout = config.attention_dropout
        self.head_dim = self.embed_dim // num_heads
        self.config = config
        self.scaling = self.head_dim**-0.5
        self.is_decoder = is_decoder
        self.is_causal = is_causal
        self.layer_idx = layer_idx
        for proj in _ATTENTION_PROJECTIONS:
            setattr(self, proj, _masked_linear(random_weights, config, stack, layer_idx, f"{name}/{proj}"))


class SupermaskEncoderLayer(MarianEncoderLayer):
    """Marian's post-norm encoder layer (same forward) over masked random weights."""

    def __init__(self, config: SupermaskConfig, random_weights: SupermaskRandomWeights, layer_idx: int):
        GradientCheckpointingLayer.__init__(self)
        self.embed_dim = config.d_model
        self.self_attn = SupermaskAttention(
            config, random_weights, "encoder", layer_idx, "self_attn", config.encoder_attention_heads
        )
        self.self_attn_layer_norm = PlainLayerNorm(self.embed_dim)
        self.dropout = config.dropout
        self.activation_fn = ACT2FN[config.activation_function]
        self.activation_dropout = config.activation_dropout
        self.fc1 = _masked_linear(random_weights, config, "encoder", layer_idx, "fc1")
        self.fc2 = _masked_linear(random_weights, config, "encoder", layer_idx, "fc2")
        self.final_layer_norm = PlainLayerNorm(self.embed_dim)


class SupermaskDecoderLayer(MarianDecoderLayer):
    """Marian's post-norm decoder layer (same forward) over masked random weights."""

    def __init__(self, config: SupermaskConfig, random_weights: SupermaskRandomWeights, layer_idx: int):
        GradientCheckpointingLayer.__init__(self)
        self.embed_dim = config.d_model
        heads = config.decoder_attention_heads
        self.self_attn = SupermaskAttention(
            config, random_weights, "decoder", layer_idx, "self_attn", heads, is_decoder=True, is_causal=True
        )
        self.dropout = config.dropout
        self.activation_fn = ACT2FN[config.activation_function]
        self.activation_dropout = config.activation_dropout
        self.self_attn_layer_norm = PlainLayerNorm(self.embed_dim)
        self.encoder_attn = SupermaskAttention(
            config, random_weights, "decoder", layer_idx, "encoder_attn", heads, is_decoder=True
        )
        self.encoder_attn_layer_norm = PlainLayerNorm(self.embed_dim)
        self.fc1 = _masked_linear(random_weights, config, "decoder", layer_idx, "fc1")
        self.fc2 = _masked_linear(random_weights, config, "decoder", layer_idx, "fc2")
        self.final_layer_norm = PlainLayerNorm(self.embed_dim)


@functools.lru_cache(maxsize=8)
def _sinusoidal_table(num_positions: int, embedding_dim: int, dtype: torch.dtype) -> torch.Tensor:
    """Marian's sinusoidal table (`MarianSinusoidalPositionalEmbedding.create_weight`) bit for bit, computed once per
    shape. Marian computes `pos / 10000 ** (2 * (j // 2) / dim)` with a Python loop over every entry (about 0.6 s at
    512 x 512); the same scalar `np.power` per column and one exactly rounded division per entry give the same
    float64 values at a tenth of the cost, then the same sin / cos and float32 rounding."""
    dim = embedding_dim
    denominators = np.array([np.power(10000, 2 * (j // 2) / dim) for j in range(dim)])
    angles = np.arange(num_positions, dtype=np.float64)[:, None] / denominators[None, :]
    table = torch.empty(num_positions, dim, dtype=dtype)
    sentinel = dim // 2 if dim % 2 == 0 else dim // 2 + 1
    table[:, :sentinel] = torch.from_numpy(np.sin(angles[:, 0::2]).astype(np.float32))
    table[:, sentinel:] = torch.from_numpy(np.cos(angles[:, 1::2]).astype(np.float32))
    return table


class SupermaskSinusoidalPositionalEmbedding(nn.Module):
    """Marian's sinusoidal positions (float64 sinusoids, sin half then cos half, no offset) as a non-persistent
    buffer."""

    def __init__(self, num_positions: int, embedding_dim: int):
        super().__init__()
        self.register_buffer("weight", torch.empty(num_positions, embedding_dim), persistent=False)

    @torch.no_grad()
    def reset_parameters(self) -> None:
        # Marian's own table, so that the dense export matches exactly.
        self.weight.copy_(_sinusoidal_table(*self.weight.shape, self.weight.dtype))

    def forward(self, position_ids: torch.Tensor) -> torch.Tensor:
        return self.weight[position_ids]


class SupermaskPreTrainedModel(PreTrainedModel):
    config: SupermaskConfig
    config_class = SupermaskConfig
    base_model_prefix = "model"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = False
    _supports_flex_attn = False
    _can_compile_fullgraph = False
    _no_split_modules = ["SupermaskEncoderLayer", "SupermaskDecoderLayer"]
    # Scores are rebuilt from the saved masks (see `SupermaskForConditionalGeneration.from_pretrained`); the stacks'
    # `embed_tokens` is `model.shared`, saved once.
    _keys_to_ignore_on_load_missing = [r"\.scores$", r"(encoder|decoder)\.embed_tokens\."]
    # Scores select the top-k; a lower precision would tie it (and change masks) on a `dtype=` load.
    _keep_in_fp32_modules_strict = ["scores"]

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        # Nothing here is drawn from torch's global RNG: weights and scores come from the config's seed.
        if isinstance(module, SupermaskRandomWeights):
            module.regenerate()
        elif isinstance(module, MaskedWeight):
            if not getattr(module.scores, "_is_hf_initialized", False):
                if not LOADING_MASKS.get():
                    module.reset_scores()
        elif isinstance(module, SupermaskSinusoidalPositionalEmbedding):
            module.reset_parameters()


class _SupermaskStack(SupermaskPreTrainedModel):
    """What the encoder and the decoder share: positions, layers over the random weights, the shared embedding."""

    stack: str  # "encoder" or "decoder"
    layer_class: type[nn.Module]
    _keys_to_ignore_on_save = {"embed_tokens.scores", "embed_tokens.mask"}

    def __init__(self, config: SupermaskConfig, random_weights: SupermaskRandomWeights, embed_tokens: MaskedEmbedding):
        super().__init__(config)
        self.dropout = config.dropout
        self.layerdrop = getattr(config, f"{self.stack}_layerdrop")
        self.embed_scale = math.sqrt(config.d_model) if config.scale_embedding else 1.0
        # The model's shared modules, registered here too (one object under several parents: `.to()`, deepcopy and
        # replication keep them one); the embedding's entries are saved once, under `model.shared`.
        self.embed_tokens = embed_tokens
        self.random_weights = random_weights
        self.embed_positions = SupermaskSinusoidalPositionalEmbedding(config.max_position_embeddings, config.d_model)
        self.layers = nn.ModuleList(
            [self.layer_class(config, random_weights, i) for i in range(getattr(config, f"{self.stack}_layers"))]
        )
        self.gradient_checkpointing = False
        self.post_init()

    def get_input_embeddings(self):
        return self.embed_tokens

    def _check_positions(self, length: int) -> None:
        if length > self.config.max_position_embeddings:
            raise ValueError(
                f"The {self.stack} got a sequence of {length} positions, but the model's position table covers "
                f"{self.config.max_position_embeddings} (config.max_position_embeddings). Truncate the input, or "
                "generate fewer tokens (max_new_tokens / max_length)."
            )


class SupermaskEncoder(_SupermaskStack):
    """Transformer encoder of `config.encoder_layers` [`SupermaskEncoderLayer`]s over the shared masked embedding."""

    stack, layer_class = "encoder", SupermaskEncoderLayer
    _can_record_outputs = {"hidden_states": SupermaskEncoderLayer, "attentions": SupermaskAttention}

    @_in_forward_scope
    @capture_outputs
    def forward(self, input_ids=None, attention_mask=None, inputs_embeds=None, **kwargs) -> BaseModelOutput:
        if (input_ids is None) ^ (inputs_embeds is not None):
            raise ValueError("You must specify exactly one of input_ids or inputs_embeds")
        if inputs_embeds is None:
            inputs_embeds = self.embed_tokens(input_ids) * self.embed_scale
        self._check_positions(inputs_embeds.shape[1])
        positions = torch.arange(inputs_embeds.shape[1], device=inputs_embeds.device)
        hidden_states = inputs_embeds + self.embed_positions(positions)
        hidden_states = nn.functional.dropout(hidden_states, p=self.dropout, training=self.training)
        attention_mask = create_bidirectional_mask(
            config=self.config, inputs_embeds=inputs_embeds, attention_mask=attention_mask
        )
        for encoder_layer in self.layers:
            if self.training and self.layerdrop > 0.0 and torch.rand([]) < self.layerdrop:
                continue
            hidden_states = encoder_layer(hidden_states, attention_mask, **kwargs)
        return BaseModelOutput(last_hidden_state=hidden_states)


class SupermaskDecoder(_SupermaskStack):
    """Transformer decoder of `config.decoder_layers` [`SupermaskDecoderLayer`]s over the shared masked embedding."""

    stack, layer_class = "decoder", SupermaskDecoderLayer
    _can_record_outputs = {
        "hidden_states": SupermaskDecoderLayer,
        "attentions": OutputRecorder(SupermaskAttention, index=1, layer_name="self_attn"),
        "cross_attentions": OutputRecorder(SupermaskAttention, index=1, layer_name="encoder_attn"),
    }

    @_in_forward_scope
    @capture_outputs
    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        encoder_hidden_states=None,
        encoder_attention_mask=None,
        cache: Cache | None = None,
        inputs_embeds=None,
        use_cache: bool | None = None,
        past_key_values: Cache | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPastAndCrossAttentions:
        r"""
        cache (`Cache`, *optional*):
            The decoder's key/value cache (`past_key_values`, its name before transformers 5.24, is accepted too).
        """
        if (input_ids is None) ^ (inputs_embeds is not None):
            raise ValueError("You must specify exactly one of decoder_input_ids or decoder_inputs_embeds")
        cache = resolve_cache(cache, past_key_values)
        if inputs_embeds is None:
            inputs_embeds = self.embed_tokens(input_ids)
        inputs_embeds = inputs_embeds * self.embed_scale
        use_cache = self.config.use_cache if use_cache is None else use_cache
        if use_cache and cache is None:
            cache = EncoderDecoderCache(DynamicCache(config=self.config), DynamicCache(config=self.config))

        batch_size, seq_length = inputs_embeds.shape[:2]
        past_length = cache.get_seq_length() if cache is not None else 0
        if attention_mask is None:
            attention_mask = torch.ones(batch_size, past_length + seq_length, device=inputs_embeds.device)
        self_attn_cache = cache.self_attention_cache if isinstance(cache, EncoderDecoderCache) else cache
        causal_mask = create_causal_mask(
            config=self.config,
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            **cache_kwargs(self_attn_cache),
        )
        encoder_attention_mask = create_bidirectional_mask(
            config=self.config,
            inputs_embeds=inputs_embeds,
            attention_mask=encoder_attention_mask,
            encoder_hidden_states=encoder_hidden_states,
        )
        self._check_positions(past_length + seq_length)
        positions = torch.arange(seq_length, device=inputs_embeds.device) + past_length
        hidden_states = inputs_embeds + self.embed_positions(positions)
        hidden_states = nn.functional.dropout(hidden_states, p=self.dropout, training=self.training)
        for decoder_layer in self.layers:
            if self.training and self.layerdrop > 0.0 and torch.rand([]) < self.layerdrop:
                continue
            hidden_states = decoder_layer(
                hidden_states,
                causal_mask,
                encoder_hidden_states,
                encoder_attention_mask=encoder_attention_mask,
                use_cache=use_cache,
                **cache_kwargs(cache),
                **kwargs,
            )
        return BaseModelOutputWithPastAndCrossAttentions(last_hidden_state=hidden_states, **cache_kwargs(cache))


class SupermaskModel(SupermaskCheckpointMixin, SupermaskPreTrainedModel):
    """The bare encoder-decoder: random weights, the shared masked embedding, encoder and decoder.

    `from_pretrained` adopts a checkpoint's masks and verifies its identity exactly as
    [`SupermaskForConditionalGeneration`] does (see `checkpoint.py`)."""

    _masks_name_prefix = "model."  # checkpoints name masks as the seq2seq model holds them

    def __init__(self, config: SupermaskConfig):
        super().__init__(config)
        external = {}
        if config.embedding_source is not None:
            external[EMBEDDING] = (config.embedding_source, config.embedding_sha256)
        self.random_weights = SupermaskRandomWeights(
            config,
            random_weight_shapes(config),
            padding_rows={EMBEDDING: config.pad_token_id},
            external=external,
            scales={EMBEDDING: config.embedding_scale},
        )
        # An unmasked (fixed) embedding keeps every entry: density 1, scores frozen.
        embedding_density = config.density if config.mask_embedding else 1.0
        self.shared = MaskedEmbedding(
            self.random_weights, EMBEDDING, EMBEDDING, embedding_density, padding_idx=config.pad_token_id
        )
        self.shared.scores.requires_grad_(config.mask_embedding)
        self.encoder = SupermaskEncoder(config, self.random_weights, self.shared)
        self.decoder = SupermaskDecoder(config, self.random_weights, self.shared)
        self.post_init()

    def get_input_embeddings(self):
        return self.shared

    def get_encoder(self):
        return self.encoder

    @can_return_tuple
    @_in_forward_scope
    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        decoder_input_ids=None,
        decoder_attention_mask=None,
        encoder_outputs=None,
        cache=None,
        inputs_embeds=None,
        decoder_inputs_embeds=None,
        use_cache=None,
        past_key_values=None,
        **kwargs,
    ) -> Seq2SeqModelOutput:
        r"""
        cache (`Cache`, *optional*):
            The decoder's key/value cache (`past_key_values`, its name before transformers 5.24, is accepted too).
        """
        if encoder_outputs is None:
            encoder_outputs = self.encoder(
                input_ids=input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds, **kwargs
            )
        elif not isinstance(encoder_outputs, BaseModelOutput):
            encoder_outputs = BaseModelOutput(
                last_hidden_state=encoder_outputs[0],
                hidden_states=encoder_outputs[1] if len(encoder_outputs) > 1 else None,
                attentions=encoder_outputs[2] if len(encoder_outputs) > 2 else None,
            )
        decoder_outputs = self.decoder(
            input_ids=decoder_input_ids,
            attention_mask=decoder_attention_mask,
            encoder_hidden_states=encoder_outputs.last_hidden_state,
            encoder_attention_mask=attention_mask,
            cache=resolve_cache(cache, past_key_values),
            inputs_embeds=decoder_inputs_embeds,
            use_cache=use_cache,
            **kwargs,
        )
        return Seq2SeqModelOutput(
            last_hidden_state=decoder_outputs.last_hidden_state,
            **cache_kwargs(output_cache(decoder_outputs)),
            decoder_hidden_states=decoder_outputs.hidden_states,
            decoder_attentions=decoder_outputs.attentions,
            cross_attentions=decoder_outputs.cross_attentions,
            encoder_last_hidden_state=encoder_outputs.last_hidden_state,
            encoder_hidden_states=encoder_outputs.hidden_states,
            encoder_attentions=encoder_outputs.attentions,
        )


class SupermaskForConditionalGeneration(
    SupermaskCheckpointMixin, SupermaskPreTrainedModel, GenerationMixin, MaskSetsMixin, DenseExportMixin
):
    """Supermask translation model: the encoder-decoder plus the (tied, masked) output projection.

    Its saved state is the config (seed, density, init, fingerprints) and one packed bitmask per weight tensor;
    `from_pretrained` regenerates the random weights, checks their fingerprint, and rebuilds scores from the
    masks, so the loaded model both translates exactly as before and can be fine-tuned further.

    Example:

    ```python
    >>> import hf_supermask  # registers the Auto classes and the translation pipeline
    >>> from transformers import AutoModelForSeq2SeqLM, AutoTokenizer
    >>> model = AutoModelForSeq2SeqLM.from_pretrained("path/to/checkpoint")
    ```
    """

    # Trainer: our loss honours `num_items_in_batch` (sum / number of target tokens in the global batch).
    accepts_loss_kwargs = True

    def __init__(self, config: SupermaskConfig):
        super().__init__(config)
        self.model = SupermaskModel(config)
        # opus-mt convention: generation never emits <pad> (it is the decoder start token).
        self.generation_config.bad_words_ids = [[config.pad_token_id]]
        # Published checkpoints hold masks only; Trainer checkpoints set `save_scores` to keep what resuming needs.
        self.save_scores = False
        self._init_mask_sets()  # mask sets over the same random weights (`load_masks`; see mask_sets.py)
        self.post_init()

    def get_input_embeddings(self):
        return self.model.shared

    def generate(self, *args, **kwargs):
        # The folds are checked once per call, not once per layer and decoding step (`checked_folds`).
        with self.random_weights.checked_folds(self.masked_modules.values()):
            return super().generate(*args, **kwargs)

    def _reorder_cache(self, cache, beam_idx):
        # Called by beam search at every step: the cross-attention states are copied only when the reorder changes
        # them, which it does not for `generate()`'s own layout (`transformers_compat.reorder_beam_cache`).
        return reorder_beam_cache(cache, beam_idx)

    def get_encoder(self):
        return self.model.encoder

    def get_decoder(self):
        return self.model.decoder

    @property
    def random_weights(self) -> SupermaskRandomWeights:
        return self.model.random_weights

    @can_return_tuple
    @_in_forward_scope
    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        decoder_input_ids=None,
        decoder_attention_mask=None,
        encoder_outputs=None,
        cache=None,
        inputs_embeds=None,
        decoder_inputs_embeds=None,
        labels=None,
        use_cache=None,
        num_items_in_batch: int | torch.Tensor | None = None,
        past_key_values=None,
        **kwargs,
    ) -> Seq2SeqLMOutput:
        r"""
        cache (`Cache`, *optional*):
            The decoder's key/value cache (`past_key_values`, its name before transformers 5.24, is accepted too).
        labels (`torch.LongTensor` of shape `(batch_size, target_length)`, *optional*):
            Target ids (-100 is ignored). Decoder inputs are the labels shifted right after `decoder_start_token_id`.
        num_items_in_batch (`int`, *optional*):
            Number of target tokens in the whole (accumulated, all-process) batch, passed by the Trainer; the loss is
            then the summed token loss divided by it, so that gradient accumulation and multi-process runs average
            over tokens exactly like one large batch.
        """
        if labels is not None:
            use_cache = False
            if decoder_input_ids is None and decoder_inputs_embeds is None:
                decoder_input_ids = shift_tokens_right(
                    labels, self.config.pad_token_id, self.config.decoder_start_token_id
                )
        outputs = self.model(
            input_ids,
            attention_mask=attention_mask,
            decoder_input_ids=decoder_input_ids,
            decoder_attention_mask=decoder_attention_mask,
            encoder_outputs=encoder_outputs,
            cache=resolve_cache(cache, past_key_values),
            inputs_embeds=inputs_embeds,
            decoder_inputs_embeds=decoder_inputs_embeds,
            use_cache=use_cache,
            **kwargs,
        )
        logits = self.model.shared.project(outputs.last_hidden_state)
        if self.config.output_scale != 1.0:
            logits = logits * self.config.output_scale
        loss = None
        if labels is not None:
            # Summed over tokens / `num_items_in_batch` when given, else the mean: transformers' own token loss.
            loss = fixed_cross_entropy(
                logits.float().view(-1, logits.size(-1)), labels.to(logits.device).view(-1), num_items_in_batch
            )
        return Seq2SeqLMOutput(
            loss=loss,
            logits=logits,
            **cache_kwargs(output_cache(outputs)),
            decoder_hidden_states=outputs.decoder_hidden_states,
            decoder_attentions=outputs.decoder_attentions,
            cross_attentions=outputs.cross_attentions,
            encoder_last_hidden_state=outputs.encoder_last_hidden_state,
            encoder_hidden_states=outputs.encoder_hidden_states,
            encoder_attentions=outputs.encoder_attentions,
        )

    def prepare_decoder_input_ids_from_labels(self, labels: torch.Tensor):
        return shift_tokens_right(labels, self.config.pad_token_id, self.config.decoder_start_token_id)


SupermaskConfig.register_for_auto_class()
SupermaskForConditionalGeneration.register_for_auto_class("AutoModelForSeq2SeqLM")

__all__ = [
    "SupermaskForConditionalGeneration",
    "SupermaskModel",
    "SupermaskPreTrainedModel",
    "marian_config_for",
]
