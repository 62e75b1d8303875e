"""Head2Head and Head2HeadFS: clip data, the models, adaptation, the clip trainer, evaluation, figures and the training script.

Every model here is tiny and randomly initialised, and every clip comes from one 32 px
SynthHeads clips build made once per test run, so the tests check shapes, wiring and guards,
never image quality.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

import zoo
from zoo.data.synthheads import build_synthheads
from zoo.data.synthheads.dataset import builtin_model
from zoo.geometry import HeadRenderer
from zoo.models import DAD3DNet
from zoo.models import head2head as head2head_module
from zoo.models.head2head import MOTION_FIELDS, Head2Head, Head2HeadFS, fit_motion, motion_from_inputs, write_video
from zoo.reenactment.conditioning import CONDITION_CHANNELS, MotionParameters
from zoo.reenactment.data import ClipTensors, held_out_start, load_clips, sample_windows, to_frames
from zoo.reenactment.evaluation import (
    NearestTrainingFrame,
    cross_reenactment,
    fitted_motion_errors,
    motion_features,
    nearest_frame_baseline,
    reenactment_speed,
    self_reenactment,
)
from zoo.reenactment.trainer import LOSS_WEIGHTS, ClipTrainer, clip_length
from zoo.reenactment.transfer import camera_statistics
from zoo.training import learning_rate_factor

REPO_ROOT = Path(__file__).resolve().parents[1]

SIZE = 32
FRAMES = 9
# Three people with two clips each: one person per split, so the train split is one target person.
CLIPS = {
    "kind": "clips",
    "num_identities": 3,
    "clips_per_identity": 2,
    "num_frames": FRAMES,
    "image_size": SIZE,
    "conditioning": False,
    "flow": True,
    "splits": {"train": 0.34, "validation": 0.33, "test": 0.33},
}
TINY_GENERATOR = {
    "image_size": SIZE, "base_channels": 4, "downsamplings": 2, "encoder_blocks": 1, "decoder_blocks": 1, "max_channels": 8,
}
TINY_DISCRIMINATOR = {"base_channels": 4, "num_layers": 2, "num_scales": 1}
H2H_KINDS = ("nmfc", "eyes")
FS_KINDS = ("nmfc", "eyes", "shape")


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "training" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


train_head2head = load_script("train_head2head")


def tiny_model(model_class: type[Head2Head] = Head2Head, *, seed: int = 0, **changes) -> Head2Head:
    torch.manual_seed(seed)
    return model_class(**{**TINY_GENERATOR, **changes})


# ---------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def clips_cache(tmp_path_factory) -> Path:
    """The SynthHeads cache folder of the clips build, which the training script reads again."""
    return tmp_path_factory.mktemp("synthheads-cache")


@pytest.fixture(scope="session")
def clips_dataset(clips_cache):
    """Six 9-frame, 32 px SynthHeads clips with exact flow: people 0 (train), 2 (validation) and 1 (test)."""
    return build_synthheads(cache_dir=clips_cache, **CLIPS)


@pytest.fixture(scope="session")
def renderer() -> HeadRenderer:
    return HeadRenderer(builtin_model(), image_size=SIZE)


@pytest.fixture(scope="session")
def target_clips(clips_dataset, renderer) -> list[ClipTensors]:
    """The train person's two clips with Head2Head's conditioning."""
    return load_clips(clips_dataset["train"], renderer, H2H_KINDS)


@pytest.fixture(scope="session")
def driver_clips(clips_dataset, renderer) -> list[ClipTensors]:
    """The validation person's clips, which drive the train person in cross-identity reenactment."""
    return load_clips(clips_dataset["validation"], renderer, H2H_KINDS)


@pytest.fixture(scope="session")
def shape_clips(clips_dataset, renderer) -> list[ClipTensors]:
    """The test person's clips with Head2HeadFS's conditioning (NMFC, eyes and the dense shape image)."""
    return load_clips(clips_dataset["test"], renderer, FS_KINDS)


@pytest.fixture(scope="session")
def tiny_fitter() -> DAD3DNet:
    """A randomly initialised 32 px DAD-3DNet that replaces the bundled fitter."""
    torch.manual_seed(0)
    fitter = DAD3DNet(image_size=SIZE, stem_width=4, encoder_widths=(8, 8, 8, 8), pyramid_channels=8, head_hidden=8)
    return fitter.eval()


def frame_arrays(clip: ClipTensors) -> list[np.ndarray]:
    """Return the clip's frames as (H, W, 3) uint8 arrays, the form a driving video arrives in."""
    return list((clip.frames.permute(0, 2, 3, 1) * 255.0).round().to(torch.uint8).numpy())


def motion_mapping(motion: MotionParameters) -> dict[str, np.ndarray]:
    return {name: getattr(motion, name).numpy() for name in MOTION_FIELDS}


class MotionEcho:
    """A fitter that returns given motion for each image, in DAD-3DNet's `predict` format."""

    def __init__(self, motion: MotionParameters) -> None:
        self.motion = motion
        self.calls = 0

    def predict(self, images):
        self.calls += 1
        motion = self.motion
        names = [f"expression_{index}" for index in range(motion.expression.shape[1])]
        return [
            {
                "pose": dict(zip(("yaw", "pitch", "roll"), motion.pose[index].tolist())),
                "expression": dict(zip(names, motion.expression[index].tolist())),
                "jaw": float(motion.jaw[index]),
                "identity": motion.identity[index].tolist(),
                "scale": float(motion.scale[index]),
                "translation": motion.translation[index].tolist(),
            }
            for index in range(len(images))
        ]


UNPICKLED: list[bool] = []


def _record_unpickling() -> int:
    UNPICKLED.append(True)
    return 0


class PickleMarker:
    """An object whose unpickling is recorded, to prove that a loader never unpickles."""

    def __reduce__(self):
        return (_record_unpickling, ())


# ---------------------------------------------------------------------- clip data


@pytest.mark.parametrize(("frames", "start"), [(3, 2), (9, 6), (10, 7), (48, 32)])
def test_held_out_start_last_third(frames, start):
    assert held_out_start(frames) == start


def test_held_out_start_short_clip_error():
    with pytest.raises(ValueError, match="at least 3 frames"):
        held_out_start(2)


