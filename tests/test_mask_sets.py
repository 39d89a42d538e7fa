"""Several mask sets over one random network: switched without reloading, refused when found over other weights."""

from __future__ import annotations

import pytest
import torch
from conftest import read_lines, tiny_config
from transformers import pipeline

from hf_supermask import SupermaskForConditionalGeneration


SOURCES = read_lines("test_2016_flickr", "en", 4)


def _scrambled(config, seed: int) -> SupermaskForConditionalGeneration:
    """A model whose masks moved away from their initial top-k (a stand-in for one direction's training)."""
    model = SupermaskForConditionalGeneration(config)
    with torch.no_grad():
        for module in model.masked_modules.values():
            module.scores.copy_(torch.randn(module.shape, generator=torch.Generator().manual_seed(seed)))
    return model


@pytest.fixture(scope="module")
def two_directions(tmp_path_factory, tiny_tokenizer):
    config = tiny_config(vocab_size=len(tiny_tokenizer))
    folders = {}
    for name, seed in (("en-de", 1), ("en-fr", 2)):
        folders[name] = tmp_path_factory.mktemp(name)
        _scrambled(config, seed).save_pretrained(folders[name])
        tiny_tokenizer.save_pretrained(folders[name])
    return folders


def _logits(model, tokenizer):
    batch = tokenizer(SOURCES, return_tensors="pt", padding=True)
    with torch.no_grad():
        return model(**batch, decoder_input_ids=batch["input_ids"][:, :5]).logits


def test_switching_mask_sets_equals_separately_loaded_models(two_directions, tiny_tokenizer, tmp_path):
    separate = {name: SupermaskForConditionalGeneration.from_pretrained(path) for name, path in two_directions.items()}
    model = SupermaskForConditionalGeneration.from_pretrained(two_directions["en-de"])
    model.load_masks(two_directions["en-fr"], "en-fr")
    assert model.active_masks == "default" and set(model.mask_sets) == {"default", "en-fr"}
    expected = {name: _logits(m, tiny_tokenizer) for name, m in separate.items()}
    assert not torch.equal(expected["en-de"], expected["en-fr"])
    for name in ("en-fr", "default", "en-fr", "default"):  # back and forth, in eval mode (folds kept per set)
        model.set_active_masks(name)
        torch.testing.assert_close(_logits(model, tiny_tokenizer), expected["en-de" if name == "default" else name])
    model.train()
    model.set_active_masks("en-fr")  # in training mode too, and the masks are what the scores select
    model.eval()
    torch.testing.assert_close(_logits(model, tiny_tokenizer), expected["en-fr"])
    folders = model.save_mask_sets(tmp_path)
    assert {f.name for f in folders} == {"default", "en-fr"} and model.active_masks == "en-fr"
    reloaded = SupermaskForConditionalGeneration.from_pretrained(tmp_path / "en-fr")
    assert reloaded.masks_fingerprint() == separate["en-fr"].masks_fingerprint()


def _state_bytes(model, name: str) -> int:
    """Bytes an inactive mask set holds."""
    return sum(
        t.numel() * t.element_size() for state in model._inactive_mask_sets[name].values() for t in state.values()
    )


def test_inactive_loaded_sets_hold_one_bit_per_weight_and_trained_sets_keep_their_scores(
    two_directions, tiny_tokenizer
):
    model = SupermaskForConditionalGeneration.from_pretrained(two_directions["en-de"]).eval()
    model.load_masks(two_directions["en-fr"], "en-fr")
    maskable = sum(module.weight.numel() for module in model.masked_modules.values())
    assert _state_bytes(model, "en-fr") <= maskable / 8 + len(model.masked_modules)  # packed, not float32 scores
    loaded_scores = {n: m.scores.detach().clone() for n, m in model.masked_modules.items()}
    model.set_active_masks("en-fr")
    assert _state_bytes(model, "default") <= maskable / 8 + len(model.masked_modules)  # loaded, untrained: packed
    model.set_active_masks("default")  # the rebuild gives back the very scores the load built
    for name, module in model.masked_modules.items():
        assert torch.equal(module.scores, loaded_scores[name]), name

    # One optimizer step (a fused one, which no version counter shows) on the default set: it is held whole now.
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1, fused=True)
    batch = tiny_tokenizer(SOURCES, return_tensors="pt", padding=True)
    model(**batch, labels=batch["input_ids"]).loss.backward()
    optimizer.step()
    trained = {n: m.scores.detach().clone() for n, m in model.masked_modules.items()}
    assert any(not torch.equal(trained[n], loaded_scores[n]) for n in trained)
    model.set_active_masks("en-fr")
    assert _state_bytes(model, "default") == 4 * maskable  # float32 scores, by reference
    model.set_active_masks("default")
    for name, module in model.masked_modules.items():
        assert torch.equal(module.scores, trained[name]), name  # nothing the step learned is lost


