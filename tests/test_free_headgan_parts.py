"""Free-HeadGAN parts: keypoint pose algebra, gaze vectors and sketches, estimators, losses and N-shot fusion."""

from __future__ import annotations

import math

import pytest
import torch

from zoo.data.synthheads.dataset import build_synthheads
from zoo.geometry.camera import euler_to_matrix, to_pixels
from zoo.geometry.morphable import MorphableHeadModel
from zoo.models.free_headgan import (
    KEYPOINT_LOSS_WEIGHTS,
    CanonicalKeypointEstimator,
    GazeEstimator,
    crop_eyes,
    fuse_sources,
    gaze_loss,
    keypoint_losses,
    keypoint_targets,
    transfer_keypoints,
)
from zoo.reenactment.keypoints import (
    angular_error_degrees,
    apply_pose,
    canonicalise,
    decode_sketch_gaze,
    gaze_angles,
    gaze_colours,
    gaze_vector,
    keypoint_sketch,
)

IMAGE_SIZE = 32
IMAGES_PER_IDENTITY = 4


@pytest.fixture(scope="module")
def stills(tmp_path_factory) -> dict[str, torch.Tensor]:
    """Twelve 32 px SynthHeads stills of three people as a dict of tensors, images in [0, 1]."""
    # Three identities cannot fill the default train/validation/test split, so all go to train.
    dataset = build_synthheads(
        kind="images", num_identities=3, images_per_identity=IMAGES_PER_IDENTITY, image_size=IMAGE_SIZE,
        conditioning=False, splits={"train": 1.0}, cache_dir=tmp_path_factory.mktemp("synthheads"),
    )
    rows = dataset["train"].with_format("torch")[:]
    rows["image"] = rows["image"].float() / 255.0
    return rows