def test_to_frames_range_and_layout():
    array = np.zeros((4, 5, 3), dtype=np.uint8)
    array[..., 0] = 255
    frames = to_frames([array, Image.fromarray(array)])
    assert frames.shape == (2, 3, 4, 5)
    assert torch.equal(frames[:, 0], torch.ones(2, 4, 5))
    assert torch.equal(frames[:, 1:], torch.zeros(2, 2, 4, 5))


def test_load_clips_shapes(clips_dataset, renderer):
    clips = load_clips(clips_dataset["train"], renderer, ("nmfc", "eyes", "shape", "sketch"))
    assert len(clips) == 2
    assert {clip.identity for clip in clips} == {0}
    for clip in clips:
        assert clip.num_frames == FRAMES
        assert clip.frames.shape == (FRAMES, 3, SIZE, SIZE)
        assert float(clip.frames.min()) >= 0.0
        assert float(clip.frames.max()) <= 1.0
        assert set(clip.conditioning) == {"nmfc", "eyes", "shape", "sketch"}
        for kind, image in clip.conditioning.items():
            assert image.shape == (FRAMES, CONDITION_CHANNELS[kind], SIZE, SIZE)
        assert clip.mask.shape == (FRAMES, 1, SIZE, SIZE)
        assert clip.landmarks_2d.shape == (FRAMES, 68, 2)
        assert clip.flow.shape == (FRAMES - 1, 2, SIZE, SIZE)
        assert clip.flow_valid.shape == (FRAMES - 1, SIZE, SIZE)
        assert clip.motion.num_frames == FRAMES
        assert clip.stacked(("nmfc", "eyes")).shape == (FRAMES, 6, SIZE, SIZE)


def test_load_clips_renders_conditioning_from_motion(target_clips):
    clip = target_clips[0]
    # Conditioning comes from the parameters alone, as at inference, so both renders agree.
    model = tiny_model()
    rendered = model.conditioning_for(clip.motion)
    assert torch.allclose(rendered["nmfc"], clip.conditioning["nmfc"])
    assert torch.allclose(rendered["eyes"], clip.conditioning["eyes"])
    assert float(clip.mask.sum()) > 0


def test_load_clips_identity_filter(clips_dataset, renderer):
    train = clips_dataset["train"]
    assert len(load_clips(train, renderer, H2H_KINDS, [0])) == 2
    with pytest.raises(ValueError, match=r"no clip of identities \[5\]"):
        load_clips(train, renderer, H2H_KINDS, [5])


def test_load_clips_needs_flow(clips_dataset, renderer):
    without_flow = clips_dataset["train"].remove_columns(["flow", "flow_valid"])
    with pytest.raises(ValueError, match="flow=True"):
        load_clips(without_flow, renderer, H2H_KINDS)


def test_load_clips_renderer_size_mismatch(clips_dataset):
    with pytest.raises(ValueError, match="32 px but the renderer draws 64 px"):
        load_clips(clips_dataset["train"], HeadRenderer(builtin_model(), image_size=64), H2H_KINDS)


def test_sample_windows_shapes(target_clips):
    batch = sample_windows(
        target_clips, H2H_KINDS, length=3, batch_size=4, history=2, generator=torch.Generator().manual_seed(0)
    )
    assert batch.frames.shape == (4, 3, 3, SIZE, SIZE)
    assert batch.conditioning.shape == (4, 5, 6, SIZE, SIZE)
    assert batch.mask.shape == (4, 3, 1, SIZE, SIZE)
    assert batch.landmarks_2d.shape == (4, 3, 68, 2)
    assert batch.flow.shape == (4, 2, 2, SIZE, SIZE)
    assert batch.flow_valid.shape == (4, 2, SIZE, SIZE)
    assert float(batch.frames.min()) >= -1.0
    assert float(batch.frames.max()) <= 1.0


def test_sample_windows_history_repeats_first_frame(target_clips):
    clip = target_clips[0]
    # A window as long as the training part can only start at frame 0.
    length = held_out_start(FRAMES)
    batch = sample_windows([clip], H2H_KINDS, length=length, batch_size=1, history=2, generator=torch.Generator().manual_seed(0))
    stacked = clip.stacked(H2H_KINDS)
    assert torch.equal(batch.conditioning[0, 0], stacked[0])
    assert torch.equal(batch.conditioning[0, 1], stacked[0])
    assert torch.equal(batch.conditioning[0, 2:], stacked[:length])
    assert torch.equal(batch.frames[0], clip.frames[:length] * 2.0 - 1.0)


def _window_starts(clips: list[ClipTensors], frames: torch.Tensor) -> list[tuple[int, int]]:
    """Find the (clip, start frame) of each sampled window by its first real frame."""
    starts = []
    for window in frames:
        first = (window[0] + 1.0) / 2.0
        matches = [
            (index, t) for index, clip in enumerate(clips) for t in range(clip.num_frames)
            if torch.allclose(clip.frames[t], first, atol=1e-6)
        ]
        assert len(matches) == 1
        starts.append(matches[0])
    return starts


def test_sample_windows_stop_before_held_out(target_clips):
    length = 2
    batch = sample_windows(
        target_clips, H2H_KINDS, length=length, batch_size=48, history=0, generator=torch.Generator().manual_seed(1)
    )
    starts = _window_starts(target_clips, batch.frames)
    assert max(start for _, start in starts) + length <= held_out_start(FRAMES)
    # The draws cover every allowed start, so the bound above is tight.
    assert {start for _, start in starts} == set(range(held_out_start(FRAMES) - length + 1))


def test_sample_windows_stop_end_reaches_held_out(target_clips):
    length = 2
    batch = sample_windows(
        target_clips, H2H_KINDS, length=length, batch_size=48, history=0, generator=torch.Generator().manual_seed(1),
        stop="end",
    )
    starts = _window_starts(target_clips, batch.frames)
    assert max(start for _, start in starts) + length > held_out_start(FRAMES)


def test_sample_windows_too_long_error(target_clips):
    generator = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="do not fit the 6 training frames"):
        sample_windows(target_clips, H2H_KINDS, length=7, batch_size=1, history=0, generator=generator)
    assert sample_windows(target_clips, H2H_KINDS, length=7, batch_size=1, history=0, generator=generator, stop="end")
    with pytest.raises(ValueError, match="do not fit the 9 training frames"):
        sample_windows(target_clips, H2H_KINDS, length=10, batch_size=1, history=0, generator=generator, stop="end")


