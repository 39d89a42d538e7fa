# Copyright 2026 The hf_supermask Authors. Licensed under the Apache License, Version 2.0.
"""One random network, many translators: several directions' masks over one seed, one shape, one joint tokenizer.

Each direction is a run of the BLEU study (experiments/bleu_study.py: same budget, recipe, decoding chosen on
validation, test_2016_flickr reported) with its own languages, in `<output_dir>/<direction>/`, results in
`<results_dir>/<direction>/`. Every direction shares the tokenizer in `<output_dir>/tokenizer` (trained once, on the
training text of all `--languages`), so every direction's model has the same vocabulary, seed and shape, hence the
same random weights (`weights_sha256`): their masks can be loaded into one model and switched
(`model.load_masks`, `model.set_active_masks`). A dense Marian of the same shape is trained the same way for
`--dense_directions` (the ratio per direction).

Each finished direction's mask-only model is copied to `<models_dir>/<direction>/` (by default the package's
`pretrained/supermask-multi30k-directions/`, committed): the report and the mask-set benchmark read those, so they
need no retraining, and users get the four directions with the package.

The report (`<results_dir>/results.md`, `mask_overlap.png`) is rebuilt from whatever has finished: per direction the
test BLEU, chrF and bytes; the overlap of the directions' masks by module kind and layer against chance; and what
non-target combinations (one direction's encoder masks with another's decoder masks) produce.

Runs are resumable like the study's rows; two processes can share the work (`--directions en-de,de-en` and
`--directions en-fr,en-cs`, one thread each).
"""

from __future__ import annotations

import itertools
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from experiments.bleu_study import StudyArguments, run_study
from hf_supermask.pretrained import SHIPPED_DIRECTIONS


logger = logging.getLogger(__name__)


@dataclass
class DirectionsArguments:
    directions: str = field(
        default="en-de,de-en,en-fr,en-cs",
        metadata={"help": "Directions whose masks are found, `src-tgt`, comma-separated."},
    )
    dense_directions: str = field(
        default="de-en,en-fr",
        metadata={"help": "Directions that also get a dense Marian of the same shape (the ratio)."},
    )
    languages: str = field(default="en,de,fr,cs", metadata={"help": "Languages of the joint tokenizer."})
    vocab_size: int = field(default=10000, metadata={"help": "Joint BPE vocabulary over all --languages."})
    recipe: str = field(
        default="",
        metadata={
            "help": "Settings on top of the study's recipe for the supermask runs (`key=value,...`, as the study's "
            "--row_recipes); the recipe itself is the library's defaults (SupermaskConfig, the training script)."
        },
    )
    dense_recipe: str = field(
        default="", metadata={"help": "Settings on top of the defaults for the dense Marian of --dense_directions."}
    )
    max_steps: int = field(default=1500, metadata={"help": "Updates per direction (the same for every run)."})
    output_dir: str = field(default="outputs/directions", metadata={"help": "Checkpoints (not committed)."})
    results_dir: str = field(default="benchmarks/directions", metadata={"help": "JSONs, table, figure (committed)."})
    models_dir: str = field(
        default=str(SHIPPED_DIRECTIONS),
        metadata={
            "help": "Where each finished direction's mask-only model (masks, config, tokenizer, card; about "
            "1.7 MB) is copied as `<models_dir>/<direction>/`: committed and shipped with the package, so the "
            "analysis, the mask-set benchmark and users need no retraining."
        },
    )
    data_dir: str | None = field(default=None, metadata={"help": "Folder of split.lang files (default: Multi30k)."})
    threads: int = field(default=1, metadata={"help": "torch threads (run two processes side by side with 1 each)."})
    combinations: str = field(
        default="en-de+en-fr,en-fr+en-de",
        metadata={
            "help": "Non-target combinations `encoder_direction+decoder_direction` to translate the test set "
            "with (the encoder direction's source language in, scored against both target languages)."
        },
    )
    report_only: bool = field(default=False, metadata={"help": "Rebuild the report from finished runs; train nothing."})
    smoke: bool = field(default=False, metadata={"help": "Tiny shape, a few steps: checks the pipeline only."})


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def direction_languages(direction: str) -> tuple[str, str]:
    source, sep, target = direction.partition("-")
    if not sep or not source or not target or source == target:
        raise ValueError(
            f"A direction is `source-target` with two different language ids, e.g. 'en-fr'; got {direction!r}."
        )
    return source, target


