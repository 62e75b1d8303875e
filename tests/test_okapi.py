"""Okapi: checkpoint round trip, teacher and memory side effects, loss parts and a smoke training run."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from zoo.hub import ZooModel
from zoo.models.okapi import Okapi, balanced_propensity_loss

TINY = {"num_classes": 2, "widths": [4, 8], "preprocessing": {"image_size": 8, "mode": "RGB", "mean": [0.5] * 3, "std": [0.5] * 3}}


@pytest.fixture(autouse=True)
def single_thread():
    """Run on one intra-op thread, because on these 8x8 images thread synchronisation costs more than it saves."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _model(**overrides) -> Okapi:
    torch.manual_seed(0)
    return Okapi(**{**TINY, "memory_capacity": 16, "ema_warmup_steps": 0, **overrides})


def _batch(num_labelled: int = 4, num_unlabelled: int = 4, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    labelled = torch.randn(num_labelled, 3, 8, 8, generator=generator)
    labels = torch.randint(0, 2, (num_labelled,), generator=generator)
    unlabelled = torch.randn(num_unlabelled, 3, 8, 8, generator=generator) + 1.0
    return labelled, labels, unlabelled


def _teacher_queries(model: Okapi, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return F.normalize(model.teacher(images), dim=-1)


def test_checkpoint_round_trip_strict(tmp_path):
    model = _model(binary=False, num_groups=3, fixed_caliper=None, std_caliper=None, k=2, temperature=2.0)
    labelled, labels, unlabelled = _batch()
    model.training_losses(labelled, labels, unlabelled, torch.tensor([0, 0, 1, 1, 2, 2, 0, 1]), step=3)
    model.eval()

    model.save_pretrained(tmp_path)
    restored = ZooModel.from_pretrained(tmp_path)

    assert type(restored) is Okapi
    assert restored.config == model.config
    own, loaded = model.state_dict(), restored.state_dict()
    assert set(own) == set(loaded)
    for prefix in ("teacher.", "memory.", "propensity."):
        assert any(key.startswith(prefix) for key in loaded)
    for key, tensor in own.items():
        assert torch.equal(tensor, loaded[key]), key
    assert len(restored.memory) == 8
    images = torch.cat([labelled, unlabelled])
    assert torch.equal(restored(images), model(images))
    image = torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(1))
    assert restored.predict(image) == model.predict(image)


def test_teacher_updated_before_forward():
    model = _model(ema_momentum_start=0.5, ema_momentum_end=0.5)
    model.eval()
    before = {name: p.clone() for name, p in model.teacher.module.named_parameters()}
    with torch.no_grad():
        for parameter in model.encoder.parameters():
            parameter.add_(0.1)
    labelled, labels, unlabelled = _batch()

    parts = model.training_losses(labelled, labels, unlabelled, step=0)

    assert parts["momentum"] == 0.5
    online = dict(model.encoder.named_parameters())
    for name, parameter in model.teacher.module.named_parameters():
        assert torch.allclose(parameter, 0.5 * before[name] + 0.5 * online[name])
    # The bank's newest entries are the queries, so they show which teacher embedded the batch.
    images = torch.cat([labelled, unlabelled])
    assert torch.allclose(model.memory.contents()[0], _teacher_queries(model, images), atol=1e-6)


def test_teacher_momentum_follows_step():
    model = _model(ema_momentum_start=0.5, ema_momentum_end=1.0, ema_warmup_steps=10)
    labelled, labels, unlabelled = _batch()
    assert model.training_losses(labelled, labels, unlabelled, step=5)["momentum"] == pytest.approx(0.75)
    assert int(model.teacher.step) == 6


def test_memory_fills_fifo_and_feeds_keys():
    model = _model(memory_capacity=6)
    model.eval()
    pushed = []
    num_keys = []
    for step in range(3):
        labelled, labels, unlabelled = _batch(2, 2, seed=step)
        parts = model.training_losses(labelled, labels, unlabelled, step=step)
        num_keys.append(parts["num_keys"])
        pushed.append(_teacher_queries(model, torch.cat([labelled, unlabelled])))

    # Keys are the 4 current queries plus the bank as it was before the push (0, 4, then 6 full).
    assert num_keys == [4, 8, 10]
    assert len(model.memory) == 6
    # Step 1 wrote slots 4, 5, 0, 1 and step 2 wrote slots 2, 3, 4, 5.
    features = model.memory.features
    assert torch.allclose(features[[0, 1]], pushed[1][2:], atol=1e-6)
    assert torch.allclose(features[2:6], pushed[2], atol=1e-6)
    assert model.memory.labels.tolist() == [0, 0, 1, 1, 0, 0]


def test_propensity_loss_group_balanced_binary():
    logits = torch.tensor([0.5, -1.0, 2.0])
    groups = torch.tensor([1, 0, 0])
    # n_1 = 1 and n_0 = 2, so w = (1/1, 1/2, 1/2) / (1/1 + 1/2) = (2/3, 1/3, 1/3).
    cross_entropy = [
        -torch.log(torch.sigmoid(torch.tensor(0.5))),
        -torch.log(1 - torch.sigmoid(torch.tensor(-1.0))),
        -torch.log(1 - torch.sigmoid(torch.tensor(2.0))),
    ]
    expected = (2 / 3 * cross_entropy[0] + 1 / 3 * cross_entropy[1] + 1 / 3 * cross_entropy[2]) / 3

    assert balanced_propensity_loss(logits, groups, binary=True) == pytest.approx(float(expected), rel=1e-6)


def test_propensity_loss_group_balanced_multigroup():
    logits = torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 3.0], [0.0, 0.0, 1.0]])
    groups = torch.tensor([0, 1, 2, 2])
    per_sample = F.cross_entropy(logits, groups, reduction="none")
    # n = (1, 1, 2), so w = (1, 1, 1/2, 1/2) / 2.5.
    weights = torch.tensor([1.0, 1.0, 0.5, 0.5]) / 2.5
    expected = (weights * per_sample).sum() / 4

    assert balanced_propensity_loss(logits, groups, binary=False) == pytest.approx(float(expected), rel=1e-6)


