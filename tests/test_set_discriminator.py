"""Set discriminator, bag reshaping and the support-matching losses."""

from __future__ import annotations

import math

import pytest
import torch

from zoo.nn.set_discriminator import (
    SetDiscriminator,
    batch_to_bags,
    discriminator_loss,
    encoder_adversarial_loss,
)

IN_FEATURES = 3
BAG_SIZE = 5


def make_discriminator(aggregator: str, *, seed: int = 0) -> SetDiscriminator:
    torch.manual_seed(seed)
    return SetDiscriminator(
        in_features=IN_FEATURES,
        hidden_features=16,
        aggregator=aggregator,
        bag_size=BAG_SIZE,
        attention_features=8,
        num_heads=2,
        head_features=4,
    ).eval()


@pytest.mark.parametrize("aggregator", ["gated", "attention"])
def test_forward_shapes(aggregator):
    discriminator = make_discriminator(aggregator)
    bags = torch.randn(4, BAG_SIZE, IN_FEATURES)

    assert discriminator(bags).shape == (4,)
    assert discriminator(bags.reshape(4 * BAG_SIZE, IN_FEATURES)).shape == (4,)
    # Bags of another size are accepted when passed already grouped.
    assert discriminator(torch.randn(2, 7, IN_FEATURES)).shape == (2,)


@pytest.mark.parametrize("aggregator", ["gated", "attention"])
def test_flat_batch_matches_bags(aggregator):
    discriminator = make_discriminator(aggregator)
    bags = torch.randn(3, BAG_SIZE, IN_FEATURES)

    flat_logits = discriminator(bags.reshape(-1, IN_FEATURES))
    torch.testing.assert_close(flat_logits, discriminator(bags))


@pytest.mark.parametrize("aggregator", ["gated", "attention"])
def test_permutation_invariance(aggregator):
    discriminator = make_discriminator(aggregator)
    bags = torch.randn(3, BAG_SIZE, IN_FEATURES)
    permuted = bags[:, torch.randperm(BAG_SIZE)]

    torch.testing.assert_close(discriminator(permuted), discriminator(bags))


@pytest.mark.parametrize("aggregator", ["gated", "attention"])
def test_bags_do_not_interact(aggregator):
    discriminator = make_discriminator(aggregator)
    bags = torch.randn(3, BAG_SIZE, IN_FEATURES)
    changed = bags.clone()
    changed[1] = 10.0 * torch.randn(BAG_SIZE, IN_FEATURES)

    before = discriminator(bags)
    after = discriminator(changed)

    torch.testing.assert_close(after[[0, 2]], before[[0, 2]])
    assert not torch.allclose(after[1], before[1])


@pytest.mark.parametrize(
    ("aggregator", "expected_shape"),
    [("gated", (4, BAG_SIZE)), ("attention", (4, 2, BAG_SIZE))],
)
def test_attention_weights_sum_to_one(aggregator, expected_shape):
    discriminator = make_discriminator(aggregator)
    weights = discriminator.attention_weights(torch.randn(4, BAG_SIZE, IN_FEATURES))

    assert weights.shape == expected_shape
    assert (weights >= 0).all()
    torch.testing.assert_close(weights.sum(dim=-1), torch.ones(expected_shape[:-1]))


def test_batch_to_bags_groups_consecutive_samples():
    batch = torch.arange(12.0).reshape(6, 2)
    bags = batch_to_bags(batch, 3)

    assert bags.shape == (2, 3, 2)
    torch.testing.assert_close(bags[0], batch[:3])
    torch.testing.assert_close(bags[1], batch[3:])


def test_batch_to_bags_rejects_partial_bag():
    with pytest.raises(ValueError, match="batch size 7 is not a multiple of bag_size=3"):
        batch_to_bags(torch.zeros(7, 2), 3)


@pytest.mark.parametrize("bag_size", [0, -2, 2.0, True])
def test_batch_to_bags_rejects_invalid_bag_size(bag_size):
    with pytest.raises(ValueError, match=f"bag_size must be a positive integer, got {bag_size!r}"):
        batch_to_bags(torch.zeros(4, 2), bag_size)


