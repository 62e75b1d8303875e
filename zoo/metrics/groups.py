"""Subgroup-robustness metrics: accuracy per (class, subgroup) group, worst-group accuracy and gap."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["group_metrics"]


def group_metrics(
    predictions: Sequence[int] | np.ndarray,
    labels: Sequence[int] | np.ndarray,
    groups: Sequence[int] | np.ndarray,
    group_names: Sequence[str] | None = None,
    *,
    subgroups: Sequence[int] | np.ndarray | None = None,
    subgroup_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Compute accuracy overall and per group.

    Args:
        predictions: predicted class per sample.
        labels: true class per sample.
        groups: group id per sample (for example `label * num_subgroups + subgroup`).
        group_names: names of the group ids, used as keys of `group_accuracy`; ids without a
            name are keyed by their number.
        subgroups: subgroup (attribute) per sample. When given, the result also has
            `subgroup_accuracy` and `robust_accuracy`, the minimum accuracy over subgroups with
            both classes pooled, which is the "robust accuracy" of the support-matching papers.
        subgroup_names: names of the subgroup ids, keys of `subgroup_accuracy`.

    Returns:
        `accuracy`, `worst_group_accuracy` (minimum over groups present), `group_accuracy`
        (name to accuracy), `group_counts` (name to number of samples) and `gap` (best minus
        worst group accuracy). Groups with no samples are left out.
    """
    predictions = np.asarray(predictions)
    labels = np.asarray(labels)
    groups = np.asarray(groups)
    if not (predictions.shape == labels.shape == groups.shape) or predictions.ndim != 1:
        raise ValueError(
            f"predictions, labels and groups must be 1-D and of equal length, got shapes "
            f"{predictions.shape}, {labels.shape}, {groups.shape}"
        )
    if predictions.size == 0:
        raise ValueError("cannot compute accuracy on zero samples")
    if (groups < 0).any():
        raise ValueError("groups contain -1 (unlabelled samples); evaluate on a labelled split")

    correct = predictions == labels
    group_accuracy: dict[str, float] = {}
    group_counts: dict[str, int] = {}
    for group in np.unique(groups):
        name = group_names[group] if group_names is not None and group < len(group_names) else str(int(group))
        members = groups == group
        group_accuracy[name] = float(correct[members].mean())
        group_counts[name] = int(members.sum())
    worst = min(group_accuracy.values())
    result = {
        "accuracy": float(correct.mean()),
        "worst_group_accuracy": worst,
        "group_accuracy": group_accuracy,
        "group_counts": group_counts,
        "gap": max(group_accuracy.values()) - worst,
    }
    if subgroups is not None:
        subgroups = np.asarray(subgroups)
        if subgroups.shape != labels.shape:
            raise ValueError(f"subgroups must have shape {labels.shape} like labels, got {subgroups.shape}")
        subgroup_accuracy = {}
        for subgroup in np.unique(subgroups):
            name = subgroup_names[subgroup] if subgroup_names is not None and subgroup < len(subgroup_names) else str(int(subgroup))
            subgroup_accuracy[name] = float(correct[subgroups == subgroup].mean())
        result["subgroup_accuracy"] = subgroup_accuracy
        result["robust_accuracy"] = min(subgroup_accuracy.values())
    return result