def test_sample_windows_bad_arguments(target_clips):
    generator = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="at least 1"):
        sample_windows(target_clips, H2H_KINDS, length=0, batch_size=1, history=0, generator=generator)
    with pytest.raises(ValueError, match="stop must be"):
        sample_windows(target_clips, H2H_KINDS, length=2, batch_size=1, history=0, generator=generator, stop="heldout")


# ---------------------------------------------------------------------- Head2Head


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"image_size": 30}, "divisible by 4"),
        ({"image_size": 8}, "at least 16"),
        ({"image_size": 32.0}, "integer"),
        ({"condition_kinds": ["nmfc", "depth"]}, "condition_kinds"),
        ({"condition_kinds": []}, "condition_kinds"),
        ({"window": 0}, "window must be at least 1"),
        ({"previous_frames": -1}, "previous_frames at least 0"),
    ],
)
def test_head2head_constructor_errors(changes, message):
    with pytest.raises(ValueError, match=message):
        Head2Head(**{**TINY_GENERATOR, **changes})


def test_head2head_default_kinds():
    assert tiny_model().condition_kinds == H2H_KINDS
    assert tiny_model(Head2HeadFS).condition_kinds == FS_KINDS
    assert tiny_model().condition_channels == 6
    assert tiny_model(Head2HeadFS).condition_channels == 9


def test_head2head_forward_shape():
    model = tiny_model(window=3, previous_frames=2).eval()
    with torch.no_grad():
        frames = model(torch.rand(2, 18, SIZE, SIZE) * 2 - 1, torch.zeros(2, 6, SIZE, SIZE))
    assert frames.shape == (2, 3, SIZE, SIZE)
    assert float(frames.abs().max()) <= 1.0


def test_window_conditions_pads_with_first_frame():
    model = tiny_model(window=3)
    conditioning = torch.arange(5, dtype=torch.float32).view(1, 5, 1, 1, 1).expand(2, 5, 6, 4, 4)
    first = model.window_conditions(conditioning, 0)
    assert first.shape == (2, 18, 4, 4)
    assert first[0, :, 0, 0].view(3, 6)[:, 0].tolist() == [0.0, 0.0, 0.0]
    assert model.window_conditions(conditioning, 1)[0, :, 0, 0].view(3, 6)[:, 0].tolist() == [0.0, 0.0, 1.0]
    assert model.window_conditions(conditioning, 4)[0, :, 0, 0].view(3, 6)[:, 0].tolist() == [2.0, 3.0, 4.0]


def test_rollout_shape_and_zero_previous_start(target_clips):
    model = tiny_model(window=3, previous_frames=2).eval()
    stacked = target_clips[0].stacked(H2H_KINDS)[None]
    with torch.no_grad():
        frames = model.rollout(stacked, history=2)
        first = model(model.window_conditions(stacked, 2), torch.zeros(1, 6, SIZE, SIZE))
        second = model(model.window_conditions(stacked, 3), torch.cat([torch.zeros(1, 3, SIZE, SIZE), first], dim=1))
    assert frames.shape == (1, FRAMES - 2, 3, SIZE, SIZE)
    assert torch.allclose(frames[0, 0], first[0], atol=1e-6)
    assert torch.allclose(frames[0, 1], second[0], atol=1e-6)


def test_rollout_without_previous_frames(target_clips):
    model = tiny_model(previous_frames=0).eval()
    assert model.generator.previous_encoder is None
    with torch.no_grad():
        frames = model.rollout(target_clips[0].stacked(H2H_KINDS)[None])
    assert frames.shape == (1, FRAMES, 3, SIZE, SIZE)


def test_rollout_bad_conditioning_shape():
    model = tiny_model()
    with pytest.raises(ValueError, match="conditioning must be"):
        model.rollout(torch.zeros(1, 4, 9, SIZE, SIZE))
    with pytest.raises(ValueError, match="conditioning must be"):
        model.rollout(torch.zeros(4, 6, SIZE, SIZE))


def test_set_target_round_trip(tmp_path, target_clips):
    model = tiny_model(window=2, previous_frames=1, fps=12.5, data={"name": "synthheads", "target": {"split": "train", "index": 0}})
    motion = target_clips[0].motion
    statistics = camera_statistics(motion)
    default_camera = model.target_camera.clone()
    model.set_target(motion.identity[0], statistics)
    assert torch.equal(model.target_identity, motion.identity[0])
    assert not torch.equal(model.target_camera, default_camera)
    assert model.target_statistics.scale_mean == pytest.approx(statistics.scale_mean)
    assert torch.allclose(model.target_statistics.translation_std, statistics.translation_std)

    model.save_pretrained(tmp_path / "h2h")
    loaded = zoo.load(tmp_path / "h2h")
    assert type(loaded) is Head2Head
    assert torch.equal(loaded.target_identity, model.target_identity)
    assert torch.equal(loaded.target_camera, model.target_camera)
    assert loaded.config == model.config
    assert (loaded.window, loaded.previous_frames, loaded.fps) == (2, 1, 12.5)
    assert loaded.config["data"]["target"] == {"split": "train", "index": 0}
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name


def test_set_target_wrong_identity_size(target_clips):
    model = tiny_model()
    with pytest.raises(ValueError, match="32 coefficients, got 5"):
        model.set_target(torch.zeros(5), camera_statistics(target_clips[0].motion))


def test_generate_frames(target_clips):
    model = tiny_model()
    result = model.generate(target_clips[0].motion.index(slice(0, 4)))
    assert result["frames"].shape == (4, 3, SIZE, SIZE)
    assert float(result["frames"].min()) >= 0.0
    assert float(result["frames"].max()) <= 1.0
    assert result["conditioning"]["nmfc"].shape == (4, 3, SIZE, SIZE)
    assert model.training


def test_reenact_clip_row_keeps_target_identity(clips_dataset, target_clips):
    model = tiny_model()
    model.set_target(target_clips[0].motion.identity[0], camera_statistics(target_clips[0].motion))
    driving_row = clips_dataset["validation"][0]
    result = model.reenact(driving_row, max_frames=5)
    driving = MotionParameters.from_clip_row(driving_row).index(slice(0, 5))
    assert result["frames"].shape == (5, 3, SIZE, SIZE)
    assert torch.equal(result["motion"].identity, model.target_identity.expand(5, -1))
    assert not torch.allclose(driving.identity, result["motion"].identity)
    # Expression, jaw, gaze and head rotation come from the driver unchanged.
    for name in ("expression", "jaw", "gaze", "pose"):
        assert torch.equal(getattr(result["motion"], name), getattr(driving, name)), name