def random_pose(batch: int, count: int, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    angles = (torch.rand(batch, 3, generator=generator) * 2 - 1) * torch.tensor([1.2, 0.6, 0.4])
    return {
        "scale": 0.05 + 0.05 * torch.rand(batch, generator=generator),
        "rotation": euler_to_matrix(angles),
        "translation": torch.randn(batch, 3, generator=generator) * 0.1,
        "deformation": torch.randn(batch, count, 3, generator=generator) * 0.02,
    }


def perfect_outputs(labels: dict[str, torch.Tensor], deformation: torch.Tensor | None = None
                    ) -> dict[str, torch.Tensor]:
    """Estimator outputs whose keypoints and pose match the labels exactly, with zero deformations unless given."""
    targets = keypoint_targets(labels)
    deformation = torch.zeros_like(targets["keypoints"]) if deformation is None else deformation
    canonical = canonicalise(targets["keypoints"], targets["scale"], targets["rotation"], targets["translation"],
                             deformation)
    return {**targets, "deformation": deformation, "canonical": canonical}


def select(rows: dict[str, torch.Tensor], index: torch.Tensor) -> dict[str, torch.Tensor]:
    return {name: value[index] for name, value in rows.items()}


def same_identity_pairs(identity: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """All ordered (source, target) index pairs of different images of one person."""
    same = (identity[:, None] == identity[None, :]) & ~torch.eye(len(identity), dtype=torch.bool)
    source, target = same.nonzero(as_tuple=True)
    return source, target


# ---------------------------------------------------------------------- pose algebra


def test_canonicalise_inverts_apply_pose():
    pose = random_pose(4, 68)
    canonical = torch.randn(4, 68, 3) * 8.0
    posed = apply_pose(canonical, **pose)
    assert torch.allclose(canonicalise(posed, **pose), canonical, atol=1e-4)
    points = torch.randn(4, 68, 3)
    assert torch.allclose(apply_pose(canonicalise(points, **pose), **pose), points, atol=1e-5)


def test_apply_pose_formula():
    pose = random_pose(2, 5, seed=1)
    canonical = torch.randn(2, 5, 3)
    expected = torch.stack([
        pose["scale"][b] * canonical[b] @ pose["rotation"][b].T + pose["translation"][b] + pose["deformation"][b]
        for b in range(2)
    ])
    assert torch.allclose(apply_pose(canonical, **pose), expected, atol=1e-6)


def test_apply_pose_rejects_bad_shapes():
    pose = random_pose(2, 5)
    canonical = torch.randn(2, 5, 3)
    with pytest.raises(ValueError, match="pad a 2D"):
        apply_pose(canonical, **{**pose, "translation": torch.zeros(2, 2)})
    with pytest.raises(ValueError, match="rotation"):
        apply_pose(canonical, **{**pose, "rotation": torch.zeros(2, 9)})
    with pytest.raises(ValueError, match="deformation"):
        canonicalise(canonical, **{**pose, "deformation": torch.zeros(2, 4, 3)})
    with pytest.raises(ValueError, match=r"\(B, K, 3\)"):
        apply_pose(torch.zeros(2, 5, 2), **pose)


def test_keypoint_targets_project_to_landmarks_2d(stills):
    targets = keypoint_targets(stills)
    pixels = to_pixels(targets["keypoints"], IMAGE_SIZE, IMAGE_SIZE)[..., :2]
    assert torch.allclose(pixels, stills["landmarks_2d"], atol=1e-3)
    assert torch.equal(targets["translation"][:, 2], torch.zeros(len(pixels)))
    assert targets["rotation"].shape == (len(pixels), 3, 3)


def test_keypoint_targets_reports_missing_labels(stills):
    with pytest.raises(KeyError, match="rotation"):
        keypoint_targets({"landmarks_3d": stills["landmarks_3d"], "scale": stills["scale"],
                          "translation": stills["translation"]})


# ---------------------------------------------------------------------- gaze vectors


def test_gaze_vector_directions():
    vectors = gaze_vector(torch.tensor([[0.0, 0.0], [0.3, 0.0], [0.0, 0.3]]))
    assert torch.allclose(vectors[0], torch.tensor([0.0, 0.0, 1.0]))
    assert vectors[1, 0] > 0  # positive yaw looks towards +x, the subject's left
    assert vectors[2, 1] < 0  # positive pitch looks down
    assert torch.allclose(vectors.norm(dim=-1), torch.ones(3))


def test_gaze_angles_inverts_gaze_vector():
    angles = (torch.rand(100, 2, generator=torch.Generator().manual_seed(0)) * 2 - 1) * torch.tensor([3.0, 1.5])
    assert torch.allclose(gaze_angles(gaze_vector(angles)), angles, atol=1e-5)
    assert torch.allclose(gaze_angles(5.0 * gaze_vector(angles)), angles, atol=1e-5)


def test_gaze_vector_matches_morphable_eyeballs():
    model = MorphableHeadModel.builtin()
    gaze = torch.tensor([[0.0, 0.0], [0.3, 0.0], [0.0, 0.2], [-0.3, 0.25]])
    vertices = model.vertices(gaze=gaze)
    pupil_directions = model.pupils_3d(vertices) - model.eye_centres(vertices)
    for eye in range(2):
        errors = angular_error_degrees(pupil_directions[:, eye], gaze_vector(gaze))
        assert errors.max() < 0.01


def test_angular_error_values():
    x, y = torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.0, 1.0, 0.0])
    assert angular_error_degrees(x, x).item() == 0.0
    assert angular_error_degrees(x, 3.0 * x).item() == 0.0
    assert angular_error_degrees(x, y).item() == pytest.approx(90.0)
    assert angular_error_degrees(x, -x).item() == pytest.approx(180.0)
    diagonal = torch.tensor([1.0, 1.0, 0.0])
    assert angular_error_degrees(x, diagonal).item() == pytest.approx(45.0, abs=1e-5)


def test_angular_error_gradient_finite_at_zero():
    prediction = torch.tensor([[0.1, -0.2]], requires_grad=True)
    gaze_loss(prediction, prediction.detach().clone()).backward()
    assert torch.isfinite(prediction.grad).all()


def test_angular_error_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"\(\.\.\., 3\)"):
        angular_error_degrees(torch.zeros(4, 2), torch.zeros(4, 3))


# ---------------------------------------------------------------------- sketches


def test_sketch_shape_and_range(stills):
    sketch = keypoint_sketch(stills["landmarks_2d"], stills["gaze"], IMAGE_SIZE, 40)
    assert sketch.shape == (12, 3, IMAGE_SIZE, 40)
    assert sketch.dtype == torch.float32
    assert sketch.min() >= 0.0
    assert sketch.max() <= 1.0
    assert (sketch > 0).any(dim=1).float().mean() > 0.05  # lines were drawn


