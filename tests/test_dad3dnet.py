"""Tests of the DAD-3DNet losses and model on tiny configs and generated data."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from zoo.geometry.camera import Camera, euler_to_matrix, matrix_to_euler, project, to_pixels
from zoo.geometry.morphable import MorphableHeadModel
from zoo.losses.alignment import (
    DEFAULT_WEIGHTS,
    adaptive_wing_loss,
    alignment_loss,
    gaussian_heatmaps,
    landmark_loss,
    normalize_to_unit_cube,
    reprojection_loss,
    soft_iou_heatmap_loss,
    subset_weights,
    vertex_loss,
)
from zoo.models.dad3dnet import DAD3DNet

TINY = {
    "image_size": 64,
    "stem_width": 4,
    "encoder_widths": (8, 8, 16, 16),
    "encoder_blocks": (1, 1, 1, 1),
    "pyramid_channels": 8,
    "head_hidden": 16,
}


@pytest.fixture(scope="module")
def head_model() -> MorphableHeadModel:
    return MorphableHeadModel.builtin()


# ---------------------------------------------------------------------- losses


def test_unit_cube_normalisation_by_hand():
    points = torch.tensor([[[2.0, 10.0, 5.0], [6.0, 11.0, 5.0], [4.0, 12.0, 6.0]]])
    # Extents (4, 2, 1) centred on (4, 11, 5.5); the longest half-extent 2 maps to 1.
    expected = torch.tensor([[[-1.0, -0.5, -0.25], [1.0, 0.0, -0.25], [0.0, 0.5, 0.25]]])
    assert torch.allclose(normalize_to_unit_cube(points), expected)


def test_unit_cube_ignores_position_and_size():
    points = torch.randn(2, 30, 3, generator=torch.Generator().manual_seed(0))
    moved = 7.5 * points + torch.tensor([1.0, -3.0, 20.0])
    normalised = normalize_to_unit_cube(points)
    assert torch.allclose(normalize_to_unit_cube(moved), normalised, atol=1e-5)
    assert torch.isclose(normalised.abs().amax(), torch.tensor(1.0))


def test_losses_zero_for_perfect_predictions():
    generator = torch.Generator().manual_seed(1)
    vertices = torch.randn(2, 40, 3, generator=generator)
    subsets = subset_weights({"face": torch.arange(10), "head": torch.arange(40)}, {"face": 1.0, "head": 0.5})
    assert vertex_loss(vertices, vertices, subsets).item() == pytest.approx(0.0, abs=1e-7)
    projected = torch.rand(2, 40, 2, generator=generator) * 64
    assert reprojection_loss(projected, projected, subsets).item() == 0.0
    landmarks = torch.rand(2, 68, 2, generator=generator)
    assert landmark_loss(landmarks, landmarks).item() == 0.0


def test_heatmap_losses_prefer_matching_maps():
    points = torch.tensor([[[10.5, 20.5], [40.5, 8.5]]])
    target = gaussian_heatmaps(points, (64, 64))
    assert target[0, 0, 20, 10].item() == pytest.approx(1.0)
    # Logits whose sigmoid is close to the target, and logits of an unrelated map.
    matching = torch.logit(target.clamp(1e-4, 1 - 1e-4))
    wrong = torch.logit(gaussian_heatmaps(points.flip(-1), (64, 64)).clamp(1e-4, 1 - 1e-4))
    assert soft_iou_heatmap_loss(matching, target).item() < 1e-3
    assert soft_iou_heatmap_loss(wrong, target).item() > 0.5
    assert adaptive_wing_loss(matching, target).item() < adaptive_wing_loss(wrong, target).item()


def test_gaussian_heatmaps_blank_invisible_points():
    maps = gaussian_heatmaps(torch.full((1, 2, 2), 8.0), (16, 16), visible=torch.tensor([[True, False]]))
    assert maps[0, 0].max().item() > 0.8
    assert maps[0, 1].abs().max().item() == 0.0


def test_landmark_loss_ignores_masked_points():
    target = torch.rand(1, 68, 2, generator=torch.Generator().manual_seed(2))
    predicted = target.clone()
    predicted[0, 5] += 10.0
    mask = torch.ones(1, 68, dtype=torch.bool)
    mask[0, 5] = False
    assert landmark_loss(predicted, target, mask).item() == 0.0
    assert landmark_loss(predicted, target).item() > 0.0


def test_alignment_loss_weights_terms():
    terms = {"vertices": torch.tensor(0.1), "landmarks": torch.tensor(0.02)}
    total, logged = alignment_loss(terms)
    assert total.item() == pytest.approx(50 * 0.1 + 100 * 0.02)
    assert logged == pytest.approx({"vertices": 0.1, "landmarks": 0.02})
    assert DEFAULT_WEIGHTS == {"heatmap": 1.0, "vertices": 50.0, "reprojection": 0.05, "landmarks": 100.0}
    with pytest.raises(ValueError, match="no weight"):
        alignment_loss({"chamfer": torch.tensor(1.0)})


# ---------------------------------------------------------------------- model


def _tiny_model(**overrides) -> DAD3DNet:
    torch.manual_seed(0)
    return DAD3DNet(**{**TINY, **overrides})


def test_forward_shapes_and_bounds():
    model = _tiny_model()
    outputs = model(torch.randn(2, 3, 64, 64))
    assert outputs["heatmaps"].shape == (2, 68, 16, 16)
    assert outputs["identity"].shape == (2, 32)
    assert outputs["expression"].shape == (2, 19)
    assert outputs["jaw"].shape == (2,)
    assert outputs["rotation"].shape == (2, 3, 3)
    assert outputs["landmarks"].shape == (2, 68, 2)
    assert outputs["identity"].abs().max().item() <= 3.0
    assert outputs["landmarks"].min().item() >= 0.0
    identity = torch.eye(3).expand(2, 3, 3)
    assert torch.allclose(outputs["rotation"] @ outputs["rotation"].transpose(1, 2), identity, atol=1e-5)


def test_gate_ablation_changes_parameters_only_in_fusion():
    gated = _tiny_model()
    ungated = _tiny_model(heatmap_gate=False)
    gated_names = set(gated.state_dict())
    ungated_names = set(ungated.state_dict())
    assert {name.split(".")[0] for name in gated_names - ungated_names} == {"fusion"}
    assert ungated_names <= gated_names
    assert ungated(torch.randn(1, 3, 64, 64))["heatmaps"].shape == (1, 68, 16, 16)


def test_heatmap_gate_passes_gradient_to_heatmap_branch():
    model = _tiny_model()
    outputs = model(torch.randn(2, 3, 64, 64))
    outputs["identity"].sum().backward()
    # Only the gate links the heatmap convolution to the parameter heads.
    assert model.heatmap_head.weight.grad.abs().sum().item() > 0.0


def test_decode_matches_morphable_model(head_model):
    model = _tiny_model()
    model.set_head_model(head_model)
    outputs = model(torch.randn(2, 3, 64, 64))
    decoded = model.decode(outputs)
    expected = head_model.vertices(outputs["identity"], outputs["expression"], outputs["jaw"])
    assert torch.allclose(decoded["vertices_model"], expected)
    assert decoded["vertices_2d"].shape == (2, head_model.num_vertices, 2)
    assert torch.equal(decoded["landmarks_2d"], decoded["vertices_2d"][:, head_model.landmark_indices])


def test_decode_matches_synthheads_camera(head_model):
    model = _tiny_model()
    model.set_head_model(head_model)
    outputs = model(torch.randn(2, 3, 64, 64))
    decoded = model.decode(outputs)
    # SynthHeads renders landmarks as to_pixels(project(v, Camera)); decoding must agree with it.
    camera = Camera(outputs["scale"], matrix_to_euler(outputs["rotation"]), outputs["translation"][:, :2])
    landmarks = head_model.landmarks_3d(outputs["identity"], outputs["expression"], outputs["jaw"])
    expected = to_pixels(project(landmarks, camera), 64, 64)[..., :2]
    assert torch.allclose(decoded["landmarks_2d"], expected, atol=1e-3)


def test_projection_by_hand():
    outputs = {
        "rotation": euler_to_matrix(torch.tensor([[torch.pi / 2, 0.0, 0.0]])),
        "translation": torch.tensor([[0.1, -0.2, 5.0]]),
        "scale": torch.tensor([2.0]),
    }
    # Yaw +90 degrees turns +z (the nose direction) to +x; t_z is ignored.
    projected = DAD3DNet.project(torch.tensor([[[0.0, 0.0, 1.0]]]), outputs)
    assert torch.allclose(projected, torch.tensor([[[2.1, -0.2, 0.0]]]), atol=1e-6)


def test_training_step_reduces_losses_and_reaches_all_heads(head_model):
    model = _tiny_model()
    model.set_head_model(head_model)
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    target_vertices = head_model.vertices(torch.randn(2, 32, generator=torch.Generator().manual_seed(4)) * 0.5)
    target_landmarks = torch.rand(2, 68, 2, generator=torch.Generator().manual_seed(5))
    target_maps = gaussian_heatmaps(target_landmarks * 16, (16, 16))
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step() -> torch.Tensor:
        outputs = model(images)
        decoded = model.decode(outputs)
        terms = {
            "heatmap": soft_iou_heatmap_loss(outputs["heatmaps"], target_maps),
            "vertices": vertex_loss(decoded["vertices_model"], target_vertices),
            "reprojection": reprojection_loss(decoded["landmarks_2d"], target_landmarks * 64),
            "landmarks": landmark_loss(outputs["landmarks"], target_landmarks),
        }
        total, _ = alignment_loss(terms)
        optimiser.zero_grad()
        total.backward()
        return total.detach()

    first = step()
    for head in (model.shape_head, model.pose_head, model.landmark_head, model.heatmap_head, model.stem):
        gradient = sum(p.grad.abs().sum().item() for p in head.parameters())
        assert gradient > 0.0, f"no gradient reached {head}"
    optimiser.step()
    for _ in range(4):
        last = step()
        optimiser.step()
    assert last.item() < first.item()


def test_losses_zero_dense_terms_for_own_parameters(head_model):
    model = _tiny_model()
    model.set_head_model(head_model)
    outputs = model(torch.randn(2, 3, 64, 64))
    decoded = model.decode(outputs)
    # Ground truth equal to the prediction, in SynthHeads column names.
    targets = {
        "landmarks_2d": decoded["landmarks_2d"].detach(),
        "identity_coefficients": outputs["identity"].detach(),
        "expression_parameters": outputs["expression"].detach(),
        "jaw": outputs["jaw"].detach(),
        "rotation": outputs["rotation"].detach(),
        "scale": outputs["scale"].detach(),
        "translation": outputs["translation"][:, :2].detach(),
    }
    total, logged = model.losses(outputs, targets)
    assert logged["vertices"] == pytest.approx(0.0, abs=1e-9)
    assert logged["reprojection"] == pytest.approx(0.0, abs=1e-9)
    assert logged["heatmap"] > 0.0
    total.backward()
    assert model.shape_head[0].weight.grad is not None


def test_losses_without_parameters_use_2d_terms():
    model = _tiny_model()
    outputs = model(torch.randn(1, 3, 64, 64))
    landmarks = torch.full((1, 68, 2), 32.0)
    landmarks[0, 0] = -5.0  # outside the crop: masked in the regression term
    _, logged = model.losses(outputs, {"landmarks_2d": landmarks})
    assert set(logged) == {"heatmap", "landmarks"}


def test_predict_returns_jsonable_dicts(head_model):
    model = _tiny_model()
    model.set_head_model(head_model)
    image = (np.random.default_rng(0).random((40, 80, 3)) * 255).astype(np.uint8)
    result = model.predict(image)
    json.dumps(result)
    assert len(result["landmarks_2d"]) == 68
    assert set(result["pose"]) == {"yaw", "pitch", "roll"}
    assert set(result["expression"]) == set(head_model.expression_names)
    batch = model.predict([image, torch.rand(3, 64, 64)])
    assert isinstance(batch, list) and len(batch) == 2


def test_predict_pose_matches_rotation(head_model):
    model = _tiny_model()
    model.set_head_model(head_model)
    result = model.predict(torch.rand(3, 64, 64))
    angles = torch.tensor([[result["pose"][k] for k in ("yaw", "pitch", "roll")]])
    expected = matrix_to_euler(torch.tensor([result["rotation_matrix"]]))
    assert torch.allclose(angles, expected, atol=1e-5)


def test_set_head_model_rejects_size_mismatch(head_model):
    model = _tiny_model(num_identity=10)
    with pytest.raises(ValueError, match="num_identity"):
        model.set_head_model(head_model)


def test_save_load_round_trip(tmp_path):
    model = _tiny_model(heatmap_gate=False).eval()
    model.save_pretrained(tmp_path / "dad3dnet")
    loaded = DAD3DNet.from_pretrained(tmp_path / "dad3dnet")
    assert loaded.heatmap_gate is False
    images = torch.randn(1, 3, 64, 64)
    expected, actual = model(images), loaded(images)
    for name in ("heatmaps", "identity", "rotation", "landmarks"):
        assert torch.allclose(expected[name], actual[name]), name


def test_resnet50_sized_config_builds():
    model = DAD3DNet(
        image_size=64, encoder_widths=(256, 512, 1024, 2048), encoder_blocks=(3, 4, 6, 3), stem_width=64,
        pyramid_channels=256, head_hidden=512,
    )
    encoder = sum(p.numel() for name, p in model.named_parameters() if name.startswith(("stem", "stage")))
    assert encoder == 23_508_032


def test_rejects_invalid_config():
    with pytest.raises(ValueError, match="multiple of 32"):
        DAD3DNet(image_size=100)
    with pytest.raises(ValueError, match="expected images"):
        _tiny_model()(torch.randn(1, 3, 32, 32))


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros((1, 1, 3), np.uint8), "at least 8 px"),
        (np.zeros((5, 3000, 3), np.uint8), "at least 8 px"),
        (np.zeros((64, 64), np.uint8), "colour mode 'L'"),
    ],
)
def test_predict_rejects_unusable_images(array, message):
    from zoo.data.images import ImageInputError

    with pytest.raises(ImageInputError, match=message):
        _tiny_model().predict(array)
