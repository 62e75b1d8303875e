"""Tests of the HeadGAN demo in spaces/: loading, reenactment handlers, guards and Blocks building.

The models are small randomly initialised HeadGAN, Free-HeadGAN and DAD-3DNet checkpoints
saved to temporary folders. A tiny SynthHeads clips build replaces the full data that their
configs record. The tests check wiring, inputs and guards, never quality.
"""

from __future__ import annotations

import dataclasses
import math
import re
import sys
import wave
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
# `spaces` is not an installed package, and plain `pytest` (unlike `python -m pytest`) does
# not put the repository root on sys.path.
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

gr = pytest.importorskip("gradio")

from spaces import app as combined_app  # noqa: E402
from spaces.headgan import app as headgan_app  # noqa: E402
from zoo import demos  # noqa: E402
from zoo.data.synthheads import build_synthheads  # noqa: E402
from zoo.models.dad3dnet import DAD3DNet  # noqa: E402
from zoo.models.free_headgan import FreeHeadGAN  # noqa: E402
from zoo.models.headgan import HeadGAN  # noqa: E402

CONFIGS = {
    name: yaml.safe_load((REPO_ROOT / "training" / "configs" / f"{name}-synthheads.yaml").read_text())
    for name in ("headgan", "free-headgan")
}
# Both configs record the same clips, which the tests replace by TINY_CLIPS.
DATA = CONFIGS["headgan"]["data"]
# One person per split, one clip of 8 frames each: the validation and test people are the
# sources and the drivers.
TINY_CLIPS = {
    "kind": "clips",
    "num_identities": 3,
    "clips_per_identity": 1,
    "num_frames": 8,
    "image_size": 64,
    "conditioning": False,
    "flow": True,
    "splits": {"train": 0.34, "validation": 0.33, "test": 0.33},
}
TINY_WIDTHS = {"base_channels": 4, "max_channels": 8, "spade_hidden": 4}
TINY_ESTIMATORS = {"keypoint_widths": [4, 8], "keypoint_hidden": 8, "gaze_widths": [4], "gaze_hidden": 4, "eye_size": 8}
TINY_DAD3DNET = {
    "image_size": 64,
    "stem_width": 4,
    "encoder_widths": (8, 8, 16, 16),
    "encoder_blocks": (1, 1, 1, 1),
    "pyramid_channels": 8,
    "head_hidden": 16,
}


@pytest.fixture(scope="module", autouse=True)
def no_gradio_analytics():
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
        yield


@pytest.fixture(scope="module")
def tiny_clips(tmp_path_factory):
    return build_synthheads(cache_dir=tmp_path_factory.mktemp("synthheads-clips"), **TINY_CLIPS)


def random_headgan(**changes) -> HeadGAN:
    """Build a HeadGAN with the config's settings, tiny widths and a random output correction."""
    model = HeadGAN(**{**CONFIGS["headgan"]["model"], **TINY_WIDTHS, **changes}, data=DATA)
    # An untrained correction conv is zero, which would make the generated frames the warp-only ones.
    torch.nn.init.normal_(model.rendering_network.to_image[-1].weight, std=0.05)
    return model


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, str]:
    """Random HeadGAN, Free-HeadGAN and DAD-3DNet checkpoints with tiny widths and the configs' data."""
    folder = tmp_path_factory.mktemp("headgan-checkpoints")
    torch.manual_seed(0)
    # The recorded-motion path; a checkpoint trained on fitted NMFCs has its own test.
    random_headgan(fitter_id=None).save_pretrained(folder / "headgan")
    torch.manual_seed(1)
    free_model = {**CONFIGS["free-headgan"]["model"], **TINY_WIDTHS, **TINY_ESTIMATORS}
    FreeHeadGAN(**free_model, data=CONFIGS["free-headgan"]["data"]).save_pretrained(folder / "free_headgan")
    torch.manual_seed(2)
    DAD3DNet(**TINY_DAD3DNET).save_pretrained(folder / "dad3dnet")
    return {name: str(folder / name) for name in ("headgan", "free_headgan", "dad3dnet")}


@pytest.fixture(scope="module", autouse=True)
def tiny_dataset_builder(tiny_clips, checkpoints, tmp_path_factory):
    """Replace the data build with the tiny clips, the bundled fitter with the tiny one, and keep GIFs in tmp."""
    built = []

    def build(data):
        built.append(data)
        return tiny_clips

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(demos, "build_dataset", build)
        patch.setattr(headgan_app, "FITTER_SOURCE", checkpoints["dad3dnet"])
        patch.setattr(demos, "_datasets", {})
        patch.setattr(headgan_app, "_resources", {})
        patch.setattr(headgan_app, "_fitters", {})
        patch.setitem(demos._output_roots, "zoo-headgan-", tmp_path_factory.mktemp("headgan-videos"))
        yield built


