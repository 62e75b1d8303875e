"""Caliper nearest-neighbour matching on propensity scores.

Statistical matching pairs each sample (the anchor) with its nearest neighbours in feature
space among the samples of another subgroup, and only allows pairs whose propensity scores
e(x) = P(s | x) are close. Two methods of the Predictive Analytics Lab (University of Sussex)
share this matcher:

- RealPatch ("RealPatch: A Statistical Matching Framework for Model Patching with Real
  Samples", ECCV 2022) matches offline, once per training set, treated to control and control
  to treated, and augments the training set with the matched real samples.
- Okapi ("Okapi: Generalising Better by Making Statistical Matches Match", NeurIPS 2022)
  matches online, each batch of queries against a memory bank of keys, in binary mode
  (labelled against unlabelled) or in multi-group mode (one group per domain).

The package is split by concept, and every name in `__all__` can be imported from
`zoo.matching` directly:

- `zoo.matching.propensity`: the propensity model, a logistic regression of the subgroup on
  the features with group-balanced sample weights, gives e(x) (`fit_propensity`,
  `PropensityModel`), and `l2_normalize` scales features to unit norm.
- `zoo.matching.caliper`: a fixed caliper removes outlying anchors, a std caliper bounds the
  propensity gap of each pair, and the k nearest allowed keys of another group are the
  matches (`caliper_match`, `match_bidirectional`, `MatchResult`). Its module docstring
  states the rules of binary and multi-group mode and the differences from the reference
  implementations.
- `zoo.matching.balance`: standardised mean differences and variance ratios of the features
  before and after matching (`balance_statistics`, `balance_summary`, `matched_sets`,
  `balance_report`).
"""

# `X as X` re-exports these module-level names from `zoo.matching` without adding them to
# `__all__`.
from zoo.matching._validation import ArrayLike as ArrayLike
from zoo.matching.balance import (
    SMD_BIN_EDGES as SMD_BIN_EDGES,
    VARIANCE_RATIO_BIN_EDGES as VARIANCE_RATIO_BIN_EDGES,
    balance_report,
    balance_statistics,
    balance_summary,
    matched_sets,
)
from zoo.matching.caliper import MatchResult, caliper_match, match_bidirectional
from zoo.matching.propensity import PropensityModel, fit_propensity, l2_normalize

__all__ = [
    "MatchResult",
    "PropensityModel",
    "balance_report",
    "balance_statistics",
    "balance_summary",
    "caliper_match",
    "fit_propensity",
    "l2_normalize",
    "match_bidirectional",
    "matched_sets",
]