def study_arguments(args: DirectionsArguments, direction: str) -> StudyArguments:
    """The BLEU study's arguments for one direction: its languages, the shared tokenizer, the shared recipe."""
    source, target = direction_languages(direction)
    rows = "supermask" + (",dense" if direction in _split(args.dense_directions) else "")
    return StudyArguments(
        output_dir=str(Path(args.output_dir) / direction),
        results_dir=str(Path(args.results_dir) / direction),
        rows=rows,
        source_lang=source,
        target_lang=target,
        tokenizer_languages=args.languages,
        tokenizer_dir=str(Path(args.output_dir) / "tokenizer"),
        vocab_size=args.vocab_size,
        row_recipes=f"supermask:{args.recipe};dense:{args.dense_recipe}",
        max_steps=args.max_steps,
        data_dir=args.data_dir,
        threads=args.threads,
        smoke=args.smoke,
    )


def ship_direction(args: DirectionsArguments, direction: str) -> Path | None:
    """Copy a finished direction's mask-only model to `<models_dir>/<direction>/` (with its card), unless there."""
    from experiments.bleu_study import ship_row

    destination = Path(args.models_dir) / direction
    if (destination / "config.json").exists() or _finished(args, direction, "supermask") is None:
        return None
    if not (Path(args.output_dir) / direction / "supermask" / "model.safetensors").exists():
        logger.warning(
            "Direction %s finished, but its checkpoint is not in %s: not shipped.", direction, args.output_dir
        )
        return None
    return ship_row(
        Path(args.results_dir) / direction,
        Path(args.output_dir) / direction,
        "supermask",
        destination,
        model_name=f"supermask-multi30k-{direction}",
    )


def _finished(args: DirectionsArguments, direction: str, row: str) -> dict[str, Any] | None:
    path = Path(args.results_dir) / direction / f"{row}.json"
    return json.loads(path.read_text()) if path.exists() else None


def direction_table(args: DirectionsArguments) -> list[str]:
    lines = [
        "| direction | supermask test BLEU | chrF | mask-only weights file | dense test BLEU | dense weights file "
        "| BLEU / dense |",
        "|---|---|---|---|---|---|---|",
    ]
    mib = lambda n: f"{n / 2**20:.2f} MiB"  # noqa: E731
    for direction in _split(args.directions):
        masks, dense = _finished(args, direction, "supermask"), _finished(args, direction, "dense")
        if masks is None:
            continue
        if dense:
            dense_cells = (
                f"{dense['test_bleu']:.2f} | {mib(dense['checkpoint_weights_bytes'])} | "
                f"{masks['test_bleu'] / dense['test_bleu']:.2f}"
            )
        else:
            dense_cells = "not trained | | n/a"
        lines.append(
            f"| {direction} | {masks['test_bleu']:.2f} | {masks['test_chrf']:.2f} | "
            f"{mib(masks['checkpoint_weights_bytes'])} | {dense_cells} |"
        )
    return lines


