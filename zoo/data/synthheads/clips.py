"""SynthHeads clips: talking-head videos with speech audio, per-frame labels and exact optical flow.

One row is one clip of T frames at `fps` of one identity, with one light and background. The
head pose, framing, expression, gaze, blinks and mouth follow
`zoo.data.synthheads.motion.sample_motion`, whose mouth is driven by the envelope of the clip's
synthetic speech (`zoo.data.synthheads.audio`), so lips and audio carry the same signal.

Columns (T frames; F = T - 1 frame pairs):

- ``identity``, ``clip`` (clip index, unique across splits), ``time`` (T,) in seconds, frame i
  at i / fps.
- ``frames``: T RGB renders (PIL). With ``conditioning=True`` also ``nmfc``, ``mask``,
  ``sketch``, ``eyes`` (T PIL images each) and ``depth`` (T, H, W).
- ``waveform``: the speech at `sample_rate` Hz, round(T * sample_rate / fps) samples in [-1, 1]
  (zeros with ``speech=False``). ``speech_envelope`` (T,) in [0, 1]. ``audio_features``
  (T, 84): `zoo.data.synthheads.audio.audio_features`.
- Per frame, with the meaning they have for stills: ``expression`` (T,),
  ``expression_intensity``, ``valence``, ``arousal``, ``au_intensity`` and ``au_occurrence``
  (T, 17), ``pose`` (T, 3), ``rotation`` (T, 9), ``scale`` (T,), ``translation`` (T, 2),
  ``gaze`` (T, 2), ``eye_closure`` (T, 2), ``expression_parameters`` (T, 19),
  ``landmarks_2d`` (T, 68, 2), ``landmarks_3d`` (T, 68, 3), ``landmarks_visible`` (T, 68) and
  ``pupils_2d`` (T, 2, 2). ``jaw`` (T,) is the speech jaw opening in radians.
- ``identity_coefficients`` (32,) of the clip's person.
- With ``flow=True``: ``flow`` (F, 2, H, W) float32, forward flow from frame t to t + 1 in
  pixels (x right, y down), and ``flow_valid`` (F, H, W) in {0, 1}, see `zoo.data.synthheads.flow`.
"""

from __future__ import annotations

import numpy as np
import torch

from zoo.data.facs import EXPRESSIONS, NUM_ACTION_UNITS
from zoo.data.synthheads.audio import AUDIO_FEATURE_DIM, audio_features, num_audio_samples, sample_speech_track
from zoo.data.synthheads.dataset import (
    BASE_SCALE,
    BASE_TRANSLATION,
    CLIP_STREAM,
    CONDITIONING_IMAGES,
    RENDER_BATCH,
    SynthHeadsConfig,
    camera_from,
    render_faces,
    sample_identity,
    stream,
    to_pil,
    torch_generator,
    with_identity_traits,
)
from zoo.data.synthheads.flow import sequence_flow
from zoo.data.synthheads.labels import EXPRESSION_PARAMETER_NAMES
from zoo.data.synthheads.motion import MotionConfig, sample_motion
from zoo.geometry import HeadRenderer, sample_appearance

__all__ = ["clip_features", "clip_rows", "motion_config", "render_clip", "sample_clip"]


def motion_config(config: SynthHeadsConfig) -> MotionConfig:
    """Return the clip trajectory parameters that a SynthHeads config sets; the rest keep their defaults."""
    return MotionConfig(
        yaw_range=config.yaw_range,
        pitch_range=config.pitch_range,
        roll_range=config.roll_range,
        translation_range=config.translation_range,
        scale_range=config.scale_range,
        gaze_yaw_range=config.gaze_yaw_range,
        gaze_pitch_range=config.gaze_pitch_range,
        blink_rate_hz=config.blink_rate_hz,
        expression_keyframes=config.expression_keyframes,
        labels=config.label_config(),
    )