def test_propensity_loss_fits_keys():
    model = _model()
    labelled, labels, unlabelled = _batch()
    parts = model.training_losses(labelled, labels, unlabelled, step=0)
    queries = model.memory.contents()[0]
    groups = torch.tensor([1, 1, 1, 1, 0, 0, 0, 0])
    expected = balanced_propensity_loss(model.propensity(queries).squeeze(-1), groups, binary=True)
    assert parts["ps"].item() == pytest.approx(expected.item(), rel=1e-5)


def test_lambda_warmup_linear():
    model = _model(consistency_weight=2.0, consistency_warmup_steps=10)
    labelled, labels, unlabelled = _batch()
    assert model.training_losses(labelled, labels, unlabelled, step=0)["lambda"] == 0.0
    assert model.consistency_lambda(5) == pytest.approx(1.0)
    assert model.training_losses(labelled, labels, unlabelled, step=10)["lambda"] == 2.0
    assert model.consistency_lambda(100) == 2.0


def test_no_match_gives_zero_consistency():
    model = _model(fixed_caliper=0.6)
    # Scores near 1 for every key fall outside the fixed caliper interval (0.4, 0.6).
    with torch.no_grad():
        model.propensity.weight.zero_()
        model.propensity.bias.fill_(20.0)
    labelled, labels, unlabelled = _batch()

    parts = model.training_losses(labelled, labels, unlabelled, step=5)

    assert parts["match_rate"] == 0.0
    assert parts["cons"].item() == 0.0
    assert parts["loss"].item() == pytest.approx((parts["sup"] + parts["ps"]).item())


def test_consistency_gradient_reaches_encoder_only():
    model = _model(fixed_caliper=None, std_caliper=None, consistency_warmup_steps=0)
    labelled, labels, unlabelled = _batch()

    parts = model.training_losses(labelled, labels, unlabelled, step=0)
    parts["cons"].backward()

    assert parts["match_rate"] == 1.0
    assert parts["cons"].item() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.encoder.parameters())
    assert all(p.grad is None for p in model.teacher.parameters())
    assert all(p.grad is None for p in model.propensity.parameters())
    assert model.head.weight.grad is None


def test_consistency_matches_hand_computation():
    model = _model(fixed_caliper=None, std_caliper=None, consistency_warmup_steps=0, k=2)
    model.eval()
    labelled, labels, unlabelled = _batch(2, 2)
    images = torch.cat([labelled, unlabelled])

    parts = model.training_losses(labelled, labels, unlabelled, step=0)

    # Without calipers and with one batch, each query's 2 matches are the 2 queries of the other group.
    with torch.no_grad():
        online = F.normalize(model.forward_features(images), dim=-1)
    queries = _teacher_queries(model, images)
    other = [[2, 3], [2, 3], [0, 1], [0, 1]]
    expected = torch.stack([(online[i] - queries[other[i]]).square().sum(-1) for i in range(4)]).mean()
    assert parts["cons"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert parts["loss"].item() == pytest.approx((parts["sup"] + parts["ps"] + parts["cons"]).item(), rel=1e-6)


@pytest.mark.parametrize(
    ("overrides", "groups"),
    [
        ({"binary": True}, None),
        ({"binary": False, "num_groups": 3}, torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])),
    ],
)
def test_modes_run_and_match(overrides, groups):
    model = _model(fixed_caliper=None, std_caliper=None, **overrides)
    labelled, labels, unlabelled = _batch()

    for step in range(2):
        parts = model.training_losses(labelled, labels, unlabelled, groups, step=step)
        parts["loss"].backward()

    assert model.propensity.out_features == (1 if overrides["binary"] else 3)
    assert parts["match_rate"] == 1.0
    assert torch.isfinite(parts["loss"])


