"""Tests for the morphable head model, its file format and the camera."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import save_file

from zoo.geometry import Camera, MorphableHeadModel, MorphableModelFormatError, euler_to_matrix, matrix_to_euler
from zoo.geometry.camera import project, to_pixels
from zoo.geometry.morphable import FORMAT_NAME, FORMAT_VERSION

AU_ORDER = [
    "AU1", "AU2", "AU4", "AU5", "AU6", "AU7", "AU9", "AU10", "AU12", "AU14", "AU15", "AU17", "AU20",
    "AU23", "AU24", "AU25", "AU26", "eye_close_left", "eye_close_right",
]


@pytest.fixture(scope="module")
def model() -> MorphableHeadModel:
    return MorphableHeadModel.builtin()


def _landmarks(model, **intensities) -> torch.Tensor:
    return model.landmarks_3d(expression=model.expression_vector(**intensities)[None])[0]


# ---------------------------------------------------------------------- built-in model


def test_builtin_expression_names(model):
    assert model.expression_names == AU_ORDER


def test_builtin_shapes_consistent(model):
    num_vertices = model.num_vertices
    assert 300 <= num_vertices <= 10000
    assert model.faces.shape[1] == 3
    assert int(model.faces.min()) >= 0
    assert int(model.faces.max()) < num_vertices
    assert model.regions.shape == (num_vertices,)
    assert model.landmark_indices.shape == (68,)
    assert model.identity_basis.shape == (model.num_identity, num_vertices, 3)
    assert 20 <= model.num_identity <= 40
    assert model.expression_basis.shape == (19, num_vertices, 3)


def test_builtin_has_every_region(model):
    used = {model.region_names[i] for i in torch.unique(model.regions).tolist()}
    for name in ("skin", "lips", "eyebrow", "sclera", "iris", "pupil", "mouth_interior", "teeth"):
        assert name in used


def test_builtin_is_deterministic(model):
    other = MorphableHeadModel.from_tensors(*_fresh_builtin_tensors())
    for name in ("mean_vertices", "faces", "identity_basis", "expression_basis", "landmark_indices", "regions"):
        assert torch.equal(getattr(model, name), getattr(other, name)), name


def _fresh_builtin_tensors():
    from zoo.geometry.morphable import _builtin_tensors

    _builtin_tensors.cache_clear()
    return _builtin_tensors()


def test_vertices_default_is_mean(model):
    verts = model.vertices(batch_size=2)
    assert verts.shape == (2, model.num_vertices, 3)
    assert torch.equal(verts[0], model.mean_vertices)


def test_vertices_linear_in_coefficients(model):
    generator = torch.Generator().manual_seed(0)
    identity = model.sample_identity(2, generator)
    expression = torch.rand(2, model.num_expression, generator=generator)
    both = model.vertices(identity, expression)
    separate = model.vertices(identity) + model.vertices(expression=expression) - model.mean_vertices
    assert torch.allclose(both, separate, atol=1e-4)


def test_vertices_rejects_bad_shapes(model):
    with pytest.raises(ValueError, match="identity must have shape"):
        model.vertices(torch.zeros(2, model.num_identity + 1))
    with pytest.raises(ValueError, match="disagree on the batch size"):
        model.vertices(torch.zeros(2, model.num_identity), torch.zeros(3, model.num_expression))
    with pytest.raises(ValueError, match="at least one"):
        model.vertices()


def test_expression_vector_rejects_unknown_name(model):
    with pytest.raises(KeyError, match="AU99"):
        model.expression_vector(AU99=1.0)


# ---------------------------------------------------------------------- landmarks


def test_landmarks_in_ibug_layout(model):
    marks = model.mean_vertices[model.landmark_indices]
    x, y = marks[:, 0], marks[:, 1]
    # Image left is the subject's right (negative x): every group runs from image left to right.
    assert x[0] < x[8] < x[16]
    assert x[17] < x[21] < x[22] < x[26]
    assert x[36] < x[39] < x[42] < x[45]
    assert x[48] < x[51] < x[54]
    # Vertical order: brows above eyes above nose tip above mouth above chin.
    assert y[19] > y[37] > y[30] > y[51] > y[57] > y[8]
    # The nose tip is the most forward landmark.
    assert int(marks[:, 2].argmax()) == 30


def test_landmarks_symmetric(model):
    marks = model.mean_vertices[model.landmark_indices]
    mirror = [16 - i for i in range(17)] + [26 - i for i in range(10)] + [27, 28, 29, 30, 35, 34, 33, 32, 31]
    mirror += [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40]
    mirror += [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55, 64, 63, 62, 61, 60, 67, 66, 65]
    mirrored = marks[mirror] * torch.tensor([-1.0, 1.0, 1.0])
    assert torch.allclose(marks, mirrored, atol=0.05)


def test_smile_moves_mouth_corners_up_and_out(model):
    neutral = _landmarks(model)
    smile = _landmarks(model, AU12=1.0)
    for corner, outward in ((48, -1.0), (54, 1.0)):
        assert smile[corner, 1] - neutral[corner, 1] > 0.3
        assert (smile[corner, 0] - neutral[corner, 0]) * outward > 0.2
    # The brows stay where they are.
    assert torch.allclose(smile[17:27], neutral[17:27], atol=1e-4)


def test_lip_corner_depressor_moves_corners_down(model):
    neutral = _landmarks(model)
    sad = _landmarks(model, AU15=1.0)
    assert (sad[[48, 54], 1] - neutral[[48, 54], 1] < -0.3).all()


def test_inner_brow_raiser_lifts_inner_brows(model):
    neutral = _landmarks(model)
    raised = _landmarks(model, AU1=1.0)
    inner = raised[[21, 22], 1] - neutral[[21, 22], 1]
    outer = raised[[17, 26], 1] - neutral[[17, 26], 1]
    assert (inner > 0.4).all()
    assert (inner > outer + 0.2).all()


def test_lips_part_opens_inner_mouth(model):
    neutral = _landmarks(model)
    parted = _landmarks(model, AU25=1.0)
    assert abs(float(neutral[62, 1] - neutral[66, 1])) < 1e-4
    assert float(parted[62, 1] - parted[66, 1]) > 0.4


def test_jaw_opens_mouth_and_lowers_chin(model):
    closed = model.landmarks_3d(jaw=torch.zeros(1))[0]
    opened = model.landmarks_3d(jaw=torch.tensor([0.25]))[0]
    assert float(opened[62, 1] - opened[66, 1]) > 1.0
    assert float(closed[8, 1] - opened[8, 1]) > 1.5
    # The upper face does not move with the jaw.
    assert torch.allclose(opened[17:48], closed[17:48], atol=1e-4)


def test_jaw_keeps_unweighted_vertices(model):
    opened = model.vertices(jaw=torch.tensor([0.3]))[0]
    still = model.jaw_weights == 0
    assert still.sum() > model.num_vertices // 3
    assert torch.equal(opened[still], model.mean_vertices[still])


def test_eye_closure_closes_one_eye(model):
    closed = _landmarks(model, eye_close_left=1.0)
    left_gap = (closed[[43, 44]] - closed[[47, 46]]).norm(dim=-1)
    right_gap = (closed[[37, 38]] - closed[[41, 40]]).norm(dim=-1)
    assert (left_gap < 0.02).all()
    assert (right_gap > 0.5).all()


def test_expressions_do_not_move_eyeballs(model):
    eyeball = model.eye_vertices > 0
    assert model.expression_basis[:, eyeball].abs().max() == 0


def test_gaze_rotates_pupils_about_eye_centres(model):
    verts = model.vertices(gaze=torch.tensor([[0.0, 0.0], [0.3, 0.0], [0.0, 0.3]]))
    pupils = model.pupils_3d(verts)
    centres = model.eye_centres(verts)
    # Positive yaw moves the pupils towards +x, positive pitch moves them down.
    assert (pupils[1, :, 0] - pupils[0, :, 0] > 0.3).all()
    assert (pupils[2, :, 1] - pupils[0, :, 1] < -0.3).all()
    assert torch.allclose(centres[1], centres[0])
    radius = (pupils - centres).norm(dim=-1)
    assert torch.allclose(radius[1], radius[0], atol=1e-5)


def test_single_expressions_do_not_fold_skin(model):
    """A blendshape at full intensity must not flip any skin or lip triangle."""
    faces = model.faces
    interior = {"mouth_interior", "teeth", "tongue", "conjunctiva"}
    skin_faces = torch.tensor([
        not any(model.region_names[model.regions[v]] in interior for v in face) for face in faces.tolist()
    ])

    def normals(verts):
        a, b, c = verts[:, faces[:, 0]], verts[:, faces[:, 1]], verts[:, faces[:, 2]]
        return torch.linalg.cross(b - a, c - a, dim=-1)

    rest = normals(model.mean_vertices[None])[0]
    # Slivers under 1 mm^2 at the mouth corners are drawn double-sided and may flip.
    usable = skin_faces & (rest.norm(dim=-1) > 0.02)
    posed = normals(model.vertices(expression=torch.eye(model.num_expression)))
    flipped = ((posed * rest).sum(-1) < 0) & usable
    assert flipped.sum(dim=1).tolist() == [0] * model.num_expression


# ---------------------------------------------------------------------- camera


def test_euler_round_trip():
    generator = torch.Generator().manual_seed(0)
    angles = (torch.rand(200, 3, generator=generator) * 2 - 1) * torch.tensor([3.0, 1.5, 3.0])
    matrices = euler_to_matrix(angles)
    assert torch.allclose(matrices @ matrices.transpose(-1, -2), torch.eye(3).expand(200, 3, 3), atol=1e-5)
    assert torch.allclose(torch.linalg.det(matrices), torch.ones(200), atol=1e-5)
    assert torch.allclose(matrix_to_euler(matrices), angles, atol=1e-4)


def test_euler_axis_conventions():
    forward = torch.tensor([0.0, 0.0, 1.0])
    yaw = euler_to_matrix(torch.tensor([math.pi / 2, 0.0, 0.0])) @ forward
    pitch = euler_to_matrix(torch.tensor([0.0, math.pi / 2, 0.0])) @ forward
    roll = euler_to_matrix(torch.tensor([0.0, 0.0, math.pi / 2])) @ torch.tensor([1.0, 0.0, 0.0])
    assert torch.allclose(yaw, torch.tensor([1.0, 0.0, 0.0]), atol=1e-6)
    assert torch.allclose(pitch, torch.tensor([0.0, -1.0, 0.0]), atol=1e-6)
    assert torch.allclose(roll, torch.tensor([0.0, 1.0, 0.0]), atol=1e-6)


def test_euler_gimbal_lock_reconstructs_matrix():
    for pitch in (math.pi / 2, -math.pi / 2):
        matrix = euler_to_matrix(torch.tensor([0.5, pitch, 0.2], dtype=torch.float64))
        assert torch.allclose(euler_to_matrix(matrix_to_euler(matrix)), matrix, atol=1e-9)


def test_projection_follows_formula(model):
    angles = torch.tensor([[0.4, -0.2, 0.1]])
    camera = Camera(torch.tensor([0.07]), angles, torch.tensor([[0.05, -0.1]]))
    marks = model.landmarks_3d(batch_size=1)
    pixels = to_pixels(project(marks, camera), 96, 128)[0]
    rotated = marks[0] @ euler_to_matrix(angles[0]).T
    expected_x = 128 / 2 + (0.07 * rotated[:, 0] + 0.05) * 96 / 2
    expected_y = 96 / 2 - (0.07 * rotated[:, 1] - 0.1) * 96 / 2
    assert torch.allclose(pixels[:, 0], expected_x, atol=1e-4)
    assert torch.allclose(pixels[:, 1], expected_y, atol=1e-4)


def test_camera_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="rotation must have shape"):
        Camera(torch.ones(2), torch.zeros(3, 3), torch.zeros(2, 2))


# ---------------------------------------------------------------------- file format


def test_save_load_round_trip(model, tmp_path):
    path = tmp_path / "head.safetensors"
    model.save(path)
    loaded = MorphableHeadModel.load(path)
    assert loaded.expression_names == model.expression_names
    assert loaded.identity_names == model.identity_names
    assert loaded.region_names == model.region_names
    assert loaded.units == "cm"
    for name in ("mean_vertices", "faces", "identity_basis", "expression_basis", "landmark_indices", "regions",
                 "jaw_weights", "jaw_pivot", "eye_vertices", "pupil_indices", "eye_centre_indices"):
        assert torch.equal(getattr(loaded, name), getattr(model, name)), name
    generator = torch.Generator().manual_seed(1)
    identity = model.sample_identity(1, generator)
    jaw = torch.tensor([0.1])
    assert torch.equal(loaded.vertices(identity, jaw=jaw), model.vertices(identity, jaw=jaw))


def _user_model(num_vertices=80, num_faces=40):
    """A small random model as a user conversion would produce: no jaw, no eyeballs."""
    generator = torch.Generator().manual_seed(0)
    tensors = {
        "mean_vertices": torch.randn(num_vertices, 3, generator=generator),
        "faces": torch.randint(0, num_vertices, (num_faces, 3), generator=generator),
        "identity_basis": torch.randn(5, num_vertices, 3, generator=generator) * 0.01,
        "expression_basis": torch.randn(3, num_vertices, 3, generator=generator) * 0.01,
        "landmark_indices": torch.arange(68),
        "regions": torch.zeros(num_vertices, dtype=torch.int64),
    }
    metadata = {
        "format": FORMAT_NAME, "format_version": FORMAT_VERSION, "name": "user-model", "version": "0.1",
        "provenance": "random test data", "units": "m",
        "identity_names": [f"shape{i}" for i in range(5)], "expression_names": ["exp0", "exp1", "exp2"],
        "region_names": ["skin"],
    }
    return tensors, metadata


def _write(path, tensors, metadata):
    encoded = {k: json.dumps(v) if isinstance(v, list) else str(v) for k, v in metadata.items()}
    save_file(tensors, str(path), metadata=encoded)


def test_load_user_model_without_jaw_or_eyes(tmp_path):
    tensors, metadata = _user_model()
    path = tmp_path / "user.safetensors"
    _write(path, tensors, metadata)
    loaded = MorphableHeadModel.load(path)
    assert not loaded.has_jaw
    assert not loaded.has_eyes
    assert loaded.units == "m"
    verts = loaded.vertices(torch.zeros(2, 5), torch.ones(2, 3), jaw=torch.zeros(2), gaze=torch.zeros(2, 2))
    assert torch.allclose(verts[0], tensors["mean_vertices"] + tensors["expression_basis"].sum(0))
    with pytest.raises(ValueError, match="no jaw"):
        loaded.vertices(jaw=torch.ones(1))
    with pytest.raises(ValueError, match="no eyeballs"):
        loaded.vertices(gaze=torch.ones(1, 2))


def _broken(change):
    tensors, metadata = _user_model()
    change(tensors, metadata)
    return tensors, metadata


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda t, m: t.pop("faces"), "missing required tensors \\['faces'\\]"),
        (lambda t, m: t.update(extra=torch.zeros(1)), "unknown tensors \\['extra'\\]"),
        (lambda t, m: t.update(mean_vertices=torch.zeros(80, 2)), "mean_vertices must have shape"),
        (lambda t, m: t.update(faces=torch.tensor([[0, 1, 80]])), "faces index vertices outside"),
        (lambda t, m: t.update(faces=torch.zeros(4, 3)), "faces must have an integer dtype"),
        (lambda t, m: t.update(identity_basis=torch.zeros(5, 79, 3)), "identity_basis must have shape"),
        (lambda t, m: m.update(expression_names=["a", "b"]), "expression_names has 2 names but expression_basis has 3"),
        (lambda t, m: t.update(landmark_indices=torch.arange(5)), "iBUG 68-point"),
        (lambda t, m: t.update(regions=torch.ones(80, dtype=torch.int64)), "regions must index region_names"),
        (lambda t, m: t["mean_vertices"].__setitem__((0, 0), float("nan")), "NaN or infinite"),
        (lambda t, m: t.update(jaw_weights=torch.zeros(80)), "must be given together"),
        (
            lambda t, m: t.update(jaw_weights=torch.full((80,), 2.0), jaw_pivot=torch.zeros(3)),
            "jaw_weights must lie in",
        ),
        (lambda t, m: t.update(eye_vertices=torch.zeros(80, dtype=torch.int64), pupil_indices=torch.tensor([0, 1])),
         "marks no vertex as eyeball 1"),
        (lambda t, m: m.update(format="flame"), "expected 'zoo-morphable-head'"),
        (lambda t, m: m.update(format_version="7"), "format_version '7' is not supported"),
        (lambda t, m: m.update(units="inch"), "units must be one of"),
        (lambda t, m: m.pop("provenance"), "missing metadata keys \\['provenance'\\]"),
        (lambda t, m: m.update(region_names=["skin", "skin"]), "duplicate names"),
    ],
)
def test_invalid_model_rejected(change, message):
    tensors, metadata = _broken(change)
    with pytest.raises(MorphableModelFormatError, match=message):
        MorphableHeadModel.from_tensors(tensors, metadata)


def test_load_rejects_missing_metadata_in_file(tmp_path):
    tensors, metadata = _user_model()
    metadata.pop("units")
    path = tmp_path / "no-units.safetensors"
    _write(path, tensors, metadata)
    with pytest.raises(MorphableModelFormatError, match="lacks the metadata keys \\['units'\\]"):
        MorphableHeadModel.load(path)


def test_load_rejects_bad_json_names(tmp_path):
    tensors, metadata = _user_model()
    path = tmp_path / "bad-json.safetensors"
    encoded = {k: json.dumps(v) if isinstance(v, list) else str(v) for k, v in metadata.items()}
    encoded["expression_names"] = "[exp0, exp1"
    save_file(tensors, str(path), metadata=encoded)
    with pytest.raises(MorphableModelFormatError, match="not a JSON list"):
        MorphableHeadModel.load(path)


def test_load_rejects_corrupt_file(tmp_path):
    path = tmp_path / "corrupt.safetensors"
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not a header")
    with pytest.raises(MorphableModelFormatError, match="not a readable safetensors file"):
        MorphableHeadModel.load(path)


def test_load_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="morphable model file not found"):
        MorphableHeadModel.load(tmp_path / "absent.safetensors")
