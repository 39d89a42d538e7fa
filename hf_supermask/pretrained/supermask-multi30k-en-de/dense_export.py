# Copyright 2026 The hf_supermask Authors. Licensed under the Apache License, Version 2.0.
"""The dense export: a stock `MarianMTModel` computing exactly what a supermask model computes.

`DenseExportMixin` is inherited by `SupermaskForConditionalGeneration`. Imports only masked_layers (never
modeling_supermask: the model imports this file).
"""

from __future__ import annotations

import copy

import torch

from .configuration_supermask import SupermaskConfig
from .masked_layers import MaskedEmbedding, MaskedWeight


class DenseExportMixin:
    """`export_dense` for a model with `config`, `named_modules` and `generation_config`."""

    @torch.no_grad()
    def export_dense(self):
        """A stock `transformers.MarianMTModel` with the masks folded into dense weights (same logits and outputs).

        Marian has no bias-free linears and no affine-free LayerNorm, so biases are zero, LayerNorms are the
        identity affine map (but the last decoder one, whose weight is `output_scale`), and `final_logits_bias` is
        zero. The result needs no hf_supermask code.
        """
        from transformers import MarianMTModel

        dense = MarianMTModel(marian_config_for(self.config))
        state = {}
        last_norm = f"model.decoder.layers.{self.config.decoder_layers - 1}.final_layer_norm.weight"
        for name, module in self.named_modules():
            if isinstance(module, MaskedWeight):
                weight = (module.weight * module.current_mask().to(module.weight.dtype)).float()
                if isinstance(module, MaskedEmbedding):
                    state["model.shared.weight"] = weight
                else:
                    state[f"{name}.weight"] = weight
        for key, value in dense.state_dict().items():
            if key in state or not key.startswith("model.") and key != "final_logits_bias":
                continue
            if key == last_norm:  # logits = output_scale * (h @ E^T): the scale moves into the last LayerNorm
                state[key] = torch.full_like(value, self.config.output_scale)
            elif key.endswith("layer_norm.weight"):
                state[key] = torch.ones_like(value)
            elif key.endswith(".bias") or key == "final_logits_bias":
                state[key] = torch.zeros_like(value)
        missing, unexpected = dense.load_state_dict(state, strict=False)
        # Only the tied copies of the embedding and the sinusoidal tables may be left to Marian.
        leftovers = [k for k in missing if not k.endswith("embed_positions.weight") and "embed_tokens" not in k]
        leftovers = [k for k in leftovers if k != "lm_head.weight"]
        if leftovers or unexpected:
            raise RuntimeError(f"export_dense did not map every tensor: missing {leftovers}, unexpected {unexpected}")
        dense.tie_weights()
        dense.generation_config = copy.deepcopy(self.generation_config)
        return dense.eval()


def marian_config_for(config: SupermaskConfig):
    """The `MarianConfig` of a dense model with the same computation (every differing Marian default set explicitly)."""
    from transformers import MarianConfig

    return MarianConfig(
        vocab_size=config.vocab_size,
        decoder_vocab_size=config.vocab_size,
        d_model=config.d_model,
        encoder_layers=config.encoder_layers,
        decoder_layers=config.decoder_layers,
        encoder_attention_heads=config.encoder_attention_heads,
        decoder_attention_heads=config.decoder_attention_heads,
        encoder_ffn_dim=config.encoder_ffn_dim,
        decoder_ffn_dim=config.decoder_ffn_dim,
        activation_function=config.activation_function,
        max_position_embeddings=config.max_position_embeddings,
        dropout=config.dropout,
        attention_dropout=config.attention_dropout,
        activation_dropout=config.activation_dropout,
        encoder_layerdrop=config.encoder_layerdrop,
        decoder_layerdrop=config.decoder_layerdrop,
        scale_embedding=config.scale_embedding,
        pad_token_id=config.pad_token_id,
        eos_token_id=config.eos_token_id,
        bos_token_id=config.bos_token_id,
        decoder_start_token_id=config.decoder_start_token_id,
        forced_eos_token_id=config.forced_eos_token_id,
        share_encoder_decoder_embeddings=True,
        tie_word_embeddings=True,
        use_cache=config.use_cache,
    )
