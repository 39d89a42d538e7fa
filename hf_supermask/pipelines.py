"""
Bring back `pipeline("translation", ...)` on transformers 5.x.

Why this exists
---------------
transformers 5.0 removed the `"translation"` task (together with `"text2text-generation"` and `"summarization"`):
`transformers.pipeline("translation", model=...)` now raises
`KeyError: The task translation has been removed from transformers...`, for our checkpoints and for every
`Helsinki-NLP/opus-mt-*` (Marian) model alike. The replacement suggested upstream (`text-generation` with a chat
model) does not apply to encoder-decoder translation models, so we ship our own `TranslationPipeline`
(`hf_supermask/modeling/pipeline_translation.py`, generic for any `AutoModelForSeq2SeqLM`) and put it back in
transformers' task registry.

How transformers 5.23-5.25 resolve a task (`transformers/pipelines/__init__.py::pipeline`)
-------------------------------------------------------------------------------------------
1. If the model's `config.custom_pipelines` has the task, its remote code class is used (this needs
   `trust_remote_code=True`, or an explicit `pipeline_class=`). This check comes first: a checkpoint shipping
   `custom_pipelines["translation"]` uses its own copy of the pipeline, whether or not this module registered anything.
2. Otherwise `_resolve_deprecated_task(task)` raises the `KeyError` above when `task` (or `"translation"` for any
   `"translation_*"` task) is a key of the module-level dict `transformers.pipelines.REMOVED_TASKS`.
3. Then `check_task(task)` -> `transformers.pipelines.PIPELINE_REGISTRY.check_task(task)` looks the task up in
   `PIPELINE_REGISTRY.task_aliases`, then in `PIPELINE_REGISTRY.supported_tasks` (the very same dict object as
   `transformers.pipelines.SUPPORTED_TASKS`), and the entry's `"impl"` becomes the pipeline class.

What `register_translation_pipeline()` changes (and nothing else)
------------------------------------------------------------------
- removes the `"translation"` key from `transformers.pipelines.REMOVED_TASKS` (the other removed tasks, e.g.
  `"summarization"` and `"text2text-generation"`, stay removed);
- registers `"translation"` -> `TranslationPipeline` with `pt=(AutoModelForSeq2SeqLM,)` and `type="text"` through the
  public `PIPELINE_REGISTRY.register_pipeline`, i.e. adds `SUPPORTED_TASKS["translation"]`. Like for any registered
  custom pipeline, this also sets `TranslationPipeline._registered_impl`, so `pipe.save_pretrained(folder)` writes
  `custom_pipelines` and `pipeline_translation.py` into `folder`;
- wraps the `check_task` method of that `PIPELINE_REGISTRY` instance (an instance attribute, the class is untouched)
  so that the 4.x task names `"translation_XX_to_YY"` resolve to the `"translation"` entry. The pipeline then gets
  `task="translation_XX_to_YY"` and derives `src_lang="XX"`, `tgt_lang="YY"` from it, as in 4.x.

It is idempotent, and does nothing to the other tasks. There is no default model: `pipeline("translation")` needs
`model=`.
"""

from __future__ import annotations

import functools
from typing import Any


__all__ = [
    "TRANSLATION_TASK",
    "register_translation_pipeline",
    "translation_custom_pipelines_entry",
]

TRANSLATION_TASK = "translation"

# How a checkpoint names the pipeline it ships (`pipeline_translation.py` next to config.json) is defined once, with
# the model code that writes it.
from hf_supermask.modeling.configuration_supermask import TRANSLATION_CUSTOM_PIPELINES  # noqa: E402


def _parse_translation_task(task: str) -> tuple[str, str] | None:
    """`"translation_en_to_de"` -> `("en", "de")`, `None` for any other task name."""
    if not isinstance(task, str):
        return None
    items = task.split("_")
    if len(items) == 4 and items[0] == TRANSLATION_TASK and items[2] == "to":
        return items[1], items[3]
    return None


