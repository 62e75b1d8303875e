"""Tests for the reenactment conditioning images and the motion-transfer step."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from zoo.data.synthheads.dataset import BASE_SCALE, builtin_model
from zoo.geometry import HeadRenderer, sample_appearance
from zoo.reenactment import (
    CONDITION_CHANNELS,
    CONDITION_KINDS,
    CameraStatistics,
    MotionParameters,
    camera_statistics,
    conditioning_channels,
    moving_average,
    render_conditioning,
    stack_conditioning,
    transfer_motion,
)

SIZE = 48


@pytest.fixture(scope="module")
def model():
    return builtin_model()


@pytest.fixture(scope="module")
def renderer(model) -> HeadRenderer:
    return HeadRenderer(model, image_size=SIZE)


@pytest.fixture(scope="module")
def identities(model) -> torch.Tensor:
    return model.sample_identity(2, torch.Generator().manual_seed(0))


def _motion(
    identity: torch.Tensor,
    frames: int = 4,
    *,
    pose=(0.0, 0.0, 0.0),
    scale: torch.Tensor | None = None,
    translation: torch.Tensor | None = None,
    seed: int = 0,
) -> MotionParameters:
    """Build a small clip: fixed pose, a little expression, jaw and gaze that vary per frame."""
    generator = torch.Generator().manual_seed(seed)
    return MotionParameters(
        identity=identity.expand(frames, -1),
        expression=torch.rand(frames, 19, generator=generator) * 0.3,
        jaw=torch.linspace(0.0, 0.2, frames),
        gaze=(torch.rand(frames, 2, generator=generator) - 0.5) * 0.4,
        pose=torch.tensor(pose, dtype=torch.float32).expand(frames, 3),
        scale=torch.full((frames,), BASE_SCALE) if scale is None else scale,
        translation=torch.zeros(frames, 2) if translation is None else translation,
    )


def _camera_motion(scale: torch.Tensor, translation: torch.Tensor, num_identity: int = 32) -> MotionParameters:
    frames = scale.shape[0]
    generator = torch.Generator().manual_seed(1)
    return MotionParameters(
        identity=torch.zeros(frames, num_identity),
        expression=torch.rand(frames, 19, generator=generator),
        jaw=torch.rand(frames, generator=generator) * 0.2,
        gaze=torch.rand(frames, 2, generator=generator) - 0.5,
        pose=torch.rand(frames, 3, generator=generator) - 0.5,
        scale=scale,
        translation=translation,
    )


def _wave_camera(frames: int = 40, scale_mean: float = 0.07, offset: tuple[float, float] = (0.0, 0.0)):
    time = torch.arange(frames, dtype=torch.float32)
    scale = scale_mean + 0.004 * torch.sin(time / 3.0)
    translation = torch.stack([0.05 * torch.sin(time / 5.0), 0.03 * torch.cos(time / 4.0)], dim=1)
    return scale, translation + torch.tensor(offset)


# ---------------------------------------------------------------------- kinds and stacking


def test_condition_channels_table():
    assert CONDITION_KINDS == ("nmfc", "eyes", "shape", "mask", "sketch")
    assert CONDITION_CHANNELS == {"nmfc": 3, "eyes": 3, "shape": 3, "mask": 1, "sketch": 3}
    assert conditioning_channels(("nmfc", "eyes")) == 6
    assert conditioning_channels(("nmfc", "eyes", "shape")) == 9
    assert conditioning_channels(CONDITION_KINDS) == 13


@pytest.mark.parametrize(
    "kinds, message",
    [
        (("nmfc", "normals"), "unknown conditioning kinds"),
        ((), "kinds is empty"),
        ("nmfc", "sequence of names"),
        (("nmfc", "nmfc"), "more than once"),
    ],
)
def test_invalid_kinds_rejected(kinds, message):
    with pytest.raises(ValueError, match=message) as raised:
        conditioning_channels(kinds)
    assert "nmfc" in str(raised.value)
    with pytest.raises(ValueError, match=message):
        stack_conditioning({}, kinds)


def test_unknown_kind_lists_all_kinds(renderer, identities):
    with pytest.raises(ValueError) as raised:
        render_conditioning(renderer, _motion(identities[0], 1), ("depth",))
    for kind in CONDITION_KINDS:
        assert kind in str(raised.value)


def test_stack_conditioning_order_and_range():
    images = {
        "nmfc": torch.rand(2, 3, 8, 8),
        "eyes": torch.zeros(2, 3, 8, 8),
        "mask": torch.ones(2, 1, 8, 8),
    }
    stacked = stack_conditioning(images, ("mask", "nmfc", "eyes"))
    assert stacked.shape == (2, 7, 8, 8)
    assert torch.equal(stacked[:, 0:1], torch.ones(2, 1, 8, 8))
    assert torch.allclose(stacked[:, 1:4], images["nmfc"] * 2 - 1)
    assert torch.equal(stacked[:, 4:7], -torch.ones(2, 3, 8, 8))


def test_stack_conditioning_single_frame():
    stacked = stack_conditioning({"nmfc": torch.zeros(3, 8, 8), "mask": torch.ones(1, 8, 8)}, ("nmfc", "mask"))
    assert stacked.shape == (4, 8, 8)


def test_stack_conditioning_missing_or_wrong_image():
    with pytest.raises(KeyError, match="missing"):
        stack_conditioning({"nmfc": torch.zeros(1, 3, 8, 8)}, ("nmfc", "shape"))
    with pytest.raises(ValueError, match="'mask' image must have shape"):
        stack_conditioning({"mask": torch.zeros(1, 3, 8, 8)}, ("mask",))


# ---------------------------------------------------------------------- MotionParameters


def _clip_row(frames: int = 6) -> dict:
    rng = np.random.default_rng(0)
    return {
        "identity_coefficients": rng.normal(size=32).astype(np.float32).tolist(),
        "expression_parameters": rng.uniform(size=(frames, 19)).astype(np.float32),
        "jaw": rng.uniform(0.0, 0.2, size=frames).astype(np.float32),
        "gaze": rng.normal(scale=0.1, size=(frames, 2)).astype(np.float32).tolist(),
        "pose": rng.normal(scale=0.2, size=(frames, 3)).astype(np.float32),
        "scale": np.full(frames, BASE_SCALE, dtype=np.float32),
        "translation": rng.normal(scale=0.02, size=(frames, 2)).astype(np.float32),
        "frames": ["not used"] * frames,
    }


def test_motion_from_clip_row():
    row = _clip_row(6)
    motion = MotionParameters.from_clip_row(row)
    assert motion.num_frames == 6
    assert motion.identity.shape == (6, 32)
    assert motion.identity.dtype == torch.float32
    expected_identity = torch.tensor(row["identity_coefficients"])
    for frame in range(6):
        assert torch.equal(motion.identity[frame], expected_identity)
    assert torch.equal(motion.expression, torch.from_numpy(row["expression_parameters"]))
    assert torch.equal(motion.gaze, torch.tensor(row["gaze"]))
    assert torch.equal(motion.pose, torch.from_numpy(row["pose"]))
    camera = motion.camera()
    assert torch.equal(camera.rotation, motion.pose)
    assert torch.equal(camera.scale, motion.scale)


def test_motion_from_clip_row_selects_frames():
    row = _clip_row(6)
    part = MotionParameters.from_clip_row(row, frames=slice(2, 5))
    assert part.num_frames == 3
    assert torch.equal(part.jaw, torch.from_numpy(row["jaw"][2:5]))
    picked = MotionParameters.from_clip_row(row, frames=[5, 0])
    assert torch.equal(picked.translation, torch.from_numpy(row["translation"][[5, 0]]))


def test_motion_index_keeps_frame_axis():
    motion = MotionParameters.from_clip_row(_clip_row(6))
    single = motion.index(3)
    assert single.num_frames == 1
    assert single.pose.shape == (1, 3)
    assert single.scale.shape == (1,)
    assert torch.equal(single.pose[0], motion.pose[3])


def test_motion_from_clip_row_missing_column():
    row = _clip_row(4)
    del row["gaze"]
    with pytest.raises(KeyError, match="gaze"):
        MotionParameters.from_clip_row(row)


def test_motion_mismatched_lengths_name_field():
    row = _clip_row(6)
    row["jaw"] = row["jaw"][:5]
    with pytest.raises(ValueError, match=r"jaw must have shape \(6,\).*got \(5,\)"):
        MotionParameters.from_clip_row(row)
    with pytest.raises(ValueError, match=r"gaze must have shape \(3, 2\).*got \(3, 3\)"):
        MotionParameters(
            identity=torch.zeros(3, 32), expression=torch.zeros(3, 19), jaw=torch.zeros(3), gaze=torch.zeros(3, 3),
            pose=torch.zeros(3, 3), scale=torch.ones(3), translation=torch.zeros(3, 2),
        )


def test_motion_rejects_empty_and_non_finite():
    with pytest.raises(ValueError, match="at least one frame"):
        _camera_motion(torch.zeros(0), torch.zeros(0, 2))
    scale = torch.full((3,), 0.07)
    scale[1] = float("nan")
    with pytest.raises(ValueError, match="scale contains NaN"):
        _camera_motion(scale, torch.zeros(3, 2))


# ---------------------------------------------------------------------- rendering


def test_render_shapes_and_ranges(renderer, identities):
    frames = 5
    images = render_conditioning(renderer, _motion(identities[0], frames), CONDITION_KINDS, batch_size=2)
    assert set(images) == {*CONDITION_KINDS, "landmarks_2d"}
    for kind in CONDITION_KINDS:
        image = images[kind]
        assert image.shape == (frames, CONDITION_CHANNELS[kind], SIZE, SIZE), kind
        assert image.dtype == torch.float32, kind
        assert float(image.min()) >= 0.0, kind
        assert float(image.max()) <= 1.0, kind
    assert images["landmarks_2d"].shape == (frames, 68, 2)
    assert 0.1 < float(images["mask"].mean()) < 0.9


def test_render_default_kinds_add_mask(renderer, identities):
    images = render_conditioning(renderer, _motion(identities[0], 2))
    assert set(images) == {"nmfc", "eyes", "mask", "landmarks_2d"}
    stacked = stack_conditioning(images, ("nmfc", "eyes"))
    assert stacked.shape == (2, 6, SIZE, SIZE)
    assert float(stacked.min()) >= -1.0
    assert float(stacked.max()) <= 1.0


def test_mask_agrees_with_nmfc_and_shape(renderer, identities):
    images = render_conditioning(renderer, _motion(identities[1], 3, pose=(0.4, 0.1, -0.1)), ("nmfc", "shape"))
    mask = images["mask"][:, 0] > 0
    assert torch.equal(mask, images["nmfc"].amax(dim=1) > 0)
    assert torch.equal(mask, images["shape"].amax(dim=1) > 0)
    assert float(images["shape"].sum(dim=1)[~mask].abs().max()) == 0.0


def test_batching_matches_one_call(renderer, identities):
    motion = _motion(identities[0], 5, pose=(-0.3, 0.0, 0.1))
    whole = render_conditioning(renderer, motion, ("nmfc", "shape", "sketch"))
    batched = render_conditioning(renderer, motion, ("nmfc", "shape", "sketch"), batch_size=2)
    assert set(whole) == set(batched)
    # Batched matrix products may round differently, so landmarks match to float precision and
    # a pixel on a triangle edge may change hands.
    assert torch.allclose(whole["landmarks_2d"], batched["landmarks_2d"], atol=1e-4)
    for name in ("nmfc", "shape", "sketch", "mask"):
        changed = (whole[name] - batched[name]).abs().amax(dim=1) > 1e-4
        assert float(changed.float().mean()) < 0.002, name


def test_shape_differs_between_identities(renderer, identities):
    first = render_conditioning(renderer, _motion(identities[0], 1), ("nmfc", "shape"))
    second = render_conditioning(renderer, _motion(identities[1], 1), ("nmfc", "shape"))
    in_both = (first["mask"][:, 0] > 0) & (second["mask"][:, 0] > 0)
    # NMFC colours a triangle by its mean-face position, so where the same triangle is visible
    # in both renders the NMFC is identical, and only the silhouette and feature positions differ.
    same_triangle = in_both & (first["nmfc"] == second["nmfc"]).all(dim=1)
    assert int(same_triangle.sum()) > 100
    shape_change = (first["shape"] - second["shape"]).abs().amax(dim=1)[same_triangle]
    assert float(shape_change.mean()) > 0.02
    assert float((shape_change > 0.02).float().mean()) > 0.3


def test_shape_is_identical_for_same_identity(renderer, identities):
    first = render_conditioning(renderer, _motion(identities[0], 1, seed=3), ("shape",))
    second = render_conditioning(renderer, _motion(identities[0], 1, seed=3), ("shape",))
    assert torch.equal(first["shape"], second["shape"])


def test_shape_frontal_faces_camera(renderer, identities):
    images = render_conditioning(renderer, _motion(identities[0], 1), ("shape",))
    mask = images["mask"][0, 0] > 0
    normal = images["shape"][0][:, mask].mean(dim=1) * 2.0 - 1.0
    assert abs(float(normal[0])) < 0.05
    assert float(normal[2]) > 0.5


@pytest.mark.parametrize("pose", [(0.0, 0.0, 0.0), (0.6, 0.0, 0.0), (-0.6, 0.3, 0.2), (0.0, 0.5, 0.0)])
def test_shape_normals_match_depth_gradient(renderer, identities, pose):
    motion = _motion(identities[0], 1, pose=pose)
    images = render_conditioning(renderer, motion, ("shape",))
    depth_render = renderer.render_parameters(
        motion.camera(), identity=motion.identity, expression=motion.expression, jaw=motion.jaw, gaze=motion.gaze,
        outputs=("depth", "mask"),
    )
    # Depth is camera z in normalised image units (larger is nearer), and one pixel is 2 / SIZE
    # of them. The surface z(x, y) has the normal (-dz/dx, -dz/dy, 1) with y up, and image rows
    # run down, so the y component is +dz/drow.
    depth = depth_render["depth"][0, 0]
    pixel = 2.0 / SIZE
    dz_dx = (depth[1:-1, 2:] - depth[1:-1, :-2]) / (2 * pixel)
    dz_drow = (depth[2:, 1:-1] - depth[:-2, 1:-1]) / (2 * pixel)
    expected = torch.stack([-dz_dx, dz_drow, torch.ones_like(dz_dx)])
    expected = expected / expected.norm(dim=0, keepdim=True)

    # Only pixels whose 3x3 neighbourhood is all foreground have a meaningful difference.
    mask = depth_render["mask"][0]
    interior = (-torch.nn.functional.max_pool2d(-mask[None], 3, stride=1, padding=1))[0, 0, 1:-1, 1:-1] == 1
    normal = images["shape"][0, :, 1:-1, 1:-1] * 2.0 - 1.0
    cosine = (expected * normal).sum(dim=0)[interior]
    assert int(interior.sum()) > 300
    assert float(cosine.median()) > 0.99
    assert float((cosine > 0.8).float().mean()) > 0.9


def test_render_with_appearance_adds_hair(renderer, identities):
    frames = 2
    appearance = sample_appearance(frames, torch.Generator().manual_seed(4))
    motion = _motion(identities[0], frames)
    bare = render_conditioning(renderer, motion, ("nmfc", "shape"))
    dressed = render_conditioning(renderer, motion, ("nmfc", "shape"), appearance=appearance, batch_size=1)
    mask = dressed["mask"][:, 0] > 0
    assert torch.equal(mask, dressed["shape"].amax(dim=1) > 0)
    # Hair volume can only widen the silhouette.
    assert bool(((bare["mask"] > 0) <= (dressed["mask"] > 0)).all())
    with pytest.raises(ValueError, match="appearance has 1 rows"):
        render_conditioning(renderer, motion, appearance=appearance.index(slice(0, 1)))


def test_render_rejects_other_model_widths(renderer):
    motion = _camera_motion(torch.full((2,), BASE_SCALE), torch.zeros(2, 2), num_identity=5)
    with pytest.raises(ValueError, match="motion.identity has 5 coefficients"):
        render_conditioning(renderer, motion)
    with pytest.raises(ValueError, match="batch_size"):
        render_conditioning(renderer, _camera_motion(torch.full((2,), BASE_SCALE), torch.zeros(2, 2)), batch_size=0)


# ---------------------------------------------------------------------- transfer


def test_transfer_mixes_source_and_target(identities):
    scale, translation = _wave_camera()
    source = _camera_motion(scale, translation)
    target = camera_statistics(_camera_motion(*_wave_camera(scale_mean=0.06, offset=(0.1, -0.05))))
    result = transfer_motion(source, identities[1], target)
    assert result.num_frames == source.num_frames
    for frame in range(result.num_frames):
        assert torch.equal(result.identity[frame], identities[1])
    assert torch.equal(result.expression, source.expression)
    assert torch.equal(result.jaw, source.jaw)
    assert torch.equal(result.gaze, source.gaze)
    assert torch.equal(result.pose, source.pose)


def test_self_reenactment_keeps_camera():
    scale, translation = _wave_camera()
    source = _camera_motion(scale, translation)
    statistics = camera_statistics(source)
    result = transfer_motion(source, source.identity[0], statistics, smoothing=1)
    assert torch.allclose(result.scale, source.scale, atol=1e-6)
    assert torch.allclose(result.translation, source.translation, atol=1e-6)
    assert torch.equal(result.identity, source.identity)


def test_self_reenactment_without_clipping_keeps_outliers():
    scale, translation = _wave_camera()
    translation[10, 0] = 0.5
    source = _camera_motion(scale, translation)
    result = transfer_motion(source, source.identity[0], camera_statistics(source), smoothing=1, clip_sigma=None)
    assert torch.allclose(result.translation, source.translation, atol=1e-6)


def test_transfer_matches_target_statistics():
    source = _camera_motion(*_wave_camera(scale_mean=0.09, offset=(0.2, 0.1)))
    target = CameraStatistics(
        scale_mean=0.06, scale_std=0.002, translation_mean=torch.tensor([-0.05, 0.02]),
        translation_std=torch.tensor([0.01, 0.02]),
    )
    result = transfer_motion(source, torch.zeros(32), target, smoothing=1)
    matched = camera_statistics(result)
    assert matched.scale_mean == pytest.approx(0.06, abs=1e-6)
    assert matched.scale_std == pytest.approx(0.002, rel=1e-4)
    assert torch.allclose(matched.translation_mean, target.translation_mean, atol=1e-6)
    assert torch.allclose(matched.translation_std, target.translation_std, rtol=1e-4)


def test_transfer_uses_given_source_statistics():
    scale, translation = _wave_camera()
    source = _camera_motion(scale, translation)
    whole_video = CameraStatistics(
        scale_mean=float(scale.mean()) - 0.01, scale_std=0.004, translation_mean=torch.zeros(2),
        translation_std=torch.tensor([0.05, 0.05]),
    )
    target = CameraStatistics(
        scale_mean=0.07, scale_std=0.004, translation_mean=torch.zeros(2), translation_std=torch.tensor([0.05, 0.05])
    )
    result = transfer_motion(source, torch.zeros(32), target, source_statistics=whole_video, smoothing=1)
    # The source clip sits 0.01 above the whole video's mean scale, so it stays 0.01 above the target's.
    assert float(result.scale.mean()) == pytest.approx(0.08, abs=1e-5)


def test_transfer_clips_translation():
    scale, translation = _wave_camera(frames=60)
    translation[30] = torch.tensor([0.9, -0.9])
    source = _camera_motion(scale, translation)
    target = CameraStatistics(
        scale_mean=0.07, scale_std=0.0, translation_mean=torch.tensor([0.1, 0.0]),
        translation_std=torch.tensor([0.02, 0.04]),
    )
    result = transfer_motion(source, torch.zeros(32), target, smoothing=1, clip_sigma=2.0)
    low = target.translation_mean - 2.0 * target.translation_std
    high = target.translation_mean + 2.0 * target.translation_std
    assert bool((result.translation >= low - 1e-6).all())
    assert bool((result.translation <= high + 1e-6).all())
    assert torch.allclose(result.translation[30], torch.tensor([0.14, -0.08]), atol=1e-6)
    # A fixed target scale (zero spread) puts every frame at the target's mean.
    assert torch.allclose(result.scale, torch.full((60,), 0.07))


def test_transfer_smoothing_reduces_jitter():
    frames = 80
    generator = torch.Generator().manual_seed(5)
    scale, translation = _wave_camera(frames)
    scale = scale + 0.002 * torch.randn(frames, generator=generator)
    translation = translation + 0.01 * torch.randn(frames, 2, generator=generator)
    source = _camera_motion(scale, translation)
    statistics = camera_statistics(source)
    raw = transfer_motion(source, torch.zeros(32), statistics, smoothing=1, clip_sigma=None)
    smooth = transfer_motion(source, torch.zeros(32), statistics, smoothing=15, clip_sigma=None)
    assert smooth.num_frames == frames
    raw_jitter = raw.translation.diff(dim=0).abs().mean()
    smooth_jitter = smooth.translation.diff(dim=0).abs().mean()
    assert float(smooth_jitter) < 0.5 * float(raw_jitter)
    assert float(smooth.scale.diff().abs().mean()) < 0.5 * float(raw.scale.diff().abs().mean())


def test_moving_average_pads_edges():
    values = torch.tensor([0.0, 0.0, 3.0, 0.0, 6.0])
    smoothed = moving_average(values, 3)
    assert torch.allclose(smoothed, torch.tensor([0.0, 1.0, 1.0, 3.0, 4.0]))
    constant = torch.full((4, 2), 0.25)
    assert torch.allclose(moving_average(constant, 15), constant)
    assert torch.equal(moving_average(values, 1), values)


@pytest.mark.parametrize("window", [0, 4, -3, 2.0])
def test_moving_average_rejects_bad_window(window):
    with pytest.raises(ValueError, match="positive odd number"):
        moving_average(torch.zeros(5), window)


def test_transfer_rejects_bad_arguments():
    source = _camera_motion(*_wave_camera(frames=10))
    statistics = camera_statistics(source)
    with pytest.raises(ValueError, match=r"target_identity must have shape \(32,\)"):
        transfer_motion(source, torch.zeros(10, 32), statistics)
    with pytest.raises(ValueError, match="clip_sigma must be positive"):
        transfer_motion(source, torch.zeros(32), statistics, clip_sigma=0.0)
    with pytest.raises(ValueError, match="positive odd number"):
        transfer_motion(source, torch.zeros(32), statistics, smoothing=4)
    with pytest.raises(TypeError, match="CameraStatistics"):
        transfer_motion(source, torch.zeros(32), {"scale_mean": 0.07})
    negative = CameraStatistics(
        scale_mean=0.001, scale_std=0.05, translation_mean=torch.zeros(2), translation_std=torch.zeros(2)
    )
    with pytest.raises(ValueError, match="must be positive"):
        transfer_motion(source, torch.zeros(32), negative, smoothing=1)


def _statistics(**changes) -> CameraStatistics:
    values = {
        "scale_mean": 0.07, "scale_std": 0.0, "translation_mean": torch.zeros(2), "translation_std": torch.zeros(2),
    }
    return CameraStatistics(**{**values, **changes})


def test_camera_statistics_round_trip_and_checks():
    statistics = camera_statistics(_camera_motion(*_wave_camera()))
    restored = CameraStatistics.from_dict(statistics.to_dict())
    assert restored.scale_mean == pytest.approx(statistics.scale_mean)
    assert torch.equal(restored.translation_std, statistics.translation_std)
    with pytest.raises(ValueError, match="missing"):
        CameraStatistics.from_dict({"scale_mean": 1.0})
    with pytest.raises(ValueError, match="non-negative"):
        _statistics(scale_std=-1.0)
    with pytest.raises(ValueError, match=r"translation_mean must have shape \(2,\)"):
        _statistics(translation_mean=torch.zeros(3))
    with pytest.raises(ValueError, match="must be finite"):
        _statistics(scale_mean=math.inf)


def test_transferred_motion_renders(renderer, identities):
    source = _motion(identities[0], 3, pose=(0.2, -0.1, 0.05))
    target = camera_statistics(_motion(identities[1], 3))
    result = transfer_motion(source, identities[1], target, smoothing=3)
    images = render_conditioning(renderer, result, ("nmfc", "eyes", "shape"))
    assert images["eyes"].shape == (3, 3, SIZE, SIZE)
    assert float(images["eyes"].amax()) > 0.5
    assert float(images["mask"].mean()) > 0.1
