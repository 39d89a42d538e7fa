# Copyright 2026 The hf_supermask Authors. Licensed under the Apache License, Version 2.0.
"""The model code that travels with every checkpoint as Hub remote code (installed as `hf_supermask.modeling`).

Imports only torch, transformers, safetensors, numpy and the standard library.
"""

from .configuration_supermask import SupermaskConfig
from .modeling_supermask import (
    SupermaskForConditionalGeneration,
    SupermaskModel,
    SupermaskPreTrainedModel,
)


__all__ = ["SupermaskConfig", "SupermaskForConditionalGeneration", "SupermaskModel", "SupermaskPreTrainedModel"]
