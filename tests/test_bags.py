"""Tests for balanced bag sampling in `zoo.data.bags`."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from zoo.data.bags import BalancedBagSampler, group_ids, group_multipliers
from zoo.nn.set_discriminator import batch_to_bags

NUM_SUBGROUPS = 2


def two_by_two_missing_groups() -> torch.Tensor:
    """Return group ids for 2 classes x 2 subgroups with source (y=1, s=0) missing."""
    labels = torch.tensor([0] * 10 + [0] * 7 + [1] * 5)
    subgroups = torch.tensor([0] * 10 + [1] * 7 + [1] * 5)
    return group_ids(labels, subgroups, NUM_SUBGROUPS)


def split_bags(batch: list[int], bag_size: int) -> list[list[int]]:
    return [batch[start : start + bag_size] for start in range(0, len(batch), bag_size)]


def test_multipliers_two_by_two_example():
    multipliers = group_multipliers({0: [0, 1], 1: [1]}, num_subgroups=2)

    assert multipliers == {0: 1, 1: 1, 3: 2}


def test_multipliers_accept_pair_array():
    pairs = np.array([[0, 0], [0, 1], [1, 1]])

    assert group_multipliers(pairs, num_subgroups=2) == {0: 1, 1: 1, 3: 2}


def test_multipliers_three_classes_lcm_rule():
    # Class 0 has 3 sources, class 1 has 2 and class 2 has 1, so lcm(3, 2, 1) = 6.
    present = {0: [0, 1, 2], 1: [0, 2], 2: [1]}

    multipliers = group_multipliers(present, num_subgroups=3)

    assert multipliers == {0: 2, 1: 2, 2: 2, 3: 3, 5: 3, 7: 6}
    per_class = Counter()
    for group, multiplier in multipliers.items():
        per_class[group // 3] += multiplier
    assert set(per_class.values()) == {6}


def test_multipliers_infer_num_subgroups():
    assert group_multipliers({0: [0, 1], 1: [1]}) == {0: 1, 1: 1, 3: 2}


def test_bag_composition_matches_multipliers():
    groups = two_by_two_missing_groups()
    multipliers = group_multipliers({0: [0, 1], 1: [1]}, num_subgroups=NUM_SUBGROUPS)
    sampler = BalancedBagSampler(
        groups,
        samples_per_group=3,
        bags_per_batch=4,
        multipliers=multipliers,
        num_batches=2,
        generator=0,
    )

    assert sampler.bag_size == 3 * (1 + 1 + 2)
    for batch in sampler:
        for bag in split_bags(batch, sampler.bag_size):
            counts = Counter(int(groups[i]) for i in bag)
            assert counts == {group: 3 * m for group, m in multipliers.items()}


def test_every_class_contributes_equally():
    labels = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2, 2])
    subgroups = torch.tensor([0, 1, 2, 0, 2, 0, 1, 1, 1, 1])
    groups = group_ids(labels, subgroups, 3)
    multipliers = group_multipliers({0: [0, 1, 2], 1: [0, 2], 2: [1]}, num_subgroups=3)
    sampler = BalancedBagSampler(
        groups,
        samples_per_group=2,
        bags_per_batch=3,
        multipliers=multipliers,
        num_batches=1,
        generator=1,
    )

    (batch,) = list(sampler)
    for bag in split_bags(batch, sampler.bag_size):
        per_class = Counter(int(labels[i]) for i in bag)
        assert per_class == {0: 12, 1: 12, 2: 12}


def test_perfect_bag_size_and_counts():
    groups = torch.arange(8).repeat(5)
    sampler = BalancedBagSampler(
        groups, samples_per_group=2, bags_per_batch=2, num_batches=1, generator=0
    )

    assert sampler.bag_size == 2 * 2 * 2 * 2
    (batch,) = list(sampler)
    for bag in split_bags(batch, sampler.bag_size):
        assert Counter(int(groups[i]) for i in bag) == {group: 2 for group in range(8)}


def test_deployment_cluster_ids_equally_represented():
    clusters = np.array([7] * 50 + [2] * 3 + [11] * 9)
    sampler = BalancedBagSampler(clusters, samples_per_group=4, num_batches=3, generator=5)

    for batch in sampler:
        assert Counter(int(clusters[i]) for i in batch) == {2: 4, 7: 4, 11: 4}


def test_same_seed_same_batches():
    groups = two_by_two_missing_groups()
    first = BalancedBagSampler(
        groups, samples_per_group=2, bags_per_batch=3, num_batches=4, generator=42
    )
    second = BalancedBagSampler(
        groups,
        samples_per_group=2,
        bags_per_batch=3,
        num_batches=4,
        generator=torch.Generator().manual_seed(42),
    )

    assert list(first) == list(second)


def test_different_seed_different_batches():
    groups = two_by_two_missing_groups()
    first = BalancedBagSampler(
        groups, samples_per_group=2, bags_per_batch=3, num_batches=4, generator=42
    )
    second = BalancedBagSampler(
        groups, samples_per_group=2, bags_per_batch=3, num_batches=4, generator=43
    )

    assert list(first) != list(second)


def test_small_group_reused_with_replacement():
    groups = torch.tensor([0] * 20 + [1])
    sampler = BalancedBagSampler(groups, samples_per_group=5, num_batches=1, generator=0)

    (batch,) = list(sampler)
    assert batch.count(20) == 5


def test_fixed_number_of_batches():
    sampler = BalancedBagSampler(
        torch.arange(4), samples_per_group=1, bags_per_batch=2, num_batches=7, generator=0
    )

    batches = list(sampler)
    assert len(sampler) == 7
    assert len(batches) == 7
    assert all(len(batch) == sampler.batch_size == 8 for batch in batches)


def test_infinite_sampler_keeps_yielding():
    sampler = BalancedBagSampler(torch.arange(4), samples_per_group=1, generator=0)
    iterator = iter(sampler)

    batches = [next(iterator) for _ in range(50)]
    assert len(batches) == 50
    with pytest.raises(TypeError, match="no length"):
        len(sampler)


def test_dataloader_batches_reshape_into_bags():
    groups = two_by_two_missing_groups()
    features = torch.arange(len(groups), dtype=torch.float32).unsqueeze(1).repeat(1, 3)
    dataset = TensorDataset(features, groups)
    multipliers = group_multipliers({0: [0, 1], 1: [1]}, num_subgroups=NUM_SUBGROUPS)
    sampler = BalancedBagSampler(
        groups,
        samples_per_group=2,
        bags_per_batch=3,
        multipliers=multipliers,
        num_batches=2,
        generator=0,
    )
    loader = DataLoader(dataset, batch_sampler=sampler)

    batches = list(loader)
    assert len(batches) == 2
    for x, g in batches:
        bags = batch_to_bags(x, sampler.bag_size)
        bag_groups = batch_to_bags(g.unsqueeze(1), sampler.bag_size).squeeze(-1)
        assert bags.shape == (3, 8, 3)
        for row in bag_groups:
            assert Counter(row.tolist()) == {0: 2, 1: 2, 3: 4}


@pytest.mark.parametrize(
    "present, message",
    [
        ({}, "empty"),
        (np.empty((0, 2), dtype=np.int64), "empty"),
        ({0: [0], -1: [1]}, "non-negative"),
        ({0: [-2]}, "non-negative"),
    ],
)
def test_multipliers_reject_invalid_present(present, message):
    with pytest.raises(ValueError, match=message):
        group_multipliers(present)


def test_multipliers_reject_out_of_range_subgroup():
    with pytest.raises(ValueError, match="out of range"):
        group_multipliers({0: [0, 2]}, num_subgroups=2)


def test_sampler_rejects_empty_groups():
    with pytest.raises(ValueError, match="empty"):
        BalancedBagSampler(torch.tensor([], dtype=torch.long), samples_per_group=1)


def test_sampler_rejects_empty_multipliers():
    with pytest.raises(ValueError, match="multipliers is empty"):
        BalancedBagSampler(torch.tensor([0, 1]), samples_per_group=1, multipliers={})


def test_sampler_rejects_present_group_without_samples():
    with pytest.raises(ValueError, match=r"\[2\] are listed in multipliers but have no samples"):
        BalancedBagSampler(
            torch.tensor([0, 1]), samples_per_group=1, multipliers={0: 1, 1: 1, 2: 1}
        )


def test_sampler_rejects_samples_of_unlisted_group():
    with pytest.raises(ValueError, match="missing from multipliers"):
        BalancedBagSampler(torch.tensor([0, 1, 3]), samples_per_group=1, multipliers={0: 1, 1: 1})


def test_sampler_rejects_negative_ids():
    with pytest.raises(ValueError, match="non-negative, got -1"):
        BalancedBagSampler(np.array([0, 1, -1]), samples_per_group=1)


def test_sampler_rejects_float_ids():
    with pytest.raises(ValueError, match="integer ids"):
        BalancedBagSampler(torch.tensor([0.0, 1.0]), samples_per_group=1)


@pytest.mark.parametrize("multiplier", [1.5, 2.0, "2", True])
def test_sampler_rejects_non_integer_multiplier(multiplier):
    with pytest.raises(ValueError, match="must be an integer"):
        BalancedBagSampler(
            torch.tensor([0, 1]), samples_per_group=1, multipliers={0: 1, 1: multiplier}
        )


def test_sampler_rejects_zero_multiplier():
    with pytest.raises(ValueError, match="at least 1"):
        BalancedBagSampler(torch.tensor([0, 1]), samples_per_group=1, multipliers={0: 1, 1: 0})


@pytest.mark.parametrize("samples_per_group", [0, -3, 1.5])
def test_sampler_rejects_bad_samples_per_group(samples_per_group):
    with pytest.raises(ValueError, match="samples_per_group"):
        BalancedBagSampler(torch.tensor([0, 1]), samples_per_group=samples_per_group)


@pytest.mark.parametrize("keyword", ["bags_per_batch", "num_batches"])
def test_sampler_rejects_zero_counts(keyword):
    with pytest.raises(ValueError, match=keyword):
        BalancedBagSampler(torch.tensor([0, 1]), samples_per_group=1, **{keyword: 0})
