"""Tests of the FLAME-to-zoo converter on random models with FLAME's array layout."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file

from zoo.geometry.flame import FlameConversionError, convert_flame, flame_arrays_to_model, read_arrays
from zoo.geometry.morphable import MorphableHeadModel
from zoo.models.dad3dnet import DAD3DNet


def random_flame(
    num_vertices: int = 300, num_faces: int = 500, num_shape: int = 8, num_expression: int = 4, seed: int = 0
) -> dict[str, np.ndarray]:
    """A random model with FLAME's arrays and joint order: global, neck, jaw, left eye, right eye."""
    rng = np.random.default_rng(seed)
    template = rng.normal(scale=0.05, size=(num_vertices, 3))
    # Vertices 0-19 form an eyeball on the subject's right (-x) and 20-39 one on the left (+x).
    # The right one is skinned to joint 3, so the converter must sort the eyes by side, not by joint.
    template[:20] = [-0.03, 0.03, 0.05] + rng.normal(scale=0.005, size=(20, 3))
    template[20:40] = [0.03, 0.03, 0.05] + rng.normal(scale=0.005, size=(20, 3))
    weights = np.zeros((num_vertices, 5))
    weights[:, 0] = 1.0
    weights[:20] = [0, 0, 0, 1, 0]
    weights[20:40] = [0, 0, 0, 0, 1]
    weights[40:100, 0] = 0.4
    weights[40:100, 2] = 0.6  # the jaw
    regressor = rng.random((5, num_vertices))
    regressor /= regressor.sum(axis=1, keepdims=True)
    faces = rng.integers(0, num_vertices, size=(num_faces, 3))
    barycentric = rng.dirichlet(np.ones(3), size=(1, 68))
    return {
        "v_template": template,
        "f": faces.astype(np.uint32),
        "shapedirs": rng.normal(scale=0.01, size=(num_vertices, 3, num_shape + num_expression)),
        "posedirs": rng.normal(size=(num_vertices, 3, 36)),
        "weights": weights,
        "J_regressor": regressor,
        "kintree_table": np.array([[-1, 0, 1, 1, 1], [0, 1, 2, 3, 4]]),
        "full_lmk_faces_idx": rng.integers(0, num_faces, size=(1, 68)),
        "full_lmk_bary_coords": barycentric,
    }


def test_npz_round_trip_matches_linear_model(tmp_path):
    arrays = random_flame()
    np.savez(tmp_path / "flame.npz", **arrays)
    convert_flame(
        tmp_path / "flame.npz", tmp_path / "head.safetensors", num_identity=6, num_expression=3,
        num_shape_components=8, units="cm",
    )
    model = MorphableHeadModel.load(tmp_path / "head.safetensors")
    assert model.units == "cm"
    assert (model.num_identity, model.num_expression) == (6, 3)

    identity = torch.randn(1, 6, dtype=torch.float64)
    expression = torch.randn(1, 3, dtype=torch.float64)
    shapedirs = torch.from_numpy(arrays["shapedirs"])
    # FLAME's shape blend: v_template + shapedirs @ [betas for 8 shape | 4 expression], in metres.
    betas = torch.zeros(12, dtype=torch.float64)
    betas[:6], betas[8:11] = identity[0], expression[0]
    expected = (torch.from_numpy(arrays["v_template"]) + shapedirs @ betas) * 100.0
    vertices = model.vertices(identity.float(), expression.float())
    assert torch.allclose(vertices[0].double(), expected, atol=1e-4)


def test_landmarks_take_largest_barycentric_corner():
    arrays = random_flame()
    model = flame_arrays_to_model(arrays, num_identity=8, num_expression=4, num_shape_components=8)
    face_ids = arrays["full_lmk_faces_idx"][0]
    corners = arrays["full_lmk_bary_coords"][0].argmax(axis=1)
    expected = arrays["f"][face_ids, corners].astype(np.int64)
    assert np.array_equal(model.landmark_indices.numpy(), expected)


