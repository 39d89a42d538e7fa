# Copyright 2026 The hf_supermask Authors. Licensed under the Apache License, Version 2.0.
"""The BLEU study: dense Marian vs supermask variants on Multi30k en->de, one shape and one budget for every row.

Resumable row by row: each finished row writes `<results_dir>/<row>.json` (metrics, curve, timing), which later runs
skip; the table (`results.md`) and the chart (`bleu_curves.png`) are rebuilt from whatever rows exist. Checkpoints go
to `<output_dir>` (keep it out of git; the fixed-embedding row reads the dense row's folder from there).
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .training import parse_args, run_translation


logger = logging.getLogger(__name__)


@dataclass
class StudyArguments:
    output_dir: str = field(default="outputs/bleu_study", metadata={"help": "Checkpoints (not committed)."})
    results_dir: str = field(default="benchmarks/bleu_study", metadata={"help": "Row JSONs, table, chart (committed)."})
    rows: str = field(default="dense,supermask,supermask_fixed_embedding", metadata={"help": "Comma-separated rows."})
    data_dir: str | None = field(default=None, metadata={"help": "Folder of split.lang files (default: Multi30k)."})
    shape: str = field(
        default="d_model=256,encoder_layers=3,decoder_layers=3,encoder_ffn_dim=1024,decoder_ffn_dim=1024,"
        "encoder_attention_heads=4,decoder_attention_heads=4,max_position_embeddings=256",
        metadata={"help": "Config overrides shared by every row."},
    )
    max_steps: int = field(default=1500, metadata={"help": "Updates per row (the same budget for every row)."})
    batch_size: int = field(default=64, metadata={"help": "Sentence pairs per update."})
    eval_steps: int = field(default=250, metadata={"help": "Validation BLEU every N updates (the curve)."})
    max_eval_samples: int = field(default=300, metadata={"help": "Validation pairs for the curve (greedy)."})
    max_predict_samples: int | None = field(default=None, metadata={"help": "Test pairs (default: all 1000)."})
    num_beams: int = field(default=5, metadata={"help": "Beams for the reported test scores."})
    vocab_size: int = field(default=8000, metadata={"help": "Joint BPE vocabulary, shared by every row."})
    threads: int = field(default=1, metadata={"help": "torch threads (run two rows side by side with 1 each)."})
    lr_candidates: str = field(
        default="",
        metadata={"help": "Per-row learning rates to probe on validation, e.g. 'dense=5e-4,1e-3;supermask=5e-4,1e-3' "
                  "(a single rate is used without a probe); rows not named use their default."},
    )  # fmt: skip
    probe_steps: int = field(default=200, metadata={"help": "Updates per learning-rate probe."})
    decoding_candidates: str = field(
        default="no_repeat_ngram_size=0,3;length_penalty=1.0,1.5",
        metadata={"help": "Decoding settings tried on validation for every row alike (the grid of all "
                  "combinations, beam `num_beams`); the best validation BLEU decodes the test set and is saved in "
                  "the row's generation_config.json. Empty: the model's defaults."},
    )  # fmt: skip
    smoke: bool = field(default=False, metadata={"help": "Tiny shape, a few steps: checks the pipeline only."})


# Each row: model type, config overrides, default learning rate (Adam; edge-popup scores prefer smaller rates:
# large ones churn the whole mask within a few steps).
ROWS: dict[str, dict[str, Any]] = {
    "dense": {"model_type": "marian", "overrides": "", "learning_rate": 1e-3},
    "supermask": {"model_type": "supermask", "overrides": "share_layers=True", "learning_rate": 5e-4},
    "supermask_fixed_embedding": {
        "model_type": "supermask",
        "overrides": "share_layers=True",
        "learning_rate": 5e-4,
        "embedding_from": "dense",
    },
    "supermask_unshared": {"model_type": "supermask", "overrides": "share_layers=False", "learning_rate": 5e-4},
    "supermask_signed_constant": {
        "model_type": "supermask",
        "overrides": "share_layers=True,weight_init=signed_constant",
        "learning_rate": 5e-4,
    },
}


def _row_flags(study: StudyArguments, row: str, output_dir: Path, tokenizer_dir: Path, learning_rate: float,
               max_steps: int, final: bool) -> list[str]:  # fmt: skip
    spec = ROWS[row]
    overrides = ",".join(part for part in (study.shape, spec["overrides"], "dropout=0.1") if part)
    flags = [
        "--output_dir", str(output_dir), "--model_type", spec["model_type"], "--tokenizer_name", str(tokenizer_dir),
        "--config_overrides", overrides, "--max_steps", str(max_steps),
        "--per_device_train_batch_size", str(study.batch_size), "--per_device_eval_batch_size", "64",
        "--learning_rate", str(learning_rate), "--warmup_steps", str(min(100, max_steps // 10)),
        "--do_train", "--do_eval", "--predict_with_generate", "--eval_strategy", "steps",
        "--eval_steps", str(study.eval_steps if final else max_steps), "--save_strategy", "no",
        "--logging_steps", str(max(1, study.eval_steps // 5)), "--max_eval_samples", str(study.max_eval_samples),
        "--max_source_length", "64", "--max_target_length", "64", "--seed", "42", "--report_to", "none",
        "--disable_tqdm", "true", "--num_examples", "0", "--num_beams", "1",
    ]  # fmt: skip
    if study.data_dir:
        flags += ["--data_dir", study.data_dir]
    if "embedding_from" in spec:
        source = Path(study.output_dir) / spec["embedding_from"]
        if not (source / "model.safetensors").exists():
            raise FileNotFoundError(
                f"Row {row!r} takes its fixed embedding from row {spec['embedding_from']!r}, whose checkpoint is not in "
                f"{source}. Run that row first (in the same --output_dir)."
            )
        flags += ["--embedding_source", str(source.resolve())]
    return flags


def _finished_probe_loss(output_dir: Path, steps: int) -> float | None:
    """The validation loss of a probe that already ran to `steps` updates (probes resume like rows), else None."""
    try:
        history = json.loads((output_dir / "log_history.json").read_text())
        results = json.loads((output_dir / "all_results.json").read_text())
    except FileNotFoundError:
        return None
    return results["eval_loss"] if max(e.get("step", 0) for e in history) == steps else None


def _learning_rate(study: StudyArguments, row: str, tokenizer_dir: Path) -> tuple[float, dict[str, float]]:
    """The row's learning rate: its default, or the best validation loss among the candidates after a short probe."""
    candidates = {}
    for part in filter(None, study.lr_candidates.split(";")):
        name, values = part.split("=")
        candidates[name.strip()] = [float(v) for v in values.split(",")]
    if row not in candidates:
        return ROWS[row]["learning_rate"], {}
    if len(candidates[row]) == 1:  # a rate given, not probed (e.g. the one another row's probe chose)
        return candidates[row][0], {}
    probes = {}
    for rate in candidates[row]:
        out = Path(study.output_dir) / "probes" / f"{row}-lr{rate:g}"
        probes[f"{rate:g}"] = _finished_probe_loss(out, study.probe_steps)
        if probes[f"{rate:g}"] is None:
            flags = _row_flags(study, row, out, tokenizer_dir, rate, study.probe_steps, final=False)
            probes[f"{rate:g}"] = run_translation(*parse_args(flags))["eval_loss"]
    best = min(probes, key=probes.get)
    return float(best), probes


