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

The matcher:

1. A propensity model, a logistic regression of the subgroup on the features with
   group-balanced sample weights, gives e(x) (`fit_propensity`). A temperature t rescales
   the logits before the sigmoid or softmax.
2. The fixed caliper removes outliers. In binary mode it keeps anchors with
   1 - c_max < e < c_max. In multi-group mode it drops samples with max_g e_g >= c_max.
   The two-way caliper (Okapi) applies the same filter to the candidate keys, and RealPatch
   filters anchors only.
3. The std caliper allows a pair (a, c) only if the propensity gap is at most alpha * sigma.
   Binary mode uses |e(a) - e(c)| and the pooled standard deviation
   sigma = sqrt((Var_anchors(e) + Var_candidates(e)) / 2). Multi-group mode uses the key's
   group coordinate, |e_{s_c}(a) - e_{s_c}(c)|, and sigma is the square root of the
   within-group variance of that coordinate averaged over groups.
4. Among the allowed keys of another group (and of the same stratum, if strata are given),
   the k nearest in Euclidean feature distance are the matches, with replacement. An anchor
   with fewer than k allowed keys is unmatched and dropped.

Differences from the reference implementations:

- The released RealPatch code builds dense N_t x N_c matrices of feature distances and of
  propensity gaps, and the Okapi code builds dense query x key matrices. Here queries are
  processed in blocks, so peak memory is O(block_size x N_keys) and never N_q x N_k.
- Variances are population variances (ddof = 0), as RealPatch computes them with `np.var`.
  Okapi's binary matcher uses the unbiased estimate, which is larger by a factor n / (n - 1).
- In multi-group mode the within-group variance is averaged over the groups present among
  the anchors and candidates. Okapi averages over all G groups, so an absent group adds a
  zero and shrinks sigma.
- The keys are shuffled by a permutation drawn from a `torch.Generator` before the
  neighbour search, so distance ties are broken at random, and a seeded generator makes
  matching reproducible.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Union

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from torch import Tensor, nn

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

logger = logging.getLogger(__name__)

ArrayLike = Union[Tensor, np.ndarray, Sequence]

# Rule-of-thumb bins for covariate balance: |SMD| <= 0.1 is commonly read as negligible
# imbalance, and a variance ratio inside (4/5, 5/4) as similar spread.
SMD_BIN_EDGES = (0.1, 0.2)
VARIANCE_RATIO_BIN_EDGES = (4 / 5, 5 / 4)


# ---------------------------------------------------------------------------------------------
# Input conversion and validation


def _as_tensor(name: str, value: ArrayLike) -> Tensor:
    if isinstance(value, Tensor):
        return value.detach()
    try:
        return torch.as_tensor(np.asarray(value))
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"{name} must be a tensor or an array of numbers, got {type(value).__name__}: {error}"
        ) from error


def _features_tensor(name: str, value: ArrayLike, device: torch.device | None = None) -> Tensor:
    """Convert features to a floating (N, D) tensor, rejecting NaN and infinite values."""
    features = _as_tensor(name, value)
    if features.ndim != 2:
        raise ValueError(
            f"{name} must be 2-D (samples, features), got shape {tuple(features.shape)}; "
            f"reshape it to (N, D)"
        )
    if not features.is_floating_point():
        features = features.float()
    if device is not None:
        features = features.to(device)
    if not torch.isfinite(features).all():
        raise ValueError(f"{name} contains NaN or infinite values; remove or impute them first")
    return features


def _labels_tensor(
    name: str, value: ArrayLike, length: int, device: torch.device | None = None
) -> Tensor:
    """Convert group or stratum labels to a LongTensor of shape (length,)."""
    labels = _as_tensor(name, value)
    if labels.ndim != 1 or labels.shape[0] != length:
        raise ValueError(
            f"{name} must be 1-D with one label per sample ({length}), got shape "
            f"{tuple(labels.shape)}"
        )
    if labels.is_floating_point():
        if not torch.equal(labels, labels.round()):
            raise ValueError(
                f"{name} must contain integer labels, got non-integer values such as "
                f"{labels[labels != labels.round()][0].item()}; encode the labels as integers"
            )
    elif labels.dtype == torch.bool:
        labels = labels.long()
    elif labels.is_complex():
        raise ValueError(f"{name} must contain integer labels, got dtype {labels.dtype}")
    labels = labels.long()
    if device is not None:
        labels = labels.to(device)
    return labels