def test_the_translation_pipeline_picks_the_mask_set(two_directions, tiny_tokenizer):
    from transformers import pipeline

    import hf_supermask  # noqa: F401

    model = SupermaskForConditionalGeneration.from_pretrained(two_directions["en-de"])
    model.load_masks(two_directions["en-fr"], "en-fr")
    alone = pipeline("translation", model=str(two_directions["en-fr"]), device="cpu")
    expected = alone(SOURCES, max_new_tokens=6)
    by_task = pipeline("translation_en_to_fr", model=model, tokenizer=tiny_tokenizer, device="cpu")
    by_name = pipeline("translation", model=model, tokenizer=tiny_tokenizer, device="cpu", mask_set="en-fr")
    model.set_active_masks("default")
    assert by_task(SOURCES, max_new_tokens=6) == expected
    model.set_active_masks("default")
    assert by_name(SOURCES, max_new_tokens=6) == expected
    # a direction no set is named after is refused, not translated with whichever set is active
    with pytest.raises(ValueError, match="none named 'en-de'"):
        pipeline("translation_en_to_de", model=model, tokenizer=tiny_tokenizer, device="cpu")(SOURCES, max_new_tokens=6)
    model.rename_mask_set("default", "en-de")
    assert model.mask_sets == ("en-de", "en-fr")  # the pipelines above left "default" active
    german = pipeline("translation_en_to_de", model=model, tokenizer=tiny_tokenizer, device="cpu")
    assert german(SOURCES, max_new_tokens=6) == pipeline(
        "translation", model=str(two_directions["en-de"]), device="cpu"
    )(SOURCES, max_new_tokens=6)
    model.set_active_masks("en-fr")
    assert german(SOURCES[:1], max_new_tokens=6) and model.active_masks == "en-fr"


def test_masks_found_over_other_weights_are_refused(two_directions, tiny_tokenizer, tmp_path):
    model = SupermaskForConditionalGeneration.from_pretrained(two_directions["en-de"])
    for name, overrides, named in (
        ("other-seed", {"seed": 99}, "weights_sha256: "),
        ("other-shape", {"encoder_ffn_dim": 32}, "encoder_ffn_dim: 64 -> 32"),
        ("other-density", {"density": 0.3}, "density: 0.5 -> 0.3"),
    ):
        _scrambled(tiny_config(vocab_size=len(tiny_tokenizer), **overrides), 3).save_pretrained(tmp_path / name)
        with pytest.raises(ValueError, match=f"belong to another model than this one .*{named}"):
            model.load_masks(tmp_path / name, name)
    with pytest.raises(KeyError, match="No mask set named 'de-en'"):
        model.set_active_masks("de-en")
    assert model.mask_sets == ("default",)


def test_mask_overlap_and_non_target_combinations(two_directions, tiny_tokenizer, tmp_path):
    from experiments.mask_analysis import combine_masks, mask_overlap, overlap_table, plot_overlaps

    de = SupermaskForConditionalGeneration.from_pretrained(two_directions["en-de"])
    fr = SupermaskForConditionalGeneration.from_pretrained(two_directions["en-fr"])
    itself = mask_overlap(de, de)
    assert itself["all"] == 1.0 and set(itself["by_kind"].values()) == {1.0}
    independent = mask_overlap(de, fr)  # two unrelated scramblings: near chance (density 0.5)
    assert abs(independent["all"] - 0.5) < 0.05 and abs(independent["expected_all"] - 0.5) < 0.05
    # Two masks that never left the seed's initial top-k overlap fully, and the shared start explains all of it.
    fresh = SupermaskForConditionalGeneration(de.config).eval()
    untrained = mask_overlap(fresh, SupermaskForConditionalGeneration(de.config).eval())
    assert untrained["all"] == 1.0 and untrained["expected_all"] == pytest.approx(1.0)
    # One that kept its initial top-k against a scrambled one: expected = the scrambled mask's share of that top-k.
    half = mask_overlap(fresh, de)
    assert half["expected_all"] == pytest.approx(half["all"])
    assert {"embedding", "encoder.fc1", "decoder.encoder_attn.q_proj"} <= set(independent["by_kind"])
    assert {"embedding", "encoder 0", "decoder 1"} <= set(independent["by_layer"])
    combined = combine_masks(de, fr)
    assert mask_overlap(combined, de)["by_layer"]["encoder 1"] == 1.0
    assert mask_overlap(combined, fr)["by_layer"]["decoder 0"] == 1.0
    assert mask_overlap(combined, de)["by_kind"]["embedding"] == 1.0
    assert "| chance (= density) | 0.50 |" in overlap_table({"en-de / en-fr": independent})
    assert plot_overlaps({"en-de / en-fr": independent}, tmp_path / "overlap.png")
    assert (tmp_path / "overlap.png").stat().st_size > 0


