# Copyright 2026 The hf_supermask Authors. Licensed under the Apache License, Version 2.0.
"""The BLEU study: dense Marian vs supermask variants on Multi30k en->de, one shape and one budget for every row.

Two kinds of runs, both resumable:

* **rows** (`--rows`): a full training run per row, then decoding chosen on validation and test_2016_flickr scored.
  A finished row writes `<results_dir>/<row>.json` (metrics, curve, timing, git commit, full recipe), which later
  runs skip; an interrupted row resumes from its last Trainer checkpoint (saved at every evaluation).
* **lever probes** (`--levers`): short runs of a row with one change to its recipe each (plus the unchanged
  recipe), compared on validation; written to `<results_dir>/levers/<row>.json` and listed in the report.

A recipe is a list of `key=value` settings: keys that are `SupermaskConfig` fields become config overrides (and are
ignored by the dense row's MarianConfig when they are supermask-only), all others are training flags
(`label_smoothing_factor=0.1,max_grad_norm=0.5,lr_scheduler_type=inverse_sqrt,output_scale=4`).

The table (`results.md`) and the chart (`bleu_curves.png`) are rebuilt from whatever rows exist. Checkpoints go to
`<output_dir>` (keep it out of git; the fixed-embedding row reads the dense row's folder from there).
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from experiments.measure import git_commit
from hf_supermask.training import parse_args, run_translation


logger = logging.getLogger(__name__)


@dataclass
class StudyArguments:
    output_dir: str = field(default="outputs/bleu_study", metadata={"help": "Checkpoints (not committed)."})
    results_dir: str = field(default="benchmarks/bleu_study", metadata={"help": "Row JSONs, table, chart (committed)."})
    rows: str = field(default="dense,supermask,supermask_fixed_embedding", metadata={"help": "Comma-separated rows."})
    data_dir: str | None = field(default=None, metadata={"help": "Folder of split.lang files (default: Multi30k)."})
    source_lang: str = field(default="en", metadata={"help": "Source language id (Multi30k: en, de, fr, cs)."})
    target_lang: str = field(default="de", metadata={"help": "Target language id."})
    tokenizer_languages: str = field(
        default="",
        metadata={
            "help": "Languages the joint tokenizer is trained on, comma-separated (default: source and target). "
            "Directions that are to share one random embedding need one tokenizer, e.g. 'en,de,fr,cs'."
        },
    )
    tokenizer_dir: str | None = field(
        default=None,
        metadata={
            "help": "Where the joint tokenizer is kept (default: <output_dir>/tokenizer); trained "
            "there on the first run, reused after."
        },
    )
    shape: str = field(
        default="d_model=256,encoder_layers=3,decoder_layers=3,encoder_ffn_dim=1024,decoder_ffn_dim=1024,"
        "encoder_attention_heads=4,decoder_attention_heads=4,max_position_embeddings=256",
        metadata={"help": "Config overrides shared by every row."},
    )
    max_steps: int = field(default=1500, metadata={"help": "Updates per row (the same budget for every row)."})
    batch_size: int = field(default=64, metadata={"help": "Sentence pairs per update."})
    eval_steps: int = field(default=250, metadata={"help": "Validation BLEU every N updates (the curve)."})
    plateau_patience: int = field(
        default=0,
        metadata={
            "help": "Stop a row when validation BLEU has not improved over this many evaluations, and keep its "
            "best checkpoint (0: run the whole --max_steps budget). The row records `stopped_by`."
        },
    )
    max_eval_samples: int = field(default=300, metadata={"help": "Validation pairs for the curve (greedy)."})
    max_predict_samples: int | None = field(default=None, metadata={"help": "Test pairs (default: all 1000)."})
    num_beams: int = field(default=5, metadata={"help": "Beams for the reported test scores."})
    vocab_size: int = field(default=8000, metadata={"help": "Joint BPE vocabulary, shared by every row."})
    threads: int = field(default=1, metadata={"help": "torch threads (run two rows side by side with 1 each)."})
    lr_candidates: str = field(
        default="",
        metadata={
            "help": "Per-row learning rates to probe on validation, e.g. 'dense=5e-4,1e-3;supermask=5e-4,1e-3' "
            "(a single rate is used without a probe); rows not named use their default."
        },
    )
    probe_steps: int = field(default=200, metadata={"help": "Updates per learning-rate or lever probe."})
    decoding_candidates: str = field(
        default="no_repeat_ngram_size=0,3;length_penalty=1.0,1.5",
        metadata={
            "help": "Decoding settings tried on validation for every row alike (the grid of all "
            "combinations, beam `num_beams`); the best validation BLEU decodes the test set and is saved in "
            "the row's generation_config.json. Empty: the model's defaults."
        },
    )
    recipe: str = field(
        default="",
        metadata={
            "help": "Settings added to every row's recipe, `key=value,...` (config fields or training flags), "
            "e.g. 'label_smoothing_factor=0.1,max_grad_norm=0.5'."
        },
    )
    row_recipes: str = field(
        default="",
        metadata={
            "help": "Per-row settings on top of --recipe, `row:key=value,...;row:...`, e.g. "
            "'supermask:output_scale=4;dense:adam_beta2=0.98'."
        },
    )
    levers: str = field(
        default="",
        metadata={
            "help": "Probe these changes instead of running full rows: `name:key=value,...;name:...`. Each "
            "is run for --probe_steps updates on every row of --rows, next to the unchanged recipe "
            "('baseline'), and compared on validation. `learning_rate=...` is a lever too (the probe's rate)."
        },
    )
    smoke: bool = field(default=False, metadata={"help": "Tiny shape, a few steps: checks the pipeline only."})


# Each row: model type, recipe (`key=value,...` on top of the defaults: `SupermaskConfig`'s and the training
# script's, which are the recipe the study chose on validation), default learning rate (Adam; the rates the first
# study's probes chose on validation: edge-popup scores prefer larger rates than dense weights here, but churn the
# whole mask within a few steps beyond 4e-3). Rows name the settings that set them apart, so that they keep their
# meaning when the defaults move.
ROWS: dict[str, dict[str, Any]] = {
    "dense": {"model_type": "marian", "recipe": "", "learning_rate": 1e-3},
    "supermask": {
        "model_type": "supermask",
        "recipe": "share_layers=True,weight_init=kaiming_uniform",
        "learning_rate": 2e-3,
    },
    "supermask_fixed_embedding": {
        "model_type": "supermask",
        "recipe": "share_layers=True,weight_init=kaiming_uniform",
        "learning_rate": 2e-3,
        "embedding_from": "dense",
    },
    "supermask_wide": {  # the paper's width (d_model 512), still one random layer per stack
        "model_type": "supermask",
        "recipe": "share_layers=True,weight_init=signed_constant,d_model=512,encoder_ffn_dim=2048,decoder_ffn_dim=2048,"
        "encoder_attention_heads=8,decoder_attention_heads=8",
        "learning_rate": 2e-3,
    },
    "supermask_unshared": {
        "model_type": "supermask",
        "recipe": "share_layers=False,weight_init=kaiming_uniform",
        "learning_rate": 2e-3,
    },
    "supermask_signed_constant": {
        "model_type": "supermask",
        "recipe": "share_layers=True,weight_init=signed_constant",
        "learning_rate": 2e-3,
    },
}


def parse_settings(text: str) -> dict[str, str]:
    """`"a=1,b=x"` -> `{"a": "1", "b": "x"}` (later keys win)."""
    settings = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, _, value = item.partition("=")
        if not _:
            raise ValueError(f"Recipe setting {item!r} is not of the form key=value.")
        settings[key.strip()] = value.strip()
    return settings


def parse_named(text: str) -> dict[str, str]:
    """`"a:x=1,y=2;b:z=3"` -> `{"a": "x=1,y=2", "b": "z=3"}` (per-row recipes, levers)."""
    named = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        name, _, settings = part.partition(":")
        if not _:
            raise ValueError(f"{part!r} is not of the form name:key=value,...")
        named[name.strip()] = settings.strip()
    return named


def row_recipe(study: StudyArguments, row: str, lever: str = "") -> dict[str, str]:
    """The row's full recipe: shape, row spec, --recipe, --row_recipes, then the lever being probed."""
    parts = [
        study.shape,
        ROWS[row]["recipe"],
        study.recipe,
        parse_named(study.row_recipes).get(row, ""),
        lever,
    ]
    recipe = {}
    for part in parts:
        recipe.update(parse_settings(part))
    return recipe


