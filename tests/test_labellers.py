"""Tests for deployment-set labellers in `zoo.data.labellers`."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score

from zoo.data.bags import BalancedBagSampler
from zoo.data.labellers import (
    MAX_SILHOUETTE_SAMPLES,
    KMeansLabelling,
    kmeans_labels,
    no_labels,
    oracle_labels,
)

NUM_BLOBS = 4
NUM_FEATURES = 8


def gaussian_blobs(points_per_blob: int = 100, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Return features and blob ids for 4 tight Gaussian blobs along different axes.

    Each centre lies on its own coordinate axis at distance 10 from the origin and the noise
    has standard deviation 0.5, so the blobs differ in direction as well as position and stay
    separated after L2 normalisation.
    """
    rng = np.random.default_rng(seed)
    centres = 10.0 * np.eye(NUM_FEATURES)[:NUM_BLOBS]
    blob_ids = np.repeat(np.arange(NUM_BLOBS), points_per_blob)
    features = centres[blob_ids] + rng.normal(scale=0.5, size=(len(blob_ids), NUM_FEATURES))
    return features, blob_ids


def test_oracle_labels_copy_true_groups():
    true_groups = np.array([3, 0, 1, 3], dtype=np.int32)

    labels = oracle_labels(true_groups)

    assert labels.dtype == np.int64
    np.testing.assert_array_equal(labels, [3, 0, 1, 3])
    labels[0] = 7
    assert true_groups[0] == 3


def test_oracle_labels_accept_tensor():
    labels = oracle_labels(torch.tensor([1, 0, 2]))

    np.testing.assert_array_equal(labels, [1, 0, 2])


@pytest.mark.parametrize(
    ("true_groups", "message"),
    [
        (np.array([[0, 1], [1, 0]]), "1-D"),
        (np.array([], dtype=np.int64), "empty"),
        (np.array([0.0, 1.0]), "integer"),
        (np.array([True, False]), "integer"),
        (np.array([0, -1, 2]), "non-negative"),
    ],
)
def test_oracle_labels_invalid_input(true_groups, message):
    with pytest.raises(ValueError, match=message):
        oracle_labels(true_groups)


def test_no_labels_all_zero():
    labels = no_labels(5)

    assert labels.dtype == np.int64
    np.testing.assert_array_equal(labels, np.zeros(5))


@pytest.mark.parametrize("n", [0, -3, 2.0, True, "4"])
def test_no_labels_invalid_count(n):
    with pytest.raises(ValueError, match="n must be an integer"):
        no_labels(n)


def test_kmeans_chooses_four_blobs():
    features, blob_ids = gaussian_blobs()

    result = kmeans_labels(features)

    assert isinstance(result, KMeansLabelling)
    assert result.criterion == "silhouette"
    assert result.num_clusters == NUM_BLOBS
    assert list(result.scores) == list(range(2, 9))
    assert max(result.scores, key=result.scores.get) == NUM_BLOBS
    assert result.labels.shape == blob_ids.shape
    assert result.labels.dtype == np.int64
    assert adjusted_rand_score(blob_ids, result.labels) > 0.95


def test_kmeans_chooses_four_blobs_without_normalisation():
    features, blob_ids = gaussian_blobs()

    result = kmeans_labels(features, spherical=False)

    assert result.num_clusters == NUM_BLOBS
    assert adjusted_rand_score(blob_ids, result.labels) > 0.95


def test_kmeans_silhouette_on_subsample():
    points_per_blob = MAX_SILHOUETTE_SAMPLES // NUM_BLOBS + 100
    features, blob_ids = gaussian_blobs(points_per_blob)
    assert len(features) > MAX_SILHOUETTE_SAMPLES

    first = kmeans_labels(features, candidate_clusters=[3, 4, 5])
    second = kmeans_labels(features, candidate_clusters=[3, 4, 5])

    assert first.num_clusters == NUM_BLOBS
    assert adjusted_rand_score(blob_ids, first.labels) > 0.95
    assert first.scores == second.scores


def test_kmeans_candidates_sorted_in_scores():
    features, _ = gaussian_blobs()

    result = kmeans_labels(features, candidate_clusters=[6, 4, 2])

    assert list(result.scores) == [2, 4, 6]
    assert result.num_clusters == NUM_BLOBS


def test_kmeans_fixed_num_clusters():
    features, _ = gaussian_blobs()

    for num_clusters in (1, 3, 6):
        result = kmeans_labels(features, num_clusters=num_clusters)

        assert result.criterion == "fixed"
        assert result.num_clusters == num_clusters
        assert result.scores == {}
        assert set(result.labels.tolist()) == set(range(num_clusters))


def test_kmeans_deterministic_with_seed():
    features, _ = gaussian_blobs()

    first = kmeans_labels(features, seed=3)
    second = kmeans_labels(features, seed=3)

    np.testing.assert_array_equal(first.labels, second.labels)
    assert first.scores == second.scores
    assert first.num_clusters == second.num_clusters


