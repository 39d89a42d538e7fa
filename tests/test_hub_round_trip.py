"""The Hub round trip: push_to_hub, then load by repo id (with the package, and with only transformers + remote code).

The real Hub is unreachable, so these tests run against `hub_server.HubServer`, a Hub-compatible test double on
127.0.0.1. conftest.py puts every test in offline mode; the `hub` fixture below turns it off for this module only
(environment AND the values huggingface_hub cached at import), with a fresh HF_HOME and a dummy token, and undoes it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
import torch
from conftest import read_lines, tiny_config
from hub_server import HubServer
from safetensors import safe_open
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from transformers import AutoModelForSeq2SeqLM

from hf_supermask import SupermaskForConditionalGeneration


REPO = "user/tiny-supermask"
TOKEN = "hf_test"
SOURCES = read_lines("test_2016_flickr", "en", 4)
REMOTE_CODE = (
    "configuration_supermask.py",
    "modeling_supermask.py",
    "masked_layers.py",
    "binarizers.py",
    "random_weights.py",
    "external_weights.py",
    "pipeline_translation.py",
)


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """A running test Hub; HF_ENDPOINT points to it and offline mode is off, for this module only."""
    import huggingface_hub.constants as constants
    import transformers.utils.hub as transformers_hub

    home = tmp_path_factory.mktemp("hf_home")
    server = HubServer(token=TOKEN).start()
    try:
        with pytest.MonkeyPatch.context() as patch:
            env = {
                "HF_ENDPOINT": server.url,
                "HF_HUB_OFFLINE": "0",
                "HF_HOME": str(home),
                "HF_TOKEN": TOKEN,
                "HF_HUB_DISABLE_TELEMETRY": "1",
                "HF_HUB_DISABLE_XET": "1",
                "NO_PROXY": ",".join(filter(None, [os.environ.get("NO_PROXY"), "127.0.0.1", "localhost"])),
            }
            for name, value in env.items():
                patch.setenv(name, value)
            for name in ("TRANSFORMERS_OFFLINE", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_TOKEN_PATH"):
                patch.delenv(name, raising=False)
            # huggingface_hub read these at import (conftest imported it offline); its code reads them as
            # `constants.X` at call time, so patching the module attributes is enough in this process.
            patch.setattr(constants, "ENDPOINT", server.url)
            patch.setattr(
                constants, "HUGGINGFACE_CO_URL_TEMPLATE", server.url + "/{repo_id}/resolve/{revision}/{filename}"
            )
            patch.setattr(constants, "HF_URL_HOSTS", constants.HF_URL_HOSTS | {"127.0.0.1"})
            patch.setattr(constants, "HF_HUB_OFFLINE", False)  # `is_offline_mode()` (also transformers') returns it
            patch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)
            patch.setattr(constants, "HF_HOME", str(home))
            patch.setattr(constants, "HF_HUB_CACHE", str(home / "hub"))
            patch.setattr(constants, "HF_ASSETS_CACHE", str(home / "assets"))
            patch.setattr(constants, "HF_XET_CACHE", str(home / "xet"))
            patch.setattr(constants, "HF_TOKEN_PATH", str(home / "token"))
            patch.setattr(constants, "HF_STORED_TOKENS_PATH", str(home / "stored_tokens"))
            patch.setattr(constants, "AGENT_HARNESSES_PATH", str(home / ".agent_harnesses.json"))
            # transformers keeps one HfApi, whose endpoint is fixed when it is built: build a fresh one here.
            patch.setattr(transformers_hub, "_hf_api", None)
            yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def pushed(hub, tiny_tokenizer):
    """A tiny model with scrambled masks, pushed with its tokenizer; the in-process reference translations."""
    model = SupermaskForConditionalGeneration(tiny_config(vocab_size=len(tiny_tokenizer)))
    with torch.no_grad():  # stand-in for training: scramble every mask (as test_modeling's `checkpoint`)
        for module in model.masked_modules.values():
            module.scores.copy_(torch.randn(module.shape, generator=torch.Generator().manual_seed(7)))
    model.eval()
    model.push_to_hub(REPO)
    commit = tiny_tokenizer.push_to_hub(REPO)
    batch = tiny_tokenizer(SOURCES, return_tensors="pt", padding=True)
    ids = model.generate(**batch, max_new_tokens=8)
    return {
        "model": model,
        "sha": commit.oid,
        "ids": ids.tolist(),
        "texts": tiny_tokenizer.batch_decode(ids, skip_special_tokens=True),
    }


_LOAD = """
import json, sys
mode, repo, revision, sources = sys.argv[1], sys.argv[2], sys.argv[3] or None, json.loads(sys.argv[4])
if mode == "with-package":
    import hf_supermask
    kwargs = {}