def _shared_tokenizer(study: StudyArguments) -> Path:
    from .data import load_translation_dataset
    from .tokenization import train_tokenizer_on_dataset

    path = Path(study.output_dir) / "tokenizer"
    if not (path / "tokenizer.json").exists():
        raw = load_translation_dataset("en", "de", data_dir=study.data_dir)
        train_tokenizer_on_dataset(raw, "en", "de", vocab_size=study.vocab_size).save_pretrained(path)
    return path


def decoding_grid(candidates: str) -> list[dict[str, Any]]:
    """`"a=1,2;b=0.5"` -> every combination, `[{"a": 1, "b": 0.5}, {"a": 2, "b": 0.5}]` (ints stay ints); `""` -> `[{}]`."""
    import itertools

    axes = []
    for part in filter(None, (p.strip() for p in candidates.split(";"))):
        name, values = part.split("=")
        axes.append([(name.strip(), float(v) if "." in v or "e" in v else int(v)) for v in values.split(",")])
    return [dict(combination) for combination in itertools.product(*axes)]


def translate_and_score(translator, pairs, num_beams: int, settings: dict[str, Any], metric) -> dict[str, Any]:
    """sacreBLEU/chrF of `pairs` (dataset rows with a `translation` dict) translated with `settings`."""
    sources = [p["translation"]["en"] for p in pairs]
    references = [p["translation"]["de"] for p in pairs]
    outputs = translator(sources, batch_size=32, num_beams=num_beams, **settings)
    return metric.compute(predictions=[o["translation_text"] for o in outputs], references=references)


