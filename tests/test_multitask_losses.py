"""Multi-task losses and metrics: masks, CCC, relatedness tables, soft co-annotation, distribution matching and scores."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from zoo.data.facs import estimate_relatedness, expert_relatedness
from zoo.losses import (
    TaskRelatedness,
    attribute_to_class_matching,
    ccc_loss,
    class_to_attribute_matching,
    coannotation_losses,
    concordance_correlation,
    distribution_matching_losses,
    estimate_cooccurrence,
    masked_binary_cross_entropy,
    masked_cross_entropy,
    relatedness_tensor,
    soft_attribute_targets,
    soft_class_targets,
)
from zoo.losses.multitask import estimate_cooccurrence_em, relatedness_confidence
from zoo.metrics import (
    accuracy,
    au_score_abaw2020,
    concordance_correlation_coefficient,
    expression_score,
    f1_per_label,
    macro_f1,
    mean_f1,
    multiclass_metrics,
    multilabel_metrics,
    va_score,
)

# Three classes by four attributes. Class 0 predicts no attribute (like the neutral expression).
MATRIX = torch.tensor(
    [
        [0.0, 0.0, 0.0, 0.0],
        [1.0, 0.5, 0.0, 0.2],
        [0.0, 1.0, 0.8, 0.6],
    ],
    dtype=torch.float64,
)


def logit(probabilities: torch.Tensor) -> torch.Tensor:
    return torch.log(probabilities) - torch.log1p(-probabilities)


# Relatedness tables ---------------------------------------------------------------------------


def test_relatedness_dict_round_trip():
    table = TaskRelatedness(
        matrix=np.array([[0.25, np.nan], [1.0, 0.0]]),
        class_names=("a", "b"),
        attribute_names=("x", "y"),
        kind="estimated",
        provenance="hand-made",
        sample_counts=np.array([[4, 0], [2, 2]]),
    )

    restored = TaskRelatedness.from_dict(table.to_dict())

    np.testing.assert_array_equal(restored.matrix, table.matrix)
    np.testing.assert_array_equal(restored.sample_counts, table.sample_counts)
    assert restored.class_names == ("a", "b")
    assert restored.provenance == "hand-made"


def test_relatedness_with_nan_rejected_as_tensor():
    table = TaskRelatedness(matrix=[[np.nan, 1.0]], class_names=("a",), attribute_names=("x", "y"), kind="estimated", provenance="p")

    with pytest.raises(ValueError, match="pseudocount"):
        table.as_tensor()


def test_relatedness_name_count_mismatch():
    with pytest.raises(ValueError, match="2 class names"):
        TaskRelatedness(matrix=np.zeros((2, 2)), class_names=("a",), attribute_names=("x", "y"), kind="expert", provenance="p")


def test_relatedness_tensor_accepts_facs_table():
    expert = expert_relatedness()

    matrix = relatedness_tensor(expert)
    wrapped = TaskRelatedness.from_facs(expert)

    assert matrix.shape == (7, 17)
    assert torch.equal(matrix, wrapped.as_tensor())
    assert wrapped.class_names[0] == "neutral"
    assert wrapped.attribute_names[0] == "AU1"


def test_relatedness_tensor_rejects_out_of_range():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        relatedness_tensor(torch.tensor([[1.5, 0.0]]))


def test_estimate_cooccurrence_hand_example():
    classes = np.array([0, 0, 1, -1])
    attributes = np.array([[1, 0], [1, -1], [0, 1], [1, 1]])

    table = estimate_cooccurrence(classes, attributes, num_classes=2, attribute_names=("x", "y"))

    np.testing.assert_allclose(table.matrix, [[1.0, 0.0], [0.0, 1.0]])
    np.testing.assert_array_equal(table.sample_counts, [[2, 1], [1, 1]])
    assert table.attribute_names == ("x", "y")
    assert table.kind == "estimated"


def test_estimate_cooccurrence_soft_counts():
    # Sample 0 counts half towards each class; sample 1 fully towards class 1.
    probabilities = np.array([[0.5, 0.5], [0.0, 1.0]])
    attributes = np.array([[1], [0]])

    table = estimate_cooccurrence(probabilities, attributes)

    np.testing.assert_allclose(table.matrix, [[1.0], [0.5 / 1.5]])
    np.testing.assert_allclose(table.sample_counts, [[0.5], [1.5]])


def test_estimate_cooccurrence_matches_facs_estimate():
    rng = np.random.default_rng(0)
    expressions = rng.integers(-1, 7, size=200)
    occurrence = rng.integers(-1, 2, size=(200, 17))

    generic = estimate_cooccurrence(expressions, occurrence, num_classes=7, pseudocount=2.0)
    facs = estimate_relatedness(expressions, occurrence, pseudocount=2.0)

    np.testing.assert_allclose(generic.matrix, facs.matrix)
    np.testing.assert_array_equal(generic.sample_counts, facs.sample_counts)


def test_estimate_cooccurrence_rejects_bad_labels():
    with pytest.raises(ValueError, match="-1..1"):
        estimate_cooccurrence(np.array([0, 2]), np.array([[1], [0]]), num_classes=2)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        estimate_cooccurrence(np.array([0, 1]), np.array([[2], [0]]))


def blurred_class_priors(seed: int = 0, samples: int = 600, accuracy: float = 0.7):
    """Draw classes, their attributes from a known table, and a classifier prior that puts `accuracy` on the true class."""
    rng = np.random.default_rng(seed)
    truth = np.array([[1.0, 0.0, 0.3], [0.0, 1.0, 0.5], [1.0, 1.0, 0.8]])
    classes = rng.integers(0, 3, size=samples)
    attributes = (rng.random((samples, 3)) < truth[classes]).astype(np.int64)
    priors = np.full((samples, 3), (1.0 - accuracy) / 2)
    priors[np.arange(samples), classes] = accuracy
    return truth, classes, attributes, priors


def marginal_log_likelihood(table: np.ndarray, priors: np.ndarray, attributes: np.ndarray) -> float:
    matrix = table.clip(1e-3, 1 - 1e-3)
    likelihood = np.exp(attributes @ np.log(matrix).T + (1 - attributes) @ np.log(1 - matrix).T)
    return float(np.log((priors * likelihood).sum(axis=1)).sum())


def test_em_without_iterations_equals_soft_counts():
    _, _, attributes, priors = blurred_class_priors()

    em = estimate_cooccurrence_em(priors, attributes, max_iterations=0)
    counts = estimate_cooccurrence(priors, attributes)

    np.testing.assert_allclose(em.matrix, counts.matrix)
    assert "0 iterations (stopped at max_iterations" in em.provenance


def test_em_sharpens_blurred_class_attributes():
    truth, _, attributes, priors = blurred_class_priors()

    counts = estimate_cooccurrence(priors, attributes).matrix
    em = estimate_cooccurrence_em(priors, attributes).matrix

    # A prior that is 70% right blurs the 0/1 entries by about 0.3 when counted.
    assert np.abs(counts - truth)[:, :2].mean() > 0.15
    assert np.abs(em - truth)[:, :2].mean() < 0.05
    assert np.abs(em - truth).mean() < np.abs(counts - truth).mean()


def test_em_likelihood_never_decreases():
    _, _, attributes, priors = blurred_class_priors(seed=1)

    values = [
        marginal_log_likelihood(estimate_cooccurrence_em(priors, attributes, max_iterations=steps).matrix, priors, attributes)
        for steps in range(6)
    ]

    for before, after in zip(values, values[1:]):
        assert after >= before - 1e-9


def test_em_with_known_classes_is_plain_count():
    _, classes, attributes, _ = blurred_class_priors(seed=2)
    labels = np.where(np.arange(len(classes)) % 5 == 0, -1, classes)

    em = estimate_cooccurrence_em(labels, attributes, num_classes=3)
    counts = estimate_cooccurrence(labels, attributes, num_classes=3)

    np.testing.assert_allclose(em.matrix, counts.matrix)
    np.testing.assert_allclose(em.sample_counts, counts.sample_counts)
    assert em.version == f"estimated-em-{int((labels >= 0).sum())}"


def test_em_rejects_negative_iterations():
    with pytest.raises(ValueError, match="max_iterations"):
        estimate_cooccurrence_em(np.array([0]), np.array([[1]]), max_iterations=-1)


# Masked supervised losses -------------------------------------------------------------------


def test_masked_cross_entropy_ignores_absent_labels():
    logits = torch.tensor([[2.0, 0.0], [0.0, 3.0], [5.0, -5.0]], requires_grad=True)
    targets = torch.tensor([0, -1, 1])

    loss = masked_cross_entropy(logits, targets)
    loss.backward()

    expected = (math.log1p(math.exp(-2.0)) + math.log1p(math.exp(10.0))) / 2
    assert loss.item() == pytest.approx(expected)
    assert torch.equal(logits.grad[1], torch.zeros(2))


def test_masked_cross_entropy_soft_targets():
    logits = torch.zeros(2, 4)
    targets = torch.full((2, 4), 0.25)

    assert masked_cross_entropy(logits, targets).item() == pytest.approx(math.log(4))


def test_masked_cross_entropy_all_absent_is_zero():
    logits = torch.randn(3, 2, requires_grad=True)

    loss = masked_cross_entropy(logits, torch.full((3,), -1))
    loss.backward()

    assert loss.item() == 0.0
    assert torch.equal(logits.grad, torch.zeros(3, 2))


def test_masked_cross_entropy_rejects_out_of_range_targets():
    with pytest.raises(ValueError, match="-1..1"):
        masked_cross_entropy(torch.zeros(1, 2), torch.tensor([2]))


def test_masked_binary_cross_entropy_per_sample_mean():
    logits = torch.zeros(2, 2)
    # Sample 0 has one annotated label, sample 1 two: both average to log 2 per label.
    targets = torch.tensor([[1.0, -1.0], [0.0, 1.0]])

    assert masked_binary_cross_entropy(logits, targets).item() == pytest.approx(math.log(2))


def test_masked_binary_cross_entropy_zero_grad_for_absent():
    logits = torch.randn(2, 3, requires_grad=True)
    targets = torch.tensor([[1.0, -1.0, 0.0], [-1.0, -1.0, -1.0]])

    masked_binary_cross_entropy(logits, targets).backward()

    assert logits.grad[0, 1] == 0.0
    assert torch.equal(logits.grad[1], torch.zeros(3))
    assert logits.grad[0, 0] != 0.0


def test_masked_head_gets_exactly_zero_gradient():
    torch.manual_seed(0)
    trunk = nn.Linear(5, 8)
    class_head = nn.Linear(8, 3)
    attribute_head = nn.Linear(8, 4)
    features = trunk(torch.randn(6, 5))

    # Every sample carries a class label and no attribute label.
    loss = masked_cross_entropy(class_head(features), torch.tensor([0, 1, 2, 0, 1, 2])) + masked_binary_cross_entropy(
        attribute_head(features), torch.full((6, 4), -1.0)
    )
    loss.backward()

    assert torch.equal(attribute_head.weight.grad, torch.zeros_like(attribute_head.weight))
    assert torch.equal(attribute_head.bias.grad, torch.zeros_like(attribute_head.bias))
    assert class_head.weight.grad.abs().sum() > 0


# CCC --------------------------------------------------------------------------------------------


def test_ccc_of_identical_vectors_is_one():
    values = torch.tensor([[0.1, -0.5], [0.4, 0.2], [-0.3, 0.9], [0.8, -0.1]], requires_grad=True)

    assert torch.allclose(concordance_correlation(values, values.detach()), torch.ones(2, dtype=values.dtype))
    assert ccc_loss(values, values.detach()).item() == pytest.approx(0.0, abs=1e-7)


def test_ccc_hand_example():
    x = torch.tensor([1.0, 2.0, 3.0])
    y = torch.tensor([2.0, 3.0, 4.0])
    # Covariance 2/3, both variances 2/3, mean difference 1: CCC = (4/3) / (4/3 + 1).
    assert concordance_correlation(x, y).item() == pytest.approx(4 / 7)
    assert ccc_loss(x, y).item() == pytest.approx(3 / 7)


def test_ccc_equal_constants_is_one():
    assert concordance_correlation(torch.full((4,), 0.3), torch.full((4,), 0.3)).item() == 1.0


def test_ccc_loss_masks_samples():
    x = torch.tensor([1.0, 2.0, 3.0, 100.0])
    y = torch.tensor([1.0, 2.0, 3.0, float("nan")])

    loss = ccc_loss(x, y, torch.tensor([1.0, 1.0, 1.0, 0.0]))

    assert loss.item() == pytest.approx(0.0, abs=1e-7)


def test_ccc_loss_with_one_annotated_sample_is_zero():
    x = torch.tensor([0.5, 0.1], requires_grad=True)

    loss = ccc_loss(x, torch.tensor([0.2, 0.0]), torch.tensor([1.0, 0.0]))
    loss.backward()

    assert loss.item() == 0.0
    assert torch.equal(x.grad, torch.zeros(2))


# Soft co-annotation targets ---------------------------------------------------------------------


def test_one_hot_class_gives_relatedness_row():
    for k in range(3):
        assert torch.equal(soft_attribute_targets(torch.tensor([k]), MATRIX)[0], MATRIX[k])
        one_hot = torch.nn.functional.one_hot(torch.tensor([k]), 3).to(torch.float64)
        assert torch.allclose(soft_attribute_targets(one_hot, MATRIX)[0], MATRIX[k])


def test_expert_expression_row_for_happiness():
    expert = expert_relatedness()
    happiness = expert.as_tensor()[1]

    assert torch.equal(soft_attribute_targets(torch.tensor([1]), expert)[0], happiness)


def test_soft_class_targets_weighted_sum_hand_example():
    attributes = torch.tensor([[1.0, 1.0, 0.0, 0.0]], dtype=torch.float64)

    targets = soft_class_targets(attributes, MATRIX)

    # Class 1: (1 + 0.5) / 1.7; class 2: 1 / 2.4; class 0 has no weight on any attribute.
    scores = torch.tensor([0.0, 1.5 / 1.7, 1.0 / 2.4], dtype=torch.float64)
    assert torch.allclose(targets[0], scores / scores.sum())


def test_soft_class_targets_all_zero_gives_null_class():
    targets = soft_class_targets(torch.zeros(1, 4, dtype=torch.float64), MATRIX)

    assert torch.equal(targets[0], torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64))


def test_soft_class_targets_all_zero_expressions_give_neutral():
    targets = soft_class_targets(torch.zeros(1, 17), expert_relatedness())

    assert targets[0, 0].item() == 1.0


def test_soft_class_targets_uniform_without_null_class():
    matrix = torch.tensor([[0.5, 0.0], [0.0, 0.5]])

    assert torch.allclose(soft_class_targets(torch.zeros(1, 2), matrix)[0], torch.tensor([0.5, 0.5]))


def test_soft_class_targets_mask_ignores_entries():
    attributes = torch.tensor([[1.0, -1.0, 0.0, -1.0]], dtype=torch.float64)
    masked = soft_class_targets(attributes, MATRIX)
    explicit = soft_class_targets(
        torch.tensor([[1.0, 0.0, 0.0, 0.0]], dtype=torch.float64), MATRIX, torch.tensor([[1.0, 0.0, 1.0, 0.0]])
    )

    assert torch.allclose(masked, explicit)
    # Only attribute 0 is active and only class 1 predicts it.
    assert torch.allclose(masked[0], torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64))


def test_soft_class_targets_product_rule():
    attributes = torch.tensor([[1.0, 0.0, 0.0, 0.0]], dtype=torch.float64)

    targets = soft_class_targets(attributes, MATRIX, rule="product")

    assert targets.sum().item() == pytest.approx(1.0)
    assert targets[0].argmax().item() == 1


def test_soft_class_targets_unknown_rule():
    with pytest.raises(ValueError, match="unknown rule"):
        soft_class_targets(torch.zeros(1, 4), MATRIX, rule="max")


# Distribution matching --------------------------------------------------------------------------


def agreeing_class_to_attribute_heads():
    class_logits = torch.tensor([[0.3, 1.2, -0.4], [2.0, -1.0, 0.5]], dtype=torch.float64)
    implied = (torch.softmax(class_logits, -1) @ MATRIX).clamp(1e-6, 1 - 1e-6)
    return class_logits, logit(implied)


def test_class_to_attribute_matching_minimal_when_heads_agree():
    class_logits, attribute_logits = agreeing_class_to_attribute_heads()
    base = class_to_attribute_matching(class_logits, attribute_logits, MATRIX, divergence="kl").item()
    generator = torch.Generator().manual_seed(0)

    assert base == pytest.approx(0.0, abs=1e-5)
    for _ in range(5):
        noise = 0.3 * torch.randn(attribute_logits.shape, generator=generator, dtype=torch.float64)
        assert class_to_attribute_matching(class_logits, attribute_logits + noise, MATRIX, divergence="kl").item() > base
        noise = 0.3 * torch.randn(class_logits.shape, generator=generator, dtype=torch.float64)
        assert class_to_attribute_matching(class_logits + noise, attribute_logits, MATRIX, divergence="kl").item() > base


def test_class_to_attribute_bce_gradient_vanishes_at_agreement():
    class_logits, attribute_logits = agreeing_class_to_attribute_heads()
    attribute_logits.requires_grad_(True)

    class_to_attribute_matching(class_logits, attribute_logits, MATRIX, divergence="bce").backward()

    assert attribute_logits.grad.abs().max().item() < 1e-6


def test_attribute_to_class_matching_minimal_when_heads_agree():
    attribute_logits = torch.tensor([[1.0, 0.5, -2.0, 0.0], [-1.0, 2.0, 1.5, 0.3]], dtype=torch.float64)
    for rule in ("weighted-sum", "product"):
        implied = soft_class_targets(torch.sigmoid(attribute_logits), MATRIX, torch.ones_like(attribute_logits), rule=rule)
        class_logits = torch.log(implied.clamp_min(1e-12))
        base = attribute_to_class_matching(attribute_logits, class_logits, MATRIX, rule=rule, divergence="kl").item()
        generator = torch.Generator().manual_seed(1)

        assert base == pytest.approx(0.0, abs=1e-6)
        for _ in range(5):
            noise = 0.3 * torch.randn(class_logits.shape, generator=generator, dtype=torch.float64)
            perturbed_class = attribute_to_class_matching(attribute_logits, class_logits + noise, MATRIX, rule=rule, divergence="kl")
            assert perturbed_class.item() > base
            noise = 0.3 * torch.randn(attribute_logits.shape, generator=generator, dtype=torch.float64)
            perturbed_attributes = attribute_to_class_matching(attribute_logits + noise, class_logits, MATRIX, rule=rule, divergence="kl")
            assert perturbed_attributes.item() > base


def test_matching_defaults_are_cross_entropies():
    class_logits = torch.tensor([[0.3, 1.2, -0.4], [2.0, -1.0, 0.5]], dtype=torch.float64)
    attribute_logits = torch.tensor([[1.0, 0.5, -2.0, 0.0], [-1.0, 2.0, 1.5, 0.3]], dtype=torch.float64)
    implied_attributes = torch.softmax(class_logits, -1) @ MATRIX
    implied_classes = soft_class_targets(torch.sigmoid(attribute_logits), MATRIX, torch.ones_like(attribute_logits))

    defaults = distribution_matching_losses(class_logits, attribute_logits, MATRIX)
    explicit = distribution_matching_losses(class_logits, attribute_logits, MATRIX, divergence="cross-entropy")
    kl = distribution_matching_losses(class_logits, attribute_logits, MATRIX, divergence="kl")

    bce = torch.nn.functional.binary_cross_entropy_with_logits(attribute_logits, implied_attributes)
    ce = -(implied_classes * torch.log_softmax(class_logits, -1)).sum(-1).mean()
    assert defaults["class_to_attribute"].item() == pytest.approx(bce.item())
    assert defaults["attribute_to_class"].item() == pytest.approx(ce.item())
    for direction in defaults:
        assert defaults[direction].item() == pytest.approx(explicit[direction].item())
    # Cross-entropy is KL plus the entropy of the target, so it exceeds KL for soft targets.
    assert defaults["attribute_to_class"].item() > kl["attribute_to_class"].item()


def test_distribution_matching_directions():
    class_logits, attribute_logits = agreeing_class_to_attribute_heads()

    every_direction = distribution_matching_losses(class_logits, attribute_logits, MATRIX)
    single_direction = distribution_matching_losses(class_logits, attribute_logits, MATRIX, directions=["attribute_to_class"])

    assert set(every_direction) == {"class_to_attribute", "attribute_to_class"}
    assert set(single_direction) == {"attribute_to_class"}
    with pytest.raises(ValueError, match="unknown directions"):
        distribution_matching_losses(class_logits, attribute_logits, MATRIX, directions=["sideways"])


def test_detached_target_stops_class_gradient():
    class_logits = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    attribute_logits = torch.randn(4, 4, dtype=torch.float64, requires_grad=True)

    class_to_attribute_matching(class_logits, attribute_logits, MATRIX, detach_target=True).backward()

    assert class_logits.grad is None or torch.equal(class_logits.grad, torch.zeros_like(class_logits))
    assert attribute_logits.grad.abs().sum() > 0


def test_confidence_weighting_skips_undetermined_attribute():
    # Attribute 1 has D = 0.5 for the only likely class, so the class does not predict it.
    class_logits = torch.tensor([[-20.0, 20.0, -20.0]], dtype=torch.float64)
    attribute_logits = torch.zeros(1, 4, dtype=torch.float64, requires_grad=True)

    class_to_attribute_matching(class_logits, attribute_logits, MATRIX, confidence_weighted=True).backward()

    assert torch.allclose(relatedness_confidence(MATRIX)[1], torch.tensor([1.0, 0.0, 1.0, 0.6], dtype=torch.float64))
    assert attribute_logits.grad[0, 1].abs().item() < 1e-9
    assert attribute_logits.grad[0, 0].abs().item() > 0


def test_dm_rejects_mismatched_relatedness():
    with pytest.raises(ValueError, match="3 classes and 5 attributes"):
        class_to_attribute_matching(torch.zeros(1, 3), torch.zeros(1, 5), MATRIX)


# Co-annotation ----------------------------------------------------------------------------------


def test_coannotation_targets_follow_the_other_task():
    class_logits = torch.randn(3, 3, dtype=torch.float64, requires_grad=True)
    attribute_logits = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    class_labels = torch.tensor([2, -1, -1])
    attribute_labels = torch.tensor([[-1.0, -1.0, -1.0, -1.0], [1.0, 0.0, 0.0, 1.0], [-1.0, -1.0, -1.0, -1.0]], dtype=torch.float64)

    losses = coannotation_losses(class_logits, attribute_logits, class_labels, attribute_labels, MATRIX)

    # Sample 0 (class 2) trains the attribute head towards row 2; sample 1 trains the class head.
    expected_attribute = masked_binary_cross_entropy(attribute_logits[:1], MATRIX[2:3])
    expected_class = masked_cross_entropy(class_logits[1:2], soft_class_targets(attribute_labels[1:2], MATRIX))
    assert losses["class_to_attribute"].item() == pytest.approx(expected_attribute.item())
    assert losses["attribute_to_class"].item() == pytest.approx(expected_class.item())

    (losses["class_to_attribute"] + losses["attribute_to_class"]).backward()
    # Sample 2 has no label at all, so co-annotation gives it nothing.
    assert torch.equal(class_logits.grad[2], torch.zeros(3, dtype=torch.float64))
    assert torch.equal(attribute_logits.grad[2], torch.zeros(4, dtype=torch.float64))


def test_coannotation_skips_fully_annotated_samples():
    class_logits = torch.randn(1, 3, dtype=torch.float64)
    attribute_logits = torch.randn(1, 4, dtype=torch.float64)

    losses = coannotation_losses(
        class_logits, attribute_logits, torch.tensor([1]), torch.tensor([[1.0, 0.0, 0.0, 1.0]], dtype=torch.float64), MATRIX
    )

    assert losses["class_to_attribute"].item() == 0.0
    assert losses["attribute_to_class"].item() == 0.0


# Metrics ----------------------------------------------------------------------------------------


def test_metric_ccc_hand_example():
    assert concordance_correlation_coefficient([1.0, 2.0, 3.0], [2.0, 3.0, 4.0]) == pytest.approx(4 / 7)
    assert concordance_correlation_coefficient([0.2, 0.4], [0.2, 0.4]) == pytest.approx(1.0)
    assert va_score([[1.0, 0.1], [2.0, 0.3], [3.0, 0.5]], [[2.0, 0.1], [3.0, 0.3], [4.0, 0.5]]) == pytest.approx((4 / 7 + 1) / 2)


def test_metric_f1_per_label_hand_example():
    predictions = np.array([[0.9, 0.2, 0.1], [0.8, 0.7, 0.0], [0.1, 0.6, 0.3], [0.4, 0.1, 0.2]])
    targets = np.array([[1, 0, 0], [0, 1, 0], [1, 1, -1], [1, -1, 0]])

    f1 = f1_per_label(predictions, targets)

    # Label 0: TP 1, FP 1, FN 2 -> 2/5. Label 1: TP 2, FP 0, FN 0 -> 1. Label 2: nothing positive -> 0.
    np.testing.assert_allclose(f1, [0.4, 1.0, 0.0])
    assert mean_f1(predictions, targets) == pytest.approx(1.4 / 3)
    # 7 of the 10 annotated entries are right.
    assert au_score_abaw2020(predictions, targets) == pytest.approx(0.5 * 1.4 / 3 + 0.5 * 0.7)


def test_metric_f1_label_without_annotation_is_nan():
    f1 = f1_per_label(np.array([[1.0, 0.0]]), np.array([[1, -1]]))

    assert f1[0] == 1.0
    assert np.isnan(f1[1])


def test_metric_class_accuracy_and_macro_f1():
    labels = [0, 0, 1, 1, 2, 2]
    predictions = [0, 1, 1, 1, 2, 0]

    # Class F1: 0 -> 1/2, 1 -> 4/5, 2 -> 2/3.
    macro = (0.5 + 0.8 + 2 / 3) / 3
    assert accuracy(predictions, labels) == pytest.approx(4 / 6)
    assert macro_f1(predictions, labels) == pytest.approx(macro)
    assert macro_f1(predictions, labels, num_classes=4) == pytest.approx((0.5 + 0.8 + 2 / 3) / 4)
    assert expression_score(predictions, labels) == pytest.approx(0.67 * macro + 0.33 * 4 / 6)


def test_metric_scores_from_probabilities():
    probabilities = np.array([[0.9, 0.1], [0.3, 0.7], [0.6, 0.4]])

    metrics = multiclass_metrics(probabilities, np.array([0, 1, -1]), ["a", "b"])

    assert metrics["accuracy"] == 1.0
    assert metrics["num_samples"] == 2


def test_metric_multilabel_summary_names_labels():
    metrics = multilabel_metrics(np.array([[0.9, 0.1], [0.2, 0.8]]), np.array([[1, 0], [0, 1]]), ["loop", "even"])

    assert metrics["f1"] == {"loop": 1.0, "even": 1.0}
    assert metrics["mean_f1"] == 1.0
    assert metrics["accuracy"] == 1.0


def test_metric_rejects_unannotated_labels():
    with pytest.raises(ValueError, match="-1"):
        accuracy([0, 1], [0, -1])
    with pytest.raises(ValueError, match="0, 1 or -1"):
        f1_per_label(np.zeros((1, 1)), np.array([[2]]))
