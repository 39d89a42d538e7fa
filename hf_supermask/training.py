# Copyright 2026 The hf_supermask Authors. Licensed under the Apache License, Version 2.0.
"""Train translation supermasks (or a same-shape dense Marian baseline) with `Seq2SeqTrainer`.

The logic of `scripts/train_translation.py`, importable and tested. Arguments follow transformers'
`examples/pytorch/translation/run_translation.py` (`--source_lang`, `--max_train_samples`, `--num_beams`, ...), plus
`SupermaskArguments` for what is specific to masks. Everything Trainer-related goes through the Trainer's supported
hooks: a prebuilt optimizer for the scores' own learning rate, `compute_loss_func` for one token-level loss shared by
both model types, and callbacks for timing and mask-change statistics.

Everything that can be checked before training is checked first (the output folder, the checkpoint to resume from,
the data splits the run will use, the config against the checkpoint's), so that a mistake costs seconds, not a run.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import datasets
import torch
import transformers
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    DataCollatorForSeq2Seq,
    EarlyStoppingCallback,
    MarianMTModel,
    Seq2SeqTrainer,
    Seq2SeqTrainingArguments,
    TrainerCallback,
)
from transformers.trainer_utils import get_last_checkpoint

from .data import (
    TokenBudgetBatchSampler,
    check_splits,
    default_data_dir,
    length_bucketed_order,
    load_translation_dataset,
    make_preprocess_function,
    select_max_samples,
)
from .files import TOKENIZER_FILES, check_model_location, check_output_folder, damage, empty_folder, folder_bytes
from .metrics import make_compute_metrics
from .modeling import SupermaskConfig, SupermaskForConditionalGeneration
from .modeling.modeling_supermask import marian_config_for
from .tokenization import train_tokenizer_on_dataset


logger = logging.getLogger(__name__)

MODEL_TYPES = ("supermask", "marian")


@dataclass
class ModelArguments:
    """Which model to train, and from where."""

    model_type: str = field(
        default="supermask",
        metadata={
            "help": "`supermask` (masks over frozen random weights) or `marian` (a dense MarianMTModel of the "
            "same shape, trained normally, for like-for-like comparisons)."
        },
    )
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "Start from this checkpoint (folder or Hub id) instead of a fresh model."}
    )
    config_name: str | None = field(
        default=None, metadata={"help": "Config (folder, Hub id or JSON file) to start from."}
    )
    config_overrides: str | None = field(
        default=None,
        metadata={
            "help": "Override config fields of a fresh model, e.g. `d_model=256,encoder_layers=3,encoder_ffn_dim=1024`."
        },
    )
    tokenizer_name: str | None = field(
        default=None, metadata={"help": "Reuse this tokenizer instead of training one on the training split."}
    )
    cache_dir: str | None = field(default=None, metadata={"help": "Where to cache downloads."})
    trust_remote_code: bool = field(default=False, metadata={"help": "Allow remote code when loading a checkpoint."})

    def __post_init__(self):
        if self.model_type not in MODEL_TYPES:
            raise ValueError(f"--model_type must be one of {MODEL_TYPES}, got {self.model_type!r}.")


@dataclass
class DataTrainingArguments:
    """What data to train and evaluate on (flags as in run_translation.py)."""

    source_lang: str = field(default="en", metadata={"help": "Source language id."})
    target_lang: str = field(default="de", metadata={"help": "Target language id."})
    data_dir: str | None = field(
        default=None,
        metadata={
            "help": "Folder of `split.lang` text files. Default: ../shared/data/multi30k (from the working "
            "directory) if it exists, else (online) the Hub dataset bentrevett/multi30k."
        },
    )
    dataset_name: str | None = field(default=None, metadata={"help": "Hub dataset, e.g. `bentrevett/multi30k`."})
    dataset_config_name: str | None = field(default=None, metadata={"help": "Config name of the Hub dataset."})
    train_file: str | None = field(default=None, metadata={"help": "jsonlines file with a `translation` field."})
    validation_file: str | None = field(default=None, metadata={"help": "jsonlines file with a `translation` field."})
    test_file: str | None = field(default=None, metadata={"help": "jsonlines file with a `translation` field."})
    max_source_length: int = field(default=128, metadata={"help": "Longer sources are truncated."})
    max_target_length: int = field(default=128, metadata={"help": "Longer targets are truncated."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Use the first N training pairs."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Use the first N validation pairs."})
    max_predict_samples: int | None = field(default=None, metadata={"help": "Use the first N test pairs."})
    num_beams: int | None = field(default=None, metadata={"help": "Beams for evaluation and for the saved model."})
    source_prefix: str = field(default="", metadata={"help": "Text prepended to every source (T5-style)."})
    length_bucketed_batches: bool = field(
        default=False,
        metadata={
            "help": "Batches of similar lengths (less padding), in random order: see "
            "data.length_bucketed_order (transformers' group_by_length keeps its buckets sorted)."
        },
    )
    max_tokens_per_batch: int | None = field(
        default=None,
        metadata={
            "help": "Token-budget batches (fairseq's --max-tokens): each training batch holds pairs of similar "
            "lengths up to this many padded tokens (source plus target), in random order; replaces "
            "--per_device_train_batch_size for training. 2048 holds 64 Multi30k pairs on average."
        },
    )
    preprocessing_num_workers: int | None = field(default=None, metadata={"help": "Processes for tokenization."})
    tokenizer_vocab_size: int = field(default=8000, metadata={"help": "Size of the trained joint vocabulary."})
    tokenizer_type: str = field(default="bpe", metadata={"help": "`bpe` or `unigram`."})
    num_examples: int = field(
        default=3, metadata={"help": "Test sentences translated through the pipeline at the end."}
    )

    def __post_init__(self):
        if self.max_tokens_per_batch is not None and self.length_bucketed_batches:
            raise ValueError(
                "--max_tokens_per_batch and --length_bucketed_batches are two ways to batch by length; "
                "give one of them."
            )
        if self.max_tokens_per_batch is not None and self.max_tokens_per_batch < 1:
            raise ValueError(f"--max_tokens_per_batch must be at least 1, got {self.max_tokens_per_batch}.")
        for name in ("max_train_samples", "max_eval_samples", "max_predict_samples"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"--{name} must be at least 1 (leave it out to use the whole split), got {value}.")


@dataclass
class SupermaskArguments:
    """Settings of the masks, named as the config fields they set (None keeps the config's value). The seed of the
    random weights is the config's `seed`: `--config_overrides seed=N` (`--seed` is the Trainer's, for data order)."""

    density: float | None = field(default=None, metadata={"help": "Fraction of each weight tensor KEPT by its mask."})
    weight_init: str | None = field(
        default=None, metadata={"help": "kaiming_uniform | kaiming_normal | xavier_uniform | signed_constant"}
    )
    score_init: str | None = field(default=None, metadata={"help": "kaiming_uniform | constant"})
    share_layers: bool | None = field(
        default=None, metadata={"help": "One random layer per stack (the paper's model)."}
    )
    scale_fan: bool | None = field(default=None, metadata={"help": "Scale fans by density (edge-popup --scale-fan)."})
    embedding_source: str | None = field(
        default=None, metadata={"help": "Take the embedding from this checkpoint (fixed, unmasked by default)."}
    )
    mask_embedding: bool | None = field(default=None, metadata={"help": "Mask (and learn) the embedding too."})
    score_learning_rate: float | None = field(
        default=None, metadata={"help": "Learning rate of the scores (default: --learning_rate)."}
    )
    score_weight_decay: float | None = field(
        default=None, metadata={"help": "Weight decay of the scores (default: --weight_decay)."}
    )

    def score_lr(self, learning_rate: float) -> float:
        """The scores' learning rate: --score_learning_rate when given (0.0 included), else `learning_rate`."""
        return learning_rate if self.score_learning_rate is None else self.score_learning_rate

    def config_updates(self) -> dict[str, Any]:
        return {
            key: value
            for key, value in asdict(self).items()
            if value is not None and key not in ("score_learning_rate", "score_weight_decay")
        }


