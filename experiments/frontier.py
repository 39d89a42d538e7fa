# Copyright 2026 The hf_supermask Authors. Licensed under the Apache License, Version 2.0.
"""The compression frontier: test BLEU against stored bits per weight (`scripts/frontier.py`).

Two commands. `table` measures what each frontier row stores (its mask file as the training script saved it, packed,
and the same masks re-saved as `initial_xor_lzma`; the rows are study rows run into `benchmarks/frontier/<variant>/`
with their checkpoints in `outputs/frontier/<variant>/`), records it in the row's JSON (`stored_bits_per_weight`: the
mask file's bits over the maskable weights) and draws the table and the figure beside the dense reference points:

    python scripts/frontier.py table --results_dir benchmarks/frontier --checkpoints_dir outputs/frontier \
        --dense_row benchmarks/bleu_study/round3/dense.json \
        --extra_rows 'plain (round 3)=benchmarks/bleu_study/round3/supermask_signed_constant.json'

`references` measures the dense model's reference points: the same trained MarianMTModel stored as float32, as float16
(weights rounded to float16 and computed in float32, so the figure is the storage's cost alone) and as CTranslate2
exports (float32, to separate what the conversion does from what int8 does, and int8), each translating
test_2016_flickr with the model's saved decoding settings. Bits per weight are the
stored file's bits over the model's parameters (the tied embedding counted once); the whole folder's bytes sit beside
them.

    python scripts/frontier.py references --dense_dir outputs/round4/dense \\
        --output_json benchmarks/frontier/dense_references.json
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from experiments.benchmark_deploy import saved_decoding
from experiments.measure import git_commit, machine_info, maskable_weights


def _test_set(data_dir: str | None, source_lang: str, target_lang: str) -> tuple[list[str], list[str]]:
    from hf_supermask.data import load_translation_dataset

    pairs = load_translation_dataset(source_lang, target_lang, data_dir=data_dir)["test"]
    return [p["translation"][source_lang] for p in pairs], [p["translation"][target_lang] for p in pairs]


def _decoding(model_dir: Path) -> dict[str, Any]:
    from transformers import GenerationConfig

    return {"num_beams": GenerationConfig.from_pretrained(model_dir).num_beams or 5, **saved_decoding(model_dir)}


def measure_dense_references(
    dense_dir: str,
    data_dir: str | None = None,
    source_lang: str = "en",
    target_lang: str = "de",
    batch_size: int = 32,
    log=print,
) -> dict[str, Any]:
    import torch
    from transformers import AutoTokenizer, MarianMTModel, pipeline

    from hf_supermask.deploy import CTranslate2Translator
    from hf_supermask.export import export_ctranslate2_folder
    from hf_supermask.files import folder_bytes
    from hf_supermask.metrics import load_translation_metric

    dense_dir = Path(dense_dir)
    sources, references = _test_set(data_dir, source_lang, target_lang)
    decoding = _decoding(dense_dir)
    metric = load_translation_metric()
    model = MarianMTModel.from_pretrained(dense_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(dense_dir)
    parameters = sum(p.numel() for p in model.parameters())  # tied tensors once (`parameters()` deduplicates)

    def score(translations: list[str]) -> dict[str, float]:
        result = metric.compute(predictions=translations, references=references)
        return {"test_bleu": result["bleu"], "test_chrf": result["chrf"]}

    def pipeline_bleu(model) -> dict[str, float]:
        translator = pipeline("translation", model=model, tokenizer=tokenizer, device="cpu")
        with torch.inference_mode():
            outputs = translator(sources, batch_size=batch_size, max_length=None, **decoding)
        return score([o["translation_text"] for o in outputs])

    rows = []
    with tempfile.TemporaryDirectory() as work:
        for name, dtype in (("dense float32", torch.float32), ("dense float16", torch.float16)):
            log(f"{name}: translating {len(sources)} test sentences")
            stored = MarianMTModel.from_pretrained(dense_dir, dtype=dtype)
            folder = Path(work) / name.replace(" ", "_")
            stored.save_pretrained(folder)
            tokenizer.save_pretrained(folder)
            computing = stored.float().eval()  # float16 storage, float32 compute: the storage's cost alone
            weights_bytes = folder_bytes(folder, "*.safetensors")
            rows.append(
                {
                    "row": name,
                    **pipeline_bleu(computing),
                    "stored_bits_per_weight": 8 * weights_bytes / parameters,
                    "weights_file_bytes": weights_bytes,
                    "folder_bytes": folder_bytes(folder),
                }
            )
        for quantization in ("float32", "int8"):  # float32 too: what the conversion alone does to the scores
            name = f"dense CTranslate2 {quantization}"
            log(f"{name}: exporting and translating")
            exported = export_ctranslate2_folder(
                dense_dir, Path(work) / f"ct2-{quantization}", None if quantization == "float32" else quantization
            )
            translator = CTranslate2Translator(exported, threads=torch.get_num_threads())
            weights_bytes = folder_bytes(exported, "model.bin")
            rows.append(
                {
                    "row": name,
                    **score(translator(sources, batch_size=batch_size, **decoding)),
                    "stored_bits_per_weight": 8 * weights_bytes / parameters,
                    "weights_file_bytes": weights_bytes,
                    "folder_bytes": folder_bytes(exported),
                }
            )
    for row in rows:
        log(f"{row['row']}: test BLEU {row['test_bleu']:.2f}, {row['stored_bits_per_weight']:.2f} bits per weight")
    return {
        "dense_dir": str(dense_dir),
        "parameters": parameters,
        "decoding": decoding,
        "test_sentences": len(sources),
        "git_commit": git_commit(),
        "machine": machine_info(),
        "rows": rows,
    }


def _maskable_weights(row: dict[str, Any], checkpoint: Path | None = None) -> int:
    """Maskable weights of a row's model: from its checkpoint's config, else from its recipe and the vocabulary size
    its command names."""
    import shlex

    from hf_supermask.modeling import SupermaskConfig

    if checkpoint is not None and (checkpoint / "config.json").exists():
        config = SupermaskConfig.from_pretrained(checkpoint)
    else:
        command = shlex.split(row.get("command", ""))
        vocab_size = int(command[command.index("--vocab_size") + 1]) if "--vocab_size" in command else 8000
        config = SupermaskConfig(vocab_size=vocab_size)
        config.update_from_string(",".join(f"{k}={v}" for k, v in row["recipe"].items() if hasattr(config, k)))
    return maskable_weights(config)


def measure_stored_bits(row_json: Path, checkpoint: Path | None) -> dict[str, Any]:
    """What a finished frontier row stores, written into its JSON: bits per maskable weight of its mask file (packed,
    as saved) and, with its checkpoint at hand, of the same masks coded (`initial_xor_lzma`, re-saved in a temporary
    folder: identical masks, checked by `from_pretrained`'s `masks_sha256`)."""
    import shutil

    from hf_supermask.files import folder_bytes
    from hf_supermask.resave import resave_checkpoint

    row = json.loads(row_json.read_text())
    maskable = _maskable_weights(row, checkpoint)
    row["maskable_weights"] = maskable
    row["stored_bits_per_weight"] = 8 * row["checkpoint_weights_bytes"] / maskable
    if checkpoint is not None and (checkpoint / "config.json").exists():
        with tempfile.TemporaryDirectory() as work:
            copy = Path(work) / "coded"
            shutil.copytree(checkpoint, copy, ignore=shutil.ignore_patterns("checkpoint-*", "runs"))
            # The folder as training left it (masks, config, tokenizer, code, curves, logs), packed then coded.
            row["packed_folder_bytes"] = folder_bytes(copy)
            resave_checkpoint(copy, mask_encoding="initial_xor_lzma")
            row["coded_weights_bytes"] = folder_bytes(copy, "*.safetensors")
            row["coded_folder_bytes"] = folder_bytes(copy)
        row["stored_bits_per_weight_coded"] = 8 * row["coded_weights_bytes"] / maskable
    row_json.write_text(json.dumps(row, indent=2) + "\n")
    return row


def _variant(recipe: dict[str, str]) -> str:
    if float(recipe.get("frozen_fraction", 0)):
        return f"frozen {float(recipe['frozen_fraction']):g}"
    if int(recipe.get("coats", 1)) > 1:
        return f"{recipe['coats']} coats (ratio {float(recipe.get('coat_density_ratio', 0.5)):g})"
    return "plain"


def frontier_points(
    results_dir: Path, checkpoints_dir: Path | None, extra_rows: dict[str, Path], log=print
) -> list[dict[str, Any]]:
    """One point per (row, encoding): the supermask rows under `results_dir/<variant>/` (each the study's best
    random-embedding row plus one setting; checkpoints in `checkpoints_dir/<variant>/<row>`) and `extra_rows` (label ->
    row JSON)."""
    rows = {}
    for row_json in sorted(results_dir.glob("*/*.json")):
        recorded = json.loads(row_json.read_text())
        if recorded.get("model_type") != "supermask":
            continue  # a dense row (the reference) or no study row
        checkpoint = None if checkpoints_dir is None else checkpoints_dir / row_json.parent.name / recorded["row"]
        if "stored_bits_per_weight" not in recorded:
            log(f"measuring what {row_json.parent.name} stores")
            recorded = measure_stored_bits(row_json, checkpoint)  # (and writes it into the row's JSON)
        rows[row_json.parent.name] = recorded
    for label, row_json in extra_rows.items():
        row = json.loads(Path(row_json).read_text())
        row["maskable_weights"] = _maskable_weights(row)
        row["stored_bits_per_weight"] = 8 * row["checkpoint_weights_bytes"] / row["maskable_weights"]
        rows[label] = row
    points = []
    for label, row in rows.items():
        common = {"label": label, "variant": _variant(row["recipe"]), "test_bleu": row["test_bleu"], "row": row}
        points.append(
            {
                **common,
                "encoding": "packed",
                "bits": row["stored_bits_per_weight"],
                "weights_bytes": row["checkpoint_weights_bytes"],
                "folder_bytes": row.get("packed_folder_bytes", row["checkpoint_folder_bytes"]),
            }
        )
        if "stored_bits_per_weight_coded" in row:
            points.append(
                {
                    **common,
                    "encoding": "initial_xor_lzma",
                    "bits": row["stored_bits_per_weight_coded"],
                    "weights_bytes": row["coded_weights_bytes"],
                    "folder_bytes": row["coded_folder_bytes"],
                }
            )
    return sorted(points, key=lambda p: p["bits"])


def format_frontier(points: list[dict[str, Any]], dense: dict[str, Any], references: dict[str, Any] | None) -> str:
    dense_bleu = dense["test_bleu"]
    lines = [
        f"| masks | row | stored as | bits per maskable weight | test BLEU | x dense ({dense_bleu:.2f}) | mask file | "
        "whole folder |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for p in points:
        lines.append(
            f"| {p['variant']} | {p['label']} | {p['encoding']} | {p['bits']:.3f} | {p['test_bleu']:.2f} | "
            f"{p['test_bleu'] / dense_bleu:.3f} | {p['weights_bytes']:,} | {p['folder_bytes']:,} |"
        )
    if references:
        reference_bleu = references["rows"][0]["test_bleu"]
        lines += [
            "",
            f"Dense reference points (the round-4 dense model trained to its plateau, float32 test BLEU "
            f"{reference_bleu:.2f}; bits per parameter):",
            "",
            "| model | bits per weight | test BLEU | x its float32 | weights file | whole folder |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for r in references["rows"]:
            lines.append(
                f"| {r['row']} | {r['stored_bits_per_weight']:.2f} | {r['test_bleu']:.2f} | "
                f"{r['test_bleu'] / reference_bleu:.3f} | {r['weights_file_bytes']:,} | {r['folder_bytes']:,} |"
            )
    return "\n".join(lines)


def plot_frontier(
    points: list[dict[str, Any]], dense: dict[str, Any], references: dict[str, Any] | None, path: Path
) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7.5, 4.5))
    FigureCanvasAgg(figure)
    ax = figure.add_subplot(1, 1, 1)
    markers = {"packed": "o", "initial_xor_lzma": "D"}
    for variant in sorted({p["variant"] for p in points}):
        group = [p for p in points if p["variant"] == variant]
        line = ax.plot([p["bits"] for p in group], [p["test_bleu"] for p in group], "-", alpha=0.4)[0]
        for p in group:
            ax.plot(p["bits"], p["test_bleu"], markers[p["encoding"]], color=line.get_color())
        ax.annotate(
            variant, (group[0]["bits"], group[0]["test_bleu"]), textcoords="offset points", xytext=(4, -12), fontsize=8
        )
    ax.axhline(dense["test_bleu"], color="gray", linestyle="--", linewidth=1)
    ax.annotate(
        f"dense float32, same budget ({dense['test_bleu']:.2f})",
        (0.25, dense["test_bleu"]),
        textcoords="offset points",
        xytext=(0, 3),
        fontsize=8,
        color="gray",
    )
    for r in (references or {}).get("rows", []):
        ax.plot(r["stored_bits_per_weight"], r["test_bleu"], "s", color="black")
        ax.annotate(
            r["row"].replace("dense ", ""),
            (r["stored_bits_per_weight"], r["test_bleu"]),
            textcoords="offset points",
            xytext=(-10, -12),
            fontsize=7,
        )
    ax.set_xscale("log", base=2)
    ax.set_xlim(0.2, 48)
    ax.set_xlabel("stored bits per maskable weight (log scale; dense: per parameter)")
    ax.set_ylabel("test BLEU (test_2016_flickr, beam 5)")
    ax.set_title("Found translators: BLEU against bits (circles packed, diamonds coded, squares dense)", fontsize=9)
    ax.grid(True, alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def write_frontier(
    results_dir: str,
    checkpoints_dir: str | None,
    dense_row: str,
    extra_rows: dict[str, str],
    references_json: str | None,
) -> str:
    results_dir = Path(results_dir)
    points = frontier_points(results_dir, checkpoints_dir and Path(checkpoints_dir), extra_rows)
    dense = json.loads(Path(dense_row).read_text())
    references = json.loads(Path(references_json).read_text()) if references_json else None
    table = format_frontier(points, dense, references)
    summary = [
        {k: v for k, v in p.items() if k != "row"}
        | {"recipe": p["row"]["recipe"], "git_commit": p["row"]["git_commit"]}
        for p in points
    ]
    (results_dir / "frontier.json").write_text(
        json.dumps({"dense_row": dense_row, "dense_test_bleu": dense["test_bleu"], "points": summary}, indent=2) + "\n"
    )
    plot_frontier(points, dense, references, results_dir / "frontier.png")
    return table


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    references = commands.add_parser("references", help="the dense model's float32, float16 and int8 points")
    references.add_argument("--dense_dir", required=True, help="a trained MarianMTModel folder (the study's dense row)")
    references.add_argument("--data_dir", help="Multi30k folder (default: ../shared/data/multi30k)")
    references.add_argument("--output_json", required=True)
    table = commands.add_parser("table", help="measure the rows' stored bits; write frontier.json, .png, the table")
    table.add_argument("--results_dir", default="benchmarks/frontier", help="one folder of study rows per variant")
    table.add_argument("--checkpoints_dir", help="the rows' --output_dir parent (for the coded size)")
    table.add_argument("--dense_row", required=True, help="the dense study row of the same budget (its JSON)")
    table.add_argument("--extra_rows", default="", help="'label=row.json;...': rows measured elsewhere (packed only)")
    table.add_argument("--references_json", default="benchmarks/frontier/dense_references.json")
    args = parser.parse_args(argv)
    if args.command == "table":
        extra = dict(part.split("=", 1) for part in args.extra_rows.split(";") if part)
        print(write_frontier(args.results_dir, args.checkpoints_dir, args.dense_row, extra, args.references_json))
        return
    results = measure_dense_references(args.dense_dir, data_dir=args.data_dir)
    Path(args.output_json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output_json).write_text(json.dumps(results, indent=2) + "\n")


__all__ = ["frontier_points", "measure_dense_references", "measure_stored_bits", "write_frontier"]
