"""The deploy path: export-ctranslate2 (float32 and int8) and translate --backend ctranslate2."""

from __future__ import annotations

import pytest
from conftest import read_lines, tiny_config

from hf_supermask.cli import main as cli


ctranslate2 = pytest.importorskip("ctranslate2", reason="the optional extra: pip install -e .[ctranslate2]")
SOURCES = read_lines("test_2016_flickr", "en", 4)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, tiny_tokenizer):
    """A tiny model whose masks moved away from their initial top-k, with its tokenizer. (A barely trained model
    would end every sentence at once, which CTranslate2 never does: it forbids an empty first step.)"""
    import torch

    from hf_supermask import SupermaskForConditionalGeneration

    model = SupermaskForConditionalGeneration(tiny_config(vocab_size=len(tiny_tokenizer), output_scale=2.0))
    with torch.no_grad():
        for module in model.masked_modules.values():
            module.scores.copy_(torch.randn(module.shape, generator=torch.Generator().manual_seed(7)))
    path = tmp_path_factory.mktemp("checkpoint")
    model.save_pretrained(path)
    tiny_tokenizer.save_pretrained(path)
    return path


@pytest.mark.parametrize("quantization", [None, "int8"])
def test_export_ctranslate2_then_translate_with_it(checkpoint, tmp_path, capsys, quantization):
    output_dir = checkpoint
    target = tmp_path / f"ct2-{quantization}"
    cli(
        [
            "export-ctranslate2",
            str(output_dir),
            str(target),
            *(["--quantization", quantization] if quantization else []),
        ]
    )
    assert (target / "model.bin").exists() and (target / "tokenizer.json").exists()
    capsys.readouterr()
    cli(["translate", str(output_dir), *SOURCES, "--num_beams", "1", "--max_new_tokens", "12"])
    pytorch = capsys.readouterr().out.splitlines()
    cli(["translate", str(target), *SOURCES, "--backend", "ctranslate2", "--num_beams", "1", "--max_new_tokens", "11"])
    served = capsys.readouterr().out.splitlines()
    assert len(served) == len(SOURCES)
    if quantization is None:  # float32: the same greedy translations (generate() also forces </s> at the limit)
        assert served == pytorch and any(served)
    # the export refuses the checkpoint's own folder, like export-dense
    with pytest.raises(SystemExit) as exit_info:
        cli(["export-ctranslate2", str(output_dir), str(output_dir / "ct2")])
    assert exit_info.value.code == 1 and "inside it" in capsys.readouterr().err


def test_unknown_quantization_is_refused(checkpoint, tmp_path, capsys):
    output_dir = checkpoint
    with pytest.raises(SystemExit):
        cli(["export-ctranslate2", str(output_dir), str(tmp_path / "x"), "--quantization", "int3"])
    assert "--quantization must be one of" in capsys.readouterr().err


def test_backend_benchmark_smoke(checkpoint, tmp_path):
    from conftest import DATA_DIR

    from experiments.benchmark_deploy import backends_table, benchmark_backends

    results = benchmark_backends(
        checkpoint, tmp_path, str(DATA_DIR), num_sentences=8, beams=(1, 2), repetitions=1, log=lambda *_: None
    )
    assert set(results["rows"]) == {
        f"{b}_beam{n}" for b in ("pytorch", "ctranslate2_float32", "ctranslate2_int8") for n in (1, 2)
    }
    assert results["rows"]["pytorch_beam1"]["speedup"] == 1.0
    assert all(r["sentences_per_second"] > 0 and 0 <= r["bleu"] <= 100 for r in results["rows"].values())
    assert "| ctranslate2_int8 | 2 |" in backends_table(results)


def test_a_dense_marian_checkpoint_exports_to_ctranslate2_as_it_is(checkpoint, tmp_path, capsys):
    """The dense baseline deploys through the same path (its int8 export is the frontier's 8-bit reference); only
    `export-dense` refuses a dense checkpoint, which is already what it writes."""
    dense = tmp_path / "dense"
    cli(["export-dense", str(checkpoint), str(dense)])
    target = tmp_path / "ct2-dense"
    cli(["export-ctranslate2", str(dense), str(target)])
    capsys.readouterr()
    cli(["translate", str(checkpoint), *SOURCES, "--num_beams", "1", "--max_new_tokens", "12"])
    pytorch = capsys.readouterr().out.splitlines()
    cli(["translate", str(target), *SOURCES, "--backend", "ctranslate2", "--num_beams", "1", "--max_new_tokens", "11"])
    assert capsys.readouterr().out.splitlines() == pytorch
    with pytest.raises(SystemExit) as exit_info:
        cli(["export-dense", str(dense), str(tmp_path / "again")])
    assert exit_info.value.code == 1 and "nothing to fold" in capsys.readouterr().err


def test_a_dense_marian_with_a_learned_start_embedding_converts_exactly(checkpoint, tmp_path, capsys):
    """A Marian trained with tied embeddings learns a nonzero `<pad>` row (the decoder's start) through the output
    projection; CTranslate2's stock converter would start from a zero vector instead (opus-mt's convention)."""
    import torch
    from transformers import MarianMTModel

    dense = tmp_path / "dense"
    cli(["export-dense", str(checkpoint), str(dense)])
    model = MarianMTModel.from_pretrained(dense)
    with torch.no_grad():
        pad = model.config.pad_token_id
        model.get_input_embeddings().weight[pad] = torch.randn(
            model.config.d_model, generator=torch.Generator().manual_seed(3)
        )
    model.save_pretrained(dense)
    target = tmp_path / "ct2-start"
    for quantization in (None, "int8"):
        cli(
            [
                "export-ctranslate2",
                str(dense),
                str(target),
                "--overwrite",
                *(["--quantization", quantization] if quantization else []),
            ]
        )
        capsys.readouterr()
        cli(["translate", str(dense), *SOURCES, "--num_beams", "1", "--max_new_tokens", "12"])
        pytorch = capsys.readouterr().out.splitlines()
        cli(
            [
                "translate",
                str(target),
                *SOURCES,
                "--backend",
                "ctranslate2",
                "--num_beams",
                "1",
                "--max_new_tokens",
                "11",
            ]
        )
        served = capsys.readouterr().out.splitlines()
        if quantization is None:
            assert served == pytorch and any(served)
        assert "<pad>" not in " ".join(served)
    # the start row's token is kept in the vocabulary here; a supermask export (zero start row) keeps the stock
    # converter, which leaves `<pad>` out
    assert "<pad>" in _vocabulary(target)
    stock = tmp_path / "ct2-supermask"
    cli(["export-ctranslate2", str(checkpoint), str(stock)])
    assert "<pad>" not in _vocabulary(stock)


def _vocabulary(folder) -> list[str]:
    import json

    (path,) = folder.glob("*vocabulary*")
    return json.loads(path.read_text()) if path.suffix == ".json" else path.read_text().splitlines()
