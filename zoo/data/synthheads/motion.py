"""Smooth per-clip trajectories for SynthHeads videos: head pose, framing, expression, gaze, blinks and mouth.

Every trajectory has one row per video frame, and frame i shows time i / fps seconds. The
conventions are those of the morphable head model: head pose is (yaw, pitch, roll) and gaze is
(yaw, pitch) relative to the head, all in radians. Jaw opening is in radians (>= 0). Scale is
a factor around 1, and translation is a 2D offset in normalised image coordinates, where the
image spans [-1, 1]. Expression parameters are the 19 values of `EXPRESSION_PARAMETER_NAMES`
in [0, 1].

- Head pose, translation and scale drift as convex mixtures of a few low-frequency sinusoids,
  so each stays inside its configured range. Each frame-to-frame change is at most
  (half the range width) * 2 * pi * (maximum frequency) / fps.
- Expressions move between label sets drawn by `sample_labels` with a cosine ease. The
  per-frame expression label is the set with the larger weight, and AU intensities,
  expression intensity and valence-arousal are blended.
- Gaze alternates between fixations and saccades. A saccade follows a minimum-jerk
  profile whose duration grows with amplitude like the saccadic main sequence (about 21 ms
  plus 2.2 ms per degree), so at 25 fps most saccades span one to three frames.
- Blinks start at random times with a refractory gap, close both eyes for about 150 ms and set
  `eye_close_left` and `eye_close_right`.
- Speech drives the mouth from the audio envelope: jaw opening and AU25 (lips part) follow the
  envelope, and AU10, AU17 and AU20 vary a little while speaking. AU26 (jaw drop) stays an
  expression label, because the speech jaw opening is its own model parameter.

NOTE: the translation unit (the normalised image frame) is assumed here, not read from the
morphable model code. Rescale `translation_range` if the renderer takes pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from zoo.data.facs import NUM_ACTION_UNITS, au_index, binarise_au_intensity
from zoo.data.synthheads.labels import LabelConfig, as_generator, sample_labels, to_expression_parameters

__all__ = [
    "MOTION_KEYS",
    "MotionConfig",
    "blink_closure",
    "cosine_ease",
    "max_frame_step",
    "sample_blinks",
    "sample_expression_track",
    "sample_gaze",
    "sample_motion",
    "smooth_process",
    "speech_mouth",
]

MOTION_KEYS = (
    "time",
    "head_pose",
    "translation",
    "scale",
    "gaze",
    "eye_closure",
    "jaw_opening",
    "expression",
    "expression_intensity",
    "valence",
    "arousal",
    "au_intensity",
    "au_occurrence",
    "expression_parameters",
)

# Blink shape as fractions of its duration: the lids close, stay shut, then reopen more slowly.
BLINK_CLOSING_FRACTION = 0.3
BLINK_CLOSED_FRACTION = 0.2

# Saccadic main sequence: saccade duration grows linearly with amplitude. Over the default gaze
# ranges this gives 21-130 ms, inside the 20-200 ms usually reported for human saccades.
# NOTE: the intercept and slope are a commonly quoted fit recalled from the eye-movement
# literature, not checked against a primary source.
SACCADE_DURATION_INTERCEPT_S = 0.021
SACCADE_DURATION_SLOPE_S_PER_DEGREE = 0.0022

# Speech sets AU25 to speech_lips_part * tanh(envelope / LIPS_PART_ENVELOPE), which reaches 76%
# of its maximum at an envelope of 0.25, so the lips part early in each syllable.
LIPS_PART_ENVELOPE = 0.25
SPEECH_VARIATION_AUS = (10, 17, 20)


def _check_range(name: str, value_range: tuple[float, float], *, lowest: float = -math.inf) -> None:
    low, high = value_range
    if not lowest <= low <= high < math.inf:
        raise ValueError(f"{name} must satisfy {lowest:g} <= low <= high, got {value_range}")


@dataclass(frozen=True)
class MotionConfig:
    """Parameters of the per-clip trajectories.

    Args:
        yaw_range: bounds of head yaw in radians.
        pitch_range: bounds of head pitch in radians.
        roll_range: bounds of head roll in radians.
        translation_range: bounds of each translation axis in normalised image coordinates.
        scale_range: bounds of the scale factor.
        drift_frequency_range_hz: range of the sinusoid frequencies of pose and framing drift.
        drift_components: number of sinusoids per drifting value.
        gaze_yaw_range: bounds of gaze yaw relative to the head in radians.
        gaze_pitch_range: bounds of gaze pitch relative to the head in radians.
        fixation_range_s: range of fixation durations, drawn log-uniformly.
        blink_rate_hz: mean number of blinks per second (0.3 is 18 per minute).
        blink_duration_range_s: range of the duration of one blink.
        min_blink_interval_s: shortest time between two blink onsets.
        expression_keyframes: number of label sets the clip moves through (1 keeps one expression).
        transition_s: duration of one expression transition. Shortened to half a segment when
            the clip is too short for it.
        max_speech_jaw_opening: jaw opening in radians at the loudest frame of speech.
        speech_lips_part: AU25 intensity that loud speech approaches.
        speech_au_variation: largest AU10, AU17 and AU20 intensity added while speaking.
        labels: parameters of the expression label sets.
    """

    yaw_range: tuple[float, float] = (-0.5, 0.5)
    pitch_range: tuple[float, float] = (-0.25, 0.25)
    roll_range: tuple[float, float] = (-0.15, 0.15)
    translation_range: tuple[float, float] = (-0.05, 0.05)
    scale_range: tuple[float, float] = (0.92, 1.08)
    drift_frequency_range_hz: tuple[float, float] = (0.05, 0.4)
    drift_components: int = 3
    gaze_yaw_range: tuple[float, float] = (-0.35, 0.35)
    gaze_pitch_range: tuple[float, float] = (-0.25, 0.25)
    fixation_range_s: tuple[float, float] = (0.25, 1.5)
    blink_rate_hz: float = 0.3
    blink_duration_range_s: tuple[float, float] = (0.12, 0.2)
    min_blink_interval_s: float = 1.0
    expression_keyframes: int = 2
    transition_s: float = 0.6
    max_speech_jaw_opening: float = 0.25
    speech_lips_part: float = 0.8
    speech_au_variation: float = 0.15
    labels: LabelConfig = field(default_factory=LabelConfig)

    def __post_init__(self) -> None:
        for name in ("yaw_range", "pitch_range", "roll_range", "translation_range", "gaze_yaw_range", "gaze_pitch_range"):
            _check_range(name, getattr(self, name))
        _check_range("scale_range", self.scale_range, lowest=1e-6)
        _check_range("drift_frequency_range_hz", self.drift_frequency_range_hz, lowest=0.0)
        _check_range("fixation_range_s", self.fixation_range_s, lowest=1e-3)
        _check_range("blink_duration_range_s", self.blink_duration_range_s, lowest=1e-3)
        if self.drift_components < 1:
            raise ValueError(f"drift_components must be >= 1, got {self.drift_components}")
        if self.blink_rate_hz < 0:
            raise ValueError(f"blink_rate_hz must be >= 0, got {self.blink_rate_hz}")
        if self.min_blink_interval_s < self.blink_duration_range_s[1]:
            raise ValueError("min_blink_interval_s must be at least the longest blink duration, so blinks never overlap")
        if self.blink_rate_hz > 0 and 1.0 / self.blink_rate_hz <= self.min_blink_interval_s:
            raise ValueError(
                f"blink_rate_hz {self.blink_rate_hz} needs a mean interval longer than "
                f"min_blink_interval_s {self.min_blink_interval_s}"
            )
        if self.expression_keyframes < 1:
            raise ValueError(f"expression_keyframes must be >= 1, got {self.expression_keyframes}")
        if self.transition_s <= 0:
            raise ValueError(f"transition_s must be > 0, got {self.transition_s}")
        if self.max_speech_jaw_opening < 0:
            raise ValueError(f"max_speech_jaw_opening must be >= 0, got {self.max_speech_jaw_opening}")
        for name in ("speech_lips_part", "speech_au_variation"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")


def _check_clip(num_frames: int, fps: float) -> None:
    if isinstance(num_frames, bool) or not isinstance(num_frames, (int, np.integer)) or num_frames < 1:
        raise ValueError(f"num_frames must be a positive integer, got {num_frames!r}")
    if isinstance(fps, bool) or not isinstance(fps, (int, float, np.integer, np.floating)) or not 0 < fps < math.inf:
        raise ValueError(f"fps must be a positive finite number, got {fps!r}")


def cosine_ease(progress: np.ndarray) -> np.ndarray:
    """Map progress in [0, 1] (clipped) to a weight in [0, 1] with zero slope at both ends."""
    return 0.5 - 0.5 * np.cos(math.pi * np.clip(progress, 0.0, 1.0))


def max_frame_step(value_range: tuple[float, float], frequency_range_hz: tuple[float, float], fps: float) -> float:
    """Return the largest frame-to-frame change `smooth_process` can make with these settings."""
    return (value_range[1] - value_range[0]) / 2 * 2 * math.pi * frequency_range_hz[1] / fps


# Pose and framing -------------------------------------------------------------------------------


def smooth_process(
    rng: np.random.Generator,
    num_frames: int,
    fps: float,
    value_range: tuple[float, float],
    frequency_range_hz: tuple[float, float],
    num_components: int = 3,
) -> np.ndarray:
    """Sample a smooth trajectory (T,) that stays inside `value_range`.

    The trajectory is centre + amplitude * sum_j w_j sin(2 pi f_j t + phase_j), with weights w
    summing to 1. The amplitude is 40-100% of half the range width, and the centre is placed so
    that centre +- amplitude fits inside the range. Its frame-to-frame change is at most
    `max_frame_step(value_range, frequency_range_hz, fps)`.
    """
    _check_clip(num_frames, fps)
    low, high = value_range
    half_width = (high - low) / 2
    amplitude = half_width * rng.uniform(0.4, 1.0)
    centre = rng.uniform(low + amplitude, high - amplitude)
    frequencies = rng.uniform(*frequency_range_hz, size=num_components)
    phases = rng.uniform(0.0, 2.0 * math.pi, size=num_components)
    weights = rng.dirichlet(np.ones(num_components))

    times = np.arange(num_frames) / fps
    waves = np.sin(2.0 * math.pi * frequencies[:, None] * times[None, :] + phases[:, None])
    # Clip only to absorb rounding at the range ends.
    return np.clip(centre + amplitude * (weights @ waves), low, high)


# Gaze and blinks --------------------------------------------------------------------------------


def _minimum_jerk(progress: np.ndarray) -> np.ndarray:
    progress = np.clip(progress, 0.0, 1.0)
    return progress**3 * (10.0 - 15.0 * progress + 6.0 * progress**2)


def sample_gaze(rng: np.random.Generator, num_frames: int, fps: float, config: MotionConfig) -> np.ndarray:
    """Sample gaze (T, 2) as (yaw, pitch) in radians: fixations joined by minimum-jerk saccades.

    Fixation targets are uniform in the gaze ranges, and fixation durations are log-uniform in
    `fixation_range_s`.
    """
    _check_clip(num_frames, fps)
    low = np.array([config.gaze_yaw_range[0], config.gaze_pitch_range[0]])
    high = np.array([config.gaze_yaw_range[1], config.gaze_pitch_range[1]])
    log_fixation = np.log(config.fixation_range_s)
    duration = num_frames / fps
    times = np.arange(num_frames) / fps

    target = rng.uniform(low, high)
    gaze = np.repeat(target[None, :], num_frames, axis=0)
    time = np.exp(rng.uniform(*log_fixation))
    while time < duration:
        new_target = rng.uniform(low, high)
        amplitude_degrees = math.degrees(float(np.linalg.norm(new_target - target)))
        saccade = SACCADE_DURATION_INTERCEPT_S + SACCADE_DURATION_SLOPE_S_PER_DEGREE * amplitude_degrees

        after = times >= time
        progress = _minimum_jerk((times[after] - time) / saccade)
        gaze[after] = target + (new_target - target) * progress[:, None]

        target = new_target
        time += saccade + np.exp(rng.uniform(*log_fixation))
    return gaze


def blink_closure(elapsed: np.ndarray, duration: float) -> np.ndarray:
    """Return eye closure in [0, 1] at `elapsed` seconds after a blink onset (0 outside the blink)."""
    closing = BLINK_CLOSING_FRACTION * duration
    closed_until = closing + BLINK_CLOSED_FRACTION * duration
    opening = duration - closed_until
    closure = np.where(
        elapsed < closing,
        cosine_ease(elapsed / closing),
        np.where(elapsed < closed_until, 1.0, 1.0 - cosine_ease((elapsed - closed_until) / opening)),
    )
    return np.where((elapsed >= 0) & (elapsed < duration), closure, 0.0)


def sample_blinks(
    rng: np.random.Generator, num_frames: int, fps: float, config: MotionConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Sample blinks and return the eye closure per frame (T,) and the blink onsets in seconds.

    Intervals between onsets are `min_blink_interval_s` plus an exponential gap, so their mean
    is 1 / `blink_rate_hz`. The first onset is uniform within one mean interval.
    """
    _check_clip(num_frames, fps)
    times = np.arange(num_frames) / fps
    closure = np.zeros(num_frames)
    onsets: list[float] = []
    if config.blink_rate_hz == 0:
        return closure, np.array(onsets)

    mean_interval = 1.0 / config.blink_rate_hz
    time = rng.uniform(0.0, mean_interval)
    while time < num_frames / fps:
        blink_duration = rng.uniform(*config.blink_duration_range_s)
        closure = np.maximum(closure, blink_closure(times - time, blink_duration))
        onsets.append(time)
        time += config.min_blink_interval_s + rng.exponential(mean_interval - config.min_blink_interval_s)
    return closure, np.array(onsets)