def test_mask_sets_benchmark_smoke(two_directions):
    from experiments.benchmark_mask_sets import benchmark_mask_sets, mask_sets_markdown

    results = benchmark_mask_sets([str(p) for p in two_directions.values()], SOURCES[:2], repetitions=2)
    one, separate = results["one_model"], results["separate"]
    assert one["sets"] == separate["sets"] == 2
    assert one["switch_seconds"] > 0 and separate["switch_seconds"] is None
    assert one["rss_above_baseline_mb"] > 0 and separate["rss_above_baseline_mb"] > 0
    assert set(results["bits_per_weight_on_disk"]) == {p.name for p in two_directions.values()}
    assert all(bits > 1 for bits in results["bits_per_weight_on_disk"].values())  # a bit per weight, plus headers
    table = mask_sets_markdown(results)
    assert "| switch direction | `set_active_masks`" in table and "| load all 2 |" in table


def _loaded_with_sets(two_directions) -> SupermaskForConditionalGeneration:
    model = SupermaskForConditionalGeneration.from_pretrained(two_directions["en-de"])
    model.load_masks(two_directions["en-fr"], "en-fr")
    return model


def _train_step(model, tokenizer, optimizer) -> None:
    batch = tokenizer(SOURCES, return_tensors="pt", padding=True)
    model(**batch, labels=batch["input_ids"]).loss.backward()
    optimizer.step()


def test_each_set_owns_its_scores_gradient_and_optimizer_state(two_directions, tiny_tokenizer):
    """Item 6: `.grad` and optimizer moments never cross sets; parameters() exposes the active set only."""
    model = _loaded_with_sets(two_directions).train()
    fc1 = model.model.encoder.layers[0].fc1
    default_optimizer = torch.optim.Adam(model.parameters(), lr=0.1, fused=True)
    _train_step(model, tiny_tokenizer, default_optimizer)
    default_optimizer.zero_grad(set_to_none=False)  # zero gradients, still attached: Adam's moments would move them
    batch = tiny_tokenizer(SOURCES, return_tensors="pt", padding=True)
    model(**batch, labels=batch["input_ids"]).loss.backward()  # a gradient of "default", pending
    default_scores = {name: module.scores for name, module in model.masked_modules.items()}

    model.set_active_masks("en-fr")
    assert fc1.scores is not default_scores["model.encoder.layers.0.fc1"] and fc1.scores.grad is None
    active_ids = {id(p) for p in model.parameters()}
    assert active_ids == {id(m.scores) for m in model.masked_modules.values()}
    assert not active_ids & {id(p) for p in default_scores.values()}  # inactive Parameters are not the model's
    assert all(p.requires_grad for p in model.parameters()) and not any(
        p.requires_grad for p in default_scores.values()
    )
    en_fr_masks = model.masks_fingerprint()
    default_optimizer.step()  # the old set's optimizer: must not reach the active set
    assert model.masks_fingerprint() == en_fr_masks
    en_fr_optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    _train_step(model, tiny_tokenizer, en_fr_optimizer)
    assert all(id(p) not in en_fr_optimizer.state for p in default_scores.values())

    model.set_active_masks("default")  # the very Parameters the first optimizer holds, with their state and grad
    assert all(m.scores is default_scores[n] for n, m in model.masked_modules.items())
    assert fc1.scores.grad is not None and fc1.scores in default_optimizer.state
    assert all(p.requires_grad for p in model.parameters())


def test_a_packed_set_keeps_its_parameter_across_switches(two_directions, tiny_tokenizer):
    """An optimizer built before switching away from a loaded (packed while inactive) set still trains it after
    switching back: the set's Parameter is emptied while inactive, not replaced."""
    model = _loaded_with_sets(two_directions).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=10.0)
    held = {name: module.scores for name, module in model.masked_modules.items()}
    model._apply(lambda t: t.clone())  # a device move's stand-in: copies the scores, does not make them trained
    held = {name: module.scores for name, module in model.masked_modules.items()}
    model.set_active_masks("en-fr")
    assert all(p.numel() == 0 for p in held.values())  # one bit per weight while inactive: the packed mask only
    model.set_active_masks("default")
    before = model.masks_fingerprint()
    _train_step(model, tiny_tokenizer, optimizer)
    assert all(m.scores is held[n] for n, m in model.masked_modules.items())
    assert model.masks_fingerprint() != before