def _combination_scores(args: DirectionsArguments, models: dict[str, Any], combination: str) -> list[str]:
    """Translate test_2016_flickr with one direction's encoder masks and another's decoder masks; score the output
    against the references of both target languages."""
    from transformers import AutoTokenizer, pipeline

    from experiments.mask_analysis import combine_masks
    from hf_supermask.data import load_translation_dataset, select_max_samples
    from hf_supermask.metrics import load_translation_metric

    encoder_direction, _, decoder_direction = combination.partition("+")
    if encoder_direction not in models or decoder_direction not in models:
        return []
    source, encoder_target = direction_languages(encoder_direction)
    decoder_source, decoder_target = direction_languages(decoder_direction)
    model = combine_masks(models[encoder_direction], models[decoder_direction])
    tokenizer = AutoTokenizer.from_pretrained(Path(args.models_dir) / encoder_direction)
    translator = pipeline("translation", model=model, tokenizer=tokenizer, device="cpu")
    metric = load_translation_metric()
    lines, outputs = [], None
    for reference_lang in dict.fromkeys((encoder_target, decoder_target)):
        raw = load_translation_dataset(source, reference_lang, data_dir=args.data_dir)
        test = select_max_samples(raw, None, None, 8 if args.smoke else None)["test"]
        if outputs is None:  # Multi30k is line-aligned: the same English sources for every reference language
            sources = [p["translation"][source] for p in test]
            outputs = [o["translation_text"] for o in translator(sources, batch_size=32, num_beams=5)]
        scores = metric.compute(predictions=outputs, references=[p["translation"][reference_lang] for p in test])
        lines.append(
            f"| {source} in; encoder {encoder_direction}, decoder {decoder_direction} | {reference_lang} "
            f"| {scores['bleu']:.2f} | {scores['chrf']:.2f} | {outputs[0]!r} |"
        )
    return lines


def analysis(args: DirectionsArguments) -> list[str]:
    """Overlap of the finished directions' masks (table + figure), and the non-target combinations."""
    from transformers import AutoModelForSeq2SeqLM

    from experiments.mask_analysis import mask_overlap, overlap_table, plot_overlaps

    folders = {d: Path(args.models_dir) / d for d in _split(args.directions) if _finished(args, d, "supermask")}
    missing = [d for d, folder in folders.items() if not (folder / "config.json").exists()]
    notes = []
    if missing:
        notes = [
            "",
            f"Finished without a model in {os.path.relpath(args.models_dir)} (so not analysed below): "
            f"{', '.join(missing)}. "
            "A finished run is copied there from its --output_dir; to recreate one, run that direction again "
            "with another --results_dir (runs are deterministic on one machine).",
        ]
        logger.warning(notes[-1])
    models = {d: AutoModelForSeq2SeqLM.from_pretrained(f).eval() for d, f in folders.items() if d not in missing}
    if len(models) < 2:
        return notes
    overlaps = {f"{a} / {b}": mask_overlap(models[a], models[b]) for a, b in itertools.combinations(models, 2)}
    plot_overlaps(overlaps, Path(args.results_dir) / "mask_overlap.png")
    lines = [
        *notes,
        "",
        "Overlap of the directions' masks (fraction of kept positions in common; chance = density):",
        "",
        overlap_table(overlaps),
    ]
    combined = [line for c in _split(args.combinations) for line in _combination_scores(args, models, c)]
    if combined:
        lines += [
            "",
            "Non-target combinations on test_2016_flickr (beam 5):",
            "",
            "| masks | scored against | BLEU | chrF | first output |",
            "|---|---|---|---|---|",
            *combined,
        ]
    return lines


def write_report(args: DirectionsArguments) -> str:
    results_dir = Path(args.results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    lines = [
        f"Multi30k, test_2016_flickr; every direction over one seed, shape and {args.vocab_size}-entry tokenizer "
        f"({args.languages}); {args.max_steps} updates each; supermask recipe `{args.recipe}`, "
        f"dense recipe `{args.dense_recipe}`.",
        "",
        *direction_table(args),
        *analysis(args),
    ]
    table = "\n".join(lines)
    (results_dir / "results.md").write_text(table + "\n")
    return table


def run_directions(args: DirectionsArguments) -> str:
    torch.set_num_threads(args.threads)
    for direction in _split(args.directions):
        direction_languages(direction)  # refuse a malformed list before any work
    if not args.report_only:
        for direction in _split(args.directions):
            study = study_arguments(args, direction)
            run_study(study)
            ship_direction(args, direction)
    return write_report(args)


def main(argv: list[str] | None = None) -> str:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # before tokenizers fork
    from transformers import HfArgumentParser

    import hf_supermask  # noqa: F401  (Auto classes, the translation pipeline)

    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", level=logging.INFO)
    (args,) = HfArgumentParser(DirectionsArguments).parse_args_into_dataclasses(args=argv)
    table = run_directions(args)
    print(table)
    return table
