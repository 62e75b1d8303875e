"""Covariate balance diagnostics: treated against control, before and after matching.

Balance is measured per feature by the standardised mean difference (SMD) and the variance
ratio (VR) of the treated and control rows. `matched_sets` collects those rows of the
matched sample from a `MatchResult`, and `balance_report` compares them with the full set.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from zoo.matching._validation import (
    ArrayLike,
    _as_tensor,
    _binary_group_values,
    _features_tensor,
    _labels_tensor,
)
from zoo.matching.caliper import MatchResult

__all__ = ["balance_report", "balance_statistics", "balance_summary", "matched_sets"]

# Rule-of-thumb bins for covariate balance: |SMD| <= 0.1 is commonly read as negligible
# imbalance, and a variance ratio inside (4/5, 5/4) as similar spread.
SMD_BIN_EDGES = (0.1, 0.2)
VARIANCE_RATIO_BIN_EDGES = (4 / 5, 5 / 4)


def balance_statistics(
    features_treated: ArrayLike, features_control: ArrayLike
) -> dict[str, list[float]]:
    """Compute the per-feature standardised mean difference and variance ratio.

    SMD = (mean_t - mean_c) / sqrt((var_t + var_c) / 2) and VR = var_t / var_c, with
    population variances. A feature that is constant in both groups gets SMD 0 (equal
    constants) or +-inf (different constants), and VR 1. A feature constant only among the
    controls gets VR inf, which `json.dumps` writes as Infinity.

    Returns:
        {"smd": [...], "variance_ratio": [...]}, one float per feature.
    """
    treated = _features_tensor("features_treated", features_treated).double()
    control = _features_tensor("features_control", features_control, treated.device).double()
    if treated.shape[1] != control.shape[1]:
        raise ValueError(
            f"features_treated have {treated.shape[1]} columns but features_control have "
            f"{control.shape[1]}; both must have the same features"
        )
    if treated.shape[0] == 0 or control.shape[0] == 0:
        raise ValueError(
            f"balance needs samples in both groups, got {treated.shape[0]} treated and "
            f"{control.shape[0]} control rows"
        )

    mean_difference = treated.mean(dim=0) - control.mean(dim=0)
    variance_treated = treated.var(dim=0, correction=0)
    variance_control = control.var(dim=0, correction=0)
    pooled_std = ((variance_treated + variance_control) / 2).sqrt()

    # 0/0 gives nan, which the conventions above replace, while a nonzero value over a zero
    # spread stays +-inf.
    smd = torch.where(
        (pooled_std == 0) & (mean_difference == 0),
        torch.zeros_like(mean_difference),
        mean_difference / pooled_std,
    )
    variance_ratio = torch.where(
        (variance_control == 0) & (variance_treated == 0),
        torch.ones_like(variance_treated),
        variance_treated / variance_control,
    )
    return {"smd": smd.tolist(), "variance_ratio": variance_ratio.tolist()}


def _summarise_balance(treated: ArrayLike, control: ArrayLike) -> dict[str, Any]:
    statistics = balance_statistics(treated, control)
    abs_smd = np.abs(np.asarray(statistics["smd"]))
    variance_ratio = np.asarray(statistics["variance_ratio"])
    smd_low, smd_high = SMD_BIN_EDGES
    vr_low, vr_high = VARIANCE_RATIO_BIN_EDGES
    return {
        "num_treated": int(_as_tensor("treated", treated).shape[0]),
        "num_control": int(_as_tensor("control", control).shape[0]),
        "mean_abs_smd": float(abs_smd.mean()),
        "max_abs_smd": float(abs_smd.max()),
        "smd_bin_counts": {
            "<=0.1": int((abs_smd <= smd_low).sum()),
            "0.1-0.2": int(((abs_smd > smd_low) & (abs_smd <= smd_high)).sum()),
            ">0.2": int((abs_smd > smd_high).sum()),
        },
        "variance_ratio_bin_counts": {
            "<=4/5": int((variance_ratio <= vr_low).sum()),
            "4/5-5/4": int(((variance_ratio > vr_low) & (variance_ratio < vr_high)).sum()),
            ">=5/4": int((variance_ratio >= vr_high).sum()),
        },
    }


def balance_summary(
    before_treated: ArrayLike,
    before_control: ArrayLike,
    after_treated: ArrayLike,
    after_control: ArrayLike,
) -> dict[str, dict[str, Any]]:
    """Summarise covariate balance before and after matching.

    Each of "before" and "after" contains the sample counts, the mean and max |SMD| over
    features, and the number of features per rule-of-thumb bin: |SMD| <= 0.1, 0.1-0.2,
    > 0.2 and VR <= 4/5, between, >= 5/4. The result contains only numbers, strings and
    dicts, so it can be passed to `json.dumps`.
    """
    return {
        "before": _summarise_balance(before_treated, before_control),
        "after": _summarise_balance(after_treated, after_control),
    }


def matched_sets(
    features: ArrayLike,
    groups: ArrayLike,
    result: MatchResult,
    *,
    treated_group: int | None = None,
) -> tuple[Tensor, Tensor]:
    """Collect the treated and control feature rows of the matched sample.

    Every (anchor, match) pair adds the anchor's row to its group's side and the match's row
    to the other side, so with k > 1 an anchor appears k times, and a sample matched several
    times (matching is with replacement) appears once per match. Both indices of `result`
    must address rows of `features`, as they do for `match_bidirectional`, or for
    `caliper_match` with the same set as queries and keys.

    Args:
        features: (N, D) features.
        groups: (N,) labels with exactly two values.
        result: the matches.
        treated_group: label of the treated group; the larger label by default.

    Returns:
        (treated_rows, control_rows), each of shape (M * k, D).
    """
    inputs = _features_tensor("features", features)
    labels = _labels_tensor("groups", groups, inputs.shape[0], device=inputs.device)
    treated, _ = _binary_group_values(labels, treated_group)
    num_rows = inputs.shape[0]
    for name, index in (("anchor_index", result.anchor_index), ("match_index", result.match_index)):
        if index.numel() and (index.min() < 0 or index.max() >= num_rows):
            raise ValueError(
                f"result.{name} has values up to {index.max().item()}, but features have "
                f"{num_rows} rows; pass the features that were matched"
            )

    anchors = result.anchor_index.to(inputs.device).repeat_interleave(result.k)
    matches = result.match_index.to(inputs.device).reshape(-1)
    anchor_is_treated = labels[anchors] == treated
    treated_rows = torch.cat(
        [inputs[anchors[anchor_is_treated]], inputs[matches[~anchor_is_treated]]]
    )
    control_rows = torch.cat(
        [inputs[anchors[~anchor_is_treated]], inputs[matches[anchor_is_treated]]]
    )
    return treated_rows, control_rows


def balance_report(
    features: ArrayLike,
    groups: ArrayLike,
    result: MatchResult,
    *,
    treated_group: int | None = None,
) -> dict[str, Any]:
    """Summarise balance of the full set against the matched sample, plus the match counts.

    Returns `balance_summary` of (all treated, all control) before and `matched_sets` after,
    with "num_matched" and "match_rate" of `result` added.
    """
    inputs = _features_tensor("features", features)
    labels = _labels_tensor("groups", groups, inputs.shape[0], device=inputs.device)
    treated, control = _binary_group_values(labels, treated_group)
    after_treated, after_control = matched_sets(inputs, labels, result, treated_group=treated)
    if after_treated.shape[0] == 0:
        raise ValueError(
            "result contains no matched pairs, so balance after matching is undefined; relax "
            "the calipers or check the propensity scores"
        )
    report: dict[str, Any] = balance_summary(
        inputs[labels == treated], inputs[labels == control], after_treated, after_control
    )
    report["num_matched"] = result.num_matched
    report["match_rate"] = result.match_rate
    return report
