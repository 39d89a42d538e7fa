# Copyright 2026 The hf_supermask Authors. Licensed under the Apache License, Version 2.0.
"""Teacher-forced statistics of a translation model's output layer: can its softmax be sharp?"""

from __future__ import annotations

import os

import torch


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
    outputs = model(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=labels, output_hidden_states=True
    )
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


def main(args: list[str] | None = None) -> dict[str, dict[str, float]]:
    """`python scripts/logit_statistics.py FOLDER [FOLDER ...]`: output-layer statistics on 300 validation pairs."""
    import argparse

    from hf_supermask.data import load_translation_dataset

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
