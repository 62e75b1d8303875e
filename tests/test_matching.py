"""Tests of caliper nearest-neighbour matching, the propensity model and balance diagnostics."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import torch

from zoo.matching import (
    MatchResult,
    PropensityModel,
    balance_report,
    balance_statistics,
    balance_summary,
    caliper_match,
    fit_propensity,
    l2_normalize,
    match_bidirectional,
    matched_sets,
)


def _unit_features(num_samples: int, dim: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return l2_normalize(torch.randn(num_samples, dim, generator=generator))


def _seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _random_problem(num_samples: int = 300, dim: int = 6, seed: int = 0):
    """Features, binary scores spread over (0, 1), balanced groups and three strata."""
    generator = _seeded(seed)
    features = l2_normalize(torch.randn(num_samples, dim, generator=generator))
    scores = torch.rand(num_samples, generator=generator)
    groups = torch.arange(num_samples) % 2
    strata = torch.randint(0, 3, (num_samples,), generator=generator)
    return features, scores, groups, strata


def test_matches_equal_brute_force_nearest():
    queries = _unit_features(40, 5, seed=1)
    keys = _unit_features(60, 5, seed=2)
    half = torch.full((40,), 0.5)

    result = caliper_match(
        queries, half, torch.ones(40), keys, torch.full((60,), 0.5), torch.zeros(60),
        generator=_seeded(0),
    )

    expected = torch.cdist(queries, keys).argmin(dim=1)
    assert result.anchor_index.tolist() == list(range(40))
    assert result.match_index.shape == (40, 1)
    assert torch.equal(result.match_index[:, 0], expected)


def test_planted_pair_is_matched():
    queries = _unit_features(20, 8, seed=3)
    keys = _unit_features(50, 8, seed=4)
    keys[17] = l2_normalize(queries[3:4] + 1e-3)[0]

    result = caliper_match(
        queries, torch.full((20,), 0.5), torch.ones(20),
        keys, torch.full((50,), 0.5), torch.zeros(50),
        generator=_seeded(0),
    )

    row = result.anchor_index.tolist().index(3)
    assert result.match_index[row, 0].item() == 17


def test_fixed_caliper_drops_out_of_range_anchors():
    query_scores = torch.tensor([0.05, 0.1, 0.5, 0.9, 0.95, 0.3])
    queries = _unit_features(6, 4, seed=5)
    keys = _unit_features(10, 4, seed=6)
    key_scores = torch.full((10,), 0.5)
    arguments = (queries, query_scores, torch.ones(6), keys, key_scores, torch.zeros(10))

    result = caliper_match(*arguments, fixed_caliper=0.9, std_caliper=None)
    disabled = caliper_match(*arguments, fixed_caliper=1.0, std_caliper=None)

    # The interval (0.1, 0.9) is open, so scores of exactly 0.1 and 0.9 are dropped.
    assert result.anchor_index.tolist() == [2, 5]
    assert result.num_after_fixed_caliper == 2
    assert result.num_queries == 6
    assert result.match_rate == pytest.approx(2 / 6)
    assert disabled.anchor_index.tolist() == list(range(6))


def test_two_way_caliper_filters_keys_binary():
    queries = torch.tensor([[1.0, 0.0]])
    keys = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    key_scores = torch.tensor([0.97, 0.5])
    arguments = (queries, torch.tensor([0.5]), torch.ones(1), keys, key_scores, torch.zeros(2))

    one_way = caliper_match(*arguments, std_caliper=None)
    two_way = caliper_match(*arguments, std_caliper=None, two_way_caliper=True)

    assert one_way.match_index.tolist() == [[0]]
    assert two_way.match_index.tolist() == [[1]]


def test_std_caliper_rejects_far_propensity_pair():
    query = torch.tensor([[1.0, 0.0]])
    keys = l2_normalize(torch.tensor([[1.0, 0.01], [0.0, 1.0]]))
    key_scores = torch.tensor([0.8, 0.5])
    arguments = (query, torch.tensor([0.5]), torch.ones(1), keys, key_scores, torch.zeros(2))

    # Pooled std is sqrt((0 + 0.0225) / 2) ~= 0.106, so alpha = 0.2 allows gaps up to ~0.021
    # and the nearer key, with a gap of 0.3, is rejected.
    with_caliper = caliper_match(*arguments, std_caliper=0.2)
    without_caliper = caliper_match(*arguments, std_caliper=None)

    assert with_caliper.match_index.tolist() == [[1]]
    assert without_caliper.match_index.tolist() == [[0]]


def test_std_caliper_can_leave_anchor_unmatched():
    query = torch.tensor([[1.0, 0.0]])
    keys = torch.tensor([[1.0, 0.0], [0.0, 1.0]])

    result = caliper_match(
        query, torch.tensor([0.5]), torch.ones(1),
        keys, torch.tensor([0.8, 0.2]), torch.zeros(2),
        std_caliper=0.2,
    )

    assert result.num_matched == 0
    assert result.num_after_fixed_caliper == 1
    assert result.match_index.shape == (0, 1)


def test_strata_respected():
    features, scores, groups, strata = _random_problem(seed=7)

    result = caliper_match(
        features, scores, groups, features, scores, groups,
        fixed_caliper=None, std_caliper=None,
        query_strata=strata, key_strata=strata, generator=_seeded(0),
    )
    unstratified = caliper_match(
        features, scores, groups, features, scores, groups,
        fixed_caliper=None, std_caliper=None, generator=_seeded(0),
    )

    matches = result.match_index[:, 0]
    assert torch.equal(strata[result.anchor_index], strata[matches])
    assert torch.all(groups[result.anchor_index] != groups[matches])
    # Without strata some nearest neighbours lie in another stratum, so the check above
    # would fail if strata were ignored.
    free_matches = unstratified.match_index[:, 0]
    assert torch.any(strata[unstratified.anchor_index] != strata[free_matches])


def test_k_neighbours_are_nearest_first():
    queries = _unit_features(15, 4, seed=8)
    keys = _unit_features(30, 4, seed=9)
    key_strata = torch.zeros(30, dtype=torch.long)
    key_strata[:2] = 1  # stratum 1 has only two keys
    query_strata = torch.zeros(15, dtype=torch.long)
    query_strata[0] = 1

    result = caliper_match(
        queries, torch.full((15,), 0.5), torch.ones(15),
        keys, torch.full((30,), 0.5), torch.zeros(30),
        k=3, query_strata=query_strata, key_strata=key_strata, generator=_seeded(0),
    )

    assert result.match_index.shape == (14, 3)
    assert result.anchor_index.tolist() == list(range(1, 15))
    distances = torch.cdist(queries, keys)
    distances[:, :2] = math.inf
    expected = distances.topk(3, dim=1, largest=False).indices[1:]
    assert torch.equal(result.match_index, expected)


def test_block_size_does_not_change_result():
    features, scores, groups, strata = _random_problem(seed=10)
    arguments = (features, scores, groups, features, scores, groups)
    options = dict(k=2, query_strata=strata, key_strata=strata, two_way_caliper=True)

    small_blocks = caliper_match(*arguments, block_size=7, generator=_seeded(3), **options)
    one_block = caliper_match(*arguments, block_size=4096, generator=_seeded(3), **options)

    assert small_blocks.num_matched > 0
    assert torch.equal(small_blocks.anchor_index, one_block.anchor_index)
    assert torch.equal(small_blocks.match_index, one_block.match_index)


def test_same_generator_same_result():
    features, scores, groups, _ = _random_problem(seed=11)
    # Duplicated keys create exact distance ties, which the generator breaks.
    features = torch.cat([features, features])
    scores = torch.cat([scores, scores])
    groups = torch.cat([groups, groups])
    arguments = (features[:100], scores[:100], groups[:100], features, scores, groups)

    first = caliper_match(*arguments, generator=_seeded(5))
    second = caliper_match(*arguments, generator=_seeded(5))

    assert torch.equal(first.anchor_index, second.anchor_index)
    assert torch.equal(first.match_index, second.match_index)


def test_ties_broken_at_random():
    query = torch.tensor([[1.0, 0.0]])
    keys = torch.tensor([[0.0, 1.0]]).repeat(8, 1)
    key_scores = torch.full((8,), 0.5)
    arguments = (query, torch.tensor([0.5]), torch.ones(1), keys, key_scores, torch.zeros(8))

    chosen = set()
    for seed in range(40):
        result = caliper_match(*arguments, generator=_seeded(seed))
        chosen.add(result.match_index.item())

    # Uniform draws from 8 tied keys give at most 3 distinct keys in 40 draws with
    # probability below C(8, 3) * (3/8)^40 < 1e-15.
    assert len(chosen) >= 4


def test_exclude_self_skips_own_index():
    features = _unit_features(50, 4, seed=12)
    scores = torch.full((50,), 0.5)
    groups = torch.arange(50) % 2
    # The same samples carry the other label among the keys, so each query's nearest allowed
    # key would be itself.
    arguments = (features, scores, groups, features, scores, 1 - groups)

    plain = caliper_match(*arguments, std_caliper=None)
    excluded = caliper_match(*arguments, std_caliper=None, exclude_self=True)
    by_index = caliper_match(
        *arguments, std_caliper=None, exclude_self=True, query_key_index=torch.arange(50)
    )

    assert torch.equal(plain.match_index[:, 0], plain.anchor_index)
    assert torch.all(excluded.match_index[:, 0] != excluded.anchor_index)
    assert torch.equal(by_index.match_index, excluded.match_index)


def test_bidirectional_union_covers_both_groups():
    features, scores, groups, strata = _random_problem(seed=13)

    result = match_bidirectional(features, scores, groups, strata=strata, generator=_seeded(0))

    anchor_groups = groups[result.anchor_index]
    match_groups = groups[result.match_index[:, 0]]
    assert set(anchor_groups.tolist()) == {0, 1}
    assert torch.all(anchor_groups != match_groups)
    assert torch.equal(strata[result.anchor_index], strata[result.match_index[:, 0]])
    assert result.num_queries == 300
    # Treated (group 1) anchors come first, then control anchors.
    first_control = int((anchor_groups == 0).nonzero()[0])
    assert torch.all(anchor_groups[:first_control] == 1)
    assert torch.all(anchor_groups[first_control:] == 0)


def test_bidirectional_matches_per_direction_calls():
    features, scores, groups, _ = _random_problem(seed=14)
    treated = (groups == 1).nonzero().squeeze(1)
    control = (groups == 0).nonzero().squeeze(1)

    union = match_bidirectional(features, scores, groups, generator=_seeded(0))
    generator = _seeded(0)
    forward = caliper_match(
        features[treated], scores[treated], groups[treated],
        features[control], scores[control], groups[control], generator=generator,
    )
    backward = caliper_match(
        features[control], scores[control], groups[control],
        features[treated], scores[treated], groups[treated], generator=generator,
    )

    expected_anchors = torch.cat([treated[forward.anchor_index], control[backward.anchor_index]])
    expected_matches = torch.cat([control[forward.match_index], treated[backward.match_index]])
    assert torch.equal(union.anchor_index, expected_anchors)
    assert torch.equal(union.match_index, expected_matches)
    assert union.num_after_fixed_caliper == (
        forward.num_after_fixed_caliper + backward.num_after_fixed_caliper
    )


def test_multigroup_two_way_caliper():
    generator = _seeded(15)
    features = _unit_features(90, 5, seed=15)
    groups = torch.arange(90) % 3
    scores = torch.softmax(2 * torch.randn(90, 3, generator=generator), dim=1)
    confident = scores.max(dim=1).values >= 0.8
    assert confident.any()
    assert (~confident).any()
    arguments = (features, scores, groups, features, scores, groups)

    two_way = caliper_match(
        *arguments, fixed_caliper=0.8, std_caliper=None, two_way_caliper=True
    )
    one_way = caliper_match(*arguments, fixed_caliper=0.8, std_caliper=None)

    assert two_way.num_after_fixed_caliper == int((~confident).sum())
    assert not confident[two_way.anchor_index].any()
    assert not confident[two_way.match_index[:, 0]].any()
    assert torch.all(groups[two_way.anchor_index] != groups[two_way.match_index[:, 0]])
    # Only the two-way caliper keeps confident keys out of the matches.
    assert confident[one_way.match_index[:, 0]].any()


def test_multigroup_std_caliper_uses_key_group_coordinate():
    features = torch.tensor([[1.0, 0.0], [1.0, 0.01], [0.0, 1.0]])
    scores = torch.tensor(
        [
            [0.40, 0.30, 0.30],  # query, group 0
            [0.35, 0.60, 0.05],  # nearest key, group 1: gap 0.3 on its own coordinate
            [0.20, 0.50, 0.30],  # far key, group 2: gap 0.0 on its own coordinate
        ]
    )
    groups = torch.tensor([0, 1, 2])
    arguments = (features[:1], scores[:1], groups[:1], features[1:], scores[1:], groups[1:])

    strict = caliper_match(*arguments, fixed_caliper=None, std_caliper=0.01)
    disabled = caliper_match(*arguments, fixed_caliper=None, std_caliper=None)

    assert strict.match_index.tolist() == [[1]]
    assert disabled.match_index.tolist() == [[0]]


def test_matching_improves_balance():
    generator = _seeded(16)
    confounder = torch.randn(1500, generator=generator)
    groups = (torch.rand(1500, generator=generator) < torch.sigmoid(1.5 * confounder)).long()
    loadings = torch.randn(8, generator=generator)
    features = confounder[:, None] * loadings + torch.randn(1500, 8, generator=generator)

    model = fit_propensity(features, groups)
    result = match_bidirectional(
        features, model.scores(features), groups, generator=_seeded(0)
    )
    report = balance_report(features, groups, result)

    assert report["after"]["mean_abs_smd"] < report["before"]["mean_abs_smd"]
    assert report["after"]["max_abs_smd"] < report["before"]["max_abs_smd"]
    assert report["before"]["num_treated"] + report["before"]["num_control"] == 1500


def test_fit_propensity_recovers_separable_direction():
    generator = _seeded(17)
    features = torch.randn(800, 6, generator=generator)
    direction = torch.tensor([2.0, -1.0, 0.5, 0.0, 0.0, 1.0])
    # An offset makes the groups unequal in size, which the balanced weights must absorb.
    groups = (features @ direction > 0.8).long()

    model = fit_propensity(features, groups)

    cosine = torch.nn.functional.cosine_similarity(model.coef[0], direction, dim=0)
    accuracy = ((model.scores(features) > 0.5).long() == groups).float().mean()
    assert model.coef.shape == (1, 6)
    assert model.classes == (0, 1)
    assert cosine > 0.95
    assert accuracy > 0.95


def test_fit_propensity_multigroup_scores():
    features = _unit_features(300, 4, seed=18)
    groups = features.argmax(dim=1) % 3

    model = fit_propensity(features, groups)
    scores = model.scores(features)

    assert model.coef.shape == (3, 4)
    assert scores.shape == (300, 3)
    assert torch.allclose(scores.sum(dim=1), torch.ones(300))
    assert (scores.argmax(dim=1) == groups).float().mean() > 0.8


def test_temperature_flattens_scores():
    features = _unit_features(100, 4, seed=19)
    model = fit_propensity(features, (features[:, 0] > 0).long())

    sharp = model.scores(features)
    flat = model.scores(features, temperature=2.0)

    assert torch.all((flat - 0.5).abs() <= (sharp - 0.5).abs() + 1e-7)
    assert torch.allclose(flat, torch.sigmoid(model.logits(features) / 2.0))


@pytest.mark.parametrize("num_groups", [2, 3])
def test_propensity_linear_round_trip(num_groups):
    features = _unit_features(120, 5, seed=20)
    groups = torch.arange(120) % num_groups + 10
    model = fit_propensity(features, groups)

    linear = model.to_linear()
    restored = PropensityModel.from_linear(linear, model.classes)

    assert linear.out_features == (1 if num_groups == 2 else num_groups)
    assert restored.classes == model.classes
    assert torch.equal(restored.coef, model.coef)
    assert torch.equal(restored.intercept, model.intercept)
    assert torch.allclose(linear(features).squeeze(-1), model.logits(features))
    assert torch.equal(restored.scores(features), model.scores(features))


def test_balance_statistics_formula():
    treated = torch.tensor([[1.0, 5.0, 2.0], [3.0, 5.0, 4.0]])
    control = torch.tensor([[0.0, 5.0, 7.0], [0.0, 5.0, 7.0], [3.0, 5.0, 7.0]])

    statistics = balance_statistics(treated, control)

    # Feature 0: means 2 and 1, population variances 1 and 2.
    assert statistics["smd"][0] == pytest.approx(1 / math.sqrt(1.5))
    assert statistics["variance_ratio"][0] == pytest.approx(0.5)
    # Feature 1 is the same constant in both groups.
    assert statistics["smd"][1] == 0.0
    assert statistics["variance_ratio"][1] == 1.0
    # Feature 2 is constant among the controls only.
    assert statistics["variance_ratio"][2] == math.inf


def test_balance_summary_bins_and_json():
    generator = _seeded(21)
    treated = torch.randn(400, 5, generator=generator)
    control = torch.randn(400, 5, generator=generator)
    shifted = control + torch.tensor([0.0, 0.0, 0.0, 1.0, 1.0])

    # After: the treated rows against an exact copy, so every SMD is 0 and every VR is 1.
    summary = balance_summary(treated, shifted, treated, treated.clone())

    before = summary["before"]
    assert sum(before["smd_bin_counts"].values()) == 5
    assert sum(before["variance_ratio_bin_counts"].values()) == 5
    assert before["smd_bin_counts"][">0.2"] == 2
    assert summary["after"]["smd_bin_counts"]["<=0.1"] == 5
    assert summary["after"]["variance_ratio_bin_counts"]["4/5-5/4"] == 5
    assert summary["after"]["max_abs_smd"] == 0.0
    assert json.loads(json.dumps(summary)) == summary


def test_matched_sets_pairs_with_multiplicity():
    features = torch.arange(6, dtype=torch.float32)[:, None]
    groups = torch.tensor([1, 1, 0, 0, 0, 1])
    result = MatchResult(
        anchor_index=torch.tensor([0, 2]),
        match_index=torch.tensor([[3, 4], [5, 0]]),
        num_queries=6,
        num_after_fixed_caliper=6,
    )

    treated, control = matched_sets(features, groups, result)

    assert treated[:, 0].tolist() == [0.0, 0.0, 5.0, 0.0]
    assert control[:, 0].tolist() == [2.0, 2.0, 3.0, 4.0]


def test_match_result_to_dict_is_json():
    features, scores, groups, _ = _random_problem(seed=22)
    result = match_bidirectional(features, scores, groups, k=2, generator=_seeded(0))

    payload = json.loads(json.dumps(result.to_dict()))

    assert payload["num_matched"] == result.num_matched
    assert len(payload["match_index"][0]) == 2
    assert payload["match_rate"] == pytest.approx(result.num_matched / 300)


def _valid_arguments():
    features = _unit_features(4, 3, seed=23)
    return dict(
        query_features=features,
        query_scores=torch.full((4,), 0.5),
        query_groups=torch.tensor([0, 1, 0, 1]),
        key_features=features,
        key_scores=torch.full((4,), 0.5),
        key_groups=torch.tensor([0, 1, 0, 1]),
    )


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"query_groups": torch.tensor([0, 1, 0])}, "got shape (3,)"),
        ({"query_scores": torch.full((4, 1), 0.5)}, "(4, 1)"),
        ({"query_scores": torch.full((4,), 1.5)}, "1.5"),
        ({"key_features": torch.zeros(4, 5)}, "have 5"),
        ({"query_groups": torch.zeros(4), "key_groups": torch.zeros(4)}, "[0]"),
        ({"query_groups": torch.tensor([0, 1, 2, 1])}, "[0, 1, 2]"),
        ({"k": 0}, "got 0"),
        ({"fixed_caliper": 0.4}, "fixed_caliper=0.4"),
        ({"std_caliper": -1.0}, "-1.0"),
        ({"std_caliper": 0.0}, "got 0.0"),
        ({"block_size": 0}, "got 0"),
        ({"query_strata": torch.zeros(4)}, "query_strata and key_strata"),
        ({"query_key_index": torch.arange(4)}, "exclude_self=True"),
    ],
)
def test_caliper_match_rejects_bad_input(override, message):
    arguments = _valid_arguments() | override

    with pytest.raises(ValueError, match=re.escape(message)):
        caliper_match(**arguments)


def test_multigroup_rejects_out_of_range_group():
    arguments = _valid_arguments()
    scores = torch.full((4, 3), 1 / 3)
    arguments.update(query_scores=scores, key_scores=scores, key_groups=torch.tensor([0, 1, 3, 1]))

    with pytest.raises(ValueError, match=re.escape("[0, 1, 3]")):
        caliper_match(**arguments)


def test_fit_propensity_rejects_single_group():
    with pytest.raises(ValueError, match=re.escape("single value [1]")):
        fit_propensity(torch.randn(10, 3), torch.ones(10))


def test_scores_reject_bad_temperature():
    model = fit_propensity(torch.randn(20, 3), torch.arange(20) % 2)

    with pytest.raises(ValueError, match="got 0"):
        model.scores(torch.randn(5, 3), temperature=0)
