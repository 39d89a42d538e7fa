"""The guard of published checkpoints: the model shipped with the package (and on the Hub) must still load to the same
random weights and masks, and still translate as measured. A change to the weight generator or to the model code
that would break checkpoints already published fails here."""

from __future__ import annotations

import json

import pytest
from conftest import read_lines
from transformers import AutoModelForSeq2SeqLM, pipeline

from hf_supermask.pretrained import SHIPPED_MODEL


# Recorded when the model was shipped (its card states them too). They move only with the shipped model.
WEIGHTS_SHA256 = "5f94f2b12ee7a307f9a31c370a375bb2884c3a8831c021d42dce8c692bb5198a"
MASKS_SHA256 = "ab3417c8ab530b520eea554123acdc91d1f53eff3040d3657bd4036e4184f3fb"
# The rest of its identity, recorded when it was shipped (2026-12-06).
FORWARD_CONFIG_SHA256 = "83fb18e7d2a73faea4e089aeeb54e39c87001c512709b04e6fa04a770891530f"
TOKENIZER_SHA256 = "832942b8c8319e77ad5f823aa6dc30a2dd18647e02bfb8ed502c98b58d541fba"
# BLEU of the first 100 test_2016_flickr sentences with the saved decoding, measured at shipping: 29.72
# (2026-12-06, the round-4 signed-constant row; the whole test set: 31.57). The floor leaves room for float noise
# across machines, not for a bug.
BLEU_FLOOR_100 = 26.5


@pytest.fixture(scope="module")
def shipped():
    return AutoModelForSeq2SeqLM.from_pretrained(SHIPPED_MODEL).eval()


def test_shipped_model_regenerates_the_same_weights_and_masks(shipped):
    config = json.loads((SHIPPED_MODEL / "config.json").read_text())
    assert (config["weights_sha256"], config["masks_sha256"]) == (WEIGHTS_SHA256, MASKS_SHA256)
    assert (config["forward_config_sha256"], config["tokenizer_sha256"]) == (FORWARD_CONFIG_SHA256, TOKENIZER_SHA256)
    assert (config["source_lang"], config["target_lang"]) == ("en", "de")
    assert shipped.config.forward_config_fingerprint() == FORWARD_CONFIG_SHA256
    # what from_pretrained regenerated and unpacked, fingerprinted again here
    assert shipped.random_weights.fingerprint == WEIGHTS_SHA256
    assert shipped.masks_fingerprint() == MASKS_SHA256


def test_shipped_model_still_translates_as_measured(shipped):
    from hf_supermask.metrics import load_translation_metric

    sources, references = read_lines("test_2016_flickr", "en", 100), read_lines("test_2016_flickr", "de", 100)
    translator = pipeline("translation", model=str(SHIPPED_MODEL), device="cpu")  # the saved decoding settings
    outputs = [o["translation_text"] for o in translator(sources, batch_size=32)]
    bleu = load_translation_metric().compute(predictions=outputs, references=references)["bleu"]
    assert bleu >= BLEU_FLOOR_100, f"BLEU {bleu:.2f} on 100 test sentences, under the shipped floor {BLEU_FLOOR_100}"