def sample_clip(config: SynthHeadsConfig, identity: int, clip: int) -> dict:
    """Draw one clip's speech, trajectories and scene appearance (nothing rendered).

    Returns:
        ``waveform``, ``envelope`` (None for silent clips), ``motion`` (the `sample_motion`
        dict), ``scale`` and ``translation`` of the camera per frame, and ``scene``, a
        one-row `Appearance` whose identity traits are still to be set.
    """
    rng = stream(config, identity, CLIP_STREAM, clip)
    frames = config.num_frames
    if config.speech:
        speech = sample_speech_track(rng, frames, fps=config.fps, sample_rate=config.sample_rate)
        waveform, envelope = speech["waveform"], speech["envelope"]
    else:
        waveform = np.zeros(num_audio_samples(frames, config.fps, config.sample_rate), dtype=np.float32)
        envelope = None
    motion = sample_motion(rng, frames, fps=config.fps, config=motion_config(config), speech_envelope=envelope)
    scene = sample_appearance(1, torch_generator(rng))
    return {
        "waveform": waveform,
        "envelope": envelope,
        "motion": motion,
        "scale": (BASE_SCALE * motion["scale"]).astype(np.float32),
        "translation": (np.asarray(BASE_TRANSLATION) + motion["translation"]).astype(np.float32),
        "scene": scene,
    }


def render_clip(config: SynthHeadsConfig, renderer: HeadRenderer, identity: int, clip: int) -> dict:
    """Sample and render one clip.

    Returns:
        The `sample_clip` dict plus ``coefficients``, the per-frame ``camera`` and
        ``appearance``, ``rendered`` (the renderer's outputs for all frames, ``vertices``,
        ``landmarks_3d`` and, with ``flow=True``, ``flow`` and ``flow_valid``) and ``audio_features``.
    """
    model = renderer.model
    coefficients, person = sample_identity(model, config, identity)
    sample = sample_clip(config, identity, clip)
    motion = sample["motion"]
    frames = config.num_frames
    appearance = with_identity_traits(sample["scene"], person).index([0] * frames)
    camera = camera_from(motion["head_pose"], sample["scale"], sample["translation"])
    expression = torch.from_numpy(motion["expression_parameters"])
    jaw = torch.from_numpy(motion["jaw_opening"])
    gaze = torch.from_numpy(motion["gaze"])

    chunks = []
    for start in range(0, frames, RENDER_BATCH):
        part = slice(start, min(start + RENDER_BATCH, frames))
        size = part.stop - part.start
        chunks.append(
            render_faces(
                renderer, coefficients.expand(size, -1), expression[part], jaw[part], gaze[part], camera.index(part),
                appearance.index(part), config.conditioning,
            )
        )
    rendered = {name: torch.cat([chunk[name] for chunk in chunks]) for name in chunks[0]}
    if config.flow:
        rendered["flow"], rendered["flow_valid"] = sequence_flow(
            renderer, rendered["vertices"], camera, appearance, rendered["face_index"]
        )
    features = audio_features(sample["waveform"], sample_rate=config.sample_rate, fps=config.fps, num_frames=frames)
    return {
        **sample, "coefficients": coefficients, "camera": camera, "appearance": appearance, "rendered": rendered,
        "audio_features": features,
    }