def test_multigroup_requires_query_groups():
    model = _model(binary=False, num_groups=3)
    labelled, labels, unlabelled = _batch()
    with pytest.raises(ValueError, match="query_groups is missing"):
        model.training_losses(labelled, labels, unlabelled, step=0)
    with pytest.raises(ValueError, match=r"must lie in \[0, 3\)"):
        model.training_losses(labelled, labels, unlabelled, torch.tensor([0, 1, 2, 3, 0, 1, 2, 0]), step=0)


def _two_domain_problem(seed: int):
    """Build a batch whose class is the bright half (left or right) and whose domains shift the red channel.

    The two shifts overlap, so propensity scores overlap and matches exist.
    """
    generator = torch.Generator().manual_seed(seed)

    def images(labels: torch.Tensor, shift: float) -> torch.Tensor:
        batch = 0.1 * torch.randn(len(labels), 3, 8, 8, generator=generator)
        batch[labels == 0, :, :, :4] += 1.0
        batch[labels == 1, :, :, 4:] += 1.0
        batch[:, 0] += shift + 0.3 * torch.randn(len(labels), 1, 1, generator=generator)
        return batch

    labels = torch.randint(0, 2, (16,), generator=generator)
    unlabelled_labels = torch.randint(0, 2, (16,), generator=generator)
    return images(labels, 0.2), labels, images(unlabelled_labels, -0.2)


def test_smoke_training_reduces_loss():
    model = _model(consistency_warmup_steps=10, memory_capacity=64, ema_momentum_start=0.9, ema_momentum_end=0.9)
    optimiser = torch.optim.Adam(model.parameters(), lr=0.01)
    losses = []
    match_rates = []
    for step in range(30):
        labelled, labels, unlabelled = _two_domain_problem(step)
        parts = model.training_losses(labelled, labels, unlabelled, step=step, generator=torch.Generator().manual_seed(step))
        optimiser.zero_grad()
        parts["loss"].backward()
        optimiser.step()
        losses.append(parts["loss"].item())
        match_rates.append(parts["match_rate"])

    assert all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5
    # The domains overlap, so the consistency term keeps acting after its warm-up.
    assert min(match_rates[10:]) > 0


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"num_groups": 1}, "num_groups must be an integer >= 2, got 1"),
        ({"num_groups": 3}, "num_groups must be 2, got 3"),
        ({"memory_capacity": 0}, "memory_capacity must be an integer >= 1, got 0"),
        ({"temperature": 0.0}, "temperature must be a finite number > 0, got 0.0"),
        ({"fixed_caliper": 0.5}, "fixed_caliper must be a finite number > 0.5, got 0.5"),
        ({"binary": False, "num_groups": 4, "fixed_caliper": 0.2}, "fixed_caliper must be a finite number > 0.25, got 0.2"),
        ({"std_caliper": -1.0}, "std_caliper must be a finite number > 0, got -1.0"),
        ({"k": 0}, "k must be an integer >= 1, got 0"),
        ({"ema_momentum_end": 1.5}, "ema_momentum_end must lie in \\[0, 1\\], got 1.5"),
        ({"ema_warmup_steps": -1}, "ema_warmup_steps must be an integer >= 0, got -1"),
        ({"consistency_weight": float("nan")}, "consistency_weight must be a finite number >= 0, got nan"),
        ({"binary": "yes"}, "binary must be True or False, got 'yes'"),
    ],
)
def test_bad_arguments_rejected(arguments, message):
    with pytest.raises(ValueError, match=message):
        Okapi(**{**TINY, **arguments})


def test_bad_step_rejected():
    model = _model()
    labelled, labels, unlabelled = _batch()
    with pytest.raises(ValueError, match="step must be an integer >= 0, got -1"):
        model.training_losses(labelled, labels, unlabelled, step=-1)
