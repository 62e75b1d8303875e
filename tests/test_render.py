"""Tests for the triangle rasteriser and the head renderer's images."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.ndimage import binary_dilation, binary_fill_holes

from zoo.geometry import (
    ALL_OUTPUTS,
    Camera,
    HeadRenderer,
    MorphableHeadModel,
    rasterize,
    render_background,
    sample_appearance,
)
from zoo.geometry.sketch import LANDMARK_GROUPS

SCALE = 0.075


@pytest.fixture(scope="module")
def model() -> MorphableHeadModel:
    return MorphableHeadModel.builtin()


@pytest.fixture(scope="module")
def renderer(model) -> HeadRenderer:
    return HeadRenderer(model, 128)


def _frontal(batch: int) -> Camera:
    return Camera.frontal(batch, scale=SCALE)


def _appearance(batch: int, seed: int = 0):
    return sample_appearance(batch, torch.Generator().manual_seed(seed))


def _region_pixels(model, out, names) -> torch.Tensor:
    """(B, H, W) True where the visible triangle has a vertex in one of the regions."""
    index = out["face_index"].clamp(min=0)
    ids = [model.region_names.index(name) for name in names]
    vertex_regions = model.regions[model.faces[index]]  # (B, H, W, 3)
    hit = torch.zeros_like(vertex_regions, dtype=torch.bool)
    for i in ids:
        hit |= vertex_regions == i
    return hit.any(-1) & (out["face_index"] >= 0)


# ---------------------------------------------------------------------- rasteriser


def test_rasterize_single_triangle_coverage():
    # Counter-clockwise as displayed (y down): front-facing.
    triangle = torch.tensor([[[1.0, 1.0, 0.0], [1.0, 7.0, 0.0], [7.0, 1.0, 0.0]]])
    fragments = rasterize(triangle, torch.tensor([[0, 1, 2]]), 8, 8)
    rows, cols = torch.meshgrid(torch.arange(8) + 0.5, torch.arange(8) + 0.5, indexing="ij")
    expected = (cols >= 1) & (rows >= 1) & (cols + rows <= 8)
    assert torch.equal(fragments.mask[0], expected)
    weights = fragments.barycentric[0][expected]
    assert torch.allclose(weights.sum(-1), torch.ones(int(expected.sum())))


def test_rasterize_culls_back_faces():
    triangle = torch.tensor([[[1.0, 1.0, 0.0], [7.0, 1.0, 0.0], [1.0, 7.0, 0.0]]])
    faces = torch.tensor([[0, 1, 2]])
    assert not rasterize(triangle, faces, 8, 8).mask.any()
    assert rasterize(triangle, faces, 8, 8, cull_backfaces=False).mask.any()
    assert rasterize(triangle, faces, 8, 8, cull_backfaces=torch.tensor([False])).mask.any()


def test_rasterize_keeps_nearest_triangle():
    far = [[0.0, 0.0, 1.0], [0.0, 8.0, 1.0], [8.0, 0.0, 1.0]]
    near = [[0.0, 0.0, 2.0], [0.0, 8.0, 2.0], [8.0, 0.0, 2.0]]
    for order in ((far, near), (near, far)):
        vertices = torch.tensor([order[0] + order[1]])
        fragments = rasterize(vertices, torch.tensor([[0, 1, 2], [3, 4, 5]]), 8, 8)
        nearest = 1 if order[1] is near else 0
        covered = fragments.mask[0]
        assert (fragments.face_index[0][covered] == nearest).all()
        assert torch.allclose(fragments.depth[0][covered], torch.full((int(covered.sum()),), 2.0))


def test_rasterize_rejects_bad_shapes():
    with pytest.raises(ValueError, match="screen_vertices must have shape"):
        rasterize(torch.zeros(3, 3), torch.tensor([[0, 1, 2]]), 8, 8)
    with pytest.raises(ValueError, match="cull_backfaces must be a bool or have shape"):
        rasterize(torch.zeros(1, 3, 3), torch.tensor([[0, 1, 2]]), 8, 8, cull_backfaces=torch.ones(2, dtype=torch.bool))


# ---------------------------------------------------------------------- renderer outputs


def test_render_outputs_and_shapes(model):
    for size in (64, 128, (80, 96)):
        renderer = HeadRenderer(model, size)
        height, width = (size, size) if isinstance(size, int) else size
        out = renderer.render_parameters(_frontal(2), _appearance(2))
        for name in ALL_OUTPUTS:
            channels = 1 if name in ("mask", "depth") else 3
            assert out[name].shape == (2, channels, height, width), (name, size)
        assert out["landmarks_2d"].shape == (2, 68, 2)
        assert out["pupils_2d"].shape == (2, 2, 2)
        assert out["rgb"].min() >= 0
        assert out["rgb"].max() <= 1


def test_render_is_deterministic(model, renderer):
    def draw(seed):
        generator = torch.Generator().manual_seed(seed)
        identity = model.sample_identity(3, generator)
        expression = torch.rand(3, model.num_expression, generator=generator) * 0.6
        appearance = sample_appearance(3, generator)
        camera = Camera(torch.full((3,), SCALE), (torch.rand(3, 3, generator=generator) - 0.5) * 0.6, torch.zeros(3, 2))
        return renderer.render_parameters(camera, appearance, identity, expression)

    first, second = draw(7), draw(7)
    for name in ALL_OUTPUTS + ("face_index", "landmarks_2d"):
        assert torch.equal(first[name], second[name]), name
    # A single image renders the same alone as inside a batch.
    generator = torch.Generator().manual_seed(7)
    identity = model.sample_identity(3, generator)
    expression = torch.rand(3, model.num_expression, generator=generator) * 0.6
    appearance = sample_appearance(3, generator)
    rotation = (torch.rand(3, 3, generator=generator) - 0.5) * 0.6
    alone = renderer.render_parameters(
        Camera(torch.full((1,), SCALE), rotation[1:2], torch.zeros(1, 2)),
        appearance.index([1]),
        identity[1:2],
        expression[1:2],
    )
    # Batched matrix products may round differently from single ones on some CPUs (BLAS kernel
    # choice depends on the batch), so the single render matches to float32 rounding.
    torch.testing.assert_close(alone["rgb"][0], first["rgb"][1], rtol=0.0, atol=1e-5)
    assert torch.equal(alone["face_index"][0], first["face_index"][1])


def test_mask_is_where_rgb_differs_from_background(renderer):
    appearance = _appearance(4, seed=3)
    rotation = torch.tensor([[0.0, 0, 0], [0.5, 0, 0], [0, 0.3, 0], [-0.4, -0.2, 0.2]])
    camera = Camera(torch.full((4,), SCALE), rotation, torch.zeros(4, 2))
    out = renderer.render_parameters(camera, appearance)
    background = render_background(appearance, 128, 128)
    differs = (out["rgb"] - background).abs().amax(dim=1) > 0
    mask = out["mask"][:, 0] > 0
    assert torch.equal(differs, mask)
    assert 0.15 < mask.float().mean() < 0.8


def test_nmfc_and_depth_cover_exactly_the_mask(renderer):
    out = renderer.render_parameters(_frontal(2), _appearance(2), outputs=("nmfc", "mask", "depth"))
    mask = out["mask"][:, 0] > 0
    assert torch.equal(out["nmfc"].abs().amax(dim=1) > 0, mask)
    assert torch.equal(out["depth"][:, 0] != 0, mask)
    assert out["nmfc"].max() <= 1.0


def test_nmfc_is_flat_per_triangle(model, renderer):
    out = renderer.render_parameters(_frontal(1), None, outputs=("nmfc",))
    index = out["face_index"][0]
    colours = out["nmfc"][0].permute(1, 2, 0)
    covered = index >= 0
    assert torch.equal(colours[covered], renderer.nmfc_faces[index[covered]])
    # Colours are the min-max normalised mean-face coordinates: the nose tip is the most forward.
    nose = model.mean_vertices[model.landmark_indices[30]]
    mean = model.mean_vertices[torch.unique(model.faces)]
    expected_z = (nose[2] - mean[:, 2].min()) / (mean[:, 2].max() - mean[:, 2].min())
    tip = out["landmarks_2d"][0, 30].long()
    assert abs(float(colours[tip[1], tip[0], 2]) - float(expected_z)) < 0.03


def test_visible_landmarks_fall_inside_mask(renderer):
    rotation = torch.tensor([[0.0, 0, 0], [0.6, 0.1, 0], [-0.3, -0.3, 0.2]])
    camera = Camera(torch.full((3,), SCALE), rotation, torch.zeros(3, 2))
    out = renderer.render_parameters(camera, _appearance(3))
    # Jaw-line landmarks sit on the silhouette, so allow one pixel of tolerance.
    square = np.ones((3, 3), dtype=bool)
    mask = torch.from_numpy(np.stack([binary_dilation(m, square) for m in out["mask"][:, 0].numpy() > 0]))
    points = out["landmarks_2d"].floor().long()
    for i in range(3):
        visible = out["landmarks_visible"][i]
        assert visible.sum() >= 40
        inside = mask[i, points[i, visible, 1], points[i, visible, 0]]
        assert inside.all()
    # Without hair, a frontal face shows every landmark. Turned far, some jaw points are hidden.
    bare = renderer.render_parameters(camera, None, outputs=("mask",))
    assert bare["landmarks_visible"][0].all()
    assert not bare["landmarks_visible"][1].all()


def test_sketch_lines_follow_landmarks(renderer):
    out = renderer.render_parameters(_frontal(1), _appearance(1), outputs=("sketch", "mask"))
    sketch = out["sketch"][0].amax(dim=0).numpy() > 0.1
    points = out["landmarks_2d"][0].numpy()
    # Every landmark pixel is drawn on.
    for x, y in points:
        assert sketch[int(y), int(x)]
    # Every drawn pixel lies within two pixels of a group's polyline, and inside the face.
    near = np.zeros_like(sketch)
    for _, indices, closed, _ in LANDMARK_GROUPS:
        polyline = points[list(indices) + ([indices[0]] if closed else [])]
        for a, b in zip(polyline[:-1], polyline[1:]):
            for t in np.linspace(0.0, 1.0, 40):
                x, y = a + (b - a) * t
                near[int(y), int(x)] = True
    near = binary_dilation(near, iterations=2)
    assert not (sketch & ~near).any()
    mask = binary_dilation(out["mask"][0, 0].numpy() > 0, iterations=2)
    assert not (sketch & ~mask).any()


def test_eye_image_discs_at_pupils(renderer):
    out = renderer.render_parameters(_frontal(1), _appearance(1), outputs=("eyes",))
    eyes = out["eyes"][0]
    red = (eyes[0] > 0.5) & (eyes[1] < 0.3)
    for x, y in out["pupils_2d"][0].tolist():
        assert red[int(y), int(x)]
    ys, xs = red.nonzero(as_tuple=True)
    pupils = out["pupils_2d"][0]
    distance = torch.cdist(torch.stack([xs, ys], -1).float() + 0.5, pupils).amin(dim=1)
    openings = (out["landmarks_2d"][0, 37] - out["landmarks_2d"][0, 41]).norm()
    assert distance.max() <= openings
    white = (eyes.amin(dim=0) > 0.5)
    assert white.any()


def test_eye_image_without_discs_when_closed(model, renderer):
    expression = model.expression_vector(eye_close_left=1.0, eye_close_right=1.0)[None]
    out = renderer.render_parameters(_frontal(1), _appearance(1), expression=expression, outputs=("eyes",))
    eyes = out["eyes"][0]
    assert not ((eyes[0] > 0.5) & (eyes[1] < 0.3)).any()


# ---------------------------------------------------------------------- expressions in the image


def _box(points, margin):
    low = points.amin(dim=0).floor().long() - margin
    high = points.amax(dim=0).ceil().long() + margin
    return slice(int(low[1]), int(high[1])), slice(int(low[0]), int(high[0]))


def test_smile_changes_mouth_not_forehead(model, renderer):
    appearance = _appearance(1, seed=4)
    neutral = renderer.render_parameters(_frontal(1), appearance)
    happy = renderer.render_parameters(
        _frontal(1), appearance, expression=model.expression_vector(AU12=1.0, AU25=1.0)[None]
    )
    difference = (happy["rgb"][0] - neutral["rgb"][0]).abs().amax(dim=0)
    marks = neutral["landmarks_2d"][0]
    rows, cols = _box(marks[48:68], margin=2)
    assert float(difference[rows, cols].mean()) > 0.05
    # Forehead: above the eyebrows, between the outer brow ends.
    brow_top = int(marks[17:27, 1].min()) - 2
    forehead = difference[brow_top - 12 : brow_top, int(marks[17, 0]) : int(marks[26, 0])]
    assert float(forehead.max()) == 0.0


def test_gaze_moves_pupils_in_image(model, renderer):
    appearance = _appearance(1)
    gazes = torch.tensor([[-0.35, 0.0], [0.0, 0.0], [0.35, 0.0]])
    out = renderer.render_parameters(_frontal(3), appearance.index([0, 0, 0]), gaze=gazes)
    pupil_x = out["pupils_2d"][:, :, 0]
    assert (pupil_x[2] - pupil_x[1] > 1.0).all()
    assert (pupil_x[1] - pupil_x[0] > 1.0).all()
    # The rendered pupil pixels move the same way.
    pupils = _region_pixels(model, out, ["pupil"])
    centres = [float(pupils[i].nonzero(as_tuple=True)[1].float().mean()) for i in range(3)]
    assert centres[0] < centres[1] < centres[2]


def test_eye_closure_hides_iris(model, renderer):
    appearance = _appearance(2)
    closed = model.expression_vector(eye_close_left=1.0, eye_close_right=1.0)
    expression = torch.stack([torch.zeros(model.num_expression), closed])
    out = renderer.render_parameters(_frontal(2), appearance, expression=expression)
    iris = _region_pixels(model, out, ["iris", "pupil"])
    assert iris[0].sum() > 10
    assert iris[1].sum() == 0


def test_one_eye_closure_keeps_other_iris(model, renderer):
    expression = model.expression_vector(eye_close_left=1.0)[None]
    out = renderer.render_parameters(_frontal(1), _appearance(1), expression=expression)
    iris = _region_pixels(model, out, ["iris"])[0]
    columns = iris.nonzero(as_tuple=True)[1].float()
    # The subject's left eye is on the image right: only the image-left iris remains.
    assert columns.numel() > 5
    assert float(columns.max()) < 64


def test_no_holes_in_random_heads(model):
    renderer = HeadRenderer(model, 96)
    generator = torch.Generator().manual_seed(11)
    batch = 24
    identity = model.sample_identity(batch, generator)
    expression = torch.rand(batch, model.num_expression, generator=generator)
    expression = expression * (torch.rand(batch, model.num_expression, generator=generator) < 0.3)
    limits = torch.tensor([math.radians(120), math.radians(50), 0.5])
    rotation = (torch.rand(batch, 3, generator=generator) - 0.5) * limits
    camera = Camera(torch.full((batch,), SCALE), rotation, torch.zeros(batch, 2))
    jaw = torch.rand(batch, generator=generator) * 0.25
    gaze = (torch.rand(batch, 2, generator=generator) - 0.5) * 0.8
    out = renderer.render_parameters(camera, None, identity, expression, jaw, gaze, outputs=("mask",))
    holes = [int((binary_fill_holes(m) & ~m).sum()) for m in out["mask"][:, 0].numpy() > 0]
    assert holes == [0] * batch


# ---------------------------------------------------------------------- guards


def test_render_rejects_bad_inputs(model, renderer):
    vertices = model.vertices(batch_size=2)
    with pytest.raises(ValueError, match="unknown outputs \\['albedo'\\]"):
        renderer.render(vertices, _frontal(2), _appearance(2), outputs=("albedo",))
    with pytest.raises(ValueError, match="2 meshes but 3 cameras"):
        renderer.render(vertices, _frontal(3), _appearance(2))
    with pytest.raises(ValueError, match="needs an Appearance"):
        renderer.render(vertices, _frontal(2), None)
    with pytest.raises(ValueError, match="vertices must have shape"):
        renderer.render(vertices[:, :10], _frontal(2), _appearance(2))
    with pytest.raises(ValueError, match="image size must be at least"):
        HeadRenderer(model, 4)


def test_render_user_model_without_eyes():
    generator = torch.Generator().manual_seed(0)
    # A closed box with its 68 landmarks on the corners: a minimal model in the file format.
    corners = torch.tensor([[x, y, z] for x in (-1.0, 1.0) for y in (-1.0, 1.0) for z in (-1.0, 1.0)]) * 8
    faces = torch.tensor([[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
                          [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]])
    tensors = {
        "mean_vertices": corners, "faces": faces,
        "identity_basis": torch.randn(2, 8, 3, generator=generator) * 0.1,
        "expression_basis": torch.randn(1, 8, 3, generator=generator) * 0.1,
        "landmark_indices": torch.arange(68) % 8, "regions": torch.zeros(8, dtype=torch.int64),
    }
    metadata = {
        "format": "zoo-morphable-head", "format_version": "1", "name": "box", "version": "1",
        "provenance": "test", "units": "cm", "identity_names": ["a", "b"], "expression_names": ["e"],
        "region_names": ["skin"],
    }
    box = MorphableHeadModel.from_tensors(tensors, metadata)
    out = HeadRenderer(box, 64).render_parameters(_frontal(2), _appearance(2))
    assert "eyes" not in out
    assert out["mask"].sum() > 0
    assert out["sketch"].shape == (2, 3, 64, 64)


def test_appearance_sampling_is_seeded():
    first = _appearance(5, seed=9)
    second = _appearance(5, seed=9)
    other = _appearance(5, seed=10)
    assert torch.equal(first.skin, second.skin)
    assert torch.equal(first.background_noise, second.background_noise)
    assert not torch.equal(first.skin, other.skin)
    assert torch.allclose(first.light_direction.norm(dim=-1), torch.ones(5))