def test_sketch_gaze_decodes_within_one_degree(stills):
    sketch = keypoint_sketch(stills["landmarks_2d"], stills["gaze"], IMAGE_SIZE, IMAGE_SIZE)
    decoded = decode_sketch_gaze(sketch, stills["landmarks_2d"])
    errors = angular_error_degrees(gaze_vector(decoded), gaze_vector(stills["gaze"]))
    assert errors.max() < 1.0
    # 8-bit storage, as in a PNG, keeps the gaze within a degree too.
    stored = (sketch * 255.0).round() / 255.0
    stored_errors = angular_error_degrees(gaze_vector(decode_sketch_gaze(stored, stills["landmarks_2d"])),
                                          gaze_vector(stills["gaze"]))
    assert stored_errors.max() < 1.0


def test_sketch_gaze_changes_only_eye_pixels(stills):
    landmarks = stills["landmarks_2d"][:2]
    first = keypoint_sketch(landmarks, torch.zeros(2, 2), 64, 64)
    second = keypoint_sketch(landmarks, torch.tensor([[0.4, -0.3], [-0.4, 0.3]]), 64, 64)
    changed = (first != second).any(dim=1)
    assert changed.any(dim=(1, 2)).all()
    assert torch.equal(first[:, 2], second[:, 2])  # blue is constant inside the eyes
    assert changed.float().mean() < 0.05


def test_gaze_colours_encoding():
    colours = gaze_colours(torch.tensor([[0.0, 0.0], [math.pi / 2, -math.pi / 2], [4.0, 0.0]]))
    assert torch.allclose(colours[0], torch.tensor([0.5, 0.5, 1.0]))
    assert torch.allclose(colours[1], torch.tensor([1.0, 0.0, 1.0]))
    assert colours[2, 0] == 1.0  # clipped beyond pi / 2


def test_sketch_rejects_bad_shapes(stills):
    with pytest.raises(ValueError, match="landmarks_2d"):
        keypoint_sketch(torch.zeros(2, 5, 2), torch.zeros(2, 2), 32, 32)
    with pytest.raises(ValueError, match="gaze"):
        keypoint_sketch(stills["landmarks_2d"], torch.zeros(12, 3), 32, 32)


# ---------------------------------------------------------------------- keypoint estimator


def test_keypoint_estimator_outputs(stills):
    torch.manual_seed(0)
    estimator = CanonicalKeypointEstimator(widths=(8, 16), hidden=32)
    outputs = estimator(stills["image"][:5])
    shapes = {"keypoints": (5, 68, 3), "scale": (5,), "rotation_6d": (5, 6), "rotation": (5, 3, 3),
              "translation": (5, 3), "deformation": (5, 68, 3), "canonical": (5, 68, 3)}
    for name, shape in shapes.items():
        assert outputs[name].shape == shape, name
    rotation = outputs["rotation"]
    assert torch.allclose(rotation @ rotation.transpose(1, 2), torch.eye(3).expand(5, 3, 3), atol=1e-5)
    assert torch.allclose(torch.linalg.det(rotation), torch.ones(5), atol=1e-5)
    assert (outputs["scale"] > 0).all()
    assert torch.equal(outputs["deformation"], torch.zeros(5, 68, 3))
    rebuilt = apply_pose(outputs["canonical"], outputs["scale"], rotation, outputs["translation"],
                         outputs["deformation"])
    assert torch.allclose(rebuilt, outputs["keypoints"], atol=1e-5)


def test_keypoint_estimator_rejects_bad_images():
    estimator = CanonicalKeypointEstimator(widths=(8,), hidden=8)
    with pytest.raises(ValueError, match="batch, 3"):
        estimator(torch.zeros(2, 1, 32, 32))


def test_keypoint_losses_zero_for_perfect_outputs(stills):
    labels = select(stills, torch.arange(4))
    outputs = perfect_outputs(labels)
    total, terms = keypoint_losses(outputs, outputs, labels, labels)
    assert set(terms) == set(KEYPOINT_LOSS_WEIGHTS)
    for name, value in terms.items():
        assert value == pytest.approx(0.0, abs=1e-10), name
    assert total.item() == pytest.approx(0.0, abs=1e-10)


def test_reconstruction_zero_across_poses_of_one_shape(stills):
    # Same 3D landmarks seen under two different cameras: the source's canonical set, posed as
    # the target, lands exactly on the target.
    source = select(stills, torch.arange(4))
    target = {**select(stills, torch.arange(4, 8)), "landmarks_3d": source["landmarks_3d"]}
    _, terms = keypoint_losses(perfect_outputs(source), perfect_outputs(target), source, target)
    assert terms["reconstruction"] == pytest.approx(0.0, abs=1e-10)
    # A different expression needs the target's deformation to explain it.
    target_shape = select(stills, torch.arange(4, 8))
    _, terms = keypoint_losses(perfect_outputs(source), perfect_outputs(target_shape), source, target_shape)
    assert terms["reconstruction"] > 1e-6


