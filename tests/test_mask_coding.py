"""Masks coded against the seed's initial top-k (`mask_encoding="initial_xor_lzma"`): lossless, smaller, verified."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from conftest import tiny_config
from safetensors.torch import load_file, save_file

from hf_supermask import SupermaskForConditionalGeneration
from hf_supermask.modeling.mask_coding import CODED_SUFFIX, decode_mask, encode_mask
from hf_supermask.resave import resave_checkpoint


def _found_model(flip_fraction: float = 0.2) -> SupermaskForConditionalGeneration:
    """A model whose masks moved away from their initial top-k as training moves them: the scores of a seeded
    `flip_fraction` of the positions are redrawn (so their top-k differs from the initial one there)."""
    model = SupermaskForConditionalGeneration(tiny_config()).eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for module in model.masked_modules.values():
            redraw = torch.rand(module.shape, generator=generator) < flip_fraction
            fresh = torch.randn(module.shape, generator=generator) * module.scores.abs().max()
            module.scores[redraw] = fresh[redraw]
    return model


def _outputs(model) -> torch.Tensor:
    input_ids = torch.tensor([[5, 17, 42, 9, 0], [8, 8, 30, 0, 319]])
    with torch.no_grad():
        logits = model(input_ids=input_ids, decoder_input_ids=input_ids[:, :3]).logits
        tokens = model.generate(input_ids=input_ids, max_new_tokens=6, num_beams=2)
    return logits, tokens


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """The same found model saved twice: packed, and coded."""
    model = _found_model()
    root = tmp_path_factory.mktemp("coding")
    model.save_pretrained(root / "packed")
    model.config.mask_encoding = "initial_xor_lzma"
    model.save_pretrained(root / "coded")
    model.config.mask_encoding = "packed"
    return model, root / "packed", root / "coded"


def test_the_coder_round_trips_and_refuses_what_is_not_its_stream():
    generator = torch.Generator().manual_seed(1)
    packed = torch.randint(0, 256, (500,), dtype=torch.uint8, generator=generator)
    predicted = packed ^ (torch.rand(500, generator=generator) < 0.1).to(torch.uint8)  # a few flipped bits
    coded = encode_mask(packed, predicted)
    assert coded.dtype == torch.uint8 and coded.numel() < packed.numel()
    assert torch.equal(decode_mask(coded, predicted, "x"), packed)
    with pytest.raises(ValueError, match="not a valid coded mask"):
        decode_mask(coded[:-4].clone(), predicted, "x")
    with pytest.raises(ValueError, match="decodes to 500 bytes, but this tensor's packed mask has 499"):
        decode_mask(coded, predicted[:-1], "x")


def test_coded_checkpoint_loads_the_same_masks_and_outputs(saved):
    model, packed_dir, coded_dir = saved
    keys = load_file(coded_dir / "model.safetensors").keys()
    assert keys and all(key.endswith(CODED_SUFFIX) for key in keys)
    config = json.loads((coded_dir / "config.json").read_text())
    assert config["mask_encoding"] == "initial_xor_lzma"
    assert config["masks_sha256"] == json.loads((packed_dir / "config.json").read_text())["masks_sha256"]

    loaded = SupermaskForConditionalGeneration.from_pretrained(coded_dir).eval()
    assert loaded.masks_fingerprint() == config["masks_sha256"]
    for (name, mine), theirs in zip(model.masked_modules.items(), loaded.masked_modules.values()):
        assert torch.equal(mine.current_mask(), theirs.current_mask()), name
    (logits, tokens), (loaded_logits, loaded_tokens) = _outputs(model), _outputs(loaded)
    assert torch.equal(logits, loaded_logits) and torch.equal(tokens, loaded_tokens)
    # ... and it exports to the same dense model.
    dense, loaded_dense = model.export_dense().eval(), loaded.export_dense().eval()
    for (name, mine), theirs in zip(dense.state_dict().items(), loaded_dense.state_dict().values()):
        assert torch.equal(mine, theirs), name


def test_coded_masks_are_smaller_the_more_of_the_initial_top_k_they_keep(tmp_path):
    def mask_bytes(folder) -> int:  # the masks' bytes (at this tiny size the file's header of names is as large)
        return sum(tensor.numel() for tensor in load_file(folder / "model.safetensors").values())

    sizes = {}
    for fraction in (0.05, 0.5):
        model = _found_model(fraction)
        model.config.mask_encoding = "initial_xor_lzma"
        model.save_pretrained(tmp_path / str(fraction))
        sizes[fraction] = mask_bytes(tmp_path / str(fraction))
    model.config.mask_encoding = "packed"
    model.save_pretrained(tmp_path / "packed")
    packed = mask_bytes(tmp_path / "packed")
    assert sizes[0.05] < 0.6 * packed  # masks close to their prediction cost a fraction of a bit per weight
    assert sizes[0.05] < sizes[0.5]


def test_bare_model_and_torch_load_state_dict_read_coded_masks(saved):
    from transformers import AutoModel

    model, _, coded_dir = saved
    bare = AutoModel.from_pretrained(coded_dir)
    assert type(bare).__name__ == "SupermaskModel"
    assert bare.masks_fingerprint() == model.masks_fingerprint()
    # torch's load_state_dict (the Trainer's resume path, user code): a coded mask-only state dict
    fresh = SupermaskForConditionalGeneration(tiny_config())
    result = fresh.load_state_dict(load_file(coded_dir / "model.safetensors"), strict=False)
    assert not result.unexpected_keys
    assert not [key for key in result.missing_keys if "embed_tokens" not in key]  # the shared embedding's aliases
    assert fresh.masks_fingerprint() == model.masks_fingerprint()


def _tampered(coded_dir, tmp_path, edit) -> str:
    folder = tmp_path / "tampered"
    shutil.copytree(coded_dir, folder)
    tensors = load_file(folder / "model.safetensors")
    edit(tensors)
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    return folder


def test_a_tampered_coded_mask_is_refused(saved, tmp_path):
    _, _, coded_dir = saved

    def flip_one_bit(tensors):
        key = sorted(tensors)[0]
        stream = tensors[key].clone()
        stream[len(stream) // 2] ^= 1
        tensors[key] = stream

    with pytest.raises(ValueError, match="corrupted|masks_sha256|keeps"):
        SupermaskForConditionalGeneration.from_pretrained(_tampered(coded_dir, tmp_path, flip_one_bit))


def test_a_missing_coded_mask_is_named(saved, tmp_path):
    _, _, coded_dir = saved
    key = sorted(load_file(coded_dir / "model.safetensors"))[0]
    folder = _tampered(coded_dir, tmp_path, lambda tensors: tensors.pop(key))
    with pytest.raises(ValueError, match=f"has no mask for 1 tensor.*{key.removesuffix(CODED_SUFFIX)}"):
        SupermaskForConditionalGeneration.from_pretrained(folder)


def test_a_config_that_does_not_match_the_file_is_refused(saved, tmp_path):
    _, _, coded_dir = saved
    folder = tmp_path / "edited"
    shutil.copytree(coded_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    config["mask_encoding"] = "packed"
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="holds coded masks .* says mask_encoding='packed'"):
        SupermaskForConditionalGeneration.from_pretrained(folder)
    config["mask_encoding"] = "initial_xor_zstd"  # a future encoding
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="mask_encoding='initial_xor_zstd' is not one this code knows.*upgrade"):
        SupermaskForConditionalGeneration.from_pretrained(folder)


def test_training_checkpoints_with_scores_keep_packed_masks(tmp_path):
    model = _found_model()
    model.config.mask_encoding = "initial_xor_lzma"
    model.save_scores = True
    model.save_pretrained(tmp_path)
    keys = load_file(tmp_path / "model.safetensors").keys()
    assert any(key.endswith(".scores") for key in keys) and any(key.endswith(".mask") for key in keys)
    assert not any(key.endswith(CODED_SUFFIX) for key in keys)
    loaded = SupermaskForConditionalGeneration.from_pretrained(tmp_path)
    assert loaded.masks_fingerprint() == model.masks_fingerprint()


def test_resave_recodes_a_folder_in_place_and_back(saved, tmp_path):
    model, packed_dir, _ = saved
    folder = tmp_path / "folder"
    shutil.copytree(packed_dir, folder)
    before = (folder / "model.safetensors").stat().st_size
    config = resave_checkpoint(folder, mask_encoding="initial_xor_lzma")
    assert config["mask_encoding"] == "initial_xor_lzma"
    assert (folder / "model.safetensors").stat().st_size < before
    assert config["masks_sha256"] == model.masks_fingerprint()
    loaded = SupermaskForConditionalGeneration.from_pretrained(folder).eval()
    assert torch.equal(_outputs(loaded)[1], _outputs(model)[1])
    resave_checkpoint(folder, mask_encoding="packed")
    assert (folder / "model.safetensors").stat().st_size == before
    assert all(key.endswith(".mask") for key in load_file(folder / "model.safetensors"))


def test_resave_updates_the_cards_checkpoint_format(tmp_path):
    from hf_supermask.pretrained import SHIPPED_MODEL

    folder = tmp_path / "shipped"
    shutil.copytree(SHIPPED_MODEL, folder)
    assert json.loads((folder / "config.json").read_text())["mask_encoding"] == "initial_xor_lzma"
    resave_checkpoint(folder, mask_encoding="packed")
    card = (folder / "README.md").read_text()
    assert "holds **only `uint8` tensors of packed masks**" in card and "coded masks" not in card
    bits = (
        8
        * (folder / "model.safetensors").stat().st_size
        / sum(
            module.weight.numel()
            for module in SupermaskForConditionalGeneration.from_pretrained(folder).masked_modules.values()
        )
    )
    assert f"({bits:.3f} bits per" in card


def test_partially_frozen_masks_code_their_free_bits(tmp_path):
    """With `frozen_fraction`, only the free positions are stored; coded, they are coded against the free positions'
    initial selection, and load back to the same masks."""
    model = SupermaskForConditionalGeneration(tiny_config(frozen_fraction=0.5)).eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for module in model.masked_modules.values():
            redraw = torch.rand(module.shape, generator=generator) < 0.1
            module.scores[redraw] = torch.randn(module.shape, generator=generator)[redraw]
    model.save_pretrained(tmp_path / "packed")
    model.config.mask_encoding = "initial_xor_lzma"
    model.save_pretrained(tmp_path / "coded")
    sizes = {
        name: sum(t.numel() for t in load_file(tmp_path / name / "model.safetensors").values())
        for name in ("packed", "coded")
    }
    assert sizes["coded"] < sizes["packed"]
    loaded = SupermaskForConditionalGeneration.from_pretrained(tmp_path / "coded").eval()
    assert loaded.masks_fingerprint() == model.masks_fingerprint()
    assert all(
        torch.equal(a.current_mask(), b.current_mask())
        for a, b in zip(model.masked_modules.values(), loaded.masked_modules.values())
    )
    assert torch.equal(_outputs(loaded)[1], _outputs(model)[1])
