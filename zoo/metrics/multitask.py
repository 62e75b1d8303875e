"""Metrics of multi-task face and attribute models: CCC, F1 per label, accuracy, macro F1 and challenge scores.

Definitions, all on NumPy arrays:

- `concordance_correlation_coefficient`: Lin's CCC, 2 s_xy / (s_x^2 + s_y^2 + (mean_x -
  mean_y)^2) with population (1/n) moments. It is 1 for identical inputs, including two equal
  constants.
- `f1_per_label`: binary F1 = 2 TP / (2 TP + FP + FN) of each label of a multi-label task,
  over the samples annotated for that label. A label with no positive in the truth and none
  predicted has F1 0, as scikit-learn's `f1_score` reports by default. A label with no
  annotated sample is NaN.
- `mean_f1`: the mean of `f1_per_label` over labels that have annotated samples, the AU
  metric of the ABAW challenges from 2021 on (average F1 over the AUs).
- `accuracy` and `macro_f1`: multiclass accuracy, and the unweighted mean of one-vs-rest F1
  over the classes present in the labels or the predictions (scikit-learn's
  `average="macro"`), unless `num_classes` fixes the class list.
- `expression_score`: 0.67 macro F1 + 0.33 accuracy, the expression metric of the ABAW 2020
  challenge on Aff-Wild2.
- `au_score_abaw2020`: 0.5 mean F1 + 0.5 accuracy over all annotated (sample, label)
  entries, the AU metric of ABAW 2020.
- `va_score`: the mean of the CCC of valence and of arousal.

NOTE: the ABAW weights above are recalled from the challenge papers (Kollias et al., ABAW
2020 and later) and were not re-checked against them here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "accuracy",
    "au_score_abaw2020",
    "concordance_correlation_coefficient",
    "expression_score",
    "f1_per_label",
    "macro_f1",
    "mean_f1",
    "multiclass_metrics",
    "multilabel_metrics",
    "va_score",
]


def _as_array(values: Any, name: str) -> np.ndarray:
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    array = np.asarray(values)
    if array.size == 0:
        raise ValueError(f"{name} is empty; metrics need at least one sample")
    return array


def concordance_correlation_coefficient(predictions: Any, targets: Any) -> float | np.ndarray:
    """Return Lin's CCC of 1-D inputs, or one CCC per column of (samples, columns) inputs."""
    x = _as_array(predictions, "predictions").astype(np.float64)
    y = _as_array(targets, "targets").astype(np.float64)
    if x.shape != y.shape or x.ndim not in (1, 2):
        raise ValueError(f"predictions and targets must share a 1-D or 2-D shape, got {x.shape} and {y.shape}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("CCC inputs contain NaN or infinite values; drop unannotated samples first")
    mean_x, mean_y = x.mean(axis=0), y.mean(axis=0)
    covariance = ((x - mean_x) * (y - mean_y)).mean(axis=0)
    denominator = x.var(axis=0) + y.var(axis=0) + (mean_x - mean_y) ** 2
    with np.errstate(invalid="ignore", divide="ignore"):
        ccc = np.where(denominator > 0, 2.0 * covariance / denominator, 1.0)
    return float(ccc) if ccc.ndim == 0 else ccc


def va_score(predictions: Any, targets: Any) -> float:
    """Return the mean CCC of the valence and arousal columns of (samples, 2) arrays."""
    x = _as_array(predictions, "predictions")
    if x.ndim != 2 or x.shape[1] != 2:
        raise ValueError(f"expected (samples, 2) valence-arousal predictions, got shape {x.shape}")
    return float(np.mean(concordance_correlation_coefficient(predictions, targets)))


def _binarise(predictions: np.ndarray, threshold: float) -> np.ndarray:
    if predictions.dtype == bool:
        return predictions
    return predictions >= threshold


def f1_per_label(predictions: Any, targets: Any, *, threshold: float = 0.5) -> np.ndarray:
    """Return the binary F1 of each label of a multi-label task.

    Args:
        predictions: (samples, labels) probabilities (thresholded at `threshold`), 0/1 values
            or booleans.
        targets: (samples, labels) labels in {0, 1}, -1 where not annotated.
    """
    scores = _as_array(predictions, "predictions")
    labels = _as_array(targets, "targets")
    if scores.shape != labels.shape or scores.ndim != 2:
        raise ValueError(f"predictions and targets must share a (samples, labels) shape, got {scores.shape} and {labels.shape}")
    if not np.isin(labels, (-1, 0, 1)).all():
        raise ValueError("targets must be 0, 1 or -1 (not annotated)")
    predicted = _binarise(scores, threshold)
    annotated = labels >= 0
    positive = labels == 1
    true_positives = (predicted & positive & annotated).sum(axis=0)
    false_positives = (predicted & ~positive & annotated).sum(axis=0)
    false_negatives = (~predicted & positive & annotated).sum(axis=0)
    denominator = 2 * true_positives + false_positives + false_negatives
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(denominator > 0, 2 * true_positives / np.maximum(denominator, 1), 0.0)
    return np.where(annotated.any(axis=0), f1, np.nan)


def mean_f1(predictions: Any, targets: Any, *, threshold: float = 0.5) -> float:
    """Return the mean binary F1 over the labels that have annotated samples."""
    f1 = f1_per_label(predictions, targets, threshold=threshold)
    if np.isnan(f1).all():
        raise ValueError("no label has an annotated sample")
    return float(np.nanmean(f1))


def au_score_abaw2020(predictions: Any, targets: Any, *, threshold: float = 0.5) -> float:
    """Return 0.5 mean F1 + 0.5 accuracy over all annotated (sample, label) entries."""
    scores = _as_array(predictions, "predictions")
    labels = _as_array(targets, "targets")
    annotated = labels >= 0
    correct = (_binarise(scores, threshold) == (labels == 1)) & annotated
    return 0.5 * mean_f1(scores, labels, threshold=threshold) + 0.5 * float(correct.sum() / annotated.sum())


def _class_labels(predictions: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    predicted = _as_array(predictions, "predictions")
    truth = _as_array(labels, "labels").astype(np.int64)
    if predicted.ndim == 2:
        predicted = predicted.argmax(axis=1)
    predicted = predicted.astype(np.int64)
    if predicted.shape != truth.shape or truth.ndim != 1:
        raise ValueError(f"predictions and labels must give one class per sample, got shapes {predicted.shape} and {truth.shape}")
    if (truth < 0).any():
        raise ValueError("labels contain -1 (not annotated); select annotated samples first")
    return predicted, truth


def accuracy(predictions: Any, labels: Any) -> float:
    """Return the fraction of correct classes; predictions are class indices or (samples, classes) scores."""
    predicted, truth = _class_labels(predictions, labels)
    return float((predicted == truth).mean())


def macro_f1(predictions: Any, labels: Any, *, num_classes: int | None = None) -> float:
    """Return the unweighted mean one-vs-rest F1 over classes (see the module notes for the class list)."""
    predicted, truth = _class_labels(predictions, labels)
    classes = np.arange(num_classes) if num_classes is not None else np.union1d(truth, predicted)
    scores = []
    for cls in classes:
        true_positives = np.sum((predicted == cls) & (truth == cls))
        denominator = np.sum(predicted == cls) + np.sum(truth == cls)
        scores.append(2 * true_positives / denominator if denominator > 0 else 0.0)
    return float(np.mean(scores))


def expression_score(predictions: Any, labels: Any, *, num_classes: int | None = None) -> float:
    """Return the ABAW 2020 expression score, 0.67 macro F1 + 0.33 accuracy."""
    return 0.67 * macro_f1(predictions, labels, num_classes=num_classes) + 0.33 * accuracy(predictions, labels)


def multiclass_metrics(probabilities: Any, labels: Any, label_names: Sequence[str] | None = None) -> dict[str, Any]:
    """Score a multiclass task on its annotated samples (label >= 0).

    Returns `accuracy`, `macro_f1` (over all classes), `expression_score` and `num_samples`.
    """
    scores = _as_array(probabilities, "probabilities")
    truth = _as_array(labels, "labels").astype(np.int64)
    annotated = truth >= 0
    if not annotated.any():
        raise ValueError("no sample is annotated for this task")
    num_classes = len(label_names) if label_names is not None else scores.shape[1]
    scores, truth = scores[annotated], truth[annotated]
    return {
        "accuracy": accuracy(scores, truth),
        "macro_f1": macro_f1(scores, truth, num_classes=num_classes),
        "expression_score": expression_score(scores, truth, num_classes=num_classes),
        "num_samples": int(annotated.sum()),
    }


def multilabel_metrics(
    probabilities: Any, targets: Any, label_names: Sequence[str] | None = None, *, threshold: float = 0.5
) -> dict[str, Any]:
    """Score a multi-label task: `mean_f1`, `f1` (label name to F1), `accuracy` over annotated entries and `num_samples`."""
    scores = _as_array(probabilities, "probabilities")
    labels = _as_array(targets, "targets")
    f1 = f1_per_label(scores, labels, threshold=threshold)
    names = list(label_names) if label_names is not None else [str(i) for i in range(labels.shape[1])]
    if len(names) != labels.shape[1]:
        raise ValueError(f"{len(names)} label names for {labels.shape[1]} labels")
    annotated = labels >= 0
    correct = (_binarise(scores, threshold) == (labels == 1)) & annotated
    return {
        "mean_f1": mean_f1(scores, labels, threshold=threshold),
        "f1": {name: (None if np.isnan(value) else float(value)) for name, value in zip(names, f1)},
        "accuracy": float(correct.sum() / max(int(annotated.sum()), 1)),
        "au_score_abaw2020": au_score_abaw2020(scores, labels, threshold=threshold),
        "num_samples": int(annotated.any(axis=1).sum()),
    }
