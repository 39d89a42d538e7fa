# Copyright 2026 The hf_supermask Authors. Licensed under the Apache License, Version 2.0.
"""hf_supermask: translation models found, not trained.

`import hf_supermask` registers the `supermask` model type with transformers' Auto classes
(AutoConfig, AutoModel, AutoModelForSeq2SeqLM) and restores the `translation` pipeline task.
"""

from transformers import AutoConfig, AutoModel, AutoModelForSeq2SeqLM

from .modeling import SupermaskConfig, SupermaskForConditionalGeneration, SupermaskModel, SupermaskPreTrainedModel
from .pipelines import register_translation_pipeline


__version__ = "0.1.0"

AutoConfig.register(SupermaskConfig.model_type, SupermaskConfig, exist_ok=True)
AutoModel.register(SupermaskConfig, SupermaskModel, exist_ok=True)
AutoModelForSeq2SeqLM.register(SupermaskConfig, SupermaskForConditionalGeneration, exist_ok=True)
# transformers 5.x removed the "translation" task; see hf_supermask/pipelines.py for what this restores and why.
register_translation_pipeline()

__all__ = [
    "SupermaskConfig",
    "SupermaskForConditionalGeneration",
    "SupermaskModel",
    "SupermaskPreTrainedModel",
    "__version__",
]
