"""SynthHeads datasets: seeded renders of the built-in morphable head with exact labels, split by identity.

`build_synthheads` returns a `datasets.DatasetDict` of still images (``kind="images"``) or of
clips (``kind="clips"``, see `zoo.data.synthheads.clips`). Identities are divided between the
splits, so no person appears in two splits. Everything is drawn from per-identity random
streams derived from the seed, so the same config gives the same data, and identity i looks
the same whatever the number of identities or the split fractions.

Each identity has fixed identity coefficients and fixed identity traits of appearance (skin,
lips, hair colour and style, iris, stubble, blush). Every image draws its own expression labels
(`zoo.data.synthheads.labels.sample_labels`), head pose, framing, gaze, eye closure, light and
background, uniformly within the config's ranges.

Builds are cached with `Dataset.save_to_disk` under ``$ZOO_CACHE/synthheads/<key>`` (default
``~/.cache/zoo``), where the key hashes the config and the source code of the renderer and
samplers. A later build with the same key is read back with `datasets.load_from_disk`, which
reads Arrow files and JSON only.

Image columns (``kind="images"``):

- ``image``: RGB render (PIL). ``identity``: identity index, unique across splits.
- ``expression`` (ClassLabel over `zoo.data.facs.EXPRESSIONS`), ``expression_intensity``,
  ``au_intensity`` (17 values in [0, 1], `zoo.data.facs.AU_LABELS` order), ``au_occurrence``
  (17 values in {0, 1}), ``valence`` and ``arousal`` in [-1, 1].
- ``pose``: (yaw, pitch, roll) in radians and ``rotation``: the row-major 3 x 3 matrix
  R = R_y(yaw) R_x(pitch) R_z(roll), conventions of `zoo.geometry.camera`.
- ``scale`` (normalised image units per cm) and ``translation`` (x right, y up, normalised
  image units) define the scaled orthographic camera. A model point v projects to
  scale * R v + (translation, 0), where [-1, 1] spans the image side.
- ``gaze``: eyeball (yaw, pitch) in radians relative to the head. ``eye_closure``: (left, right) in [0, 1].
- ``landmarks_2d`` (68 x 2 pixels, x right, y down, pixel centres at +0.5), ``landmarks_3d``
  (68 x 3 cm in the head frame, before pose), ``landmarks_visible`` (68 bools), ``pupils_2d``
  (2 x 2 pixels, left then right), all in iBUG 68-point order.
- ``identity_coefficients`` (32), ``expression_parameters`` (19: the AU intensities, then left
  and right eye closure) and ``jaw`` (radians, 0 for stills: AU26 opens the jaw itself).
- With ``conditioning=True``: ``nmfc``, ``sketch`` and ``eyes`` (RGB), ``mask`` (greyscale)
  and ``depth`` (H x W float32, camera z in normalised image units, larger is nearer, 0 on
  the background), from the same raster pass as ``image``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from zoo.data.facs import AU_LABELS, EXPRESSIONS, NUM_ACTION_UNITS
from zoo.data.synthheads.labels import EXPRESSION_PARAMETER_NAMES, LabelConfig, sample_labels, to_expression_parameters
from zoo.geometry import Appearance, Camera, HeadRenderer, MorphableHeadModel, sample_appearance

__all__ = [
    "BASE_SCALE",
    "BASE_TRANSLATION",
    "CONDITIONING_IMAGES",
    "IDENTITY_TRAITS",
    "KINDS",
    "SynthHeadsConfig",
    "build_synthheads",
    "cache_root",
    "config_of",
    "identity_splits",
    "sample_identity",
    "sample_image_parameters",
]

logger = logging.getLogger(__name__)

KINDS = ("images", "clips")
# Camera framing at scale factor 1 and zero offset: the 24 cm from chin to crown of the mean
# head span 80% of the image side, and the head is centred vertically.
BASE_SCALE = 1.6 / 24.0
BASE_TRANSLATION = (0.0, -0.03)
# Appearance fields that belong to the person; the others (light, background) change per image or clip.
IDENTITY_TRAITS = ("skin", "lips", "hair", "iris", "hair_style", "stubble", "blush")
CONDITIONING_IMAGES = ("nmfc", "mask", "sketch", "eyes")
RENDER_BATCH = 64
# Rows rendered before they are encoded into Arrow (stills; clips are grouped by identity).
ENCODE_ROWS = 256
# Version of the stored layout. Changing it, the config or the sampler and renderer source
# changes the cache key.
FORMAT_VERSION = 1

# Pose, framing and gaze ranges per kind. Stills cover a wider pose range than the slow drift
# of talking-head clips, whose defaults are those of `zoo.data.synthheads.motion.MotionConfig`.
_KIND_DEFAULTS: dict[str, dict[str, tuple[float, float]]] = {
    "images": {
        "yaw_range": (-0.8, 0.8),
        "pitch_range": (-0.4, 0.4),
        "roll_range": (-0.3, 0.3),
        "scale_range": (0.9, 1.1),
        "translation_range": (-0.05, 0.05),
    },
    "clips": {
        "yaw_range": (-0.5, 0.5),
        "pitch_range": (-0.25, 0.25),
        "roll_range": (-0.15, 0.15),
        "scale_range": (0.92, 1.08),
        "translation_range": (-0.05, 0.05),
    },
}
_RANGE_FIELDS = ("yaw_range", "pitch_range", "roll_range", "scale_range", "translation_range",
                 "gaze_yaw_range", "gaze_pitch_range", "intensity_range")


CANONICAL_SPLIT_ORDER = ("train", "validation", "test")


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


@dataclass(frozen=True)
class SynthHeadsConfig:
    """Parameters of a SynthHeads build.

    Args:
        kind: "images" for stills, "clips" for videos with audio and flow.
        num_identities: number of people, divided between the splits.
        images_per_identity: stills per person (images only).
        clips_per_identity: clips per person (clips only).
        num_frames: frames per clip (clips only).
        fps: video frame rate (clips only).
        sample_rate: audio sample rate in Hz (clips only).
        image_size: side of the square renders in pixels.
        splits: split name to fraction of the identities; fractions are positive and sum to at
            most 1, and every split gets at least one identity.
        conditioning: also store NMFC, mask, sketch, eye and depth images.
        flow: store exact optical flow between consecutive frames (clips only).
        speech: drive the mouth with synthetic speech and store its waveform (clips only);
            False gives silent clips with a zero waveform.
        proportions: expression class proportions (`labels.LabelConfig.proportions`), as a
            list in `EXPRESSIONS` order or a name-to-weight mapping; None is uniform.
        intensity_range: range of the overall expression intensity (`labels.LabelConfig`).
        yaw_range, pitch_range, roll_range: head pose bounds in radians. None takes the kind's
            default (images: +-0.8, +-0.4, +-0.3; clips: +-0.5, +-0.25, +-0.15).
        scale_range: bounds of the factor on `BASE_SCALE`. None: (0.9, 1.1) for images, (0.92, 1.08) for clips.
        translation_range: bounds of each offset axis added to `BASE_TRANSLATION`, in normalised
            image units. None: +-0.05.
        gaze_yaw_range, gaze_pitch_range: eyeball rotation bounds relative to the head in radians.
        blink_probability: share of stills with closing eyes (images only); their closure is
            uniform in [0.2, 1], the same for both eyes.
        blink_rate_hz: mean blinks per second (clips only).
        expression_keyframes: expressions a clip moves through (clips only).
        seed: seed of every random draw.
    """

    kind: str = "images"
    num_identities: int = 50
    images_per_identity: int = 20
    clips_per_identity: int = 1
    num_frames: int = 50
    fps: float = 25.0
    sample_rate: int = 16_000
    image_size: int = 64
    splits: dict[str, float] = field(default_factory=lambda: {"train": 0.8, "validation": 0.1, "test": 0.1})
    conditioning: bool = True
    flow: bool = True
    speech: bool = True
    proportions: tuple[float, ...] | dict[str, float] | None = None
    intensity_range: tuple[float, float] = (0.4, 1.0)
    yaw_range: tuple[float, float] | None = None
    pitch_range: tuple[float, float] | None = None
    roll_range: tuple[float, float] | None = None
    scale_range: tuple[float, float] | None = None
    translation_range: tuple[float, float] | None = None
    gaze_yaw_range: tuple[float, float] = (-0.35, 0.35)
    gaze_pitch_range: tuple[float, float] = (-0.25, 0.25)
    blink_probability: float = 0.1
    blink_rate_hz: float = 0.3
    expression_keyframes: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown SynthHeads kind {self.kind!r}; choose from {KINDS}")
        for name, value in _KIND_DEFAULTS[self.kind].items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)
        for name in _RANGE_FIELDS:
            value = getattr(self, name)
            if not isinstance(value, (tuple, list)) or len(value) != 2:
                raise ValueError(f"{name} must be a (low, high) pair, got {value!r}")
            low, high = (float(v) for v in value)
            if not (math.isfinite(low) and math.isfinite(high) and low <= high):
                raise ValueError(f"{name} must satisfy low <= high with finite bounds, got {value!r}")
            object.__setattr__(self, name, (low, high))
        if self.scale_range[0] <= 0:
            raise ValueError(f"scale_range must be positive, got {self.scale_range}")
        for name in ("num_identities", "images_per_identity", "clips_per_identity", "num_frames", "sample_rate", "seed"):
            if not _is_int(getattr(self, name)):
                raise ValueError(f"{name} must be an integer, got {getattr(self, name)!r}")
        for name in ("num_identities", "images_per_identity", "clips_per_identity", "num_frames"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not _is_int(self.image_size) or self.image_size < 16:
            raise ValueError(f"image_size must be an integer of at least 16 px, got {self.image_size!r}")
        if self.kind == "clips" and self.flow and self.num_frames < 2:
            raise ValueError(f"flow needs clips of at least 2 frames, got num_frames={self.num_frames}; pass flow=False")
        if isinstance(self.fps, bool) or not isinstance(self.fps, (int, float)) or not 0 < self.fps < math.inf:
            raise ValueError(f"fps must be a positive number, got {self.fps!r}")
        # Floats throughout, so that 25 and 25.0 give the same fingerprint.
        object.__setattr__(self, "fps", float(self.fps))
        if self.sample_rate < 1000:
            raise ValueError(f"sample_rate must be at least 1000 Hz, got {self.sample_rate}")
        if not 0.0 <= self.blink_probability <= 1.0:
            raise ValueError(f"blink_probability must be in [0, 1], got {self.blink_probability}")
        _check_splits(self.splits)
        # Identities are dealt to the splits in this fixed order (train, validation, test, then
        # the rest by name), because configs saved as JSON with sorted keys lose their order.
        names = [name for name in CANONICAL_SPLIT_ORDER if name in self.splits]
        names += sorted(name for name in self.splits if name not in CANONICAL_SPLIT_ORDER)
        object.__setattr__(self, "splits", {name: float(self.splits[name]) for name in names})
        if isinstance(self.proportions, list):
            object.__setattr__(self, "proportions", tuple(self.proportions))
        # Validates proportions and the intensity range with the label sampler's own checks,
        # and for clips the blink and keyframe settings with the trajectory sampler's.
        self.label_config()
        if self.kind == "clips":
            from zoo.data.synthheads.clips import motion_config

            motion_config(self)

    def label_config(self) -> LabelConfig:
        """Return the `LabelConfig` of each face's (or each clip keyframe's) expression labels."""
        return LabelConfig(proportions=self.proportions, intensity_range=self.intensity_range)

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def fingerprint(self) -> str:
        """Hash of the config (16 hex digits); equal configs have equal fingerprints."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SynthHeadsConfig:
        """Rebuild a config from `to_dict` output (JSON lists become tuples)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown SynthHeads config keys {unknown}; known keys: {sorted(known)}")
        raw = dict(values)
        for name in _RANGE_FIELDS:
            if isinstance(raw.get(name), list):
                raw[name] = tuple(raw[name])
        return cls(**raw)


def _check_splits(splits: Any) -> None:
    if not isinstance(splits, dict) or not splits:
        raise ValueError(f"splits must be a non-empty mapping of split name to identity fraction, got {splits!r}")
    for name, fraction in splits.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"split names must be non-empty strings, got {name!r}")
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
            raise ValueError(f"split {name!r} needs a fraction in (0, 1], got {fraction!r}")
    if sum(splits.values()) > 1.0 + 1e-9:
        raise ValueError(f"split fractions must sum to at most 1, got {sum(splits.values()):g} for {splits}")


def identity_splits(config: SynthHeadsConfig) -> dict[str, np.ndarray]:
    """Divide identities 0..N-1 between the splits: disjoint, sorted, at least one per split.

    Split sizes are the fractions times N, rounded by largest remainder. Which identities go
    where is a seeded permutation.
    """
    total = config.num_identities
    fractions = np.array(list(config.splits.values()), dtype=np.float64)
    wanted = fractions * total
    counts = np.floor(wanted).astype(np.int64)
    assigned = min(int(round(fractions.sum() * total)), total)
    order = np.argsort(-(wanted - counts), kind="stable")
    for index in order[: max(assigned - int(counts.sum()), 0)]:
        counts[index] += 1
    empty = [name for name, count in zip(config.splits, counts) if count == 0]
    if empty:
        raise ValueError(
            f"num_identities={total} leaves the splits {empty} without an identity for fractions {config.splits}; "
            "raise num_identities or raise those fractions"
        )
    permutation = np.random.default_rng([config.seed, 0x5B117]).permutation(total)
    result, start = {}, 0
    for name, count in zip(config.splits, counts):
        result[name] = np.sort(permutation[start : start + count])
        start += count
    return result


# Random streams ---------------------------------------------------------------------------------

# Stream kinds of `stream`: identity coefficients and traits, stills, clips.
IDENTITY_STREAM = 0
IMAGE_STREAM = 1
CLIP_STREAM = 2


def stream(config: SynthHeadsConfig, identity: int, kind: int, index: int = 0) -> np.random.Generator:
    """Return the random stream `kind` of one identity (and one clip), independent of the others."""
    return np.random.default_rng([config.seed, int(identity), kind, int(index)])


def torch_generator(rng: np.random.Generator) -> torch.Generator:
    """Return a torch generator seeded from a numpy stream (for the model and appearance samplers)."""
    return torch.Generator().manual_seed(int(rng.integers(0, 2**62)))


@lru_cache(maxsize=1)
def builtin_model() -> MorphableHeadModel:
    return MorphableHeadModel.builtin()


def sample_identity(model: MorphableHeadModel, config: SynthHeadsConfig, identity: int) -> tuple[torch.Tensor, Appearance]:
    """Return one person's (K_id,) identity coefficients and appearance (batch of 1).

    Only the `IDENTITY_TRAITS` fields of the appearance are used; light and background are drawn per image.
    """
    generator = torch_generator(stream(config, identity, IDENTITY_STREAM))
    coefficients = model.sample_identity(1, generator)[0]
    appearance = sample_appearance(1, generator)
    return coefficients, appearance


def with_identity_traits(scene: Appearance, person: Appearance) -> Appearance:
    """Copy the `IDENTITY_TRAITS` of a one-person appearance into every row of a scene appearance."""
    values = {f.name: getattr(scene, f.name) for f in dataclasses.fields(scene)}
    for name in IDENTITY_TRAITS:
        values[name] = getattr(person, name).expand_as(values[name]).clone()
    return Appearance(**values)


def _uniform(rng: np.random.Generator, value_range: tuple[float, float], size) -> np.ndarray:
    return rng.uniform(value_range[0], value_range[1], size=size)


def sample_image_parameters(config: SynthHeadsConfig, identity: int, count: int | None = None) -> dict[str, Any]:
    """Draw the labels, pose, framing, gaze, eye closure and scene appearance of one identity's stills.

    Returns:
        A dict of numpy arrays with one row per image: the `sample_labels` keys, ``pose``
        (n, 3), ``scale`` (n,) camera scale, ``translation`` (n, 2), ``gaze`` (n, 2),
        ``eye_closure`` (n, 2), ``jaw`` (n,) and ``expression_parameters`` (n, 19). The entry
        ``scene`` is an `Appearance` of n rows whose identity traits are still to be set.
    """
    count = config.images_per_identity if count is None else count
    rng = stream(config, identity, IMAGE_STREAM)
    labels = sample_labels(rng, count, config.label_config())
    pose = np.stack(
        [_uniform(rng, config.yaw_range, count), _uniform(rng, config.pitch_range, count),
         _uniform(rng, config.roll_range, count)],
        axis=-1,
    )
    scale = BASE_SCALE * _uniform(rng, config.scale_range, count)
    translation = np.asarray(BASE_TRANSLATION) + _uniform(rng, config.translation_range, (count, 2))
    gaze = np.stack([_uniform(rng, config.gaze_yaw_range, count), _uniform(rng, config.gaze_pitch_range, count)], -1)
    blinking = rng.random(count) < config.blink_probability
    closure = np.where(blinking, rng.uniform(0.2, 1.0, count), 0.0)
    eye_closure = np.repeat(closure[:, None], 2, axis=1)
    scene = sample_appearance(count, torch_generator(rng))
    return {
        **labels,
        "pose": pose.astype(np.float32),
        "scale": scale.astype(np.float32),
        "translation": translation.astype(np.float32),
        "gaze": gaze.astype(np.float32),
        "eye_closure": eye_closure.astype(np.float32),
        "jaw": np.zeros(count, dtype=np.float32),
        "expression_parameters": to_expression_parameters(labels["au_intensity"], eye_closure.astype(np.float32)),
        "scene": scene,
    }


# Rendering --------------------------------------------------------------------------------------


def to_pil(image: torch.Tensor) -> Image.Image:
    """Convert a (C, H, W) float image in [0, 1] with 1 or 3 channels to a PIL image."""
    array = (image.detach().clamp(0.0, 1.0) * 255.0).round().to(torch.uint8).permute(1, 2, 0).numpy()
    if array.shape[-1] == 1:
        return Image.fromarray(array[..., 0], mode="L")
    return Image.fromarray(array, mode="RGB")


def render_faces(
    renderer: HeadRenderer,
    identity: torch.Tensor,
    expression: torch.Tensor,
    jaw: torch.Tensor,
    gaze: torch.Tensor,
    camera: Camera,
    appearance: Appearance,
    conditioning: bool,
) -> dict[str, torch.Tensor]:
    """Pose and render a batch: the renderer's outputs plus ``vertices`` and model-space ``landmarks_3d``."""
    outputs = ("rgb",) + (("nmfc", "mask", "depth", "sketch", "eyes") if conditioning else ())
    result = renderer.render_parameters(camera, appearance, identity, expression, jaw, gaze, outputs=outputs)
    result["landmarks_3d"] = renderer.model.landmarks_3d(vertices=result["vertices"])
    return result


