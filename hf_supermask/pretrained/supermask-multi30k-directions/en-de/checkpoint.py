# Copyright 2026 The hf_supermask Authors. Licensed under the Apache License, Version 2.0.
"""Checkpoint I/O of the supermask models: what a checkpoint is, how it is saved, and how every load path verifies it.

A checkpoint is the config (seed, density, inits, the forward settings) plus one packed bitmask per weight tensor. Its
identity is four fingerprints in config.json, each covering one part of what decides the model's outputs:

- `weights_sha256`: the regenerated random weights (seed, inits, generator, shapes, embedding source and scale);
- `masks_sha256`: the packed masks;
- `forward_config_sha256`: the config fields that act in the forward pass (`FORWARD_FIELDS`, written down once in
  `configuration_supermask.py`);
- `tokenizer_sha256`: the tokenizer the masks were found with (and its size must be `vocab_size`).

`SupermaskCheckpointMixin` gives both model classes the same `save_pretrained` / `from_pretrained`, and
`check_tokenizer` for the translation pipeline. `generation_config.json` (decoding settings) is validated at load, not
fingerprinted. This module imports nothing from `modeling_supermask.py` (imports go one way).
"""

from __future__ import annotations

import contextvars
import hashlib
import json
import os
import re
import shutil
from pathlib import Path

import torch
from transformers.configuration_utils import PreTrainedConfig
from transformers.utils import logging

from .configuration_supermask import FORWARD_FIELDS, TRANSLATION_CUSTOM_PIPELINES, TRANSLATION_PIPELINE_FILE
from .mask_coding import CODED_SUFFIX
from .masked_layers import MaskedWeight, threaded_map
from .random_weights import GENERATOR_VERSION


logger = logging.get_logger(__name__)

EMBEDDING = "embed_tokens"
# True inside `from_pretrained`: the scores are then derived from the loaded masks, so `_init_weights` does not spend
# time generating initial scores that would be overwritten at once.
LOADING_MASKS = contextvars.ContextVar("supermask_loading_masks", default=False)
TOKENIZER_FILE = "tokenizer.json"
GENERATION_CONFIG_FILE = "generation_config.json"
# What the re-save instruction of a checkpoint written before an identity field existed says.
RESAVE_HINT = (
    "Re-save it to record them: `python scripts/resave_checkpoint.py FOLDER` from hf_supermask (or "
    "`model.record_tokenizer(tokenizer)` and `model.save_pretrained(FOLDER)`)."
)
# Generation-config ids that index the vocabulary (generate() would end in a bare IndexError on a bad one).
_GENERATION_TOKEN_IDS = (
    "decoder_start_token_id",
    "pad_token_id",
    "eos_token_id",
    "bos_token_id",
    "forced_eos_token_id",
    "forced_bos_token_id",
)
_HUB_KWARGS = ("cache_dir", "force_download", "proxies", "local_files_only", "token", "revision", "subfolder")


