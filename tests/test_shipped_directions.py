"""The guard of the shipped directions (`hf_supermask/pretrained/supermask-multi30k-directions/`): one random network
(one seed, shape and joint tokenizer), one mask-only checkpoint per translation direction. Every direction must still
regenerate the same weights and masks, load into ONE model beside the others, and translate as measured when
switched to through the pipeline's task. A change that would break published checkpoints fails here."""

from __future__ import annotations

import json

import pytest
from conftest import read_lines
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, pipeline

from hf_supermask.pretrained import SHIPPED_DIRECTIONS


# The random weights every direction was found over (seed 0, d_model 256, ffn 1024, 3+3 layers, 10k joint vocabulary).
WEIGHTS_SHA256 = "15f7726c9393a3acc1bf4d3ea1a837c43e97d4620e154a2373d6573e1e9cf821"
# The forward settings and the joint tokenizer every direction shares (recorded when the folders were re-saved with the
# whole identity, 2026-12-06, from their unchanged masks).
FORWARD_CONFIG_SHA256 = "c244ee5cae3b68ff890bc8533d2d2e3b8a78a828c2258efc2e110e0d71ec4097"
TOKENIZER_SHA256 = "e0a6c23247b459a7633595a2229752691059e8eb84cf4344d36866248873387c"
# Per direction, recorded when it was shipped: its masks' fingerprint, and greedy BLEU on the first 50
# test_2016_flickr sentences then (the floor below it leaves room for float noise across machines, not for a bug).
SHIPPED = {
    "de-en": ("a57687b1cc282a004200823c682b9e895b9a02cc9edd08a54ec94530056d4ed4", 28.12),
    "en-de": ("dbc30e1690a8d4387a7d279d2b569ad0f56b71e3a1b541ad9e2bb8eaa3a3934c", 24.82),
    "en-fr": ("5f2afc1187b0077c98b30e0a6e4ca231df25e051b21a65424afe9765be533500", 39.32),
    "en-cs": ("5e8b252e95b92cd72a87d1f8ae6158f8e1fe44e70206ae3adb3658612c31a6fe", 23.05),
}
FLOOR_MARGIN = 3.0
NUM_SENTENCES = 50


def test_the_shipped_directions_are_the_recorded_ones():
    shipped = {p.name for p in SHIPPED_DIRECTIONS.iterdir() if (p / "config.json").exists()}
    assert shipped == set(SHIPPED)
    for direction, (masks_sha256, _) in SHIPPED.items():
        config = json.loads((SHIPPED_DIRECTIONS / direction / "config.json").read_text())
        assert (config["weights_sha256"], config["masks_sha256"]) == (WEIGHTS_SHA256, masks_sha256), direction
        identity = (config["forward_config_sha256"], config["tokenizer_sha256"])
        assert identity == (FORWARD_CONFIG_SHA256, TOKENIZER_SHA256), direction
        assert f"{config['source_lang']}-{config['target_lang']}" == direction


@pytest.fixture(scope="module")
def one_model_all_directions():
    """One model holding every shipped direction, each set named after its direction."""
    first, *others = sorted(SHIPPED)
    model = AutoModelForSeq2SeqLM.from_pretrained(SHIPPED_DIRECTIONS / first).eval()
    model.rename_mask_set("default", first)
    for direction in others:
        model.load_masks(SHIPPED_DIRECTIONS / direction, direction)
    return model


@pytest.mark.parametrize("direction", sorted(SHIPPED))
def test_one_model_translates_every_shipped_direction_as_measured(one_model_all_directions, direction):
    from hf_supermask.metrics import load_translation_metric

    model = one_model_all_directions
    assert model.random_weights.fingerprint == WEIGHTS_SHA256
    source, target = direction.split("-")
    tokenizer = AutoTokenizer.from_pretrained(SHIPPED_DIRECTIONS / direction)
    translator = pipeline(f"translation_{source}_to_{target}", model=model, tokenizer=tokenizer, device="cpu")
    active = model.active_masks
    sources = read_lines("test_2016_flickr", source, NUM_SENTENCES)
    outputs = [o["translation_text"] for o in translator(sources, batch_size=25, num_beams=1)]
    assert model.active_masks == active  # the pipeline switched for its call only
    model.set_active_masks(direction)
    assert model.masks_fingerprint() == SHIPPED[direction][0]
    references = read_lines("test_2016_flickr", target, NUM_SENTENCES)
    bleu = load_translation_metric().compute(predictions=outputs, references=references)["bleu"]
    floor = SHIPPED[direction][1] - FLOOR_MARGIN
    assert bleu >= floor, f"{direction}: BLEU {bleu:.2f} on {NUM_SENTENCES} test sentences, under the floor {floor:.2f}"
