"""Tests of SynthHeads clips and their exact optical flow: labels, blinks, speech, flow accuracy and occlusion."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from zoo.data.synthheads.audio import AUDIO_FEATURE_DIM, num_audio_samples
from zoo.data.synthheads.clips import motion_config, render_clip
from zoo.data.synthheads.dataset import SynthHeadsConfig, build_synthheads
from zoo.data.synthheads.flow import (
    flow_to_colour,
    rasterize_like_renderer,
    rendered_mesh,
    screen_vertices,
    sequence_flow,
    surface_warp_error,
    warp_backward,
)
from zoo.data.synthheads.motion import max_frame_step
from zoo.geometry import Camera, HeadRenderer, MorphableHeadModel, sample_appearance

SIZE = 48
FRAMES = 50
CLIPS = {
    "kind": "clips", "num_identities": 2, "num_frames": FRAMES, "image_size": SIZE, "blink_rate_hz": 0.9,
    "splits": {"train": 0.5, "test": 0.5},
}


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "zoo-cache"))


@pytest.fixture(scope="module")
def clips():
    return build_synthheads(cache=False, **CLIPS)


@pytest.fixture(scope="module")
def clip(clips):
    return clips["train"].with_format("numpy")[0]


@pytest.fixture(scope="module")
def model():
    return MorphableHeadModel.builtin()


def _pair(model, size, *, rotation=((0.0, 0.0, 0.0), (0.0, 0.0, 0.0)), translation=((0.0, 0.0), (0.0, 0.0)),
          expression=None, scale=0.067, seed=3):
    """Render two frames of one identity and return the renderer, outputs, camera, appearance and vertices."""
    generator = torch.Generator().manual_seed(seed)
    renderer = HeadRenderer(model, size)
    identity = model.sample_identity(1, generator).repeat(2, 1)
    appearance = sample_appearance(1, generator).index([0, 0])
    vertices = model.vertices(identity, expression)
    camera = Camera(torch.full((2,), scale), torch.tensor(rotation), torch.tensor(translation))
    out = renderer.render(vertices, camera, appearance)
    return renderer, out, camera, appearance, vertices


# Clips -------------------------------------------------------------------------------------------


def test_clip_split_by_identity(clips):
    assert set(clips["train"]["identity"]).isdisjoint(clips["test"]["identity"])


def test_clip_shapes(clip):
    assert len(clip["frames"]) == FRAMES
    assert clip["frames"][0].shape == (SIZE, SIZE, 3)
    assert len(clip["nmfc"]) == FRAMES
    assert clip["depth"].shape == (FRAMES, SIZE, SIZE)
    assert clip["flow"].shape == (FRAMES - 1, 2, SIZE, SIZE)
    assert clip["flow"].dtype == np.float32
    assert clip["flow_valid"].shape == (FRAMES - 1, SIZE, SIZE)
    assert set(np.unique(clip["flow_valid"])) <= {0, 1}
    assert clip["au_intensity"].shape == (FRAMES, 17)
    assert clip["landmarks_2d"].shape == (FRAMES, 68, 2)
    assert clip["audio_features"].shape == (FRAMES, AUDIO_FEATURE_DIM)
    assert clip["waveform"].shape == (num_audio_samples(FRAMES, 25.0, 16_000),)
    assert np.allclose(clip["time"], np.arange(FRAMES) / 25.0)


def test_clip_same_seed_same_data(clips):
    again = build_synthheads(cache=False, **CLIPS)
    first, second = clips["train"].with_format("numpy")[0], again["train"].with_format("numpy")[0]
    for name in ("frames", "nmfc", "flow", "flow_valid", "pose", "waveform", "au_intensity"):
        assert np.array_equal(np.asarray(first[name]), np.asarray(second[name])), name


def test_clip_trajectories_smooth(clip):
    config = SynthHeadsConfig(**CLIPS)
    steps = np.abs(np.diff(clip["pose"], axis=0)).max(axis=0)
    motion = motion_config(config)
    for axis, value_range in enumerate((motion.yaw_range, motion.pitch_range, motion.roll_range)):
        assert steps[axis] <= max_frame_step(value_range, motion.drift_frequency_range_hz, config.fps) + 1e-6
    assert np.abs(np.diff(clip["scale"])).max() < 0.01 * clip["scale"].mean()


def test_clip_blinks_close_the_eyes(clip):
    closure = clip["eye_closure"][:, 0]
    assert closure.max() > 0.9
    assert (closure == 0).mean() > 0.5
    landmarks = clip["landmarks_2d"]
    opening = np.linalg.norm(landmarks[:, [37, 38, 43, 44]] - landmarks[:, [41, 40, 47, 46]], axis=-1).mean(axis=1)
    shut, open_eyes = closure > 0.9, closure == 0
    assert opening[shut].max() < 0.3 * opening[open_eyes].min()


def test_clip_mouth_follows_speech(clip):
    envelope = clip["speech_envelope"]
    assert envelope.max() == pytest.approx(1.0)
    assert np.allclose(clip["jaw"], motion_config(SynthHeadsConfig(**CLIPS)).max_speech_jaw_opening * envelope)
    landmarks = clip["landmarks_2d"]
    mouth = np.linalg.norm(landmarks[:, [61, 62, 63]] - landmarks[:, [67, 66, 65]], axis=-1).mean(axis=1)
    assert np.corrcoef(mouth, envelope)[0, 1] > 0.5


def test_silent_clip():
    silent = build_synthheads(cache=False, **{**CLIPS, "num_frames": 6, "speech": False, "conditioning": False})
    row = silent["train"].with_format("numpy")[0]
    assert not row["waveform"].any()
    assert not row["jaw"].any()
    assert "nmfc" not in silent["train"].column_names


def test_clip_without_flow():
    built = build_synthheads(cache=False, **{**CLIPS, "num_frames": 1, "flow": False, "conditioning": False})
    assert "flow" not in built["train"].column_names


# Flow --------------------------------------------------------------------------------------------


def test_flow_lands_on_same_surface_in_clip(clip, model):
    """Backward-warped surface coordinates of frame t + 1 match frame t on valid interior pixels.

    Surface coordinates (mean-face positions interpolated per pixel) are continuous across
    triangles, so bilinear sampling at the flowed position is exact up to a small fraction of
    a pixel away from silhouettes. Tolerance: median 0.1 px and 99th percentile 0.5 px, while
    zero flow misses by about the head motion.
    """
    config = SynthHeadsConfig(**CLIPS)
    renderer = HeadRenderer(model, SIZE)
    result = render_clip(config, renderer, int(clip["identity"]), 0)
    assert np.array_equal(result["rendered"]["flow"].numpy(), clip["flow"])
    mesh = rendered_mesh(renderer, result["rendered"]["vertices"], result["appearance"])
    fragments = rasterize_like_renderer(renderer, screen_vertices(renderer, mesh, result["camera"]))
    assert torch.equal(fragments.face_index, result["rendered"]["face_index"])

    flow, valid = torch.from_numpy(clip["flow"]), torch.from_numpy(clip["flow_valid"]).bool()
    error, checked = surface_warp_error(renderer, fragments, flow, valid, result["camera"].scale)
    zero, _ = surface_warp_error(renderer, fragments, torch.zeros_like(flow), valid, result["camera"].scale)
    assert checked.sum() > 1000
    assert float(error[checked].median()) < 0.1
    assert float(error[checked].quantile(0.99)) < 0.5
    assert float(zero[checked].median()) > 3 * float(error[checked].median())


def test_flow_warps_nmfc(model):
    """The renderer's own NMFC of frame t + 1, sampled at the flowed positions, reproduces frame t.

    NMFC is flat per triangle, so nearest sampling can land in a neighbouring triangle of
    slightly different colour. The check compares the mean error against zero flow.
    """
    expression = torch.zeros(2, 19)
    expression[1, 8] = 1.0  # AU12, lip corner puller
    renderer, out, camera, appearance, vertices = _pair(
        model, 64, rotation=((0.0, 0.0, 0.0), (0.12, 0.06, 0.03)), translation=((0.0, 0.0), (0.03, -0.02)),
        expression=expression,
    )
    flow, valid = sequence_flow(renderer, vertices, camera, appearance, out["face_index"])
    face = valid[0] & (out["mask"][0, 0] > 0)
    warped = warp_backward(out["nmfc"][1:], flow, mode="nearest")[0]
    error = (warped - out["nmfc"][0]).abs().amax(dim=0)[face]
    baseline = (out["nmfc"][1] - out["nmfc"][0]).abs().amax(dim=0)[face]
    assert face.float().mean() > 0.2
    assert float(error.mean()) < 0.5 * float(baseline.mean())
    assert float(error.median()) < 0.02


def test_flow_of_translation_exact(model):
    """A camera offset of (3, -2) px moves every visible pixel by exactly that, and RGB warps exactly."""
    half = 32
    renderer, out, camera, appearance, vertices = _pair(
        model, 64, rotation=((0.2, 0.1, 0.0), (0.2, 0.1, 0.0)), translation=((0.0, 0.0), (3 / half, 2 / half)),
    )
    flow, valid = sequence_flow(renderer, vertices, camera, appearance, out["face_index"])
    face = valid[0] & (out["mask"][0, 0] > 0)
    assert face.sum() == (out["mask"][0, 0] > 0).sum()
    assert torch.allclose(flow[0, 0][face], torch.tensor(3.0), atol=1e-4)
    assert torch.allclose(flow[0, 1][face], torch.tensor(-2.0), atol=1e-4)
    background = valid[0] & (out["mask"][0, 0] == 0)
    assert not flow[0][:, background].any()
    warped = warp_backward(out["rgb"][1:], flow, mode="nearest")[0]
    assert (warped - out["rgb"][0]).abs()[:, valid[0]].max() < 1.5 / 255


def test_flow_of_roll_exact(model):
    """An in-plane roll about the image centre gives the rotation field R p - p (y up in the model)."""
    roll = 0.1
    renderer, out, camera, appearance, vertices = _pair(model, 64, rotation=((0.0, 0.0, 0.0), (0.0, 0.0, roll)))
    flow, valid = sequence_flow(renderer, vertices, camera, appearance, out["face_index"])
    rows, columns = torch.meshgrid(torch.arange(64) + 0.5, torch.arange(64) + 0.5, indexing="ij")
    x, y = columns - 32, 32 - rows
    rolled_x = math.cos(roll) * x - math.sin(roll) * y
    rolled_y = math.sin(roll) * x + math.cos(roll) * y
    expected = torch.stack([rolled_x - x, -(rolled_y - y)])
    face = valid[0] & (out["mask"][0, 0] > 0)
    assert face.float().sum() > 0.95 * (out["mask"][0, 0] > 0).sum()
    assert (flow[0] - expected)[:, face].abs().max() < 1e-3


def test_flow_invalid_under_closing_lids(model):
    """Eyeball pixels of open eyes are hidden when the lids shut, so their flow is invalid."""
    expression = torch.zeros(2, 19)
    expression[1, 17:] = 1.0  # eye_close_left, eye_close_right
    renderer, out, camera, appearance, vertices = _pair(model, 64, expression=expression, scale=0.17)
    flow, valid = sequence_flow(renderer, vertices, camera, appearance, out["face_index"])
    names = model.region_names
    region = model.regions[renderer.faces[out["face_index"][0].clamp(min=0)][..., 0]]
    eyeball = (out["face_index"][0] >= 0) & torch.isin(region, torch.tensor([names.index(n) for n in ("sclera", "iris", "pupil")]))
    assert eyeball.sum() > 30
    assert (~valid[0][eyeball]).float().mean() > 0.95
    elsewhere = (out["face_index"][0] >= 0) & ~eyeball
    assert (~valid[0][elsewhere]).float().mean() < 0.05


def test_flow_invalid_where_head_turns_away(model):
    """Turning the head 0.6 rad hides part of the far cheek and ear, and the flow marks it."""
    renderer, out, camera, appearance, vertices = _pair(model, 64, rotation=((0.0, 0.0, 0.0), (0.6, 0.0, 0.0)))
    flow, valid = sequence_flow(renderer, vertices, camera, appearance, out["face_index"])
    face = out["mask"][0, 0] > 0
    hidden = face & ~valid[0]
    assert hidden.sum() > 20
    # Positive yaw turns the nose to image right, so the image-right side of the head turns away
    # and falls behind the nose and the silhouette.
    columns = hidden.nonzero()[:, 1].float()
    assert float(columns.mean()) > 32


def test_flow_rasterisation_mismatch_marked_invalid(model, caplog):
    renderer, out, camera, appearance, vertices = _pair(model, 32)
    tampered = out["face_index"].clone()
    tampered[0, 16, 16] = -1 if tampered[0, 16, 16] >= 0 else 0
    _, valid = sequence_flow(renderer, vertices, camera, appearance, tampered)
    assert not valid[0, 16, 16]
    assert "differs from the renderer" in caplog.text


def test_flow_needs_two_frames(model):
    renderer, out, camera, appearance, vertices = _pair(model, 32)
    with pytest.raises(ValueError, match="at least 2 frames"):
        sequence_flow(renderer, vertices[:1], camera.index(slice(0, 1)), appearance.index(slice(0, 1)))


def test_warp_backward_checks_shapes():
    with pytest.raises(ValueError, match=r"\(B, 2, H, W\)"):
        warp_backward(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8))
    with pytest.raises(ValueError, match="differ"):
        warp_backward(torch.zeros(1, 3, 8, 8), torch.zeros(1, 2, 4, 4))


def test_flow_colour_coding():
    flow = np.zeros((2, 4, 4), dtype=np.float32)
    flow[0, 0, 0] = 2.0  # rightwards, full magnitude
    valid = np.ones((4, 4), dtype=bool)
    valid[3, 3] = False
    colour = flow_to_colour(flow, valid)
    assert colour.shape == (4, 4, 3)
    assert colour.dtype == np.uint8
    assert (colour[1, 1] == 255).all()  # zero flow is white
    assert (colour[3, 3] == 0).all()  # invalid is black
    assert tuple(colour[0, 0]) != (255, 255, 255)
    with pytest.raises(ValueError, match=r"\(2, H, W\)"):
        flow_to_colour(np.zeros((3, 4, 4)))