# Expression and mouth ---------------------------------------------------------------------------


def sample_expression_track(
    rng: np.random.Generator, num_frames: int, fps: float, config: MotionConfig
) -> dict[str, np.ndarray]:
    """Sample `expression_keyframes` label sets and blend them over the clip.

    The clip is split into equal segments, one per label set. Transition k is centred on the
    boundary between segments k - 1 and k, moved by up to a quarter segment, and lasts
    `transition_s` or half a segment if that is shorter, so transitions never overlap.

    Returns:
        `expression` (T,) int64 (the label set with the larger weight), `expression_intensity`,
        `valence`, `arousal` (T,) float32, `au_intensity` (T, 17) float32, `au_occurrence`
        (T, 17) bool, and `keyframes`, the label sets as returned by `sample_labels`.
    """
    _check_clip(num_frames, fps)
    count = config.expression_keyframes
    keyframes = sample_labels(rng, count, config.labels)
    duration = num_frames / fps
    segment = duration / count
    transition = min(config.transition_s, segment / 2)
    centres = segment * np.arange(1, count) + rng.uniform(-segment / 4, segment / 4, size=count - 1)

    times = np.arange(num_frames) / fps
    # weights[k, t]: progress of transition k + 1 at frame t.
    weights = cosine_ease((times[None, :] - (centres[:, None] - transition / 2)) / transition)

    def blend(values: np.ndarray) -> np.ndarray:
        steps = np.diff(values, axis=0)  # (count - 1, ...)
        return values[0] + np.tensordot(weights.T, steps, axes=1)

    au_intensity = np.clip(blend(keyframes["au_intensity"].astype(np.float64)), 0.0, 1.0)
    dominant = (weights >= 0.5).sum(axis=0)
    return {
        "expression": keyframes["expression"][dominant],
        "expression_intensity": blend(keyframes["expression_intensity"].astype(np.float64)).astype(np.float32),
        "valence": blend(keyframes["valence"].astype(np.float64)).astype(np.float32),
        "arousal": blend(keyframes["arousal"].astype(np.float64)).astype(np.float32),
        "au_intensity": au_intensity.astype(np.float32),
        "au_occurrence": binarise_au_intensity(au_intensity.astype(np.float32)),
        "keyframes": keyframes,
    }