def _scores_tensor(
    name: str, value: ArrayLike, length: int, device: torch.device | None = None
) -> Tensor:
    """Convert propensity scores to a float tensor of shape (N,) or (N, G) with values in [0, 1]."""
    scores = _as_tensor(name, value)
    if not scores.is_floating_point():
        scores = scores.float()
    if scores.ndim not in (1, 2) or scores.shape[0] != length:
        raise ValueError(
            f"{name} must have shape ({length},) for binary matching or ({length}, G) for G "
            f"groups, got shape {tuple(scores.shape)}"
        )
    if scores.ndim == 2 and scores.shape[1] < 2:
        raise ValueError(
            f"{name} has shape {tuple(scores.shape)}, but multi-group scores need G >= 2 "
            f"columns; pass binary scores P(s=1|x) as a 1-D tensor of shape ({length},)"
        )
    if device is not None:
        scores = scores.to(device)
    if not torch.isfinite(scores).all() or scores.min() < 0 or scores.max() > 1:
        raise ValueError(
            f"{name} must contain probabilities in [0, 1], got values in "
            f"[{scores.min().item()}, {scores.max().item()}]; pass PropensityModel.scores(...), "
            f"not logits"
        )
    return scores


def _check_fixed_caliper(fixed_caliper: float | None, num_groups: int) -> None:
    if fixed_caliper is None:
        return
    if not isinstance(fixed_caliper, (int, float)) or math.isnan(fixed_caliper):
        raise ValueError(f"fixed_caliper must be a number or None, got {fixed_caliper!r}")
    # Softmax scores over G groups have max_g e_g >= 1/G, and the binary interval (1 - c, c)
    # is empty for c <= 1/2, so such a caliper would drop every sample.
    lower_bound = 1.0 / num_groups
    if fixed_caliper <= lower_bound:
        raise ValueError(
            f"fixed_caliper={fixed_caliper} drops every sample with {num_groups} groups; pass a "
            f"value in ({lower_bound:g}, 1), or 1 or None to disable the fixed caliper"
        )


def _check_std_caliper(std_caliper: float | None) -> None:
    if std_caliper is None:
        return
    if not isinstance(std_caliper, (int, float)) or math.isnan(std_caliper) or std_caliper <= 0:
        raise ValueError(
            f"std_caliper must be a positive number of pooled standard deviations, got "
            f"{std_caliper!r}; pass None or math.inf to disable the std caliper"
        )


def _std_caliper_enabled(std_caliper: float | None) -> bool:
    return std_caliper is not None and not math.isinf(std_caliper)


def l2_normalize(features: ArrayLike, eps: float = 1e-12) -> Tensor:
    """Scale each row of `features` to unit Euclidean norm.

    On unit vectors the Euclidean distance is sqrt(2 - 2 cos), so nearest neighbours by
    Euclidean distance are the nearest by cosine similarity. Rows with norm below `eps`
    are divided by `eps` instead.
    """
    tensor = _features_tensor("features", features)
    return F.normalize(tensor, p=2.0, dim=1, eps=eps)


# ---------------------------------------------------------------------------------------------
# Propensity model


