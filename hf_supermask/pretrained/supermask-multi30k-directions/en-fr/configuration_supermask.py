# Copyright 2026 The hf_supermask Authors. Licensed under the Apache License, Version 2.0.
"""Supermask model configuration."""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import transformers
from huggingface_hub.dataclasses import strict
from packaging.version import Version
from transformers.activations import ACT2FN
from transformers.configuration_utils import PreTrainedConfig

from .mask_coding import check_mask_encoding
from .random_weights import ATTENTION_INITS, GENERATOR_VERSION, SCORE_INITS, WEIGHT_INITS


# The supported transformers releases, [oldest, first unsupported): the ones the test suite runs on (CI: the oldest
# and the newest). The internals the model code relies on, and what differs between these releases, are isolated in
# `transformers_compat.py`. Remote-code users never see the package's version pin, so it is checked here, on import.
TESTED_TRANSFORMERS = (Version("5.23.0"), Version("5.26.0"))
if not TESTED_TRANSFORMERS[0] <= Version(transformers.__version__) < TESTED_TRANSFORMERS[1]:
    raise ImportError(
        f"The supermask model code supports transformers >={TESTED_TRANSFORMERS[0]},<{TESTED_TRANSFORMERS[1]} (the "
        f"releases it is tested with), but transformers {transformers.__version__} is installed. Install a supported "
        f"release (pip install 'transformers>={TESTED_TRANSFORMERS[0]},<{TESTED_TRANSFORMERS[1]}') or an hf_supermask "
        "release made for yours."
    )


# Checkpoints ship `pipeline_translation.py` next to config.json and name it in `custom_pipelines`, so that remote-code
# users get `pipeline("translation", model=repo, trust_remote_code=True)` (transformers 5.x has no such task).
TRANSLATION_PIPELINE_FILE = "pipeline_translation.py"
_FLOAT32_MAX = float(np.finfo(np.float32).max)
TRANSLATION_CUSTOM_PIPELINES = {
    "translation": {"impl": "pipeline_translation.TranslationPipeline", "pt": ["AutoModelForSeq2SeqLM"], "type": "text"}
}


# The config fields that act in the forward pass (architecture and forward settings), written down once: a checkpoint
# records their fingerprint (`forward_config_sha256`, see `SupermaskConfig.forward_config_fingerprint`), and every load
# path compares them, so that a config.json edited after saving cannot load as a model that computes differently.
# What decides the random weights (seed, inits, generator, embedding source) is covered by `weights_sha256`, the masks
# by `masks_sha256`, the tokenizer by `tokenizer_sha256`; dropout, layerdrop and decoding settings do not change what a
# trained model computes in eval mode.
FORWARD_FIELDS = (
    "vocab_size",
    "d_model",
    "encoder_layers",
    "decoder_layers",
    "encoder_attention_heads",
    "decoder_attention_heads",
    "encoder_ffn_dim",
    "decoder_ffn_dim",
    "activation_function",
    "max_position_embeddings",
    "scale_embedding",
    "embedding_scale",
    "output_scale",
    "density",
    "frozen_fraction",
    "coats",
    "coat_density_ratio",
    "mask_embedding",
    "share_layers",
    "pad_token_id",
    "decoder_start_token_id",
)
# Numbers the JSON file may spell as an int or a float (2 or 2.0): the fingerprint sees one value.
_FLOAT_FIELDS = ("embedding_scale", "output_scale", "density", "frozen_fraction", "coat_density_ratio")
# Forward fields added after checkpoints were published, with the value that reproduces the older behaviour: the
# fingerprint leaves such a field out while it holds that value, so that every earlier checkpoint keeps its
# `forward_config_sha256` (and loads without re-saving); any other value is fingerprinted like every field.
_LATER_FORWARD_FIELDS = {"frozen_fraction": 0.0, "coats": 1, "coat_density_ratio": 0.5}


def _translation_task_registered() -> bool:
    """Whether this process already has a "translation" pipeline task (e.g. registered by `import hf_supermask`)."""
    import sys

    pipelines = sys.modules.get("transformers.pipelines")
    return (
        pipelines is not None
        and "translation" in pipelines.PIPELINE_REGISTRY.supported_tasks
        and "translation" not in getattr(pipelines, "REMOVED_TASKS", {})
    )


