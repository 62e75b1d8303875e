"""Tests of group metrics, the Jensen-Shannon consistency term and online group DRO weights."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from zoo.losses import GroupDROWeights, jensen_shannon_divergence
from zoo.metrics import group_metrics

# Nine samples in four groups, with `correct` = 1 1 1 0 1 1 1 0 0.
PREDICTIONS = [0, 0, 0, 1, 1, 1, 1, 0, 1]
LABELS = [0, 0, 0, 0, 1, 1, 1, 1, 0]
GROUPS = [0, 0, 0, 1, 2, 2, 3, 3, 1]
NAMES = ["small red", "small green", "large red", "large green"]


# group_metrics ---------------------------------------------------------------------------------


def test_group_metrics_hand_example():
    result = group_metrics(PREDICTIONS, LABELS, GROUPS, NAMES)

    assert result["accuracy"] == pytest.approx(6 / 9)
    assert result["group_accuracy"] == {"small red": 1.0, "small green": 0.0, "large red": 1.0, "large green": 0.5}
    assert result["group_counts"] == {"small red": 3, "small green": 2, "large red": 2, "large green": 2}
    assert result["worst_group_accuracy"] == 0.0
    assert result["gap"] == 1.0


def test_group_metrics_numeric_names():
    result = group_metrics(PREDICTIONS, LABELS, GROUPS)

    assert set(result["group_accuracy"]) == {"0", "1", "2", "3"}


def test_group_metrics_short_name_list():
    result = group_metrics(PREDICTIONS, LABELS, GROUPS, NAMES[:2])

    assert set(result["group_accuracy"]) == {"small red", "small green", "2", "3"}


def test_group_metrics_skips_empty_groups():
    result = group_metrics([0, 1], [0, 0], [0, 3], NAMES)

    assert result["group_counts"] == {"small red": 1, "large green": 1}
    assert result["worst_group_accuracy"] == 0.0


def test_group_metrics_accepts_arrays():
    result = group_metrics(np.asarray(PREDICTIONS), torch.tensor(LABELS).numpy(), np.asarray(GROUPS), NAMES)

    assert result["accuracy"] == pytest.approx(6 / 9)


def test_group_metrics_length_mismatch():
    with pytest.raises(ValueError, match="equal length"):
        group_metrics(PREDICTIONS[:-1], LABELS, GROUPS)


def test_group_metrics_not_1d():
    with pytest.raises(ValueError, match="1-D"):
        group_metrics([[0, 1]], [[0, 1]], [[0, 1]])


def test_group_metrics_empty():
    with pytest.raises(ValueError, match="zero samples"):
        group_metrics([], [], [])


def test_group_metrics_unlabelled_groups():
    with pytest.raises(ValueError, match="-1"):
        group_metrics([0, 1], [0, 1], [0, -1])


# jensen_shannon_divergence --------------------------------------------------------------------


def _reference_jsd(logits_a: torch.Tensor, logits_b: torch.Tensor) -> float:
    p = torch.softmax(logits_a.double(), -1).numpy()
    q = torch.softmax(logits_b.double(), -1).numpy()
    m = (p + q) / 2
    kl_pm = (p * np.log(p / m)).sum(-1)
    kl_qm = (q * np.log(q / m)).sum(-1)
    return float((0.5 * (kl_pm + kl_qm)).mean())


def test_jsd_zero_for_equal_logits():
    logits = torch.randn(16, 5, generator=torch.Generator().manual_seed(0))

    assert jensen_shannon_divergence(logits, logits).item() == pytest.approx(0.0, abs=1e-6)


def test_jsd_symmetric():
    generator = torch.Generator().manual_seed(1)
    a, b = torch.randn(16, 5, generator=generator), torch.randn(16, 5, generator=generator)

    assert jensen_shannon_divergence(a, b).item() == pytest.approx(jensen_shannon_divergence(b, a).item(), abs=1e-7)


def test_jsd_matches_definition():
    generator = torch.Generator().manual_seed(2)
    a, b = torch.randn(32, 3, generator=generator), torch.randn(32, 3, generator=generator)

    assert jensen_shannon_divergence(a, b).item() == pytest.approx(_reference_jsd(a, b), rel=1e-5)


def test_jsd_bounded_by_log2():
    generator = torch.Generator().manual_seed(3)
    a, b = 50 * torch.randn(64, 4, generator=generator), 50 * torch.randn(64, 4, generator=generator)

    assert jensen_shannon_divergence(a, b).item() <= math.log(2) + 1e-6


def test_jsd_disjoint_reaches_log2():
    confident_a = torch.tensor([[100.0, -100.0]])
    confident_b = torch.tensor([[-100.0, 100.0]])

    assert jensen_shannon_divergence(confident_a, confident_b).item() == pytest.approx(math.log(2), rel=1e-6)


def test_jsd_has_gradient():
    a = torch.randn(4, 3, requires_grad=True)
    b = torch.randn(4, 3)

    jensen_shannon_divergence(a, b).backward()

    assert a.grad is not None
    assert torch.isfinite(a.grad).all()


def test_jsd_shape_mismatch():
    with pytest.raises(ValueError, match=r"\(4, 3\) and \(4, 2\)"):
        jensen_shannon_divergence(torch.zeros(4, 3), torch.zeros(4, 2))


# GroupDROWeights -----------------------------------------------------------------------------


def test_dro_starts_uniform():
    assert torch.equal(GroupDROWeights(4).weights, torch.full((4,), 0.25))


def test_dro_shifts_to_high_loss_group():
    dro = GroupDROWeights(2, step_size=0.5)
    losses = torch.tensor([0.1, 0.1, 2.0, 2.0])
    groups = torch.tensor([0, 0, 1, 1])

    dro.loss(losses, groups)

    assert dro.weights[1] > dro.weights[0]
    assert dro.weights.sum().item() == pytest.approx(1.0)


def test_dro_exponentiated_gradient_step():
    dro = GroupDROWeights(3, step_size=0.1)
    losses = torch.tensor([1.0, 3.0, 2.0, 4.0])
    groups = torch.tensor([0, 0, 1, 1])

    objective = dro.loss(losses, groups)

    # Group means are 2 and 3. Group 2 has no samples, so only renormalisation changes its weight.
    unnormalised = torch.tensor([math.exp(0.1 * 2.0), math.exp(0.1 * 3.0), 1.0])
    expected = unnormalised / unnormalised.sum()
    assert torch.allclose(dro.weights, expected)
    assert objective.item() == pytest.approx(float(expected[0] * 2.0 + expected[1] * 3.0))


def test_dro_repeated_steps_track_worst_group():
    dro = GroupDROWeights(2, step_size=1.0)
    losses = torch.tensor([0.2, 1.0])
    groups = torch.tensor([0, 1])

    for _ in range(20):
        dro.loss(losses, groups)

    assert dro.weights[1].item() > 0.99


def test_dro_reduce_hook_called():
    dro = GroupDROWeights(2, step_size=1.0)
    calls = []

    def add_other_process(stats: torch.Tensor) -> torch.Tensor:
        calls.append(stats.clone())
        # Another process saw ten samples of group 0 with loss 5 each.
        return stats + torch.tensor([[50.0, 0.0], [10.0, 0.0]])

    dro.loss(torch.tensor([1.0, 1.0]), torch.tensor([0, 1]), reduce=add_other_process)

    assert len(calls) == 1
    assert torch.equal(calls[0], torch.tensor([[1.0, 1.0], [1.0, 1.0]]))
    # The reduced statistics give group 0 the higher mean loss, so it gains weight.
    assert dro.weights[0] > dro.weights[1]


def test_dro_objective_has_gradient():
    dro = GroupDROWeights(2)
    losses = torch.tensor([0.5, 1.5], requires_grad=True)

    dro.loss(losses, torch.tensor([0, 1])).backward()

    assert torch.all(losses.grad > 0)


def test_dro_state_dict_round_trip():
    dro = GroupDROWeights(2, step_size=0.5)
    dro.loss(torch.tensor([0.1, 2.0]), torch.tensor([0, 1]))
    restored = GroupDROWeights(2, step_size=0.5)

    restored.load_state_dict(dro.state_dict())

    assert torch.equal(restored.weights, dro.weights)


@pytest.mark.parametrize("groups", [[0, -1], [0, 2]])
def test_dro_rejects_out_of_range_groups(groups):
    with pytest.raises(ValueError, match=r"group ids must lie in \[0, 1\]"):
        GroupDROWeights(2).loss(torch.tensor([1.0, 2.0]), torch.tensor(groups))


def test_dro_rejects_no_groups():
    with pytest.raises(ValueError, match="num_groups must be positive"):
        GroupDROWeights(0)


def test_transfer_checks_flag_negative_transfer():
    from zoo.metrics.transfer import transfer_checks, verdict_line

    def cell(*values):
        return {"mean": sum(values) / len(values), "sd": 0.0, "values": list(values)}

    table = {
        "single-task (a)": {"a": {"acc": cell(0.80, 0.82)}},
        "single-task (b)": {"b": {"f1": cell(0.60, 0.62)}},
        "multitask": {"a": {"acc": cell(0.81, 0.83)}, "b": {"f1": cell(0.55, 0.57)}},
        "both": {"a": {"acc": cell(0.85, 0.86)}, "b": {"f1": cell(0.65, 0.66)}},
    }

    checks = transfer_checks(table, {"a": "acc", "b": "f1"}, lambda task: f"single-task ({task})")

    assert set(checks) == {"multitask", "both"}
    assert checks["multitask"]["negative_transfer"]
    assert checks["multitask"]["tasks"]["b"]["seeds_below_single_task"] == 2
    assert not checks["both"]["negative_transfer"]
    assert checks["both"]["beats_multitask_on_every_task"]
    line = verdict_line("both", checks["both"], lambda task, metric: f"{task} {metric}", against_multitask=True)
    assert line.startswith("- both: **no negative transfer**")
    assert "above multitask on every task" in line