@pytest.fixture(scope="module")
def headgan(checkpoints) -> headgan_app.Resources:
    return headgan_app.load_resources(checkpoints["headgan"], "HeadGAN")


@pytest.fixture(scope="module")
def free_headgan(checkpoints) -> headgan_app.Resources:
    return headgan_app.load_resources(checkpoints["free_headgan"], "Free-HeadGAN")


class ReenactSpy:
    """Record the arguments of each `reenact` call of a model class and pass them on."""

    def __init__(self, monkeypatch, cls) -> None:
        self.calls: list[tuple[tuple, dict]] = []
        original = cls.reenact

        def spy(model, *args, **kwargs):
            self.calls.append((args, kwargs))
            return original(model, *args, **kwargs)

        monkeypatch.setattr(cls, "reenact", spy)


def split_people(dataset, split: str) -> list[int]:
    return sorted({int(person) for person in dataset[split]["identity"]})


def gif_frames(path: str) -> tuple[int, tuple[int, int]]:
    with Image.open(path) as image:
        return image.n_frames, image.size


def gif_duration_ms(path: str) -> int:
    """Return a GIF's playing time; Pillow merges identical consecutive frames and adds up their durations."""
    total = 0
    with Image.open(path) as image:
        for index in range(image.n_frames):
            image.seek(index)
            total += image.info["duration"]
    return total


def api_names(blocks) -> dict[str, str]:
    return {fn.api_name: fn.api_visibility for fn in blocks.fns.values()}


def other_person_clip(resources, person: int = 0) -> int:
    identity = resources.people[person].identity
    return next(index for index, clip in enumerate(resources.clips) if clip.identity != identity)


def own_clip(resources, person: int = 0) -> int:
    identity = resources.people[person].identity
    return next(index for index, clip in enumerate(resources.clips) if clip.identity == identity)