def camera_from(pose: np.ndarray, scale: np.ndarray, translation: np.ndarray) -> Camera:
    return Camera(
        scale=torch.as_tensor(scale, dtype=torch.float32),
        rotation=torch.as_tensor(pose, dtype=torch.float32),
        translation=torch.as_tensor(translation, dtype=torch.float32),
    )


def image_features(config: SynthHeadsConfig, num_identity: int):
    import datasets

    size = config.image_size
    columns = {
        "image": datasets.Image(),
        "identity": datasets.Value("int64"),
        "expression": datasets.ClassLabel(names=list(EXPRESSIONS)),
        "expression_intensity": datasets.Value("float32"),
        "au_intensity": datasets.Sequence(datasets.Value("float32"), length=NUM_ACTION_UNITS),
        "au_occurrence": datasets.Sequence(datasets.Value("int64"), length=NUM_ACTION_UNITS),
        "valence": datasets.Value("float32"),
        "arousal": datasets.Value("float32"),
        "pose": datasets.Sequence(datasets.Value("float32"), length=3),
        "rotation": datasets.Sequence(datasets.Value("float32"), length=9),
        "scale": datasets.Value("float32"),
        "translation": datasets.Sequence(datasets.Value("float32"), length=2),
        "gaze": datasets.Sequence(datasets.Value("float32"), length=2),
        "eye_closure": datasets.Sequence(datasets.Value("float32"), length=2),
        "landmarks_2d": datasets.Array2D(shape=(68, 2), dtype="float32"),
        "landmarks_3d": datasets.Array2D(shape=(68, 3), dtype="float32"),
        "landmarks_visible": datasets.Sequence(datasets.Value("bool"), length=68),
        "pupils_2d": datasets.Array2D(shape=(2, 2), dtype="float32"),
        "identity_coefficients": datasets.Sequence(datasets.Value("float32"), length=num_identity),
        "expression_parameters": datasets.Sequence(datasets.Value("float32"), length=len(EXPRESSION_PARAMETER_NAMES)),
        "jaw": datasets.Value("float32"),
    }
    if config.conditioning:
        columns.update({name: datasets.Image() for name in CONDITIONING_IMAGES})
        columns["depth"] = datasets.Array2D(shape=(size, size), dtype="float32")
    return datasets.Features(columns)


