"""EMA teacher and FIFO memory bank."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from zoo.nn.memory import EmaTeacher, FifoMemoryBank, linear_momentum


def test_momentum_schedule_linear_then_constant():
    assert linear_momentum(0, start=0.9, end=1.0, warmup_steps=10) == pytest.approx(0.9)
    assert linear_momentum(5, start=0.9, end=1.0, warmup_steps=10) == pytest.approx(0.95)
    assert linear_momentum(50, start=0.9, end=1.0, warmup_steps=10) == pytest.approx(1.0)


def test_momentum_out_of_range_rejected():
    with pytest.raises(ValueError, match="must lie in"):
        linear_momentum(0, start=1.5, end=1.0, warmup_steps=1)


def test_ema_update_formula():
    online = nn.Linear(2, 1)
    teacher = EmaTeacher(online, momentum_start=0.5, momentum_end=0.5)
    before = teacher.module.weight.clone()
    with torch.no_grad():
        online.weight.add_(1.0)

    tau = teacher.update(online)

    assert tau == 0.5
    assert torch.allclose(teacher.module.weight, 0.5 * before + 0.5 * online.weight)


def test_ema_teacher_gets_no_gradients():
    teacher = EmaTeacher(nn.Linear(2, 1))
    assert all(not p.requires_grad for p in teacher.parameters())


def test_ema_copies_buffers():
    online = nn.BatchNorm1d(3)
    teacher = EmaTeacher(online)
    online(torch.randn(8, 3))

    teacher.update(online)

    assert torch.equal(teacher.module.running_mean, online.running_mean)


def test_ema_step_advances_schedule():
    online = nn.Linear(2, 1)
    teacher = EmaTeacher(online, momentum_start=0.0, momentum_end=1.0, warmup_steps=4)
    taus = [teacher.update(online) for _ in range(5)]
    assert taus == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0])


def test_bank_masks_empty_slots():
    bank = FifoMemoryBank(capacity=4, feature_dim=2)
    bank.push(torch.ones(3, 2), torch.tensor([0, 1, 0]))

    features, labels = bank.contents()

    assert len(bank) == 3
    assert features.shape == (3, 2)
    assert labels.tolist() == [0, 1, 0]


def test_bank_overwrites_oldest_first():
    bank = FifoMemoryBank(capacity=3, feature_dim=1)
    bank.push(torch.tensor([[1.0], [2.0]]), torch.tensor([1, 2]))
    bank.push(torch.tensor([[3.0], [4.0]]), torch.tensor([3, 4]))

    _, labels = bank.contents()

    assert sorted(labels.tolist()) == [2, 3, 4]


def test_bank_oversized_batch_keeps_newest():
    bank = FifoMemoryBank(capacity=2, feature_dim=1)
    bank.push(torch.arange(5.0).unsqueeze(1), torch.arange(5))
    assert sorted(bank.contents()[1].tolist()) == [3, 4]


def test_bank_state_dict_round_trip():
    bank = FifoMemoryBank(capacity=3, feature_dim=2)
    bank.push(torch.randn(2, 2), torch.tensor([5, 6]))
    restored = FifoMemoryBank(capacity=3, feature_dim=2)

    restored.load_state_dict(bank.state_dict())

    assert torch.equal(restored.contents()[0], bank.contents()[0])
    assert int(restored.pointer) == 2


@pytest.mark.parametrize(
    ("features", "labels", "message"),
    [
        (torch.ones(2, 3), torch.tensor([0, 1]), "expected features of shape"),
        (torch.ones(2, 2), torch.tensor([0]), "one label per feature row"),
        (torch.ones(1, 2), torch.tensor([-100]), "marks empty slots"),
    ],
)
def test_bank_bad_push_rejected(features, labels, message):
    bank = FifoMemoryBank(capacity=3, feature_dim=2)
    with pytest.raises(ValueError, match=message):
        bank.push(features, labels)