@dataclass
class PropensityModel:
    """Linear propensity model: P(s | x) from logits x @ coef.T + intercept.

    Binary models have one output row, the logit of P(s = classes[1] | x). Models with G > 2
    groups have one row per group, in the order of `classes`, and a softmax over the rows.

    Attributes:
        coef: weights, shape (1, D) for two groups or (G, D) for G > 2 groups.
        intercept: biases, shape (1,) or (G,).
        classes: the group labels, sorted, as plain ints.
    """

    coef: Tensor
    intercept: Tensor
    classes: tuple[int, ...]

    def __post_init__(self) -> None:
        self.classes = tuple(int(label) for label in self.classes)
        if len(self.classes) < 2:
            raise ValueError(
                f"a propensity model needs at least two classes, got classes={self.classes}"
            )
        expected_rows = 1 if len(self.classes) == 2 else len(self.classes)
        if self.coef.ndim != 2 or self.coef.shape[0] != expected_rows:
            raise ValueError(
                f"coef must have shape ({expected_rows}, D) for {len(self.classes)} classes, "
                f"got shape {tuple(self.coef.shape)}"
            )
        if tuple(self.intercept.shape) != (expected_rows,):
            raise ValueError(
                f"intercept must have shape ({expected_rows},) for {len(self.classes)} "
                f"classes, got shape {tuple(self.intercept.shape)}"
            )

    @property
    def is_binary(self) -> bool:
        return len(self.classes) == 2

    @property
    def num_features(self) -> int:
        return self.coef.shape[1]

    def logits(self, features: ArrayLike) -> Tensor:
        """Compute the logits, shape (N,) for a binary model or (N, G) otherwise."""
        inputs = _features_tensor("features", features, device=self.coef.device)
        if inputs.shape[1] != self.num_features:
            raise ValueError(
                f"features have {inputs.shape[1]} columns, but the propensity model was "
                f"fitted on {self.num_features}"
            )
        logits = inputs.to(self.coef.dtype) @ self.coef.T + self.intercept
        if self.is_binary:
            return logits.squeeze(1)
        return logits

    def scores(self, features: ArrayLike, temperature: float = 1.0) -> Tensor:
        """Compute propensity scores with the logits divided by `temperature`.

        Returns P(s = classes[1] | x) with shape (N,) for a binary model, or the softmax over
        groups with shape (N, G). A temperature above 1 pulls scores towards the centre, so
        fewer samples fall outside the fixed caliper.
        """
        if not isinstance(temperature, (int, float)) or not temperature > 0:
            raise ValueError(f"temperature must be a positive number, got {temperature!r}")
        logits = self.logits(features) / temperature
        if self.is_binary:
            return torch.sigmoid(logits)
        return torch.softmax(logits, dim=1)

    def to_linear(self) -> nn.Linear:
        """Return an `nn.Linear` with these weights, for storing the model as module weights."""
        linear = nn.Linear(
            self.num_features, self.coef.shape[0], dtype=self.coef.dtype, device=self.coef.device
        )
        with torch.no_grad():
            linear.weight.copy_(self.coef)
            linear.bias.copy_(self.intercept)
        return linear

    @classmethod
    def from_linear(cls, linear: nn.Linear, classes: Sequence[int]) -> PropensityModel:
        """Build a propensity model from an `nn.Linear` with 1 output (binary) or G outputs."""
        coef = linear.weight.detach().clone()
        if linear.bias is None:
            intercept = torch.zeros(coef.shape[0], dtype=coef.dtype, device=coef.device)
        else:
            intercept = linear.bias.detach().clone()
        return cls(coef=coef, intercept=intercept, classes=tuple(classes))


def _balanced_sample_weights(groups: np.ndarray) -> np.ndarray:
    """Weight each sample by N / (G * n_g), so every group has total weight N / G."""
    _, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    return len(groups) / (len(counts) * counts[inverse])


def fit_propensity(
    features: ArrayLike,
    groups: ArrayLike,
    *,
    C: float = 1.0,
    balanced: bool = True,
    max_iter: int = 1000,
    tol: float | None = None,
) -> PropensityModel:
    """Fit a logistic regression of the group on the features.

    Two groups are fitted with liblinear and `tol=1e-12`, the settings of the RealPatch
    reference code. More groups are fitted as one multinomial model with lbfgs and
    scikit-learn's default `tol=1e-4`.

    Args:
        features: (N, D) features, usually L2-normalised.
        groups: (N,) integer group labels with at least two distinct values.
        C: inverse L2 regularisation strength.
        balanced: weight group g by N / (G * n_g), which for two groups is the
            w = N / (2 n_s) reweighting of RealPatch. With False, samples are unweighted.
        max_iter: maximum number of solver iterations.
        tol: stopping tolerance; None selects the per-solver default above.

    Returns:
        A `PropensityModel` with float32 weights on the CPU.

    Raises:
        ValueError: if the shapes disagree or fewer than two groups are present.
    """
    inputs = _features_tensor("features", features)
    labels = _labels_tensor("groups", groups, inputs.shape[0])
    if not isinstance(C, (int, float)) or not C > 0:
        raise ValueError(f"C must be a positive number, got {C!r}")
    if not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"max_iter must be a positive integer, got {max_iter!r}")

    x = inputs.cpu().double().numpy()
    y = labels.cpu().numpy()
    classes = np.unique(y)
    if len(classes) < 2:
        raise ValueError(
            f"groups contains the single value {classes.tolist()}; a propensity model needs "
            f"samples from at least two groups"
        )

    binary = len(classes) == 2
    if binary:
        # random_state fixes liblinear's coordinate order, so refits are identical.
        classifier = LogisticRegression(
            solver="liblinear",
            C=C,
            tol=1e-12 if tol is None else tol,
            max_iter=max_iter,
            random_state=0,
        )
    else:
        classifier = LogisticRegression(
            solver="lbfgs", C=C, tol=1e-4 if tol is None else tol, max_iter=max_iter
        )
    sample_weight = _balanced_sample_weights(y) if balanced else None
    classifier.fit(x, y, sample_weight=sample_weight)
    logger.debug(
        "fitted propensity model on %d samples, %d features, classes %s, %d iterations",
        x.shape[0],
        x.shape[1],
        classes.tolist(),
        int(np.max(classifier.n_iter_)),
    )

    return PropensityModel(
        coef=torch.as_tensor(classifier.coef_, dtype=torch.float32),
        intercept=torch.as_tensor(classifier.intercept_, dtype=torch.float32),
        classes=tuple(int(label) for label in classifier.classes_),
    )