def test_transfer_without_camera_adaptation(driver_clips, target_clips):
    model = tiny_model()
    model.set_target(target_clips[0].motion.identity[0], camera_statistics(target_clips[0].motion))
    driving = driver_clips[0].motion
    kept = model.transfer(driving, adapt_camera=False)
    assert torch.allclose(kept.scale, driving.scale, atol=1e-6)
    assert torch.allclose(kept.translation, driving.translation, atol=1e-6)
    adapted = model.transfer(driving, smoothing=1)
    assert adapted.scale.mean() == pytest.approx(model.target_statistics.scale_mean, rel=1e-4)
    assert torch.equal(adapted.identity[0], model.target_identity)


def test_predict_json_report(clips_dataset):
    model = tiny_model()
    report = model.predict(clips_dataset["validation"][0], max_frames=3)
    json.dumps(report)
    assert report["num_frames"] == 3
    assert report["image_size"] == SIZE
    assert report["fps"] == 25.0
    assert np.asarray(report["frames"]).shape == (3, SIZE, SIZE, 3)
    assert np.asarray(report["pose"]).shape == (3, 3)


@pytest.mark.parametrize("suffix", [".gif", ".png"])
def test_predict_writes_video(tmp_path, clips_dataset, suffix):
    model = tiny_model()
    path = tmp_path / f"reenacted{suffix}"
    report = model.predict(clips_dataset["validation"][0], max_frames=4, output=path)
    json.dumps(report)
    assert report["output"] == str(path)
    assert "frames" not in report
    with Image.open(path) as image:
        if suffix == ".gif":
            assert getattr(image, "n_frames", 1) == 4
            assert image.size == (SIZE, SIZE)
        else:
            assert image.size == (4 * SIZE, SIZE)


def test_predict_bad_output_suffix(tmp_path, clips_dataset):
    model = tiny_model()
    with pytest.raises(ValueError, match="use a .gif or .png name"):
        model.predict(clips_dataset["validation"][0], max_frames=2, output=tmp_path / "reenacted.mp4")
    assert not (tmp_path / "reenacted.mp4").exists()


def test_write_video_bad_frames(tmp_path):
    with pytest.raises(ValueError, match="uint8"):
        write_video(np.zeros((2, SIZE, SIZE, 3), dtype=np.float32), tmp_path / "video.gif")
    with pytest.raises(ValueError, match=r"\(T, H, W, 3\)"):
        write_video(np.zeros((SIZE, SIZE, 3), dtype=np.uint8), tmp_path / "video.gif")


def test_predict_on_frames_with_fitter(driver_clips, tiny_fitter):
    model = tiny_model()
    frames = frame_arrays(driver_clips[0])[:3]
    report = model.predict(frames, fitter=tiny_fitter)
    json.dumps(report)
    assert report["num_frames"] == 3
    assert np.asarray(report["frames"]).shape == (3, SIZE, SIZE, 3)


# ---------------------------------------------------------------------- driving motion


def test_motion_from_parameters_and_frames_limit(target_clips):
    motion = target_clips[0].motion
    assert motion_from_inputs(motion) is motion
    assert motion_from_inputs(motion, frames=4).num_frames == 4


def test_motion_from_clip_row(clips_dataset):
    row = clips_dataset["train"][0]
    motion = motion_from_inputs(row)
    assert motion.num_frames == FRAMES
    assert torch.allclose(motion.identity[3], torch.tensor(row["identity_coefficients"], dtype=torch.float32))
    assert torch.allclose(motion.pose, torch.tensor(row["pose"], dtype=torch.float32))


def test_motion_from_mapping(target_clips):
    motion = target_clips[0].motion
    values = {name: value.tolist() for name, value in motion_mapping(motion).items()}
    # One identity row applies to every frame.
    values["identity"] = values["identity"][0]
    loaded = motion_from_inputs(values)
    assert loaded.identity.shape == motion.identity.shape
    for name in MOTION_FIELDS:
        assert torch.allclose(getattr(loaded, name), getattr(motion, name)), name


def test_motion_from_npz(tmp_path, target_clips):
    motion = target_clips[0].motion
    path = tmp_path / "motion.npz"
    np.savez(path, **motion_mapping(motion))
    loaded = motion_from_inputs(path)
    assert torch.equal(loaded.pose, motion.pose)
    assert motion_from_inputs(str(path), frames=2).num_frames == 2


def test_motion_from_npz_object_array_not_unpickled(tmp_path, target_clips):
    values = motion_mapping(target_clips[0].motion)
    values["identity"] = np.array([PickleMarker()], dtype=object)
    path = tmp_path / "pickled.npz"
    np.savez(path, **values)
    UNPICKLED.clear()
    with pytest.raises(ValueError, match="allow_pickle"):
        motion_from_inputs(path)
    assert UNPICKLED == []


def test_motion_from_npz_that_is_not_an_archive(tmp_path):
    path = tmp_path / "corrupt.npz"
    path.write_bytes(b"not a zip archive")
    with pytest.raises(ValueError, match="is not a .npz archive"):
        motion_from_inputs(path)


def test_motion_identity_of_wrong_length(target_clips):
    values = {**motion_mapping(target_clips[0].motion), "identity": np.zeros(5, dtype=np.float32)}
    with pytest.raises(ValueError, match="field 'identity' has 5 coefficients"):
        motion_from_inputs(values)


def test_motion_field_of_strings(target_clips):
    values = {**motion_mapping(target_clips[0].motion), "jaw": ["a"] * FRAMES}
    with pytest.raises(ValueError, match="field 'jaw' must contain numbers"):
        motion_from_inputs(values)


@pytest.mark.parametrize("frames", [0, -1, 1.5, True])
def test_motion_bad_max_frames(target_clips, frames):
    with pytest.raises(ValueError, match="max_frames must be a positive integer"):
        motion_from_inputs(target_clips[0].motion, frames=frames)


