# Copyright 2025 The hf_supermask authors.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""
A `"translation"` pipeline for transformers 5.x, which removed the built-in one.

It reproduces the behaviour of transformers 4.x's `TranslationPipeline` for any sequence-to-sequence model that can
`generate` (`AutoModelForSeq2SeqLM`: Marian/opus-mt, T5, BART, ... or a remote-code model), plus a few robustness
fixes: inputs longer than the tokenizer's `model_max_length` are truncated with a warning instead of crashing the
model, empty strings translate to `""` without running the model, and invalid inputs raise a clear `TypeError`.

This file is shipped inside model checkpoints as Hub remote code (`config.json` -> `custom_pipelines`), so it must
only import torch, transformers, numpy and the Python standard library: no relative or project imports.
"""

import enum
import re
import types
from typing import Any

import torch
import torch.utils.data
from transformers import Pipeline
from transformers.utils import ModelOutput, logging


logger = logging.get_logger(__name__)

# Tokenizers without a real length limit report `model_max_length == VERY_LARGE_INTEGER` (int(1e30)).
_NO_LENGTH_LIMIT = int(1e20)
# A mask set named like a translation direction ("en-de", "pt_BR-en").
_DIRECTION = re.compile(r"[A-Za-z]{2,3}(_[A-Za-z]+)?-[A-Za-z]{2,3}(_[A-Za-z]+)?")


class ReturnType(enum.Enum):
    TENSORS = 0
    TEXT = 1


def _describe(value: Any) -> str:
    """Short `type (repr)` description of a bad input, for error messages."""
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} ({text})"


class TranslationPipeline(Pipeline):
    """
    Translates from one language to another with a sequence-to-sequence model, like transformers 4.x's
    `TranslationPipeline` did.

    Example:

    ```python
    >>> from transformers import pipeline

    >>> translator = pipeline("translation", model="Helsinki-NLP/opus-mt-en-de")  # doctest: +SKIP
    >>> translator("A little girl climbing into a wooden playhouse.", num_beams=4)  # doctest: +SKIP
    [{'translation_text': 'Ein kleines Mädchen klettert in ein Spielhaus aus Holz.'}]
    ```

    Inputs are a `str` or a list of `str`. A `str` gives a list of `{"translation_text": str}` dicts (one per returned
    sequence, so usually one); a list of `str` gives a flat list of such dicts when each input has one returned
    sequence, and a list of lists otherwise.

    Generation parameters (`num_beams`, `max_new_tokens`, `max_length`, `no_repeat_ngram_size`, ...) can be passed at
    construction time (`pipeline("translation", model=..., num_beams=4)`) and at call time, where they take
    precedence. They are forwarded to `model.generate()` on top of the model's generation config.

    Other parameters (construction or call time):

    - `src_lang` / `tgt_lang` (`str`, *optional*): only used by multilingual tokenizers that need them (mBART, NLLB,
      M2M100, ... i.e. tokenizers with `_build_translation_inputs`); ignored otherwise. For a task named
      `"translation_xx_to_yy"` they default to `xx` and `yy`, as in 4.x.
    - `truncation` (`bool` or `str`, *optional*): by default, inputs longer than the tokenizer's `model_max_length`
      are truncated to it, and a warning is logged (once per call). `truncation=False` disables it.
    - `return_tensors` / `return_text` / `return_type`: return `translation_token_ids` (tensors) instead of
      `translation_text`.
    - `clean_up_tokenization_spaces` (`bool`, *optional*, defaults to `False`): passed to `tokenizer.decode`, which
      always uses `skip_special_tokens=True`.
    - `mask_set` (`str`, *optional*): for models holding several mask sets over one network (hf_supermask's
      `load_masks`), the set to translate with; by default the set named after the task's direction ("en-fr" for
      `"translation_en_to_fr"`) if the model holds one, else the active set (a task that names a direction no set of
      a several-set model is named after is refused).
    """

    _pipeline_calls_generate = True
    _load_processor = False
    _load_image_processor = False
    _load_video_processor = False
    _load_feature_extractor = False
    _load_tokenizer = True

    return_name = "translation"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._truncation_warned = False

        if not getattr(self.model.config, "is_encoder_decoder", False):
            # Remote-code encoder-decoder models are accepted from their config alone, the others have to be known
            # sequence-to-sequence architectures.
            from transformers.models.auto.modeling_auto import MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES

            self.check_model_type(MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES)

        # A model that knows the tokenizer it was found with (hf_supermask's `check_tokenizer`) refuses any other:
        # another model's tokenizer, or one with two ids swapped, would translate garbage without a word.
        check_tokenizer = getattr(self.model, "check_tokenizer", None)
        if callable(check_tokenizer) and self.tokenizer is not None:
            check_tokenizer(self.tokenizer)

        # Backward compatibility with 4.x, which read `prefix` and generation defaults from
        # `config.task_specific_params[task]`, e.g. T5's "translation_en_to_de" prefix.
        task_specific_params = getattr(self.model.config, "task_specific_params", None) or {}
        task_params = dict(task_specific_params.get(self.task) or {})
        if task_params and hasattr(self, "_generate_kwargs"):
            if task_params.get("prefix") is not None:
                self.prefix = task_params.pop("prefix")
            generation_keys = set(self.model.generation_config.to_dict())
            for key, value in task_params.items():
                if key in generation_keys:
                    # Parameters passed to the pipeline take precedence over the checkpoint's defaults
                    self._generate_kwargs.setdefault(key, value)

    def _sanitize_parameters(
        self,
        src_lang: str | None = None,
        tgt_lang: str | None = None,
        truncation: bool | str | None = None,
        return_tensors: bool | None = None,
        return_text: bool | None = None,
        return_type: ReturnType | None = None,
        clean_up_tokenization_spaces: bool | None = None,
        mask_set: str | None = None,
        **generate_kwargs,
    ):
        preprocess_params = {}
        if truncation is not None:
            preprocess_params["truncation"] = truncation
        if src_lang is not None:
            preprocess_params["src_lang"] = src_lang
        if tgt_lang is not None:
            preprocess_params["tgt_lang"] = tgt_lang
        if src_lang is None and tgt_lang is None:
            # 4.x compatibility: `pipeline("translation_en_to_de", ...)` implies src_lang="en", tgt_lang="de"
            task = generate_kwargs.pop("task", None) or self.task or ""
            items = task.split("_")
            if len(items) == 4 and items[0] == "translation" and items[2] == "to":
                preprocess_params["src_lang"] = items[1]
                preprocess_params["tgt_lang"] = items[3]

        # Everything else goes to `generate()`, which rejects unknown arguments
        self._check_generation_parameters(generate_kwargs)
        forward_params = generate_kwargs
        # Models holding mask sets (hf_supermask: one per direction): `mask_set=`, or the set serving the task's
        # direction; a direction the model does not serve is refused rather than translated into another language.
        if "src_lang" in preprocess_params and "tgt_lang" in preprocess_params and mask_set is None:
            mask_set = self._mask_set_for(f"{preprocess_params['src_lang']}-{preprocess_params['tgt_lang']}")
        sets = getattr(self.model, "mask_sets", ())
        if mask_set is not None:
            if mask_set not in sets:
                raise ValueError(f"`mask_set={mask_set!r}`, but the model holds the mask sets {list(sets)}.")
            forward_params["mask_set"] = mask_set
        if getattr(self, "assistant_model", None) is not None:
            forward_params["assistant_model"] = self.assistant_model
        if getattr(self, "assistant_tokenizer", None) is not None:
            forward_params["tokenizer"] = self.tokenizer
            forward_params["assistant_tokenizer"] = self.assistant_tokenizer

        postprocess_params = {}
        if return_tensors is not None and return_type is None:
            return_type = ReturnType.TENSORS if return_tensors else ReturnType.TEXT
        if return_text is not None and return_type is None:
            return_type = ReturnType.TEXT if return_text else ReturnType.TENSORS
        if return_type is not None:
            postprocess_params["return_type"] = return_type
        if clean_up_tokenization_spaces is not None:
            postprocess_params["clean_up_tokenization_spaces"] = clean_up_tokenization_spaces

        return preprocess_params, forward_params, postprocess_params

    @staticmethod
    def _check_text(text: Any, position: int | None = None) -> str:
        if isinstance(text, str):
            return text
        where = "" if position is None else f" at position {position} of the input list"
        raise TypeError(
            f"TranslationPipeline expects a `str` or a list of `str` as input, but got {_describe(text)}{where}."
        )

    def __call__(self, inputs: str | list[str], *args, **kwargs) -> list[dict[str, Any]] | list[list[dict[str, Any]]]:
        """
        Translate the text(s) given as inputs.

        Args:
            inputs (`str` or `list[str]`):
                Text(s) to translate. Datasets and generators of `str` are also accepted, and are streamed.
            kwargs:
                `src_lang`, `tgt_lang`, `truncation`, `return_tensors`, `return_text`, `clean_up_tokenization_spaces`
                (see the class docstring), and generation parameters forwarded to `model.generate()`.

        Returns:
            For a `str`: a list of dicts, one per returned sequence, with key `translation_text` (or
            `translation_token_ids` with `return_tensors=True`). For a list of `str`: a list of such dicts when each
            input has a single returned sequence, a list of lists of dicts otherwise.
        """
        self._truncation_warned = False
        is_list = isinstance(inputs, (list, tuple))
        if isinstance(inputs, str):
            pass
        elif is_list:
            # Validate everything up front, so that a bad item fails before any (slow) generation
            for position, text in enumerate(inputs):
                self._check_text(text, position)
            if len(inputs) == 0:
                return []
            # The base class only batches lists (tuples would be taken as a single input)
            inputs = list(inputs)
        elif not isinstance(inputs, (types.GeneratorType, torch.utils.data.Dataset)):
            # Generators and datasets (e.g. `KeyDataset`) are streamed by the base class, and their items checked in
            # `preprocess`; anything else is not text
            self._check_text(inputs)

        # A pipeline leaves the model's active mask set as it found it: lists and strings are translated eagerly, so
        # the set is restored once after the call; streamed inputs (generators, datasets) restore after each batch.
        streamed = not isinstance(inputs, (str, list))
        active = getattr(self.model, "active_masks", None)
        self._restore_mask_set_per_batch = streamed
        try:
            result = super().__call__(inputs, *args, **kwargs)
        finally:
            self._restore_mask_set_per_batch = True
            if active is not None and self.model.active_masks != active:
                self.model.set_active_masks(active)

        # Same un-nesting as 4.x: one sequence per input gives a flat list of dicts
        if is_list and all(len(res) == 1 for res in result):
            return [res[0] for res in result]
        return result

    def _position_limit(self) -> int | None:
        """Longest sequence the model's (absolute) position table covers, if it has one."""
        limit = getattr(self.model.config, "max_position_embeddings", None)
        return int(limit) if isinstance(limit, int) and limit > 0 else None

    def _check_generation_parameters(self, generate_kwargs: dict[str, Any], origin: str = "") -> None:
        """Refuse beam counts and lengths that `generate()` would only fail on deep inside (ZeroDivisionError,
        IndexError), naming the parameter and its allowed range."""
        num_beams = generate_kwargs.get("num_beams")
        if num_beams is not None and (isinstance(num_beams, bool) or not isinstance(num_beams, int) or num_beams < 1):
            raise ValueError(f"`num_beams`{origin} must be an integer >= 1, got {num_beams!r}.")
        limit = self._position_limit()
        for name in ("max_new_tokens", "max_length"):
            value = generate_kwargs.get(name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}`{origin} must be an integer >= 1, got {value!r}.")
            if limit is not None and value > limit:
                raise ValueError(
                    f"`{name}`{origin} is {value}, but this model's position table covers {limit} positions "
                    f"(config.max_position_embeddings): use a {name} between 1 and {limit}."
                )

    def _max_source_length(self, truncation: bool | str | None) -> int | None:
        """Length the inputs are truncated to (the tokenizer's limit or the position table, whichever is smaller),
        `None` for no truncation."""
        if truncation is False or truncation in ("do_not_truncate", "DO_NOT_TRUNCATE"):
            return None
        limits = [getattr(self.tokenizer, "model_max_length", None), self._position_limit()]
        limits = [int(limit) for limit in limits if limit is not None and limit < _NO_LENGTH_LIMIT]
        return min(limits) if limits else None

    def preprocess(
        self,
        inputs: str,
        truncation: bool | str | None = None,
        src_lang: str | None = None,
        tgt_lang: str | None = None,
    ) -> dict[str, torch.Tensor]:
        text = self._check_text(inputs)
        max_length = self._max_source_length(truncation)
        encode_kwargs = {"return_tensors": "pt"}
        if max_length is not None:
            encode_kwargs.update(truncation=True, max_length=max_length)

        build_translation_inputs = getattr(self.tokenizer, "_build_translation_inputs", None)
        if build_translation_inputs is not None and (src_lang is not None or tgt_lang is not None):
            # Multilingual tokenizers set their language codes here, and return the target language id that has to
            # be forced as the first generated token
            model_inputs = build_translation_inputs(text, src_lang=src_lang, tgt_lang=tgt_lang, **encode_kwargs)
        else:
            prefix = getattr(self, "prefix", None) or ""
            text = prefix + text
            model_inputs = self.tokenizer(text, **encode_kwargs)

        if max_length is not None and model_inputs["input_ids"].shape[-1] >= max_length:
            # Possibly truncated: only inputs at the limit pay for a second, untruncated, tokenization
            full_length = len(self.tokenizer(text, verbose=False)["input_ids"])
            if full_length > max_length and not self._truncation_warned:
                self._truncation_warned = True
                logger.warning(
                    f"An input of {full_length} tokens is longer than the model accepts (the smaller of the "
                    f"tokenizer's model_max_length and the model's position table: {max_length}) and was truncated "
                    f"to {max_length} tokens (other truncated inputs of this call "
                    "are not reported). Pass `truncation=False` to disable truncation."
                )

        result = {"input_ids": model_inputs["input_ids"]}
        if "attention_mask" in model_inputs:
            result["attention_mask"] = model_inputs["attention_mask"]
        else:
            result["attention_mask"] = torch.ones_like(model_inputs["input_ids"])
        forced_bos_token_id = model_inputs.get("forced_bos_token_id")
        if forced_bos_token_id is not None:
            # 1-dim tensors are concatenated by the batching collate function
            result["forced_bos_token_id"] = torch.tensor([int(forced_bos_token_id)])
        # Whitespace-only inputs are not translated either: the model would only see special tokens
        result["is_empty"] = torch.tensor([len(inputs.strip()) == 0])
        return result

    def _mask_set_for(self, direction: str) -> str | None:
        """The mask set serving `direction` ("en-fr"), None to use the active one; refuses a direction the model does
        not serve. A model's directions: its sets named like one, and the direction its config records
        (`source_lang`/`target_lang`) for the set it was loaded with ("default")."""
        sets = getattr(self.model, "mask_sets", None)
        if sets is None:
            return None  # not a mask-set model (Marian, T5, ...): the task only sets src_lang/tgt_lang
        if direction in sets:
            return direction
        config = self.model.config
        source, target = getattr(config, "source_lang", None), getattr(config, "target_lang", None)
        recorded = f"{source}-{target}" if source and target else None
        if recorded == direction and "default" in sets:
            return "default"
        served = [name for name in sets if _DIRECTION.fullmatch(name)] + ([recorded] if "default" in sets else [])
        served = [name for name in served if name]
        if len(sets) > 1 or served:
            # Translating with whichever set happens to be active would give another language, silently.
            raise ValueError(
                f"The task asks for {direction}, but the model serves {served or 'no named direction'} (its mask "
                f"sets: {list(sets)}; direction recorded in its config: {recorded}), none named {direction!r}. Use a "
                f"model found for {direction}, "
                f"pass `mask_set=` to choose a set, or name the sets after their directions (`load_masks(path, "
                f"{direction!r})`, `rename_mask_set(old, {direction!r})`)."
            )
        return None

    def _forward(self, model_inputs: dict[str, torch.Tensor], **generate_kwargs) -> dict[str, torch.Tensor]:
        mask_set = generate_kwargs.pop("mask_set", None)
        if mask_set is None or mask_set == self.model.active_masks:
            return self._generate(model_inputs, **generate_kwargs)
        active = self.model.active_masks
        self.model.set_active_masks(mask_set)
        try:
            return self._generate(model_inputs, **generate_kwargs)
        finally:
            if getattr(self, "_restore_mask_set_per_batch", True):
                self.model.set_active_masks(active)

    def _generate(self, model_inputs: dict[str, torch.Tensor], **generate_kwargs) -> dict[str, torch.Tensor]:
        input_ids = model_inputs["input_ids"]
        attention_mask = model_inputs["attention_mask"]
        is_empty = model_inputs["is_empty"].bool()
        in_b = input_ids.shape[0]

        generate_kwargs = self._prepare_generate_kwargs(generate_kwargs)
        if "max_new_tokens" not in generate_kwargs and "max_length" not in generate_kwargs:
            # The lengths saved with the model apply: they must fit its position table too.
            saved = self.model.generation_config
            length = (
                {"max_new_tokens": saved.max_new_tokens} if saved.max_new_tokens else {"max_length": saved.max_length}
            )
            self._check_generation_parameters(length, origin=" (from the model's generation_config.json)")
        forced_bos_token_id = model_inputs.get("forced_bos_token_id")
        if forced_bos_token_id is not None and "forced_bos_token_id" not in generate_kwargs:
            generate_kwargs["forced_bos_token_id"] = int(forced_bos_token_id[0])
        num_sequences = int(self._get_set_generation_params(generate_kwargs).get("num_return_sequences") or 1)

        keep = ~is_empty
        n_keep = int(keep.sum())
        if n_keep == 0:
            # Only empty inputs: nothing to generate, `postprocess` returns "" for them
            output_ids = torch.zeros((in_b, num_sequences, 0), dtype=torch.long)
        else:
            # Drop the empty inputs from the batch rather than translating their special tokens
            generated = self.model.generate(
                input_ids=input_ids[keep], attention_mask=attention_mask[keep], **generate_kwargs
            )
            if isinstance(generated, ModelOutput):  # return_dict_in_generate=True
                generated = generated.sequences
            generated = generated.reshape(n_keep, generated.shape[0] // n_keep, *generated.shape[1:])
            if n_keep == in_b:
                output_ids = generated
            else:
                pad_token_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
                output_ids = torch.full((in_b, *generated.shape[1:]), pad_token_id, dtype=generated.dtype)
                output_ids[keep.to(output_ids.device)] = generated.to(output_ids.device)
        # `output_ids` first: the batch unrolling infers the batch size from the first value
        return {"output_ids": output_ids, "is_empty": is_empty}

    def postprocess(
        self,
        model_outputs: dict[str, torch.Tensor],
        return_type: ReturnType = ReturnType.TEXT,
        clean_up_tokenization_spaces: bool = False,
    ) -> list[dict[str, Any]]:
        is_empty = bool(model_outputs["is_empty"][0])
        records = []
        for output_ids in model_outputs["output_ids"][0]:
            if return_type == ReturnType.TENSORS:
                records.append({f"{self.return_name}_token_ids": output_ids[:0] if is_empty else output_ids})
            else:
                text = (
                    ""
                    if is_empty
                    else self.tokenizer.decode(
                        output_ids,
                        skip_special_tokens=True,
                        clean_up_tokenization_spaces=clean_up_tokenization_spaces,
                    )
                )
                records.append({f"{self.return_name}_text": text})
        return records