def test_kmeans_spherical_ignores_row_scale():
    features, blob_ids = gaussian_blobs()
    # Scales spanning two orders of magnitude move points far along their own direction.
    row_scales = np.random.default_rng(1).uniform(0.1, 10.0, size=(len(features), 1))
    scaled = features * row_scales

    reference = kmeans_labels(features, num_clusters=NUM_BLOBS)
    spherical = kmeans_labels(scaled, num_clusters=NUM_BLOBS)
    euclidean = kmeans_labels(scaled, num_clusters=NUM_BLOBS, spherical=False)

    assert adjusted_rand_score(reference.labels, spherical.labels) == 1.0
    assert adjusted_rand_score(blob_ids, euclidean.labels) < 0.9


def test_kmeans_accepts_tensor():
    features, blob_ids = gaussian_blobs()
    tensor = torch.tensor(features, dtype=torch.float32, requires_grad=True)

    result = kmeans_labels(tensor, num_clusters=NUM_BLOBS)

    assert adjusted_rand_score(blob_ids, result.labels) > 0.95


def test_kmeans_duplicate_points_leave_ids_unused():
    features = np.repeat(np.array([[1.0, 0.0], [0.0, 1.0]]), 5, axis=0)

    with pytest.warns(Warning, match="distinct clusters"):
        result = kmeans_labels(features, num_clusters=3)

    assert result.num_clusters == 3
    assert np.unique(result.labels).size == 2


def test_labels_feed_balanced_bag_sampler():
    features, _ = gaussian_blobs()
    samples_per_group = 3
    labellings = {
        "oracle": oracle_labels(gaussian_blobs()[1]),
        "kmeans": kmeans_labels(features).labels,
        "none": no_labels(len(features)),
    }

    for name, labels in labellings.items():
        sampler = BalancedBagSampler(
            labels, samples_per_group=samples_per_group, num_batches=2, generator=0
        )
        num_groups = np.unique(labels).size

        assert sampler.bag_size == samples_per_group * num_groups, name
        for batch in sampler:
            counts = Counter(labels[batch].tolist())
            assert sorted(counts) == list(range(num_groups)), name
            assert set(counts.values()) == {samples_per_group}, name


@pytest.mark.parametrize(
    ("features", "message"),
    [
        (np.zeros(10), "2-D"),
        (np.zeros((2, 3, 4)), "2-D"),
        (np.zeros((0, 3)), "at least one sample"),
        (np.zeros((5, 0)), "at least one sample"),
        (np.array([["a", "b"], ["c", "d"]]), "real numbers"),
        (np.ones((4, 2), dtype=np.complex128), "real numbers"),
    ],
)
def test_kmeans_invalid_shape_or_dtype(features, message):
    with pytest.raises(ValueError, match=message):
        kmeans_labels(features, num_clusters=1)


@pytest.mark.parametrize("bad_value", [np.nan, np.inf, -np.inf])
def test_kmeans_non_finite_features(bad_value):
    features, _ = gaussian_blobs()
    features[7, 2] = bad_value

    with pytest.raises(ValueError, match="NaN or infinite values in 1 of 400 rows, first row 7"):
        kmeans_labels(features)


def test_kmeans_zero_row_spherical():
    features, _ = gaussian_blobs()
    features[5] = 0.0

    with pytest.raises(ValueError, match="1 of 400 feature rows are all zeros, first row 5"):
        kmeans_labels(features)

    result = kmeans_labels(features, num_clusters=NUM_BLOBS, spherical=False)
    assert result.labels.shape == (len(features),)


def test_kmeans_too_few_samples_for_fixed_k():
    features = np.eye(3)

    with pytest.raises(ValueError, match="too few samples for num_clusters=4: got 3 samples"):
        kmeans_labels(features, num_clusters=4)


def test_kmeans_too_few_samples_for_candidates():
    features = np.eye(5)

    with pytest.raises(ValueError, match=r"too few samples for candidate_clusters \[5, 6, 7, 8\]"):
        kmeans_labels(features)

    result = kmeans_labels(features, candidate_clusters=range(2, 5))
    assert result.num_clusters in (2, 3, 4)


@pytest.mark.parametrize("num_clusters", [0, -2, 2.5, True, "3"])
def test_kmeans_invalid_num_clusters(num_clusters):
    features, _ = gaussian_blobs()

    with pytest.raises(ValueError, match="num_clusters must be None or an integer"):
        kmeans_labels(features, num_clusters=num_clusters)


@pytest.mark.parametrize(
    ("candidates", "message"),
    [
        ([], "empty"),
        (range(2, 2), "empty"),
        ([1, 2, 3], "integers of at least 2"),
        ([0], "integers of at least 2"),
        ([2, 3.5], "integers of at least 2"),
        ([True, 3], "integers of at least 2"),
        ([2, 3, 3], "duplicates"),
        (4, "iterable of integers"),
    ],
)
def test_kmeans_invalid_candidates(candidates, message):
    features, _ = gaussian_blobs()

    with pytest.raises(ValueError, match=message):
        kmeans_labels(features, candidate_clusters=candidates)


@pytest.mark.parametrize("seed", [-1, 1.5, None])
def test_kmeans_invalid_seed(seed):
    features, _ = gaussian_blobs()

    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        kmeans_labels(features, seed=seed)


def test_kmeans_undefined_silhouette_for_all_candidates():
    # Every point is identical, so k-means finds a single distinct cluster for every k.
    features = np.ones((10, 3))

    with pytest.warns(Warning, match="distinct clusters"):
        with pytest.raises(ValueError, match="silhouette score is undefined"):
            kmeans_labels(features, candidate_clusters=[2, 3])