# ---------------------------------------------------------------------------------------------
# Matching


@dataclass
class MatchResult:
    """Matched pairs from `caliper_match` or `match_bidirectional`.

    Attributes:
        anchor_index: (M,) indices of the matched queries.
        match_index: (M, k) indices of their matches among the keys, nearest first.
        num_queries: number of queries before any caliper.
        num_after_fixed_caliper: number of queries that passed the fixed caliper.
    """

    anchor_index: Tensor
    match_index: Tensor
    num_queries: int
    num_after_fixed_caliper: int

    @property
    def num_matched(self) -> int:
        return int(self.anchor_index.shape[0])

    @property
    def k(self) -> int:
        return int(self.match_index.shape[1])

    @property
    def match_rate(self) -> float:
        """Fraction of queries that were matched, 0.0 when there were no queries."""
        if self.num_queries == 0:
            return 0.0
        return self.num_matched / self.num_queries

    def to_dict(self) -> dict[str, Any]:
        """Return the indices and counts as plain lists and numbers, ready for `json.dumps`."""
        return {
            "anchor_index": self.anchor_index.tolist(),
            "match_index": self.match_index.tolist(),
            "num_queries": self.num_queries,
            "num_after_fixed_caliper": self.num_after_fixed_caliper,
            "num_matched": self.num_matched,
            "match_rate": self.match_rate,
        }


def _empty_result(k: int, num_queries: int, num_after_fixed_caliper: int, device) -> MatchResult:
    return MatchResult(
        anchor_index=torch.zeros(0, dtype=torch.long, device=device),
        match_index=torch.zeros(0, k, dtype=torch.long, device=device),
        num_queries=num_queries,
        num_after_fixed_caliper=num_after_fixed_caliper,
    )


def _fixed_caliper_mask(scores: Tensor, fixed_caliper: float | None) -> Tensor:
    """Return a boolean mask of the samples that pass the fixed caliper."""
    if fixed_caliper is None or fixed_caliper >= 1:
        return torch.ones(scores.shape[0], dtype=torch.bool, device=scores.device)
    if scores.ndim == 1:
        return (scores > 1 - fixed_caliper) & (scores < fixed_caliper)
    return scores.max(dim=1).values < fixed_caliper


def _population_variance(values: Tensor) -> Tensor:
    if values.numel() == 0:
        return values.new_zeros(())
    return (values - values.mean()).square().mean()


def _within_group_std(scores: Tensor, groups: Tensor, num_groups: int) -> Tensor:
    """Compute, per score coordinate, sqrt of the within-group variance averaged over groups.

    Args:
        scores: (N, G) propensity scores.
        groups: (N,) group labels in [0, G).

    Returns:
        (G,) standard deviations, one per propensity coordinate. Groups without samples are
        left out of the average.
    """
    counts = torch.zeros(num_groups, dtype=scores.dtype, device=scores.device)
    counts.index_add_(0, groups, torch.ones_like(groups, dtype=scores.dtype))
    sums = torch.zeros(num_groups, scores.shape[1], dtype=scores.dtype, device=scores.device)
    sums.index_add_(0, groups, scores)
    # (group, coordinate) means, then the mean squared deviation of each sample from its group.
    means = sums / counts.clamp_min(1).unsqueeze(1)
    squared_deviations = (scores - means[groups]).square()
    variances = torch.zeros_like(sums).index_add_(0, groups, squared_deviations)
    variances = variances / counts.clamp_min(1).unsqueeze(1)
    return variances[counts > 0].mean(dim=0).sqrt()


@dataclass
class _Candidates:
    """Keys that can be matched, in a random order that breaks distance ties."""

    index: Tensor  # (K,) positions in the caller's key set
    features: Tensor  # (K, D)
    scores: Tensor  # (K,) or (K, G)
    groups: Tensor  # (K,)
    strata: Tensor | None  # (K,)


