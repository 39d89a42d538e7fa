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
"""Fast tests for the offline sacreBLEU metric, `compute_metrics`, training-curve plots and model cards.

All sentences are real Multi30k lines (conftest.DATA_DIR; nothing is made up).
"""

import socket

import numpy as np
import pytest
import sacrebleu
from conftest import DATA_DIR


PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _read_lines(name: str, n: int) -> list[str]:
    with open(DATA_DIR / name, encoding="utf-8") as f:
        return [next(f).rstrip("\n") for _ in range(n)]


@pytest.fixture(scope="module")
def references() -> list[str]:
    return _read_lines("test_2016_flickr.de", 40)


@pytest.fixture(scope="module")
def metric():
    from hf_supermask.metrics import load_translation_metric

    return load_translation_metric()


@pytest.fixture(scope="module")
def tokenizer():
    """A small byte-level BPE tokenizer trained on 300 real Multi30k lines; decoding is lossless."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    lines = _read_lines("train.de", 150) + _read_lines("train.en", 150)
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=["<pad>", "</s>", "<unk>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(lines, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")


# ---------------------------------------------------------------------------------------------------------------------
# Metric module
# ---------------------------------------------------------------------------------------------------------------------


def test_offline_load_uses_no_network(monkeypatch, references):
    """Loading by local path must not open any connection (HF_HUB_OFFLINE=1 or not)."""
    import evaluate

    from hf_supermask.metrics import METRIC_DIR, METRIC_SCRIPT, load_translation_metric

    def no_network(*args, **kwargs):
        raise AssertionError("network access attempted while loading a local metric")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)

    for loaded in (load_translation_metric(), evaluate.load(str(METRIC_DIR)), evaluate.load(str(METRIC_SCRIPT))):
        assert loaded.name == "sacrebleu_chrf"
        assert "Post, Matt" in loaded.citation
        result = loaded.compute(predictions=references[:3], references=references[:3])
        assert result["bleu"] == pytest.approx(100.0)


def test_identity_gives_100(metric, references):
    result = metric.compute(predictions=references, references=references)
    assert result["bleu"] == pytest.approx(100.0)
    assert result["chrf"] == pytest.approx(100.0)
    assert result["bp"] == pytest.approx(1.0)
    assert result["precisions"] == pytest.approx([100.0] * 4)
    assert result["sys_len"] == result["ref_len"] > 0
    assert result["bleu_signature"].startswith("nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:")
    assert "nc:6" in result["chrf_signature"]
    assert set(result) >= {"bleu", "chrf", "bleu_signature", "chrf_signature", "counts", "totals", "precisions"}


@pytest.mark.parametrize("degradation", ["shuffled", "truncated"])
def test_degraded_matches_sacrebleu(metric, references, degradation):
    if degradation == "shuffled":
        predictions = references[1:] + references[:1]
    else:
        predictions = [" ".join(ref.split()[: max(1, len(ref.split()) // 2)]) for ref in references]

    result = metric.compute(predictions=predictions, references=references)
    expected_bleu = sacrebleu.corpus_bleu(predictions, [references])
    expected_chrf = sacrebleu.corpus_chrf(predictions, [references])
    assert 0.0 <= result["bleu"] < 100.0
    assert result["bleu"] == pytest.approx(expected_bleu.score)
    assert result["chrf"] == pytest.approx(expected_chrf.score)
    assert result["counts"] == list(expected_bleu.counts)
    assert result["bp"] == pytest.approx(expected_bleu.bp)

    # One reference per prediction given as list-of-lists scores the same.
    nested = metric.compute(predictions=predictions, references=[[ref] for ref in references])
    assert nested["bleu"] == pytest.approx(result["bleu"])
    assert nested["chrf"] == pytest.approx(result["chrf"])


# ---------------------------------------------------------------------------------------------------------------------
# compute_metrics for Seq2SeqTrainer
# ---------------------------------------------------------------------------------------------------------------------


def _batch(tokenizer, texts: list[str], fill: int, start_token: bool, pad_rows_with_pad: bool = False) -> np.ndarray:
    ids = [tokenizer(t, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id] for t in texts]
    if start_token:  # generate() output starts with the decoder start token (here: pad)
        ids = [[tokenizer.pad_token_id] + row for row in ids]
    width = max(len(row) for row in ids) + 2
    out = np.full((len(ids), width), fill, dtype=np.int64)
    for i, row in enumerate(ids):
        out[i, : len(row)] = row
        if pad_rows_with_pad and i % 2 == 0:
            # Mimic generate(): pad within a batch, -100 only where the Trainer concatenates batches.
            out[i, len(row) :] = tokenizer.pad_token_id
    return out


def test_compute_metrics_identity_and_minus_100(tokenizer, metric, references):
    from hf_supermask.metrics import make_compute_metrics

    refs = references[:12]
    # The tokenizer round-trips these real sentences exactly.
    assert tokenizer.batch_decode([tokenizer(r)["input_ids"] for r in refs], skip_special_tokens=True) == refs

    labels = _batch(tokenizer, refs, fill=-100, start_token=False)
    preds = _batch(tokenizer, refs, fill=-100, start_token=True, pad_rows_with_pad=True)
    assert (labels == -100).any() and (preds == -100).any()

    compute_metrics = make_compute_metrics(tokenizer, metric=metric)
    result = compute_metrics((preds, labels))
    assert set(result) == {"bleu", "chrf", "gen_len"}
    assert result["bleu"] == pytest.approx(100.0)
    assert result["chrf"] == pytest.approx(100.0)
    # Non-pad generated tokens: the subword tokens plus </s> (decoder start pad and -100 padding excluded).
    expected_len = np.mean([len(tokenizer(r, add_special_tokens=False)["input_ids"]) + 1 for r in refs])
    assert result["gen_len"] == pytest.approx(expected_len, abs=1e-4)
    assert compute_metrics.last_result["bleu_signature"].startswith("nrefs:1")


def test_compute_metrics_degraded_matches_sacrebleu(tokenizer, metric, references):
    from transformers import EvalPrediction

    from hf_supermask.metrics import make_compute_metrics

    refs = references[:12]
    shuffled = refs[3:] + refs[:3]
    labels = _batch(tokenizer, refs, fill=-100, start_token=False)
    preds = _batch(tokenizer, shuffled, fill=-100, start_token=True)

    compute_metrics = make_compute_metrics(tokenizer, metric=metric)
    result = compute_metrics(EvalPrediction(predictions=(preds,), label_ids=labels))
    assert result["bleu"] == pytest.approx(round(sacrebleu.corpus_bleu(shuffled, [refs]).score, 4))
    assert result["chrf"] == pytest.approx(round(sacrebleu.corpus_chrf(shuffled, [refs]).score, 4))
    assert result["bleu"] < 100.0

    with pytest.raises(ValueError, match="predict_with_generate"):
        compute_metrics((np.zeros((2, 3, 5)), labels[:2]))


# ---------------------------------------------------------------------------------------------------------------------
# Plots
# ---------------------------------------------------------------------------------------------------------------------


def _full_history() -> list[dict]:
    history = []
    for step in range(10, 210, 10):
        history.append(
            {
                "loss": 6.0 / (1 + step / 50),
                "learning_rate": 0.1,
                "epoch": step / 200,
                "step": step,
                "elapsed_seconds": step * 1.5,
            }
        )
        if step % 50 == 0:
            history.append(
                {
                    "eval_loss": 5.0 / (1 + step / 50),
                    "eval_bleu": step / 10,
                    "step": step,
                    "eval_mask_changed_fraction": 0.2 / (step / 50),
                    "elapsed_seconds": step * 1.5 + 3,
                }
            )
    history.append({"train_runtime": 300.0, "train_loss": 2.1, "step": 200, "epoch": 1.0})
    return history


@pytest.mark.parametrize(
    "name,history,x",
    [
        ("full_step", _full_history(), "step"),
        ("full_time", _full_history(), "time"),
        ("loss_only", [{"loss": 5.0, "step": 10}, {"loss": 4.0, "step": 20}], "step"),
        ("loss_only_time_fallback", [{"loss": 5.0, "step": 10}, {"loss": 4.0, "step": 20}], "time"),
        ("eval_without_bleu", [{"loss": 5.0, "step": 10}, {"eval_loss": 4.5, "step": 10}], "step"),
        ("bleu_without_mask_stats", [{"loss": 5.0, "step": 10}, {"eval_bleu": 1.5, "step": 10}], "step"),
        ("empty", [], "step"),
    ],
)
def test_plot_writes_png(tmp_path, name, history, x):
    from hf_supermask.plotting import plot_training_curves

    out = plot_training_curves(history, tmp_path / "sub" / f"{name}.png", title=name, x=x)
    assert out == tmp_path / "sub" / f"{name}.png"
    data = out.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 1000


def test_plot_rejects_unknown_axis(tmp_path):
    from hf_supermask.plotting import plot_training_curves

    with pytest.raises(ValueError):
        plot_training_curves([], tmp_path / "x.png", x="epoch")


# ---------------------------------------------------------------------------------------------------------------------
# Model card
# ---------------------------------------------------------------------------------------------------------------------

BLEU_SIG = "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0"


def _card(**overrides):
    from hf_supermask.model_card import build_model_card

    kwargs = dict(
        model_name="supermask-multi30k-en-de",
        output_dir_or_repo_id="someone/supermask-multi30k-en-de",
        test_bleu=12.3456,
        test_chrf=40.5,
        bleu_signature=BLEU_SIG,
        hyperparameters={"learning_rate": 0.1, "keep_fraction": 0.5, "max_steps": 2000},
        checkpoint_bytes=1_000_000,
        dense_fp32_bytes=32_000_000,
        plot_filename="training_curves.png",
        base_config={
            "d_model": 256,
            "encoder_layers": 3,
            "seed": 0,
            "generator_version": 1,
            "weights_sha256": "0" * 64,
        },
    )
    kwargs.update(overrides)
    return build_model_card(**kwargs)


def test_model_card_metadata_round_trip(tmp_path):
    from huggingface_hub import ModelCard

    from hf_supermask.model_card import save_model_card

    path = save_model_card(_card(), tmp_path / "ckpt")
    assert path == tmp_path / "ckpt" / "README.md"
    card = ModelCard(path.read_text(encoding="utf-8"))
    data = card.data
    assert data.language == ["en", "de"]
    assert data.pipeline_tag == "translation"
    assert data.library_name == "transformers"
    assert data.license == "apache-2.0"
    assert {"supermask", "edge-popup", "translation", "hf_supermask"} <= set(data.tags)
    assert data.datasets == ["bentrevett/multi30k"]
    assert data.model_name == "supermask-multi30k-en-de"

    by_metric = {r.metric_type: r for r in data.eval_results}
    assert set(by_metric) == {"bleu", "chrf"}
    assert by_metric["bleu"].metric_value == pytest.approx(12.35)
    assert by_metric["chrf"].metric_value == pytest.approx(40.5)
    for result in by_metric.values():
        assert result.task_type == "translation"
        assert result.dataset_split == "test_2016_flickr"
    assert by_metric["bleu"].metric_args == {"signature": BLEU_SIG}
    assert "model-index" in data.to_dict()


def test_model_card_text():
    text = _card().text
    assert "non-commercial research and educational use" in text
    assert "Flickr30K" in text
    assert "Inference costs what a dense model costs" in text
    assert "dense" in text and "weights_sha256" in text
    assert "![training curves](training_curves.png)" in text
    assert BLEU_SIG in text
    assert 'pipeline("translation", model="someone/supermask-multi30k-en-de")' in text
    assert "trust_remote_code=True" in text and "revision=" in text
    assert "import hf_supermask" in text
    assert "VeRA" in text
    assert "2021.emnlp-main.231" in text and "Ramanujan" in text
    assert "32.0×" in text
    assert "{{" not in text and "{%" not in text


def test_model_card_without_results_or_plot():
    from hf_supermask.model_card import validate_model_card_metadata

    card = _card(
        test_bleu=None,
        test_chrf=None,
        bleu_signature=None,
        plot_filename=None,
        checkpoint_bytes=None,
        dense_fp32_bytes=None,
        base_config=None,
        revision="0123456789abcdef0123456789abcdef01234567",
    )
    metadata = validate_model_card_metadata(card)
    assert "model-index" not in metadata and "model_name" not in metadata
    assert metadata["language"] == ["en", "de"]
    assert "![training curves]" not in card.text
    assert "not evaluated" in card.text
    assert 'revision="0123456789abcdef0123456789abcdef01234567"' in card.text


def test_model_card_validation_rejects_bad_metadata():
    from huggingface_hub import ModelCard

    from hf_supermask.model_card import validate_model_card_metadata

    good = str(_card())
    with pytest.raises(ValueError):
        validate_model_card_metadata(ModelCard(good.replace("- en\n- de\n", "- English\n- German\n", 1)))
    with pytest.raises(ValueError):
        validate_model_card_metadata(ModelCard(good.replace("value: 12.35", "value: twelve", 1)))
