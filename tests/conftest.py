"""Shared fixtures: tiny configs and a tokenizer trained on a slice of the real Multi30k data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


# Tests never reach the Hub (the Hub round trip starts its own local server and overrides these).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# Tiny models are dominated by per-op overhead; extra threads only contend on a 2-core machine.
import torch  # noqa: E402


torch.set_num_threads(1)

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_MULTI30K = REPO_ROOT.parent / "shared" / "data" / "multi30k"
# The first lines of Multi30k, committed (tests/fixtures/multi30k_sample/README.md): the suite runs without the corpus.
SAMPLE_MULTI30K = REPO_ROOT / "tests" / "fixtures" / "multi30k_sample"


def _data_dir() -> Path:
    if "MULTI30K_DIR" in os.environ:
        return Path(os.environ["MULTI30K_DIR"])
    return SHARED_MULTI30K if (SHARED_MULTI30K / "train.en").is_file() else SAMPLE_MULTI30K


DATA_DIR = _data_dir()
# Whether DATA_DIR is the whole corpus (tests that need more than the sample are marked `full_data`).
FULL_DATA = sum(1 for _ in open(DATA_DIR / "test_2016_flickr.en", encoding="utf-8")) == 1000


def pytest_collection_modifyitems(config, items):
    if FULL_DATA:
        return
    skip = pytest.mark.skip(reason=f"needs the whole Multi30k corpus; {DATA_DIR} is the sample (set MULTI30K_DIR)")
    for item in items:
        if "full_data" in item.keywords:
            item.add_marker(skip)


def read_lines(split: str, lang: str, n: int) -> list[str]:
    """The first `n` lines of a real Multi30k file."""
    path = DATA_DIR / f"{split}.{lang}"
    if not path.exists():
        pytest.fail(f"Multi30k not found at {DATA_DIR}; set MULTI30K_DIR to the folder of split.lang files.")
    with open(path, encoding="utf-8") as handle:
        return [next(handle).rstrip("\n") for _ in range(n)]


def tiny_config(**overrides):
    from hf_supermask import SupermaskConfig

    values = dict(
        vocab_size=320,
        d_model=32,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_position_embeddings=128,
        dropout=0.0,
        seed=1234,
    )
    values.update(overrides)
    return SupermaskConfig(**values)


@pytest.fixture(scope="session")
def multi30k_slice():
    """300 real en-de training pairs."""
    return read_lines("train", "en", 300), read_lines("train", "de", 300)


@pytest.fixture(scope="session")
def tiny_tokenizer(multi30k_slice):
    """A joint BPE tokenizer (opus-mt convention: </s>=0, <unk>=1, <pad> last) trained on the real slice."""
    from hf_supermask.tokenization import train_tokenizer

    english, german = multi30k_slice
    return train_tokenizer(english + german, vocab_size=320, model_max_length=128)


# The shape of the tiny models that tests train.
SHAPE = (
    "d_model=32,encoder_layers=2,decoder_layers=2,encoder_ffn_dim=64,decoder_ffn_dim=64,"
    "encoder_attention_heads=4,decoder_attention_heads=4,max_position_embeddings=128"
)


def scrambled_model(config, seed: int = 7):
    """A model (eval mode) whose masks moved away from their initial selection: a stand-in for training."""
    from hf_supermask import SupermaskForConditionalGeneration

    model = SupermaskForConditionalGeneration(config)
    with torch.no_grad():
        for module in model.masked_modules.values():
            module.scores.copy_(torch.randn(module.shape, generator=torch.Generator().manual_seed(seed)))
    return model.eval()


_WITHOUT_THE_PACKAGE = """
import json, sys
sys.modules["hf_supermask"] = None  # `import hf_supermask` fails: transformers and the checkpoint's own code only
def emit(result):
    print("RESULT " + json.dumps(result))
"""

# Loads a checkpoint through its remote code, generates, and reports `probe` (an expression on `model`).
REMOTE_GENERATE = """
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer
path, sources, probe = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=True)
model = AutoModelForSeq2SeqLM.from_pretrained(path, trust_remote_code=True)
batch = tokenizer(sources, return_tensors="pt", padding=True)
emit({
    "module": type(model).__module__,
    "probe": eval(probe, {"model": model}),
    "generated": model.generate(**batch, max_new_tokens=8, num_beams=2).tolist(),
})
"""


def run_without_the_package(script: str, *argv: str, tmp_path: Path) -> dict:
    """Runs `script` in a fresh Python that cannot import hf_supermask (a user with transformers and a checkpoint's
    remote code alone) and has an empty Hugging Face cache; returns what the script passed to `emit(...)`."""
    env = dict(os.environ, HF_HOME=str(tmp_path / "hf_home"), HF_HUB_OFFLINE="1")
    env.pop("PYTHONPATH", None)
    result = subprocess.run(
        [sys.executable, "-c", _WITHOUT_THE_PACKAGE + script, *argv],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(next(line[7:] for line in result.stdout.splitlines() if line.startswith("RESULT ")))


def generate_through_remote_code(path: Path, sources: list[str], tmp_path: Path, probe: str = "None") -> dict:
    """`module` (the model class's), `probe` and `generated` (beam 2, 8 new tokens) of the checkpoint at `path` loaded
    with `trust_remote_code=True` only (`REMOTE_GENERATE`)."""
    return run_without_the_package(REMOTE_GENERATE, str(path), json.dumps(sources), probe, tmp_path=tmp_path)


def training_flags(output_dir, tokenizer_dir, *extra) -> list[str]:
    """Flags of a tiny, quick training run on the real Multi30k slice."""
    return [
        "--output_dir",
        str(output_dir),
        "--data_dir",
        str(DATA_DIR),
        "--tokenizer_name",
        str(tokenizer_dir),
        "--config_overrides",
        SHAPE,
        "--max_train_samples",
        "160",
        "--max_eval_samples",
        "16",
        "--max_predict_samples",
        "16",
        "--per_device_train_batch_size",
        "16",
        "--per_device_eval_batch_size",
        "16",
        "--learning_rate",
        "5e-3",
        "--report_to",
        "none",
        "--logging_steps",
        "2",
        "--seed",
        "3",
        "--max_target_length",
        "24",
        "--num_examples",
        "2",
        "--disable_tqdm",
        "true",
        *extra,
    ]


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory, tiny_tokenizer):
    path = tmp_path_factory.mktemp("tokenizer")
    tiny_tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def trained(tmp_path_factory, tokenizer_dir):
    """A finished 8-update run: its output folder (with checkpoint-4 and checkpoint-8) and its results."""
    from hf_supermask.training import parse_args, run_translation

    output_dir = tmp_path_factory.mktemp("run") / "out"
    flags = training_flags(
        output_dir,
        tokenizer_dir,
        "--do_train",
        "--do_eval",
        "--do_predict",
        "--predict_with_generate",
        "--max_steps",
        "8",
        "--eval_strategy",
        "steps",
        "--eval_steps",
        "4",
        "--save_steps",
        "4",
    )
    return output_dir, run_translation(*parse_args(flags))