@dataclass
class TranslationTrainingArguments(Seq2SeqTrainingArguments):
    """`Seq2SeqTrainingArguments` plus `--overwrite_output_dir` (which transformers 5 no longer defines) and
    `--early_stopping_patience`, with the BLEU study's training recipe as defaults (chosen on validation; the model's
    half of the recipe is `SupermaskConfig`'s defaults). Every flag keeps its transformers name and meaning."""

    learning_rate: float = field(
        default=2e-3,
        metadata={
            "help": "Peak learning rate (of the scores, for a supermask). 2e-3 is the study's choice for masks; the "
            "dense `--model_type marian` baseline of the study uses 1e-3."
        },
    )
    warmup_steps: float = field(default=100, metadata={"help": "Linear warm-up updates (then linear decay to 0)."})
    per_device_train_batch_size: int = field(
        default=64, metadata={"help": "Sentence pairs per update and device (unless --max_tokens_per_batch)."}
    )
    per_device_eval_batch_size: int = field(default=64, metadata={"help": "Sentence pairs per evaluation batch."})

    overwrite_output_dir: bool = field(
        default=False,
        metadata={
            "help": "Delete what --output_dir holds before the run. Without it, a non-empty --output_dir is "
            "refused, unless --resume_from_checkpoint continues the run it holds."
        },
    )
    early_stopping_patience: int | None = field(
        default=None,
        metadata={
            "help": "Stop when the validation metric (BLEU with --predict_with_generate, else loss) has not "
            "improved over this many evaluations, and keep the best checkpoint (sets "
            "--load_best_model_at_end)."
        },
    )

    def __post_init__(self):
        if self.early_stopping_patience is not None:
            if self.early_stopping_patience < 1:
                raise ValueError(f"--early_stopping_patience must be at least 1, got {self.early_stopping_patience}.")
            self.load_best_model_at_end = True
            if self.metric_for_best_model is None:
                self.metric_for_best_model = "bleu" if self.predict_with_generate else "loss"
        super().__post_init__()


