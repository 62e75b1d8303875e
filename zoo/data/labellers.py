"""Labellers that assign group ids to deployment samples for balanced deployment bags.

Support matching (Kehrenberg et al., "Addressing Missing Sources with Adversarial
Support-Matching", arXiv 2203.13154) stratifies deployment bags by group ids, and
`zoo.data.bags.BalancedBagSampler` consumes those ids. Three labellers produce them:

- `oracle_labels` passes the true group ids through. It is an upper bound for experiments,
  because true deployment groups are unknown in practice.
- `kmeans_labels` clusters encoder features. The number of clusters is either fixed by the
  caller or chosen by the silhouette score, so the true number of groups is never needed.
- `no_labels` puts every sample into one group, which turns balancing off.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from numbers import Integral

import numpy as np
from sklearn.cluster import KMeans
from sklearn.metrics import silhouette_score

__all__ = ["KMeansLabelling", "kmeans_labels", "no_labels", "oracle_labels"]

# The silhouette score needs all pairwise distances, so its cost grows with the square of the
# number of points. It is computed on a seeded subsample of at most this many points.
MAX_SILHOUETTE_SAMPLES = 2_000


@dataclass(frozen=True)
class KMeansLabelling:
    """Result of `kmeans_labels`.

    Attributes:
        labels: int64 cluster id in ``[0, num_clusters)`` for every sample.
        num_clusters: number of clusters k that k-means was fitted with.
        scores: silhouette score for every candidate k, in ascending order of k. It is empty
            when the caller fixed `num_clusters`. A score is NaN when the silhouette is
            undefined for that k, which happens when k-means finds fewer than two distinct
            clusters in the silhouette subsample.
        criterion: ``"silhouette"`` when k was chosen from the candidates, or ``"fixed"`` when
            the caller passed `num_clusters`.
    """

    labels: np.ndarray
    num_clusters: int
    scores: dict[int, float] = field(default_factory=dict)
    criterion: str = "fixed"


def _is_integer(value) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


def oracle_labels(true_groups) -> np.ndarray:
    """Return the true group ids as a 1-D int64 array, a copy of `true_groups`.

    Raises ValueError when `true_groups` is not a non-empty 1-D array of non-negative integers.
    """
    groups = np.asarray(true_groups)
    if groups.ndim != 1:
        raise ValueError(f"true_groups must be a 1-D array of group ids, got shape {groups.shape}")
    if groups.size == 0:
        raise ValueError("true_groups is empty. Pass one group id per deployment sample")
    if not np.issubdtype(groups.dtype, np.integer):
        raise ValueError(f"true_groups must contain integer ids, got dtype {groups.dtype}")
    if groups.min() < 0:
        raise ValueError(f"group ids must be non-negative, got {int(groups.min())}")
    return groups.astype(np.int64, copy=True)


def no_labels(n: int) -> np.ndarray:
    """Return `n` zeros as int64 group ids, so a balanced bag draws from the whole set.

    Raises ValueError when `n` is not an integer of at least 1.
    """
    if not _is_integer(n) or n < 1:
        raise ValueError(f"n must be an integer of at least 1, got {n!r}")
    return np.zeros(int(n), dtype=np.int64)


def _as_feature_matrix(features) -> np.ndarray:
    """Convert `features` to a finite float64 matrix with one row per sample."""
    if hasattr(features, "detach"):
        # torch tensors may carry gradients or live on an accelerator, and numpy needs neither.
        features = features.detach().cpu().numpy()
    array = np.asarray(features)
    if array.ndim != 2:
        raise ValueError(
            f"features must be a 2-D array of shape (n_samples, n_features), got shape "
            f"{array.shape}. Flatten per-sample features first"
        )
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise ValueError(f"features must be real numbers, got dtype {array.dtype}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(
            f"features must contain at least one sample and one feature, got shape {array.shape}"
        )
    array = array.astype(np.float64)
    if not np.isfinite(array).all():
        bad_rows = np.flatnonzero(~np.isfinite(array).all(axis=1))
        raise ValueError(
            f"features contain NaN or infinite values in {bad_rows.size} of {array.shape[0]} "
            f"rows, first row {int(bad_rows[0])}. Remove or impute those samples first"
        )
    return array


def _normalise_rows(features: np.ndarray) -> np.ndarray:
    """Scale every row to unit L2 norm."""
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    zero_rows = np.flatnonzero(norms[:, 0] == 0)
    if zero_rows.size:
        raise ValueError(
            f"{zero_rows.size} of {features.shape[0]} feature rows are all zeros, first row "
            f"{int(zero_rows[0])}, and have no direction for spherical k-means. Remove them or "
            "pass spherical=False"
        )
    return features / norms


def _validate_candidates(candidate_clusters, num_samples: int) -> list[int]:
    """Return the candidate cluster counts sorted ascending, after checking each one."""
    try:
        candidates = list(candidate_clusters)
    except TypeError:
        raise ValueError(
            f"candidate_clusters must be an iterable of integers, got {candidate_clusters!r}"
        ) from None
    if not candidates:
        raise ValueError("candidate_clusters is empty. Pass at least one k, such as range(2, 9)")
    invalid = [k for k in candidates if not _is_integer(k) or k < 2]
    if invalid:
        raise ValueError(
            f"candidate_clusters must contain integers of at least 2, got {invalid}. "
            "The silhouette score is undefined for a single cluster"
        )
    if len(set(candidates)) != len(candidates):
        raise ValueError(f"candidate_clusters contains duplicates: {candidates}")

    # The silhouette score needs at least one cluster with two or more points, so k may be at
    # most the number of scored points minus one.
    max_k = min(num_samples, MAX_SILHOUETTE_SAMPLES) - 1
    too_large = sorted(k for k in candidates if k > max_k)
    if too_large:
        raise ValueError(
            f"too few samples for candidate_clusters {too_large}: {num_samples} samples allow "
            f"at most k={max_k} for the silhouette score. Pass smaller candidates or more samples"
        )
    return sorted(int(k) for k in candidates)


def _fit_kmeans(features: np.ndarray, num_clusters: int, seed: int) -> np.ndarray:
    model = KMeans(n_clusters=num_clusters, n_init=10, random_state=seed)
    return model.fit_predict(features).astype(np.int64)


def _silhouette(features: np.ndarray, labels: np.ndarray) -> float:
    """Return the silhouette score, or NaN when it is undefined for these labels."""
    num_labels = np.unique(labels).size
    if num_labels < 2 or num_labels > len(labels) - 1:
        return float("nan")
    return float(silhouette_score(features, labels, metric="euclidean"))


def kmeans_labels(
    features,
    *,
    num_clusters: int | None = None,
    candidate_clusters: Iterable[int] = range(2, 9),
    spherical: bool = True,
    seed: int = 0,
) -> KMeansLabelling:
    """Cluster encoder features with k-means and return the cluster ids as group ids.

    `features` has shape (n_samples, n_features) and may be a numpy array or a torch tensor.
    With `spherical=True`, every row is scaled to unit L2 norm before clustering, so clusters
    depend on feature directions only. Euclidean distance between unit vectors is a monotone
    function of cosine distance.

    NOTE: this is k-means on normalised rows with Euclidean centroids, which approximates
    spherical k-means, because the centroids are not renormalised during fitting.

    With `num_clusters` set, k-means is fitted with that k and `scores` is empty. With
    `num_clusters=None`, k-means is fitted once per k in `candidate_clusters`, and the k with
    the highest mean silhouette coefficient wins, with ties going to the smaller k. The
    silhouette is computed with Euclidean distance on the features that k-means saw, which are
    normalised when `spherical` is set. It uses one seeded subsample of at most
    `MAX_SILHOUETTE_SAMPLES` points, shared by all candidates so their scores are comparable.
    The choice never uses true group labels, because those are unknown on a deployment set.

    Every k-means fit uses scikit-learn ``KMeans(n_init=10, random_state=seed)``, so equal
    inputs and `seed` give equal results.

    NOTE: when the features contain fewer distinct points than k, k-means leaves some cluster
    ids unused. `BalancedBagSampler` draws only from ids that occur, so this is harmless there.

    Raises ValueError when `features` is not a finite, real 2-D array, or when a row is all
    zeros with `spherical=True`. It also raises when there are fewer samples than
    `num_clusters`, or no more samples than the largest candidate k. Invalid arguments raise
    too: an empty `candidate_clusters`, a duplicate or a k below 2 in it, or a `seed` that is
    not a non-negative integer. Finally, it raises when no candidate gets a defined silhouette
    score.
    """
    if not _is_integer(seed) or seed < 0:
        # numpy generators and scikit-learn random_state both require a non-negative seed.
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    matrix = _as_feature_matrix(features)
    if spherical:
        matrix = _normalise_rows(matrix)
    num_samples = matrix.shape[0]

    if num_clusters is not None:
        if not _is_integer(num_clusters) or num_clusters < 1:
            raise ValueError(
                f"num_clusters must be None or an integer of at least 1, got {num_clusters!r}"
            )
        if num_clusters > num_samples:
            raise ValueError(
                f"too few samples for num_clusters={num_clusters}: got {num_samples} samples. "
                "Pass a smaller num_clusters or more samples"
            )
        labels = _fit_kmeans(matrix, int(num_clusters), int(seed))
        return KMeansLabelling(labels=labels, num_clusters=int(num_clusters), criterion="fixed")

    candidates = _validate_candidates(candidate_clusters, num_samples)

    rng = np.random.default_rng(seed)
    if num_samples > MAX_SILHOUETTE_SAMPLES:
        subsample = np.sort(rng.choice(num_samples, size=MAX_SILHOUETTE_SAMPLES, replace=False))
    else:
        subsample = np.arange(num_samples)

    scores: dict[int, float] = {}
    labels_per_k: dict[int, np.ndarray] = {}
    for k in candidates:
        labels = _fit_kmeans(matrix, k, int(seed))
        labels_per_k[k] = labels
        scores[k] = _silhouette(matrix[subsample], labels[subsample])

    defined = [k for k in candidates if not np.isnan(scores[k])]
    if not defined:
        raise ValueError(
            f"the silhouette score is undefined for every candidate k in {candidates}, because "
            "k-means found fewer than two distinct clusters. The features may contain too few "
            "distinct points. Pass num_clusters instead"
        )
    # max returns the first maximum, and candidates are ascending, so ties go to the smaller k.
    best = max(defined, key=lambda k: scores[k])
    return KMeansLabelling(
        labels=labels_per_k[best], num_clusters=best, scores=scores, criterion="silhouette"
    )
