"""Top-k masks, the straight-through estimator, packing, and scores rebuilt from masks."""

from __future__ import annotations

import pytest
import torch

from hf_supermask.modeling.binarizers import (
    MaskedWeightProduct,
    num_kept,
    pack_mask,
    packed_size,
    scores_for_mask,
    topk_mask,
    unpack_mask,
)
from hf_supermask.modeling.random_weights import generate_initial_scores


@pytest.mark.parametrize("density", [0.01, 0.3, 0.5, 0.77, 1.0])
def test_topk_keeps_exactly_k_largest(density):
    scores = generate_initial_scores(0, "w", (37, 53), "kaiming_uniform")
    k = num_kept(scores.numel(), density)
    assert k == max(1, round(density * scores.numel()))
    mask = topk_mask(scores.abs(), k)
    assert mask.dtype == torch.bool and mask.shape == scores.shape
    assert int(mask.sum()) == k
    if k < scores.numel():
        assert scores.abs()[mask].min() > scores.abs()[~mask].max()


def test_straight_through_gradient_has_the_sign_of_the_score():
    """abs() outside the Function: d loss / d score = sign(score) * d loss / d mask."""
    scores = torch.tensor([[2.0, -3.0], [-0.5, 0.1]], requires_grad=True)
    weight = torch.tensor([[1.0, 2.0], [1.0, 1.0]])
    mask = topk_mask(scores.detach().abs(), 2)
    product = MaskedWeightProduct.apply(scores, weight, mask)
    assert product.tolist() == [[1.0, 2.0], [0.0, 0.0]]
    upstream = torch.tensor([[1.0, 1.0], [-1.0, -1.0]])
    (product * upstream).sum().backward()
    # grad wrt the mask is weight * upstream (straight through the top-k); wrt the score times sign(score)
    assert scores.grad.tolist() == [[1.0, -2.0], [1.0, -1.0]]


def test_pack_unpack_round_trip_matches_numpy_packbits():
    import numpy as np

    mask = topk_mask(generate_initial_scores(1, "w", (13, 7), "kaiming_uniform").abs(), 40)
    packed = pack_mask(mask)
    assert packed.dtype == torch.uint8 and packed.numel() == packed_size(mask.shape) == (13 * 7 + 7) // 8
    assert np.array_equal(packed.numpy(), np.packbits(mask.numpy().reshape(-1)))
    assert torch.equal(unpack_mask(packed, mask.shape), mask)


@pytest.mark.parametrize("score_init", ["kaiming_uniform", "constant"])
def test_scores_rebuilt_from_a_mask_select_it_and_stay_trainable(score_init):
    initial = generate_initial_scores(2, "w", (40, 30), score_init)
    k = 600
    # an arbitrary mask, unrelated to the initial scores' own top-k
    target = topk_mask(generate_initial_scores(9, "other", (40, 30), "kaiming_uniform").abs(), k)
    rebuilt = scores_for_mask(initial, target)
    assert torch.equal(topk_mask(rebuilt.abs(), k), target)
    # same magnitudes (but at the threshold, where one entry may move by an ulp or take the threshold's value) and
    # the same signs as the seed's scores: not a frozen {1, 0} pattern
    before, after = initial.abs().flatten().sort().values, rebuilt.abs().flatten().sort().values
    assert int((before != after).sum()) <= 2 and torch.allclose(before, after, rtol=0, atol=1e-2 * before.max())
    assert torch.equal(torch.sign(rebuilt), torch.sign(initial))
    margin = rebuilt.abs()[target].min() - rebuilt.abs()[~target].max()
    assert 0 < margin < 1e-2 * initial.abs().max()