def _select_candidates(
    key_mask: Tensor,
    key_features: Tensor,
    key_scores: Tensor,
    key_groups: Tensor,
    key_strata: Tensor | None,
    anchor_groups: Tensor,
    generator: torch.Generator | None,
) -> _Candidates:
    # A key whose group equals that of every anchor can never be a match, so it is dropped
    # here and the blocks only compare the remaining keys.
    anchor_group_values = torch.unique(anchor_groups)
    if anchor_group_values.numel() == 1:
        key_mask = key_mask & (key_groups != anchor_group_values[0])
    index = key_mask.nonzero().squeeze(1)

    # torch.min returns the index of the first minimum (as its documentation states), so
    # shuffling the keys makes every tied key equally likely to be chosen when k = 1.
    permutation_device = generator.device if generator is not None else torch.device("cpu")
    permutation = torch.randperm(index.shape[0], generator=generator, device=permutation_device)
    index = index[permutation.to(index.device)]

    return _Candidates(
        index=index,
        features=key_features[index],
        scores=key_scores[index],
        groups=key_groups[index],
        strata=None if key_strata is None else key_strata[index],
    )


def _std_caliper_thresholds(
    std_caliper: float | None,
    anchor_scores: Tensor,
    anchor_groups: Tensor,
    candidates: _Candidates,
    num_groups: int,
) -> Tensor | None:
    """Return the maximum allowed propensity gap: a scalar (binary) or one per candidate."""
    if not _std_caliper_enabled(std_caliper):
        return None
    if anchor_scores.ndim == 1:
        pooled_variance = (
            _population_variance(anchor_scores) + _population_variance(candidates.scores)
        ) / 2
        sigma = pooled_variance.sqrt()
        logger.debug("std caliper: pooled propensity std %.6g", sigma.item())
        return std_caliper * sigma

    sigma = _within_group_std(
        torch.cat([anchor_scores, candidates.scores]),
        torch.cat([anchor_groups, candidates.groups]),
        num_groups,
    )
    logger.debug("std caliper: within-group propensity std per group %s", sigma.tolist())
    # Each pair is compared on the candidate's own group coordinate, so the threshold is
    # indexed by the candidate's group.
    return std_caliper * sigma[candidates.groups]


def _match_blocks(
    anchor_index: Tensor,
    anchor_features: Tensor,
    anchor_scores: Tensor,
    anchor_groups: Tensor,
    anchor_strata: Tensor | None,
    anchor_self_key: Tensor | None,
    candidates: _Candidates,
    thresholds: Tensor | None,
    k: int,
    block_size: int,
) -> tuple[Tensor, Tensor]:
    """Find the k nearest allowed candidates of each anchor, one block of anchors at a time.

    Returns the matched anchors' indices (M,) and their matches' key indices (M, k).
    """
    num_candidates = candidates.index.shape[0]
    check_groups = torch.unique(anchor_groups).numel() > 1
    candidate_own_scores = None
    if anchor_scores.ndim == 2:
        # e_{s_c}(c): each candidate's propensity for its own group.
        own_column = candidates.groups.unsqueeze(1)
        candidate_own_scores = candidates.scores.gather(1, own_column).squeeze(1)

    position_in_candidates = None
    if anchor_self_key is not None:
        # Maps a key index to its column in the shuffled candidate matrix, -1 if not a candidate.
        num_keys = int(max(candidates.index.max().item(), anchor_self_key.max().item())) + 1
        position_in_candidates = torch.full(
            (num_keys,), -1, dtype=torch.long, device=candidates.index.device
        )
        position_in_candidates[candidates.index] = torch.arange(
            num_candidates, device=candidates.index.device
        )

    # ||a - c||^2 - ||a||^2 = ||c||^2 - 2 a.c ranks each anchor's candidates in the order of
    # their Euclidean distances, up to float rounding, and costs one addmm per block.
    candidate_squared_norms = candidates.features.square().sum(dim=1)
    candidate_features_t = candidates.features.T

    matched_anchors = []
    matched_keys = []
    for start in range(0, anchor_index.shape[0], block_size):
        stop = min(start + block_size, anchor_index.shape[0])
        distances = torch.addmm(
            candidate_squared_norms, anchor_features[start:stop], candidate_features_t, alpha=-2
        )  # (B, K) shifted squared distances

        if check_groups:
            same_group = anchor_groups[start:stop, None] == candidates.groups[None, :]
            distances.masked_fill_(same_group, math.inf)
            del same_group
        if anchor_strata is not None:
            other_stratum = anchor_strata[start:stop, None] != candidates.strata[None, :]
            distances.masked_fill_(other_stratum, math.inf)
            del other_stratum
        if thresholds is not None:
            if candidate_own_scores is None:
                # Comparing against the interval e(a) +- threshold needs only boolean (B, K)
                # temporaries, not a float matrix of gaps.
                block_scores = anchor_scores[start:stop, None]
                outside = candidates.scores[None, :] < block_scores - thresholds
                outside |= candidates.scores[None, :] > block_scores + thresholds
            else:
                gaps = anchor_scores[start:stop][:, candidates.groups] - candidate_own_scores
                outside = gaps.abs_() > thresholds
                del gaps
            distances.masked_fill_(outside, math.inf)
            del outside
        if position_in_candidates is not None:
            self_key = anchor_self_key[start:stop]
            rows = (self_key >= 0).nonzero().squeeze(1)
            columns = position_in_candidates[self_key[rows]]
            keep = columns >= 0
            distances[rows[keep], columns[keep]] = math.inf

        if k == 1:
            nearest_distances, nearest = distances.min(dim=1, keepdim=True)
        else:
            nearest_distances, nearest = distances.topk(k, dim=1, largest=False, sorted=True)
        is_matched = torch.isfinite(nearest_distances).all(dim=1)
        matched_anchors.append(anchor_index[start:stop][is_matched])
        matched_keys.append(candidates.index[nearest[is_matched]])

    return torch.cat(matched_anchors), torch.cat(matched_keys)