@strict
class SupermaskConfig(PreTrainedConfig):
    r"""
    Configuration of a [`SupermaskForConditionalGeneration`]: a Marian-shaped encoder-decoder Transformer whose
    weights are random, regenerated from `seed`, and frozen; only one binary mask per weight tensor is learned.

    The architecture fields mean what they mean in [`MarianConfig`], so that
    [`SupermaskForConditionalGeneration.export_dense`] gives a stock `MarianMTModel` with the same outputs.

    Args:
        vocab_size (`int`, *optional*, defaults to 8000):
            Size of the vocabulary shared by source, target and output projection.
        d_model (`int`, *optional*, defaults to 512):
            Width of the layers and of the embedding.
        encoder_layers (`int`, *optional*, defaults to 6):
            Number of encoder layers (with `share_layers`, masks over ONE layer's random weights).
        decoder_layers (`int`, *optional*, defaults to 6):
            Number of decoder layers (with `share_layers`, masks over ONE layer's random weights).
        encoder_attention_heads (`int`, *optional*, defaults to 8):
            Attention heads per encoder layer; must divide `d_model`.
        decoder_attention_heads (`int`, *optional*, defaults to 8):
            Attention heads per decoder layer; must divide `d_model`.
        encoder_ffn_dim (`int`, *optional*, defaults to 2048):
            Inner width of the encoder feed-forward blocks.
        decoder_ffn_dim (`int`, *optional*, defaults to 2048):
            Inner width of the decoder feed-forward blocks.
        activation_function (`str`, *optional*, defaults to `"relu"`):
            Feed-forward non-linearity (any key of `transformers.activations.ACT2FN`).
        max_position_embeddings (`int`, *optional*, defaults to 512):
            Longest sequence the sinusoidal position table covers (tokenizers use it as `model_max_length`).
        dropout (`float`, *optional*, defaults to 0.0):
            Dropout on embeddings, attention outputs and feed-forward outputs. 0 is the BLEU study's choice on
            validation at its budget (masks over frozen weights overfit little; dropout only slowed them).
        attention_dropout (`float`, *optional*, defaults to 0.0):
            Dropout on attention probabilities.
        activation_dropout (`float`, *optional*, defaults to 0.0):
            Dropout after the feed-forward activation.
        encoder_layerdrop (`float`, *optional*, defaults to 0.0):
            LayerDrop probability in the encoder (see https://huggingface.co/papers/1909.11556).
        decoder_layerdrop (`float`, *optional*, defaults to 0.0):
            LayerDrop probability in the decoder.
        scale_embedding (`bool`, *optional*, defaults to `True`):
            Multiply embeddings by sqrt(d_model), as Marian does.
        use_cache (`bool`, *optional*, defaults to `True`):
            Whether `generate()` keeps a key/value cache.
        pad_token_id (`int`, *optional*):
            Padding id; defaults to `vocab_size - 1` (the opus-mt convention: `<pad>` is the last id). Its
            embedding row is zero and generation never emits it.
        eos_token_id (`int`, *optional*, defaults to 0):
            End-of-sequence id (`</s>`, id 0 in the opus-mt convention).
        bos_token_id (`int`, *optional*):
            Unused by Marian-style models; kept for API compatibility.
        decoder_start_token_id (`int`, *optional*):
            First decoder input; defaults to `pad_token_id`, as in opus-mt.
        forced_eos_token_id (`int`, *optional*, defaults to 0):
            Token forced when `max_length` is reached.
        is_encoder_decoder (`bool`, *optional*, defaults to `True`):
            Always true for this architecture.
        seed (`int`, *optional*, defaults to 0):
            The only source of the random weights (and of the initial scores). Independent of the training seed.
        density (`float`, *optional*, defaults to 0.5):
            Fraction of each weight tensor's entries KEPT by its mask, 0 < density <= 1. Every tensor keeps exactly
            round(density * numel) entries.
        frozen_fraction (`float`, *optional*, defaults to 0.0):
            Fraction of each masked tensor's entries whose mask bit is fixed by `seed` and never searched, 0 <= f < 1
            (Otsuka et al., "Partially frozen random networks contain compact strong lottery tickets"). Of the
            round(frozen_fraction * numel) frozen positions of a tensor, round(density * frozen) are kept and the rest
            pruned, so the tensor's density is unchanged; the free positions keep the remaining entries by top-|score|.
            Only the free positions' bits are trained and stored: a checkpoint costs about (1 - frozen_fraction) bits
            per maskable weight. 0 searches every position.
        coats (`int`, *optional*, defaults to 1):
            Number of nested masks per tensor (multicoated supermasks, Okoshi et al., "Multicoated Supermasks Enhance
            Hidden Networks", ICML 2022). The first coat keeps `density` of the weights by top-|score|, each further
            coat `coat_density_ratio` of the previous coat's weights, again by top-|score|; a weight in c coats counts
            c times (an integer multiple of its random value, e.g. of a signed constant). All coats follow the same
            scores. A checkpoint stores 1 + density * (1 + ratio + ...) bits per maskable weight (1.5 for two coats
            at density 0.5). 1 is the plain binary mask. Not combined with `frozen_fraction`.
        coat_density_ratio (`float`, *optional*, defaults to 0.5):
            Fraction of a coat's kept weights that the next coat keeps, 0 < ratio < 1 (used when `coats` > 1).
        weight_init (`str`, *optional*, defaults to `"signed_constant"`):
            Distribution of the random weights, for every masked tensor (attention, feed-forward and embedding):
            `"kaiming_uniform"` U(+-sqrt(6/fan_in)), `"kaiming_normal"` N(0, 2/fan_in) (Irwin-Hall, see
            `random_weights.py`), `"xavier_uniform"` U(+-sqrt(6/(fan_in+fan_out))), `"signed_constant"`
            +-sqrt(2/fan_in). fan_in is in_features for linears and d_model for the embedding. `"signed_constant"`
            is the BLEU study's best random-embedding recipe (chosen on validation).
        attention_init (`str`, *optional*, defaults to `"fairseq"`):
            `"weight_init"`: the attention projections are drawn like every other tensor. `"fairseq"`: the reference
            code's attention init, q/k/v Xavier-uniform with gain 1/sqrt(2) and out_proj Xavier-uniform (feed-forward
            and embedding keep `weight_init`); the study's choice on validation.
        embedding_scale (`float`, *optional*, defaults to 1.0):
            Constant multiplying the embedding (random, or taken from `embedding_source`) once it is generated or
            loaded; part of `weights_sha256`. 1/sqrt(density) gives a masked embedding row the expected norm of an
            unmasked one (what the reference code does for a fixed embedding). The embedding is tied, so this scales
            the inputs and the output logits alike.
        output_scale (`float`, *optional*, defaults to 2.0):
            Fixed multiplier of the output logits, never learned (the checkpoint stays seed + masks). Affine-free
            LayerNorm pins the last hidden state's norm at sqrt(d_model), so every logit is bounded by
            sqrt(d_model) * |embedding row| and a random embedding cannot give a sharp softmax; a scale > 1 lifts
            that bound (2 is the study's choice on validation). `export_dense` folds it into the last decoder
            layer's LayerNorm weight (same logits).
        scale_fan (`bool`, *optional*, defaults to `False`):
            Multiply fans by `density` (edge-popup's `--scale-fan`), keeping the masked layer's output variance.
        score_init (`str`, *optional*, defaults to `"kaiming_uniform"`):
            Initial scores, drawn from a key derived from `seed`: `"kaiming_uniform"` U(+-sqrt(6/fan_in)) or
            `"constant"` (equal magnitudes with a seeded tie-break, random signs).
        share_layers (`bool`, *optional*, defaults to `True`):
            The one-layer model: all encoder layers reuse ONE encoder layer's random tensors, each with its own
            scores and mask; likewise the decoder. `False` gives every layer its own random tensors.
        generator_version (`int`, *optional*, defaults to the current generator's version):
            Version of the weight generator the masks were found for. A checkpoint from another version is refused.
        weights_sha256 (`str`, *optional*):
            sha256 fingerprint of the regenerated float32 random weights, written by `save_pretrained` and checked by
            `from_pretrained`: a mismatch means the masks would be applied to different weights, and is refused.
        embedding_source (`str`, *optional*):
            The paper's "fixed pre-trained embedding": a checkpoint folder or Hub repo id whose `model.safetensors`
            holds a `[vocab_size, d_model]` embedding (`model.shared.weight`, as a MarianMTModel saves it) used instead
            of a random one. The checkpoint stays mask-only: `from_pretrained` loads the embedding from this source.
        embedding_sha256 (`str`, *optional*):
            sha256 of the source embedding (float32), recorded when it is first loaded; a source whose embedding has
            changed since is refused.
        mask_embedding (`bool`, *optional*):
            Whether the embedding is masked (at `density`) and its mask learned. Defaults to `True` for a random
            embedding and `False` for an `embedding_source` (kept whole and fixed, as in the paper).
        masks_sha256 (`str`, *optional*):
            sha256 of the packed masks, written by `save_pretrained` and checked by `from_pretrained`, so that a
            corrupted mask file is refused rather than loaded.
        mask_encoding (`str`, *optional*, defaults to `"packed"`):
            How `save_pretrained` stores the masks of a mask-only checkpoint: `"packed"`, one bit per weight; or
            `"initial_xor_lzma"`, each mask XOR the top-k of the seed's initial scores (which the loader regenerates),
            LZMA2-coded: lossless, and smaller the more of its initial top-k a mask kept (see `mask_coding.py`). Either
            loads to the same masks (`masks_sha256` is over the packed masks). Training checkpoints with scores
            store packed masks.
        forward_config_sha256 (`str`, *optional*):
            sha256 of the config fields that act in the forward pass (`FORWARD_FIELDS`: shape, heads, layers,
            activation, embedding and output scales, density, frozen fraction, coats, special ids), written by
            `save_pretrained` and checked by every load path, so that an edited config.json is refused rather than
            loaded as another model. A field added later is left out while it holds the value that reproduces the
            earlier behaviour (`frozen_fraction` 0, `coats` 1, `coat_density_ratio` 0.5), so that earlier checkpoints
            keep their fingerprint.
        tokenizer_sha256 (`str`, *optional*):
            sha256 of the tokenizer the masks were found with (its `tokenizer.json`, canonical JSON without the
            runtime `truncation` / `padding` state), recorded by the training script (`record_tokenizer`). A
            tokenizer whose digest differs, or whose size is not `vocab_size`, is refused by `from_pretrained` (for
            a `tokenizer.json` next to the checkpoint) and by the translation pipeline.
        source_lang (`str`, *optional*):
            Language the model translates from (e.g. `"en"`), written by the training script; `None` when unknown.
        target_lang (`str`, *optional*):
            Language the model translates into (e.g. `"de"`), written by the training script; `None` when unknown.

    Example:

    ```python
    >>> from hf_supermask import SupermaskConfig, SupermaskForConditionalGeneration

    >>> config = SupermaskConfig(vocab_size=8000, d_model=256, encoder_layers=3, decoder_layers=3, seed=7)
    >>> model = SupermaskForConditionalGeneration(config)
    ```
    """

    model_type = "supermask"
    keys_to_ignore_at_inference = ["past_key_values", "cache"]  # the decoder cache, by its name before and since 5.24
    attribute_map = {
        "num_attention_heads": "encoder_attention_heads",
        "hidden_size": "d_model",
        "num_hidden_layers": "encoder_layers",
    }

    vocab_size: int = 8000
    d_model: int = 512
    encoder_layers: int = 6
    decoder_layers: int = 6
    encoder_attention_heads: int = 8
    decoder_attention_heads: int = 8
    encoder_ffn_dim: int = 2048
    decoder_ffn_dim: int = 2048
    activation_function: str = "relu"
    max_position_embeddings: int = 512
    dropout: float | int = 0.0
    attention_dropout: float | int = 0.0
    activation_dropout: float | int = 0.0
    encoder_layerdrop: float | int = 0.0
    decoder_layerdrop: float | int = 0.0
    scale_embedding: bool = True
    use_cache: bool = True
    pad_token_id: int | None = None
    eos_token_id: int | list[int] | None = 0
    bos_token_id: int | None = None
    decoder_start_token_id: int | None = None
    forced_eos_token_id: int | list[int] | None = 0
    is_encoder_decoder: bool = True
    tie_word_embeddings: bool = True

    seed: int = 0
    density: float | int = 0.5
    frozen_fraction: float | int = 0.0
    coats: int = 1
    coat_density_ratio: float | int = 0.5
    weight_init: str = "signed_constant"
    scale_fan: bool = False
    attention_init: str = "fairseq"
    embedding_scale: float | int = 1.0
    output_scale: float | int = 2.0
    score_init: str = "kaiming_uniform"
    share_layers: bool = True
    generator_version: int = GENERATOR_VERSION
    weights_sha256: str | None = None
    embedding_source: str | None = None
    embedding_sha256: str | None = None
    mask_embedding: bool | None = None
    masks_sha256: str | None = None
    mask_encoding: str = "packed"
    forward_config_sha256: str | None = None
    tokenizer_sha256: str | None = None
    source_lang: str | None = None
    target_lang: str | None = None

    def __post_init__(self, **kwargs):
        if self.pad_token_id is None:
            self.pad_token_id = self.vocab_size - 1
        if self.decoder_start_token_id is None:
            self.decoder_start_token_id = self.pad_token_id
        if self.mask_embedding is None:
            self.mask_embedding = self.embedding_source is None
        # Checked here rather than in a `@strict` class validator, which would wrap the ValueError in its own type.
        self.check_supermask_fields()
        super().__post_init__(**kwargs)

    @property
    def custom_pipelines(self) -> dict:
        """Pipelines shipped as remote code. Hidden when a local "translation" task exists, so that
        `pipeline("translation", model=...)` after `import hf_supermask` needs no `trust_remote_code`; the stored
        value (what config.json holds) is unchanged either way."""
        stored = self.__dict__.get("custom_pipelines") or {}
        if "translation" in stored and _translation_task_registered():
            return {task: entry for task, entry in stored.items() if task != "translation"}
        return stored

    @custom_pipelines.setter
    def custom_pipelines(self, value: dict) -> None:
        self.__dict__["custom_pipelines"] = value

    def forward_config(self) -> dict:
        """The values of `FORWARD_FIELDS`, normalised as the fingerprint sees them."""
        values = {}
        for name in FORWARD_FIELDS:
            value = getattr(self, name)
            values[name] = float(value) if name in _FLOAT_FIELDS and not isinstance(value, bool) else value
        return values

    def forward_config_fingerprint(self) -> str:
        """sha256 of `forward_config()` (what `forward_config_sha256` records), without the later fields that hold
        their earlier behaviour's value (`_LATER_FORWARD_FIELDS`)."""
        values = {
            name: value
            for name, value in self.forward_config().items()
            if name not in _LATER_FORWARD_FIELDS or value != _LATER_FORWARD_FIELDS[name]
        }
        text = json.dumps(values, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def check_supermask_fields(self):
        """Raise a ValueError that names the field and the values it accepts, for the first invalid field.

        (Not named `validate_*`: `@strict` would run it a second time, as a class validator.)"""
        for name in (
            "vocab_size",
            "d_model",
            "encoder_layers",
            "decoder_layers",
            "encoder_ffn_dim",
            "decoder_ffn_dim",
            "max_position_embeddings",
            "encoder_attention_heads",
            "decoder_attention_heads",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be a positive integer, got {getattr(self, name)}.")
        for name in ("encoder_attention_heads", "decoder_attention_heads"):
            if self.d_model % getattr(self, name):
                raise ValueError(f"`d_model` ({self.d_model}) must be a multiple of `{name}` ({getattr(self, name)}).")
        if isinstance(self.density, bool) or not 0.0 < self.density <= 1.0:
            raise ValueError(
                f"`density` is the fraction of weights KEPT and must satisfy 0 < density <= 1, got {self.density}."
            )
        if isinstance(self.frozen_fraction, bool) or not 0.0 <= self.frozen_fraction < 1.0:
            raise ValueError(
                "`frozen_fraction` is the fraction of each tensor's mask fixed by the seed and must satisfy 0 <= "
                f"frozen_fraction < 1 (0: every position is searched), got {self.frozen_fraction}."
            )
        if isinstance(self.coats, bool) or not isinstance(self.coats, int) or not 1 <= self.coats <= 255:
            raise ValueError(
                f"`coats` is the number of nested masks per tensor and must be an integer in [1, 255] (1: a plain "
                f"binary mask), got {self.coats!r}."
            )
        if isinstance(self.coat_density_ratio, bool) or not 0.0 < self.coat_density_ratio < 1.0:
            raise ValueError(
                "`coat_density_ratio` is the fraction of a coat's kept weights that the next coat keeps and must "
                f"satisfy 0 < coat_density_ratio < 1, got {self.coat_density_ratio}."
            )
        if self.coats > 1 and self.frozen_fraction:
            raise ValueError(
                f"`coats` {self.coats} and `frozen_fraction` {self.frozen_fraction} cannot be combined: frozen "
                "positions are stored for one coat only. Set `frozen_fraction=0` for a multicoated mask, or `coats=1`."
            )
        if self.weight_init not in WEIGHT_INITS:
            raise ValueError(f"`weight_init` must be one of {list(WEIGHT_INITS)}, got {self.weight_init!r}.")
        if self.attention_init not in ATTENTION_INITS:
            raise ValueError(f"`attention_init` must be one of {list(ATTENTION_INITS)}, got {self.attention_init!r}.")
        for name in ("embedding_scale", "output_scale"):
            value = getattr(self, name)
            # The model computes in float32 (at least): 1e40 is finite in Python and inf there.
            if isinstance(value, bool) or not math.isfinite(value) or not 0 < value <= _FLOAT32_MAX:
                raise ValueError(
                    f"`{name}` must be a positive number that is finite in float32 (at most {_FLOAT32_MAX:.4g}), "
                    f"got {value!r}."
                )
        check_mask_encoding(self.mask_encoding)
        if self.score_init not in SCORE_INITS:
            raise ValueError(f"`score_init` must be one of {list(SCORE_INITS)}, got {self.score_init!r}.")
        if self.activation_function not in ACT2FN:
            raise ValueError(
                f"`activation_function` must be one of {sorted(ACT2FN)}, got {self.activation_function!r}."
            )
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"`seed` must be a non-negative integer, got {self.seed!r}.")
        if self.generator_version != GENERATOR_VERSION:
            raise ValueError(
                f"`generator_version` is {self.generator_version}, but this code regenerates weights with generator "
                f"version {GENERATOR_VERSION}; masks found for other weights are meaningless. Install the "
                "hf_supermask release that matches the checkpoint (or load it with the remote code it ships with)."
            )
        for name in ("dropout", "attention_dropout", "activation_dropout", "encoder_layerdrop", "decoder_layerdrop"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"`{name}` must be in [0, 1), got {getattr(self, name)}.")
        for name in ("source_lang", "target_lang"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value or "_" in value or "-" in value):
                raise ValueError(
                    f"`{name}` must be a language code such as 'en' (no '_' or '-'), or None when unknown; got "
                    f"{value!r}."
                )
        for name in ("pad_token_id", "decoder_start_token_id", "eos_token_id", "forced_eos_token_id"):
            value = getattr(self, name)
            for token_id in value if isinstance(value, list) else [value]:
                if token_id is not None and (isinstance(token_id, bool) or not 0 <= token_id < self.vocab_size):
                    raise ValueError(
                        f"`{name}` must be a token id in [0, vocab_size={self.vocab_size}), got {value!r}."
                    )


__all__ = ["SupermaskConfig"]