def write_wav(path: Path, seconds: float = 0.5, rate: int = 16_000) -> Path:
    samples = (0.3 * np.sin(2 * np.pi * 220.0 * np.arange(int(seconds * rate)) / rate) * 32767).astype(np.int16)
    with wave.open(str(path), "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(rate)
        writer.writeframes(samples.tobytes())
    return path


# Loading -------------------------------------------------------------------------------------


def test_load_lists_held_out_clips(headgan, tiny_clips):
    splits = [clip.split for clip in headgan.clips]
    people = [clip.identity for clip in headgan.clips]

    assert splits == ["validation", "test"]
    assert people == split_people(tiny_clips, "validation") + split_people(tiny_clips, "test")
    assert all(clip.num_frames == 8 for clip in headgan.clips)
    assert all(clip.first_frame.size == (64, 64) for clip in headgan.clips)


def test_load_lists_source_people(headgan, tiny_clips):
    people = [clip.identity for clip in headgan.people]
    clip = headgan.people[0]
    middle = tiny_clips[clip.split][clip.row]["frames"][4].convert("RGB")

    assert people == split_people(tiny_clips, "validation") + split_people(tiny_clips, "test")
    assert np.array_equal(np.asarray(clip.middle_frame), np.asarray(middle))


def test_load_builds_recorded_data_once(headgan, free_headgan, tiny_dataset_builder):
    # Both checkpoints record the same data, so it is built once.
    assert tiny_dataset_builder == [DATA]


def test_load_caches_per_source(checkpoints, headgan):
    assert headgan_app.load_resources(checkpoints["headgan"], "HeadGAN") is headgan


def test_load_fitter_caches_per_source(checkpoints):
    fitter = headgan_app.load_fitter()

    assert isinstance(fitter, DAD3DNet)
    assert headgan_app.load_fitter(checkpoints["dad3dnet"]) is fitter


# Reenactment: HeadGAN ------------------------------------------------------------------------


def test_reenact_headgan_writes_videos(headgan):
    result = headgan_app.reenact(headgan, person=0, clip_index=other_person_clip(headgan), num_frames=8)

    for path in (result.driving, result.generated, result.conditioning):
        assert gif_frames(path) == (8, (64, 64))
    # A random flow network barely moves the source, so the warp-only frames may all be equal.
    assert gif_duration_ms(result.warped) == 8 * 40
    assert gif_frames(result.warped)[1] == (64, 64)
    assert result.source is not None
    assert np.array_equal(np.asarray(result.source), np.asarray(headgan.people[0].middle_frame))
    assert "**HeadGAN** animates" in result.summary
    assert "8 frames at 25 fps" in result.summary
    assert "self-reenactment" not in result.summary
    assert "out of their training distribution" not in result.summary


def test_reenact_headgan_uses_clip_audio(headgan, tiny_clips, monkeypatch):
    spy = ReenactSpy(monkeypatch, HeadGAN)
    clip_index = other_person_clip(headgan)
    clip = headgan.clips[clip_index]
    expected = torch.tensor(np.asarray(tiny_clips[clip.split][clip.row]["audio_features"], dtype=np.float32))

    result = headgan_app.reenact(headgan, person=0, clip_index=clip_index, num_frames=8, audio="clip audio")

    torch.testing.assert_close(spy.calls[0][1]["audio"], expected[:8])
    assert "Audio: the driving clip's audio." in result.summary


def test_reenact_headgan_uses_silence(headgan, monkeypatch):
    spy = ReenactSpy(monkeypatch, HeadGAN)

    result = headgan_app.reenact(headgan, person=0, clip_index=0, num_frames=8, audio="silence")

    assert spy.calls[0][1]["audio"] is None
    assert "Audio: silence." in result.summary


def test_reenact_headgan_reads_uploaded_wav(headgan, tmp_path, monkeypatch):
    spy = ReenactSpy(monkeypatch, HeadGAN)
    path = write_wav(tmp_path / "speech.wav")

    result = headgan_app.reenact(
        headgan, person=0, clip_index=0, num_frames=8, audio="uploaded .wav", audio_file=str(path)
    )

    assert spy.calls[0][1]["audio"] == str(path)
    assert "Audio: the uploaded file speech.wav." in result.summary
    assert gif_frames(result.generated)[0] == 8


def test_reenact_headgan_self_keeps_camera(headgan, monkeypatch):
    spy = ReenactSpy(monkeypatch, HeadGAN)

    result = headgan_app.reenact(headgan, person=0, clip_index=own_clip(headgan), num_frames=8)

    assert spy.calls[0][1]["adapt_camera"] is False
    assert "self-reenactment" in result.summary


def test_reenact_headgan_cross_adapts_camera(headgan, monkeypatch):
    spy = ReenactSpy(monkeypatch, HeadGAN)

    headgan_app.reenact(headgan, person=0, clip_index=other_person_clip(headgan), num_frames=8)

    assert spy.calls[0][1]["adapt_camera"] is True
    # A SynthHeads source brings its recorded motion, so nothing is fitted.
    assert spy.calls[0][1]["source_motion"] is not None
    assert spy.calls[0][1]["fitter"] is None


def test_reenact_headgan_fits_astronaut(headgan, monkeypatch):
    spy = ReenactSpy(monkeypatch, HeadGAN)

    result = headgan_app.reenact(headgan, source_kind="Astronaut photo", clip_index=0, num_frames=8)

    assert spy.calls[0][1]["source_motion"] is None
    assert spy.calls[0][1]["fitter"] is headgan_app.load_fitter()
    assert result.source.size == (64, 64)
    assert "the astronaut photo's head crop" in result.summary
    assert "DAD-3DNet fitted the source" in result.summary
    assert "trained on SynthHeads renders only" in result.summary
    assert gif_frames(result.generated) == (8, (64, 64))


def test_reenact_headgan_fits_driving_frames_for_fitted_checkpoint(tmp_path, monkeypatch):
    random_headgan(fitter_id="dad3dnet-synthheads").save_pretrained(tmp_path)
    resources = headgan_app.load_resources(str(tmp_path), "HeadGAN")
    spy = ReenactSpy(monkeypatch, HeadGAN)

    result = headgan_app.reenact(resources, person=0, clip_index=other_person_clip(resources), num_frames=8)

    arguments = spy.calls[0][1]
    assert arguments["source_motion"] is None
    assert arguments["fitter"] is headgan_app.load_fitter()
    assert len(spy.calls[0][0][1]) == 8
    assert "DAD-3DNet fitted the driving frames" in result.summary
    assert "Gaze: straight ahead" in result.summary
    assert gif_frames(result.generated) == (8, (64, 64))


def test_reenact_headgan_without_audio_branch(tmp_path):
    random_headgan(audio_dim=0).save_pretrained(tmp_path)
    resources = headgan_app.load_resources(str(tmp_path), "HeadGAN")

    result = headgan_app.reenact(resources, person=0, clip_index=1, num_frames=8, audio="clip audio")

    assert "no audio branch (audio_dim 0), so the driving clip's audio was ignored" in result.summary
    assert gif_frames(result.generated) == (8, (64, 64))


def test_reenact_clamps_to_clip_length(headgan):
    result = headgan_app.reenact(headgan, person=0, clip_index=1, num_frames=24)

    assert gif_frames(result.generated)[0] == 8
    assert "The clip has only 8 frames, fewer than the 24 requested." in result.summary


def test_reenact_resizes_square_upload(headgan):
    upload = Image.new("RGB", (128, 128), (120, 90, 80))

    result = headgan_app.reenact(headgan, source_kind="Upload", upload=upload, clip_index=0, num_frames=8)

    assert result.source.size == (64, 64)
    assert "the uploaded image (128x128 px)" in result.summary
    assert "resized down to the models' 64x64 px" in result.summary
    assert "trained on SynthHeads renders only" in result.summary


def test_reenact_accepts_upload_of_model_size(headgan):
    upload = np.full((64, 64, 3), 100, dtype=np.uint8)

    result = headgan_app.reenact(headgan, source_kind="Upload", upload=upload, clip_index=0, num_frames=8)

    assert "resized" not in result.summary
    assert gif_frames(result.generated) == (8, (64, 64))


def test_reenact_headgan_ignores_gaze_override(headgan, monkeypatch):
    spy = ReenactSpy(monkeypatch, HeadGAN)

    result = headgan_app.reenact(headgan, person=0, clip_index=1, num_frames=8, override_gaze=True, yaw=15, pitch=0)

    args, kwargs = spy.calls[0]
    assert "gaze" not in kwargs
    clip = headgan.clips[1]
    recorded = torch.as_tensor(np.asarray(headgan.dataset[clip.split][clip.row]["gaze"], dtype=np.float32)[:8])
    assert torch.allclose(args[1].gaze, recorded)
    assert "HeadGAN takes gaze from the driving motion, so the gaze override was ignored." in result.summary
    assert "The override applies to Free-HeadGAN only." in result.summary
    assert "Gaze: the driving clip's recorded gaze" in result.summary
    assert "overridden" not in result.summary


def test_reenact_headgan_no_override_note(headgan):
    result = headgan_app.reenact(headgan, person=0, clip_index=1, num_frames=8, override_gaze=False, yaw=15, pitch=0)

    assert "gaze override was ignored" not in result.summary


def test_reenact_headgan_constant_gaze_one_value(headgan, monkeypatch):
    original = HeadGAN.reenact

    def constant_gaze(model, *args, **kwargs):
        result = original(model, *args, **kwargs)
        motion = result["motion"]
        gaze = torch.tensor([math.radians(10.9), math.radians(6.1)]).expand_as(motion.gaze).clone()
        return {**result, "motion": dataclasses.replace(motion, gaze=gaze)}

    monkeypatch.setattr(HeadGAN, "reenact", constant_gaze)

    result = headgan_app.reenact(headgan, person=0, clip_index=1, num_frames=8)

    assert "Gaze: the driving clip's recorded gaze, yaw +10.9° and pitch +6.1°." in result.summary


def test_reenact_summary_has_no_equal_range_ends(headgan, free_headgan):
    for resources in (headgan, free_headgan):
        summary = headgan_app.reenact(resources, person=0, clip_index=1, num_frames=8).summary

        for low, high in re.findall(r"([+-]\d+\.\d°) to ([+-]\d+\.\d°)", summary):
            assert low != high, summary


def test_format_degree_range_collapses_equal_ends():
    constant = np.full(4, math.radians(10.9))

    assert demos.format_degree_range(constant, collapse_equal=True) == "+10.9°"
    assert demos.format_degree_range(constant) == "+10.9° to +10.9°"
    # Ends that differ below the printed precision print as one value too.
    assert demos.format_degree_range(np.radians([10.91, 10.94]), collapse_equal=True) == "+10.9°"


def test_format_degree_range_keeps_ranges():
    radians = np.radians([-12.5, 0.0, 30.0])

    assert demos.format_degree_range(radians, collapse_equal=True) == "-12.5° to +30.0°"
    assert demos.format_degree_range(radians) == "-12.5° to +30.0°"


# Reenactment: Free-HeadGAN -------------------------------------------------------------------


def test_reenact_free_headgan_one_reference(free_headgan, monkeypatch):
    spy = ReenactSpy(monkeypatch, FreeHeadGAN)

    result = headgan_app.reenact(free_headgan, person=0, references=1, clip_index=1, num_frames=8)

    (sources, driving), kwargs = spy.calls[0]
    assert len(sources) == 1
    assert len(driving) == 8
    assert kwargs["gaze"] is None
    for path in (result.driving, result.generated):
        assert gif_frames(path) == (8, (64, 64))
    # Random estimators may draw equal sketches for neighbouring frames, which the GIF merges.
    for path in (result.warped, result.conditioning):
        assert gif_duration_ms(path) == 8 * 40
    assert result.source.size == (64, 64)
    assert "Gaze: estimated from each driving frame" in result.summary
    assert "Free-HeadGAN reads no audio" in result.summary


def test_reenact_free_headgan_three_references(free_headgan, tiny_clips, monkeypatch):
    spy = ReenactSpy(monkeypatch, FreeHeadGAN)
    clip = free_headgan.people[0]
    frames = tiny_clips[clip.split][clip.row]["frames"]

    result = headgan_app.reenact(free_headgan, person=0, references=3, clip_index=1, num_frames=8)

    sources = spy.calls[0][0][0]
    assert len(sources) == 3
    # Three references spread over the 8-frame clip, as the evaluation picks them.
    for source, index in zip(sources, (1, 4, 7)):
        assert np.array_equal(np.asarray(source), np.asarray(frames[index].convert("RGB")))
    assert result.source.size == (192, 64)
    assert "(frames 1, 4, 7)" in result.summary
    assert "3 references are fused" in result.summary


def test_reenact_free_headgan_overrides_gaze(free_headgan, monkeypatch):
    spy = ReenactSpy(monkeypatch, FreeHeadGAN)

    result = headgan_app.reenact(
        free_headgan, person=0, clip_index=1, num_frames=8, override_gaze=True, yaw=10, pitch=-5
    )

    yaw, pitch = spy.calls[0][1]["gaze"]
    assert yaw == pytest.approx(math.radians(10))
    assert pitch == pytest.approx(math.radians(-5))
    assert "Gaze: overridden to yaw +10.0° and pitch -5.0° on every frame." in result.summary


def test_reenact_free_headgan_ignores_gaze_sliders(free_headgan, monkeypatch):
    spy = ReenactSpy(monkeypatch, FreeHeadGAN)

    headgan_app.reenact(free_headgan, person=0, clip_index=1, num_frames=8, override_gaze=False, yaw=15, pitch=10)

    assert spy.calls[0][1]["gaze"] is None


def test_reenact_free_headgan_astronaut(free_headgan):
    result = headgan_app.reenact(free_headgan, source_kind="Astronaut photo", references=1, clip_index=0, num_frames=8)

    assert gif_duration_ms(result.conditioning) == 8 * 40
    assert gif_frames(result.generated) == (8, (64, 64))
    assert "trained on SynthHeads renders only" in result.summary
    assert "DAD-3DNet" not in result.summary


# Bad inputs ----------------------------------------------------------------------------------


def test_reenact_rejects_missing_clip(headgan):
    with pytest.raises(gr.Error, match="no driving clip: pick one in the gallery of driving clips"):
        headgan_app.reenact(headgan, clip_index=None)


@pytest.mark.parametrize("clip_index", [-1, 2, 1.5, "first", True])
def test_reenact_rejects_bad_clip_index(headgan, clip_index):
    with pytest.raises(gr.Error, match=r"invalid driving clip index .*from 0 to 1"):
        headgan_app.reenact(headgan, clip_index=clip_index)


@pytest.mark.parametrize("frames", [None, 7, 49, 8.5, "many"])
def test_reenact_rejects_bad_frame_count(headgan, frames):
    with pytest.raises(gr.Error, match="invalid frame count .*from 8 to 48"):
        headgan_app.reenact(headgan, clip_index=0, num_frames=frames)


@pytest.mark.parametrize("person", [-1, 5, "someone"])
def test_reenact_rejects_bad_person(headgan, person):
    with pytest.raises(gr.Error, match=r"invalid source person index .*from 0 to 1"):
        headgan_app.reenact(headgan, person=person, clip_index=0)


def test_reenact_rejects_missing_person(headgan):
    with pytest.raises(gr.Error, match="no source person: pick one in the gallery of source people"):
        headgan_app.reenact(headgan, person=None, clip_index=0)


def test_reenact_rejects_unknown_source_kind(headgan):
    with pytest.raises(gr.Error, match="unknown source 'Webcam'"):
        headgan_app.reenact(headgan, source_kind="Webcam", clip_index=0)


@pytest.mark.parametrize("references", [None, 2, 0, "three"])
def test_reenact_rejects_bad_references(free_headgan, references):
    with pytest.raises(gr.Error, match=r"invalid number of references .*\[1, 3\]"):
        headgan_app.reenact(free_headgan, references=references, clip_index=0)


@pytest.mark.parametrize("kind", ["Astronaut photo", "Upload"])
def test_reenact_rejects_three_references_of_photo(free_headgan, kind):
    upload = Image.new("RGB", (64, 64))

    with pytest.raises(gr.Error, match="3 references need as many frames of one person.*choose 1 reference"):
        headgan_app.reenact(free_headgan, source_kind=kind, upload=upload, references=3, clip_index=0)


def test_reenact_rejects_missing_upload(headgan):
    with pytest.raises(gr.Error, match="no uploaded image: upload a square head crop"):
        headgan_app.reenact(headgan, source_kind="Upload", upload=None, clip_index=0)


@pytest.mark.parametrize("size", [(96, 64), (32, 32), (64, 80)])
def test_reenact_rejects_upload_of_wrong_size(headgan, size):
    upload = Image.new("RGB", size)
    message = rf"the uploaded image cannot be the source: .*{size[0]}x{size[1]} px; this model needs 64x64 head crops"

    with pytest.raises(gr.Error, match=message):
        headgan_app.reenact(headgan, source_kind="Upload", upload=upload, clip_index=0)


def test_reenact_rejects_bad_wav(headgan, tmp_path):
    path = tmp_path / "noise.wav"
    path.write_bytes(b"this is not a wave file")

    with pytest.raises(gr.Error, match="noise.wav is not a PCM .wav file"):
        headgan_app.reenact(headgan, clip_index=0, audio="uploaded .wav", audio_file=str(path))


def test_reenact_rejects_missing_wav(headgan):
    with pytest.raises(gr.Error, match="no .wav file: upload one"):
        headgan_app.reenact(headgan, clip_index=0, audio="uploaded .wav", audio_file=None)


def test_reenact_rejects_unknown_audio(headgan):
    with pytest.raises(gr.Error, match="unknown audio 'music'"):
        headgan_app.reenact(headgan, clip_index=0, audio="music")


@pytest.mark.parametrize(("yaw", "pitch", "message"), [
    (25, 0, "invalid gaze yaw 25; choose degrees from -20 to 20"),
    (0, -15, "invalid gaze pitch -15; choose degrees from -14 to 14"),
    (None, 0, "invalid gaze yaw None"),
    (0, "up", "invalid gaze pitch 'up'"),
])
def test_reenact_rejects_bad_gaze(free_headgan, yaw, pitch, message):
    with pytest.raises(gr.Error, match=message):
        headgan_app.reenact(free_headgan, clip_index=0, override_gaze=True, yaw=yaw, pitch=pitch)


def test_load_rejects_free_headgan_as_headgan(checkpoints):
    message = "FreeHeadGAN checkpoint, but the HeadGAN model must be .*as the Free-HeadGAN model"

    with pytest.raises(gr.Error, match=message):
        headgan_app.load_resources(checkpoints["free_headgan"], "HeadGAN")


def test_load_rejects_headgan_as_free_headgan(checkpoints):
    message = "HeadGAN checkpoint, but the Free-HeadGAN model must be .*as the HeadGAN model"

    with pytest.raises(gr.Error, match=message):
        headgan_app.load_resources(checkpoints["headgan"], "Free-HeadGAN")


def test_load_rejects_other_model_kind(checkpoints):
    message = "DAD3DNet checkpoint, but the HeadGAN model must be .*pass a HeadGAN checkpoint"

    with pytest.raises(gr.Error, match=message):
        headgan_app.load_resources(checkpoints["dad3dnet"], "HeadGAN")


def test_load_rejects_missing_folder(tmp_path):
    with pytest.raises(gr.Error, match="cannot load the HeadGAN model"):
        headgan_app.load_resources(str(tmp_path / "missing"), "HeadGAN")


def test_load_rejects_unknown_model_name(checkpoints):
    with pytest.raises(gr.Error, match="unknown model 'HeadGAN2'"):
        headgan_app.load_resources(checkpoints["headgan"], "HeadGAN2")


def test_load_fitter_rejects_other_model(checkpoints):
    with pytest.raises(gr.Error, match="HeadGAN checkpoint, but the fitter must be a DAD3DNet"):
        headgan_app.load_fitter(checkpoints["headgan"])


def test_load_rejects_stills_data(tmp_path):
    HeadGAN(**TINY_WIDTHS, data={**DATA, "kind": "images"}).save_pretrained(tmp_path)

    with pytest.raises(gr.Error, match="needs SynthHeads clips"):
        headgan_app.load_resources(str(tmp_path), "HeadGAN")


def test_load_rejects_data_without_held_out_splits(tmp_path, tiny_clips, monkeypatch):
    HeadGAN(**TINY_WIDTHS, data={**DATA, "seed": 1}).save_pretrained(tmp_path)
    only_train = {"train": tiny_clips["train"]}
    monkeypatch.setattr(demos, "build_dataset", lambda data: only_train)

    with pytest.raises(gr.Error, match=r"splits \['train'\] but neither of \['validation', 'test'\]"):
        headgan_app.load_resources(str(tmp_path), "HeadGAN")


def test_load_reports_failed_data_build(tmp_path, monkeypatch):
    HeadGAN(**TINY_WIDTHS, data={**DATA, "seed": 2}).save_pretrained(tmp_path)

    def fail(data):
        raise ValueError("num_identities=1 leaves the splits ['test'] without an identity")

    monkeypatch.setattr(demos, "build_dataset", fail)

    with pytest.raises(gr.Error, match="cannot rebuild the SynthHeads clips .*without an identity"):
        headgan_app.load_resources(str(tmp_path), "HeadGAN")


# Building ------------------------------------------------------------------------------------


def test_build_demo_loads_no_model(tmp_path):
    demo = headgan_app.build_demo(headgan=str(tmp_path / "missing"), free_headgan=str(tmp_path / "missing-free"))

    names = api_names(demo)
    assert names["headgan_reenact"] == "public"
    assert names["headgan_setup"] == "private"
    assert names["headgan_model"] == "private"
    assert names["headgan_select"] == "private"
    assert names["headgan_source_select"] == "private"
    assert all(name.startswith("headgan_") for name in names)
    assert [name for name, visibility in names.items() if visibility == "public"] == ["headgan_reenact"]


def test_setup_event_fills_page(checkpoints, monkeypatch):
    # A fresh cache keeps the page from being prerendered, so it gets its setup event.
    monkeypatch.setattr(headgan_app, "_resources", {})
    demo = headgan_app.build_demo(headgan=checkpoints["headgan"], free_headgan=checkpoints["free_headgan"])
    setup = next(fn for fn in demo.fns.values() if fn.api_name == "headgan_setup")

    values = setup.fn("HeadGAN", None)
    skipped = setup.fn("HeadGAN", 0)

    assert len(values) == len(setup.outputs)
    assert values[0].label == headgan_app.SOURCE_GALLERY_LABEL
    assert values[3].label == headgan_app.GALLERY_LABEL
    assert values[1] == 0
    assert values[6].visible is False  # no references to choose for HeadGAN
    assert values[7].visible is True  # the audio choice
    assert values[9].visible is False  # no gaze override for HeadGAN
    assert gif_frames(values[12])[0] == 8  # the generated video
    assert values[14].label == "Conditioning: NMFC"
    assert "self-reenactment" not in values[15]
    assert len(skipped) == len(setup.outputs)
    assert all(isinstance(value, type(gr.skip())) for value in skipped)


def test_model_switch_shows_free_headgan_controls(checkpoints, free_headgan):
    demo = headgan_app.build_demo(headgan=checkpoints["headgan"], free_headgan=checkpoints["free_headgan"])
    switch = next(fn for fn in demo.fns.values() if fn.api_name == "headgan_model")

    values = switch.fn("Free-HeadGAN")

    assert len(values) == len(switch.outputs)
    assert values[6].visible is True  # references
    assert values[7].visible is False  # audio choice
    assert values[8].visible is False  # audio file
    assert values[9].visible is True  # gaze override
    assert values[12] is None  # nothing generated before Reenact
    assert values[14].label == "Conditioning: keypoint sketch"


def test_source_kind_event_toggles_inputs(checkpoints):
    demo = headgan_app.build_demo(headgan=checkpoints["headgan"], free_headgan=checkpoints["free_headgan"])
    toggle = next(fn for fn in demo.fns.values() if fn.api_name == "headgan_source_kind")

    gallery, upload, references = toggle.fn("Upload")

    assert gallery.visible is False
    assert upload.visible is True
    assert references.value == "1"
    assert references.interactive is False


def test_references_radio_offers_string_choices(checkpoints):
    demo = headgan_app.build_demo(headgan=checkpoints["headgan"], free_headgan=checkpoints["free_headgan"])
    radio = next(block for block in demo.blocks.values() if getattr(block, "elem_id", None) == "headgan-references")

    assert radio.api_info()["enum"] == ["1", "3"]
    assert radio.api_info()["type"] == "string"
    assert radio.value == "1"
    for choice in ("1", "3"):
        assert radio.preprocess(choice) == choice


def test_reenact_event_runs_free_headgan(checkpoints, free_headgan):
    demo = headgan_app.build_demo(headgan=checkpoints["headgan"], free_headgan=checkpoints["free_headgan"])
    run = next(fn for fn in demo.fns.values() if fn.api_name == "headgan_reenact")

    values = run.fn("Free-HeadGAN", "SynthHeads person", 0, None, "3", 1, 8, "clip audio", None, True, 5, 5)

    assert len(values) == len(run.outputs)
    assert values[0].size == (192, 64)
    # A plain path, so that API clients get the file as the other videos.
    assert isinstance(values[4], str)
    assert gif_duration_ms(values[4]) == 8 * 40
    assert "overridden to yaw +5.0°" in values[5]
    assert "3 references are fused" in values[5]


@pytest.mark.parametrize("references", ["1", 1, 1.0])
def test_reenact_event_accepts_reference_forms(checkpoints, free_headgan, references):
    demo = headgan_app.build_demo(headgan=checkpoints["headgan"], free_headgan=checkpoints["free_headgan"])
    run = next(fn for fn in demo.fns.values() if fn.api_name == "headgan_reenact")

    values = run.fn("Free-HeadGAN", "SynthHeads person", 0, None, references, 1, 8, "clip audio", None, False, 0, 0)

    assert values[0].size == (64, 64)


def test_reenact_event_rejects_bad_reference_string(checkpoints, free_headgan):
    demo = headgan_app.build_demo(headgan=checkpoints["headgan"], free_headgan=checkpoints["free_headgan"])
    run = next(fn for fn in demo.fns.values() if fn.api_name == "headgan_reenact")

    with pytest.raises(gr.Error, match=r"invalid number of references '2'; choose one of \[1, 3\]"):
        run.fn("Free-HeadGAN", "SynthHeads person", 0, None, "2", 1, 8, "clip audio", None, False, 0, 0)


def test_reenact_event_runs_headgan(checkpoints, headgan):
    demo = headgan_app.build_demo(headgan=checkpoints["headgan"], free_headgan=checkpoints["free_headgan"])
    run = next(fn for fn in demo.fns.values() if fn.api_name == "headgan_reenact")

    values = run.fn("HeadGAN", "Astronaut photo", 0, None, "1", 0, 8, "silence", None, False, 0, 0)

    assert isinstance(values[4], str)
    assert gif_frames(values[4])[0] == 8
    assert gif_frames(values[2])[0] == 8
    assert "Audio: silence." in values[5]


def test_reenact_event_rejects_unknown_model(checkpoints):
    demo = headgan_app.build_demo(headgan=checkpoints["headgan"], free_headgan=checkpoints["free_headgan"])
    run = next(fn for fn in demo.fns.values() if fn.api_name == "headgan_reenact")

    with pytest.raises(gr.Error, match="unknown model 'HeadGAN-XL'"):
        run.fn("HeadGAN-XL", "SynthHeads person", 0, None, 1, 0, 8, "silence", None, False, 0, 0)


def test_build_demo_renders_preloaded_view(checkpoints, headgan):
    demo = headgan_app.build_demo(headgan=checkpoints["headgan"], free_headgan=checkpoints["free_headgan"])

    names = api_names(demo)
    galleries = [block for block in demo.blocks.values() if isinstance(block, gr.Gallery)]
    assert "headgan_setup" not in names
    assert len(galleries) == 2
    assert all(gallery.value for gallery in galleries)


def test_build_app_has_headgan_tab(checkpoints):
    app = combined_app.build_app(headgan=checkpoints["headgan"], free_headgan=checkpoints["free_headgan"])

    tabs = [block.label for block in app.blocks.values() if isinstance(block, gr.Tab)]
    assert "HeadGAN" in tabs
    assert tabs == [tab.title for tab in combined_app.TABS]
    assert "headgan_reenact" in api_names(app)


def test_main_accepts_headgan_sources():
    args = combined_app.parse_args(["--source", "headgan=runs/a", "--source", "free_headgan=runs/b"])

    assert dict(args.source) == {"headgan": "runs/a", "free_headgan": "runs/b"}


# Serving -------------------------------------------------------------------------------------


def free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_served_space_answers_client(checkpoints, headgan, free_headgan, tmp_path):
    from gradio_client import Client, handle_file

    demo = headgan_app.build_demo(headgan=checkpoints["headgan"], free_headgan=checkpoints["free_headgan"])
    _, url, _ = demo.launch(
        server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True, ssr_mode=False
    )
    try:
        client = Client(url, verbose=False, download_files=str(tmp_path / "downloads"))
        endpoints = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
        assert set(endpoints) == {"/headgan_reenact"}
        parameters = {parameter["label"]: parameter for parameter in endpoints["/headgan_reenact"]["parameters"]}
        references = parameters["References (frames of the source person's clip)"]
        assert references["type"]["enum"] == ["1", "3"]

        # An uploaded .wav goes through Gradio's audio preprocessing before `read_wav` reads it.
        wav = write_wav(tmp_path / "speech.wav")
        *_, summary = client.predict(
            "HeadGAN", "SynthHeads person", 0, None, "1", 1, 8, "uploaded .wav", handle_file(str(wav)), True, 15, 0,
            api_name="/headgan_reenact",
        )
        assert "Audio: the uploaded file" in summary
        assert "gaze override was ignored" in summary

        upload = tmp_path / "face.png"
        Image.new("RGB", (128, 128), (120, 90, 80)).save(upload)
        source, *_, conditioning, summary = client.predict(
            "Free-HeadGAN", "Upload", 0, handle_file(str(upload)), "1", 0, 8, "clip audio", None, True, -10, 5,
            api_name="/headgan_reenact",
        )
        assert Image.open(source).size == (64, 64)
        # The conditioning GIF comes back as a file path, as the other videos do.
        assert isinstance(conditioning, str)
        assert gif_duration_ms(conditioning) == 8 * 40
        assert "resized down" in summary
        assert "overridden to yaw -10.0°" in summary

        with pytest.raises(Exception, match="no driving clip"):
            client.predict(
                "HeadGAN", "SynthHeads person", 0, None, "1", None, 8, "silence", None, False, 0, 0,
                api_name="/headgan_reenact",
            )
    finally:
        demo.close()