def test_jaw_and_eyes_from_skinning():
    arrays = random_flame()
    model = flame_arrays_to_model(arrays, num_identity=8, num_expression=4, num_shape_components=8)
    assert torch.allclose(model.jaw_weights[40:100], torch.full((60,), 0.6))
    assert model.jaw_weights[100:].abs().max().item() == 0.0
    pivot = arrays["J_regressor"][2] @ arrays["v_template"]
    assert np.allclose(model.jaw_pivot.numpy(), pivot, atol=1e-6)
    # Left eyeball (1) is the one at +x although FLAME's joint 3 skins the -x vertices here.
    assert (model.eye_vertices[20:40] == 1).all()
    assert (model.eye_vertices[:20] == 2).all()
    left_pupil = int(model.pupil_indices[0])
    assert left_pupil == 20 + int(arrays["v_template"][20:40, 2].argmax())
    assert model.region_names[int(model.regions[0])] == "sclera"


def test_jaw_opens_about_pivot():
    arrays = random_flame()
    model = flame_arrays_to_model(arrays, num_identity=8, num_expression=4, num_shape_components=8)
    closed = model.vertices(jaw=torch.zeros(1))
    opened = model.vertices(jaw=torch.full((1,), 0.2))
    moved = (opened - closed).norm(dim=-1)[0]
    assert moved[40:100].min().item() > 0.0
    assert moved[100:].max().item() == 0.0


def test_separate_landmark_file_and_safetensors(tmp_path):
    arrays = {name: np.ascontiguousarray(value) for name, value in random_flame().items()}
    landmarks = {"landmark_indices": np.arange(68, dtype=np.int64)}
    model_arrays = {k: v for k, v in arrays.items() if not k.startswith("full_lmk")}
    save_file(model_arrays, str(tmp_path / "flame.safetensors"))
    np.savez(tmp_path / "landmarks.npz", **landmarks)
    model = convert_flame(
        tmp_path / "flame.safetensors", landmark_path=tmp_path / "landmarks.npz",
        num_identity=8, num_expression=4, num_shape_components=8,
    )
    assert torch.equal(model.landmark_indices, torch.arange(68))


def test_rejects_pickles(tmp_path):
    (tmp_path / "generic_model.pkl").write_bytes(b"not read")
    with pytest.raises(FlameConversionError, match="only .npz and .safetensors"):
        read_arrays(tmp_path / "generic_model.pkl")
    np.savez(tmp_path / "objects.npz", v_template=np.array([{"a": 1}], dtype=object))
    with pytest.raises(FlameConversionError, match="pickled objects"):
        read_arrays(tmp_path / "objects.npz")


def test_rejects_incomplete_or_unknown_arrays():
    arrays = random_flame()
    without_landmarks = {k: v for k, v in arrays.items() if not k.startswith("full_lmk")}
    with pytest.raises(FlameConversionError, match="no 68-point landmarks"):
        flame_arrays_to_model(without_landmarks, num_identity=8, num_expression=4, num_shape_components=8)
    with pytest.raises(FlameConversionError, match="unknown arrays"):
        flame_arrays_to_model({**arrays, "shapedir": arrays["shapedirs"]}, num_shape_components=8)
    with pytest.raises(FlameConversionError, match="num_expression"):
        flame_arrays_to_model(arrays, num_identity=8, num_expression=5, num_shape_components=8)


def test_flame_sized_model_converts():
    # FLAME 2020's sizes: 5,023 vertices, 9,976 faces, 300 shape and 100 expression components.
    arrays = random_flame(num_vertices=5023, num_faces=9976, num_shape=300, num_expression=100)
    arrays["shapedirs"] = arrays["shapedirs"].astype(np.float32)
    arrays["posedirs"] = arrays["posedirs"][:, :, :1]
    model = flame_arrays_to_model(arrays)
    assert model.identity_basis.shape == (300, 5023, 3)
    assert model.expression_basis.shape == (100, 5023, 3)
    assert model.faces.shape == (9976, 3)


def test_dad3dnet_decodes_converted_model():
    model = flame_arrays_to_model(random_flame(), num_identity=8, num_expression=4, num_shape_components=8)
    torch.manual_seed(0)
    network = DAD3DNet(
        image_size=64, num_identity=8, num_expression=4, stem_width=4, encoder_widths=(8, 8, 16, 16),
        pyramid_channels=8, head_hidden=16,
    )
    network.set_head_model(model)
    decoded = network.decode(network(torch.randn(1, 3, 64, 64)))
    assert decoded["vertices_2d"].shape == (1, 300, 2)
    assert torch.isfinite(decoded["vertices_2d"]).all()