def select_decoding_and_test(study: StudyArguments, output_dir: Path) -> dict[str, Any]:
    """Choose decoding settings on validation (the same grid for every row), then score the test set with them.

    The chosen settings are written into the row's `generation_config.json`, so the saved model decodes as reported.
    """
    from transformers import GenerationConfig, pipeline

    from .data import load_translation_dataset, select_max_samples
    from .metrics import load_translation_metric

    raw = load_translation_dataset("en", "de", data_dir=study.data_dir)
    raw = select_max_samples(raw, None, study.max_eval_samples, study.max_predict_samples)
    metric = load_translation_metric()
    translator = pipeline("translation", model=str(output_dir), device="cpu")
    validation = {}
    for settings in decoding_grid(study.decoding_candidates):
        key = ",".join(f"{k}={v}" for k, v in settings.items()) or "default"
        validation[key] = (settings, translate_and_score(translator, raw["validation"], study.num_beams, settings, metric))
    best_key = max(validation, key=lambda k: validation[k][1]["bleu"])
    best = validation[best_key][0]
    test = translate_and_score(translator, raw["test"], study.num_beams, best, metric)
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


def run_row(study: StudyArguments, row: str, tokenizer_dir: Path) -> dict[str, Any]:
    started = time.time()
    learning_rate, probes = _learning_rate(study, row, tokenizer_dir)
    output_dir = Path(study.output_dir) / row
    flags = _row_flags(study, row, output_dir, tokenizer_dir, learning_rate, study.max_steps, final=True)
    results = run_translation(*parse_args(flags))  # the curve: greedy validation BLEU every eval_steps
    history = json.loads((output_dir / "log_history.json").read_text())
    scores = select_decoding_and_test(study, output_dir)
    return {
        "row": row,
        "model_type": ROWS[row]["model_type"],
        "learning_rate": learning_rate,
        "learning_rate_probes": probes,
        "max_steps": study.max_steps,
        "batch_size": study.batch_size,
        "shape": study.shape,
        **scores,
        "num_beams": study.num_beams,
        "checkpoint_weights_bytes": results.get("checkpoint_weights_bytes"),
        "checkpoint_folder_bytes": results.get("checkpoint_folder_bytes"),
        "train_wall_seconds": results.get("train_runtime"),
        "row_wall_seconds": time.time() - started,
        "curve": [
            {"step": e["step"], "elapsed_seconds": e.get("elapsed_seconds"), "eval_bleu": e["eval_bleu"]}
            for e in history
            if "eval_bleu" in e
        ],
        "command": "python scripts/bleu_study.py " + " ".join(f"--{k} {v}" for k, v in vars(study).items() if v),
    }


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
    curves = {name: {p["step"]: p["eval_bleu"] for p in _one_point_per_update(rows[name]["curve"])}
              for name in names}
    steps = sorted({step for curve in curves.values() for step in curve})
    header = "| updates | " + " | ".join(names) + " |"
    lines = ["Validation BLEU (greedy) during training, and the ratio to dense at the same update:", "",
             header, "|---" * (len(names) + 1) + "|"]  # fmt: skip
    for step in steps:
        dense = curves.get("dense", {}).get(step)
        cells = []
        for name in names:
            value = curves[name].get(step)
            ratio = f" ({value / dense:.2f})" if value is not None and dense and name != "dense" else ""
            cells.append("" if value is None else f"{value:.2f}{ratio}")
        lines.append(f"| {step} | " + " | ".join(cells) + " |")
    return lines


