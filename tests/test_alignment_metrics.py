"""Tests of the 6D rotation representation and the DAD-3DHeads alignment metrics on hand-computed cases."""

from __future__ import annotations

import math

import pytest
import torch

from zoo.geometry.camera import euler_to_matrix
from zoo.geometry.rotation import matrix_to_rotation_6d, rotation_6d_to_matrix
from zoo.metrics.alignment import (
    SEVEN_LANDMARKS,
    chamfer_distance_aligned,
    euler_angle_mae,
    pose_error,
    reprojection_nme,
    rotation_from_model_view,
    similarity_transform,
    z_accuracy,
)


def _random_rotations(count: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    angles = (torch.rand(count, 3, generator=generator) * 2 - 1) * torch.tensor([3.0, 1.5, 3.0])
    return euler_to_matrix(angles)


# ---------------------------------------------------------------------- 6D rotations


def test_rotation_6d_round_trip():
    matrices = _random_rotations(32)
    recovered = rotation_6d_to_matrix(matrix_to_rotation_6d(matrices))
    assert torch.allclose(recovered, matrices, atol=1e-5)


def test_rotation_6d_gives_proper_rotation():
    raw = torch.randn(64, 6, generator=torch.Generator().manual_seed(1))
    matrices = rotation_6d_to_matrix(raw)
    identity = torch.eye(3).expand(64, 3, 3)
    assert torch.allclose(matrices @ matrices.transpose(1, 2), identity, atol=1e-5)
    assert torch.allclose(torch.linalg.det(matrices), torch.ones(64), atol=1e-5)


def test_rotation_6d_gram_schmidt_by_hand():
    # a1 = (2, 0, 0) -> e_x; a2 = (5, 3, 0) minus its e_x part -> e_y; third column e_z.
    matrix = rotation_6d_to_matrix(torch.tensor([2.0, 0.0, 0.0, 5.0, 3.0, 0.0]))
    assert torch.allclose(matrix, torch.eye(3))


def test_rotation_6d_rejects_wrong_shape():
    with pytest.raises(ValueError, match=r"\(\.\.\., 6\)"):
        rotation_6d_to_matrix(torch.zeros(2, 5))


# ---------------------------------------------------------------------- NME


def test_reprojection_nme_by_hand():
    target = torch.zeros(2, 68, 2)
    predicted = target.clone()
    predicted[0, :, 0] = 3.0  # every landmark 3 px off
    predicted[1, :34, 1] = 4.0  # half the landmarks 4 px off, mean error 2 px
    box = torch.tensor([[100.0, 100.0], [50.0, 200.0]])  # sqrt(w h) = 100 for both
    per_image = reprojection_nme(predicted, target, box, reduction="none")
    assert torch.allclose(per_image, torch.tensor([3.0, 2.0]))
    assert torch.isclose(reprojection_nme(predicted, target, box), torch.tensor(2.5))


def test_reprojection_nme_rejects_empty_box():
    points = torch.zeros(1, 68, 2)
    with pytest.raises(ValueError, match="positive"):
        reprojection_nme(points, points, torch.tensor([[0.0, 10.0]]))


# ---------------------------------------------------------------------- Z_n


def test_z_accuracy_perfect_and_reversed():
    generator = torch.Generator().manual_seed(2)
    target = torch.randn(1, 40, 3, generator=generator)
    assert torch.isclose(z_accuracy(target, target), torch.tensor(1.0))
    mirrored = target * torch.tensor([1.0, 1.0, -1.0])
    # Mirroring depth reverses every order; with distinct depths no pair survives.
    assert torch.isclose(z_accuracy(mirrored, target), torch.tensor(0.0))


def test_z_accuracy_by_hand():
    # Spacings along x fix the single nearest neighbour of each point: 0->1, 1->0, 2->3, 3->2.
    target = torch.tensor([[[0.0, 0, 0.0], [1.0, 0, 1.0], [5.0, 0, 2.0], [5.5, 0, 3.0]]])
    predicted = target.clone()
    predicted[0, 3, 2] = 1.0  # point 3 now lies behind point 2: pairs (2, 3) and (3, 2) flip
    score = z_accuracy(predicted, target, num_neighbours=1)
    assert torch.isclose(score, torch.tensor(0.5))


def test_z_accuracy_subset_indices():
    target = torch.randn(1, 30, 3, generator=torch.Generator().manual_seed(3))
    predicted = target.clone()
    predicted[0, 20:, 2] = -predicted[0, 20:, 2] + 100.0  # vertices outside the subset are wrong
    assert torch.isclose(z_accuracy(predicted, target, indices=torch.arange(20)), torch.tensor(1.0))


# ---------------------------------------------------------------------- Chamfer


def _face_landmarks(seed: int) -> torch.Tensor:
    landmarks = torch.randn(1, 68, 3, generator=torch.Generator().manual_seed(seed))
    landmarks[0, 39] = torch.tensor([-1.0, 0.0, 0.0])
    landmarks[0, 42] = torch.tensor([1.0, 0.0, 0.0])  # inner eye corners 2 apart: GT scaled by 10
    return landmarks


def test_similarity_transform_recovers_known_transform():
    source = torch.randn(2, 7, 3, generator=torch.Generator().manual_seed(4))
    rotation = _random_rotations(2, seed=5)
    target = 1.7 * source @ rotation.transpose(1, 2) + torch.tensor([0.5, -2.0, 3.0])
    scale, fitted, translation = similarity_transform(source, target)
    assert torch.allclose(scale, torch.full((2,), 1.7), atol=1e-4)
    assert torch.allclose(fitted, rotation, atol=1e-4)
    assert torch.allclose(translation, torch.tensor([0.5, -2.0, 3.0]).expand(2, 3), atol=1e-4)


def test_chamfer_zero_for_similar_copy():
    target_landmarks = _face_landmarks(6)
    target_points = torch.randn(1, 50, 3, generator=torch.Generator().manual_seed(7))
    rotation = _random_rotations(1, seed=8)
    # The prediction is the ground truth in another frame and at another scale.
    predicted_points = 0.3 * target_points @ rotation.transpose(1, 2) + 4.0
    predicted_landmarks = 0.3 * target_landmarks @ rotation.transpose(1, 2) + 4.0
    distance = chamfer_distance_aligned(predicted_points, target_points, predicted_landmarks, target_landmarks)
    # Float32 error of the fit, squared, at the scaled ground truth's size of about 20 units.
    assert distance.item() == pytest.approx(0.0, abs=1e-4)


def test_chamfer_by_hand_after_eye_scaling():
    target_landmarks = _face_landmarks(9)
    predicted_landmarks = target_landmarks * 10.0  # already in the scaled GT frame
    target_points = torch.tensor([[[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]])  # scaled to (0,0,0), (10,0,0)
    predicted_points = torch.tensor([[[0.0, 0.0, 3.0], [10.0, 4.0, 0.0], [50.0, 50.0, 50.0]]])
    # Nearest predicted points are 3 and 4 away: squared mean 12.5, plain mean 3.5. The far
    # predicted point does not count, because the distance runs from the ground truth only.
    squared = chamfer_distance_aligned(predicted_points, target_points, predicted_landmarks, target_landmarks)
    plain = chamfer_distance_aligned(
        predicted_points, target_points, predicted_landmarks, target_landmarks, squared=False
    )
    assert squared.item() == pytest.approx(12.5, abs=1e-3)
    assert plain.item() == pytest.approx(3.5, abs=1e-4)


def test_chamfer_uses_seven_landmarks_only():
    target_landmarks = _face_landmarks(10)
    predicted_landmarks = target_landmarks.clone()
    others = [i for i in range(68) if i not in SEVEN_LANDMARKS]
    predicted_landmarks[0, others] += 100.0  # landmarks outside the 7-point set are ignored
    points = torch.randn(1, 20, 3, generator=torch.Generator().manual_seed(11))
    distance = chamfer_distance_aligned(points, points, predicted_landmarks, target_landmarks)
    assert distance.item() == pytest.approx(0.0, abs=1e-6)


# ---------------------------------------------------------------------- pose


def test_pose_error_by_hand():
    identity = torch.eye(3)[None]
    half_turn = torch.diag(torch.tensor([-1.0, -1.0, 1.0]))[None]  # 180 degrees about z
    quarter = euler_to_matrix(torch.tensor([[math.pi / 2, 0.0, 0.0]]))
    assert pose_error(identity, identity).item() == pytest.approx(0.0, abs=1e-6)
    # ||I - R||_F = 2 sqrt(1 - cos theta): 2 sqrt(2) at 180 degrees, 2 at 90 degrees.
    assert pose_error(half_turn, identity).item() == pytest.approx(2 * math.sqrt(2), abs=1e-5)
    assert pose_error(quarter, identity).item() == pytest.approx(2.0, abs=1e-5)


def test_rotation_from_model_view_flips_y_and_z():
    model_view = torch.eye(4)[None].clone()
    model_view[0, :3, 3] = torch.tensor([0.1, 0.2, -3.0])
    expected = torch.diag(torch.tensor([1.0, -1.0, -1.0]))[None]
    assert torch.equal(rotation_from_model_view(model_view), expected)


def test_euler_angle_mae_by_hand():
    target = torch.zeros(2, 3)
    predicted = torch.deg2rad(torch.tensor([[10.0, -4.0, 0.0], [-20.0, 2.0, 6.0]]))
    mae = euler_angle_mae(predicted, target)
    assert torch.allclose(mae, torch.tensor([15.0, 3.0, 3.0]), atol=1e-4)


def test_euler_angle_mae_wraps_and_takes_matrices():
    predicted = torch.deg2rad(torch.tensor([[179.0, 0.0, 0.0]]))
    target = torch.deg2rad(torch.tensor([[-179.0, 0.0, 0.0]]))
    assert torch.allclose(euler_angle_mae(predicted, target), torch.tensor([2.0, 0.0, 0.0]), atol=1e-3)
    angles = torch.deg2rad(torch.tensor([[30.0, 10.0, -5.0]]))
    matrices_error = euler_angle_mae(euler_to_matrix(angles), euler_to_matrix(torch.zeros(1, 3)))
    assert torch.allclose(matrices_error, torch.tensor([30.0, 10.0, 5.0]), atol=1e-3)