def test_motion_from_missing_npz(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        motion_from_inputs(tmp_path / "absent.npz")


def test_motion_mapping_missing_field(target_clips):
    values = motion_mapping(target_clips[0].motion)
    del values["gaze"]
    with pytest.raises(ValueError, match=r"lacks the motion fields \['gaze'\]"):
        motion_from_inputs(values)


def test_motion_mapping_unknown_field(target_clips):
    values = {**motion_mapping(target_clips[0].motion), "blink": np.zeros(FRAMES)}
    with pytest.raises(ValueError, match=r"unknown motion fields \['blink'\]"):
        motion_from_inputs(values)


def test_motion_mapping_non_finite(tmp_path, target_clips):
    values = motion_mapping(target_clips[0].motion)
    values["scale"] = values["scale"].copy()
    values["scale"][2] = np.nan
    with pytest.raises(ValueError, match="'scale' contains NaN or infinite values"):
        motion_from_inputs(values)
    path = tmp_path / "nan.npz"
    np.savez(path, **values)
    with pytest.raises(ValueError, match="nan.npz: field 'scale'"):
        motion_from_inputs(path)


def test_motion_mapping_wrong_frame_count(target_clips):
    values = motion_mapping(target_clips[0].motion)
    values["pose"] = values["pose"][:4]
    with pytest.raises(ValueError, match="MotionParameters.pose must have shape"):
        motion_from_inputs(values)


@pytest.mark.parametrize("driving", [5, 2.5, "clip.mp4", Path("clip.mp4"), None])
def test_motion_from_wrong_type(driving):
    with pytest.raises(TypeError, match="cannot read driving motion"):
        motion_from_inputs(driving)


def test_fit_motion_with_fitter(driver_clips):
    motion = driver_clips[0].motion.index(slice(0, 3))
    fitter = MotionEcho(motion)
    fitted = fit_motion(frame_arrays(driver_clips[0])[:3], fitter=fitter)
    assert fitter.calls == 1
    for name in ("identity", "expression", "jaw", "pose", "scale", "translation"):
        assert torch.allclose(getattr(fitted, name), getattr(motion, name)), name
    # Fitted motion has no gaze: the eyes look ahead.
    assert torch.equal(fitted.gaze, torch.zeros(3, 2))


def test_fit_motion_no_frames():
    with pytest.raises(ValueError, match="no frames"):
        fit_motion([], fitter=MotionEcho(None))


def test_motion_from_frames_with_tiny_fitter(driver_clips, tiny_fitter):
    motion = motion_from_inputs(frame_arrays(driver_clips[0])[:2], fitter=tiny_fitter)
    assert motion.num_frames == 2
    assert motion.identity.shape == (2, 32)
    assert motion.expression.shape == (2, 19)


# ---------------------------------------------------------------------- Head2HeadFS


def test_adapt_lowers_loss_and_sets_target(shape_clips):
    model = tiny_model(Head2HeadFS)
    clip = shape_clips[0]
    motion = clip.motion.index(slice(0, 2))
    result = model.adapt(clip.frames[:2], motion, steps=20, lr=2e-3, batch_size=2)
    assert set(result) == {"first_loss", "last_loss"}
    assert math.isfinite(result["first_loss"])
    assert result["last_loss"] < 0.8 * result["first_loss"]
    assert torch.allclose(model.target_identity, motion.identity.mean(dim=0))
    statistics = camera_statistics(motion)
    assert model.target_statistics.scale_mean == pytest.approx(statistics.scale_mean)
    assert model.target_statistics.scale_std == pytest.approx(statistics.scale_std, abs=1e-7)
    assert torch.allclose(model.target_statistics.translation_mean, statistics.translation_mean)
    assert model.training


def test_adapt_under_no_grad(shape_clips):
    model = tiny_model(Head2HeadFS)
    clip = shape_clips[0]
    with torch.no_grad():
        result = model.adapt(clip.frames[:2], clip.motion.index(slice(0, 2)), steps=2, batch_size=2)
    assert math.isfinite(result["last_loss"])


def test_adapted_leaves_generic_model_unchanged(shape_clips):
    model = tiny_model(Head2HeadFS)
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    clip = shape_clips[0]
    adapted = model.adapted(clip.frames[:2], clip.motion.index(slice(0, 2)), steps=2, batch_size=2)
    assert isinstance(adapted, Head2HeadFS)
    assert adapted is not model
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, before[name]), name
    changed = [
        name for name, tensor in adapted.generator.state_dict().items() if not torch.equal(tensor, before[f"generator.{name}"])
    ]
    assert changed
    assert not torch.equal(adapted.target_identity, model.target_identity)


def test_adapt_from_images_with_fitter(shape_clips, tiny_fitter):
    model = tiny_model(Head2HeadFS)
    images = [Image.fromarray(array) for array in frame_arrays(shape_clips[0])[:2]]
    result = model.adapt(images, steps=1, batch_size=1, fitter=tiny_fitter)
    assert math.isfinite(result["last_loss"])


def test_adapt_bad_frames(shape_clips):
    model = tiny_model(Head2HeadFS)
    clip = shape_clips[0]
    motion = clip.motion.index(slice(0, 2))
    with pytest.raises(ValueError, match=r"frames must be \(K, 3, 32, 32\) with K >= 1, got \(2, 3, 16, 16\)"):
        model.adapt(torch.rand(2, 3, 16, 16), motion, steps=1)
    with pytest.raises(ValueError, match=r"frames must be \(K, 3, 32, 32\)"):
        model.adapt(torch.rand(3, SIZE, SIZE), motion, steps=1)
    with pytest.raises(ValueError, match=r"values in \[0, 1\]"):
        model.adapt(clip.frames[:2] * 255.0, motion, steps=1)
    with pytest.raises(ValueError, match=r"values in \[0, 1\]"):
        model.adapt(clip.frames[:2] - 0.5, motion, steps=1)
    with pytest.raises(ValueError, match="2 frames but motion for 3 frames"):
        model.adapt(clip.frames[:2], clip.motion.index(slice(0, 3)), steps=1)
    with pytest.raises(ValueError, match="steps and batch_size must be at least 1"):
        model.adapt(clip.frames[:2], motion, steps=0)