def write_report(results_dir: Path) -> str:
    """Rebuild the markdown table and the chart from the finished rows' JSON files."""
    rows = {p.stem: json.loads(p.read_text()) for p in sorted(results_dir.glob("*.json"))}
    reference = rows.get("dense", {}).get("test_bleu")
    lines = [
        "| row | test BLEU | chrF | BLEU / dense | weights file | train time | updates | lr (validation loss of probes) "
        "| decoding (chosen on validation) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name in [r for r in ROWS if r in rows]:
        row = rows[name]
        ratio = f"{row['test_bleu'] / reference:.2f}" if reference else "n/a"
        probes = ", ".join(f"{rate}: {loss:.3f}" for rate, loss in row.get("learning_rate_probes", {}).items())
        decoding = ", ".join(f"{k}={v}" for k, v in row.get("decoding", {}).items()) or "default"
        lines.append(
            f"| {name} | {row['test_bleu']:.2f} | {row['test_chrf']:.2f} | {ratio} | "
            f"{row['checkpoint_weights_bytes'] / 2**20:.2f} MiB | {row['train_wall_seconds'] / 60:.1f} min | "
            f"{row['max_steps']} | {row['learning_rate']:g}{f' ({probes})' if probes else ''} | {decoding} |"
        )
    lines += ["", *_curve_table(rows)]
    table = "\n".join(lines)
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
        figure.suptitle("Multi30k en-de: validation BLEU during training")
        figure.tight_layout()
        figure.savefig(results_dir / "bleu_curves.png", dpi=110)
    return table


def run_study(study: StudyArguments) -> str:
    torch.set_num_threads(study.threads)
    if study.smoke:
        study.shape = ("d_model=32,encoder_layers=2,decoder_layers=2,encoder_ffn_dim=64,decoder_ffn_dim=64,"
                       "encoder_attention_heads=4,decoder_attention_heads=4,max_position_embeddings=128")  # fmt: skip
        study.max_steps, study.eval_steps, study.batch_size = 4, 2, 8
        study.max_eval_samples, study.max_predict_samples, study.num_beams, study.probe_steps = 8, 8, 2, 2
        study.vocab_size = min(study.vocab_size, 1000)
    results_dir = Path(study.results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    tokenizer_dir = _shared_tokenizer(study)
    for row in [r.strip() for r in study.rows.split(",") if r.strip()]:
        if row not in ROWS:
            raise ValueError(f"Unknown row {row!r}; rows are {list(ROWS)}.")
        target = results_dir / f"{row}.json"
        if target.exists():
            logger.info("Row %s already done (%s); skipping.", row, target)
            continue
        result = run_row(study, row, tokenizer_dir)
        target.write_text(json.dumps(result, indent=1))
        logger.info("Row %s: test BLEU %.2f", row, result["test_bleu"])
    return write_report(results_dir)


def main(args: list[str] | None = None) -> str:
    from transformers import HfArgumentParser

    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", level=logging.INFO)
    (study,) = HfArgumentParser(StudyArguments).parse_args_into_dataclasses(args=args)
    table = run_study(study)
    print(table)
    return table



@torch.no_grad()
def output_logit_statistics(model_dir: str | os.PathLike, pairs, max_pairs: int = 300) -> dict[str, float]:
    """Teacher-forced statistics of a translation model's output layer on `pairs` (rows with a `translation` dict).

    They show whether the output softmax can be sharp: a supermask's last hidden states have the fixed norm
    sqrt(d_model) (LayerNorm without affine parameters) and its embedding rows the norm the random init gives, so its
    logits are bounded by |h| * |e|, while a dense model learns both norms.
    """
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSeq2SeqLM.from_pretrained(model_dir).eval()
    if hasattr(model, "export_dense"):
        model = model.export_dense().eval()  # a plain MarianMTModel with the same logits
    rows = [p["translation"] for p in pairs][:max_pairs]
    batch = tokenizer([r["en"] for r in rows], text_target=[r["de"] for r in rows], padding=True, return_tensors="pt")
    labels = batch["labels"].masked_fill(batch["labels"] == tokenizer.pad_token_id, -100)
    outputs = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=labels,
                    output_hidden_states=True)  # fmt: skip
    kept = labels != -100
    logits, gold = outputs.logits[kept], labels[kept]
    gold_logits = logits.gather(1, gold[:, None]).squeeze(1)
    return {
        "loss": float(outputs.loss),
        "mean_gold_probability": float(logits.softmax(-1).gather(1, gold[:, None]).mean()),
        "gold_logit_above_mean": float((gold_logits - logits.mean(-1)).mean()),
        "hidden_norm": float(outputs.decoder_hidden_states[-1][kept].norm(dim=-1).mean()),
        "output_embedding_norm": float(model.get_output_embeddings().weight.norm(dim=-1).mean()),
    }


def logit_statistics_main(args: list[str] | None = None) -> dict[str, dict[str, float]]:
    """`python scripts/logit_statistics.py FOLDER [FOLDER ...]`: output-layer statistics on 300 validation pairs."""
    import argparse

    from .data import load_translation_dataset

    parser = argparse.ArgumentParser(description=output_logit_statistics.__doc__.splitlines()[0])
    parser.add_argument("model_dirs", nargs="+", help="Translation model folders (e.g. outputs/bleu_study/dense).")
    parser.add_argument("--data_dir", default=None, help="Folder of split.lang files (default: Multi30k).")
    parser.add_argument("--max_pairs", type=int, default=300, help="Validation pairs (teacher-forced).")
    parsed = parser.parse_args(args)
    torch.set_num_threads(1)
    validation = load_translation_dataset("en", "de", data_dir=parsed.data_dir)["validation"]
    results = {}
    for model_dir in parsed.model_dirs:
        results[model_dir] = output_logit_statistics(model_dir, validation, parsed.max_pairs)
        print(model_dir, " ".join(f"{k}={v:.3f}" for k, v in results[model_dir].items()))
    return results


os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