@torch.no_grad()
def caliper_match(
    query_features: ArrayLike,
    query_scores: ArrayLike,
    query_groups: ArrayLike,
    key_features: ArrayLike,
    key_scores: ArrayLike,
    key_groups: ArrayLike,
    *,
    fixed_caliper: float | None = 0.9,
    std_caliper: float | None = 0.2,
    k: int = 1,
    query_strata: ArrayLike | None = None,
    key_strata: ArrayLike | None = None,
    two_way_caliper: bool = False,
    exclude_self: bool = False,
    query_key_index: ArrayLike | None = None,
    block_size: int = 4096,
    generator: torch.Generator | None = None,
) -> MatchResult:
    """Match each query to its k nearest keys of another group under propensity calipers.

    Binary scores of shape (N,) give P(s=1|x). Multi-group scores of shape (N, G) give
    P(s=g|x) per column, and the group labels must then be integers in [0, G). The module
    docstring states both modes' calipers. In binary mode the pooled std of the std caliper
    is computed once over all anchors and all candidates. RealPatch computes it per
    direction, which this function does when the queries come from one group, and which
    `match_bidirectional` does for both directions.

    Args:
        query_features: (N_q, D) query features, usually L2-normalised (`l2_normalize`).
        query_scores: (N_q,) or (N_q, G) propensity scores of the queries.
        query_groups: (N_q,) integer group labels of the queries.
        key_features: (N_k, D) key features.
        key_scores: propensity scores of the keys, same mode as `query_scores`.
        key_groups: (N_k,) integer group labels of the keys.
        fixed_caliper: c_max of the fixed caliper. A value >= 1 or None disables it.
        std_caliper: alpha of the std caliper, in pooled standard deviations. None or
            `math.inf` disables it.
        k: number of neighbours per anchor. An anchor with fewer than k allowed keys is
            dropped.
        query_strata: (N_q,) integer strata, for example class labels. When given with
            `key_strata`, a query only matches keys of its own stratum.
        key_strata: (N_k,) integer strata of the keys.
        two_way_caliper: also apply the fixed caliper to the keys (Okapi). By default only
            queries are filtered (RealPatch).
        exclude_self: forbid matching a query to its own sample among the keys. Without
            `query_key_index`, queries and keys must be the same set in the same order.
            A sample matched against itself has the same group, which the group rule already
            forbids, so this matters only where one sample carries different group labels
            in the two sets.
        query_key_index: (N_q,) key index of each query's own sample, -1 where the query is
            not among the keys. Only used with `exclude_self=True`.
        block_size: number of queries compared against all keys at a time. Peak memory
            grows as block_size x N_k.
        generator: random number generator for breaking distance ties. None uses torch's
            global generator, and a seeded generator makes the result reproducible.

    Returns:
        A `MatchResult` whose `anchor_index` indexes the queries and `match_index` the keys.

    Raises:
        ValueError: on mismatched lengths or feature dimensions, scores of the wrong shape or
            outside [0, 1], fewer than two groups, k < 1, or calipers out of range.
    """
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive integer number of neighbours, got {k!r}")
    if not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"block_size must be a positive integer, got {block_size!r}")

    queries = _features_tensor("query_features", query_features)
    device = queries.device
    keys = _features_tensor("key_features", key_features, device=device)
    num_queries, num_keys = queries.shape[0], keys.shape[0]
    if queries.shape[1] != keys.shape[1]:
        raise ValueError(
            f"query_features have {queries.shape[1]} columns but key_features have "
            f"{keys.shape[1]}; both must come from the same feature extractor"
        )
    dtype = torch.promote_types(queries.dtype, keys.dtype)
    queries, keys = queries.to(dtype), keys.to(dtype)

    q_scores = _scores_tensor("query_scores", query_scores, num_queries, device=device)
    k_scores = _scores_tensor("key_scores", key_scores, num_keys, device=device)
    if q_scores.ndim != k_scores.ndim or q_scores.shape[1:] != k_scores.shape[1:]:
        raise ValueError(
            f"query_scores have shape {tuple(q_scores.shape)} and key_scores "
            f"{tuple(k_scores.shape)}; both must be binary (N,) or have the same G columns"
        )
    q_groups = _labels_tensor("query_groups", query_groups, num_queries, device=device)
    k_groups = _labels_tensor("key_groups", key_groups, num_keys, device=device)

    group_values = torch.unique(torch.cat([q_groups, k_groups]))
    if group_values.numel() < 2:
        raise ValueError(
            f"query_groups and key_groups contain only the group {group_values.tolist()}; only "
            f"keys of another group are candidates, so pass samples from at least two groups"
        )
    binary = q_scores.ndim == 1
    if binary:
        num_groups = 2
        if group_values.numel() > 2:
            raise ValueError(
                f"binary scores of shape (N,) need two groups, got groups "
                f"{group_values.tolist()}; pass scores of shape (N, G) for more groups"
            )
    else:
        num_groups = q_scores.shape[1]
        if group_values.min() < 0 or group_values.max() >= num_groups:
            raise ValueError(
                f"multi-group scores have {num_groups} columns, so groups must be integers in "
                f"[0, {num_groups}), got groups {group_values.tolist()}"
            )
    _check_fixed_caliper(fixed_caliper, num_groups)
    _check_std_caliper(std_caliper)

    if (query_strata is None) != (key_strata is None):
        raise ValueError(
            "query_strata and key_strata must be given together; pass both to match within "
            "strata, or neither"
        )
    q_strata = k_strata = None
    if query_strata is not None:
        q_strata = _labels_tensor("query_strata", query_strata, num_queries, device=device)
        k_strata = _labels_tensor("key_strata", key_strata, num_keys, device=device)

    self_key = None
    if exclude_self:
        if query_key_index is None:
            if num_queries != num_keys:
                raise ValueError(
                    f"exclude_self=True without query_key_index needs queries and keys to be "
                    f"the same set, got {num_queries} queries and {num_keys} keys; pass "
                    f"query_key_index"
                )
            self_key = torch.arange(num_queries, device=device)
        else:
            self_key = _labels_tensor("query_key_index", query_key_index, num_queries, device)
            if self_key.numel() and (self_key.min() < -1 or self_key.max() >= num_keys):
                raise ValueError(
                    f"query_key_index must contain key indices in [0, {num_keys}) or -1, got "
                    f"values in [{self_key.min().item()}, {self_key.max().item()}]"
                )
    elif query_key_index is not None:
        raise ValueError(
            "query_key_index is only used with exclude_self=True; set exclude_self=True or "
            "drop query_key_index"
        )

    anchor_mask = _fixed_caliper_mask(q_scores, fixed_caliper)
    anchor_index = anchor_mask.nonzero().squeeze(1)
    num_after_fixed_caliper = int(anchor_index.shape[0])
    if num_after_fixed_caliper == 0 or num_keys < k:
        logger.debug(
            "no anchors to match: %d of %d queries passed the fixed caliper, %d keys, k=%d",
            num_after_fixed_caliper,
            num_queries,
            num_keys,
            k,
        )
        return _empty_result(k, num_queries, num_after_fixed_caliper, device)

    if two_way_caliper:
        key_mask = _fixed_caliper_mask(k_scores, fixed_caliper)
    else:
        key_mask = torch.ones(num_keys, dtype=torch.bool, device=device)
    candidates = _select_candidates(
        key_mask, keys, k_scores, k_groups, k_strata, q_groups[anchor_index], generator
    )
    if candidates.index.shape[0] < k:
        return _empty_result(k, num_queries, num_after_fixed_caliper, device)

    thresholds = _std_caliper_thresholds(
        std_caliper,
        q_scores[anchor_index],
        q_groups[anchor_index],
        candidates,
        num_groups,
    )
    anchors, matches = _match_blocks(
        anchor_index,
        queries[anchor_index],
        q_scores[anchor_index],
        q_groups[anchor_index],
        None if q_strata is None else q_strata[anchor_index],
        None if self_key is None else self_key[anchor_index],
        candidates,
        thresholds,
        k,
        block_size,
    )
    logger.debug(
        "matched %d of %d queries (%d after the fixed caliper) against %d candidate keys",
        anchors.shape[0],
        num_queries,
        num_after_fixed_caliper,
        candidates.index.shape[0],
    )
    return MatchResult(
        anchor_index=anchors,
        match_index=matches,
        num_queries=num_queries,
        num_after_fixed_caliper=num_after_fixed_caliper,
    )