else:
    sys.modules["hf_supermask"] = None  # make `import hf_supermask` fail: only transformers + the repo's code
    kwargs = {"trust_remote_code": True, "revision": revision}
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, pipeline
if mode != "with-package":
    try:
        import hf_supermask
        raise SystemExit("hf_supermask is importable")
    except ImportError:
        pass
model = AutoModelForSeq2SeqLM.from_pretrained(repo, **kwargs)
tokenizer = AutoTokenizer.from_pretrained(repo, **kwargs)
translator = pipeline("translation", model=repo, max_new_tokens=8, **kwargs)
batch = tokenizer(sources, return_tensors="pt", padding=True)
print("RESULT " + json.dumps({
    "model": type(model).__module__ + "." + type(model).__name__,
    "pipeline": type(translator).__module__,
    "ids": model.generate(**batch, max_new_tokens=8).tolist(),
    "texts": [r["translation_text"] for r in translator(sources)],
}))
"""


def _start_loading(hub, tmp_path, mode: str, revision: str = "") -> subprocess.Popen:
    """Start a fresh interpreter that loads the repo by id (see `_LOAD`); both modes can run at the same time."""
    home = tmp_path / f"hf_home_{mode}"  # a fresh cache: every file comes from the server
    env = dict(os.environ, HF_ENDPOINT=hub.url, HF_HUB_OFFLINE="0", HF_HOME=str(home), HF_TOKEN=TOKEN)
    env.pop("HF_HUB_CACHE", None)
    return subprocess.Popen(
        [sys.executable, "-c", _LOAD, mode, REPO, revision, json.dumps(SOURCES)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _result(process: subprocess.Popen) -> dict:
    try:
        stdout, stderr = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stderr[-4000:]
    return json.loads(next(line[7:] for line in stdout.splitlines() if line.startswith("RESULT ")))


def test_push_to_hub_then_load_by_repo_id_with_and_without_the_package(hub, pushed, tmp_path):
    from huggingface_hub import HfApi, hf_hub_download

    files = set(HfApi().list_repo_files(REPO))
    assert {
        "model.safetensors",
        "config.json",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        *REMOTE_CODE,
    } <= files, files
    assert not any(name.endswith((".bin", ".pt", ".pth")) for name in files)
    with safe_open(hf_hub_download(REPO, "model.safetensors"), framework="pt") as reader:
        assert {reader.get_slice(key).get_dtype() for key in reader.keys()} == {"U8"}
        assert all(key.endswith(".mask") for key in reader.keys())
    with open(hf_hub_download(REPO, "config.json")) as handle:
        config = json.load(handle)
    assert config["custom_pipelines"]["translation"]["impl"] == "pipeline_translation.TranslationPipeline"
    assert config["auto_map"]["AutoModelForSeq2SeqLM"] == "modeling_supermask.SupermaskForConditionalGeneration"
    assert hub.head(REPO) == pushed["sha"]

    # with the package: the registered classes and pipeline, from the default branch; without it: the repo's own
    # code (model and pipeline), pinned to the pushed commit. Two fresh interpreters, started together.
    processes = [_start_loading(hub, tmp_path, "with-package")]
    try:
        processes.append(_start_loading(hub, tmp_path, "without-package", revision=pushed["sha"]))
        installed, remote = (_result(process) for process in processes)
    finally:
        for process in processes:  # a failed first load must not leave the second one running
            if process.poll() is None:
                process.kill()
                process.communicate()

    assert installed["model"] == "hf_supermask.modeling.modeling_supermask.SupermaskForConditionalGeneration"
    assert installed["ids"] == pushed["ids"]
    assert installed["texts"] == pushed["texts"]

    assert remote["model"].startswith("transformers_modules") and remote["model"].endswith(
        "SupermaskForConditionalGeneration"
    )
    assert remote["pipeline"].startswith("transformers_modules")
    assert remote["ids"] == pushed["ids"]
    assert remote["texts"] == pushed["texts"]


def _masks_equal(a, b) -> bool:
    return all(
        torch.equal(x.current_mask(), y.current_mask())
        for x, y in zip(a.masked_modules.values(), b.masked_modules.values())
    )


def test_tampered_repo_is_refused(hub, pushed):
    from huggingface_hub import CommitOperationAdd, HfApi, hf_hub_download

    api = HfApi()
    with open(hf_hub_download(REPO, "config.json", revision=pushed["sha"]), "rb") as handle:
        config_bytes = handle.read()
    with open(hf_hub_download(REPO, "model.safetensors", revision=pushed["sha"]), "rb") as handle:
        masks_bytes = handle.read()
    try:
        config = json.loads(config_bytes)
        config["seed"] = 99
        api.create_commit(
            REPO, [CommitOperationAdd("config.json", json.dumps(config).encode())], commit_message="Edit seed"
        )
        with pytest.raises(ValueError, match="sha256"):
            AutoModelForSeq2SeqLM.from_pretrained(REPO)

        tensors = load_safetensors(masks_bytes)
        name = "model.encoder.layers.0.fc1.mask"
        tensors[name][3] = 0 if tensors[name][3] else 0xFF
        api.create_commit(
            REPO,
            [
                CommitOperationAdd("config.json", config_bytes),
                CommitOperationAdd("model.safetensors", save_safetensors(tensors, metadata={"format": "pt"})),
            ],
            commit_message="Flip a mask byte",
        )
        with pytest.raises(ValueError, match="keeps"):
            AutoModelForSeq2SeqLM.from_pretrained(REPO)
    finally:
        api.create_commit(
            REPO,
            [CommitOperationAdd("config.json", config_bytes), CommitOperationAdd("model.safetensors", masks_bytes)],
            commit_message="Restore",
        )
    assert hub.head(REPO) != pushed["sha"]
    # the pinned commit never changed, and the restored branch loads again
    for revision in (pushed["sha"], None):
        assert _masks_equal(AutoModelForSeq2SeqLM.from_pretrained(REPO, revision=revision), pushed["model"])


def test_absent_file_is_entry_not_found_and_files_are_listed(hub, pushed):
    from huggingface_hub import HfApi, hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    with pytest.raises(EntryNotFoundError):
        hf_hub_download(REPO, "no_such_file.json")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    for method in ("HEAD", "GET"):
        request = urllib.request.Request(f"{hub.url}/{REPO}/resolve/main/no_such_file.json", method=method)
        with pytest.raises(urllib.error.HTTPError) as error:
            opener.open(request, timeout=10)
        assert error.value.code == 404 and error.value.headers["X-Error-Code"] == "EntryNotFound"
        assert error.value.headers["X-Repo-Commit"] == hub.head(REPO)
    files = HfApi().list_repo_files(REPO, revision=pushed["sha"])
    assert set(files) == set(hub.files(REPO, pushed["sha"])) and "model.safetensors" in files


def test_training_script_pushes_the_mask_only_folder(hub, tiny_tokenizer, tmp_path):
    """`--push_to_hub --hub_model_id` uploads the published folder (masks, card, code), never the checkpoints."""
    from conftest import DATA_DIR
    from huggingface_hub import HfApi

    from hf_supermask.training import parse_args, run_translation

    tiny_tokenizer.save_pretrained(tmp_path / "tokenizer")
    flags = [
        "--output_dir",
        str(tmp_path / "out"),
        "--data_dir",
        str(DATA_DIR),
        "--tokenizer_name",
        str(tmp_path / "tokenizer"),
        "--config_overrides",
        "d_model=32,encoder_layers=1,decoder_layers=1,encoder_ffn_dim=64,decoder_ffn_dim=64,"
        "encoder_attention_heads=4,decoder_attention_heads=4,max_position_embeddings=128",
        "--max_train_samples",
        "32",
        "--do_train",
        "--max_steps",
        "2",
        "--save_steps",
        "1",
        "--report_to",
        "none",
        "--num_examples",
        "0",
        "--disable_tqdm",
        "true",
        "--push_to_hub",
        "true",
        "--hub_model_id",
        "user/trained",
    ]
    results = run_translation(*parse_args(flags))
    files = set(HfApi().list_repo_files("user/trained", revision=results["hub_commit"]))
    assert {"model.safetensors", "config.json", "README.md", "tokenizer.json", "modeling_supermask.py"} <= files
    assert not any(name.startswith("checkpoint-") or name.endswith(".bin") for name in files)


def test_save_pretrained_with_push_to_hub_uploads_the_complete_folder(hub, tiny_tokenizer, tmp_path):
    """The pushed repo holds the pipeline file its config names, and loads by repo id."""
    from huggingface_hub import HfApi

    model = SupermaskForConditionalGeneration(tiny_config(vocab_size=len(tiny_tokenizer)))
    model.save_pretrained(tmp_path / "saved-and-pushed", push_to_hub=True, repo_id="user/saved-and-pushed")
    files = set(HfApi().list_repo_files("user/saved-and-pushed"))
    assert {"config.json", "model.safetensors", *REMOTE_CODE} <= files
    pushed = json.loads((tmp_path / "saved-and-pushed" / "config.json").read_text())
    assert pushed["custom_pipelines"]["translation"]["impl"].split(".")[0] + ".py" in files
    loaded = AutoModelForSeq2SeqLM.from_pretrained("user/saved-and-pushed")
    assert loaded.masks_fingerprint() == model.masks_fingerprint()