def clip_features(config: SynthHeadsConfig, num_identity: int):
    import datasets

    frames, size = config.num_frames, config.image_size

    def per_frame(*shape, dtype="float32"):
        if len(shape) == 0:
            return datasets.Sequence(datasets.Value(dtype), length=frames)
        array_type = {1: datasets.Array2D, 2: datasets.Array3D, 3: datasets.Array4D}[len(shape)]
        return array_type(shape=(frames, *shape), dtype=dtype)

    columns = {
        "identity": datasets.Value("int64"),
        "clip": datasets.Value("int64"),
        "time": per_frame(),
        "frames": datasets.Sequence(datasets.Image(), length=frames),
        "waveform": datasets.Sequence(datasets.Value("float32")),
        "speech_envelope": per_frame(),
        "audio_features": per_frame(AUDIO_FEATURE_DIM),
        "expression": datasets.Sequence(datasets.ClassLabel(names=list(EXPRESSIONS)), length=frames),
        "expression_intensity": per_frame(),
        "valence": per_frame(),
        "arousal": per_frame(),
        "au_intensity": per_frame(NUM_ACTION_UNITS),
        "au_occurrence": per_frame(NUM_ACTION_UNITS, dtype="int64"),
        "pose": per_frame(3),
        "rotation": per_frame(9),
        "scale": per_frame(),
        "translation": per_frame(2),
        "gaze": per_frame(2),
        "eye_closure": per_frame(2),
        "jaw": per_frame(),
        "expression_parameters": per_frame(len(EXPRESSION_PARAMETER_NAMES)),
        "landmarks_2d": per_frame(68, 2),
        "landmarks_3d": per_frame(68, 3),
        "landmarks_visible": per_frame(68, dtype="bool"),
        "pupils_2d": per_frame(2, 2),
        "identity_coefficients": datasets.Sequence(datasets.Value("float32"), length=num_identity),
    }
    if config.conditioning:
        columns.update({name: datasets.Sequence(datasets.Image(), length=frames) for name in CONDITIONING_IMAGES})
        columns["depth"] = per_frame(size, size)
    if config.flow:
        columns["flow"] = datasets.Array4D(shape=(frames - 1, 2, size, size), dtype="float32")
        columns["flow_valid"] = datasets.Array3D(shape=(frames - 1, size, size), dtype="uint8")
    return datasets.Features(columns)


def clip_rows(config: SynthHeadsConfig, identities: np.ndarray, renderer: HeadRenderer) -> dict[str, list]:
    """Render every clip of the given identities and return the columns of their rows."""
    rows: dict[str, list] = {name: [] for name in clip_features(config, renderer.model.num_identity)}
    for identity in identities:
        for clip in range(config.clips_per_identity):
            result = render_clip(config, renderer, int(identity), clip)
            _append_clip_row(rows, config, int(identity), int(identity) * config.clips_per_identity + clip, result)
    return rows


def _append_clip_row(rows: dict[str, list], config: SynthHeadsConfig, identity: int, clip: int, result: dict) -> None:
    motion, rendered = result["motion"], result["rendered"]
    rows["identity"].append(identity)
    rows["clip"].append(clip)
    rows["time"].append(motion["time"])
    rows["frames"].append([to_pil(image) for image in rendered["rgb"]])

    rows["waveform"].append(result["waveform"])
    envelope = result["envelope"]
    rows["speech_envelope"].append(np.zeros(config.num_frames, np.float32) if envelope is None else envelope)
    rows["audio_features"].append(result["audio_features"].numpy())

    for name in ("expression", "expression_intensity", "valence", "arousal", "au_intensity", "gaze", "expression_parameters"):
        rows[name].append(motion[name])
    rows["au_occurrence"].append(motion["au_occurrence"].astype(np.int64))
    rows["pose"].append(motion["head_pose"])
    rows["rotation"].append(result["camera"].matrix().reshape(-1, 9).numpy())
    rows["scale"].append(result["scale"])
    rows["translation"].append(result["translation"])
    rows["eye_closure"].append(np.repeat(motion["eye_closure"][:, None], 2, axis=1))
    rows["jaw"].append(motion["jaw_opening"])

    rows["landmarks_2d"].append(rendered["landmarks_2d"].numpy())
    rows["landmarks_3d"].append(rendered["landmarks_3d"].numpy())
    rows["landmarks_visible"].append(rendered["landmarks_visible"].numpy())
    rows["pupils_2d"].append(rendered["pupils_2d"].numpy())
    rows["identity_coefficients"].append(result["coefficients"].numpy())

    if config.conditioning:
        for name in CONDITIONING_IMAGES:
            rows[name].append([to_pil(image) for image in rendered[name]])
        rows["depth"].append(rendered["depth"][:, 0].numpy())
    if config.flow:
        rows["flow"].append(rendered["flow"].numpy())
        rows["flow_valid"].append(rendered["flow_valid"].numpy().astype(np.uint8))