_BIDIRECTIONAL_RESERVED = ("query_strata", "key_strata", "exclude_self", "query_key_index")


def _binary_group_values(groups: Tensor, treated_group: int | None = None) -> tuple[int, int]:
    """Return (treated, control) group values; treated defaults to the larger label."""
    values = torch.unique(groups).tolist()
    if len(values) != 2:
        raise ValueError(
            f"groups must contain exactly two values (treated and control), got {values}"
        )
    if treated_group is None:
        return values[1], values[0]
    if treated_group not in values:
        raise ValueError(f"treated_group={treated_group} is not one of the groups {values}")
    control_group = values[0] if values[1] == treated_group else values[1]
    return treated_group, control_group


def match_bidirectional(
    features: ArrayLike,
    scores: ArrayLike,
    groups: ArrayLike,
    *,
    strata: ArrayLike | None = None,
    **kwargs: Any,
) -> MatchResult:
    """Match treated to control and control to treated within one set, and return the union.

    Each direction is one `caliper_match` call with the anchors of one group as queries and
    the other group as keys, so the std caliper pools the variances per direction as
    RealPatch does. Treated is the larger of the two group labels, and its direction comes
    first in the result. Indices in the result address rows of `features`.

    Args:
        features: (N, D) features.
        scores: (N,) binary propensity scores P(s=1|x).
        groups: (N,) labels with exactly two values.
        strata: (N,) optional strata, for example class labels; matches stay within a stratum.
        **kwargs: keyword arguments of `caliper_match` (fixed_caliper, std_caliper, k,
            two_way_caliper, block_size, generator).

    Returns:
        A `MatchResult` whose `num_queries` is N and whose anchors come from both groups.
    """
    reserved = sorted(set(kwargs) & set(_BIDIRECTIONAL_RESERVED))
    if reserved:
        raise TypeError(
            f"match_bidirectional sets {reserved} itself; pass strata=... to match within strata"
        )
    inputs = _features_tensor("features", features)
    device = inputs.device
    probabilities = _scores_tensor("scores", scores, inputs.shape[0], device=device)
    if probabilities.ndim != 1:
        raise ValueError(
            f"match_bidirectional needs binary scores of shape ({inputs.shape[0]},), got shape "
            f"{tuple(probabilities.shape)}; use caliper_match for multi-group scores"
        )
    labels = _labels_tensor("groups", groups, inputs.shape[0], device=device)
    strata_labels = None
    if strata is not None:
        strata_labels = _labels_tensor("strata", strata, inputs.shape[0], device=device)
    treated, control = _binary_group_values(labels)

    anchors, matches = [], []
    num_after_fixed_caliper = 0
    for anchor_group, candidate_group in ((treated, control), (control, treated)):
        anchor_rows = (labels == anchor_group).nonzero().squeeze(1)
        candidate_rows = (labels == candidate_group).nonzero().squeeze(1)
        result = caliper_match(
            inputs[anchor_rows],
            probabilities[anchor_rows],
            labels[anchor_rows],
            inputs[candidate_rows],
            probabilities[candidate_rows],
            labels[candidate_rows],
            query_strata=None if strata_labels is None else strata_labels[anchor_rows],
            key_strata=None if strata_labels is None else strata_labels[candidate_rows],
            **kwargs,
        )
        anchors.append(anchor_rows[result.anchor_index])
        matches.append(candidate_rows[result.match_index])
        num_after_fixed_caliper += result.num_after_fixed_caliper

    return MatchResult(
        anchor_index=torch.cat(anchors),
        match_index=torch.cat(matches),
        num_queries=int(inputs.shape[0]),
        num_after_fixed_caliper=num_after_fixed_caliper,
    )


# ---------------------------------------------------------------------------------------------
# Balance diagnostics


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
