"""Caliper nearest-neighbour matching of queries to keys on propensity scores.

The matcher takes features and the propensity scores of `zoo.matching.propensity` through
three steps:

1. The fixed caliper removes outliers. In binary mode it keeps anchors with
   1 - c_max < e < c_max. In multi-group mode it drops samples with max_g e_g >= c_max.
   The two-way caliper (Okapi) applies the same filter to the candidate keys, and RealPatch
   filters anchors only.
2. The std caliper allows a pair (a, c) only if the propensity gap is at most alpha * sigma.
   Binary mode uses |e(a) - e(c)| and the pooled standard deviation
   sigma = sqrt((Var_anchors(e) + Var_candidates(e)) / 2). Multi-group mode uses the key's
   group coordinate, |e_{s_c}(a) - e_{s_c}(c)|, and sigma is the square root of the
   within-group variance of that coordinate averaged over groups.
3. Among the allowed keys of another group (and of the same stratum, if strata are given),
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
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from zoo.matching._validation import (
    ArrayLike,
    _binary_group_values,
    _features_tensor,
    _labels_tensor,
    _scores_tensor,
)

__all__ = ["MatchResult", "caliper_match", "match_bidirectional"]

logger = logging.getLogger(__name__)


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