def test_deformation_term_counts_both_images(stills):
    labels = select(stills, torch.arange(2))
    deformation = torch.full((2, 68, 3), 0.1)
    outputs = perfect_outputs(labels, deformation)
    _, terms = keypoint_losses(outputs, outputs, labels, labels)
    assert terms["deformation"] == pytest.approx(0.03, rel=1e-5)
    assert terms["keypoints"] == pytest.approx(0.0, abs=1e-10)
    assert terms["reconstruction"] == pytest.approx(0.0, abs=1e-10)


def test_keypoint_loss_weights(stills):
    labels = select(stills, torch.arange(2))
    outputs = perfect_outputs(labels, torch.full((2, 68, 3), 0.1))
    total, _ = keypoint_losses(outputs, outputs, labels, labels, {"deformation": 2.0})
    assert total.item() == pytest.approx(0.06, rel=1e-5)
    with pytest.raises(ValueError, match="unknown keypoint loss terms"):
        keypoint_losses(outputs, outputs, labels, labels, {"pose": 1.0})


def test_keypoint_losses_reach_every_parameter(stills):
    torch.manual_seed(0)
    estimator = CanonicalKeypointEstimator(widths=(8, 16), hidden=32)
    source, target = same_identity_pairs(stills["identity"][:8])
    outputs = estimator(stills["image"][:8])
    total, terms = keypoint_losses(select(outputs, source), select(outputs, target),
                                   select(stills, source), select(stills, target))
    assert all(math.isfinite(value) for value in terms.values())
    total.backward()
    for name, parameter in estimator.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_transfer_keypoints_uses_target_pose(stills):
    source_labels, target_labels = select(stills, torch.arange(2)), select(stills, torch.arange(2, 4))
    target_labels["landmarks_3d"] = source_labels["landmarks_3d"]
    transferred = transfer_keypoints(perfect_outputs(source_labels), perfect_outputs(target_labels))
    assert torch.allclose(transferred, keypoint_targets(target_labels)["keypoints"], atol=1e-5)


# ---------------------------------------------------------------------- gaze estimator


def test_gaze_estimator_outputs(stills):
    torch.manual_seed(0)
    for crop in ("eyes", "face"):
        estimator = GazeEstimator(widths=(8, 16), hidden=16, crop=crop)
        gaze = estimator(stills["image"][:3], stills["landmarks_2d"][:3])
        assert gaze.shape == (3, 2), crop
        loss = gaze_loss(gaze, stills["gaze"][:3])
        assert loss.ndim == 0
        assert torch.isfinite(loss)
        loss.backward()
        assert all(parameter.grad is not None for parameter in estimator.parameters())


def test_gaze_estimator_guards(stills):
    with pytest.raises(ValueError, match="needs landmarks_2d"):
        GazeEstimator(widths=(8,))(stills["image"][:2])
    with pytest.raises(ValueError, match="unknown gaze crop"):
        GazeEstimator(crop="pupils")
    with pytest.raises(ValueError, match="same shape"):
        gaze_loss(torch.zeros(2, 2), torch.zeros(3, 2))


def test_crop_eyes_follows_eye_corners():
    # Channels hold each pixel's own (x, y) centre, so a crop shows where it sampled.
    size = 64
    coordinates = torch.arange(size, dtype=torch.float32) + 0.5
    image = torch.stack([coordinates.expand(size, size), coordinates[:, None].expand(size, size)])[None]
    landmarks = torch.full((1, 68, 2), 32.0)
    for eye, (centre_x, centre_y) in ((range(36, 42), (20.0, 30.0)), (range(42, 48), (44.0, 30.0))):
        offsets = torch.tensor([[-4.0, 0.0], [-2.0, -1.0], [2.0, -1.0], [4.0, 0.0], [2.0, 1.0], [-2.0, 1.0]])
        landmarks[0, list(eye)] = torch.tensor([centre_x, centre_y]) + offsets
    crops = crop_eyes(image, landmarks, 16, margin=2.0)
    assert crops.shape == (1, 2, 2, 16, 16)
    right, left = crops[0, 0], crops[0, 1]
    assert right[0].mean().item() == pytest.approx(20.0, abs=1e-4)
    assert left[0].mean().item() == pytest.approx(44.0, abs=1e-4)
    assert right[1].mean().item() == pytest.approx(30.0, abs=1e-4)
    # The crop spans twice the 8 px corner distance, one pixel per crop pixel.
    assert (right[0, :, -1] - right[0, :, 0]).mean().item() == pytest.approx(15.0, abs=1e-4)
    # Rolled by 90 degrees (corners one above the other), the crop x axis runs down the image.
    rolled = landmarks.clone()
    rolled[..., 0], rolled[..., 1] = 64.0 - landmarks[..., 1], landmarks[..., 0]
    rolled_crop = crop_eyes(image, rolled, 16, margin=2.0)[0, 0]
    assert (rolled_crop[1, :, -1] - rolled_crop[1, :, 0]).mean().item() == pytest.approx(15.0, abs=1e-4)