def test_adapt_rejects_nan_empty_and_resized_frames(shape_clips):
    model = tiny_model(Head2HeadFS)
    clip = shape_clips[0]
    motion = clip.motion.index(slice(0, 2))
    frames = clip.frames[:2].clone()
    frames[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or infinite"):
        model.adapt(frames, motion, steps=1)
    with pytest.raises(ValueError, match="at least one frame"):
        model.adapt([], motion, steps=1)
    with pytest.raises(ValueError, match="K >= 1"):
        model.adapt(torch.zeros(0, 3, SIZE, SIZE), motion, steps=1)
    with pytest.raises(ValueError, match="crop or resize the face first"):
        model.adapt([Image.new("RGB", (SIZE + 8, SIZE))] * 2, motion, steps=1)


def test_generic_until_adapted(shape_clips):
    model = tiny_model(Head2HeadFS)
    assert model.generic
    clip = shape_clips[0]
    adapted = model.adapted(clip.frames[:2], clip.motion.index(slice(0, 2)), steps=1, batch_size=1)
    assert not adapted.generic


def test_few_shot_frames_exclude_held_out(shape_clips, monkeypatch):
    monkeypatch.setattr(head2head_module, "ADAPTATION_STEPS", 1)
    model = tiny_model(Head2HeadFS)
    assert model._shots(shape_clips, 0) is model
    assert isinstance(model._shots(shape_clips, held_out_start(FRAMES)), Head2HeadFS)
    with pytest.raises(ValueError, match="held-out"):
        model._shots(shape_clips, held_out_start(FRAMES) + 1)


# ---------------------------------------------------------------------- clip trainer


@pytest.mark.parametrize(
    ("epoch", "length"), [(0, 4), (4, 4), (5, 8), (9, 8), (10, 12), (40, 12)],
)
def test_clip_length_schedule(epoch, length):
    assert clip_length(epoch, initial=4, double_every=5, maximum=12) == length


@pytest.mark.parametrize(
    "settings",
    [{"initial": 0, "double_every": 1, "maximum": 4}, {"initial": 2, "double_every": 0, "maximum": 4},
     {"initial": 4, "double_every": 1, "maximum": 2}],
)
def test_clip_length_bad_settings(settings):
    with pytest.raises(ValueError, match="need initial >= 1"):
        clip_length(0, **settings)


def _train_one_step(
    model: Head2Head, clips: list[ClipTensors], **trainer_settings
) -> tuple[ClipTrainer, dict[str, float], dict[str, torch.Tensor], list[torch.Tensor]]:
    trainer = ClipTrainer(model, discriminator=TINY_DISCRIMINATOR, **trainer_settings)
    batch = sample_windows(
        clips, model.condition_kinds, length=3, batch_size=2, history=model.window - 1, generator=torch.Generator().manual_seed(0)
    )
    generator_before = {name: value.detach().clone() for name, value in model.generator.named_parameters()}
    discriminator_before = [value.detach().clone() for value in trainer.discriminator_parameters()]
    generator_optimizer = torch.optim.Adam(model.generator.parameters(), lr=1e-3)
    discriminator_optimizer = torch.optim.Adam(list(trainer.discriminator_parameters()), lr=1e-3)
    terms = trainer.step(model, batch, generator_optimizer, discriminator_optimizer)
    return trainer, terms, generator_before, discriminator_before


def _assert_parameters_changed(model: Head2Head, trainer: ClipTrainer, generator_before, discriminator_before) -> None:
    assert any(not torch.equal(value, generator_before[name]) for name, value in model.generator.named_parameters())
    after = list(trainer.discriminator_parameters())
    assert len(after) == len(discriminator_before)
    assert any(not torch.equal(value, before) for value, before in zip(after, discriminator_before))
    # The generator update freezes the discriminators only while it runs.
    assert all(value.requires_grad for value in after)


def test_clip_trainer_step_with_dynamics(target_clips):
    model = tiny_model(window=2, previous_frames=1)
    trainer, terms, generator_before, discriminator_before = _train_one_step(
        model, target_clips, dynamics={"frames": 2, "strides": (1, 2)}
    )
    expected = {"g_total", "g_image", "g_mouth", "g_dynamics", "g_feature_matching", "g_perceptual", "g_warp",
                "d_total", "d_image", "d_mouth", "d_dynamics"}
    assert set(terms) == expected
    assert all(math.isfinite(value) for value in terms.values())
    assert trainer.dynamics_discriminator is not None
    _assert_parameters_changed(model, trainer, generator_before, discriminator_before)


def test_clip_trainer_step_without_dynamics(target_clips):
    model = tiny_model(window=2, previous_frames=1)
    trainer, terms, generator_before, discriminator_before = _train_one_step(model, target_clips, dynamics=None)
    assert trainer.dynamics_discriminator is None
    assert "g_dynamics" not in terms
    assert "d_dynamics" not in terms
    assert {"g_image", "g_mouth", "d_image", "d_mouth"} <= set(terms)
    assert all(math.isfinite(value) for value in terms.values())
    _assert_parameters_changed(model, trainer, generator_before, discriminator_before)


def test_clip_trainer_without_mouth_with_pixel_loss(target_clips):
    model = tiny_model(window=2, previous_frames=1)
    trainer, terms, generator_before, discriminator_before = _train_one_step(
        model, target_clips, mouth=False, weights={"masked_l1": 1.0}
    )
    assert trainer.mouth_discriminator is None
    assert trainer.mouth_size == 0
    assert "g_mouth" not in terms
    assert "d_mouth" not in terms
    assert "g_masked_l1" in terms
    assert all(math.isfinite(value) for value in terms.values())
    _assert_parameters_changed(model, trainer, generator_before, discriminator_before)


def test_clip_trainer_unknown_weight():
    with pytest.raises(ValueError, match=r"unknown loss weights \['vgg'\]"):
        ClipTrainer(tiny_model(), discriminator=TINY_DISCRIMINATOR, weights={"vgg": 1.0})


def test_loss_weights_released_defaults():
    assert LOSS_WEIGHTS["feature_matching"] == 10.0
    assert LOSS_WEIGHTS["perceptual"] == 10.0
    assert LOSS_WEIGHTS["warp"] == 10.0
    assert LOSS_WEIGHTS["masked_l1"] == 0.0


# ---------------------------------------------------------------------- evaluation


def test_self_reenactment_scores(target_clips):
    model = tiny_model()
    scores = self_reenactment(model, target_clips)
    held_out = FRAMES - held_out_start(FRAMES)
    assert {"psnr", "ssim", "masked_l1", "temporal_warp_error", "temporal_warp_error_real", "num_clips", "held_out_frames",
            "per_clip"} <= set(scores)
    assert scores["num_clips"] == 2
    assert scores["held_out_frames"] == 2 * held_out
    assert [entry["clip"] for entry in scores["per_clip"]] == [clip.clip for clip in target_clips]
    assert all(math.isfinite(scores[name]) for name in ("psnr", "ssim", "masked_l1", "temporal_warp_error"))
    assert model.training
    limited = self_reenactment(model, target_clips, max_clips=1)
    assert (limited["num_clips"], limited["held_out_frames"]) == (1, held_out)


def test_self_reenactment_no_clips():
    with pytest.raises(ValueError, match="no clip"):
        self_reenactment(tiny_model(), [])


def test_motion_features_layout(target_clips):
    clip = target_clips[0]
    features = motion_features(clip, slice(1, 4))
    assert features.shape == (3, 26)
    assert torch.equal(features[:, :3], clip.motion.pose[1:4])
    assert torch.equal(features[:, -1], clip.motion.jaw[1:4])


def test_nearest_training_frame_exact_matches(target_clips):
    baseline = NearestTrainingFrame(target_clips)
    start = held_out_start(FRAMES)
    assert baseline.frames.shape == (2 * start, 3, SIZE, SIZE)
    first, second = target_clips
    assert torch.equal(baseline(first, slice(0, start)), first.frames[:start])
    # A query whose motion repeats training frames of the other clip gets those frames back.
    rows = [4, 0, 2]
    query = dataclasses.replace(first, motion=second.motion.index(rows))
    assert torch.equal(baseline(query, slice(0, 3)), second.frames[rows])


def test_nearest_frame_baseline_scores(target_clips):
    scores = nearest_frame_baseline(target_clips)
    assert set(scores) == {"masked_l1", "psnr", "ssim", "temporal_warp_error", "num_clips", "training_frames"}
    assert scores["num_clips"] == 2
    assert scores["training_frames"] == 2 * held_out_start(FRAMES)
    assert all(math.isfinite(scores[name]) for name in ("masked_l1", "psnr", "ssim", "temporal_warp_error"))


def test_fitted_motion_errors_exact_fit(driver_clips):
    clip = driver_clips[0]
    errors = fitted_motion_errors(MotionEcho(clip.motion), clip.frames, clip.motion)
    assert set(errors) == {"yaw_error_degrees", "pitch_error_degrees", "roll_error_degrees", "pose_error_degrees",
                           "expression_error", "jaw_error_degrees", "jaw_spread_degrees"}
    spread = errors.pop("jaw_spread_degrees")
    assert spread == pytest.approx(math.degrees(float((clip.motion.jaw - clip.motion.jaw.mean()).abs().mean())), rel=1e-5)
    assert all(value == pytest.approx(0.0, abs=1e-6) for value in errors.values())


def test_fitted_motion_errors_in_degrees(driver_clips):
    clip = driver_clips[0]
    shifted = dataclasses.replace(clip.motion, pose=clip.motion.pose + torch.tensor([0.1, 0.0, 0.0]))
    errors = fitted_motion_errors(MotionEcho(shifted), clip.frames, clip.motion)
    assert errors["yaw_error_degrees"] == pytest.approx(math.degrees(0.1), rel=1e-4)
    assert errors["pitch_error_degrees"] == pytest.approx(0.0, abs=1e-6)
    assert errors["pose_error_degrees"] == pytest.approx(math.degrees(0.1) / 3, rel=1e-4)


def test_cross_reenactment_with_tiny_fitter(driver_clips, target_clips, tiny_fitter):
    model = tiny_model()
    model.set_target(target_clips[0].motion.identity[0], camera_statistics(target_clips[0].motion))
    result = cross_reenactment(model, driver_clips, tiny_fitter, max_frames=4)
    assert result["num_clips"] == 2
    assert result["fitter"] == "dad3dnet-synthheads"
    for part in ("transferred", "fitter_on_real_frames"):
        assert set(result[part]) == {"yaw_error_degrees", "pitch_error_degrees", "roll_error_degrees", "pose_error_degrees",
                                     "expression_error", "jaw_error_degrees", "jaw_spread_degrees"}
        assert all(math.isfinite(value) for value in result[part].values())
        assert all(value >= 0 for value in result[part].values())


def test_reenactment_speed_positive(target_clips):
    speed = reenactment_speed(tiny_model(), target_clips[0].motion.index(slice(0, 3)), repeats=1)
    assert speed["frames"] == 3
    assert speed["fps_end_to_end"] > 0
    assert speed["fps_generator"] >= speed["fps_end_to_end"]
    assert speed["threads"] >= 1


def test_evaluate_split_with_bundled_fitter(clips_dataset, monkeypatch):
    model = tiny_model(data={"target": {"split": "train", "index": 0}})
    fitter = zoo.load("dad3dnet-synthheads")
    assert fitter.image_size == 64
    # `_scores` loads the fitter by id on every call, so the bundled one loaded above is returned instead.
    monkeypatch.setattr(zoo, "load", lambda name, *args, **kwargs: fitter)
    scores = model.evaluate_split(clips_dataset, "validation")
    for name in Head2Head.summary_keys:
        assert math.isfinite(scores[name]), name
    assert scores["cross_reenactment"]["num_clips"] == 2
    assert scores["self_reenactment"]["held_out_frames"] == 2 * (FRAMES - held_out_start(FRAMES))
    json.dumps(scores)
    extras = model.evaluation_extras(clips_dataset, "validation")
    assert extras["baselines"]["nearest-training-frame"]["metrics"]["num_clips"] == 2


def test_target_clips_unknown_split(clips_dataset):
    model = tiny_model(data={"target": {"split": "extra"}})
    with pytest.raises(ValueError, match="split 'extra' is not in the dataset"):
        model.target_clips(clips_dataset)


# ---------------------------------------------------------------------- figures and cards


def test_reenactment_card_plots(tmp_path, clips_dataset, monkeypatch):
    from zoo.cards import _reenactment_plots

    model = tiny_model(data={"target": {"split": "train", "index": 0}})
    monkeypatch.setattr(zoo, "load", lambda name, *args, **kwargs: model)
    monkeypatch.setattr("zoo.evaluation.build_dataset", lambda data: clips_dataset)
    assets = tmp_path / "assets"
    assets.mkdir()
    plots = _reenactment_plots(SimpleNamespace(id="head2head-tiny"), {"dataset": {"split": "validation"}}, assets)
    assert plots == {"samples": "assets/samples.png"}
    with Image.open(assets / "samples.png") as image:
        # Seven rows of tiles: held-out real, NMFC, eyes, generated, nearest frame, driver, driven.
        assert image.height >= 7 * 96


def test_few_shot_strip_image(tmp_path, clips_dataset, monkeypatch):
    from zoo.figures import few_shot_strip

    monkeypatch.setattr(head2head_module, "ADAPTATION_STEPS", 1)
    path = tmp_path / "few_shot_samples.png"
    few_shot_strip(path, tiny_model(Head2HeadFS), clips_dataset, split="test", shots=(0, 2), columns=3, tile=SIZE)
    with Image.open(path) as image:
        # Four rows: held-out real, shape image, K = 0 and K = 2.
        assert image.height >= 4 * SIZE
        assert image.width > 3 * SIZE


def test_plot_few_shot_image(tmp_path):
    from zoo.figures import plot_few_shot

    few_shot = {
        "split": "test", "adaptation_steps": 1, "people": [1],
        "shots": {str(k): {"psnr": 10.0 + k, "ssim": 0.5, "masked_l1": 0.2 - 0.01 * k, "temporal_warp_error": 0.1}
                  for k in (0, 1, 8, 32)},
    }
    path = tmp_path / "few_shot.png"
    plot_few_shot(path, few_shot)
    with Image.open(path) as image:
        assert image.width > 0


# ---------------------------------------------------------------------- training script


def write_config(folder: Path, cache_dir: Path, method: str, *, data: dict | None = None, model: dict | None = None,
                 training: dict | None = None) -> Path:
    """Write a one-step training config for `method` on the cached clips build."""
    kinds = H2H_KINDS if method == "head2head" else FS_KINDS
    config = {
        "model_id": f"{method}-tiny",
        "method": method,
        "seed": 0,
        "data": {"name": "synthheads", **CLIPS, "cache_dir": str(cache_dir), "target": {"split": "train", "index": 0},
                 **(data or {})},
        "model": {**TINY_GENERATOR, "condition_kinds": list(kinds), "window": 2, "previous_frames": 1, **(model or {})},
        "training": {
            "epochs": 1, "steps_per_epoch": 1, "batch_size": 2,
            "clip_length": {"initial": 2, "double_every": 1, "maximum": 2},
            "lr": 0.0002, "decay_epochs": 0, "gan_mode": "ls", "discriminator": TINY_DISCRIMINATOR, "mouth": True,
            "dynamics": {"frames": 2, "strides": [1]}, "perceptual": None, **(training or {}),
        },
    }
    path = folder / f"{method}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize(
    ("method", "model_class", "extra", "dynamics"),
    [
        ("head2head", Head2Head, [], True),
        ("head2head", Head2Head, ["--set", "training.dynamics=null"], False),
        ("head2headfs", Head2HeadFS, [], True),
    ],
)
def test_train_script_one_step(tmp_path, clips_dataset, clips_cache, method, model_class, extra, dynamics):
    config = write_config(tmp_path, clips_cache, method)
    output = tmp_path / "run"
    assert train_head2head.main(["--config", str(config), "--output-dir", str(output), "--cpu", *extra]) == 0

    model = zoo.load(output)
    assert type(model) is model_class
    assert model.image_size == SIZE
    assert model.condition_kinds == (H2H_KINDS if method == "head2head" else FS_KINDS)
    summary = json.loads((output / "training_summary.json").read_text())
    assert summary["model_id"] == f"{method}-tiny"
    assert summary["epochs"] == 1
    assert summary["steps_per_epoch"] == 1
    assert ("g_dynamics" in summary["final_epoch_losses"]) == dynamics
    assert summary["run_name"] == (f"{method}-tiny" if dynamics else f"{method}-tiny-no-dynamics")
    assert all(math.isfinite(value) for value in summary["final_epoch_losses"].values())
    history = [json.loads(line) for line in (output / "validation_history.jsonl").read_text().splitlines()]
    assert [record["clip_length"] for record in history] == [2]
    if method == "head2head":
        # The target person's clips, training frames only, give the target identity.
        assert summary["training_clips"] == 2
        assert summary["training_frames"] == 2 * held_out_start(FRAMES)
        assert summary["held_out_self_reenactment"]["num_clips"] == 2
        person = MotionParameters.from_clip_row(clips_dataset["train"][0])
        assert torch.allclose(model.target_identity, person.identity[0])
    else:
        assert summary["training_clips"] == 2
        assert summary["training_frames"] == 2 * FRAMES
        assert "held_out_self_reenactment" not in summary
        assert torch.equal(model.target_identity, torch.zeros(32))


