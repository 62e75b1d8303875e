"""The moving average of model weights (`zoo.training.WeightAverage`) kept by the one-shot training script."""

from __future__ import annotations

import pytest
import torch
from zoo.training import WeightAverage


def small_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))


def test_update_uses_warmup_rate():
    model = small_model()
    start = model[0].weight.detach().clone()
    average = WeightAverage(model, decay=0.99)
    with torch.no_grad():
        model[0].weight.add_(1.0)
    average.update(model)
    rate = 1.0 - min(0.99, 2.0 / 11.0)
    torch.testing.assert_close(average.shadow["0.weight"], start + rate)


def test_buffers_come_from_the_model():
    model = small_model()
    average = WeightAverage(model, decay=0.9)
    model.train()
    model(torch.randn(4, 3) + 5.0)
    state = average.averaged_state(model)
    assert set(state) == set(model.state_dict())
    assert int(state["1.num_batches_tracked"]) == 1
    torch.testing.assert_close(state["1.running_mean"], model[1].running_mean)
    assert "1.running_mean" not in average.shadow


def test_spectral_norm_vectors_not_averaged():
    torch.manual_seed(0)
    model = torch.nn.utils.parametrizations.spectral_norm(torch.nn.Linear(4, 4))
    average = WeightAverage(model, decay=0.9)
    with torch.no_grad():
        model.parametrizations.weight.original.mul_(-1.0)
    model.train()
    model(torch.randn(2, 4))
    average.update(model)
    state = average.averaged_state(model)
    torch.testing.assert_close(state["parametrizations.weight.0._u"], model.parametrizations.weight[0]._u)
    assert "parametrizations.weight.original" in average.shadow


def test_copy_to_loads_the_average():
    model = small_model()
    average = WeightAverage(model, decay=0.9)
    saved = model[0].bias.detach().clone()
    with torch.no_grad():
        model[0].bias.mul_(3.0)
    average.copy_to(model)
    torch.testing.assert_close(model[0].bias.detach(), saved)


def test_state_round_trip():
    model = small_model()
    average = WeightAverage(model, decay=0.9)
    with torch.no_grad():
        model[0].weight.add_(2.0)
    average.update(model)
    restored = WeightAverage(small_model(), decay=0.9)
    restored.load_state_dict(average.state_dict())
    assert restored.updates == 1
    torch.testing.assert_close(restored.shadow["0.weight"], average.shadow["0.weight"])


def test_state_of_other_model_rejected():
    average = WeightAverage(small_model(), decay=0.9)
    other = WeightAverage(torch.nn.Linear(3, 2), decay=0.9)
    with pytest.raises(ValueError, match="does not match the model: missing"):
        other.load_state_dict(average.state_dict())


@pytest.mark.parametrize("decay", [0.0, 1.0, -0.5])
def test_invalid_decay_rejected(decay):
    with pytest.raises(ValueError, match=f"invalid weight-average decay {decay}: it must lie strictly between 0 and 1"):
        WeightAverage(small_model(), decay=decay)