# ---------------------------------------------------------------------- N-shot fusion


def test_fuse_sources_equal_logits_average():
    warped = torch.randn(2, 3, 4, 5, 6)
    fused = fuse_sources(warped, torch.zeros(2, 3, 1, 5, 6))
    assert fused.shape == (2, 4, 5, 6)
    assert torch.allclose(fused, warped.mean(dim=1), atol=1e-6)


def test_fuse_sources_dominant_logit_selects_source():
    warped = torch.randn(2, 3, 4, 5, 6)
    logits = torch.zeros(2, 3, 1, 5, 6)
    logits[:, 1] = 50.0
    assert torch.allclose(fuse_sources(warped, logits), warped[:, 1], atol=1e-6)
    # Per pixel: the left half takes source 0, the right half source 2.
    logits = torch.zeros(2, 3, 1, 5, 6)
    logits[:, 0, ..., :3] = 50.0
    logits[:, 2, ..., 3:] = 50.0
    fused = fuse_sources(warped, logits)
    assert torch.allclose(fused[..., :3], warped[:, 0, ..., :3], atol=1e-6)
    assert torch.allclose(fused[..., 3:], warped[:, 2, ..., 3:], atol=1e-6)


def test_fuse_sources_single_source_unchanged():
    warped = torch.randn(2, 1, 4, 5, 6)
    assert torch.equal(fuse_sources(warped, torch.randn(2, 1, 1, 5, 6)), warped[:, 0])


def test_fuse_sources_weights_sum_to_one_and_train():
    logits = torch.randn(2, 3, 1, 5, 6, requires_grad=True)
    fused = fuse_sources(torch.ones(2, 3, 4, 5, 6), logits)
    assert torch.allclose(fused, torch.ones(2, 4, 5, 6), atol=1e-6)
    fuse_sources(torch.randn(2, 3, 4, 5, 6), logits).sum().backward()
    assert logits.grad.abs().sum() > 0


def test_fuse_sources_rejects_bad_shapes():
    with pytest.raises(ValueError, match="logits"):
        fuse_sources(torch.zeros(2, 3, 4, 5, 6), torch.zeros(2, 3, 4, 5, 6))
    with pytest.raises(ValueError, match="warped"):
        fuse_sources(torch.zeros(2, 4, 5, 6), torch.zeros(2, 1, 5, 6))


# ---------------------------------------------------------------------- training


def test_training_lowers_keypoint_and_gaze_losses(stills):
    torch.manual_seed(0)
    keypoint_estimator = CanonicalKeypointEstimator(widths=(8, 16, 32), hidden=64)
    gaze_estimator = GazeEstimator(widths=(8, 16), hidden=32)
    parameters = list(keypoint_estimator.parameters()) + list(gaze_estimator.parameters())
    optimiser = torch.optim.Adam(parameters, lr=3e-3)
    source, target = same_identity_pairs(stills["identity"])
    keypoint_history, gaze_history = [], []
    for _ in range(40):
        outputs = keypoint_estimator(stills["image"])
        keypoint_loss, _ = keypoint_losses(select(outputs, source), select(outputs, target),
                                           select(stills, source), select(stills, target))
        angular_loss = gaze_loss(gaze_estimator(stills["image"], stills["landmarks_2d"]), stills["gaze"])
        optimiser.zero_grad()
        # The two networks share no parameters, so one backward pass trains each on its own loss.
        (keypoint_loss + angular_loss).backward()
        optimiser.step()
        keypoint_history.append(keypoint_loss.item())
        gaze_history.append(angular_loss.item())
    assert sum(keypoint_history[-5:]) / 5 < 0.2 * sum(keypoint_history[:5]) / 5
    assert sum(gaze_history[-5:]) / 5 < 0.5 * sum(gaze_history[:5]) / 5