def test_train_script_no_dynamics_run_name(tmp_path, clips_cache):
    config = yaml.safe_load(write_config(tmp_path, clips_cache, "head2head", training={"dynamics": None}).read_text())
    assert train_head2head.run_name(config) == "head2head-tiny-no-dynamics"
    config["training"]["dynamics"] = {"frames": 2}
    assert train_head2head.run_name(config) == "head2head-tiny"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"model": {"blocks": 2}}, r"unknown model settings \['blocks'\]"),
        ({"training": {"learning_rate": 0.1}}, r"unknown training settings \['learning_rate'\]"),
        ({"data": {"kind": "images"}}, "data.kind: clips"),
        ({"data": {"flow": False}}, "data.flow: true"),
    ],
)
def test_train_script_config_errors(tmp_path, clips_cache, changes, message):
    config = write_config(tmp_path, clips_cache, "head2head", **changes)
    with pytest.raises(SystemExit, match=message):
        train_head2head.main(["--config", str(config), "--output-dir", str(tmp_path / "run"), "--cpu"])
    assert not (tmp_path / "run").exists()


def test_train_script_unknown_method(tmp_path, clips_cache):
    path = write_config(tmp_path, clips_cache, "head2head")
    config = yaml.safe_load(path.read_text())
    config["method"] = "vid2vid"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(SystemExit, match="method must be one of"):
        train_head2head.main(["--config", str(path), "--output-dir", str(tmp_path / "run"), "--cpu"])


def test_train_script_target_index_out_of_range(tmp_path, clips_cache):
    config = write_config(tmp_path, clips_cache, "head2head", data={"target": {"split": "train", "index": 3}})
    with pytest.raises(SystemExit, match="index 3 is out of range"):
        train_head2head.main(["--config", str(config), "--output-dir", str(tmp_path / "run"), "--cpu"])


def test_learning_rate_schedule():
    factors = [learning_rate_factor(epoch, 6, 2) for epoch in range(6)]
    assert factors[:4] == [1.0, 1.0, 1.0, 1.0]
    assert factors[4] == pytest.approx(2 / 3)
    assert factors[5] == pytest.approx(1 / 3)