def tokenizer_fingerprint(tokenizer_json: str | dict) -> str:
    """sha256 of a `tokenizer.json` (its text, or the parsed dict) as canonical JSON, without the `truncation` and
    `padding` entries: those are runtime state that encoding with `truncation=True` changes, not the tokenizer."""
    content = json.loads(tokenizer_json) if isinstance(tokenizer_json, str) else dict(tokenizer_json)
    content.pop("truncation", None)
    content.pop("padding", None)
    text = json.dumps(content, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _tokenizer_json(tokenizer) -> str | None:
    """The `tokenizer.json` text of a loaded (fast) tokenizer, `None` for a tokenizer without one."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    return None if backend is None else backend.to_str()


def _tokenizer_file_size(content: dict) -> int:
    """Number of ids a `tokenizer.json` can produce (its largest id + 1)."""
    vocab = (content.get("model") or {}).get("vocab") or {}
    ids = list(vocab.values()) if isinstance(vocab, dict) else [len(vocab) - 1] if vocab else []
    ids += [token["id"] for token in content.get("added_tokens") or ()]
    return max(ids) + 1 if ids else 0


def identity_differences(config, other) -> list[str]:
    """`field: this -> other` for every `FORWARD_FIELDS` value in which two configs differ."""
    mine, theirs = config.forward_config(), other.forward_config()
    return [f"{name}: {mine[name]!r} -> {theirs[name]!r}" for name in FORWARD_FIELDS if mine[name] != theirs[name]]


def _hub_kwargs(kwargs: dict) -> dict:
    return {key: kwargs[key] for key in _HUB_KWARGS if key in kwargs}


def _resolve(source, name: str, kwargs: dict) -> str | None:
    """Local path of the file `name` of a checkpoint folder or Hub repo, `None` if it has none."""
    from transformers.utils import cached_file

    return cached_file(source, name, _raise_exceptions_for_missing_entries=False, **_hub_kwargs(kwargs))


def _check_source(source) -> None:
    """A source that is neither an existing folder nor a Hub repo id is a folder that does not exist: say so (rather
    than the Hub's "Repo id must be in the form ...")."""
    if isinstance(source, (str, os.PathLike)) and not os.path.isdir(source):
        from huggingface_hub.errors import HFValidationError
        from huggingface_hub.utils import validate_repo_id

        try:
            validate_repo_id(str(source))
        except HFValidationError:
            raise FileNotFoundError(
                f"The checkpoint folder {source} does not exist (and it is not a Hub repo id either). Check the path."
            ) from None


def _validate_checkpoint_files(source, kwargs: dict) -> dict[str, str] | None:
    """Refuse, before loading, a checkpoint whose files are missing, truncated or pickled, or whose masks are not
    uint8; return where its masks are, `{key: file}` for every packed (`.mask`) and coded key of its safetensors files
    (`None` when it has no safetensors file)."""
    from safetensors import SafetensorError, safe_open
    from transformers.utils import SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME, WEIGHTS_INDEX_NAME, WEIGHTS_NAME

    if kwargs.get("use_safetensors") is False:
        raise ValueError(
            "`use_safetensors=False` asks for pytorch_model.bin, but supermask checkpoints are safetensors only and "
            "this library never unpickles a weights file. Drop the argument (model.safetensors is read)."
        )
    files = []
    if (single := _resolve(source, SAFE_WEIGHTS_NAME, kwargs)) is not None:
        files.append(single)
    elif (index := _resolve(source, SAFE_WEIGHTS_INDEX_NAME, kwargs)) is not None:
        with open(index) as handle:
            shards = sorted(set(json.load(handle)["weight_map"].values()))
        for shard in shards:
            if (path := _resolve(source, shard, kwargs)) is None:
                raise FileNotFoundError(
                    f"The checkpoint at {source} lists the shard {shard} in {SAFE_WEIGHTS_INDEX_NAME}, but the file "
                    "is missing. Re-download the checkpoint (or re-save it with `save_pretrained`)."
                )
            files.append(path)
    if not files:
        # Never unpickle: a supermask checkpoint is safetensors only.
        other = [name for name in (WEIGHTS_NAME, WEIGHTS_INDEX_NAME) if _resolve(source, name, kwargs) is not None]
        if other:
            raise ValueError(
                f"The checkpoint at {source} has {other[0]} but no model.safetensors. Supermask checkpoints are "
                "safetensors only, and this library never unpickles a weights file. Re-save the model with "
                "`save_pretrained` (which writes model.safetensors)."
            )
        return None  # let from_pretrained report the missing weights file in its own words
    mask_files = {}
    for file in files:
        try:
            with safe_open(file, framework="pt") as reader:
                dtypes = {key: reader.get_slice(key).get_dtype() for key in reader.keys()}
        except (SafetensorError, OSError) as error:
            raise OSError(
                f"The checkpoint file {file} is truncated or corrupted ({error}). Re-save or re-download it."
            ) from error
        wrong = {key: dtype for key, dtype in dtypes.items() if key.endswith((".mask", CODED_SUFFIX)) and dtype != "U8"}
        if wrong:
            raise ValueError(
                f"Masks in {file} must be uint8 packed bits (numpy.packbits layout), but {len(wrong)} are not, e.g. "
                f"{dict(list(wrong.items())[:3])}. The file was not written by SupermaskForConditionalGeneration."
                "save_pretrained; re-save it from a loaded model."
            )
        mask_files.update((key, file) for key in dtypes if key.endswith((".mask", CODED_SUFFIX)))
    return mask_files


def _read_tensors(keys: list[str], mask_files: dict[str, str]) -> dict[str, torch.Tensor]:
    """The tensors `keys` from the files `mask_files` locates them in, each file opened once."""
    from safetensors import safe_open

    tensors = {}
    for file in dict.fromkeys(mask_files[key] for key in keys):
        with safe_open(file, framework="pt") as reader:
            tensors.update((key, reader.get_tensor(key)) for key in keys if mask_files[key] == file)
    return tensors


def _validate_generation_config(source, config, kwargs: dict) -> None:
    """Refuse a `generation_config.json` that is not JSON (transformers would silently decode with its defaults),
    names token ids outside the vocabulary, or saves a length beyond the position table."""
    path = _resolve(source, GENERATION_CONFIG_FILE, kwargs)
    if path is None:
        return
    try:
        with open(path, encoding="utf-8") as handle:
            saved = json.load(handle)
        if not isinstance(saved, dict):
            raise ValueError("not a JSON object")
    except ValueError as error:
        raise ValueError(
            f"The {GENERATION_CONFIG_FILE} of the checkpoint at {source} is not valid JSON ({error}): its decoding "
            "settings (beams, lengths) would be replaced by defaults. Fix or delete the file, or re-save the model."
        ) from None
    for name in _GENERATION_TOKEN_IDS:
        value = saved.get(name)
        for token_id in value if isinstance(value, list) else [value]:
            if token_id is not None and (isinstance(token_id, bool) or not 0 <= token_id < config.vocab_size):
                raise ValueError(
                    f"`{name}` in the {GENERATION_CONFIG_FILE} of the checkpoint at {source} is {value!r}, outside "
                    f"the vocabulary [0, vocab_size={config.vocab_size}). Fix the file (config.json holds the "
                    "model's own special ids)."
                )
    for sequence in saved.get("bad_words_ids") or ():
        if any(not 0 <= token_id < config.vocab_size for token_id in sequence):
            raise ValueError(
                f"`bad_words_ids` in the {GENERATION_CONFIG_FILE} of the checkpoint at {source} holds {sequence}, "
                f"outside the vocabulary [0, vocab_size={config.vocab_size}). Fix the file."
            )
    limit = config.max_position_embeddings
    for name in ("max_length", "max_new_tokens"):
        value = saved.get(name)
        if value is not None and value > limit:
            raise ValueError(
                f"`{name}` in the {GENERATION_CONFIG_FILE} of the checkpoint at {source} is {value}, but the model's "
                f"position table covers {limit} positions (config.max_position_embeddings): decoding would fail "
                f"after the {limit}th token. Set it to at most {limit} in that file."
            )


def _check_forward_config(config, source) -> None:
    """Refuse a config whose forward fields are not the ones its `forward_config_sha256` records (if it records one)."""
    if config.forward_config_sha256 is not None:
        actual = config.forward_config_fingerprint()
        if actual != config.forward_config_sha256:
            raise ValueError(
                f"The forward settings in the config.json at {source} are not the ones the checkpoint was saved "
                f"with: their sha256 is {actual}, the checkpoint records {config.forward_config_sha256} "
                f"(forward_config_sha256 over {', '.join(FORWARD_FIELDS)}). One of them was edited, and the model "
                "would compute differently: restore the checkpoint's config.json (re-download it)."
            )


class SupermaskCheckpointMixin:
    """Checkpoint I/O shared by [`SupermaskModel`] and [`SupermaskForConditionalGeneration`]: save the config (with
    its fingerprints), the generation config, the packed masks and the remote code; load by regenerating the random
    weights, verifying the identity, and rebuilding scores from the masks.

    The class using it provides `config`, `random_weights` and `get_input_embeddings()` (the shared embedding)."""

    # Mask names in `masks_sha256` are those of the seq2seq model ("model.encoder..."): the bare model, whose modules
    # lack the "model." prefix, adds it, so that both classes compute one fingerprint for one checkpoint.
    _masks_name_prefix = ""

    def post_init(self):
        super().post_init()
        if self.config.mask_encoding != "packed":
            # A coded checkpoint holds `.mask_coded` instead of `.mask`: transformers need not report either; this
            # mixin checks that every masked tensor has one or the other (`_adopt_loaded_masks`).
            self._keys_to_ignore_on_load_missing.add(r"\.mask$")
            self._keys_to_ignore_on_load_unexpected.add(re.escape(CODED_SUFFIX) + "$")

    @property
    def masked_modules(self) -> dict[str, MaskedWeight]:
        """Every masked tensor of the model, by module name."""
        return {name: module for name, module in self.named_modules() if isinstance(module, MaskedWeight)}

    def num_maskable_weights(self) -> int:
        """Positions under a mask, every masked tensor counted once per mask (layers that share one random layer each
        have their own): the denominator of "bits per maskable weight"."""
        return sum(module.weight.numel() for module in self.masked_modules.values())

    def masks_fingerprint(self, sync: bool = True) -> str:
        """sha256 of every packed mask, in name order (what `config.masks_sha256` records): the masks the scores
        select, or with `sync=False` the packed `mask` buffers as they are (as loaded)."""
        digest = hashlib.sha256()
        for name, module in sorted(self.masked_modules.items()):
            if sync:
                module.sync_packed_mask()
            digest.update(f"{self._masks_name_prefix}{name}:{module.mask.numel()};".encode())
            digest.update(module.mask.detach().cpu().numpy().tobytes())
        return digest.hexdigest()

    def check_same_network(self, other, source) -> None:
        """Refuse `other` (a model loaded from `source`) as a mask set of this model unless it has this model's
        identity but for its masks: the same random weights, forward settings, embedding and (when both record one)
        tokenizer, naming every difference. `load_masks` calls it before changing anything."""
        mine, theirs = self.config, other.config
        differing = identity_differences(mine, theirs)
        if theirs.weights_sha256 != self.random_weights.fingerprint:
            differing.append(f"weights_sha256: {self.random_weights.fingerprint} -> {theirs.weights_sha256}")
        for field in ("mask_embedding", "embedding_sha256"):
            if getattr(theirs, field) != getattr(mine, field):
                differing.append(f"{field}: {getattr(mine, field)!r} -> {getattr(theirs, field)!r}")
        tokenizers = (mine.tokenizer_sha256, theirs.tokenizer_sha256)
        if None not in tokenizers and tokenizers[0] != tokenizers[1]:
            differing.append(f"tokenizer_sha256: {tokenizers[0]} -> {tokenizers[1]}")
        if not differing and sorted(other.masked_modules) != sorted(self.masked_modules):
            differing.append("masked tensors: another set of modules")
        if differing:
            raise ValueError(
                f"The masks at {source} belong to another model than this one (this model -> theirs: "
                f"{'; '.join(differing)}; this model has seed {mine.seed}, weight_init {mine.weight_init!r}). Masks "
                "are only meaningful over the weights and settings they were found with: load them as a model of "
                "their own instead."
            )

    # ------------------------------------------------------------------------------------------------------------
    # The tokenizer
    # ------------------------------------------------------------------------------------------------------------

    def record_tokenizer(self, tokenizer) -> str:
        """Check that `tokenizer` fits this model (its size is `vocab_size`) and record its fingerprint in
        `config.tokenizer_sha256` (the training script does), so that every later load path compares it. Returns
        the fingerprint."""
        self._check_tokenizer_size(len(tokenizer), "The tokenizer")
        text = _tokenizer_json(tokenizer)
        if text is None:
            raise ValueError(
                f"{type(tokenizer).__name__} has no tokenizer.json (not a fast tokenizer): its fingerprint cannot be "
                "recorded. Use a fast tokenizer (AutoTokenizer gives one)."
            )
        self.config.tokenizer_sha256 = tokenizer_fingerprint(text)
        return self.config.tokenizer_sha256

    def check_tokenizer(self, tokenizer) -> None:
        """Refuse a tokenizer other than the one this checkpoint was found with: a size other than `vocab_size`, or
        a fingerprint other than `config.tokenizer_sha256` (when recorded). Called by the translation pipeline."""
        self._check_tokenizer_size(len(tokenizer), "The tokenizer")
        expected = self.config.tokenizer_sha256
        if expected is None:
            return
        text = _tokenizer_json(tokenizer)
        if text is None:
            logger.warning(
                f"{type(tokenizer).__name__} has no tokenizer.json: it could not be compared with the model's "
                "recorded tokenizer_sha256."
            )
        elif tokenizer_fingerprint(text) != expected:
            raise ValueError(self._tokenizer_mismatch("The tokenizer given", tokenizer_fingerprint(text)))

    def _check_tokenizer_size(self, size: int, what: str) -> None:
        if size != self.config.vocab_size:
            raise ValueError(
                f"{what} has {size} tokens, but the model's vocabulary has vocab_size={self.config.vocab_size}: it is "
                "another model's tokenizer. Use the tokenizer saved with the checkpoint."
            )

    def _tokenizer_mismatch(self, what: str, actual: str) -> str:
        return (
            f"{what} has sha256 {actual}, but the checkpoint was found with the tokenizer "
            f"{self.config.tokenizer_sha256} (config.tokenizer_sha256): its ids mean other tokens, and the "
            "translations would be garbage. Use the tokenizer saved with the checkpoint."
        )

    def _check_tokenizer_file(self, source, kwargs: dict) -> list[str]:
        """Compare the checkpoint's own `tokenizer.json`, if it has one, with the model; return what could not be
        verified."""
        path = _resolve(source, TOKENIZER_FILE, kwargs)
        if path is None:
            return []
        content = json.loads(Path(path).read_text(encoding="utf-8"))
        self._check_tokenizer_size(_tokenizer_file_size(content), f"The {TOKENIZER_FILE} at {source}")
        if self.config.tokenizer_sha256 is None:
            return ["tokenizer_sha256 (the tokenizer.json next to it)"]
        actual = tokenizer_fingerprint(content)
        if actual != self.config.tokenizer_sha256:
            raise ValueError(self._tokenizer_mismatch(f"The {TOKENIZER_FILE} at {source}", actual))
        return []

    # ------------------------------------------------------------------------------------------------------------
    # Saving
    # ------------------------------------------------------------------------------------------------------------

    def save_pretrained(self, save_directory: str | os.PathLike, *args, **kwargs):
        """Save config (with the identity's fingerprints), generation config and packed masks only.

        The model code (auto_map) and the translation pipeline (custom_pipelines) are copied next to them, so the
        folder also loads with only transformers and `trust_remote_code=True`. With `push_to_hub=True` the folder
        is uploaded once it is complete (transformers would upload before the pipeline file is copied).
        """
        if self.random_weights.fingerprint is None:
            raise RuntimeError("The random weights have not been generated; this model cannot be saved.")
        self.config.weights_sha256 = self.random_weights.fingerprint
        if EMBEDDING in self.random_weights.external_sha256:
            self.config.embedding_sha256 = self.random_weights.external_sha256[EMBEDDING]
        self.config.masks_sha256 = self.masks_fingerprint()
        self.config.forward_config_sha256 = self.config.forward_config_fingerprint()
        self.config.generator_version = GENERATOR_VERSION
        self.config.custom_pipelines = {
            **self.config.__dict__.get("custom_pipelines", {}),
            **TRANSLATION_CUSTOM_PIPELINES,
        }
        main_process = kwargs.get("is_main_process", True)
        push = kwargs.pop("push_to_hub", False) and main_process
        hub = {key: kwargs.pop(key) for key in ("repo_id", "commit_message", "create_pr", "private") if key in kwargs}
        if push:
            from transformers.utils.hub import hf_api

            os.makedirs(save_directory, exist_ok=True)
            repo_id = hub.pop("repo_id", Path(save_directory).name)
            private = hub.pop("private", None)
            repo_id = hf_api().create_repo(repo_id, exist_ok=True, private=private, token=kwargs.get("token")).repo_id
            timestamps = self._get_files_timestamps(save_directory)
        if self.config.mask_encoding != "packed" and not getattr(self, "save_scores", False):
            kwargs["state_dict"] = self._coded_state_dict()
        ignored = self._keys_to_ignore_on_save
        scores = set() if getattr(self, "save_scores", False) else {f"{name}.scores" for name in self.masked_modules}
        self._keys_to_ignore_on_save = set(ignored or ()) | scores
        try:
            result = super().save_pretrained(save_directory, *args, **kwargs)
        finally:
            self._keys_to_ignore_on_save = ignored
        if main_process:
            shutil.copyfile(
                Path(__file__).with_name(TRANSLATION_PIPELINE_FILE), Path(save_directory) / TRANSLATION_PIPELINE_FILE
            )
        if push:
            self._upload_modified_files(save_directory, repo_id, timestamps, token=kwargs.get("token"), **hub)
        return result

    def _coded_state_dict(self) -> dict[str, torch.Tensor]:
        """A mask-only checkpoint in the compact encoding: every `mask` buffer (synced by `save_pretrained`'s
        `masks_fingerprint()`, so that the fingerprint is of what is coded) coded against its initial top-k, in
        parallel (LZMA and the top-k release the GIL)."""
        items = list(self.masked_modules.items())
        coded = threaded_map(lambda item: item[1].coded_mask(sync=False), items)
        return {f"{name}{CODED_SUFFIX}": tensor for (name, _), tensor in zip(items, coded)}

    # ------------------------------------------------------------------------------------------------------------
    # Loading
    # ------------------------------------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        """Load a checkpoint: regenerate the random weights, verify the identity (refusing any mismatch, naming it),
        rebuild scores from the masks."""
        output_loading_info = kwargs.pop("output_loading_info", False)
        source = pretrained_model_name_or_path
        from_files = kwargs.get("state_dict") is None and kwargs.get("gguf_file") is None
        mask_files = None
        if from_files:
            _check_source(source)
            mask_files = _validate_checkpoint_files(source, kwargs)
            # Before transformers loads the masks: an edited `frozen_fraction` changes their sizes, and its
            # size-mismatch error would hide the edit, which is what to report. (The Auto classes pass the config.)
            config = kwargs.get("config")
            if not isinstance(config, PreTrainedConfig):
                config = cls.config_class.from_pretrained(config or source, **_hub_kwargs(kwargs))
            _check_forward_config(config, source)
        token = LOADING_MASKS.set(True)
        try:
            model, loading_info = super().from_pretrained(source, *model_args, output_loading_info=True, **kwargs)
        finally:
            LOADING_MASKS.reset(token)
        model._adopt_loaded_masks(source, loading_info, mask_files)
        if from_files:
            _validate_generation_config(source, model.config, kwargs)
            unverified = model._check_tokenizer_file(source, kwargs)
            if model.config.forward_config_sha256 is None:
                unverified.insert(0, "forward_config_sha256 (the forward settings: FORWARD_FIELDS)")
            if unverified:
                logger.warning(
                    f"The checkpoint at {source} records no {'; no '.join(unverified)}: that part of its identity "
                    "could not be verified (saved before the field existed?), and it loads as its files say. "
                    f"{RESAVE_HINT}"
                )
        return (model, loading_info) if output_loading_info else model

    @torch.no_grad()
    def _adopt_loaded_masks(self, source, loading_info: dict, mask_files: dict[str, str] | None = None) -> None:
        """Verify the identity and adopt the loaded masks. `mask_files`: where the checkpoint's mask keys are, `{key:
        file}` (`None` when it was not loaded from files)."""
        config = self.config
        # First: an edited shape shows up below as missing or mis-sized masks, but the edit is what to report.
        _check_forward_config(config, source)
        missing = sorted(k for k in loading_info.get("missing_keys", ()) if k.endswith(".mask"))
        coded_keys = {}  # module name -> its coded mask's key
        if mask_files is not None:  # from files: every masked tensor has a packed or a coded mask there
            for name in self.masked_modules:
                key = self._checkpoint_key(name, mask_files)
                if key is None:
                    missing.append(f"{name}.mask")
                elif key.endswith(CODED_SUFFIX):
                    coded_keys[name] = key
            if coded_keys and config.mask_encoding == "packed":
                raise ValueError(
                    f"The checkpoint at {source} holds coded masks ({CODED_SUFFIX}) but its config.json says "
                    "mask_encoding='packed': the config was edited or belongs to another file. Restore the "
                    "checkpoint's config.json (re-download it)."
                )
        missing = sorted(set(missing))
        if missing:
            raise ValueError(
                f"The checkpoint at {source} has no mask for {len(missing)} tensor(s), e.g. {missing[:3]}. Refusing to "
                "load it with re-randomised masks: the file is incomplete or was saved for another configuration."
            )
        mismatched = loading_info.get("mismatched_keys") or []
        if mismatched:
            raise ValueError(f"The checkpoint at {source} has masks of the wrong size: {list(mismatched)[:3]}.")
        unexpected = sorted(loading_info.get("unexpected_keys") or ())
        if unexpected:
            raise ValueError(
                f"The checkpoint at {source} holds {len(unexpected)} tensor(s) that a supermask checkpoint does not "
                f"have, e.g. {unexpected[:3]}: it was not written by SupermaskForConditionalGeneration.save_pretrained "
                "or belongs to another configuration. Refusing to load it."
            )
        for field in ("weights_sha256", "masks_sha256"):
            if not getattr(config, field):
                raise ValueError(
                    f"The config.json at {source} has no `{field}`, which every checkpoint this library writes "
                    "records: without it the regenerated weights or the loaded masks cannot be verified. Refusing to "
                    "load it; re-save the checkpoint from a verified model."
                )
        actual = self.random_weights.fingerprint
        if actual != config.weights_sha256:
            raise ValueError(
                f"The random weights regenerated from seed={config.seed}, weight_init={config.weight_init!r}, "
                f"generator_version={config.generator_version} have sha256 {actual}, but the checkpoint at {source} "
                f"expects {config.weights_sha256}. The masks belong to other weights (edited seed or init, or another "
                "generator): refusing to load them."
            )

        coded = _read_tensors(list(coded_keys.values()), mask_files) if coded_keys else {}

        def adopt(item):
            name, module = item
            if name in coded_keys:
                module.load_coded_mask(coded[coded_keys[name]], prefix=f"{name}.")
            elif getattr(module.scores, "_is_hf_initialized", False):
                # A training checkpoint that kept its scores: they must select exactly the saved mask.
                module.verify_scores_match_mask(prefix=f"{name}.")
            else:
                module.load_packed_mask(prefix=f"{name}.")

        # Independent per tensor (numpy releases the GIL): in parallel; the first error in module order is raised.
        for _ in threaded_map(adopt, self.masked_modules.items()):
            pass
        # Loading re-creates parameters as trainable; a fixed (unmasked) embedding's scores must stay frozen.
        self.get_input_embeddings().scores.requires_grad_(bool(config.mask_embedding))
        if self.masks_fingerprint(sync=False) != config.masks_sha256:
            raise ValueError(
                f"The masks in {source} do not match the `masks_sha256` recorded in its config.json: the mask file is "
                "corrupted or was replaced. Re-save or re-download the checkpoint."
            )

    def _checkpoint_key(self, name: str, mask_keys) -> str | None:
        """The file key of module `name`'s mask (packed or coded), whichever class saved it: the seq2seq model's keys
        start with "model.", the bare model's do not."""
        prefix = self._masks_name_prefix or "model."
        for candidate in dict.fromkeys((name, f"{self._masks_name_prefix}{name}", name.removeprefix(prefix))):
            for suffix in (".mask", CODED_SUFFIX):
                if candidate + suffix in mask_keys:
                    return candidate + suffix
        return None


__all__ = ["FORWARD_FIELDS", "SupermaskCheckpointMixin", "identity_differences", "tokenizer_fingerprint"]