class TranslationTrainer(Seq2SeqTrainer):
    """`Seq2SeqTrainer` that trains on token-budget batches when given a batch sampler (`--max_tokens_per_batch`)."""

    def __init__(self, *args, train_batch_sampler: torch.utils.data.Sampler | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.train_batch_sampler = train_batch_sampler

    def get_train_dataloader(self):
        if self.train_batch_sampler is None:
            return super().get_train_dataloader()
        # The tokenized training set holds only model inputs, so no column needs removing.
        loader = torch.utils.data.DataLoader(
            self.train_dataset,
            batch_sampler=self.train_batch_sampler,
            collate_fn=self.data_collator,
            num_workers=self.args.dataloader_num_workers,
            pin_memory=self.args.dataloader_pin_memory,
        )
        return self.accelerator.prepare(loader)


class StepTimer(TrainerCallback):
    """Wall time of every training step: forward, backward and optimizer only (no evaluation, no data loading)."""

    def __init__(self):
        self.step_seconds: list[float] = []
        self._step_start: float | None = None

    def on_step_begin(self, args, state, control, **kwargs):
        self._step_start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if self._step_start is not None:
            self.step_seconds.append(time.perf_counter() - self._step_start)
            self._step_start = None


class SupermaskTrainingCallback(TrainerCallback):
    """Adds `elapsed_seconds` and `train_target_tokens` (both counted across resumptions) to every log entry and, at
    each evaluation, the fraction of searched mask positions that changed since the previous one
    (`eval_mask_changed_fraction`; frozen positions left out, a coat count counts as one value),
    for the curves of the model card and the study's budgets."""

    def __init__(self, loss: TokenLoss | None = None):
        self._start = None
        self._offset = 0.0
        self._loss = loss
        self._tokens_offset = 0
        self._previous_masks: torch.Tensor | None = None

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self._start = time.perf_counter()
        # Resumed runs continue the clock and the token count of the interrupted one.
        self._offset = max((entry.get("elapsed_seconds", 0.0) for entry in state.log_history), default=0.0)
        self._tokens_offset = max((entry.get("train_target_tokens", 0) for entry in state.log_history), default=0)
        if self._loss is not None:
            self._tokens_offset -= self._loss.train_target_tokens
        self._previous_masks = _all_mask_bits(model)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self._start is not None and state.log_history:
            state.log_history[-1]["elapsed_seconds"] = round(self._offset + time.perf_counter() - self._start, 2)
            if self._loss is not None:
                state.log_history[-1]["train_target_tokens"] = self._tokens_offset + self._loss.train_target_tokens

    def on_evaluate(self, args, state, control, model=None, metrics=None, **kwargs):
        current = _all_mask_bits(model)
        if current is None or self._previous_masks is None:
            return
        fraction = float((current != self._previous_masks).float().mean())
        self._previous_masks = current
        if metrics is not None:
            metrics["eval_mask_changed_fraction"] = fraction
        for entry in reversed(state.log_history):  # the evaluation entry the Trainer just logged
            if any(key.startswith("eval_") for key in entry):
                entry["eval_mask_changed_fraction"] = fraction
                break


def _all_mask_bits(model) -> torch.Tensor | None:
    """Every searched position's mask value (a bit, or a coat count), in one flat tensor: frozen positions are left
    out, since they cannot change and would understate how much of the search moved."""
    model = getattr(model, "module", model)  # DDP
    if not isinstance(model, SupermaskForConditionalGeneration):
        return None
    parts = []
    for _, module in sorted(model.masked_modules.items()):
        mask = module.current_mask().cpu()
        parts.append(mask[module.frozen_layout()[0]] if module.num_frozen else mask.reshape(-1))
    return torch.cat(parts)


# ----------------------------------------------------------------------------------------------------------------------
# Checks before any work: what the run would overwrite, resume from, read
# ----------------------------------------------------------------------------------------------------------------------


def check_run(
    model_args: ModelArguments, data_args: DataTrainingArguments, supermask_args: SupermaskArguments, training_args
) -> bool:
    """Refuse a run that has nothing to do, that would overwrite earlier work, or that would resume from a missing or
    damaged checkpoint. Nothing is removed here: returns whether --output_dir must be emptied before training (with
    --overwrite_output_dir), which `run_translation` does only once the data, the tokenizer and the model have been
    checked too.

    --output_dir must be new or empty, or --overwrite_output_dir given; a resumed run may also write into the folder
    of its checkpoint (the run it continues), and into no other non-empty folder.
    """
    if not (training_args.do_train or training_args.do_eval or training_args.do_predict):
        raise ValueError(
            "Nothing to do: pass --do_train (train and save the model in --output_dir), --do_eval (score it on the "
            "validation split) and/or --do_predict (score it on the test split)."
        )
    for name in ("model_name_or_path", "tokenizer_name"):
        if getattr(model_args, name):
            check_model_location(getattr(model_args, name), what=f"--{name}")
    checkpoint = training_args.resume_from_checkpoint
    if checkpoint is not None:
        check_checkpoint(checkpoint)
    # Plain Seq2SeqTrainingArguments (callers that build them) have no such flag.
    overwrite = getattr(training_args, "overwrite_output_dir", False)
    output_dir = Path(training_args.output_dir)
    if checkpoint is not None and not overwrite and output_dir.resolve() == Path(checkpoint).resolve().parent:
        return False  # continuing the run the folder holds
    last = get_last_checkpoint(str(output_dir)) if output_dir.is_dir() else None
    if checkpoint is not None:
        hint = (
            f"a resumed run writes into the folder of its checkpoint ({Path(checkpoint).parent}) or into a new or "
            "empty one"
        )
    else:
        hint = f"or continue the run it holds with --resume_from_checkpoint {last}" if last else ""
    inputs = [
        model_args.model_name_or_path,
        model_args.config_name,
        model_args.tokenizer_name,
        model_args.cache_dir,
        data_args.data_dir or default_data_dir(),
        data_args.train_file,
        data_args.validation_file,
        data_args.test_file,
        supermask_args.embedding_source,
        checkpoint,
    ]
    return check_output_folder(
        output_dir, overwrite=overwrite, overwrite_flag="--overwrite_output_dir", inputs=inputs, hint=hint
    )


def _checkpoint_step(path: Path) -> int:
    match = re.fullmatch(r"checkpoint-(\d+)", path.name)
    return int(match.group(1)) if match else -1


def check_checkpoint(checkpoint: str | os.PathLike) -> Path:
    """The folder --resume_from_checkpoint names must exist with its files whole: a run stopped while saving leaves
    empty or truncated files, on which the Trainer fails with a bare `EOFError` or a zip error."""
    checkpoint = Path(checkpoint)
    siblings = sorted(
        (p for p in checkpoint.parent.glob("checkpoint-*") if p.is_dir() and p != checkpoint), key=_checkpoint_step
    )
    if not (checkpoint / "trainer_state.json").is_file():
        found = f"; the checkpoints in {checkpoint.parent} are {[p.name for p in siblings]}" if siblings else ""
        raise FileNotFoundError(
            f"--resume_from_checkpoint {checkpoint} is not a Trainer checkpoint (no trainer_state.json there){found}."
        )
    loaded = (".safetensors", ".json", ".pt", ".pth", ".bin")  # what the Trainer and from_pretrained read
    for path in sorted(p for p in checkpoint.iterdir() if p.is_file() and p.suffix in loaded):
        reason = damage(path)
        if reason is None:
            continue
        earlier = [p for p in siblings if _checkpoint_step(p) < _checkpoint_step(checkpoint)]
        way_out = (
            f"Resume from the earlier checkpoint {earlier[-1]} instead (--resume_from_checkpoint {earlier[-1]})"
            if earlier
            else f"There is no earlier checkpoint in {checkpoint.parent}: start over with --overwrite_output_dir"
        )
        raise ValueError(
            f"{path.name} of checkpoint {checkpoint} is corrupt ({reason}): the run that wrote it was probably "
            f"stopped while saving. {way_out}, or delete {checkpoint}."
        )
    return checkpoint


# Config fields that a resumed run may differ in: bookkeeping, hashes that follow from the other fields, and
# switches of the forward pass (the Trainer saves `use_cache=False`).
_UNCOMPARED_CONFIG_FIELDS = {
    "transformers_version",
    "architectures",
    "auto_map",
    "custom_pipelines",
    "_name_or_path",
    "dtype",
    "torch_dtype",
    "weights_sha256",
    "embedding_sha256",
    "masks_sha256",
    "forward_config_sha256",
    "use_cache",
    "output_attentions",
    "output_hidden_states",
    "return_dict",
}
_CONFIG_FLAGS = {
    "seed": "--config_overrides seed=N",
    "model_type": "--model_type",
    "density": "--density",
    "weight_init": "--weight_init",
    "score_init": "--score_init",
    "share_layers": "--share_layers",
    "scale_fan": "--scale_fan",
    "embedding_source": "--embedding_source",
    "mask_embedding": "--mask_embedding",
    "tokenizer_sha256": "--tokenizer_name",
    "source_lang": "--source_lang",
    "target_lang": "--target_lang",
    **dict.fromkeys(
        ("vocab_size", "pad_token_id", "eos_token_id", "decoder_start_token_id", "forced_eos_token_id"),
        "the tokenizer: --tokenizer_name or --tokenizer_vocab_size",
    ),
}


def check_resume_config(checkpoint: str | os.PathLike, config) -> None:
    """The run must build the model the checkpoint was trained as: resuming with another seed, density, shape or
    model type would train masks (or weights) over other weights, and save a config that does not describe them."""
    saved = AutoConfig.from_pretrained(checkpoint).to_dict()
    current = config.to_dict()
    differing = [
        key
        for key in sorted(saved.keys() & current.keys())
        if key not in _UNCOMPARED_CONFIG_FIELDS and saved[key] != current[key]
    ]
    if differing:
        differences = "; ".join(
            f"{key} ({_CONFIG_FLAGS.get(key, '--config_overrides')}): {saved[key]!r} in the checkpoint, "
            f"{current[key]!r} in this run"
            for key in differing
        )
        raise ValueError(
            f"--resume_from_checkpoint {checkpoint} was trained with another model than this run builds: "
            f"{differences}. Resume with the checkpoint's settings, or start a new run in another --output_dir."
        )


# ----------------------------------------------------------------------------------------------------------------------
# The steps of a run
# ----------------------------------------------------------------------------------------------------------------------


def load_data(model_args: ModelArguments, data_args: DataTrainingArguments, training_args) -> datasets.DatasetDict:
    """The splits, cut to --max_*_samples; every split the run will use is checked to be there and not empty."""
    raw = load_translation_dataset(
        source_lang=data_args.source_lang,
        target_lang=data_args.target_lang,
        data_dir=data_args.data_dir,
        train_file=data_args.train_file,
        validation_file=data_args.validation_file,
        test_file=data_args.test_file,
        dataset_name=data_args.dataset_name,
        dataset_config_name=data_args.dataset_config_name,
        cache_dir=model_args.cache_dir,
    )
    raw = select_max_samples(
        raw, data_args.max_train_samples, data_args.max_eval_samples, data_args.max_predict_samples
    )
    needs = {}
    if not (model_args.tokenizer_name or model_args.model_name_or_path):
        needs["train"] = "training the tokenizer (no --tokenizer_name)"
    if training_args.do_train:
        needs["train"] = "--do_train"
    if training_args.do_eval:
        needs["validation"] = "--do_eval" if training_args.eval_strategy == "no" else "--do_eval (or --eval_strategy)"
    if training_args.do_predict:
        needs["test"] = "--do_predict"
    check_splits(raw, needs)
    return raw


def load_tokenizer(model_args: ModelArguments, data_args: DataTrainingArguments, training_args, raw):
    """--tokenizer_name, else the tokenizer of --model_name_or_path, else a joint one trained on the training split;
    a resumed run uses its checkpoint's (see `resumed_tokenizer`)."""
    tokenizer_source = model_args.tokenizer_name or model_args.model_name_or_path
    if training_args.resume_from_checkpoint is not None:
        return resumed_tokenizer(training_args.resume_from_checkpoint, model_args, data_args)
    if tokenizer_source:
        return AutoTokenizer.from_pretrained(
            tokenizer_source, cache_dir=model_args.cache_dir, trust_remote_code=model_args.trust_remote_code
        )
    with training_args.main_process_first(desc="training the tokenizer"):
        return train_tokenizer_on_dataset(
            raw,
            data_args.source_lang,
            data_args.target_lang,
            vocab_size=data_args.tokenizer_vocab_size,
            model_type=data_args.tokenizer_type,
        )


def resumed_tokenizer(checkpoint, model_args: ModelArguments, data_args: DataTrainingArguments):
    """The tokenizer of the checkpoint a run resumes from: the masks were trained on its ids, so a resumed run never
    trains another one (other training data would give other ids, silently). Refuses a --tokenizer_name (or
    --model_name_or_path) or --tokenizer_vocab_size/--tokenizer_type that does not describe it; a checkpoint without a
    tokenizer needs --tokenizer_name."""
    load = {"cache_dir": model_args.cache_dir, "trust_remote_code": model_args.trust_remote_code}
    flag = "--tokenizer_name" if model_args.tokenizer_name else "--model_name_or_path"
    given = model_args.tokenizer_name or model_args.model_name_or_path
    if not any((Path(checkpoint) / name).is_file() for name in TOKENIZER_FILES):
        if given:
            return AutoTokenizer.from_pretrained(given, **load)  # the config check then compares its size
        raise ValueError(
            f"--resume_from_checkpoint {checkpoint} holds no tokenizer (neither {' nor '.join(TOKENIZER_FILES)}), "
            "and a resumed run does not train a new one (its ids would differ from those the masks were trained "
            "on). Pass the tokenizer the run was trained with as --tokenizer_name."
        )
    saved = AutoTokenizer.from_pretrained(checkpoint)
    if given:
        if AutoTokenizer.from_pretrained(given, **load).get_vocab() != saved.get_vocab():
            raise ValueError(
                f"{flag} {given} is not the tokenizer --resume_from_checkpoint {checkpoint} was trained with (their "
                f"vocabularies differ). Leave out {flag} to resume with the checkpoint's tokenizer, or start a new "
                "run in another --output_dir."
            )
        return saved
    # A trained tokenizer has exactly --tokenizer_vocab_size entries (tokenization.train_tokenizer checks it).
    saved_type = type(saved.backend_tokenizer.model).__name__.lower()
    differing = [
        f"{flag_} {ours} in this run, {theirs} in the checkpoint's tokenizer"
        for flag_, ours, theirs in (
            ("--tokenizer_vocab_size", data_args.tokenizer_vocab_size, len(saved)),
            ("--tokenizer_type", data_args.tokenizer_type, saved_type),
        )
        if ours != theirs
    ]
    if differing:
        raise ValueError(
            f"A resumed run keeps the tokenizer of --resume_from_checkpoint {checkpoint}, which this run's flags do "
            f"not describe: {'; '.join(differing)}. Resume with the checkpoint's values, or start a new run in "
            "another --output_dir."
        )
    return saved


def build_config(model_args: ModelArguments, supermask_args: SupermaskArguments, tokenizer) -> SupermaskConfig:
    """The supermask config of a fresh model: defaults or --config_name, then --config_overrides, then mask flags,
    with the vocabulary and special ids taken from the tokenizer (opus-mt convention)."""
    if model_args.config_name:
        config = AutoConfig.from_pretrained(model_args.config_name, cache_dir=model_args.cache_dir)
        if not isinstance(config, SupermaskConfig):
            config = SupermaskConfig(
                **{k: v for k, v in config.to_dict().items() if k in SupermaskConfig.__dataclass_fields__}
            )
    else:
        config = SupermaskConfig()
    if model_args.config_overrides:
        config.update_from_string(model_args.config_overrides)
    for key, value in supermask_args.config_updates().items():
        setattr(config, key, value)
    config.vocab_size = len(tokenizer)
    config.pad_token_id = config.decoder_start_token_id = tokenizer.pad_token_id
    config.eos_token_id = config.forced_eos_token_id = tokenizer.eos_token_id
    if tokenizer.pad_token_id != len(tokenizer) - 1:
        raise ValueError(
            f"The tokenizer's <pad> has id {tokenizer.pad_token_id}, but the opus-mt convention (which exported models "
            f"and CTranslate2 rely on) puts it last ({len(tokenizer) - 1}). Train a tokenizer with "
            "hf_supermask.tokenization.train_tokenizer or omit --tokenizer_name."
        )
    if tokenizer.model_max_length > config.max_position_embeddings:
        tokenizer.model_max_length = config.max_position_embeddings
    config.check_supermask_fields()
    return config


def build_model(model_args: ModelArguments, config: SupermaskConfig | None):
    """A fresh or loaded supermask model, or a dense Marian of the same shape."""
    if model_args.model_name_or_path:
        return AutoModelForSeq2SeqLM.from_pretrained(
            model_args.model_name_or_path,
            cache_dir=model_args.cache_dir,
            trust_remote_code=model_args.trust_remote_code,
        )
    if model_args.model_type == "marian":
        model = MarianMTModel(marian_config_for(config))
        model.generation_config.bad_words_ids = [[config.pad_token_id]]
        return model
    return SupermaskForConditionalGeneration(config)


def load_or_build_model(model_args, data_args, supermask_args, training_args, tokenizer):
    """The model to train or score, set up to generate as the run reports (beams, length), and checked against the
    checkpoint it resumes from."""
    config = None if model_args.model_name_or_path else build_config(model_args, supermask_args, tokenizer)
    model = build_model(model_args, config)
    if isinstance(model.config, SupermaskConfig):
        # The checkpoint's direction and the tokenizer its masks are found with are part of what it records.
        model.config.source_lang, model.config.target_lang = data_args.source_lang, data_args.target_lang
        model.record_tokenizer(tokenizer)
    if training_args.resume_from_checkpoint is not None:
        check_resume_config(training_args.resume_from_checkpoint, model.config)
    if data_args.num_beams is not None:
        model.generation_config.num_beams = data_args.num_beams
    # Never longer than the position table: the saved length must be one the model can generate.
    model.generation_config.max_length = min(data_args.max_target_length, model.config.max_position_embeddings)
    return model


def prepare_supermask_for_distributed(model, training_args) -> None:
    """Every process regenerates the same random weights from the seed: they need no broadcasting, only a check."""
    # Only the main process's checkpoints matter: broadcasting the (large, frozen) random-weight buffers every step
    # would be pure overhead.
    if training_args.ddp_broadcast_buffers is None:
        training_args.ddp_broadcast_buffers = False
    if training_args.ddp_find_unused_parameters is None:
        training_args.ddp_find_unused_parameters = False  # every score is used in every forward
    logger.info(
        "Supermask: %d maskable weights, %d trainable scores, weights sha256 %s",
        model.num_maskable_weights(),
        sum(p.numel() for p in model.parameters() if p.requires_grad),
        model.random_weights.fingerprint,
    )


def check_same_weights_on_all_ranks(model) -> None:
    """Every process regenerates the random weights from the seed instead of receiving them: make sure they agree."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return
    fingerprints = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(fingerprints, model.random_weights.fingerprint)
    if len(set(fingerprints)) != 1:
        raise RuntimeError(
            f"The processes regenerated different random weights (sha256 per rank: {fingerprints}). Every rank must "
            "run the same hf_supermask version with the same config (seed, weight_init, shape)."
        )
    logger.info("All %d processes hold the same random weights (sha256 %s).", len(fingerprints), fingerprints[0])


def tokenize(raw, tokenizer, data_args: DataTrainingArguments, training_args) -> dict[str, datasets.Dataset]:
    preprocess = make_preprocess_function(
        tokenizer,
        data_args.source_lang,
        data_args.target_lang,
        data_args.max_source_length,
        data_args.max_target_length,
        data_args.source_prefix,
    )
    with training_args.main_process_first(desc="tokenizing"):
        tokenized = {
            split: dataset.map(
                preprocess,
                batched=True,
                num_proc=data_args.preprocessing_num_workers,
                remove_columns=dataset.column_names,
                desc=f"Tokenizing {split}",
            )
            for split, dataset in raw.items()
        }
    if data_args.length_bucketed_batches and "train" in tokenized:
        # The order is fixed here, for every epoch the run needs, and the Trainer reads it sequentially (a resumed run
        # skips what it already saw, as with any sampler); each global batch is a run of consecutive examples.
        # (An epoch-based run repeats one epoch's order.)
        global_batch = training_args.per_device_train_batch_size * training_args.world_size
        examples = len(tokenized["train"])
        if training_args.max_steps > 0:
            examples = training_args.max_steps * training_args.gradient_accumulation_steps * global_batch
        train = tokenized["train"]
        lengths = [len(s) + len(t) for s, t in zip(train["input_ids"], train["labels"])]
        order = length_bucketed_order(lengths, global_batch, examples, training_args.seed)
        tokenized["train"] = tokenized["train"].select(order)
        training_args.train_sampling_strategy = "sequential"
    return tokenized


def token_budget_batches(tokenized, data_args: DataTrainingArguments, training_args) -> TokenBudgetBatchSampler | None:
    """The training batches of `--max_tokens_per_batch` (None: the Trainer's own sampler)."""
    if data_args.max_tokens_per_batch is None or "train" not in tokenized or not training_args.do_train:
        return None
    train = tokenized["train"]
    return TokenBudgetBatchSampler(
        [len(ids) for ids in train["input_ids"]],
        [len(ids) for ids in train["labels"]],
        data_args.max_tokens_per_batch,
        training_args.seed,
    )


def build_optimizer(model, training_args: Seq2SeqTrainingArguments, supermask_args: SupermaskArguments):
    """The Trainer's optimizer class and settings, with the scores in their own parameter group when asked to."""
    if supermask_args.score_learning_rate is None and supermask_args.score_weight_decay is None:
        return None  # the Trainer's own optimizer
    optimizer_cls, optimizer_kwargs = Seq2SeqTrainer.get_optimizer_cls_and_kwargs(training_args, model)
    scores = [p for n, p in model.named_parameters() if p.requires_grad and n.endswith(".scores")]
    others = [p for n, p in model.named_parameters() if p.requires_grad and not n.endswith(".scores")]
    groups = [
        {
            "params": scores,
            "lr": supermask_args.score_lr(training_args.learning_rate),
            "weight_decay": training_args.weight_decay
            if supermask_args.score_weight_decay is None
            else supermask_args.score_weight_decay,
        }
    ]
    if others:
        groups.append({"params": others, "lr": training_args.learning_rate, "weight_decay": training_args.weight_decay})
    return optimizer_cls(groups, **{k: v for k, v in optimizer_kwargs.items() if k != "lr"})


class TokenLoss:
    """The Trainer's `compute_loss_func`, one loss for both model types: token cross-entropy over the whole
    (accumulated, all-process) batch.

    `label_smoothing` (`--label_smoothing_factor`) applies to the training objective only (grad enabled): evaluation
    reports the plain negative log-likelihood, so that runs with and without smoothing compare. Training target tokens
    are counted, for throughput figures.
    """

    def __init__(self, label_smoothing: float = 0.0):
        self.label_smoothing = label_smoothing
        self.train_target_tokens = 0

    def __call__(self, outputs, labels, num_items_in_batch=None):
        from .modeling.transformers_compat import fixed_cross_entropy

        training = torch.is_grad_enabled()
        if training:
            self.train_target_tokens += int((labels != -100).sum())
        logits = outputs["logits"]
        flat_logits, flat_labels = logits.float().view(-1, logits.size(-1)), labels.to(logits.device).view(-1)
        if not (training and self.label_smoothing):
            return fixed_cross_entropy(flat_logits, flat_labels, num_items_in_batch)
        loss = nn.functional.cross_entropy(
            flat_logits, flat_labels, ignore_index=-100, reduction="sum", label_smoothing=self.label_smoothing
        )
        count = num_items_in_batch if num_items_in_batch is not None else (flat_labels != -100).sum()
        return loss / (count.to(loss.device) if torch.is_tensor(count) else count)


def build_trainer(
    model,
    tokenizer,
    training_args: Seq2SeqTrainingArguments,
    *,
    train_dataset=None,
    eval_dataset=None,
    loss: TokenLoss | None = None,
    compute_metrics=None,
    optimizer=None,
    callbacks: list[TrainerCallback] | tuple = (),
    train_batch_sampler: torch.utils.data.Sampler | None = None,
) -> Seq2SeqTrainer:
    """The `Seq2SeqTrainer` both model types train with: one token-level loss (`TokenLoss` with
    --label_smoothing_factor unless given), batches padded dynamically with label padding masked out."""
    if not isinstance(model, SupermaskForConditionalGeneration):
        model.accepts_loss_kwargs = False  # the loss receives num_items_in_batch instead
    return TranslationTrainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        data_collator=DataCollatorForSeq2Seq(tokenizer, model=model, label_pad_token_id=-100),
        compute_metrics=compute_metrics,
        compute_loss_func=loss if loss is not None else TokenLoss(training_args.label_smoothing_factor),
        optimizers=(optimizer, None),
        callbacks=list(callbacks),
        train_batch_sampler=train_batch_sampler,
    )


def train(trainer: Seq2SeqTrainer, training_args, loss: TokenLoss, timer: StepTimer) -> dict[str, Any]:
    """Train (resuming when asked to); returns the training metrics and throughput."""
    model = trainer.model
    if isinstance(model, SupermaskForConditionalGeneration):
        model.save_scores = True  # intermediate checkpoints keep what resuming needs
    train_result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    if isinstance(model, SupermaskForConditionalGeneration):
        model.save_scores = False  # the published folder is mask-only
    results = dict(train_result.metrics)
    results["train_wall_seconds"] = train_result.metrics.get("train_runtime")
    if timer.step_seconds:
        # Of this process's run (a resumed run counts from where it resumed).
        results["train_step_seconds"] = sum(timer.step_seconds)
        results["train_target_tokens_per_second"] = loss.train_target_tokens / results["train_step_seconds"]
    return results


def evaluate_and_predict(trainer: Seq2SeqTrainer, training_args, tokenized, compute_metrics) -> dict[str, Any]:
    """Validation and test scores, as asked for (the splits were checked before training)."""
    results: dict[str, Any] = {}
    if training_args.do_eval:
        results.update(trainer.evaluate(metric_key_prefix="eval"))
    if training_args.do_predict:
        results.update(trainer.predict(tokenized["test"], metric_key_prefix="test").metrics)
        if compute_metrics is not None:
            results["test_bleu_signature"] = compute_metrics.last_result.get("bleu_signature")
            results["test_chrf_signature"] = compute_metrics.last_result.get("chrf_signature")
    return results


def dense_fp32_weights_bytes(model) -> int:
    """Bytes of the weights file of the dense fp32 MarianMTModel of the same shape (measured by saving it)."""
    dense = model.export_dense() if isinstance(model, SupermaskForConditionalGeneration) else model
    with tempfile.TemporaryDirectory() as tmp:
        dense.save_pretrained(tmp)
        return folder_bytes(tmp, "*.safetensors")


def size_results(model, output_dir: Path) -> dict[str, Any]:
    """Bytes of the saved folder and of its weights, against the dense fp32 model of the same shape."""
    results = {
        "checkpoint_weights_bytes": folder_bytes(output_dir, "*.safetensors"),
        "checkpoint_folder_bytes": folder_bytes(output_dir),
        "dense_fp32_weights_bytes": dense_fp32_weights_bytes(model),
    }
    if isinstance(model, SupermaskForConditionalGeneration):
        results["bits_per_maskable_weight"] = 8 * results["checkpoint_weights_bytes"] / model.num_maskable_weights()
    return results


def run_translation(
    model_args: ModelArguments,
    data_args: DataTrainingArguments,
    supermask_args: SupermaskArguments,
    training_args: Seq2SeqTrainingArguments,
    callbacks: list[TrainerCallback] | None = None,
) -> dict[str, Any]:
    """Train, select on validation, report on test, and write the output folder. Returns the metrics.

    `callbacks` are added to the Trainer's (e.g. early stopping, or an interruption in tests).
    """
    transformers.set_seed(training_args.seed)
    must_empty_output_dir = check_run(model_args, data_args, supermask_args, training_args)
    raw = load_data(model_args, data_args, training_args)
    tokenizer = load_tokenizer(model_args, data_args, training_args, raw)
    model = load_or_build_model(model_args, data_args, supermask_args, training_args, tokenizer)
    is_supermask = isinstance(model, SupermaskForConditionalGeneration)
    if is_supermask:
        prepare_supermask_for_distributed(model, training_args)
    tokenized = tokenize(raw, tokenizer, data_args, training_args)
    train_batch_sampler = token_budget_batches(tokenized, data_args, training_args)
    if must_empty_output_dir:
        # --overwrite_output_dir: only now that the arguments, the data, the tokenizer and the model (against the
        # checkpoint it resumes from) have passed every check. The other processes wait for the main one.
        with training_args.main_process_first(desc="emptying the output folder"):
            if training_args.process_index == 0:
                empty_folder(training_args.output_dir)

    # The Trainer would push intermediate checkpoints (with scores) and its own model card: the published repo is
    # the mask-only output folder with our card, uploaded once at the end.
    push_to_hub, training_args.push_to_hub = training_args.push_to_hub, False
    loss, timer = TokenLoss(training_args.label_smoothing_factor), StepTimer()
    compute_metrics = make_compute_metrics(tokenizer) if training_args.predict_with_generate else None
    patience = getattr(training_args, "early_stopping_patience", None)
    early_stopping = [EarlyStoppingCallback(patience)] if patience else []
    trainer = build_trainer(
        model,
        tokenizer,
        training_args,
        train_dataset=tokenized.get("train") if training_args.do_train else None,
        eval_dataset=tokenized.get("validation"),
        loss=loss,
        compute_metrics=compute_metrics,
        optimizer=build_optimizer(model, training_args, supermask_args),
        callbacks=[timer, SupermaskTrainingCallback(loss), *early_stopping, *(callbacks or [])],
        train_batch_sampler=train_batch_sampler,
    )
    if is_supermask:
        check_same_weights_on_all_ranks(model)

    results: dict[str, Any] = {"model_type": model.config.model_type}
    if training_args.do_train:
        results.update(train(trainer, training_args, loss, timer))
    model = trainer.model
    output_dir = Path(training_args.output_dir)
    if trainer.is_world_process_zero():
        output_dir.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(output_dir)
        tokenizer.save_pretrained(output_dir)
    results.update(evaluate_and_predict(trainer, training_args, tokenized, compute_metrics))
    if trainer.is_world_process_zero():
        results.update(size_results(model, output_dir))
        _write_outputs(trainer, model, tokenizer, results, data_args, supermask_args, training_args)
        results["examples"] = translate_examples(output_dir, raw.get("test"), data_args)
        if push_to_hub:
            results["hub_commit"] = push_output_folder(output_dir, training_args)
    return results


def push_output_folder(output_dir: Path, training_args: Seq2SeqTrainingArguments) -> str:
    """Upload the published folder (not the checkpoints) to `--hub_model_id`; returns the commit sha to pin."""
    from huggingface_hub import HfApi

    api = HfApi(token=training_args.hub_token)
    repo_id = training_args.hub_model_id or output_dir.name
    api.create_repo(repo_id, private=training_args.hub_private_repo, exist_ok=True)
    commit = api.upload_folder(
        repo_id=repo_id,
        folder_path=output_dir,
        ignore_patterns=["checkpoint-*", "checkpoint-*/**", "*.bin", "log_history.json"],
        commit_message="Upload supermask checkpoint (masks only)",
    )
    logger.info("Pushed %s to %s at commit %s", output_dir, repo_id, commit.oid)
    return commit.oid


def translate_examples(output_dir, test_split, data_args: DataTrainingArguments) -> list[dict[str, str]]:
    """A few test sentences translated through `pipeline("translation")` from the saved folder."""
    if test_split is None or data_args.num_examples <= 0 or len(test_split) == 0:
        return []
    from transformers import pipeline

    rows = test_split.select(range(min(data_args.num_examples, len(test_split))))["translation"]
    translator = pipeline("translation", model=str(output_dir), device="cpu")
    sources = [row[data_args.source_lang] for row in rows]
    outputs = translator(sources, batch_size=len(sources))
    return [
        {
            "source": row[data_args.source_lang],
            "reference": row[data_args.target_lang],
            "translation": out["translation_text"],
        }
        for row, out in zip(rows, outputs)
    ]


def _write_outputs(trainer, model, tokenizer, results, data_args, supermask_args, training_args) -> None:
    from .model_card import architecture_summary, build_model_card, save_model_card
    from .plotting import plot_training_curves

    output_dir = Path(training_args.output_dir)
    plot = plot_training_curves(trainer.state.log_history, output_dir / "training_curves.png", x="step")
    with open(output_dir / "all_results.json", "w") as handle:
        json.dump({k: v for k, v in results.items() if k != "examples"}, handle, indent=2, sort_keys=True)
    with open(output_dir / "log_history.json", "w") as handle:
        json.dump(trainer.state.log_history, handle, indent=1)
    if not isinstance(model, SupermaskForConditionalGeneration):
        return  # the dense baseline gets no supermask model card
    hyperparameters = {
        "learning_rate": training_args.learning_rate,
        "score_learning_rate": supermask_args.score_lr(training_args.learning_rate),
        "per_device_train_batch_size": training_args.per_device_train_batch_size,
        "gradient_accumulation_steps": training_args.gradient_accumulation_steps,
        "max_steps": trainer.state.max_steps,
        "epochs": round(trainer.state.epoch or 0.0, 3),
        "optimizer": str(training_args.optim),
        "seed": training_args.seed,
        "tokenizer": f"{data_args.tokenizer_type} {len(tokenizer)}",
    }
    card = build_model_card(
        model_name=output_dir.name,
        output_dir_or_repo_id=training_args.hub_model_id or output_dir.name,
        source_lang=data_args.source_lang,
        target_lang=data_args.target_lang,
        test_bleu=results.get("test_bleu"),
        test_chrf=results.get("test_chrf"),
        bleu_signature=results.get("test_bleu_signature"),
        chrf_signature=results.get("test_chrf_signature"),
        hyperparameters=hyperparameters,
        checkpoint_bytes=results.get("checkpoint_weights_bytes"),
        dense_fp32_bytes=results.get("dense_fp32_weights_bytes"),
        plot_filename=Path(plot).name,
        base_config=architecture_summary(model.config),
        bits_per_weight=results.get("bits_per_maskable_weight"),
    )
    save_model_card(card, output_dir)


def format_summary(results: dict[str, Any]) -> str:
    """A short human summary of a run, for the end of the demo."""
    lines = ["", "=" * 72, f"Model type: {results.get('model_type')}"]
    if "test_bleu" in results:
        lines.append(
            f"Test BLEU {results['test_bleu']:.2f}  chrF {results.get('test_chrf', float('nan')):.2f}"
            f"  ({results.get('test_bleu_signature', '')})"
        )
    if "checkpoint_weights_bytes" in results:
        ours, dense = results["checkpoint_weights_bytes"], results["dense_fp32_weights_bytes"]
        lines.append(
            f"Weights file: {ours / 1024:.1f} KiB  vs dense fp32 of the same shape: {dense / 1024:.1f} KiB "
            f"({dense / ours:.1f}x smaller)"
        )
        if "bits_per_maskable_weight" in results:
            lines.append(f"Bits per maskable weight: {results['bits_per_maskable_weight']:.3f}")
        lines.append(f"Whole output folder: {results['checkpoint_folder_bytes'] / 1024:.1f} KiB")
    if results.get("train_wall_seconds"):
        lines.append(f"Training wall time: {results['train_wall_seconds'] / 60:.1f} min")
    for example in results.get("examples", []):
        lines += [
            "",
            f"  source:      {example['source']}",
            f"  reference:   {example['reference']}",
            f"  translation: {example['translation']}",
        ]
    lines.append("=" * 72)
    return "\n".join(lines)


# What `--help` shows, in this order, with the value each takes ("" for a switch): what most runs set. `--help-all`
# lists every flag.
ESSENTIAL_FLAGS = {
    "output_dir": "DIR",
    "do_train": "",
    "do_eval": "",
    "do_predict": "",
    "predict_with_generate": "",
    "data_dir": "DIR",
    "train_file": "FILE",
    "validation_file": "FILE",
    "test_file": "FILE",
    "source_lang": "LANG",
    "target_lang": "LANG",
    "max_train_samples": "N",
    "model_type": "TYPE",
    "config_overrides": "K=V,...",
    "density": "FRACTION",
    "tokenizer_vocab_size": "N",
    "tokenizer_name": "PATH",
    "max_steps": "N",
    "num_train_epochs": "N",
    "per_device_train_batch_size": "N",
    "learning_rate": "LR",
    "eval_strategy": "{no,steps,epoch}",
    "eval_steps": "N",
    "save_steps": "N",
    "num_beams": "N",
    "resume_from_checkpoint": "DIR",
    "overwrite_output_dir": "",
    "push_to_hub": "",
    "hub_model_id": "USER/NAME",
}


def short_help(parser) -> str:
    """The help of `ESSENTIAL_FLAGS` only (one line each: the first sentence of the full help, and the default), and
    where to find the rest."""
    import textwrap

    actions = {action.dest: action for action in parser._actions}
    lines = [
        f"usage: {parser.prog} [ARGUMENTS.json] --output_dir DIR --do_train [--do_eval] [--do_predict] [flags]",
        "",
        "Train translation supermasks (flags as in transformers' run_translation.py). A JSON file of arguments may "
        "come first; flags after it override its values.",
        "",
        "The flags most runs need:",
    ]
    for dest, value in ESSENTIAL_FLAGS.items():
        action = actions[dest]
        flag = f"{action.option_strings[0]} {value}".strip()
        text = re.split(r"(?<!e\.g)\. ", action.help or "")[0].rstrip(".")
        if action.default not in (None, False, ""):
            text += f" (default: {action.default})"
        lines.append(textwrap.fill(text, width=120, initial_indent=f"  {flag:<32} ", subsequent_indent=" " * 35))
    lines += ["", f"Every flag ({len(actions) - 1}): {parser.prog} --help-all"]
    return "\n".join(lines) + "\n"


def _arguments_file(path: str) -> dict[str, Any]:
    """The arguments of a JSON file: one object of argument names and values."""
    from .files import parse_json, read_lines

    example = '{"output_dir": "outputs/en-de", "do_train": true}'
    try:
        text = "\n".join(read_lines(path))
    except OSError as error:
        reason = error.strerror or error
        raise FileNotFoundError(f"The arguments file {path} cannot be read ({reason}). Check its path.") from None
    hint = f"Fix the file: it holds one JSON object of argument names and values, e.g. {example}."
    values = parse_json(text, path, hint)
    if not isinstance(values, dict):
        raise ValueError(
            f"{path} holds a JSON {type(values).__name__}, not an object of argument names and values, e.g. {example}."
        )
    return values


def parse_args(args: list[str] | None = None, prog: str | None = None):
    """Parse flags into the four argument dataclasses, like run_translation.py.

    The first argument may be a JSON file of arguments; flags after it override its values
    (`train_translation.py scripts/supermask_en_de.json --max_steps 20`). `--help` prints the flags most runs need
    (`ESSENTIAL_FLAGS`) and exits, `--help-all` every flag; `prog` is the command named in them.
    """
    import sys

    from transformers import HfArgumentParser

    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available():
        # Launched by torchrun on a machine without GPUs: transformers only sets up CPU (gloo) DDP when told to use the
        # CPU; otherwise every process would silently train its own model.
        os.environ.setdefault("ACCELERATE_USE_CPU", "true")
    parser = HfArgumentParser(
        (ModelArguments, DataTrainingArguments, SupermaskArguments, TranslationTrainingArguments),
        prog=prog or os.path.basename(sys.argv[0]),
    )
    args = list(sys.argv[1:] if args is None else args)
    if "--help-all" in args:
        parser.print_help()
        raise SystemExit(0)
    if "-h" in args or "--help" in args:
        print(short_help(parser), end="")
        raise SystemExit(0)
    if args and args[0].endswith(".json"):
        # The file's values become the parser's defaults, so that the flags after it override them.
        from_file = _arguments_file(args[0])
        known = {f.name for dataclass_type in parser.dataclass_types for f in fields(dataclass_type)}
        if unknown := sorted(set(from_file) - known):
            raise ValueError(f"{args[0]} has keys that are no arguments of the training script: {unknown}.")
        parser.set_defaults(**from_file)
        args = args[1:]
    *parsed, unknown = parser.parse_args_into_dataclasses(args=args, return_remaining_strings=True)
    if unknown:
        import difflib

        known = [option for action in parser._actions for option in action.option_strings]
        guesses = [
            f"{match[0]} for {flag}"
            for flag in unknown
            if flag.startswith("--") and (match := difflib.get_close_matches(flag.split("=")[0], known, n=1))
        ]
        raise ValueError(
            f"Unknown arguments: {' '.join(unknown)}"
            + (f" (did you mean {', '.join(guesses)}?)" if guesses else "")
            + f". `{parser.prog} --help-all` lists every flag."
        )
    return tuple(parsed)


def main(args: list[str] | None = None, prog: str | None = None) -> dict[str, Any]:
    """The training script: parse `args` (see `parse_args`), train, print a summary; returns the metrics."""
    model_args, data_args, supermask_args, training_args = parse_args(args, prog=prog)
    logging.basicConfig(
        format="%(asctime)s - %(levelname)s - %(name)s - %(message)s",
        level=logging.INFO if training_args.should_log else logging.WARNING,
    )
    results = run_translation(model_args, data_args, supermask_args, training_args)
    if training_args.should_log:
        print(format_summary(results))
    return results


__all__ = [
    "DataTrainingArguments",
    "ModelArguments",
    "SupermaskArguments",
    "StepTimer",
    "SupermaskTrainingCallback",
    "TokenLoss",
    "TranslationTrainingArguments",
    "build_config",
    "build_model",
    "build_optimizer",
    "build_trainer",
    "check_checkpoint",
    "check_resume_config",
    "check_run",
    "check_same_weights_on_all_ranks",
    "format_summary",
    "main",
    "parse_args",
    "resumed_tokenizer",
    "run_translation",
    "short_help",
]
