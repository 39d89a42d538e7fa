"""Smoke mode of the multi-direction study: directions over one seed share their random weights, and their masks
load into one model and switch."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import DATA_DIR
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, pipeline

from experiments.directions import main


def test_directions_share_one_random_network(tmp_path):
    flags = [
        "--smoke",
        "true",
        "--data_dir",
        str(DATA_DIR),
        "--output_dir",
        str(tmp_path / "out"),
        "--results_dir",
        str(tmp_path / "results"),
        "--models_dir",
        str(tmp_path / "models"),
        "--directions",
        "en-de,en-fr",
        "--dense_directions",
        "en-fr",
        "--combinations",
        "en-de+en-fr",
    ]
    table = main(flags)
    results = {d: json.loads((tmp_path / "results" / d / "supermask.json").read_text()) for d in ("en-de", "en-fr")}
    assert results["en-fr"]["direction"] == "en-fr" and results["en-fr"]["tokenizer_languages"] == [
        "en",
        "de",
        "fr",
        "cs",
    ]
    assert (tmp_path / "results" / "en-fr" / "dense.json").exists() and not (
        tmp_path / "results" / "en-de" / "dense.json"
    ).exists()
    # both model types get the BLEU study's chosen recipe, which is the library's defaults (dropout 0 for each)
    supermask = json.loads((tmp_path / "models" / "en-fr" / "config.json").read_text())
    dense = json.loads((tmp_path / "out" / "en-fr" / "dense" / "config.json").read_text())
    assert supermask["dropout"] == 0 and dense["dropout"] == 0
    assert supermask["output_scale"] == 2 and supermask["attention_init"] == "fairseq"
    assert "| en-fr |" in table and "| en-de |" in table and "not trained" in table  # en-de has no dense run
    assert "en-de / en-fr" in table and "chance (= density)" in table  # the overlap table
    assert "encoder en-de, decoder en-fr" in table and (tmp_path / "results" / "mask_overlap.png").stat().st_size > 0

    # each finished direction is shipped as a mask-only model of its own, with the joint tokenizer and a card
    folders = {d: tmp_path / "models" / d for d in results}
    assert {p.name for p in folders["en-fr"].iterdir()} >= {
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "README.md",
    }
    assert "language:\n- en\n- fr" in (folders["en-fr"] / "README.md").read_text()
    german, french = (AutoModelForSeq2SeqLM.from_pretrained(folders[d]).eval() for d in ("en-de", "en-fr"))
    assert german.config.weights_sha256 == french.config.weights_sha256  # one seed, shape and vocabulary
    assert german.config.masks_sha256 != french.config.masks_sha256
    # one model, both directions: switching gives the separately loaded model's logits
    german.load_masks(folders["en-fr"], "en-fr")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "out" / "tokenizer")
    batch = tokenizer(["A dog runs on the grass."], return_tensors="pt")
    labels = torch.tensor([[5, 6, 7, tokenizer.eos_token_id]])
    with torch.no_grad():
        german.set_active_masks("en-fr")
        torch.testing.assert_close(
            german(**batch, labels=labels).logits, french(**batch, labels=labels).logits, rtol=0, atol=0
        )
    # the pipeline picks the set from the task's direction
    translator = pipeline("translation_en_to_fr", model=german, tokenizer=tokenizer, device="cpu")
    assert (
        translator(["A dog runs."], max_new_tokens=4)[0]["translation_text"]
        == pipeline("translation", model=french, tokenizer=tokenizer, device="cpu")(["A dog runs."], max_new_tokens=4)[
            0
        ]["translation_text"]
    )


def test_directions_refuse_bad_input(tmp_path):
    with pytest.raises(ValueError, match="source-target"):
        main(["--directions", "en_fr", "--output_dir", str(tmp_path / "o"), "--results_dir", str(tmp_path / "r")])
    from experiments.bleu_study import main as study_main

    with pytest.raises(ValueError, match="lacks"):
        study_main(
            [
                "--source_lang",
                "en",
                "--target_lang",
                "fr",
                "--tokenizer_languages",
                "en,de",
                "--output_dir",
                str(tmp_path / "o"),
                "--results_dir",
                str(tmp_path / "r"),
            ]
        )


def test_a_tokenizer_trained_for_other_languages_is_refused(tmp_path):
    from experiments.bleu_study import LANGUAGES_FILE
    from experiments.bleu_study import main as study_main

    folder = tmp_path / "o" / "tokenizer"
    folder.mkdir(parents=True)
    (folder / "tokenizer.json").write_text("{}")
    (folder / LANGUAGES_FILE).write_text(json.dumps({"languages": ["en", "de"], "vocab_size": 8000}))
    with pytest.raises(ValueError, match="was trained for"):
        study_main(
            [
                "--source_lang",
                "en",
                "--target_lang",
                "fr",
                "--tokenizer_languages",
                "en,de,fr,cs",
                "--output_dir",
                str(tmp_path / "o"),
                "--results_dir",
                str(tmp_path / "r"),
            ]
        )
    (folder / LANGUAGES_FILE).unlink()  # made before the languages were recorded: unknown, so refused too
    with pytest.raises(ValueError, match="unknown languages"):
        study_main(["--output_dir", str(tmp_path / "o"), "--results_dir", str(tmp_path / "r")])