def image_rows(config: SynthHeadsConfig, identities: np.ndarray, renderer: HeadRenderer) -> dict[str, list]:
    """Render every still of the given identities and return the columns of their rows."""
    model = renderer.model
    rows: dict[str, list] = {name: [] for name in image_features(config, model.num_identity)}
    for identity in identities:
        coefficients, person = sample_identity(model, config, int(identity))
        parameters = sample_image_parameters(config, int(identity))
        count = config.images_per_identity
        for start in range(0, count, RENDER_BATCH):
            part = slice(start, min(start + RENDER_BATCH, count))
            size = part.stop - part.start
            appearance = with_identity_traits(parameters["scene"].index(part), person)
            camera = camera_from(parameters["pose"][part], parameters["scale"][part], parameters["translation"][part])
            out = render_faces(
                renderer, coefficients.expand(size, -1), torch.from_numpy(parameters["expression_parameters"][part]),
                torch.from_numpy(parameters["jaw"][part]), torch.from_numpy(parameters["gaze"][part]), camera,
                appearance, config.conditioning,
            )
            _append_image_rows(rows, config, int(identity), coefficients, parameters, part, camera, out)
    return rows


def _append_image_rows(rows, config, identity, coefficients, parameters, part, camera, out) -> None:
    rotation = camera.matrix().reshape(-1, 9).numpy()
    for offset, index in enumerate(range(part.start, part.stop)):
        rows["image"].append(to_pil(out["rgb"][offset]))
        rows["identity"].append(identity)
        for name in ("expression", "expression_intensity", "valence", "arousal"):
            rows[name].append(parameters[name][index].item())
        rows["au_intensity"].append(parameters["au_intensity"][index])
        rows["au_occurrence"].append(parameters["au_occurrence"][index].astype(np.int64))
        for name in ("pose", "translation", "gaze", "eye_closure", "expression_parameters"):
            rows[name].append(parameters[name][index])
        rows["scale"].append(float(parameters["scale"][index]))
        rows["jaw"].append(float(parameters["jaw"][index]))
        rows["rotation"].append(rotation[offset])
        rows["landmarks_2d"].append(out["landmarks_2d"][offset].numpy())
        rows["landmarks_3d"].append(out["landmarks_3d"][offset].numpy())
        rows["landmarks_visible"].append(out["landmarks_visible"][offset].numpy())
        rows["pupils_2d"].append(out["pupils_2d"][offset].numpy())
        rows["identity_coefficients"].append(coefficients.numpy())
        if config.conditioning:
            for name in CONDITIONING_IMAGES:
                rows[name].append(to_pil(out[name][offset]))
            rows["depth"].append(out["depth"][offset, 0].numpy())