def _recipe_flags(recipe: dict[str, str]) -> list[str]:
    from hf_supermask.modeling import SupermaskConfig

    config_fields = set(SupermaskConfig.__dataclass_fields__)
    overrides = ",".join(f"{k}={v}" for k, v in recipe.items() if k in config_fields)
    flags = ["--config_overrides", overrides] if overrides else []
    for key, value in recipe.items():
        if key not in config_fields:
            flags += [f"--{key}", value]
    return flags


def machine_record(threads: int) -> dict[str, Any]:
    """What a row ran on. float32 training follows the CPU's kernels, so the same code and seed give other
    trajectories on another CPU (about a BLEU point after 1500 updates): ratios are stated within one machine."""
    import platform

    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            cpu = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {"cpu": cpu, "cpu_count": os.cpu_count(), "torch": torch.__version__, "threads": threads}


def same_machine(row: dict[str, Any], other: dict[str, Any]) -> bool | None:
    """Whether two finished rows ran on the same kind of machine (None: one of them predates the record)."""
    if "machine" not in row or "machine" not in other:
        return None
    keys = ("cpu", "cpu_count", "torch")
    return all(row["machine"].get(k) == other["machine"].get(k) for k in keys)


def _last_checkpoint(output_dir: Path) -> str | None:
    from transformers.trainer_utils import get_last_checkpoint

    return get_last_checkpoint(str(output_dir)) if output_dir.is_dir() else None


