"""Tests of SynthHeads clip trajectories and synthetic speech: determinism, ranges, smoothness, blinks and the mouth."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from zoo.data.facs import au_index
from zoo.data.synthheads.audio import (
    AUDIO_FEATURE_DIM,
    SHORT_TERM_FEATURE_NAMES,
    SpeechConfig,
    audio_features,
    frame_envelope,
    num_audio_samples,
    sample_speech_track,
    synthesize_speech,
)
from zoo.data.synthheads.motion import (
    MOTION_KEYS,
    SACCADE_DURATION_INTERCEPT_S,
    SACCADE_DURATION_SLOPE_S_PER_DEGREE,
    MotionConfig,
    blink_closure,
    max_frame_step,
    sample_blinks,
    sample_expression_track,
    sample_gaze,
    sample_motion,
    smooth_process,
)

FPS = 25.0
NUM_FRAMES = 250  # 10 s


@pytest.fixture(scope="module")
def speech():
    return sample_speech_track(0, NUM_FRAMES, fps=FPS)


@pytest.fixture(scope="module")
def clip(speech):
    return sample_motion(0, NUM_FRAMES, fps=FPS, speech_envelope=speech["envelope"])


def _frame_rms(waveform: np.ndarray, sample_rate: int, fps: float, num_frames: int) -> np.ndarray:
    """RMS of the samples within half a frame period of each frame time, computed directly."""
    rms = []
    for frame in range(num_frames):
        centre = frame * sample_rate / fps
        low = max(int(round(centre - sample_rate / fps / 2)), 0)
        high = int(round(centre + sample_rate / fps / 2))
        rms.append(np.sqrt(np.mean(waveform[low:high].astype(np.float64) ** 2)))
    return np.array(rms)


# Determinism and format -------------------------------------------------------------------------


def test_same_seed_same_motion(clip, speech):
    again = sample_motion(np.random.default_rng(0), NUM_FRAMES, fps=FPS, speech_envelope=speech["envelope"])

    for key in MOTION_KEYS:
        assert np.array_equal(again[key], clip[key]), key


def test_different_seed_different_motion(clip):
    other = sample_motion(1, NUM_FRAMES, fps=FPS)

    assert not np.array_equal(other["head_pose"], clip["head_pose"])


def test_speech_does_not_change_other_trajectories(clip):
    silent = sample_motion(0, NUM_FRAMES, fps=FPS)

    for key in ("head_pose", "translation", "scale", "gaze", "eye_closure", "expression", "valence"):
        assert np.array_equal(silent[key], clip[key]), key
    assert (silent["jaw_opening"] == 0).all()


def test_motion_shapes_and_types(clip):
    assert set(clip) == set(MOTION_KEYS)
    shapes = {
        "time": (NUM_FRAMES,),
        "head_pose": (NUM_FRAMES, 3),
        "translation": (NUM_FRAMES, 2),
        "scale": (NUM_FRAMES,),
        "gaze": (NUM_FRAMES, 2),
        "eye_closure": (NUM_FRAMES,),
        "jaw_opening": (NUM_FRAMES,),
        "expression": (NUM_FRAMES,),
        "au_intensity": (NUM_FRAMES, 17),
        "au_occurrence": (NUM_FRAMES, 17),
        "expression_parameters": (NUM_FRAMES, 19),
    }
    for key, shape in shapes.items():
        assert clip[key].shape == shape, key
    assert clip["head_pose"].dtype == np.float32
    assert clip["expression"].dtype == np.int64
    assert clip["au_occurrence"].dtype == bool
    assert clip["time"][1] == pytest.approx(1 / FPS)


def test_parameters_assemble_aus_and_eyes(clip):
    parameters = clip["expression_parameters"]

    assert np.array_equal(parameters[:, :17], clip["au_intensity"])
    assert np.array_equal(parameters[:, 17], clip["eye_closure"])
    assert np.array_equal(parameters[:, 18], clip["eye_closure"])


# Pose and framing -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "column", "range_name"),
    [
        ("head_pose", 0, "yaw_range"),
        ("head_pose", 1, "pitch_range"),
        ("head_pose", 2, "roll_range"),
        ("translation", 0, "translation_range"),
        ("translation", 1, "translation_range"),
        ("scale", None, "scale_range"),
    ],
)
def test_drift_within_range_and_smooth(clip, key, column, range_name):
    config = MotionConfig()
    value_range = getattr(config, range_name)
    values = clip[key] if column is None else clip[key][:, column]

    assert values.min() >= value_range[0] - 1e-6
    assert values.max() <= value_range[1] + 1e-6
    bound = max_frame_step(value_range, config.drift_frequency_range_hz, FPS)
    assert np.abs(np.diff(values)).max() <= bound + 1e-6


def test_smooth_process_bounds_hold_across_seeds():
    rng = np.random.default_rng(3)
    value_range = (-0.3, 0.7)
    frequencies = (0.1, 2.0)

    for _ in range(50):
        values = smooth_process(rng, 100, FPS, value_range, frequencies, 4)
        assert values.min() >= value_range[0]
        assert values.max() <= value_range[1]
        assert np.abs(np.diff(values)).max() <= max_frame_step(value_range, frequencies, FPS) + 1e-9


def test_custom_pose_range():
    config = MotionConfig(yaw_range=(0.1, 0.2))

    yaw = sample_motion(2, 100, config=config)["head_pose"][:, 0]

    assert yaw.min() >= 0.1 - 1e-6
    assert yaw.max() <= 0.2 + 1e-6


# Expression transitions -------------------------------------------------------------------------


def test_expression_moves_between_keyframes():
    config = MotionConfig(expression_keyframes=2, transition_s=0.6)
    track = sample_expression_track(np.random.default_rng(4), NUM_FRAMES, FPS, config)
    keyframes = track["keyframes"]

    assert np.allclose(track["au_intensity"][0], keyframes["au_intensity"][0])
    assert np.allclose(track["au_intensity"][-1], keyframes["au_intensity"][1])
    assert track["expression"][0] == keyframes["expression"][0]
    assert track["expression"][-1] == keyframes["expression"][1]
    assert np.count_nonzero(np.diff(track["expression"])) <= 1


def test_expression_transition_is_eased():
    config = MotionConfig(expression_keyframes=3, transition_s=0.6)
    track = sample_expression_track(np.random.default_rng(5), NUM_FRAMES, FPS, config)
    keyframes = track["keyframes"]["au_intensity"]

    # A cosine ease over transition_s changes a value by at most (pi / 2) * step / (transition_s * fps) per frame.
    largest_step = np.abs(np.diff(keyframes, axis=0)).max()
    bound = math.pi / 2 * largest_step / (config.transition_s * FPS)
    assert np.abs(np.diff(track["au_intensity"], axis=0)).max() <= bound + 1e-6
    assert np.abs(np.diff(track["valence"])).max() <= math.pi / 2 * 2 / (config.transition_s * FPS)


def test_single_keyframe_holds_expression():
    track = sample_expression_track(np.random.default_rng(6), 50, FPS, MotionConfig(expression_keyframes=1))

    assert (track["au_intensity"] == track["au_intensity"][0]).all()
    assert len(set(track["expression"].tolist())) == 1


def test_occurrence_follows_blended_intensity(clip):
    assert np.array_equal(clip["au_occurrence"], clip["au_intensity"] >= 0.4)


# Gaze and blinks --------------------------------------------------------------------------------


def test_gaze_within_range_and_fixating(clip):
    config = MotionConfig()
    gaze = clip["gaze"]

    assert gaze[:, 0].min() >= config.gaze_yaw_range[0]
    assert gaze[:, 0].max() <= config.gaze_yaw_range[1]
    assert gaze[:, 1].min() >= config.gaze_pitch_range[0]
    assert gaze[:, 1].max() <= config.gaze_pitch_range[1]
    moving = np.abs(np.diff(gaze, axis=0)).max(axis=1) > 1e-6
    assert 0 < moving.mean() < 0.3


def test_saccades_are_brief():
    config = MotionConfig()
    fps = 250.0
    gaze = sample_gaze(np.random.default_rng(7), 1000, fps, config)

    # The maximum saccade amplitude is the diagonal of the gaze ranges, which sets the maximum duration.
    diagonal = math.degrees(math.hypot(np.ptp(config.gaze_yaw_range), np.ptp(config.gaze_pitch_range)))
    longest_frames = (SACCADE_DURATION_INTERCEPT_S + SACCADE_DURATION_SLOPE_S_PER_DEGREE * diagonal) * fps + 1
    moving = np.abs(np.diff(gaze, axis=0)).max(axis=1) > 1e-9
    runs = np.diff(np.flatnonzero(np.diff(np.concatenate([[0], moving.astype(int), [0]]))))[::2]
    assert runs.size > 2
    assert runs.max() <= longest_frames
    assert np.median(runs) <= 0.1 * fps


def test_blinks_close_eyes_for_a_few_frames():
    config = MotionConfig(blink_rate_hz=0.5)
    closure, onsets = sample_blinks(np.random.default_rng(8), NUM_FRAMES, FPS, config)
    frame_times = np.arange(NUM_FRAMES) / FPS

    assert onsets.size >= 2
    assert np.diff(onsets).min() >= config.min_blink_interval_s
    for onset in onsets:
        during = (frame_times >= onset) & (frame_times < onset + config.blink_duration_range_s[1])
        closed = np.count_nonzero(closure[during] > 0.5)
        if onset + config.blink_duration_range_s[1] < NUM_FRAMES / FPS:
            assert 1 <= closed <= 5, onset
            assert closure[during].max() > 0.9
    assert (closure > 0.5).mean() < 0.15


def test_blink_profile_lasts_its_duration():
    elapsed = np.arange(-0.05, 0.3, 0.001)

    closure = blink_closure(elapsed, 0.15)

    open_to_open = elapsed[closure > 0]
    assert open_to_open.min() >= 0.0
    assert open_to_open.max() < 0.15
    assert closure.max() == 1.0


def test_no_blinks_at_zero_rate():
    closure, onsets = sample_blinks(np.random.default_rng(0), 100, FPS, MotionConfig(blink_rate_hz=0.0))

    assert onsets.size == 0
    assert (closure == 0).all()


# Mouth ------------------------------------------------------------------------------------------


def test_jaw_follows_audio_envelope(clip, speech):
    rms = _frame_rms(speech["waveform"], 16_000, FPS, NUM_FRAMES)

    assert np.corrcoef(clip["jaw_opening"], rms)[0, 1] > 0.95


def test_jaw_tracks_audio_energy_feature(clip, speech):
    features = audio_features(speech["waveform"], num_frames=NUM_FRAMES).numpy()
    # Column 1 is the mean short-term log energy over the eight-frame window.
    log_energy = features[:, SHORT_TERM_FEATURE_NAMES.index("log_energy")]
    jaw_average = np.convolve(clip["jaw_opening"], np.ones(8) / 8, mode="same")

    assert np.corrcoef(jaw_average, log_energy)[0, 1] > 0.6


def test_speech_opens_lips_and_jaw(clip, speech):
    loud = speech["envelope"] > 0.5
    config = MotionConfig()

    assert clip["jaw_opening"].max() == pytest.approx(config.max_speech_jaw_opening)
    assert clip["jaw_opening"].min() >= 0.0
    assert (clip["au_intensity"][loud, au_index(25)] >= config.speech_lips_part * math.tanh(2.0) - 1e-6).all()


def test_speech_varies_lip_aus(clip):
    silent = sample_motion(0, NUM_FRAMES, fps=FPS)

    for action_unit in (10, 17, 20):
        column = au_index(action_unit)
        added = clip["au_intensity"][:, column] - silent["au_intensity"][:, column]
        assert added.min() >= -1e-6, action_unit
        assert 0 < added.max() <= MotionConfig().speech_au_variation + 1e-6, action_unit


# Audio ------------------------------------------------------------------------------------------


def test_speech_is_deterministic(speech):
    again = sample_speech_track(np.random.default_rng(0), NUM_FRAMES, fps=FPS)

    assert np.array_equal(again["waveform"], speech["waveform"])
    assert np.array_equal(again["envelope"], speech["envelope"])


def test_speech_waveform_format(speech):
    waveform = speech["waveform"]

    assert waveform.shape == (num_audio_samples(NUM_FRAMES, FPS, 16_000),) == (160_000,)
    assert waveform.dtype == np.float32
    assert np.abs(waveform).max() == pytest.approx(SpeechConfig().peak_amplitude, rel=1e-5)


def test_envelope_has_syllables_and_pauses(speech):
    envelope = speech["envelope"]

    assert envelope.min() >= 0.0
    assert envelope.max() == pytest.approx(1.0)
    assert (envelope < 0.05).mean() > 0.05  # pauses between phrases
    # Above the phrase rhythm (< 2 Hz), the strongest modulation is the 4-6 Hz syllable rate.
    spectrum = np.abs(np.fft.rfft(envelope - envelope.mean()))
    frequencies = np.fft.rfftfreq(envelope.size, d=1 / FPS)
    above_phrases = frequencies >= 2.0
    assert 3.5 <= frequencies[above_phrases][spectrum[above_phrases].argmax()] <= 6.5


def test_speech_energy_is_mostly_below_4khz(speech):
    power = np.abs(np.fft.rfft(speech["waveform"])) ** 2
    frequencies = np.fft.rfftfreq(speech["waveform"].size, d=1 / 16_000)

    assert power[frequencies < 4000].sum() / power.sum() > 0.9


def test_other_sample_rate():
    track = sample_speech_track(1, 50, fps=30.0, sample_rate=8000)

    assert track["waveform"].shape == (round(50 * 8000 / 30),)
    assert track["envelope"].shape == (50,)


def test_audio_features_per_frame(speech):
    features = audio_features(speech["waveform"], num_frames=NUM_FRAMES)

    assert AUDIO_FEATURE_DIM == 84
    assert features.shape == (NUM_FRAMES, AUDIO_FEATURE_DIM)
    assert features.dtype == torch.float32
    assert torch.isfinite(features).all()
    assert (features[:, AUDIO_FEATURE_DIM // 2 :] >= 0).all()  # standard deviations


def test_audio_features_batch_matches_single(speech):
    waveform = torch.from_numpy(speech["waveform"][:32_000])
    other = torch.from_numpy(sample_speech_track(2, 50)["waveform"])

    batch = audio_features(torch.stack([waveform, other]))

    assert batch.shape == (2, 50, AUDIO_FEATURE_DIM)
    assert torch.allclose(batch[0], audio_features(waveform), atol=1e-4)
    assert torch.allclose(batch[1], audio_features(other), atol=1e-4)


def test_audio_features_default_frame_count():
    waveform = synthesize_speech(3, 16_000)

    assert audio_features(waveform).shape == (25, AUDIO_FEATURE_DIM)
    assert audio_features(waveform, fps=30.0).shape == (30, AUDIO_FEATURE_DIM)


def test_silence_has_flat_features():
    features = audio_features(np.zeros(8000, dtype=np.float32))

    assert torch.isfinite(features).all()
    assert features[:, AUDIO_FEATURE_DIM // 2 :].abs().max() < 1e-3


def test_frame_envelope_of_silence_is_zero():
    assert (frame_envelope(np.zeros(1600), num_frames=2) == 0).all()


# Bad arguments ----------------------------------------------------------------------------------


@pytest.mark.parametrize("num_frames", [0, -5, 2.5, True])
def test_bad_frame_count_rejected(num_frames):
    with pytest.raises(ValueError, match="num_frames"):
        sample_motion(0, num_frames)
    with pytest.raises(ValueError, match="num_frames"):
        sample_speech_track(0, num_frames)


@pytest.mark.parametrize("fps", [0.0, -25.0, math.inf, math.nan])
def test_bad_fps_rejected(fps):
    with pytest.raises(ValueError, match="fps"):
        sample_motion(0, 10, fps=fps)
    with pytest.raises(ValueError, match="fps"):
        audio_features(np.zeros(1600), fps=fps)


def test_bad_sample_rate_rejected():
    with pytest.raises(ValueError, match="sample_rate"):
        sample_speech_track(0, 10, sample_rate=100)


def test_envelope_length_must_match():
    with pytest.raises(ValueError, match="one value per frame"):
        sample_motion(0, 10, speech_envelope=np.zeros(9))


def test_envelope_must_be_normalised():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        sample_motion(0, 10, speech_envelope=np.full(10, 2.0))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"yaw_range": (0.5, -0.5)}, "yaw_range"),
        ({"scale_range": (0.0, 1.0)}, "scale_range"),
        ({"blink_rate_hz": -1.0}, "blink_rate_hz"),
        ({"blink_rate_hz": 2.0}, "mean interval"),
        ({"min_blink_interval_s": 0.1}, "min_blink_interval_s"),
        ({"expression_keyframes": 0}, "expression_keyframes"),
        ({"transition_s": 0.0}, "transition_s"),
        ({"speech_lips_part": 1.5}, "speech_lips_part"),
        ({"drift_components": 0}, "drift_components"),
    ],
)
def test_bad_motion_config_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MotionConfig(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"syllable_rate_range": (6.0, 4.0)}, "syllable_rate_range"),
        ({"syllables_per_phrase": (0, 3)}, "syllables_per_phrase"),
        ({"pause_range_s": (-0.1, 0.2)}, "pause_range_s"),
        ({"pitch_wander": 1.0}, "pitch_wander"),
        ({"peak_amplitude": 0.0}, "peak_amplitude"),
    ],
)
def test_bad_speech_config_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SpeechConfig(**kwargs)


def test_bad_waveform_rejected():
    with pytest.raises(ValueError, match="waveform"):
        audio_features(np.zeros((2, 2, 100)))
    with pytest.raises(ValueError, match="waveform"):
        frame_envelope(np.zeros(0))
    with pytest.raises(ValueError, match="context_frames"):
        audio_features(np.zeros(1600), context_frames=0)