def test_forward_rejects_wrong_shapes():
    discriminator = make_discriminator("gated")

    with pytest.raises(ValueError, match="not a multiple of bag_size=5"):
        discriminator(torch.zeros(7, IN_FEATURES))
    with pytest.raises(ValueError, match="expected 3 features per instance"):
        discriminator(torch.zeros(2, BAG_SIZE, 4))
    with pytest.raises(ValueError, match=r"got shape \(3,\)"):
        discriminator(torch.zeros(3))


def test_discriminator_loss_hand_computed():
    real_logits = torch.tensor([0.0, 2.0])
    fake_logits = torch.tensor([-1.0])

    # softplus(-0) = log 2, softplus(-2) = log(1 + e^-2), softplus(-1) = log(1 + e^-1).
    expected = (math.log(2.0) + math.log1p(math.exp(-2.0))) / 2 + math.log1p(math.exp(-1.0))

    assert discriminator_loss(real_logits, fake_logits).item() == pytest.approx(expected)


def test_encoder_adversarial_loss_hand_computed():
    train_logits = torch.tensor([0.0, -3.0])
    deployment_logits = torch.tensor([1.0])

    expected = (math.log(2.0) + math.log1p(math.exp(3.0))) / 2 - math.log1p(math.exp(-1.0))

    assert encoder_adversarial_loss(train_logits, deployment_logits).item() == pytest.approx(expected)


def test_encoder_adversarial_loss_zero_when_indistinguishable():
    logits = torch.tensor([0.3, -1.2, 2.0])

    assert encoder_adversarial_loss(logits, logits.clone()).item() == pytest.approx(0.0)


@pytest.mark.parametrize("aggregator", ["gated", "attention"])
def test_training_separates_shifted_gaussians(aggregator):
    torch.manual_seed(0)
    in_features, bag_size, bags_per_batch = 2, 16, 16
    discriminator = SetDiscriminator(
        in_features=in_features,
        hidden_features=16,
        aggregator=aggregator,
        bag_size=bag_size,
        attention_features=8,
        num_heads=2,
        head_features=8,
    )
    optimizer = torch.optim.Adam(discriminator.parameters(), lr=1e-2)

    def sample_batches(num_bags: int) -> tuple[torch.Tensor, torch.Tensor]:
        # "Real" bags come from N(1, 1) and "fake" bags from N(0, 1), as flat batches.
        real = torch.randn(num_bags * bag_size, in_features) + 1.0
        fake = torch.randn(num_bags * bag_size, in_features)
        return real, fake

    losses = []
    for _ in range(60):
        real, fake = sample_batches(bags_per_batch)
        loss = discriminator_loss(discriminator(real), discriminator(fake))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())

    with torch.no_grad():
        real, fake = sample_batches(4 * bags_per_batch)
        real_correct = (discriminator(real) > 0).float()
        fake_correct = (discriminator(fake) < 0).float()
        accuracy = torch.cat([real_correct, fake_correct]).mean().item()

    assert sum(losses[-10:]) / 10 < sum(losses[:10]) / 10
    assert accuracy > 0.9


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"in_features": 0}, "in_features must be a positive integer, got 0"),
        ({"hidden_features": -4}, "hidden_features must be a positive integer, got -4"),
        ({"bag_size": 0}, "bag_size must be a positive integer, got 0"),
        ({"aggregator": "mean"}, "unknown aggregator 'mean'"),
        ({"attention_features": 0}, "attention_features must be a positive integer, got 0"),
        ({"aggregator": "attention", "num_heads": 0}, "num_heads must be a positive integer, got 0"),
        ({"aggregator": "attention", "head_features": 1.5}, "head_features must be a positive integer, got 1.5"),
    ],
)
def test_constructor_rejects_invalid_arguments(overrides, message):
    arguments = {"in_features": 3, "hidden_features": 8, "aggregator": "gated", "bag_size": 4}
    arguments.update(overrides)

    with pytest.raises(ValueError, match=message):
        SetDiscriminator(**arguments)