def test_a_switch_that_fails_changes_nothing(two_directions, tiny_tokenizer):
    """Every tensor of the incoming set is checked before any is switched."""
    model = _loaded_with_sets(two_directions).eval()
    expected = _logits(model, tiny_tokenizer)
    last = sorted(model._inactive_mask_sets["en-fr"])[-1]
    model._inactive_mask_sets["en-fr"][last]["packed"] = torch.zeros_like(
        model._inactive_mask_sets["en-fr"][last]["packed"]
    )  # keeps no weight: not a mask of this density
    with pytest.raises(ValueError, match="cannot be activated .*'default' stays active.*keeps 0 weights"):
        model.set_active_masks("en-fr")
    assert model.active_masks == "default" and model.mask_sets == ("default", "en-fr")
    assert set(model._inactive_mask_sets["en-fr"]) == set(model.masked_modules)
    torch.testing.assert_close(_logits(model, tiny_tokenizer), expected)
    model.load_masks(two_directions["en-fr"], "en-fr-again")  # the model still works as it did
    model.set_active_masks("en-fr-again")


def test_switching_under_inference_mode_then_training(two_directions, tiny_tokenizer):
    """Item 8: a server switching per request under inference_mode leaves no inference tensor behind."""
    model = _loaded_with_sets(two_directions).eval()
    with torch.inference_mode():
        model.set_active_masks("en-fr")
        _logits(model, tiny_tokenizer)
        model.set_active_masks("default")
        model.set_active_masks("en-fr")
    assert not any(t.is_inference() for t in (*model.parameters(), *model.buffers()))
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    _train_step(model, tiny_tokenizer, optimizer)
    model.set_active_masks("default")
    _train_step(model, tiny_tokenizer, torch.optim.Adam(model.parameters(), lr=0.1))


@pytest.mark.parametrize("bad", ["", "../x", "/abs/dir", "a/b", "..", ".hidden", "-x", "a b", "x" * 101, 7])
def test_unsafe_mask_set_names_are_refused(two_directions, tmp_path, bad):
    """Item 9: set names become folder names in `save_mask_sets`; only plain names are accepted."""
    model = SupermaskForConditionalGeneration.from_pretrained(two_directions["en-de"])
    with pytest.raises(ValueError, match="Invalid mask set name"):
        model.load_masks(two_directions["en-fr"], bad)
    with pytest.raises(ValueError, match="Invalid mask set name"):
        model.rename_mask_set("default", bad)
    assert model.mask_sets == ("default",)


def test_a_pipeline_leaves_the_model_as_it_found_it(two_directions, tiny_tokenizer):
    """Item 10: an en->fr pipeline run on a shared model does not switch a plain pipeline built on it earlier."""
    model = _loaded_with_sets(two_directions)
    plain = pipeline("translation", model=model, tokenizer=tiny_tokenizer, device="cpu")
    german = plain(SOURCES, max_new_tokens=6)
    french = pipeline("translation_en_to_fr", model=model, tokenizer=tiny_tokenizer, device="cpu")
    assert french(SOURCES, max_new_tokens=6) != german
    assert model.active_masks == "default"
    assert plain(SOURCES, max_new_tokens=6) == german
    streamed = french((text for text in SOURCES[:2]), max_new_tokens=6, batch_size=1)
    for translation in streamed:  # a generator is translated lazily: the set is restored after each batch
        assert translation and model.active_masks == "default"


def test_a_model_refuses_a_direction_it_does_not_serve(two_directions, tiny_tokenizer):
    """Item 10: a single-set model whose config records its direction, or whose set is named after one, refuses
    another direction's task instead of translating into the wrong language."""
    model = SupermaskForConditionalGeneration.from_pretrained(two_directions["en-de"])
    reference = pipeline("translation", model=model, tokenizer=tiny_tokenizer, device="cpu")(SOURCES, max_new_tokens=6)
    model.config.source_lang, model.config.target_lang = "en", "de"
    with pytest.raises(ValueError, match="asks for en-fr, but the model serves \\['en-de'\\]"):
        pipeline("translation_en_to_fr", model=model, tokenizer=tiny_tokenizer, device="cpu")(SOURCES)
    german = pipeline("translation_en_to_de", model=model, tokenizer=tiny_tokenizer, device="cpu")
    assert german(SOURCES, max_new_tokens=6) == reference
    model.load_masks(two_directions["en-fr"], "en-fr")  # the recorded direction names the loaded set, "default"
    assert german(SOURCES, max_new_tokens=6) == reference
    unrecorded = SupermaskForConditionalGeneration.from_pretrained(two_directions["en-de"])
    unrecorded.rename_mask_set("default", "en-de")
    with pytest.raises(ValueError, match="asks for en-fr"):
        pipeline("translation_en_to_fr", model=unrecorded, tokenizer=tiny_tokenizer, device="cpu")(SOURCES)


def test_saved_folders_carry_the_split_modeling_files(two_directions):
    """Remote code: the mask-set and dense-export files travel with every checkpoint (relative imports)."""
    assert {"mask_sets.py", "dense_export.py", "modeling_supermask.py"} <= {
        p.name for p in two_directions["en-de"].iterdir()
    }