# Building and caching ---------------------------------------------------------------------------

# Source files whose contents decide what a build contains.
_SOURCE_PACKAGES = ("zoo.geometry", "zoo.data.synthheads")
_SOURCE_FILES = ("zoo/data/facs.py", "zoo/data/facs_relatedness.json")


@lru_cache(maxsize=1)
def code_version() -> str:
    """Hash (16 hex digits) of the renderer, model and sampler source files, part of the cache key."""
    root = Path(__file__).resolve().parents[3]
    paths = [root / name for name in _SOURCE_FILES]
    for package in _SOURCE_PACKAGES:
        paths.extend(sorted((root / package.replace(".", "/")).glob("*.py")))
    digest = hashlib.sha256(str(FORMAT_VERSION).encode())
    for path in paths:
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """Return the SynthHeads cache folder: `cache_dir`, else ``$ZOO_CACHE/synthheads``, else ``~/.cache/zoo/synthheads``."""
    if cache_dir is not None:
        return Path(cache_dir)
    base = os.environ.get("ZOO_CACHE") or Path.home() / ".cache" / "zoo"
    return Path(base) / "synthheads"


def cache_key(config: SynthHeadsConfig) -> str:
    payload = json.dumps({"config": config.to_dict(), "code": code_version()}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


def description_of(config: SynthHeadsConfig, model: MorphableHeadModel) -> str:
    """JSON stored in `info.description`: the config, the code version and the names of vector columns."""
    return json.dumps(
        {
            "name": "synthheads",
            "config": config.to_dict(),
            "code_version": code_version(),
            "model": {"name": model.metadata.get("name"), "version": model.metadata.get("version")},
            "au_labels": list(AU_LABELS),
            "expression_parameter_names": list(EXPRESSION_PARAMETER_NAMES),
            "identity_coefficient_names": list(model.identity_names),
            "pose_order": ["yaw", "pitch", "roll"],
            "gaze_order": ["yaw", "pitch"],
            "units": {"pose": "rad", "landmarks_2d": "px", "landmarks_3d": model.units, "scale": f"normalised/{model.units}"},
        }
    )


def build_synthheads(
    config: SynthHeadsConfig | None = None,
    *,
    cache: bool = True,
    cache_dir: str | os.PathLike | None = None,
    **overrides: Any,
):
    """Build (or read from the cache) a SynthHeads `datasets.DatasetDict`.

    Args:
        config: a full config; None starts from `SynthHeadsConfig()`.
        cache: read and write the on-disk cache. False always renders and writes nothing.
        cache_dir: cache folder instead of ``$ZOO_CACHE/synthheads`` (default ``~/.cache/zoo/synthheads``).
        **overrides: replace single config fields, e.g. ``kind="clips", image_size=128``.

    Returns:
        A `DatasetDict` with one split per entry of `config.splits`, each split's
        `info.description` the JSON of `description_of`.

    Raises:
        ValueError: on an unknown override or an invalid config value.
    """
    config = _resolve_config(config, overrides)
    if not cache:
        return _build(config)

    folder = cache_root(cache_dir) / cache_key(config)
    if (folder / "dataset_dict.json").is_file():
        loaded = _load_cached(folder, config)
        if loaded is not None:
            logger.info("loaded SynthHeads build %s from %s", config.fingerprint(), folder)
            return loaded
    result = _build(config)
    _save_atomically(result, folder)
    return result


def _resolve_config(config: SynthHeadsConfig | None, overrides: dict[str, Any]) -> SynthHeadsConfig:
    if config is not None and not isinstance(config, SynthHeadsConfig):
        raise TypeError(f"config must be a SynthHeadsConfig or None, got {type(config).__name__}")
    base = config or SynthHeadsConfig()
    if not overrides:
        return base
    known = {f.name for f in dataclasses.fields(SynthHeadsConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown SynthHeads options {unknown}; known options: {sorted(known)}")
    values = dataclasses.asdict(base)
    if config is None:
        # Range defaults depend on the kind, so a plain override of `kind` must not inherit image ranges.
        for name in _KIND_DEFAULTS["images"]:
            values[name] = None
    values.update(overrides)
    return SynthHeadsConfig(**values)


def _build(config: SynthHeadsConfig):
    import datasets

    model = builtin_model()
    renderer = HeadRenderer(model, config.image_size)
    description = description_of(config, model)
    if config.kind == "images":
        features, make_rows = image_features(config, model.num_identity), image_rows
        rows_per_identity = config.images_per_identity
    else:
        from zoo.data.synthheads.clips import clip_features, clip_rows

        features, make_rows = clip_features(config, model.num_identity), clip_rows
        rows_per_identity = config.clips_per_identity
    info = datasets.DatasetInfo(description=description, features=features)
    # Rows are encoded (PNG images, Arrow arrays) a group of identities at a time, so the raw
    # renders of only one group are in memory at once.
    # NOTE: the encoded build stays in memory until it is saved, so memory grows with the build.
    group = max(1, ENCODE_ROWS // rows_per_identity)
    result = {}
    for split, identities in identity_splits(config).items():
        parts = [
            datasets.Dataset.from_dict(make_rows(config, identities[start : start + group], renderer), features=features)
            for start in range(0, len(identities), group)
        ]
        result[split] = datasets.concatenate_datasets(parts, info=info, split=datasets.NamedSplit(split))
    return datasets.DatasetDict(result)


def _load_cached(folder: Path, config: SynthHeadsConfig):
    import datasets

    try:
        loaded = datasets.load_from_disk(str(folder))
    except (OSError, ValueError) as error:
        logger.warning("ignoring unreadable SynthHeads cache %s (%s); rebuilding", folder, error)
        return None
    stored = [json.loads(split.info.description or "{}").get("config") for split in loaded.values()]
    if list(loaded) != list(config.splits) or any(entry != config.to_dict() for entry in stored):
        logger.warning("SynthHeads cache %s does not match its config; rebuilding", folder)
        return None
    return loaded


def _save_atomically(dataset, folder: Path) -> None:
    """Write to a temporary sibling folder, then rename it, so readers never see a partial build."""
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=folder.name + ".", dir=folder.parent))
    except OSError as error:
        logger.warning("could not write the SynthHeads cache %s: %s", folder, error)
        return
    try:
        dataset.save_to_disk(str(staging))
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(staging, folder)
    except OSError as error:
        logger.warning("could not write the SynthHeads cache %s: %s", folder, error)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def config_of(dataset) -> SynthHeadsConfig:
    """Recover the `SynthHeadsConfig` a SynthHeads split or `DatasetDict` was built with."""
    split = next(iter(dataset.values())) if hasattr(dataset, "values") else dataset
    payload = json.loads(split.info.description)
    if payload.get("name") != "synthheads":
        raise ValueError(f"not a SynthHeads dataset: its description names {payload.get('name')!r}")
    return SynthHeadsConfig.from_dict(payload["config"])