def _row_flags(
    study: StudyArguments,
    row: str,
    output_dir: Path,
    tokenizer_dir: Path,
    learning_rate: float,
    max_steps: int,
    lever: str = "",
) -> list[str]:
    """Training-script flags of a row (or of a probe of it); the run saves a checkpoint at every evaluation and
    resumes from the last one when restarted."""
    spec = ROWS[row]
    flags = [
        "--output_dir",
        str(output_dir),
        "--model_type",
        spec["model_type"],
        "--tokenizer_name",
        str(tokenizer_dir),
        "--source_lang",
        study.source_lang,
        "--target_lang",
        study.target_lang,
        "--max_steps",
        str(max_steps),
        "--per_device_train_batch_size",
        str(study.batch_size),
        "--per_device_eval_batch_size",
        "64",
        "--learning_rate",
        str(learning_rate),
        "--warmup_steps",
        str(min(100, max_steps // 10)),
        "--do_train",
        "--do_eval",
        "--predict_with_generate",
        "--eval_strategy",
        "steps",
        "--eval_steps",
        str(min(study.eval_steps, max_steps)),
        "--save_strategy",
        "steps",
        "--save_steps",
        str(min(study.eval_steps, max_steps)),
        "--save_total_limit",
        "1",
        "--logging_steps",
        str(max(1, study.eval_steps // 5)),
        "--max_eval_samples",
        str(study.max_eval_samples),
        "--max_source_length",
        "64",
        "--max_target_length",
        "64",
        "--seed",
        "42",
        "--report_to",
        "none",
        "--disable_tqdm",
        "true",
        "--num_examples",
        "0",
        "--num_beams",
        "1",
    ]
    flags += _recipe_flags(row_recipe(study, row, lever))
    if study.data_dir:
        flags += ["--data_dir", study.data_dir]
    if "embedding_from" in spec:
        source = Path(study.output_dir) / spec["embedding_from"]
        if not (source / "model.safetensors").exists():
            raise FileNotFoundError(
                f"Row {row!r} takes its fixed embedding from row {spec['embedding_from']!r}, whose checkpoint is "
                "not in "
                f"{source}. Run that row first (in the same --output_dir)."
            )
        flags += ["--embedding_source", str(source.resolve())]
    if (checkpoint := _last_checkpoint(output_dir)) is not None:
        logger.info("Resuming %s from %s", output_dir, checkpoint)
        flags += ["--resume_from_checkpoint", checkpoint]
    elif output_dir.is_dir() and any(output_dir.iterdir()):
        flags.append("--overwrite_output_dir")  # a run stopped before its first checkpoint: nothing to resume
    return flags


def _finished_probe(output_dir: Path, steps: int) -> dict[str, Any] | None:
    """The final validation metrics of a probe that already ran to `steps` updates (probes resume like rows)."""
    try:
        history = json.loads((output_dir / "log_history.json").read_text())
        results = json.loads((output_dir / "all_results.json").read_text())
    except FileNotFoundError:
        return None
    return results if max(e.get("step", 0) for e in history) == steps else None


def _run_probe(study, row, output_dir, tokenizer_dir, learning_rate, lever="") -> dict[str, Any]:
    """Run (or resume, or reuse) a probe; a probe folder holds one recipe: reusing it for another would report the
    old run under the new recipe, so that is refused."""
    wanted = {"recipe": row_recipe(study, row, lever), "learning_rate": learning_rate, "updates": study.probe_steps}
    record = output_dir.with_name(output_dir.name + ".probe.json")  # beside it: the run may empty its folder
    if record.exists() and (found := json.loads(record.read_text())) != wanted:
        raise ValueError(
            f"The probe folder {output_dir} holds a run of {found}, not of {wanted} (the row's recipe changed since). "
            "Give this round of probes its own --output_dir (and --results_dir; --tokenizer_dir can stay), or another "
            "lever name."
        )
    results = _finished_probe(output_dir, study.probe_steps)
    if results is None:
        flags = _row_flags(study, row, output_dir, tokenizer_dir, learning_rate, study.probe_steps, lever)
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(json.dumps(wanted))
        results = run_translation(*parse_args(flags))
    return results


def _learning_rate(study: StudyArguments, row: str, tokenizer_dir: Path) -> tuple[float, dict[str, float]]:
    """The row's learning rate: its default, or the best validation loss among the candidates after a short probe."""
    candidates = {}
    for part in filter(None, study.lr_candidates.split(";")):
        name, values = part.split("=")
        candidates[name.strip()] = [float(v) for v in values.split(",")]
    if "learning_rate" in (recipe := row_recipe(study, row)):  # set by --recipe or --row_recipes
        if row in candidates:
            raise ValueError(
                f"Row {row!r} has a learning rate in its recipe ({recipe['learning_rate']}) and "
                f"--lr_candidates for it too; give one of them."
            )
        return float(recipe["learning_rate"]), {}
    if row not in candidates:
        return ROWS[row]["learning_rate"], {}
    if len(candidates[row]) == 1:  # a rate given, not probed (e.g. the one another row's probe chose)
        return candidates[row][0], {}
    probes = {}
    for rate in candidates[row]:
        out = Path(study.output_dir) / "probes" / f"{row}-lr{rate:g}"
        probes[f"{rate:g}"] = _run_probe(study, row, out, tokenizer_dir, rate)["eval_loss"]
    best = min(probes, key=probes.get)
    return float(best), probes


def tokenizer_languages(study: StudyArguments) -> list[str]:
    languages = [lang.strip() for lang in study.tokenizer_languages.split(",") if lang.strip()]
    languages = languages or [study.source_lang, study.target_lang]
    missing = {study.source_lang, study.target_lang} - set(languages)
    if missing:
        raise ValueError(
            f"--tokenizer_languages {study.tokenizer_languages!r} lacks {sorted(missing)}, a language of "
            f"the direction {study.source_lang}->{study.target_lang}; add it."
        )
    return languages


def _training_sentences(study: StudyArguments, languages: list[str]):
    """Every training sentence of every language, line by line (line-aligned corpora: each language's line i)."""
    from hf_supermask.data import load_translation_dataset

    first = languages[0]
    for index, other in enumerate(languages[1:]):
        raw = load_translation_dataset(first, other, data_dir=study.data_dir)
        for batch in raw["train"].iter(batch_size=1000):
            for pair in batch["translation"]:
                if index == 0:
                    yield pair[first]
                yield pair[other]


LANGUAGES_FILE = "study_languages.json"


def _shared_tokenizer(study: StudyArguments) -> Path:
    """The joint tokenizer every row (and direction) shares: trained once, then reused; refused if trained on other
    languages or another vocabulary size than asked."""
    import shutil
    import tempfile

    from hf_supermask.tokenization import train_tokenizer

    languages = tokenizer_languages(study)
    path = Path(study.tokenizer_dir or Path(study.output_dir) / "tokenizer")
    wanted = {"languages": languages, "vocab_size": study.vocab_size}
    if (path / "tokenizer.json").exists():
        recorded = path / LANGUAGES_FILE
        found = json.loads(recorded.read_text()) if recorded.exists() else f"unknown languages (no {LANGUAGES_FILE})"
        if found != wanted:
            raise ValueError(
                f"The tokenizer in {path} was trained for {found}, this run asks for {wanted}. Pass "
                "another --tokenizer_dir (or --output_dir), or the same languages and --vocab_size."
            )
        return path
    tokenizer = train_tokenizer(_training_sentences(study, languages), vocab_size=study.vocab_size)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=path.parent, prefix=".tokenizer-"))  # two runs started together: one wins
    tokenizer.save_pretrained(staging)
    (staging / LANGUAGES_FILE).write_text(json.dumps(wanted))
    try:
        os.rename(staging, path)
    except OSError:
        shutil.rmtree(staging)
        if not (path / "tokenizer.json").exists():
            raise
    return path


def decoding_grid(candidates: str) -> list[dict[str, Any]]:
    """`"a=1,2;b=0.5"` -> every combination, `[{"a": 1, "b": 0.5}, {"a": 2, "b": 0.5}]` (ints stay ints);
    `""` -> `[{}]`."""
    import itertools

    axes = []
    for part in filter(None, (p.strip() for p in candidates.split(";"))):
        name, values = part.split("=")
        axes.append([(name.strip(), float(v) if "." in v or "e" in v else int(v)) for v in values.split(",")])
    return [dict(combination) for combination in itertools.product(*axes)]


def translate_and_score(
    translator,
    pairs,
    num_beams: int,
    settings: dict[str, Any],
    metric,
    source_lang: str = "en",
    target_lang: str = "de",
) -> dict[str, Any]:
    """sacreBLEU/chrF of `pairs` (dataset rows with a `translation` dict) translated with `settings`."""
    sources = [p["translation"][source_lang] for p in pairs]
    references = [p["translation"][target_lang] for p in pairs]
    outputs = translator(sources, batch_size=32, num_beams=num_beams, **settings)
    return metric.compute(predictions=[o["translation_text"] for o in outputs], references=references)


def select_decoding_and_test(study: StudyArguments, output_dir: Path) -> dict[str, Any]:
    """Choose decoding settings on validation (the same grid for every row), then score the test set with them.

    The chosen settings are written into the row's `generation_config.json`, so the saved model decodes as reported.
    """
    from transformers import GenerationConfig, pipeline

    from hf_supermask.data import load_translation_dataset, select_max_samples
    from hf_supermask.metrics import load_translation_metric

    languages = (study.source_lang, study.target_lang)
    raw = load_translation_dataset(*languages, data_dir=study.data_dir)
    raw = select_max_samples(raw, None, study.max_eval_samples, study.max_predict_samples)
    metric = load_translation_metric()
    translator = pipeline("translation", model=str(output_dir), device="cpu")
    validation = {}
    for settings in decoding_grid(study.decoding_candidates):
        key = ",".join(f"{k}={v}" for k, v in settings.items()) or "default"
        scores = translate_and_score(translator, raw["validation"], study.num_beams, settings, metric, *languages)
        validation[key] = (settings, scores)
    best_key = max(validation, key=lambda k: validation[k][1]["bleu"])
    best = validation[best_key][0]
    test = translate_and_score(translator, raw["test"], study.num_beams, best, metric, *languages)
    generation_config = GenerationConfig.from_pretrained(output_dir)
    generation_config.update(num_beams=study.num_beams, **best)
    generation_config.save_pretrained(output_dir)
    return {
        "decoding": best,
        "decoding_validation_bleu": {k: round(v[1]["bleu"], 2) for k, v in validation.items()},
        "test_bleu": test["bleu"],
        "test_chrf": test["chrf"],
        "bleu_signature": test["bleu_signature"],
        "chrf_signature": test["chrf_signature"],
    }


def probe_levers(study: StudyArguments, row: str, tokenizer_dir: Path) -> dict[str, Any]:
    """Short runs of `row` with each lever of `--levers` (and without: 'baseline'), compared on validation."""
    learning_rate, _ = _learning_rate(study, row, tokenizer_dir)
    levers = {"baseline": "", **parse_named(study.levers)}
    target = Path(study.results_dir) / "levers" / f"{row}.json"

    def recorded() -> dict[str, Any]:
        return json.loads(target.read_text()) if target.exists() else {}

    for name, lever in levers.items():
        out = Path(study.output_dir) / "levers" / row / name
        rate = float(row_recipe(study, row, lever).get("learning_rate", learning_rate))  # a lever may be the rate
        results = _run_probe(study, row, out, tokenizer_dir, rate, lever)
        history = json.loads((out / "log_history.json").read_text())
        # Read again now: another process may be probing other levers of this row into the same file.
        report = recorded()
        report[name] = {
            "settings": lever,
            "recipe": row_recipe(study, row, lever),
            "learning_rate": rate,
            "updates": study.probe_steps,
            "eval_loss": results["eval_loss"],
            "eval_bleu": results.get("eval_bleu"),
            "train_target_tokens_per_second": results.get("train_target_tokens_per_second"),
            "train_wall_seconds": _wall_seconds(history),
            "curve": _curve_points(history),
            "git_commit": report.get(name, {}).get("git_commit") or git_commit(),
        }
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = target.with_name(f".{target.name}.{os.getpid()}")
        staging.write_text(json.dumps(report, indent=1))  # after every probe: an interrupted run keeps what it did
        os.replace(staging, target)  # atomic: a reader never sees half a file
    return recorded()


def _wall_seconds(history: list[dict[str, Any]]) -> float | None:
    """Training time with its evaluations, across resumptions (the callback's clock continues when resumed)."""
    return max((e["elapsed_seconds"] for e in history if e.get("elapsed_seconds")), default=None)


def _budget_used(history: list[dict[str, Any]], study: StudyArguments) -> dict[str, Any]:
    """How far a row trained: its updates, target tokens (across resumptions), why it stopped, and the update of its
    best validation BLEU (the checkpoint kept when it stops on a plateau)."""
    updates = max((e.get("step", 0) for e in history), default=0)
    curve = _curve_points(history)
    best = max(curve, key=lambda p: p["eval_bleu"], default=None)  # the first of equals, as the Trainer keeps
    return {
        "updates": updates,
        "total_target_tokens": max((e.get("train_target_tokens", 0) for e in history), default=None) or None,
        "stopped_by": "budget" if updates >= study.max_steps else "plateau",
        "best_step": best["step"] if best and study.plateau_patience else updates,
    }


def _curve_points(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "step": e["step"],
            "elapsed_seconds": e.get("elapsed_seconds"),
            "eval_bleu": e["eval_bleu"],
            "eval_loss": e.get("eval_loss"),
        }
        for e in history
        if "eval_bleu" in e
    ]


def _lever_summary(results_dir: Path, row: str) -> dict[str, Any]:
    path = results_dir / "levers" / f"{row}.json"
    probes = json.loads(path.read_text()) if path.exists() else {}
    return {name: {k: p[k] for k in ("settings", "updates", "eval_loss", "eval_bleu")} for name, p in probes.items()}


def run_row(study: StudyArguments, row: str, tokenizer_dir: Path) -> dict[str, Any]:
    started = time.time()
    learning_rate, probes = _learning_rate(study, row, tokenizer_dir)
    output_dir = Path(study.output_dir) / row
    flags = _row_flags(study, row, output_dir, tokenizer_dir, learning_rate, study.max_steps)
    if study.plateau_patience:
        flags += ["--early_stopping_patience", str(study.plateau_patience)]
    commit = git_commit()
    results = run_translation(*parse_args(flags))  # the curve: greedy validation BLEU every eval_steps
    history = json.loads((output_dir / "log_history.json").read_text())
    scores = select_decoding_and_test(study, output_dir)
    return {
        "row": row,
        "model_type": ROWS[row]["model_type"],
        "direction": f"{study.source_lang}-{study.target_lang}",
        "tokenizer_languages": tokenizer_languages(study),
        "learning_rate": learning_rate,
        "learning_rate_probes": probes,
        "recipe": row_recipe(study, row),
        "git_commit": commit,
        "machine": machine_record(study.threads),
        "max_steps": study.max_steps,
        "batch_size": study.batch_size,
        "shape": study.shape,
        **scores,
        "num_beams": study.num_beams,
        "checkpoint_weights_bytes": results.get("checkpoint_weights_bytes"),
        "checkpoint_folder_bytes": results.get("checkpoint_folder_bytes"),
        "train_wall_seconds": _wall_seconds(history),
        "train_target_tokens_per_second": results.get("train_target_tokens_per_second"),
        **_budget_used(history, study),
        "row_wall_seconds": time.time() - started,
        "curve": _curve_points(history),
        "lever_probes": _lever_summary(Path(study.results_dir), row),
        "command": shlex.join(
            ["python", "scripts/bleu_study.py", *(x for k, v in vars(study).items() if v for x in (f"--{k}", str(v)))]
        ),
    }


SHIPPED_FILES = (
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "training_curves.png",
)


def ship_row(
    results_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    row: str,
    destination: str | os.PathLike,
    model_name: str | None = None,
) -> Path:
    """Copy a finished row's mask-only model (config, decoding, masks, tokenizer, curves) to `destination`, with a
    model card that states its measured test scores, the recipe and command that produced it, and its fingerprints:
    what the package ships (`hf_supermask.pretrained.SHIPPED_MODEL`) and what `push_to_hub` would publish."""
    import shutil

    from transformers import AutoModelForSeq2SeqLM

    from hf_supermask.files import prepare_output_folder
    from hf_supermask.model_card import architecture_summary, build_model_card, save_model_card
    from hf_supermask.resave import resave_checkpoint
    from hf_supermask.training import dense_fp32_weights_bytes

    result = json.loads((Path(results_dir) / f"{row}.json").read_text())
    source, destination = Path(output_dir) / row, Path(destination)
    prepare_output_folder(destination, overwrite=True, overwrite_flag="(ship_row overwrites)", inputs=[source])
    destination.mkdir(parents=True, exist_ok=True)
    for name in SHIPPED_FILES:
        if (source / name).exists():
            shutil.copyfile(source / name, destination / name)
    source_lang, _, target_lang = result.get("direction", "en-de").partition("-")
    # The whole identity (tokenizer, forward settings, direction) and today's remote code, from the unchanged masks.
    resave_checkpoint(destination, source_lang, target_lang)
    model = AutoModelForSeq2SeqLM.from_pretrained(destination)  # verifies fingerprints and masks, as users will
    maskable = model.num_maskable_weights()
    card = build_model_card(
        model_name=model_name or destination.name,
        output_dir_or_repo_id=model_name or destination.name,
        source_lang=source_lang,
        target_lang=target_lang,
        test_bleu=result["test_bleu"],
        test_chrf=result["test_chrf"],
        bleu_signature=result["bleu_signature"],
        chrf_signature=result["chrf_signature"],
        hyperparameters={
            "updates": result["max_steps"],
            "sentence pairs per update": result["batch_size"],
            "score learning rate": result["learning_rate"],
            "recipe": ", ".join(f"{k}={v}" for k, v in result["recipe"].items()),
            "decoding (chosen on validation)": result["decoding"],
            "command": result["command"],
            "git commit": result["git_commit"],
        },
        checkpoint_bytes=result["checkpoint_weights_bytes"],
        dense_fp32_bytes=dense_fp32_weights_bytes(model),
        plot_filename="training_curves.png" if (destination / "training_curves.png").exists() else None,
        base_config=architecture_summary(model.config),
        bits_per_weight=8 * result["checkpoint_weights_bytes"] / maskable,
    )
    save_model_card(card, destination)
    return destination


def _one_point_per_update(curve) -> list[dict[str, Any]]:
    """A curve with one point per update (the final evaluation after training repeats the last step's)."""
    points = {}
    for point in curve:
        points.setdefault(point["step"], point)
    return [points[step] for step in sorted(points)]


def _curve_table(rows: dict[str, dict[str, Any]]) -> list[str]:
    """Validation BLEU (greedy) of every row at every evaluated update, and each row's ratio to the dense row there:
    the ratio depends strongly on the budget."""
    names = [r for r in ROWS if r in rows]
    curves = {name: {p["step"]: p["eval_bleu"] for p in _one_point_per_update(rows[name]["curve"])} for name in names}
    steps = sorted({step for curve in curves.values() for step in curve})
    header = "| updates | " + " | ".join(names) + " |"
    lines = [
        "Validation BLEU (greedy) during training, and the ratio to dense at the same update:",
        "",
        header,
        "|---" * (len(names) + 1) + "|",
    ]
    for step in steps:
        dense = curves.get("dense", {}).get(step)
        cells = []
        for name in names:
            value = curves[name].get(step)
            ratio = f" ({value / dense:.2f})" if value is not None and dense and name != "dense" else ""
            cells.append("" if value is None else f"{value:.2f}{ratio}")
        lines.append(f"| {step} | " + " | ".join(cells) + " |")
    return lines


def _lever_table(results_dir: Path) -> list[str]:
    """Every lever probe: validation loss and BLEU (greedy) after the probe budget, and the change from the row's
    baseline probe (the same recipe without the lever, the same budget)."""
    lines = []
    for path in sorted((results_dir / "levers").glob("*.json")):
        probes = json.loads(path.read_text())
        base = probes.get("baseline", {})
        if not lines:
            lines = [
                "",
                "Lever probes (validation, greedy BLEU on the curve's pairs; each against the baseline "
                "probe of the same row, recipe and budget):",
                "",
                "| row | lever | settings | updates | val loss | val BLEU | loss change | BLEU change "
                "| target tokens/s |",
                "|---|---|---|---|---|---|---|---|---|",
            ]
        for name, probe in probes.items():
            dloss = f"{probe['eval_loss'] - base['eval_loss']:+.3f}" if base and name != "baseline" else ""
            dbleu = f"{probe['eval_bleu'] - base['eval_bleu']:+.2f}" if base and name != "baseline" else ""
            speed = probe.get("train_target_tokens_per_second")  # less padding shows here (length-bucketed batches)
            lines.append(
                f"| {path.stem} | {name} | {probe['settings'] or '(row recipe)'} | {probe['updates']} | "
                f"{probe['eval_loss']:.3f} | {probe['eval_bleu']:.2f} | {dloss} | {dbleu} | "
                f"{'' if speed is None else f'{speed:.0f}'} |"
            )
    return lines


def _updates_cell(row: dict[str, Any]) -> str:
    """Updates a row trained, and why it stopped when it stopped before its budget (best checkpoint kept)."""
    if row.get("stopped_by") == "plateau":
        return f"{row['updates']} of {row['max_steps']} (plateau; best at {row['best_step']})"
    return str(row.get("updates", row["max_steps"]))


def write_report(results_dir: Path, direction: str = "en-de") -> str:
    """Rebuild the markdown table and the chart from the finished rows' JSON files."""
    rows = {p.stem: json.loads(p.read_text()) for p in sorted(results_dir.glob("*.json"))}
    dense = rows.get("dense", {})
    reference = dense.get("test_bleu")
    lines = (
        [
            "| row | test BLEU | chrF | BLEU / dense | weights file | train time | updates "
            "| lr (validation loss of probes) "
            "| decoding (chosen on validation) |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        if rows
        else []
    )  # a folder of lever probes only has no rows to tabulate
    for name in [r for r in ROWS if r in rows]:
        row = rows[name]
        ratio = f"{row['test_bleu'] / reference:.2f}" if reference else "n/a"
        if dense and same_machine(row, dense) is False:
            ratio += " (other machine: not comparable)"
        probes = ", ".join(f"{rate}: {loss:.3f}" for rate, loss in row.get("learning_rate_probes", {}).items())
        decoding = ", ".join(f"{k}={v}" for k, v in row.get("decoding", {}).items()) or "default"
        lines.append(
            f"| {name} | {row['test_bleu']:.2f} | {row['test_chrf']:.2f} | {ratio} | "
            f"{row['checkpoint_weights_bytes'] / 2**20:.2f} MiB | {row['train_wall_seconds'] / 60:.1f} min | "
            f"{_updates_cell(row)} | {row['learning_rate']:g}{f' ({probes})' if probes else ''} | {decoding} |"
        )
    machines = {name: row["machine"] for name, row in rows.items() if "machine" in row}
    if machines:
        lines += [
            "",
            "Machines: "
            + "; ".join(
                f"{name}: {m['cpu']} ({m['cpu_count']} cores, torch {m['torch']}, {m['threads']} thread(s))"
                for name, m in machines.items()
            )
            + ".",
        ]
    if rows:
        lines += ["", *_curve_table(rows)]
    table = "\n".join([*lines, *_lever_table(results_dir)]).strip("\n")
    (results_dir / "results.md").write_text(table + "\n")
    if rows:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        figure = Figure(figsize=(11, 4))
        FigureCanvasAgg(figure)
        by_time, by_step = figure.subplots(1, 2, sharey=True)
        for name in [r for r in ROWS if r in rows]:
            curve = _one_point_per_update(rows[name]["curve"])
            timed = [(p["elapsed_seconds"] / 60, p["eval_bleu"]) for p in curve if p["elapsed_seconds"]]
            if timed:
                by_time.plot(*zip(*timed), marker="o", label=name)
            by_step.plot([p["step"] for p in curve], [p["eval_bleu"] for p in curve], marker="o", label=name)
        by_time.set_xlabel("training time (min, 1 thread, evaluations included)")
        by_step.set_xlabel("updates")
        by_time.set_ylabel("validation BLEU (greedy)")
        for axes in (by_time, by_step):
            axes.grid(alpha=0.3)
        by_step.legend()
        figure.suptitle(f"Multi30k {direction}: validation BLEU during training")
        figure.tight_layout()
        figure.savefig(results_dir / "bleu_curves.png", dpi=110)
    return table


def run_study(study: StudyArguments) -> str:
    torch.set_num_threads(study.threads)
    git_commit()  # now, while the code on disk is the code this process imported
    if study.smoke:
        study.shape = (
            "d_model=32,encoder_layers=2,decoder_layers=2,encoder_ffn_dim=64,decoder_ffn_dim=64,"
            "encoder_attention_heads=4,decoder_attention_heads=4,max_position_embeddings=128"
        )
        study.max_steps, study.eval_steps, study.batch_size = 4, 2, 8
        study.max_eval_samples, study.max_predict_samples, study.num_beams, study.probe_steps = 8, 8, 2, 2
        study.vocab_size = min(study.vocab_size, 1000)
    results_dir = Path(study.results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    tokenizer_dir = _shared_tokenizer(study)
    rows = [r.strip() for r in study.rows.split(",") if r.strip()]
    for row in rows:
        if row not in ROWS:
            raise ValueError(f"Unknown row {row!r}; rows are {list(ROWS)}.")
    for row in rows:
        if study.levers:
            probe_levers(study, row, tokenizer_dir)
            continue
        target = results_dir / f"{row}.json"
        if target.exists():
            logger.info("Row %s already done (%s); skipping.", row, target)
            continue
        result = run_row(study, row, tokenizer_dir)
        target.write_text(json.dumps(result, indent=1))
        logger.info("Row %s: test BLEU %.2f", row, result["test_bleu"])
    return write_report(results_dir, f"{study.source_lang}-{study.target_lang}")


def main(args: list[str] | None = None) -> str:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # before tokenizers fork
    from transformers import HfArgumentParser

    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", level=logging.INFO)
    (study,) = HfArgumentParser(StudyArguments).parse_args_into_dataclasses(args=args)
    table = run_study(study)
    print(table)
    return table