def register_translation_pipeline() -> None:
    """
    Make `transformers.pipeline("translation", model=...)` (and `"translation_XX_to_YY"`) work on transformers 5.x,
    with [`~hf_supermask.modeling.pipeline_translation.TranslationPipeline`]. See the module docstring for exactly
    what is patched. Safe to call several times.

    Note: checkpoints whose `config.json` has `custom_pipelines["translation"]` take transformers' remote-code route
    first; load them with `trust_remote_code=True`, or pass `pipeline_class=TranslationPipeline`.
    """
    import transformers.pipelines as transformers_pipelines
    from transformers import AutoModelForSeq2SeqLM

    from hf_supermask.modeling.pipeline_translation import TranslationPipeline

    registry = transformers_pipelines.PIPELINE_REGISTRY

    # 1. Unblock the task: `_resolve_deprecated_task` raises for keys of REMOVED_TASKS (and "translation_*" names)
    transformers_pipelines.REMOVED_TASKS.pop(TRANSLATION_TASK, None)

    # 2. Register the implementation (skipped when already there, as `register_pipeline` warns on overwrite)
    current = registry.supported_tasks.get(TRANSLATION_TASK)
    if current is None or current.get("impl") is not TranslationPipeline:
        registry.register_pipeline(
            TRANSLATION_TASK,
            pipeline_class=TranslationPipeline,
            pt_model=AutoModelForSeq2SeqLM,
            type="text",
        )

    # 3. 4.x-style "translation_XX_to_YY" names: not expressible as plain `task_aliases`, hence the wrapper
    if not getattr(registry.check_task, "_hf_supermask_translation", False):
        original_check_task = registry.check_task

        @functools.wraps(original_check_task)
        def check_task(task: str) -> tuple[str, dict, Any]:
            if _parse_translation_task(task) is not None and task not in registry.supported_tasks:
                normalized_task, targeted_task, _ = original_check_task(TRANSLATION_TASK)
                return normalized_task, targeted_task, None
            return original_check_task(task)

        check_task._hf_supermask_translation = True
        registry.check_task = check_task


def translation_custom_pipelines_entry(
    default_model: str | None = None, default_revision: str | None = None
) -> dict[str, dict[str, Any]]:
    """
    The value to store in a checkpoint's `config.json` under `"custom_pipelines"`, so that
    `pipeline("translation", model=folder_or_repo, trust_remote_code=True)` works without hf_supermask installed.

    The checkpoint folder must also contain `pipeline_translation.py` (a copy of
    `hf_supermask/modeling/pipeline_translation.py`), since `"impl"` is resolved by
    `transformers.dynamic_module_utils.get_class_from_dynamic_module` as `<file in the repo>.<class>`.

    The format is the one `Pipeline.save_pretrained` writes for registered pipelines and
    `transformers.pipelines.clean_custom_task` reads back:

    - `"impl"`: `"module.ClassName"`, the module being a `.py` file at the root of the repo;
    - `"pt"`: list of names of `transformers` auto classes (`getattr(transformers, name)`) used to load the model;
    - `"type"`: the input modality, `"text"`;
    - `"default"` (only if `default_model` is given): `{"model": [repo_id, revision]}`, used when `pipeline()` gets
      no `model=` (a list rather than a tuple, as it goes through JSON).

    Args:
        default_model (`str`, *optional*):
            Repo id of the default model for the task, usually the checkpoint's own repo.
        default_revision (`str`, *optional*):
            Revision (ideally a commit hash) of `default_model`.

    Returns:
        `dict`: `{"translation": {"impl": "pipeline_translation.TranslationPipeline", "pt": ["AutoModelForSeq2SeqLM"],
        "type": "text"}}`, plus `"default"` when requested.
    """
    entry: dict[str, Any] = dict(TRANSLATION_CUSTOM_PIPELINES[TRANSLATION_TASK])
    if default_model is not None:
        entry["default"] = {"model": [default_model, default_revision]}
    return {TRANSLATION_TASK: entry}
