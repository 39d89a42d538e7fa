# Copyright 2025 The hf_supermask Authors.
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
"""Translation metrics (sacreBLEU BLEU + chrF) that work offline, and a `compute_metrics` for `Seq2SeqTrainer`.

`evaluate.load("sacrebleu")` downloads its script from the Hub, so it fails with `HF_HUB_OFFLINE=1`, and the `evaluate`
wheel ships no metric scripts. We therefore ship our own module (`sacrebleu_chrf/sacrebleu_chrf.py`, installed as
package data) and load it by local path. For a local *directory*, `evaluate.load` looks for a script of the same name
inside it (`<dir>/<dir name>.py`) and never contacts the Hub.
"""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


__all__ = ["METRIC_DIR", "METRIC_SCRIPT", "load_translation_metric", "make_compute_metrics"]

# `evaluate.load(str(METRIC_DIR))` and `evaluate.load(str(METRIC_SCRIPT))` are equivalent; both are local loads.
METRIC_DIR = Path(__file__).resolve().parent / "sacrebleu_chrf"
METRIC_SCRIPT = METRIC_DIR / "sacrebleu_chrf.py"


def load_translation_metric(**kwargs: Any):
    """
    Load the bundled sacreBLEU BLEU + chrF metric with `evaluate.load`, from its local directory (no network needed).

    Args:
        kwargs:
            Forwarded to `evaluate.load` (e.g. `experiment_id`, `keep_in_memory`, `cache_dir`).

    Returns:
        `evaluate.EvaluationModule`: the metric; `metric.compute(predictions=..., references=...)` returns `bleu`,
        `chrf`, `bleu_signature`, `chrf_signature` and the BLEU details (`counts`, `totals`, `precisions`, `bp`,
        `sys_len`, `ref_len`).
    """
    import evaluate

    if not METRIC_SCRIPT.is_file():
        raise FileNotFoundError(
            f"The metric script {METRIC_SCRIPT} is missing; it must be installed as package data of "
            "`hf_supermask.metrics` (see `[options.package_data]` in setup.cfg)."
        )
    # An absolute directory path whose script has the directory's name: evaluate resolves it locally and only copies
    # the script into its dynamic-modules cache (HF_MODULES_CACHE), without any Hub call.
    return evaluate.load(str(METRIC_DIR), **kwargs)


def make_compute_metrics(tokenizer, metric=None) -> Callable[[Any], dict[str, float]]:
    """
    Build a `compute_metrics(eval_preds)` function for `Seq2SeqTrainer(predict_with_generate=True)`, in the manner of
    transformers' `examples/pytorch/translation/run_translation.py`.

    The returned function replaces `-100` (the label padding ignored by the loss, also used by the Trainer to pad
    generated sequences across batches) with `tokenizer.pad_token_id`, decodes with `skip_special_tokens=True`, strips
    whitespace and scores the detokenized strings with sacreBLEU. It returns `{"bleu", "chrf", "gen_len"}`, where
    `gen_len` is the mean number of non-pad tokens per generated sequence. Only floats are returned because the Trainer
    logs every entry (and reporting integrations reject strings); the full metric output of the last call, including
    the sacreBLEU signatures, is kept in the function attribute `compute_metrics.last_result`.

    Args:
        tokenizer ([`PreTrainedTokenizerBase`]):
            Tokenizer used to decode predictions and labels; must define a pad token.
        metric (`evaluate.EvaluationModule`, *optional*):
            Metric to use; defaults to [`load_translation_metric`]. Must return `bleu` and `chrf` keys.

    Returns:
        `Callable[[EvalPrediction], dict[str, float]]`
    """
    if metric is None:
        metric = load_translation_metric()
    pad_token_id = tokenizer.pad_token_id
    if pad_token_id is None:
        raise ValueError("make_compute_metrics needs a tokenizer with a pad token (tokenizer.pad_token_id is None).")

    def compute_metrics(eval_preds) -> dict[str, float]:
        # `EvalPrediction` unpacks as (predictions, label_ids); generation may return a tuple (sequences, ...).
        preds, labels = eval_preds[0], eval_preds[1]
        if isinstance(preds, tuple):
            preds = preds[0]
        preds = np.asarray(preds)
        labels = np.asarray(labels)
        if preds.ndim == 3:
            raise ValueError(
                "compute_metrics received logits, not token ids: set `predict_with_generate=True` in "
                "Seq2SeqTrainingArguments."
            )
        # -100 cannot be decoded; the Trainer also pads generated sequences of different batches with -100.
        preds = np.where(preds != -100, preds, pad_token_id)
        labels = np.where(labels != -100, labels, pad_token_id)

        decoded_preds = [p.strip() for p in tokenizer.batch_decode(preds, skip_special_tokens=True)]
        decoded_labels = [label.strip() for label in tokenizer.batch_decode(labels, skip_special_tokens=True)]

        result = metric.compute(predictions=decoded_preds, references=decoded_labels)
        compute_metrics.last_result = result

        gen_len = float(np.mean(np.count_nonzero(preds != pad_token_id, axis=-1)))
        return {
            "bleu": round(float(result["bleu"]), 4),
            "chrf": round(float(result["chrf"]), 4),
            "gen_len": round(gen_len, 4),
        }

    compute_metrics.last_result = None
    return compute_metrics