def speech_mouth(
    rng: np.random.Generator, num_frames: int, fps: float, config: MotionConfig, envelope: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Turn a frame-rate speech envelope (T,) in [0, 1] into mouth motion.

    Returns:
        `jaw_opening` (T,) in radians, proportional to the envelope. `lips_part` (T,) is the
        AU25 intensity that speech sets. `au_offsets` (T, 17) are small non-negative additions
        to AU10, AU17 and AU20 that vary slowly and scale with the envelope. Without an envelope
        every output is zero, but the same random numbers are drawn.
    """
    _check_clip(num_frames, fps)
    variation = np.stack(
        [smooth_process(rng, num_frames, fps, (0.0, 1.0), (1.0, 4.0)) for _ in SPEECH_VARIATION_AUS], axis=-1
    )
    if envelope is None:
        envelope = np.zeros(num_frames)
    envelope = np.asarray(envelope, dtype=np.float64)
    if envelope.shape != (num_frames,):
        raise ValueError(f"speech envelope must have one value per frame, shape ({num_frames},), got {envelope.shape}")
    if not np.isfinite(envelope).all() or envelope.min() < 0.0 or envelope.max() > 1.0:
        raise ValueError("speech envelope values must lie in [0, 1], so divide the envelope by its peak")

    au_offsets = np.zeros((num_frames, NUM_ACTION_UNITS))
    for column, action_unit in enumerate(SPEECH_VARIATION_AUS):
        au_offsets[:, au_index(action_unit)] = config.speech_au_variation * envelope * variation[:, column]

    return {
        "jaw_opening": config.max_speech_jaw_opening * envelope,
        "lips_part": config.speech_lips_part * np.tanh(envelope / LIPS_PART_ENVELOPE),
        "au_offsets": au_offsets,
    }


# Clip -------------------------------------------------------------------------------------------


def sample_motion(
    rng: np.random.Generator | int,
    num_frames: int,
    *,
    fps: float = 25.0,
    config: MotionConfig | None = None,
    speech_envelope: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Sample every per-frame trajectory of one clip.

    Args:
        rng: a numpy Generator (advanced in place) or an integer seed.
        num_frames: number of video frames T, >= 1.
        fps: video frames per second.
        config: trajectory parameters. None uses `MotionConfig()`.
        speech_envelope: (T,) envelope in [0, 1] from `zoo.data.synthheads.audio`. None gives a
            silent clip with a closed jaw. The other trajectories do not depend on it.

    Returns:
        A dict with the keys of `MOTION_KEYS`. `time` (T,) is in seconds, `head_pose` (T, 3) is
        yaw, pitch and roll, and `gaze` (T, 2) is yaw and pitch. `translation` (T, 2),
        `scale`, `eye_closure` and `jaw_opening` (T,) follow the module conventions. The
        expression labels are those of `sample_expression_track`, with speech added to the
        AUs, and `expression_parameters` (T, 19) combines the AUs and the eye closure.
        Arrays are float32 except `expression` (int64) and `au_occurrence` (bool).
    """
    _check_clip(num_frames, fps)
    config = config or MotionConfig()
    rng = as_generator(rng)

    def drift(value_range: tuple[float, float]) -> np.ndarray:
        return smooth_process(rng, num_frames, fps, value_range, config.drift_frequency_range_hz, config.drift_components)

    head_pose = np.stack([drift(config.yaw_range), drift(config.pitch_range), drift(config.roll_range)], axis=-1)
    translation = np.stack([drift(config.translation_range), drift(config.translation_range)], axis=-1)
    scale = drift(config.scale_range)
    gaze = sample_gaze(rng, num_frames, fps, config)
    eye_closure, _ = sample_blinks(rng, num_frames, fps, config)
    track = sample_expression_track(rng, num_frames, fps, config)
    mouth = speech_mouth(rng, num_frames, fps, config, speech_envelope)

    au_intensity = np.clip(track["au_intensity"] + mouth["au_offsets"], 0.0, 1.0)
    lips_part = au_index(25)
    au_intensity[:, lips_part] = np.maximum(au_intensity[:, lips_part], mouth["lips_part"])
    au_intensity = au_intensity.astype(np.float32)

    return {
        "time": (np.arange(num_frames) / fps).astype(np.float32),
        "head_pose": head_pose.astype(np.float32),
        "translation": translation.astype(np.float32),
        "scale": scale.astype(np.float32),
        "gaze": gaze.astype(np.float32),
        "eye_closure": eye_closure.astype(np.float32),
        "jaw_opening": mouth["jaw_opening"].astype(np.float32),
        "expression": track["expression"],
        "expression_intensity": track["expression_intensity"],
        "valence": track["valence"],
        "arousal": track["arousal"],
        "au_intensity": au_intensity,
        "au_occurrence": binarise_au_intensity(au_intensity),
        "expression_parameters": to_expression_parameters(au_intensity, eye_closure.astype(np.float32)),
    }
